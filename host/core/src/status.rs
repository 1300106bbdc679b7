//! The closed sets of ECS's status words, as enums. Each serialises to
//! exactly ECS's spelling, so records and wire JSON read as they always did;
//! code compares variants, never strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A word that is not one of an enum's ECS spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {kind}")]
pub struct UnknownValue {
    /// What was expected, e.g. "task status".
    pub kind: &'static str,
    pub value: String,
}

/// An enum with one ECS spelling per variant: serde, `as_str`, `Display`
/// and `FromStr` all use that spelling.
macro_rules! ecs_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($kind:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// ECS's spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: $kind, value: s.to_owned() }),
                }
            }
        }
    };
}

ecs_enum! {
    /// A cluster's status.
    ClusterStatus ("cluster status") {
        Active = "ACTIVE",
        /// Deleted.
        Inactive = "INACTIVE",
    }
}

ecs_enum! {
    /// A task definition revision's status.
    TaskDefinitionStatus ("task definition status") {
        Active = "ACTIVE",
        /// After DeregisterTaskDefinition.
        Inactive = "INACTIVE",
        /// Never set by berth; a ListTaskDefinitions filter value.
        DeleteInProgress = "DELETE_IN_PROGRESS",
    }
}

ecs_enum! {
    /// A task's `lastStatus`: the states berth's tasks pass through (ECS's
    /// PROVISIONING, ACTIVATING, DEACTIVATING and DEPROVISIONING are never
    /// reached without ENIs and load balancers).
    TaskStatus ("task status") {
        Pending = "PENDING",
        Running = "RUNNING",
        Stopping = "STOPPING",
        Stopped = "STOPPED",
    }
}

ecs_enum! {
    /// A task's `desiredStatus`: what its `lastStatus` chases.
    DesiredStatus ("desired status") {
        Running = "RUNNING",
        Stopped = "STOPPED",
    }
}

ecs_enum! {
    /// A container's `lastStatus`.
    ContainerStatus ("container status") {
        Pending = "PENDING",
        Running = "RUNNING",
        Stopped = "STOPPED",
    }
}

ecs_enum! {
    /// A container's or a task's `healthStatus`.
    HealthStatus ("health status") {
        Healthy = "HEALTHY",
        Unhealthy = "UNHEALTHY",
        Unknown = "UNKNOWN",
    }
}

ecs_enum! {
    /// Why a task stopped (`stopCode`).
    StopCode ("stop code") {
        TaskFailedToStart = "TaskFailedToStart",
        EssentialContainerExited = "EssentialContainerExited",
        UserInitiated = "UserInitiated",
        ServiceSchedulerInitiated = "ServiceSchedulerInitiated",
        /// The task's host is going away; berth: it was lost (its agent
        /// stopped reporting) past the grace.
        TerminationNotice = "TerminationNotice",
    }
}

ecs_enum! {
    /// A service's status.
    ServiceStatus ("service status") {
        Active = "ACTIVE",
        /// Deleted, its tasks still stopping.
        Draining = "DRAINING",
        Inactive = "INACTIVE",
    }
}

ecs_enum! {
    /// A deployment's status within its service.
    DeploymentStatus ("deployment status") {
        /// The deployment the service moves to.
        Primary = "PRIMARY",
        /// An older deployment whose tasks are still running.
        Active = "ACTIVE",
        Inactive = "INACTIVE",
    }
}

ecs_enum! {
    /// A deployment's `rolloutState`.
    RolloutState ("rollout state") {
        InProgress = "IN_PROGRESS",
        Completed = "COMPLETED",
        Failed = "FAILED",
    }
}

ecs_enum! {
    /// A container instance's status.
    InstanceStatus ("container instance status") {
        Active = "ACTIVE",
        /// Takes no new placements; service tasks move off.
        Draining = "DRAINING",
        /// Deregistered.
        Inactive = "INACTIVE",
        /// ECS's registration states: never set by berth, accepted as
        /// ListContainerInstances filters.
        Registering = "REGISTERING",
        Deregistering = "DEREGISTERING",
        RegistrationFailed = "REGISTRATION_FAILED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant serialises to its ECS word, parses back from it (JSON
    /// and `FromStr`), and `expected` lists the words in order.
    fn round_trips<T>(all: &[T], expected: &[&str])
    where
        T: Copy + PartialEq + fmt::Debug + fmt::Display + FromStr + Serialize,
        T: serde::de::DeserializeOwned,
    {
        let words: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(words, expected);
        for (v, word) in all.iter().zip(expected) {
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{word}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *v);
            assert!(word.parse::<T>().is_ok_and(|p| p == *v));
        }
        assert!("running".parse::<T>().is_err(), "words are case-sensitive");
        assert!(serde_json::from_str::<T>("\"NOPE\"").is_err());
    }

    #[test]
    fn cluster_status_round_trips() {
        round_trips(ClusterStatus::ALL, &["ACTIVE", "INACTIVE"]);
    }

    #[test]
    fn task_definition_status_round_trips() {
        round_trips(
            TaskDefinitionStatus::ALL,
            &["ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"],
        );
    }

    #[test]
    fn task_status_round_trips() {
        round_trips(
            TaskStatus::ALL,
            &["PENDING", "RUNNING", "STOPPING", "STOPPED"],
        );
    }

    #[test]
    fn desired_status_round_trips() {
        round_trips(DesiredStatus::ALL, &["RUNNING", "STOPPED"]);
    }

    #[test]
    fn container_status_round_trips() {
        round_trips(ContainerStatus::ALL, &["PENDING", "RUNNING", "STOPPED"]);
    }

    #[test]
    fn health_status_round_trips() {
        round_trips(HealthStatus::ALL, &["HEALTHY", "UNHEALTHY", "UNKNOWN"]);
    }

    #[test]
    fn stop_code_round_trips() {
        round_trips(
            StopCode::ALL,
            &[
                "TaskFailedToStart",
                "EssentialContainerExited",
                "UserInitiated",
                "ServiceSchedulerInitiated",
                "TerminationNotice",
            ],
        );
    }

    #[test]
    fn service_status_round_trips() {
        round_trips(ServiceStatus::ALL, &["ACTIVE", "DRAINING", "INACTIVE"]);
    }

    #[test]
    fn deployment_status_round_trips() {
        round_trips(DeploymentStatus::ALL, &["PRIMARY", "ACTIVE", "INACTIVE"]);
    }

    #[test]
    fn rollout_state_round_trips() {
        round_trips(RolloutState::ALL, &["IN_PROGRESS", "COMPLETED", "FAILED"]);
    }

    #[test]
    fn instance_status_round_trips() {
        round_trips(
            InstanceStatus::ALL,
            &[
                "ACTIVE",
                "DRAINING",
                "INACTIVE",
                "REGISTERING",
                "DEREGISTERING",
                "REGISTRATION_FAILED",
            ],
        );
    }

    #[test]
    fn unknown_word_names_its_kind() {
        let e = "BOGUS".parse::<InstanceStatus>().unwrap_err();
        assert_eq!(e.to_string(), "`BOGUS` is not a container instance status");
    }
}
