//! berth's `ExplainPlacement` (`berth run --explain`): why a RunTask would
//! place where it does. On the cluster's placement view as RunTask sees
//! it, without placing anything: each instance's verdict (the check that
//! eliminated it, or its key under each strategy: `berth_core::placement::explain`),
//! and the decision itself made on a copy of the view, through the policy
//! that would decide (a fresh session of it, its log lines for that
//! decision kept) or the native engine.

use berth_core::arn;
use berth_core::model::TaskDefinition;
use berth_core::placement::{
    ClusterState, PlacementRequest, Placer, TaskSpec, Verdict, explain, strategy_label,
};
use berth_policy::{Fallback, PolicySession};
use serde::Serialize;

use super::taskdefs::resolve;
use super::types::RunTaskRequest;
use super::view::ClusterView;
use super::{Control, ControlError};

/// One instance's verdict.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceVerdict {
    pub container_instance_arn: String,
    /// The ECS reason of the check that eliminated it (`RESOURCE:MEMORY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eliminated_by: Option<String>,
    /// A candidate's key under each strategy of `strategies` that has one
    /// (least wins, strategy by strategy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<u32>>,
}

/// ExplainPlacement's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainResponse {
    /// `native`, or the policy that would decide (`NAME@VERSION`).
    pub policy: String,
    /// The native chain (a policy's fallback, or what places natively).
    pub strategies: Vec<String>,
    pub instances: Vec<InstanceVerdict>,
    /// Per task asked for: the instance it would go to, or why none.
    pub decisions: Vec<Decision>,
    /// What the policy logged while deciding.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_log: Vec<String>,
    /// The policy failed the decision: how; `decisions` are then its fallback's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_failure: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a RunTask of `req` asks of placement: its task definition's
/// demand with the overrides, its group (`family:F` unless given), the
/// definition's constraints and the call's, and the call's strategy.
pub(super) fn run_request(
    req: &RunTaskRequest,
    td: &TaskDefinition,
) -> Result<PlacementRequest, ControlError> {
    let group = req
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{}", td.family));
    let spec = TaskSpec::from_definition(td, req.overrides.as_ref(), group);
    Ok(PlacementRequest::compile(
        spec,
        &berth_core::placement::task_definition_constraints(td),
        &req.placement_constraints,
        &req.placement_strategy,
    )?)
}

impl Control {
    /// ExplainPlacement: RunTask's request, answered with why its tasks
    /// would go where they would, changing nothing.
    pub fn explain_placement(&self, req: RunTaskRequest) -> Result<ExplainResponse, ControlError> {
        let count = req.count.unwrap_or(1);
        if !(1..=10).contains(&count) {
            return Err(ControlError::invalid(
                "count",
                format!("{count} is out of range 1-10"),
            ));
        }
        let td_ref = req
            .task_definition
            .clone()
            .ok_or_else(|| ControlError::invalid("taskDefinition", "is required"))?;
        let _turn = self.placement_turn();
        let up = self.placing(|txn| {
            let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
            let td = resolve(txn, &td_ref, "taskDefinition")?;
            let preq = run_request(&req, &td)?;
            let policy = self.policy_for(&cluster.cluster_name, None, &req.tags)?;
            let view = self.views.take(txn, &self.store, &cluster.cluster_arn)?;
            let mut state = view.state.clone();
            let arns: Vec<String> = view
                .instances
                .iter()
                .map(|c| c.container_instance_arn.clone())
                .collect();
            self.views.lend(&cluster.cluster_arn, view);
            Ok(self.explain_on(&mut state, &arns, &preq, policy, count as usize))
        })?;
        Ok(up.value)
    }

    fn explain_on(
        &self,
        state: &mut ClusterState,
        arns: &[String],
        preq: &PlacementRequest,
        policy: super::view::ChosenPolicy,
        count: usize,
    ) -> ExplainResponse {
        let instances = explain(state, preq)
            .into_iter()
            .zip(arns)
            .map(|(v, arn)| InstanceVerdict {
                container_instance_arn: arn.clone(),
                eliminated_by: match &v {
                    Verdict::Eliminated(c) => Some(c.reason().to_owned()),
                    Verdict::Candidate(_) => None,
                },
                keys: match v {
                    Verdict::Candidate(k) => Some(k),
                    Verdict::Eliminated(_) => None,
                },
            })
            .collect();
        let mut out = ExplainResponse {
            policy: "native".into(),
            strategies: preq.strategies.iter().map(strategy_label).collect(),
            instances,
            decisions: Vec::new(),
            policy_log: Vec::new(),
            policy_failure: None,
        };
        let native = |state: &mut ClusterState| -> Vec<Decision> {
            Placer::new(0)
                .place(state, preq, count)
                .into_iter()
                .map(|r| match r {
                    Ok(p) => Decision {
                        container_instance_arn: arns.get(p.instance).cloned(),
                        reason: None,
                    },
                    Err(f) => Decision {
                        container_instance_arn: None,
                        reason: Some(f.to_string()),
                    },
                })
                .collect()
        };
        let (Some((policy, fallback)), Some(reg)) = (policy, self.policies.as_deref()) else {
            out.decisions = native(state);
            return out;
        };
        out.policy = format!("{}@{}", policy.name, policy.version);
        let mut session = PolicySession::new(reg.host().clone(), policy);
        session.capture_logs();
        let answers = session.place(state, preq, count);
        out.policy_log = session.take_logs();
        out.decisions = match answers {
            Ok(answers) => answers
                .into_iter()
                .map(|a| match a {
                    Ok(p) => Decision {
                        container_instance_arn: arns.get(p.instance).cloned(),
                        reason: None,
                    },
                    Err(why) => Decision {
                        container_instance_arn: None,
                        reason: Some(format!("POLICY: {why}")),
                    },
                })
                .collect(),
            Err(e) => {
                out.policy_failure = Some(e.to_string());
                match fallback {
                    Fallback::Native => native(state),
                    Fallback::Pending => (0..count)
                        .map(|_| Decision {
                            container_instance_arn: None,
                            reason: Some("POLICY: left PENDING (fallback pending)".into()),
                        })
                        .collect(),
                }
            }
        };
        out
    }
}

/// At most this many instances are named in a failure's detail; the
/// counts per check (the failure's own text) cover the rest.
const FAILURE_INSTANCES: usize = 10;

/// For a task that could not be placed: each instance's id and the check
/// that eliminated it (`0f3c9b2e RESOURCE:MEMORY, ...`), for RunTask's
/// failure detail, as `berth run --explain` would say it.
pub(super) fn why_unplaced(view: &mut ClusterView, preq: &PlacementRequest) -> String {
    let verdicts = explain(&mut view.state, preq);
    let mut named: Vec<String> = verdicts
        .iter()
        .zip(&view.instances)
        .take(FAILURE_INSTANCES)
        .map(|(v, ci)| {
            let id = arn::last_segment(&ci.container_instance_arn);
            match v {
                Verdict::Eliminated(c) => format!("{id} {}", c.reason()),
                // Passed every check for the first task, then filled by
                // the earlier tasks of the same request.
                Verdict::Candidate(_) => format!("{id} fits"),
            }
        })
        .collect();
    if verdicts.len() > FAILURE_INSTANCES {
        named.push(format!("{} more", verdicts.len() - FAILURE_INSTANCES));
    }
    named.join(", ")
}
