//! What each scope's placement policy was before: every ActivatePolicy and
//! DeactivatePolicy through the control layer appends the new binding to
//! the scope's history (the table `berth_policy_history`), so going back to
//! the previous policy is one call (`Berth_20261125.RollBackPolicy`, the
//! console's button) rather than an operator remembering a sha256.
//!
//! A history is written after the binding's own commit (the registry
//! commits bindings itself): a failed history write is logged, and the
//! activation stands. Its first entry is the binding found before the first
//! change recorded (a CreateService tag's, or none), so the first rollback
//! of a scope has somewhere to go.

use berth_policy::{Fallback, Scope};
use berth_store::Record;
use serde::{Deserialize, Serialize};

use super::policies::{ActivatePolicyRequest, DeactivatePolicyRequest, fallback_word};
use super::{Control, ControlError, now};

/// Entries kept per scope (the oldest go first).
const KEPT: usize = 20;

/// One binding a scope had: a policy with its fallback, or none (the
/// native strategies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The policy's sha256, None for the native strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `NAME@VERSION` when it was bound, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `native` or `pending`, with a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// When it was bound (epoch seconds; 0 for a binding found, not made).
    pub at: f64,
}

impl HistoryEntry {
    /// No policy: the native strategies (found, not made).
    const NATIVE: HistoryEntry = HistoryEntry {
        policy: None,
        label: None,
        fallback: None,
        at: 0.0,
    };
}

/// A scope's bindings, oldest first; the last is the one in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyHistory {
    /// `cluster/NAME` or `service/CLUSTER/NAME`.
    pub scope: String,
    pub entries: Vec<HistoryEntry>,
}

impl Record for PolicyHistory {
    const TABLE: &'static str = "berth_policy_history";
    fn key(&self) -> String {
        self.scope.clone()
    }
}

#[derive(Debug, Serialize)]
pub struct ListPolicyHistoryResponse {
    pub histories: Vec<PolicyHistory>,
}

#[derive(Debug, Serialize)]
pub struct RollBackPolicyResponse {
    pub scope: String,
    /// The binding now in force.
    pub now: HistoryEntry,
}

impl Control {
    /// The binding of `scope` as the registry holds it now.
    fn binding_now(&self, scope: &str) -> Result<HistoryEntry, ControlError> {
        let reg = self.registry()?;
        let p = reg.list().into_iter().find_map(|p| {
            let i = p.active_in.iter().position(|s| s == scope)?;
            Some((
                p.sha256,
                format!("{}@{}", p.name, p.version),
                p.fallbacks[i],
            ))
        });
        Ok(match p {
            Some((sha, label, f)) => HistoryEntry {
                policy: Some(sha),
                label: Some(label),
                fallback: Some(fallback_word(f).to_owned()),
                at: 0.0,
            },
            None => HistoryEntry::NATIVE,
        })
    }

    /// Appends `entry` to `scope`'s history; `before` is the binding in
    /// force before the change, recorded first when the history is new.
    /// Logged, not failed: the binding itself has committed.
    pub(super) fn remember_binding(&self, scope: &str, before: HistoryEntry, entry: HistoryEntry) {
        let written = self.store.update(|txn| {
            let mut h = match txn.get::<PolicyHistory>(scope)? {
                Some(h) => h.value,
                None => PolicyHistory {
                    scope: scope.to_owned(),
                    entries: vec![before.clone()],
                },
            };
            h.entries.push(entry.clone());
            let extra = h.entries.len().saturating_sub(KEPT);
            h.entries.drain(..extra);
            txn.put(&h)
        });
        if let Err(e) = written {
            tracing::warn!(scope, error = %e, "recording the policy history failed; RollBackPolicy will not know this change");
        }
    }

    /// The entry for a binding made now.
    pub(super) fn entry_now(&self, policy: Option<(&str, String)>, f: Fallback) -> HistoryEntry {
        HistoryEntry {
            fallback: policy.as_ref().map(|_| fallback_word(f).to_owned()),
            policy: policy.as_ref().map(|(sha, _)| (*sha).to_owned()),
            label: policy.map(|(_, label)| label),
            at: now(),
        }
    }

    /// What [`Control::remember_binding`] needs to know before a change.
    pub(super) fn binding_before(&self, scope: &Scope) -> HistoryEntry {
        self.binding_now(&scope.key())
            .unwrap_or(HistoryEntry::NATIVE)
    }

    /// ListPolicyHistory: every scope's bindings, oldest first.
    pub fn list_policy_history(
        &self,
        _req: serde_json::Value,
    ) -> Result<ListPolicyHistoryResponse, ControlError> {
        let txn = self.store.begin()?;
        let histories = super::collect_pages(|p| txn.list::<PolicyHistory>(p))?
            .into_iter()
            .map(|v| v.value)
            .collect();
        Ok(ListPolicyHistoryResponse { histories })
    }

    /// RollBackPolicy: the scope's binding before its last recorded change,
    /// through ActivatePolicy (or DeactivatePolicy, when no policy was
    /// active then); that is itself a change, so two rollbacks in a row
    /// come back to where they started.
    pub fn roll_back_policy(
        &self,
        req: DeactivatePolicyRequest,
    ) -> Result<RollBackPolicyResponse, ControlError> {
        let scope = self.scope_of(req.cluster.as_deref(), req.service.as_deref())?;
        let key = scope.key();
        let history = self.store.begin()?.get::<PolicyHistory>(&key)?;
        let Some(previous) = history.and_then(|h| {
            let n = h.value.entries.len();
            (n >= 2).then(|| h.value.entries[n - 2].clone())
        }) else {
            return Err(ControlError::Client(format!(
                "{key}: no earlier policy is recorded to go back to"
            )));
        };
        match &previous.policy {
            Some(sha) => {
                self.activate_policy(ActivatePolicyRequest {
                    policy: Some(sha.clone()),
                    cluster: req.cluster,
                    service: req.service,
                    fallback: previous.fallback.clone(),
                })
                .map_err(|e| match e {
                    ControlError::PolicyNotFound(_) => ControlError::PolicyNotFound(format!(
                        "{key}: the previous policy {} ({sha}) is no longer installed",
                        previous.label.as_deref().unwrap_or("?")
                    )),
                    e => e,
                })?;
            }
            None => {
                self.deactivate_policy(req)?;
            }
        }
        Ok(RollBackPolicyResponse {
            now: self.binding_now(&key)?,
            scope: key,
        })
    }
}
