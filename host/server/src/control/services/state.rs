//! The table `berth_service_state`: the service scheduler's memory of each
//! service between passes ([`SchedulerState`], which the reconciler reads
//! and returns), one record per service ARN.

use std::ops::{Deref, DerefMut};

use berth_core::reconcile::SchedulerState;
use berth_store::Record;
use serde::{Deserialize, Serialize};

/// A service's [`SchedulerState`] as stored: the same JSON, keyed by the
/// service's ARN.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceState(pub SchedulerState);

impl ServiceState {
    /// The memory of a service the scheduler has not seen yet.
    pub fn new(service_arn: String) -> ServiceState {
        ServiceState(SchedulerState {
            service_arn,
            ..SchedulerState::default()
        })
    }
}

impl Deref for ServiceState {
    type Target = SchedulerState;
    fn deref(&self) -> &SchedulerState {
        &self.0
    }
}

impl DerefMut for ServiceState {
    fn deref_mut(&mut self) -> &mut SchedulerState {
        &mut self.0
    }
}

impl Record for ServiceState {
    const TABLE: &'static str = "berth_service_state";
    fn key(&self) -> String {
        self.0.service_arn.clone()
    }
}
