//! Shadow mode on a live server (berth's `ShadowPolicy`, `PromotePolicy`):
//! a candidate policy asked every live decision of a cluster, off the
//! placement path (`berth_policy::Registry::offer_shadow`); `berth policy
//! show` reports its agreement, would-be failures and latency; promotion
//! makes it the cluster's policy and ends the shadow in one transaction.

use std::sync::Arc;

use berth_core::arn;
use berth_core::placement::{ClusterState, Placement, PlacementRequest};
use berth_policy::LoadedPolicy;
use serde::Deserialize;

use super::policies::{ActivatePolicyResponse, parse_fallback, policy_error};
use super::view::ClusterView;
use super::{Control, ControlError};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ShadowPolicyRequest {
    pub policy: Option<String>,
    pub cluster: Option<String>,
    /// PromotePolicy: the fallback of the promoted policy (native, pending).
    pub fallback: Option<String>,
}

/// The shadow of a cluster and the view as it stood before a live decision.
pub(super) type Shadowed = (Arc<LoadedPolicy>, ClusterState);

impl Control {
    /// The view's cluster's shadow, with a copy of the view before the
    /// live decision (the one cost a shadow puts on the placement path).
    pub(super) fn shadow_before(&self, view: &ClusterView) -> Option<Shadowed> {
        let policy = self
            .policies
            .as_deref()?
            .shadow_of(arn::cluster_name(&view.cluster_arn))?;
        Some((policy, view.state.clone()))
    }

    /// Offers the live decision to the shadow; returns at once.
    pub(super) fn shadow_after<E>(
        &self,
        shadow: Option<Shadowed>,
        preq: &PlacementRequest,
        live: &[Result<Placement, E>],
    ) {
        let (Some((policy, state)), Some(reg)) = (shadow, self.policies.as_deref()) else {
            return;
        };
        let live = live
            .iter()
            .map(|r| r.as_ref().ok().map(|p| p.instance))
            .collect();
        reg.offer_shadow(policy, state, preq.clone(), live);
    }

    fn shadow_request(&self, req: &ShadowPolicyRequest) -> Result<(String, String), ControlError> {
        let id = req
            .policy
            .clone()
            .ok_or_else(|| ControlError::invalid("policy", "is required"))?;
        let mut txn = self.store.begin()?;
        let c = self.active_cluster(&mut txn, req.cluster.as_deref())?;
        Ok((id, c.cluster_name))
    }

    /// ShadowPolicy: makes the policy the cluster's shadow.
    pub fn shadow_policy(
        &self,
        req: ShadowPolicyRequest,
    ) -> Result<ActivatePolicyResponse, ControlError> {
        if req.fallback.is_some() {
            return Err(ControlError::invalid(
                "fallback",
                "a shadow places nothing; give the fallback when promoting it",
            ));
        }
        let (id, cluster) = self.shadow_request(&req)?;
        let reg = self.registry()?;
        let p = reg.shadow(&cluster, &id).map_err(policy_error)?;
        tracing::info!(policy = %p.compiled.sha256, name = %p.name, %cluster, "policy shadowing");
        Ok(ActivatePolicyResponse {
            policy: reg.show(&p.compiled.sha256).map_err(policy_error)?.into(),
            scope: format!("shadow/cluster/{cluster}"),
        })
    }

    /// PromotePolicy: the policy becomes the cluster's active one and the
    /// cluster's shadow ends, atomically.
    pub fn promote_policy(
        &self,
        req: ShadowPolicyRequest,
    ) -> Result<ActivatePolicyResponse, ControlError> {
        let fallback = parse_fallback(req.fallback.as_deref())?;
        let (id, cluster) = self.shadow_request(&req)?;
        let reg = self.registry()?;
        let p = reg.promote(&cluster, &id, fallback).map_err(policy_error)?;
        tracing::info!(policy = %p.compiled.sha256, name = %p.name, %cluster, "policy promoted");
        Ok(ActivatePolicyResponse {
            policy: reg.show(&p.compiled.sha256).map_err(policy_error)?.into(),
            scope: format!("cluster/{cluster}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use berth_core::arn::ArnContext;
    use berth_core::model::Resource;
    use berth_policy::{HostConfig, PolicyHost, Registry, ShadowSnapshot};
    use berth_store::Store;
    use serde_json::json;

    use super::*;
    use crate::control::types::{RegisterContainerInstanceRequest, RunTaskRequest};

    fn plugin(name: &str) -> Vec<u8> {
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target"),
            PathBuf::from,
        );
        let path = target.join(format!("wasm32-wasip2/release/{name}.wasm"));
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the plugins first (README's test command)",
                path.display()
            )
        })
    }

    /// Runs 20 RunTasks (binpack on memory, family `family`) on six
    /// instances of different sizes, with `shadow` (a plugin) shadowing;
    /// where each task went (the instance's registration order), and what
    /// the shadow counted once it caught up.
    fn stream(family: &str, shadow: Option<&str>) -> (Vec<usize>, Option<ShadowSnapshot>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("berth.redb")).expect("store");
        let host = Arc::new(PolicyHost::new(HostConfig::default()).expect("host"));
        let reg = Arc::new(Registry::open(host, store.clone()).expect("registry"));
        let c = Control::new(Arc::new(store), ArnContext::default()).with_policies(reg.clone());
        c.ensure_default_cluster().expect("cluster");
        let arns: Vec<String> = (0..6)
            .map(|i| {
                c.register_container_instance(RegisterContainerInstanceRequest {
                    total_resources: vec![
                        Resource::integer("CPU", 4096),
                        Resource::integer("MEMORY", 1024 + 512 * i),
                    ],
                    ..Default::default()
                })
                .expect("instance")
                .container_instance
                .container_instance_arn
            })
            .collect();
        c.register_task_definition(
            serde_json::from_value(json!({"family": family, "containerDefinitions": [
                {"name": "app", "image": "berth/hello:1", "cpu": 64, "memory": 256}]}))
            .expect("td"),
        )
        .expect("registered");
        let id = shadow.map(|name| {
            let id = reg.install(&plugin(name)).expect("install");
            c.shadow_policy(ShadowPolicyRequest {
                policy: Some(id.clone()),
                ..Default::default()
            })
            .expect("shadow");
            id
        });
        let mut went = Vec::new();
        for _ in 0..20 {
            let r = c
                .run_task(RunTaskRequest {
                    task_definition: Some(family.into()),
                    count: Some(1),
                    placement_strategy: vec![
                        serde_json::from_value(json!({"type": "binpack", "field": "memory"}))
                            .expect("strategy"),
                    ],
                    ..Default::default()
                })
                .expect("run");
            let arn = r.tasks[0].container_instance_arn.clone().expect("placed");
            went.push(arns.iter().position(|a| *a == arn).expect("known instance"));
        }
        let counted = id.map(|id| {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let sh = reg.show(&id).expect("show").shadow.expect("shadow stats");
                if sh.decisions + sh.skipped == 20 || Instant::now() > deadline {
                    return sh;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        (went, counted)
    }

    #[test]
    fn a_shadow_that_fails_every_decision_changes_no_placement() {
        let (plain, _) = stream("attack", None);
        // The trap plugin panics on every task of family `attack`.
        let (shadowed, counted) = stream("attack", Some("hostile_trap"));
        assert_eq!(plain, shadowed, "the shadow changed a placement");
        let sh = counted.expect("counted");
        assert_eq!(sh.decisions + sh.skipped, 20, "{sh:?}");
        assert!(sh.decisions > 0, "{sh:?}");
        assert_eq!(sh.agreed, 0, "{sh:?}");
        assert_eq!(sh.would_fail, sh.decisions, "{sh:?}");
        let traps = sh
            .failures
            .iter()
            .find(|(k, _)| k.as_str() == "trap")
            .map_or(0, |f| f.1);
        assert_eq!(traps, sh.decisions, "{sh:?}");
    }

    #[test]
    fn a_shadow_that_decides_as_the_live_strategy_agrees_on_every_decision() {
        let (plain, _) = stream("web", None);
        let (shadowed, counted) = stream("web", Some("binpack"));
        assert_eq!(plain, shadowed);
        let sh = counted.expect("counted");
        assert!(sh.decisions > 0, "{sh:?}");
        assert_eq!(sh.agreed, sh.decisions, "{sh:?}");
        assert_eq!(sh.agreement, 1.0, "{sh:?}");
    }
}
