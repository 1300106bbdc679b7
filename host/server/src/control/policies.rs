//! berth's own operations on placement policies (target prefix
//! `Berth_20261125`): install, list, describe, activate per cluster or
//! service, deactivate, delete. The registry itself is berth-policy's.

use berth_policy::{Fallback, PolicySummary, RegistryError, Scope};
use serde::{Deserialize, Serialize};

use super::{Control, ControlError};

/// The RunTask and CreateService tag naming the policy that places the
/// call's tasks (a policy id, id prefix or name).
pub const POLICY_TAG: &str = "berth:policy";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct InstallPolicyRequest {
    /// The component, base64 (as AWS JSON carries blobs).
    pub wasm: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PolicyRequest {
    pub policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ActivatePolicyRequest {
    pub policy: Option<String>,
    pub cluster: Option<String>,
    pub service: Option<String>,
    pub fallback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DeactivatePolicyRequest {
    pub cluster: Option<String>,
    pub service: Option<String>,
}

/// One policy as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDescription {
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub world: String,
    pub size: usize,
    pub active_in: Vec<String>,
    pub parameters: Vec<PolicyParameter>,
    pub stats: PolicyStatsView,
}

#[derive(Debug, Serialize)]
pub struct PolicyParameter {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatsView {
    pub decisions: u64,
    /// Failed decisions by kind: trap, deadline, memory-limit, invalid-answer, instantiate.
    pub failures: std::collections::BTreeMap<&'static str, u64>,
    pub instances_created: u64,
    pub logs_dropped: u64,
    pub latency_micros: Latency,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct PolicyResponse {
    pub policy: PolicyDescription,
}

#[derive(Debug, Serialize)]
pub struct ListPoliciesResponse {
    pub policies: Vec<PolicyDescription>,
}

#[derive(Debug, Serialize)]
pub struct ActivatePolicyResponse {
    pub policy: PolicyDescription,
    pub scope: String,
}

#[derive(Debug, Serialize)]
pub struct DeactivatePolicyResponse {
    pub scope: String,
}

impl From<PolicySummary> for PolicyDescription {
    fn from(s: PolicySummary) -> Self {
        let [p50, p90, p99, max] = s.stats.latency_us;
        PolicyDescription {
            sha256: s.sha256,
            name: s.name,
            version: s.version,
            world: s.world,
            size: s.size,
            active_in: s.active_in,
            parameters: s
                .parameters
                .into_iter()
                .map(|(name, description)| PolicyParameter { name, description })
                .collect(),
            stats: PolicyStatsView {
                decisions: s.stats.decisions,
                failures: s
                    .stats
                    .failures
                    .iter()
                    .map(|(k, n)| (k.as_str(), *n))
                    .collect(),
                instances_created: s.stats.instances_created,
                logs_dropped: s.stats.logs_dropped,
                latency_micros: Latency { p50, p90, p99, max },
            },
        }
    }
}

impl Control {
    fn registry(&self) -> Result<&berth_policy::Registry, ControlError> {
        self.policies.as_deref().ok_or_else(|| {
            ControlError::Client("placement policies are not enabled on this server".into())
        })
    }

    /// InstallPolicy: checks, compiles and stores a component.
    pub fn install_policy(
        &self,
        req: InstallPolicyRequest,
    ) -> Result<PolicyResponse, ControlError> {
        use base64::Engine as _;
        let b64 = req.wasm.ok_or_else(|| {
            ControlError::invalid("wasm", "is required (the component's bytes, base64)")
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| ControlError::invalid("wasm", format!("is not base64: {e}")))?;
        let reg = self.registry()?;
        let id = reg.install(&bytes).map_err(policy_error)?;
        Ok(PolicyResponse {
            policy: reg.show(&id).map_err(policy_error)?.into(),
        })
    }

    /// ListPolicies: every installed policy with its counters.
    pub fn list_policies(
        &self,
        _req: serde_json::Value,
    ) -> Result<ListPoliciesResponse, ControlError> {
        let policies = self
            .registry()?
            .list()
            .into_iter()
            .map(PolicyDescription::from)
            .collect();
        Ok(ListPoliciesResponse { policies })
    }

    /// DescribePolicy: one policy by id, id prefix or name.
    pub fn describe_policy(&self, req: PolicyRequest) -> Result<PolicyResponse, ControlError> {
        let id = req
            .policy
            .ok_or_else(|| ControlError::invalid("policy", "is required"))?;
        Ok(PolicyResponse {
            policy: self.registry()?.show(&id).map_err(policy_error)?.into(),
        })
    }

    /// The scope a request names; the cluster (and service) must exist.
    fn scope_of(
        &self,
        cluster: Option<&str>,
        service: Option<&str>,
    ) -> Result<Scope, ControlError> {
        let mut txn = self.store.begin()?;
        let c = self.active_cluster(&mut txn, cluster)?;
        Ok(match service {
            None => Scope::Cluster(c.cluster_name),
            Some(s) => {
                let s = self.service_in(&mut txn, &c.cluster_name, &c.cluster_arn, s)?;
                Scope::Service {
                    cluster: c.cluster_name,
                    service: s.service_name,
                }
            }
        })
    }

    /// ActivatePolicy: makes a policy the one that places in a cluster, or
    /// in one service. Decisions already running finish on the old version.
    pub fn activate_policy(
        &self,
        req: ActivatePolicyRequest,
    ) -> Result<ActivatePolicyResponse, ControlError> {
        let id = req
            .policy
            .ok_or_else(|| ControlError::invalid("policy", "is required"))?;
        let fallback = match req.fallback.as_deref() {
            None | Some("native") => Fallback::Native,
            Some("pending") => Fallback::Pending,
            Some(other) => {
                return Err(ControlError::invalid(
                    "fallback",
                    format!("`{other}` is not one of native, pending"),
                ));
            }
        };
        let scope = self.scope_of(req.cluster.as_deref(), req.service.as_deref())?;
        let reg = self.registry()?;
        let p = reg
            .activate_with(&scope, &id, fallback)
            .map_err(policy_error)?;
        tracing::info!(policy = %p.compiled.sha256, name = %p.name, scope = %scope.key(), ?fallback, "policy activated");
        Ok(ActivatePolicyResponse {
            policy: reg.show(&p.compiled.sha256).map_err(policy_error)?.into(),
            scope: scope.key(),
        })
    }

    /// DeactivatePolicy: the native strategies place in the scope again.
    pub fn deactivate_policy(
        &self,
        req: DeactivatePolicyRequest,
    ) -> Result<DeactivatePolicyResponse, ControlError> {
        let scope = self.scope_of(req.cluster.as_deref(), req.service.as_deref())?;
        self.registry()?.deactivate(&scope).map_err(policy_error)?;
        Ok(DeactivatePolicyResponse { scope: scope.key() })
    }

    /// DeletePolicy: refused while the policy is active anywhere.
    pub fn delete_policy(&self, req: PolicyRequest) -> Result<PolicyResponse, ControlError> {
        let id = req
            .policy
            .ok_or_else(|| ControlError::invalid("policy", "is required"))?;
        let reg = self.registry()?;
        let described = PolicyDescription::from(reg.show(&id).map_err(policy_error)?);
        reg.remove(&described.sha256).map_err(policy_error)?;
        Ok(PolicyResponse { policy: described })
    }

    /// The policy a placement uses: the call's tag, else the service's or
    /// cluster's binding; `None` for the native strategies.
    pub(super) fn policy_for(
        &self,
        cluster: &str,
        service: Option<&str>,
        tags: &[berth_core::model::Tag],
    ) -> Result<Option<(std::sync::Arc<berth_policy::LoadedPolicy>, Fallback)>, ControlError> {
        let call = tags
            .iter()
            .find(|t| t.key == POLICY_TAG)
            .map(|t| t.value.as_str());
        let Some(reg) = self.policies.as_deref() else {
            return match call {
                Some(_) => Err(ControlError::invalid(
                    "tags",
                    format!("{POLICY_TAG}: placement policies are not enabled on this server"),
                )),
                None => Ok(None),
            };
        };
        reg.resolve_with_fallback(cluster, service, call)
            .map_err(|e| match e {
                RegistryError::NotFound(p) => ControlError::invalid(
                    "tags",
                    format!("{POLICY_TAG}: no installed policy `{p}`"),
                ),
                other => policy_error(other),
            })
    }
}

impl Control {
    /// Binds `policy` (None: unbinds) to a service, for DeleteService.
    pub(super) fn bind_service_policy(
        &self,
        cluster: &str,
        service: &str,
        policy: Option<&str>,
    ) -> Result<(), ControlError> {
        let Some(reg) = self.policies.as_deref() else {
            return Ok(());
        };
        let scope = Scope::Service {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
        };
        match policy {
            Some(p) => reg.activate(&scope, p).map_err(policy_error),
            None => reg.deactivate(&scope).map_err(policy_error),
        }
    }
}

impl Control {
    /// Buffers in `txn` the binding of `policy` to a new service, so the
    /// service and its policy commit together (CreateService's tag): no
    /// placement, in this process or another, sees one without the other.
    pub(super) fn bind_service_policy_in(
        &self,
        txn: &mut berth_store::Txn,
        cluster: &str,
        service: &str,
        policy: &berth_policy::LoadedPolicy,
    ) -> Result<(), ControlError> {
        let Some(reg) = self.policies.as_deref() else {
            return Ok(());
        };
        let scope = Scope::Service {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
        };
        reg.bind_in(txn, &scope, policy, Fallback::Native)
            .map_err(policy_error)
    }
}

fn policy_error(e: RegistryError) -> ControlError {
    match e {
        RegistryError::NotFound(p) => ControlError::PolicyNotFound(format!(
            "no installed policy `{p}` (give its sha256, a prefix of 8 or more characters, or its name)"
        )),
        e @ RegistryError::InUse { .. } => ControlError::PolicyInUse(e.to_string()),
        RegistryError::Install(
            e @ (berth_policy::InstallError::Store(_) | berth_policy::InstallError::Engine(_)),
        ) => ControlError::Server(e.to_string()),
        RegistryError::Install(e) => ControlError::InvalidPolicy(e.to_string()),
        e => ControlError::Server(e.to_string()),
    }
}
