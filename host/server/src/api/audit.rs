//! What the API records of a call: which calls are audited (the mutating
//! ones) and what they acted on.

use serde_json::Value;

use crate::control::audit::AuditEvent;

/// Calls that change nothing: every `Describe*`, `List*` and `Get*`.
pub(super) fn is_mutating(operation: &str) -> bool {
    !["Describe", "List", "Get"]
        .iter()
        .any(|p| operation.starts_with(p))
}

/// Request fields that name what a call acts on (ARNs or names, as given).
const REQUEST_TARGETS: &[&str] = &[
    "cluster",
    "service",
    "task",
    "taskDefinition",
    "containerInstance",
    "containerInstances",
    "tasks",
    "family",
    "policy",
    "name",
];

/// Answer fields that hold the ARNs of what a call made or changed.
const ANSWER_TARGETS: &[&str] = &[
    "clusterArn",
    "serviceArn",
    "taskArn",
    "taskDefinitionArn",
    "containerInstanceArn",
    "sha256",
];

/// At most this many targets an entry (a RunTask of 10 tasks names 10
/// tasks, their cluster, definition and instances).
const MAX_TARGETS: usize = 50;

/// The targets of a call: named in its request, then made or changed in
/// its answer (none for a failed call), each once.
pub(super) fn targets(request: &[u8], answer: Option<&[u8]>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(request) {
        for field in REQUEST_TARGETS {
            match req.get(*field) {
                Some(Value::String(s)) => push(&mut out, s),
                Some(Value::Array(a)) => {
                    for v in a {
                        if let Value::String(s) = v {
                            push(&mut out, s);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(answer) = answer
        && let Ok(v) = serde_json::from_slice::<Value>(answer)
    {
        collect_answer(&v, &mut out, 0);
    }
    out
}

fn push(out: &mut Vec<String>, s: &str) {
    if out.len() < MAX_TARGETS && !s.is_empty() && !out.iter().any(|t| t == s) {
        // A target is quoted from the request: bounded like error messages.
        out.push(berth_core::quote::bounded(s.to_owned(), 2048));
    }
}

/// [`ANSWER_TARGETS`] anywhere in `v`, a few levels deep (tasks in a list,
/// their fields), not inside containers or events.
fn collect_answer(v: &Value, out: &mut Vec<String>, depth: u32) {
    if depth > 3 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(s) if ANSWER_TARGETS.contains(&k.as_str()) => push(out, s),
                    Value::Object(_) | Value::Array(_)
                        if !matches!(k.as_str(), "containers" | "events" | "deployments") =>
                    {
                        collect_answer(v, out, depth + 1);
                    }
                    _ => {}
                }
            }
        }
        Value::Array(a) => {
            for v in a {
                collect_answer(v, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The entry of one answered call.
pub(super) struct Call<'a> {
    pub access_key_id: &'a str,
    pub operation: &'a str,
    pub request_id: &'a str,
    pub request: &'a [u8],
    /// The answer's JSON, or the error's code and message.
    pub outcome: Result<&'a [u8], (&'a str, &'a str)>,
}

impl Call<'_> {
    pub(super) fn event(&self) -> AuditEvent {
        let (answer, result, error_message) = match self.outcome {
            Ok(a) => (Some(a), "Success".to_owned(), None),
            Err((code, message)) => (None, code.to_owned(), Some(message.to_owned())),
        };
        AuditEvent {
            time: crate::control::now(),
            access_key_id: self.access_key_id.to_owned(),
            operation: self.operation.to_owned(),
            targets: targets(self.request, answer),
            result,
            error_message,
            request_id: self.request_id.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_change_nothing_and_are_not_audited() {
        assert!(is_mutating("RunTask"));
        assert!(is_mutating("InstallPolicy"));
        assert!(!is_mutating("DescribeTasks"));
        assert!(!is_mutating("ListAuditEvents"));
        assert!(!is_mutating("GetTaskLogs"));
    }

    #[test]
    fn targets_come_from_the_request_then_the_answer_once_each() {
        let req = br#"{"cluster":"prod","taskDefinition":"web:1","count":2}"#;
        let answer = br#"{"tasks":[
            {"taskArn":"arn:t1","clusterArn":"arn:c","containers":[{"taskArn":"arn:t1","containerArn":"arn:x"}]},
            {"taskArn":"arn:t2","clusterArn":"arn:c"}],"failures":[]}"#;
        assert_eq!(
            targets(req, Some(&answer[..])),
            // The answer's fields in key order (clusterArn before taskArn).
            ["prod", "web:1", "arn:c", "arn:t1", "arn:t2"]
        );
        assert_eq!(targets(req, None), ["prod", "web:1"]);
        assert!(targets(b"not json", None).is_empty());
    }
}
