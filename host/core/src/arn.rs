//! ECS-style ARNs: `arn:aws:ecs:<region>:<account>:<kind>/<rest>`.
//!
//! berth is not AWS, but clients (the AWS CLI, boto3, Terraform) expect ARNs
//! of this shape, so berth mints them with a configurable region and account.

use std::fmt;

/// The region and account berth writes into the ARNs it mints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnContext {
    pub region: String,
    pub account: String,
}

impl Default for ArnContext {
    fn default() -> Self {
        ArnContext {
            region: "local".to_owned(),
            account: "000000000000".to_owned(),
        }
    }
}

impl ArnContext {
    fn arn(&self, rest: fmt::Arguments<'_>) -> String {
        format!("arn:aws:ecs:{}:{}:{rest}", self.region, self.account)
    }
    pub fn cluster(&self, name: &str) -> String {
        self.arn(format_args!("cluster/{name}"))
    }
    pub fn task_definition(&self, family: &str, revision: u32) -> String {
        self.arn(format_args!("task-definition/{family}:{revision}"))
    }
    pub fn task(&self, cluster: &str, id: &str) -> String {
        self.arn(format_args!("task/{cluster}/{id}"))
    }
    pub fn container(&self, cluster: &str, task_id: &str, name: &str) -> String {
        self.arn(format_args!("container/{cluster}/{task_id}/{name}"))
    }
    pub fn service(&self, cluster: &str, name: &str) -> String {
        self.arn(format_args!("service/{cluster}/{name}"))
    }
    pub fn container_instance(&self, cluster: &str, id: &str) -> String {
        self.arn(format_args!("container-instance/{cluster}/{id}"))
    }
}

/// The resource part of an ARN (`cluster/default`), or the input unchanged
/// when it is not an ARN, so callers accept both names and ARNs as ECS does.
pub fn resource_of(name_or_arn: &str) -> &str {
    if name_or_arn.starts_with("arn:") {
        // arn:partition:service:region:account:resource
        name_or_arn.splitn(6, ':').nth(5).unwrap_or(name_or_arn)
    } else {
        name_or_arn
    }
}

/// A cluster's name from its name or ARN.
pub fn cluster_name(name_or_arn: &str) -> &str {
    let r = resource_of(name_or_arn);
    r.strip_prefix("cluster/").unwrap_or(r)
}

/// The last path segment of an ARN's resource (a task's or instance's id,
/// a service's name), or the input when it is not an ARN.
pub fn last_segment(name_or_arn: &str) -> &str {
    let r = resource_of(name_or_arn);
    r.rsplit('/').next().unwrap_or(r)
}

/// `family`, `family:revision` or a task definition ARN, split into family
/// and optional revision. A revision that is not a number is an error.
pub fn task_definition_ref(s: &str) -> Result<(&str, Option<u32>), String> {
    let r = resource_of(s);
    let r = r.strip_prefix("task-definition/").unwrap_or(r);
    match r.rsplit_once(':') {
        None => Ok((r, None)),
        Some((family, rev)) => rev
            .parse::<u32>()
            .map(|n| (family, Some(n)))
            .map_err(|_| format!("`{s}`: revision `{rev}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_and_parses() {
        let c = ArnContext::default();
        let arn = c.cluster("default");
        assert_eq!(arn, "arn:aws:ecs:local:000000000000:cluster/default");
        assert_eq!(cluster_name(&arn), "default");
        assert_eq!(cluster_name("prod"), "prod");
        assert_eq!(last_segment(&c.task("default", "abc")), "abc");
        assert_eq!(
            task_definition_ref(&c.task_definition("web", 3)),
            Ok(("web", Some(3)))
        );
        assert_eq!(task_definition_ref("web"), Ok(("web", None)));
        assert_eq!(task_definition_ref("web:7"), Ok(("web", Some(7))));
        assert!(task_definition_ref("web:x").is_err());
    }
}
