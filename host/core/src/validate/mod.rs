//! Input validation: every error names the offending field by its JSON path
//! and the value that was wrong, e.g.
//! `containerDefinitions[1].portMappings[0].containerPort: 70000 is not a port number`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::de::DeserializeOwned;

mod options;
#[cfg(test)]
mod options_tests;

pub use options::{BERTH_LABEL_PREFIX, LOG_DRIVERS, valid_secret_name};

use crate::quote::{Quoted, bounded};

/// Bytes of one error's message at most (the offending value inside is
/// quoted cut shorter still, see [`Quoted`]).
const MAX_MESSAGE: usize = 512;
/// Errors an [`InvalidInput`] lists before it only counts the rest.
const MAX_ERRORS_SHOWN: usize = 20;

use crate::model::{
    ContainerDefinition, DependencyCondition, NetworkMode, PlacementConstraint,
    PlacementConstraintType, PlacementStrategy, PlacementStrategyType, RegisterTaskDefinition,
};

/// One thing wrong with an input: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `containerDefinitions[0].image`; empty for the whole input.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything wrong with an input, in the order found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidInput(pub Vec<FieldError>);

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().take(MAX_ERRORS_SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        match self.0.len().saturating_sub(MAX_ERRORS_SHOWN) {
            0 => Ok(()),
            more => write!(f, "; and {more} more"),
        }
    }
}

impl InvalidInput {
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidInput(vec![FieldError {
            path: path.into(),
            message: message.into(),
        }])
    }
}

/// Deserialise JSON, naming the field on a type error (where serde alone
/// would only give a line and column).
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, InvalidInput> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        InvalidInput(vec![FieldError {
            path,
            message: bounded(e.into_inner().to_string(), MAX_MESSAGE),
        }])
    })
}

/// Collects errors under a path prefix.
struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: bounded(message.into(), MAX_MESSAGE),
        });
    }
    fn range(&mut self, path: &str, v: Option<u32>, lo: u32, hi: u32) {
        if let Some(v) = v
            && (v < lo || v > hi)
        {
            self.err(path, format!("{v} is out of range {lo}-{hi}"));
        }
    }
    fn finish(self) -> Result<(), InvalidInput> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(InvalidInput(self.errors))
        }
    }
}

/// ECS's rule for family and container names.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Largest number of containers in one task definition, as in ECS.
pub const MAX_CONTAINERS: usize = 10;
/// Largest number of placement constraints on one task, the task definition's included.
pub const MAX_CONSTRAINTS: usize = 10;
/// Largest number of chained placement strategies.
pub const MAX_STRATEGIES: usize = 5;

/// Task-level CPU: `"256"` units or `"0.25 vCPU"`.
pub fn parse_task_cpu(s: &str) -> Option<u32> {
    parse_size(s, "vcpu", 4096.0)
}

/// Task-level memory: `"512"` MiB or `"1 GB"` / `"1GB"`.
pub fn parse_task_memory(s: &str) -> Option<u32> {
    parse_size(s, "gb", 4_000_000.0)
}

/// A plain integer, or a positive number (at most `max`) followed by `unit`
/// (case-insensitive) meaning 1024 of the plain units, as ECS writes sizes.
fn parse_size(s: &str, unit: &str, max: f64) -> Option<u32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    let v: f64 = lower.strip_suffix(unit)?.trim().parse().ok()?;
    (v.is_finite() && v > 0.0 && v <= max).then(|| (v * 1024.0).round() as u32)
}

/// Validate a RegisterTaskDefinition request. Nothing is changed on error.
pub fn task_definition(td: &RegisterTaskDefinition) -> Result<(), InvalidInput> {
    let mut c = Check { errors: Vec::new() };
    if !valid_name(&td.family) {
        c.err(
            "family",
            format!(
                "`{}` must be 1-255 letters, digits, hyphens or underscores",
                Quoted(&td.family)
            ),
        );
    }
    let task_cpu = td.cpu.as_deref().map(|s| (s, parse_task_cpu(s)));
    if let Some((s, None)) = task_cpu {
        c.err(
            "cpu",
            format!("`{s}` is not CPU units (\"256\") or vCPUs (\"0.25 vCPU\")"),
        );
    }
    let task_memory = td.memory.as_deref().and_then(parse_task_memory);
    if let (Some(s), None) = (td.memory.as_deref(), task_memory) {
        c.err(
            "memory",
            format!("`{s}` is not MiB (\"512\") or GB (\"1 GB\")"),
        );
    }
    let defs = &td.container_definitions;
    if defs.is_empty() {
        c.err(
            "containerDefinitions",
            "at least one container definition is required",
        );
    }
    if defs.len() > MAX_CONTAINERS {
        c.err(
            "containerDefinitions",
            format!(
                "{} containers; at most {MAX_CONTAINERS} are allowed",
                defs.len()
            ),
        );
        // Refused already: checking each of an unbounded list of
        // containers against the others is work for nobody.
        return c.finish();
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, d) in defs.iter().enumerate() {
        if let Some(first) = names.insert(d.name.as_str(), i) {
            c.err(
                format!("containerDefinitions[{i}].name"),
                format!(
                    "`{}` is already the name of containerDefinitions[{first}]",
                    d.name
                ),
            );
        }
    }
    let volumes: BTreeSet<&str> = td.volumes.iter().map(|v| v.name.as_str()).collect();
    for (i, v) in td.volumes.iter().enumerate() {
        if !valid_name(&v.name) {
            c.err(
                format!("volumes[{i}].name"),
                format!(
                    "`{}` must be 1-255 letters, digits, hyphens or underscores",
                    Quoted(&v.name)
                ),
            );
        }
    }
    options::task_level(&mut c, td);
    let network = td.network_mode();
    // Host ports the task's containers reserve, to catch two claiming one port.
    let mut host_ports: HashMap<(u32, crate::model::Protocol), String> = HashMap::new();
    for (i, d) in defs.iter().enumerate() {
        container(
            &mut c,
            i,
            d,
            defs,
            &names,
            &volumes,
            network,
            &mut host_ports,
        );
    }
    if task_memory.is_none()
        && defs
            .iter()
            .any(|d| d.memory.is_none() && d.memory_reservation.is_none())
    {
        for (i, d) in defs.iter().enumerate() {
            if d.memory.is_none() && d.memory_reservation.is_none() {
                c.err(format!("containerDefinitions[{i}].memory"), "memory or memoryReservation is required when the task definition has no task-level memory");
            }
        }
    }
    if let Some(tm) = task_memory {
        let sum: u64 = defs.iter().map(|d| u64::from(d.reserved_memory())).sum();
        if sum > u64::from(tm) {
            c.err(
                "memory",
                format!("task memory {tm} MiB is less than its containers reserve ({sum} MiB)"),
            );
        }
    }
    constraints(
        &mut c,
        "placementConstraints",
        &td.placement_constraints,
        false,
    );
    if td.tags.len() > 50 {
        c.err(
            "tags",
            format!("{} tags; at most 50 are allowed", td.tags.len()),
        );
    }
    c.finish()
}

#[allow(clippy::too_many_arguments)]
fn container(
    c: &mut Check,
    i: usize,
    d: &ContainerDefinition,
    defs: &[ContainerDefinition],
    names: &HashMap<&str, usize>,
    volumes: &BTreeSet<&str>,
    network: NetworkMode,
    host_ports: &mut HashMap<(u32, crate::model::Protocol), String>,
) {
    let p = format!("containerDefinitions[{i}]");
    container_basics(c, &p, d);
    container_ports(c, &p, d, network, host_ports);
    container_environment(c, &p, d);
    if let Some(hc) = &d.health_check {
        container_health_check(c, &p, hc);
    }
    container_dependencies(c, &p, i, d, defs, names);
    container_mounts(c, &p, d, names, volumes);
    container_ulimits(c, &p, d);
    options::container(c, &p, d, network);
}

/// Name, image, memory limits and stop timeout of container `p`.
fn container_basics(c: &mut Check, p: &str, d: &ContainerDefinition) {
    if !valid_name(&d.name) {
        c.err(
            format!("{p}.name"),
            format!(
                "`{}` must be 1-255 letters, digits, hyphens or underscores",
                Quoted(&d.name)
            ),
        );
    }
    if d.image.trim().is_empty() {
        c.err(format!("{p}.image"), "an image is required");
    } else if d.image.chars().any(char::is_whitespace) {
        c.err(
            format!("{p}.image"),
            format!("`{}` contains whitespace", d.image),
        );
    }
    if let Some(m) = d.memory {
        // Docker refuses a hard limit under 6 MiB.
        if m < 6 {
            c.err(
                format!("{p}.memory"),
                format!("{m} MiB is below Docker's minimum of 6 MiB"),
            );
        }
    }
    if let (Some(hard), Some(soft)) = (d.memory, d.memory_reservation)
        && soft > hard
    {
        c.err(
            format!("{p}.memoryReservation"),
            format!("{soft} MiB is more than the hard limit memory {hard} MiB"),
        );
    }
    c.range(&format!("{p}.stopTimeout"), d.stop_timeout, 0, 120);
}

/// Port mappings of container `p`: port numbers, what the network mode
/// allows, and host ports claimed twice within the task.
fn container_ports(
    c: &mut Check,
    p: &str,
    d: &ContainerDefinition,
    network: NetworkMode,
    host_ports: &mut HashMap<(u32, crate::model::Protocol), String>,
) {
    for (j, pm) in d.port_mappings.iter().enumerate() {
        let pp = format!("{p}.portMappings[{j}]");
        if pm.container_port == 0 || pm.container_port > 65535 {
            c.err(
                format!("{pp}.containerPort"),
                format!("{} is not a port number", pm.container_port),
            );
        }
        if let Some(h) = pm.host_port
            && h > 65535
        {
            c.err(
                format!("{pp}.hostPort"),
                format!("{h} is not a port number"),
            );
        }
        match network {
            NetworkMode::None => c.err(
                pp.to_string(),
                "port mappings are not allowed with networkMode none",
            ),
            NetworkMode::Host => {
                if let Some(h) = pm.static_host_port()
                    && h != pm.container_port
                {
                    c.err(
                        format!("{pp}.hostPort"),
                        format!(
                            "{h} must equal containerPort {} with networkMode host",
                            pm.container_port
                        ),
                    );
                }
            }
            NetworkMode::Bridge => {}
        }
        let host = if network == NetworkMode::Host {
            Some(pm.container_port)
        } else {
            pm.static_host_port()
        };
        if let Some(h) = host
            && let Some(other) = host_ports.insert((h, pm.protocol()), pp.clone())
        {
            c.err(
                format!("{pp}.hostPort"),
                format!("host port {h} is already mapped by {other}"),
            );
        }
    }
}

fn container_environment(c: &mut Check, p: &str, d: &ContainerDefinition) {
    for (j, e) in d.environment.iter().enumerate() {
        if e.name.is_empty() || e.name.contains('=') {
            c.err(
                format!("{p}.environment[{j}].name"),
                format!("`{}` is not a variable name", e.name),
            );
        }
    }
}

fn container_health_check(c: &mut Check, p: &str, hc: &crate::model::HealthCheck) {
    let hp = format!("{p}.healthCheck");
    match hc.command.first().map(String::as_str) {
        Some("CMD") | Some("CMD-SHELL") if hc.command.len() >= 2 => {}
        Some("NONE") => {}
        _ => c.err(
            format!("{hp}.command"),
            format!(
                "{:?} must start with \"CMD\" or \"CMD-SHELL\" followed by the command",
                hc.command
            ),
        ),
    }
    c.range(&format!("{hp}.interval"), hc.interval, 5, 300);
    c.range(&format!("{hp}.timeout"), hc.timeout, 2, 60);
    c.range(&format!("{hp}.retries"), hc.retries, 1, 10);
    c.range(&format!("{hp}.startPeriod"), hc.start_period, 0, 300);
}

/// dependsOn of container `i`: targets that exist, conditions they can meet,
/// no cycle.
fn container_dependencies(
    c: &mut Check,
    p: &str,
    i: usize,
    d: &ContainerDefinition,
    defs: &[ContainerDefinition],
    names: &HashMap<&str, usize>,
) {
    for (j, dep) in d.depends_on.iter().enumerate() {
        let dp = format!("{p}.dependsOn[{j}].containerName");
        match names.get(dep.container_name.as_str()) {
            None => c.err(
                dp,
                format!(
                    "`{}` is not a container of this task definition",
                    dep.container_name
                ),
            ),
            Some(&k) if k == i => c.err(
                dp,
                format!("`{}` cannot depend on itself", dep.container_name),
            ),
            Some(&k) => {
                let target = &defs[k];
                match dep.condition {
                    DependencyCondition::Healthy if target.health_check.is_none() => {
                        c.err(dp, format!("`{}` has no healthCheck, so HEALTHY can never hold", dep.container_name))
                    }
                    DependencyCondition::Complete | DependencyCondition::Success if target.essential() => c.err(
                        dp,
                        format!("`{}` is essential; COMPLETE and SUCCESS need a non-essential container", dep.container_name),
                    ),
                    _ => {}
                }
            }
        }
    }
    if let Some(cycle) = dependency_cycle(i, defs, names, &mut 0) {
        c.err(
            format!("{p}.dependsOn"),
            format!("dependency cycle: {cycle}"),
        );
    }
}

/// mountPoints and volumesFrom of container `p`: their volumes and source
/// containers exist in the task definition.
fn container_mounts(
    c: &mut Check,
    p: &str,
    d: &ContainerDefinition,
    names: &HashMap<&str, usize>,
    volumes: &BTreeSet<&str>,
) {
    for (j, m) in d.mount_points.iter().enumerate() {
        match m.source_volume.as_deref() {
            Some(v) if volumes.contains(v) => {}
            Some(v) => c.err(
                format!("{p}.mountPoints[{j}].sourceVolume"),
                format!("`{v}` is not a volume of this task definition"),
            ),
            None => c.err(
                format!("{p}.mountPoints[{j}].sourceVolume"),
                "a source volume is required",
            ),
        }
        if !m
            .container_path
            .as_deref()
            .is_some_and(|s| s.starts_with('/'))
        {
            c.err(
                format!("{p}.mountPoints[{j}].containerPath"),
                "an absolute container path is required",
            );
        }
    }
    for (j, v) in d.volumes_from.iter().enumerate() {
        let name = v.source_container.as_deref().unwrap_or("");
        if !names.contains_key(name) || name == d.name {
            c.err(
                format!("{p}.volumesFrom[{j}].sourceContainer"),
                format!("`{name}` is not another container of this task definition"),
            );
        }
    }
}

fn container_ulimits(c: &mut Check, p: &str, d: &ContainerDefinition) {
    for (j, u) in d.ulimits.iter().enumerate() {
        if u.soft_limit > u.hard_limit {
            c.err(
                format!("{p}.ulimits[{j}].softLimit"),
                format!("{} is more than hardLimit {}", u.soft_limit, u.hard_limit),
            );
        }
    }
}
/// A dependsOn cycle through container `start`, printed as `a -> b -> a`.
/// Only reported from the container that is first in the cycle, so one
/// cycle gives one error. A depth-first search that enters each container
/// once: whether `start` is reachable from a container does not depend on
/// the path taken to it, so a second visit can only repeat the first (and
/// without this, duplicated or fanned-out dependencies make the search
/// exponential in the number of containers). `steps` counts the edges
/// followed.
fn dependency_cycle(
    start: usize,
    defs: &[ContainerDefinition],
    names: &HashMap<&str, usize>,
    steps: &mut usize,
) -> Option<String> {
    struct Walk<'a> {
        start: usize,
        defs: &'a [ContainerDefinition],
        names: &'a HashMap<&'a str, usize>,
        entered: Vec<bool>,
        path: Vec<usize>,
        steps: &'a mut usize,
    }
    impl Walk<'_> {
        fn from(&mut self, at: usize) -> bool {
            for dep in &self.defs[at].depends_on {
                *self.steps += 1;
                let Some(&next) = self.names.get(dep.container_name.as_str()) else {
                    continue;
                };
                if next == at {
                    continue; // self-dependency is reported on its own
                }
                if next == self.start {
                    self.path.push(next);
                    return true;
                }
                if next < self.start || self.entered[next] {
                    continue;
                }
                self.entered[next] = true;
                self.path.push(next);
                if self.from(next) {
                    return true;
                }
                self.path.pop();
            }
            false
        }
    }
    let mut walk = Walk {
        start,
        defs,
        names,
        entered: vec![false; defs.len()],
        path: vec![start],
        steps,
    };
    walk.entered[start] = true;
    walk.from(start).then(|| {
        walk.path
            .iter()
            .map(|&k| defs[k].name.as_str())
            .collect::<Vec<_>>()
            .join(" -> ")
    })
}

/// Validate placement constraints at `path`. `distinct_allowed` is false in
/// task definitions, which take only memberOf (as in ECS).
pub fn constraints(
    c_out: &mut impl ErrorSink,
    path: &str,
    cs: &[PlacementConstraint],
    distinct_allowed: bool,
) {
    if cs.len() > MAX_CONSTRAINTS {
        c_out.push(
            path.to_owned(),
            format!(
                "{} constraints; at most {MAX_CONSTRAINTS} are allowed",
                cs.len()
            ),
        );
    }
    for (i, pc) in cs.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match pc.kind {
            PlacementConstraintType::DistinctInstance => {
                if !distinct_allowed {
                    c_out.push(format!("{p}.type"), "distinctInstance is not allowed in a task definition; give it on RunTask or the service".to_owned());
                }
                if pc.expression.is_some() {
                    c_out.push(
                        format!("{p}.expression"),
                        "distinctInstance takes no expression".to_owned(),
                    );
                }
            }
            PlacementConstraintType::MemberOf => match pc.expression.as_deref() {
                None => c_out.push(
                    format!("{p}.expression"),
                    "memberOf needs an expression".to_owned(),
                ),
                Some(e) => {
                    if let Err(err) = crate::query::parse(e) {
                        c_out.push(format!("{p}.expression"), format!("`{e}`: {err}"));
                    }
                }
            },
        }
    }
}

/// Validate a chain of placement strategies at `path`.
pub fn strategies(c_out: &mut impl ErrorSink, path: &str, ss: &[PlacementStrategy]) {
    if ss.len() > MAX_STRATEGIES {
        c_out.push(
            path.to_owned(),
            format!(
                "{} strategies; at most {MAX_STRATEGIES} are allowed",
                ss.len()
            ),
        );
    }
    for (i, s) in ss.iter().enumerate() {
        let p = format!("{path}[{i}].field");
        let field = s.field.as_deref();
        match s.kind {
            PlacementStrategyType::Binpack => match field {
                Some(f) if f.eq_ignore_ascii_case("cpu") || f.eq_ignore_ascii_case("memory") => {}
                other => c_out.push(
                    p,
                    format!("{other:?}: binpack takes the field cpu or memory"),
                ),
            },
            PlacementStrategyType::Spread => match field {
                Some(f) if crate::placement::SpreadField::parse(f).is_some() => {}
                other => c_out.push(
                    p,
                    format!("{other:?}: spread takes instanceId, host or attribute:NAME"),
                ),
            },
            PlacementStrategyType::Random => {
                if field.is_some() {
                    c_out.push(p, "random takes no field".to_owned());
                }
            }
        }
    }
}

/// Where constraint and strategy checks put their errors, so the same checks
/// serve task definitions and RunTask/CreateService requests.
pub trait ErrorSink {
    fn push(&mut self, path: String, message: String);
}

impl ErrorSink for Check {
    fn push(&mut self, path: String, message: String) {
        self.err(path, message);
    }
}

impl ErrorSink for Vec<FieldError> {
    fn push(&mut self, path: String, message: String) {
        let message = bounded(message, MAX_MESSAGE);
        self.push(FieldError { path, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn register(v: serde_json::Value) -> Result<RegisterTaskDefinition, InvalidInput> {
        let td: RegisterTaskDefinition = from_json(v.to_string().as_bytes())?;
        task_definition(&td)?;
        Ok(td)
    }

    fn err_of(v: serde_json::Value) -> String {
        match register(v) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn base() -> serde_json::Value {
        json!({"family": "web", "containerDefinitions": [
            {"name": "app", "image": "hello:1", "memory": 64, "portMappings": [{"containerPort": 80}]},
            {"name": "side", "image": "side:1", "memoryReservation": 16, "essential": false}]})
    }

    /// Ten containers, each depending three times on every later one: the
    /// search for cycles follows each dependency edge at most once per
    /// starting container, where a plain depth-first search follows one
    /// per path (3^9 paths from the first container; with eight copies the
    /// request of issue 12 took 7.4 s of CPU).
    #[test]
    fn the_dependency_cycle_search_is_linear_in_the_edges() {
        let n = 10;
        let defs: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let deps: Vec<serde_json::Value> = (i + 1..n)
                    .flat_map(|j| {
                        std::iter::repeat_n(
                            json!({"containerName": format!("c{j}"), "condition": "START"}),
                            3,
                        )
                    })
                    .collect();
                json!({"name": format!("c{i}"), "image": "i", "memory": 16, "dependsOn": deps})
            })
            .collect();
        let td: RegisterTaskDefinition = from_json(
            json!({"family": "dep", "containerDefinitions": defs})
                .to_string()
                .as_bytes(),
        )
        .expect("parses");
        task_definition(&td).expect("no cycle, valid");
        let names: HashMap<&str, usize> = td
            .container_definitions
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.as_str(), i))
            .collect();
        let edges: usize = td
            .container_definitions
            .iter()
            .map(|d| d.depends_on.len())
            .sum();
        for start in 0..n {
            let mut steps = 0;
            assert!(
                dependency_cycle(start, &td.container_definitions, &names, &mut steps).is_none()
            );
            assert!(
                steps <= edges,
                "from c{start}: {steps} steps over {edges} edges"
            );
        }
    }

    #[test]
    fn over_the_container_limit_nothing_else_is_checked() {
        let defs: Vec<serde_json::Value> = (0..40)
            .map(|i| json!({"name": format!("c{i}"), "image": "", "dependsOn": [{"containerName": "c0", "condition": "START"}, {"containerName": format!("c{}", (i + 1) % 40), "condition": "START"}]}))
            .collect();
        let e = err_of(json!({"family": "dep", "containerDefinitions": defs}));
        assert!(e.contains("40 containers; at most 10 are allowed"), "{e}");
        assert!(!e.contains("image"), "per-container checks ran: {e}");
    }

    #[test]
    fn accepts_a_good_definition() {
        register(base()).expect("valid");
    }

    #[test]
    fn names_the_field_and_value() {
        let mut v = base();
        v["containerDefinitions"][1]["portMappings"] = json!([{"containerPort": 70000}]);
        assert_eq!(
            err_of(v),
            "containerDefinitions[1].portMappings[0].containerPort: 70000 is not a port number"
        );
    }

    #[test]
    fn type_errors_carry_the_path() {
        let mut v = base();
        v["containerDefinitions"][0]["cpu"] = json!("lots");
        let e = err_of(v);
        assert!(
            e.starts_with("containerDefinitions[0].cpu: invalid type: string \"lots\""),
            "{e}"
        );
    }

    #[test]
    fn rejects_each_kind_of_mistake() {
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|v| v["family"] = json!("no spaces")),
                "family: `no spaces` must be",
            ),
            (
                Box::new(|v| v["containerDefinitions"] = json!([])),
                "containerDefinitions: at least one",
            ),
            (
                Box::new(|v| v["containerDefinitions"][1]["name"] = json!("app")),
                "containerDefinitions[1].name: `app` is already",
            ),
            (
                Box::new(|v| v["containerDefinitions"][0]["image"] = json!("")),
                "containerDefinitions[0].image: an image is required",
            ),
            (
                Box::new(|v| {
                    v["containerDefinitions"][1]
                        .as_object_mut()
                        .map(|o| o.remove("memoryReservation"));
                }),
                "containerDefinitions[1].memory: memory or memoryReservation is required",
            ),
            (
                Box::new(|v| v["containerDefinitions"][0]["memoryReservation"] = json!(128)),
                "containerDefinitions[0].memoryReservation: 128 MiB is more than",
            ),
            (
                Box::new(|v| {
                    v["containerDefinitions"][0]["healthCheck"] =
                        json!({"command": ["CMD"], "interval": 1})
                }),
                "containerDefinitions[0].healthCheck.command",
            ),
            (
                Box::new(|v| {
                    v["containerDefinitions"][0]["healthCheck"] =
                        json!({"command": ["CMD", "true"], "interval": 1})
                }),
                "containerDefinitions[0].healthCheck.interval: 1 is out of range 5-300",
            ),
            (
                Box::new(|v| {
                    v["containerDefinitions"][0]["dependsOn"] =
                        json!([{"containerName": "db", "condition": "START"}])
                }),
                "containerDefinitions[0].dependsOn[0].containerName: `db` is not a container",
            ),
            (
                Box::new(|v| {
                    v["containerDefinitions"][0]["dependsOn"] =
                        json!([{"containerName": "side", "condition": "HEALTHY"}])
                }),
                "`side` has no healthCheck",
            ),
            (
                Box::new(|v| {
                    v["containerDefinitions"][0]["dependsOn"] =
                        json!([{"containerName": "side", "condition": "START"}]);
                    v["containerDefinitions"][1]["dependsOn"] =
                        json!([{"containerName": "app", "condition": "START"}]);
                }),
                "containerDefinitions[0].dependsOn: dependency cycle: app -> side -> app",
            ),
            (
                Box::new(|v| {
                    v["containerDefinitions"][0]["mountPoints"] =
                        json!([{"sourceVolume": "nope", "containerPath": "/d"}])
                }),
                "mountPoints[0].sourceVolume: `nope` is not a volume",
            ),
            (
                Box::new(
                    |v| v["containerDefinitions"][1]["portMappings"] = json!([{"containerPort": 81, "hostPort": 8080}, {"containerPort": 82, "hostPort": 8080}]),
                ),
                "containerDefinitions[1].portMappings[1].hostPort: host port 8080 is already mapped",
            ),
            (
                Box::new(|v| v["networkMode"] = json!("none")),
                "containerDefinitions[0].portMappings[0]: port mappings are not allowed",
            ),
            (
                Box::new(|v| v["networkMode"] = json!("overlay")),
                "networkMode: unknown variant `overlay`",
            ),
            (
                Box::new(|v| v["cpu"] = json!("two")),
                "cpu: `two` is not CPU units",
            ),
            (
                Box::new(|v| v["memory"] = json!("32")),
                "memory: task memory 32 MiB is less than its containers reserve (80 MiB)",
            ),
            (
                Box::new(|v| v["placementConstraints"] = json!([{"type": "distinctInstance"}])),
                "placementConstraints[0].type: distinctInstance is not allowed",
            ),
            (
                Box::new(|v| {
                    v["placementConstraints"] =
                        json!([{"type": "memberOf", "expression": "attribute:x =="}])
                }),
                "placementConstraints[0].expression: `attribute:x ==`:",
            ),
            (
                Box::new(|v| v["containerDefinitions"][0]["stopTimeout"] = json!(500)),
                "containerDefinitions[0].stopTimeout: 500 is out of range 0-120",
            ),
        ];
        for (mutate, want) in cases {
            let mut v = base();
            mutate(&mut v);
            let e = err_of(v.clone());
            assert!(e.contains(want), "for {v}\n got: {e}\nwant: {want}");
        }
    }

    #[test]
    fn task_level_sizes() {
        assert_eq!(parse_task_cpu("256"), Some(256));
        assert_eq!(parse_task_cpu("0.5 vCPU"), Some(512));
        assert_eq!(parse_task_cpu("2vcpu"), Some(2048));
        assert_eq!(parse_task_cpu("lots"), None);
        assert_eq!(parse_task_memory("1 GB"), Some(1024));
        assert_eq!(parse_task_memory("512"), Some(512));
        assert_eq!(parse_task_memory("-1 GB"), None);
    }
}

/// The task definitions shipped in `examples/` stay valid.
#[cfg(test)]
mod examples {
    use super::*;

    #[test]
    fn shipped_examples_validate() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = std::fs::read(&path).expect("readable");
                let td: RegisterTaskDefinition =
                    from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                task_definition(&td).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen > 0, "no examples found in {}", dir.display());
    }
}
