//! berth's own operations on placement policies (target prefix
//! `Berth_20261125`): install, list, describe, activate per cluster or
//! service, deactivate, delete. The registry itself is berth-policy's.

use berth_core::model::Attribute;
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
    /// Each scope of `activeIn` with the fallback in force there.
    pub activations: Vec<Activation>,
    pub parameters: Vec<PolicyParameter>,
    pub stats: PolicyStatsView,
    /// The last failed decisions, newest first.
    pub recent_failures: Vec<FailureView>,
    /// What it did as a shadow (since this server started), when it shadowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowView {
    pub decisions: u64,
    pub agreed: u64,
    pub disagreed: u64,
    pub agreement: f64,
    pub would_fail: u64,
    pub failures: std::collections::BTreeMap<&'static str, u64>,
    pub skipped: u64,
}

#[derive(Debug, Serialize)]
pub struct Activation {
    pub scope: String,
    /// `native` or `pending`.
    pub fallback: &'static str,
}

#[derive(Debug, Serialize)]
pub struct FailureView {
    /// trap, deadline, memory-limit, invalid-answer, instantiate.
    pub kind: &'static str,
    pub message: String,
    /// Epoch seconds.
    pub at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
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
        let activations = s
            .active_in
            .iter()
            .zip(&s.fallbacks)
            .map(|(scope, f)| Activation {
                scope: scope.clone(),
                fallback: fallback_word(*f),
            })
            .collect();
        PolicyDescription {
            shadow: s.shadow.map(|sh| ShadowView {
                decisions: sh.decisions,
                agreed: sh.agreed,
                disagreed: sh.disagreed,
                agreement: sh.agreement,
                would_fail: sh.would_fail,
                failures: sh.failures.iter().map(|(k, n)| (k.as_str(), *n)).collect(),
                skipped: sh.skipped,
            }),
            activations,
            recent_failures: s
                .recent_failures
                .into_iter()
                .rev()
                .map(|f| FailureView {
                    kind: f.kind.as_str(),
                    message: f.message,
                    at: f.at,
                    task: f.task,
                })
                .collect(),
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
    pub(super) fn registry(&self) -> Result<&berth_policy::Registry, ControlError> {
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

    /// ResetPolicyStats: a policy's counters and failures back to nothing.
    pub fn reset_policy_stats(&self, req: PolicyRequest) -> Result<PolicyResponse, ControlError> {
        let id = req
            .policy
            .ok_or_else(|| ControlError::invalid("policy", "is required"))?;
        let reg = self.registry()?;
        let p = reg.reset_stats(&id).map_err(policy_error)?;
        tracing::info!(policy = %p.sha256, name = %p.name, "policy statistics reset");
        Ok(PolicyResponse { policy: p.into() })
    }

    /// Writes the policies' statistics that changed to the store (see
    /// `berth_policy::Registry::flush_stats`); failures are logged.
    pub fn flush_policy_stats(&self) {
        if let Some(reg) = self.policies.as_deref()
            && let Err(e) = reg.flush_stats()
        {
            tracing::warn!(error = %e, "writing the policies' statistics failed; retried at the next flush");
        }
    }

    /// The scope a request names; the cluster (and service) must exist.
    pub(super) fn scope_of(
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
        let fallback = parse_fallback(req.fallback.as_deref())?;
        let scope = self.scope_of(req.cluster.as_deref(), req.service.as_deref())?;
        let reg = self.registry()?;
        let before = self.binding_before(&scope);
        let p = reg
            .activate_with(&scope, &id, fallback)
            .map_err(policy_error)?;
        tracing::info!(policy = %p.compiled.sha256, name = %p.name, scope = %scope.key(), ?fallback, "policy activated");
        let label = format!("{}@{}", p.name, p.version);
        let entry = self.entry_now(Some((p.compiled.sha256.as_str(), label)), fallback);
        self.remember_binding(&scope.key(), before, entry);
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
        let before = self.binding_before(&scope);
        self.registry()?.deactivate(&scope).map_err(policy_error)?;
        let entry = self.entry_now(None, Fallback::Native);
        self.remember_binding(&scope.key(), before, entry);
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
                e @ RegistryError::Ambiguous { .. } => {
                    ControlError::invalid("tags", format!("{POLICY_TAG}: {e}"))
                }
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

/// The task attribute naming the fallback that placed a task (`native`)
/// or left it PENDING (`pending`) because its policy failed.
pub const FALLBACK_ATTRIBUTE: &str = "berth.policy-fallback";
/// The task attribute saying which policy failed and why.
pub const FAILURE_ATTRIBUTE: &str = "berth.policy-failure";

/// A placement policy that failed a decision, and the fallback that applied.
#[derive(Debug, Clone)]
pub(super) struct PolicyFailed {
    pub error: berth_policy::DecisionError,
    /// `NAME@VERSION`.
    pub policy: String,
    pub fallback: Fallback,
}

impl PolicyFailed {
    pub fn new(
        policy: &berth_policy::LoadedPolicy,
        error: berth_policy::DecisionError,
        fallback: Fallback,
    ) -> Self {
        PolicyFailed {
            error,
            policy: format!("{}@{}", policy.name, policy.version),
            fallback,
        }
    }

    /// `binpack@0.1.0 failed (trap: ...)`, the reason cut short.
    pub fn what(&self) -> String {
        let mut reason = self.error.reason.clone();
        if reason.len() > 200 {
            let mut cut = 200;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push_str("...");
        }
        format!(
            "{} failed ({}: {reason})",
            self.policy,
            self.error.kind.as_str()
        )
    }

    /// The attributes that mark a task placed (or left) by the fallback.
    pub fn attributes(&self) -> [Attribute; 2] {
        let attr = |name: &str, value: String| Attribute {
            name: name.to_owned(),
            value: Some(value),
            target_type: None,
            target_id: None,
        };
        [
            attr(FALLBACK_ATTRIBUTE, fallback_word(self.fallback).to_owned()),
            attr(FAILURE_ATTRIBUTE, self.what()),
        ]
    }

    /// Marks `task` with [`PolicyFailed::attributes`], replacing older marks.
    pub fn mark(&self, task: &mut berth_core::model::Task) {
        task.attributes
            .retain(|a| a.name != FALLBACK_ATTRIBUTE && a.name != FAILURE_ATTRIBUTE);
        task.attributes.extend(self.attributes());
    }

    /// The service event: what the fallback did with `placed` tasks.
    pub fn event(&self, service: &str, placed: usize, left: usize) -> String {
        match self.fallback {
            Fallback::Native => format!(
                "(service {service}) placement policy {}; the native fallback placed {placed} task(s), ignoring the policy's rules",
                self.what()
            ),
            Fallback::Pending => format!(
                "(service {service}) placement policy {}; {left} task(s) left to place at the next attempt (fallback pending)",
                self.what()
            ),
        }
    }
}

impl Control {
    /// Keeps a policy's failed decision among its last failures, with the
    /// first task it was for.
    pub(super) fn note_policy_failure(&self, f: &PolicyFailed, task: Option<&str>) {
        if let Some(reg) = self.policies.as_deref() {
            reg.record_failure(&f.error, task);
        }
    }
}

/// The fallback as the API and CLI spell it.
pub fn fallback_word(f: Fallback) -> &'static str {
    match f {
        Fallback::Native => "native",
        Fallback::Pending => "pending",
    }
}

/// A request's `fallback` (default native).
pub(super) fn parse_fallback(f: Option<&str>) -> Result<Fallback, ControlError> {
    match f {
        None | Some("native") => Ok(Fallback::Native),
        Some("pending") => Ok(Fallback::Pending),
        Some(other) => Err(ControlError::invalid(
            "fallback",
            format!("`{other}` is not one of native, pending"),
        )),
    }
}

pub(super) fn policy_error(e: RegistryError) -> ControlError {
    match e {
        RegistryError::NotFound(p) => ControlError::PolicyNotFound(format!(
            "no installed policy `{p}` (give its sha256, a prefix of 8 or more characters, NAME@VERSION, or its name)"
        )),
        e @ RegistryError::Ambiguous { .. } => ControlError::invalid("policy", e),
        e @ RegistryError::InUse { .. } => ControlError::PolicyInUse(e.to_string()),
        RegistryError::Install(
            e @ (berth_policy::InstallError::Store(_) | berth_policy::InstallError::Engine(_)),
        ) => ControlError::Server(e.to_string()),
        RegistryError::Install(e) => ControlError::InvalidPolicy(e.to_string()),
        e => ControlError::Server(e.to_string()),
    }
}
