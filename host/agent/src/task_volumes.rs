//! The Docker volumes of a task: task-scoped ones are created when the task
//! starts and removed with its containers; shared ones are found by name,
//! or created when `autoprovision` allows.

use std::collections::HashMap;

use berth_core::model::{TaskDefinition, Volume};
use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::ListVolumesOptions;

use crate::container_config::{VolumeSource, volume_source};
use crate::docker::is_not_found;
use crate::{AgentError, LABEL_INSTANCE, LABEL_TASK_ARN};

/// The create request of Docker volume `name` for task volume `v`.
fn create_request(name: &str, v: &Volume, labels: HashMap<String, String>) -> VolumeCreateRequest {
    let conf = v.docker_volume_configuration.clone().unwrap_or_default();
    let mut all: HashMap<String, String> = conf.labels.into_iter().collect();
    all.extend(labels);
    VolumeCreateRequest {
        name: Some(name.to_owned()),
        driver: conf.driver,
        driver_opts: Some(conf.driver_opts.into_iter().collect()),
        labels: Some(all),
        ..Default::default()
    }
}

/// Creates the task's Docker volumes (and checks its shared ones exist);
/// the error is the task's stopped reason.
pub(crate) async fn prepare(
    docker: &Docker,
    instance_arn: &str,
    task_arn: &str,
    td: &TaskDefinition,
) -> Result<(), String> {
    for v in &td.volumes {
        let (name, task_scoped) = match volume_source(task_arn, v) {
            VolumeSource::Bind(_) => continue,
            VolumeSource::Named { name, task_scoped } => (name, task_scoped),
        };
        let labels = if task_scoped {
            HashMap::from([
                (LABEL_TASK_ARN.to_owned(), task_arn.to_owned()),
                (LABEL_INSTANCE.to_owned(), instance_arn.to_owned()),
            ])
        } else {
            match docker.inspect_volume(&name).await {
                Ok(_) => continue,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(format!("volume {}: {e}", v.name)),
            }
            let autoprovision = v
                .docker_volume_configuration
                .as_ref()
                .and_then(|c| c.autoprovision)
                .unwrap_or(false);
            if !autoprovision {
                return Err(format!(
                    "CannotCreateVolumeError: shared volume {name} does not exist and autoprovision is off"
                ));
            }
            HashMap::new()
        };
        if let Err(e) = docker.create_volume(create_request(&name, v, labels)).await {
            return Err(format!("CannotCreateVolumeError: volume {name}: {e}"));
        }
    }
    Ok(())
}

/// Removes the task-scoped volumes of `task_arn` no container uses any more
/// (a volume still in use stays, for the removal of its last container).
pub(crate) async fn remove_unused(
    docker: &Docker,
    instance_arn: &str,
    task_arn: &str,
) -> Result<(), AgentError> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{LABEL_INSTANCE}={instance_arn}"),
            format!("{LABEL_TASK_ARN}={task_arn}"),
        ],
    )]);
    let listed = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters),
        }))
        .await?;
    for v in listed.volumes.unwrap_or_default() {
        match docker
            .remove_volume(
                &v.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => {}
            // 404: removed meanwhile; 409: a container of the task still uses it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
