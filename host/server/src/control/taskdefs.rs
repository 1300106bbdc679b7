//! RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! DeregisterTaskDefinition, ListTaskDefinitionFamilies.

use std::collections::BTreeMap;

use berth_core::arn;
use berth_core::model::TaskDefinition;
use berth_core::status::TaskDefinitionStatus;
use berth_core::validate;
use berth_store::Txn;
use berth_store::tables::task_definition_key;

use super::types::*;
use super::{Control, ControlError, all_with_prefix, now, paginate};

/// Every revision of `family`, oldest first.
fn revisions(txn: &Txn, family: &str) -> Result<Vec<TaskDefinition>, ControlError> {
    Ok(
        all_with_prefix::<TaskDefinition>(txn, &format!("{family}:"))?
            .into_iter()
            .map(|v| v.value)
            .collect(),
    )
}

/// The task definition `family`, `family:revision` or ARN names: with no
/// revision, the latest ACTIVE one.
pub(super) fn resolve(
    txn: &mut Txn,
    reference: &str,
    field: &str,
) -> Result<TaskDefinition, ControlError> {
    let (family, revision) =
        arn::task_definition_ref(reference).map_err(|e| ControlError::invalid(field, e))?;
    let found = match revision {
        Some(r) => txn
            .get::<TaskDefinition>(&task_definition_key(family, r))?
            .map(|v| v.value),
        None => revisions(txn, family)?
            .into_iter()
            .rev()
            .find(|t| t.status == TaskDefinitionStatus::Active),
    };
    found.ok_or_else(|| {
        ControlError::Client(format!("{field}: task definition `{reference}` not found"))
    })
}

/// Every `repositoryCredentials` of `req` names a stored secret; else a
/// ClientException naming the first that does not.
fn check_credentials_exist(
    txn: &mut Txn,
    req: &RegisterTaskDefinitionRequest,
) -> Result<(), ControlError> {
    for (i, d) in req.container_definitions.iter().enumerate() {
        let Some(rc) = &d.repository_credentials else {
            continue;
        };
        let name = &rc.credentials_parameter;
        if super::secrets::registry_credential(txn, name)?.is_none() {
            return Err(ControlError::Client(format!(
                "containerDefinitions[{i}].repositoryCredentials.credentialsParameter: no secret named `{name}` (store it first: berth secrets put {name} --username USER --password-stdin)"
            )));
        }
    }
    Ok(())
}

impl Control {
    /// RegisterTaskDefinition: validated, then the family's next revision.
    /// A definition refused is a ClientException, as ECS answers one.
    pub fn register_task_definition(
        &self,
        req: RegisterTaskDefinitionRequest,
    ) -> Result<TaskDefinitionResponse, ControlError> {
        validate::task_definition(&req).map_err(|e| ControlError::Client(e.to_string()))?;
        let up = self
            .store
            .update(|txn| -> Result<TaskDefinition, ControlError> {
                check_credentials_exist(txn, &req)?;
                let last = revisions(txn, &req.family)?
                    .last()
                    .map_or(0, |t| t.revision);
                let revision = last + 1;
                // Read the new key too, so two registrations racing for the same
                // revision conflict instead of one overwriting the other.
                if txn
                    .get::<TaskDefinition>(&task_definition_key(&req.family, revision))?
                    .is_some()
                {
                    return Err(ControlError::Server("revision taken concurrently".into()));
                }
                let td = TaskDefinition {
                    task_definition_arn: self.arn.task_definition(&req.family, revision),
                    family: req.family.clone(),
                    revision,
                    container_definitions: req.container_definitions.clone(),
                    network_mode: req.network_mode(),
                    cpu: req.cpu.clone(),
                    memory: req.memory.clone(),
                    placement_constraints: req.placement_constraints.clone(),
                    volumes: req.volumes.clone(),
                    pid_mode: req.pid_mode,
                    ipc_mode: req.ipc_mode,
                    requires_compatibilities: req.requires_compatibilities.clone(),
                    status: TaskDefinitionStatus::Active,
                    registered_at: Some(now()),
                    deregistered_at: None,
                    tags: req.tags.clone(),
                };
                txn.put(&td)?;
                Ok(td)
            })?;
        let tags = up.value.tags.clone();
        Ok(TaskDefinitionResponse {
            task_definition: up.value,
            tags,
        })
    }

    /// DescribeTaskDefinition by `family`, `family:revision` or ARN.
    pub fn describe_task_definition(
        &self,
        req: TaskDefinitionRequest,
    ) -> Result<TaskDefinitionResponse, ControlError> {
        let r = req
            .task_definition
            .ok_or_else(|| ControlError::invalid("taskDefinition", "is required"))?;
        let mut txn = self.store.begin()?;
        let td = resolve(&mut txn, &r, "taskDefinition")?;
        let tags = if req.include.iter().any(|i| i == "TAGS") {
            td.tags.clone()
        } else {
            Vec::new()
        };
        Ok(TaskDefinitionResponse {
            task_definition: td,
            tags,
        })
    }

    /// ListTaskDefinitions: by family then revision, ASC or DESC.
    pub fn list_task_definitions(
        &self,
        req: ListTaskDefinitionsRequest,
    ) -> Result<ListTaskDefinitionsResponse, ControlError> {
        let given = req.status.as_deref().unwrap_or("ACTIVE");
        let status = given.parse::<TaskDefinitionStatus>().map_err(|_| {
            ControlError::invalid(
                "status",
                format!("`{given}` is not one of ACTIVE, INACTIVE, DELETE_IN_PROGRESS"),
            )
        })?;
        let descending = match req.sort.as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(s) => {
                return Err(ControlError::invalid(
                    "sort",
                    format!("`{s}` is not one of ASC, DESC"),
                ));
            }
        };
        let txn = self.store.begin()?;
        // With a prefix, ECS matches the whole family name.
        let prefix = req
            .family_prefix
            .as_deref()
            .map(|f| format!("{f}:"))
            .unwrap_or_default();
        let mut items: Vec<(String, String)> = all_with_prefix::<TaskDefinition>(&txn, &prefix)?
            .into_iter()
            .filter(|t| t.value.status == status)
            .map(|t| {
                (
                    task_definition_key(&t.value.family, t.value.revision),
                    t.value.task_definition_arn,
                )
            })
            .collect();
        if descending {
            items.reverse();
        }
        let (task_definition_arns, next_token) = paginate(
            items,
            req.next_token.as_deref(),
            req.max_results,
            descending,
        )?;
        Ok(ListTaskDefinitionsResponse {
            task_definition_arns,
            next_token,
        })
    }

    /// DeregisterTaskDefinition: the revision becomes INACTIVE; its running
    /// tasks are not touched.
    pub fn deregister_task_definition(
        &self,
        req: TaskDefinitionRequest,
    ) -> Result<TaskDefinitionResponse, ControlError> {
        let r = req
            .task_definition
            .ok_or_else(|| ControlError::invalid("taskDefinition", "is required"))?;
        let (family, revision) =
            arn::task_definition_ref(&r).map_err(|e| ControlError::invalid("taskDefinition", e))?;
        let Some(revision) = revision else {
            return Err(ControlError::invalid(
                "taskDefinition",
                format!("`{r}` names no revision (family:revision or an ARN)"),
            ));
        };
        let key = task_definition_key(family, revision);
        let up = self
            .store
            .update(|txn| -> Result<TaskDefinition, ControlError> {
                let mut td = txn
                    .get::<TaskDefinition>(&key)?
                    .ok_or_else(|| {
                        ControlError::Client(format!(
                            "taskDefinition: task definition `{r}` not found"
                        ))
                    })?
                    .value;
                if td.status == TaskDefinitionStatus::Active {
                    td.status = TaskDefinitionStatus::Inactive;
                    td.deregistered_at = Some(now());
                    txn.put(&td)?;
                }
                Ok(td)
            })?;
        Ok(TaskDefinitionResponse {
            task_definition: up.value,
            tags: Vec::new(),
        })
    }

    /// ListTaskDefinitionFamilies: ACTIVE (a revision is ACTIVE), INACTIVE
    /// (none is) or ALL.
    pub fn list_task_definition_families(
        &self,
        req: ListTaskDefinitionsRequest,
    ) -> Result<ListTaskDefinitionFamiliesResponse, ControlError> {
        let status = req.status.as_deref().unwrap_or("ACTIVE");
        if !matches!(status, "ACTIVE" | "INACTIVE" | "ALL") {
            return Err(ControlError::invalid(
                "status",
                format!("`{status}` is not one of ACTIVE, INACTIVE, ALL"),
            ));
        }
        let txn = self.store.begin()?;
        let prefix = req.family_prefix.clone().unwrap_or_default();
        let mut families: BTreeMap<String, bool> = BTreeMap::new();
        for t in all_with_prefix::<TaskDefinition>(&txn, &prefix)? {
            *families.entry(t.value.family).or_default() |=
                t.value.status == TaskDefinitionStatus::Active;
        }
        let items: Vec<(String, String)> = families
            .into_iter()
            .filter(|(_, active)| match status {
                "ACTIVE" => *active,
                "INACTIVE" => !*active,
                _ => true,
            })
            .map(|(f, _)| (f.clone(), f))
            .collect();
        let (families, next_token) =
            paginate(items, req.next_token.as_deref(), req.max_results, false)?;
        Ok(ListTaskDefinitionFamiliesResponse {
            families,
            next_token,
        })
    }
}
