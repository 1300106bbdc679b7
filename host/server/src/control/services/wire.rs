//! The wire types of the service operations: requests as ECS's awsJson
//! bodies, responses as ECS returns them.

use berth_core::model::{
    DeploymentConfiguration, PlacementConstraint, PlacementStrategy, SchedulingStrategy, Service,
    Tag,
};
use serde::{Deserialize, Serialize};

use super::super::types::Failure;

// ---------------------------------------------------------------- requests

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CreateServiceRequest {
    pub cluster: Option<String>,
    pub service_name: Option<String>,
    pub task_definition: Option<String>,
    pub desired_count: Option<i64>,
    pub scheduling_strategy: Option<SchedulingStrategy>,
    pub deployment_configuration: Option<DeploymentConfiguration>,
    pub placement_constraints: Vec<PlacementConstraint>,
    pub placement_strategy: Vec<PlacementStrategy>,
    pub health_check_grace_period_seconds: Option<i64>,
    pub launch_type: Option<String>,
    pub tags: Vec<Tag>,
    pub client_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UpdateServiceRequest {
    pub cluster: Option<String>,
    pub service: Option<String>,
    pub desired_count: Option<i64>,
    pub task_definition: Option<String>,
    pub deployment_configuration: Option<DeploymentConfiguration>,
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    pub placement_strategy: Option<Vec<PlacementStrategy>>,
    pub force_new_deployment: Option<bool>,
    pub health_check_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeleteServiceRequest {
    pub cluster: Option<String>,
    pub service: Option<String>,
    pub force: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DescribeServicesRequest {
    pub cluster: Option<String>,
    pub services: Vec<String>,
    pub include: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListServicesRequest {
    pub cluster: Option<String>,
    pub launch_type: Option<String>,
    pub scheduling_strategy: Option<SchedulingStrategy>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceResponse {
    pub service: Service,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServicesResponse {
    pub services: Vec<Service>,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesResponse {
    pub service_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}
