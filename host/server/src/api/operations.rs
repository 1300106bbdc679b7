//! The operation table: an `X-Amz-Target` to the control-plane operation
//! that answers it, with the body decoded and the answer encoded.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiError, BERTH_PREFIX, ECS_PREFIX, decode, logs};
use crate::control::{Control, ControlError};

/// Decodes, runs `op` on a blocking thread (the store blocks), encodes.
async fn dispatch<Q, A>(
    control: &Arc<Control>,
    body: &[u8],
    op: fn(&Control, Q) -> Result<A, ControlError>,
) -> Result<Vec<u8>, ApiError>
where
    Q: DeserializeOwned + Send + 'static,
    A: Serialize + Send + 'static,
{
    let req: Q = decode(body)?;
    let c = Arc::clone(control);
    let answer = tokio::task::spawn_blocking(move || op(&c, req))
        .await
        .map_err(|e| {
            ApiError::new("ServerException", 500, format!("the operation failed: {e}"))
        })??;
    serde_json::to_vec(&answer)
        .map_err(|e| ApiError::new("ServerException", 500, format!("encoding the answer: {e}")))
}

/// berth's own DescribeServer answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerInfo {
    version: &'static str,
    region: String,
    account: String,
    queue_tag: &'static str,
}

/// Answers the operation `target` (`<prefix>.<Operation>`) with `b` as its
/// input: the answer's JSON, or the error to send.
pub(super) async fn answer(c: &Arc<Control>, target: &str, b: &[u8]) -> Result<Vec<u8>, ApiError> {
    let Some((prefix, op)) = target.split_once('.') else {
        return Err(ApiError::new(
            "UnknownOperationException",
            400,
            format!("X-Amz-Target `{target}` is not <prefix>.<Operation>"),
        ));
    };
    match (prefix, op) {
        (ECS_PREFIX, "CreateCluster") => dispatch(c, b, Control::create_cluster).await,
        (ECS_PREFIX, "DescribeClusters") => dispatch(c, b, Control::describe_clusters).await,
        (ECS_PREFIX, "ListClusters") => dispatch(c, b, Control::list_clusters).await,
        (ECS_PREFIX, "DeleteCluster") => dispatch(c, b, Control::delete_cluster).await,
        (ECS_PREFIX, "RegisterTaskDefinition") => {
            dispatch(c, b, Control::register_task_definition).await
        }
        (ECS_PREFIX, "DescribeTaskDefinition") => {
            dispatch(c, b, Control::describe_task_definition).await
        }
        (ECS_PREFIX, "ListTaskDefinitions") => dispatch(c, b, Control::list_task_definitions).await,
        (ECS_PREFIX, "DeregisterTaskDefinition") => {
            dispatch(c, b, Control::deregister_task_definition).await
        }
        (ECS_PREFIX, "ListTaskDefinitionFamilies") => {
            dispatch(c, b, Control::list_task_definition_families).await
        }
        (ECS_PREFIX, "RegisterContainerInstance") => {
            dispatch(c, b, Control::register_container_instance).await
        }
        (ECS_PREFIX, "DescribeContainerInstances") => {
            dispatch(c, b, Control::describe_container_instances).await
        }
        (ECS_PREFIX, "ListContainerInstances") => {
            dispatch(c, b, Control::list_container_instances).await
        }
        (ECS_PREFIX, "DeregisterContainerInstance") => {
            dispatch(c, b, Control::deregister_container_instance).await
        }
        (ECS_PREFIX, "UpdateContainerInstancesState") => {
            dispatch(c, b, Control::update_container_instances_state).await
        }
        (ECS_PREFIX, "PutAttributes") => dispatch(c, b, |c, r| c.change_attributes(r, true)).await,
        (ECS_PREFIX, "DeleteAttributes") => {
            dispatch(c, b, |c, r| c.change_attributes(r, false)).await
        }
        (ECS_PREFIX, "ListAttributes") => dispatch(c, b, Control::list_attributes).await,
        (ECS_PREFIX, "RunTask") => dispatch(c, b, Control::run_task).await,
        (ECS_PREFIX, "StartTask") => dispatch(c, b, Control::start_task).await,
        (ECS_PREFIX, "StopTask") => dispatch(c, b, Control::stop_task).await,
        (ECS_PREFIX, "DescribeTasks") => dispatch(c, b, Control::describe_tasks).await,
        (ECS_PREFIX, "ListTasks") => dispatch(c, b, Control::list_tasks).await,
        (ECS_PREFIX, "CreateService") => dispatch(c, b, Control::create_service).await,
        (ECS_PREFIX, "UpdateService") => dispatch(c, b, Control::update_service).await,
        (ECS_PREFIX, "DeleteService") => dispatch(c, b, Control::delete_service).await,
        (ECS_PREFIX, "DescribeServices") => dispatch(c, b, Control::describe_services).await,
        (ECS_PREFIX, "ListServices") => dispatch(c, b, Control::list_services).await,
        (BERTH_PREFIX, "InstallPolicy") => dispatch(c, b, Control::install_policy).await,
        (BERTH_PREFIX, "ListPolicies") => dispatch(c, b, Control::list_policies).await,
        (BERTH_PREFIX, "DescribePolicy") => dispatch(c, b, Control::describe_policy).await,
        (BERTH_PREFIX, "ExplainPlacement") => dispatch(c, b, Control::explain_placement).await,
        (BERTH_PREFIX, "ShadowPolicy") => dispatch(c, b, Control::shadow_policy).await,
        (BERTH_PREFIX, "PromotePolicy") => dispatch(c, b, Control::promote_policy).await,
        (BERTH_PREFIX, "ActivatePolicy") => dispatch(c, b, Control::activate_policy).await,
        (BERTH_PREFIX, "DeactivatePolicy") => dispatch(c, b, Control::deactivate_policy).await,
        (BERTH_PREFIX, "DeletePolicy") => dispatch(c, b, Control::delete_policy).await,
        (BERTH_PREFIX, "ResetPolicyStats") => dispatch(c, b, Control::reset_policy_stats).await,
        (BERTH_PREFIX, "RollBackPolicy") => dispatch(c, b, Control::roll_back_policy).await,
        (BERTH_PREFIX, "ListPolicyHistory") => dispatch(c, b, Control::list_policy_history).await,
        (BERTH_PREFIX, "Shutdown") => dispatch(c, b, Control::shutdown).await,
        (BERTH_PREFIX, "PutSecret") => dispatch(c, b, Control::put_secret).await,
        (BERTH_PREFIX, "ListSecrets") => dispatch(c, b, Control::list_secrets).await,
        (BERTH_PREFIX, "DeleteSecret") => dispatch(c, b, Control::delete_secret).await,
        (BERTH_PREFIX, "ListAuditEvents") => dispatch(c, b, Control::list_audit_events).await,
        (BERTH_PREFIX, "GetTaskLogs") => logs::get_task_logs(c, b).await,
        (BERTH_PREFIX, "DescribeServer") => {
            let _: serde_json::Value = decode(b)?;
            let info = ServerInfo {
                version: env!("CARGO_PKG_VERSION"),
                region: c.arn().region.clone(),
                account: c.arn().account.clone(),
                queue_tag: crate::control::QUEUE_TAG,
            };
            serde_json::to_vec(&info)
                .map_err(|e| ApiError::new("ServerException", 500, e.to_string()))
        }
        _ => Err(ApiError::new(
            "UnknownOperationException",
            400,
            format!("X-Amz-Target `{target}`: berth does not know this operation"),
        )),
    }
}
