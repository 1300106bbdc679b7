//! Error enums of the policy host, one per operation.

/// Why a component was not installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The bytes are not a WebAssembly component.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component does not validate or compile.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// It imports something outside the allow-list (wasi:io, wasi:cli, berth's logger and names).
    #[error(
        "forbidden import `{0}`: a policy may import only wasi:io, wasi:cli, berth:placement/logger and berth:placement/names"
    )]
    ForbiddenImport(String),
    /// It implements another world, another version, or lacks an export.
    #[error("wrong world: {0}")]
    WrongWorld(String),
    /// The policy trapped or misbehaved when asked for its info.
    #[error("policy failed when asked for its info: {0}")]
    Info(String),
    /// The engine could not be set up.
    #[error("policy engine: {0}")]
    Engine(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

/// The kind of a failed decision, the key of the failure counters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The policy trapped (panic, unreachable, bad memory access...).
    Trap,
    /// The call ran past its deadline and was interrupted.
    Deadline,
    /// The policy tried to grow its memory past the limit.
    MemoryLimit,
    /// The answer named an unknown instance, one the task does not fit on,
    /// or the wrong number of answers.
    InvalidAnswer,
    /// A fresh instance could not be created or synced.
    Instantiate,
}

impl FailureKind {
    /// Every kind, in counter order.
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Trap,
        FailureKind::Deadline,
        FailureKind::MemoryLimit,
        FailureKind::InvalidAnswer,
        FailureKind::Instantiate,
    ];

    /// Stable name, as in counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::InvalidAnswer => "invalid-answer",
            FailureKind::Instantiate => "instantiate",
        }
    }
}

/// A failed decision: its kind and a reason for the event log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy {policy} failed ({}): {reason}", kind.as_str())]
pub struct DecisionError {
    /// The policy's sha256.
    pub policy: String,
    /// What went wrong.
    pub kind: FailureKind,
    /// Details.
    pub reason: String,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Installing failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// No policy has this id (sha256) or name.
    #[error("no policy `{0}`")]
    NotFound(String),
    /// A name (or sha256 prefix) that matches several installed policies.
    #[error("{}", ambiguous(given, candidates))]
    Ambiguous {
        /// What the caller gave.
        given: String,
        /// The matches: (name, version, sha256), in version order.
        candidates: Vec<(String, String, String)>,
    },
    /// A policy still bound to a scope cannot be removed.
    #[error("policy `{policy}` is in use by {}; deactivate it there first", scopes.join(", "))]
    InUse {
        /// The policy.
        policy: String,
        /// Where it is active.
        scopes: Vec<String>,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

/// `ambiguous: zone-guard 0.1.0 (c3ff40c8...), 0.2.0 (9b1e07aa...)`, each
/// policy's name given once per run of the same name.
fn ambiguous(given: &str, candidates: &[(String, String, String)]) -> String {
    let mut parts = Vec::new();
    let mut last_name: Option<&str> = None;
    for (name, version, sha) in candidates {
        let short = sha.get(..8).unwrap_or(sha);
        if last_name == Some(name.as_str()) {
            parts.push(format!("{version} ({short}...)"));
        } else {
            parts.push(format!("{name} {version} ({short}...)"));
        }
        last_name = Some(name);
    }
    format!(
        "ambiguous: {}; `{given}` matches {} installed policies: name one as NAME@VERSION or by a sha256 prefix of 8 or more characters",
        parts.join(", "),
        candidates.len()
    )
}
