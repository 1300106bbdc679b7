//! Checks of the task-definition fields berth passes to Docker as they are
//! (volumes, logging, Linux parameters, DNS, ...), and the refusal of every
//! field berth does not honour, by its JSON path:
//! `containerDefinitions[0].secrets: not supported by berth`.

use std::net::IpAddr;

use crate::model::{
    ContainerDefinition, LinuxParameters, NetworkMode, RegisterTaskDefinition,
    RequestedNetworkMode, UnknownFields, Volume,
};

use super::Check;

/// Log drivers berth passes to Docker; the agent reads logs back from the first two.
pub const LOG_DRIVERS: [&str; 4] = ["json-file", "local", "syslog", "none"];

/// Resource names `ulimits` may set, as in ECS.
pub const ULIMIT_NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Capabilities `linuxParameters.capabilities` may add or drop, as in ECS.
pub const CAPABILITIES: [&str; 38] = [
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// Label prefix berth keeps for its own container labels.
pub const BERTH_LABEL_PREFIX: &str = "berth.";

/// Whether `name` may name a stored secret (`berth secrets put NAME`):
/// 1-255 letters, digits, `-`, `_`, `.`, `/`.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_./".contains(ch))
}

/// Why berth refuses a field it does not know, when there is more to say
/// than "not supported".
fn refusal(field: &str) -> String {
    let why = match field {
        "executionRoleArn" | "taskRoleArn" => " (berth has no IAM roles)",
        "links" => " (use a shared network mode, or extraHosts)",
        _ => "",
    };
    format!("not supported by berth{why}")
}

/// A value that means "nothing": what the AWS CLI and the console send for
/// fields left at their default.
fn is_nothing(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(false) => true,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        serde_json::Value::Number(_) | serde_json::Value::Bool(true) => false,
    }
}

/// Refuses each field of `unknown` (under `path`) that says anything.
pub(super) fn unsupported(c: &mut Check, path: &str, unknown: &UnknownFields) {
    for (field, value) in unknown {
        if is_nothing(value) {
            continue;
        }
        let at = if path.is_empty() {
            field.clone()
        } else {
            format!("{path}.{field}")
        };
        c.err(at, refusal(field));
    }
}

/// Task-level fields: network mode, compatibilities, volumes, unknown fields.
pub(super) fn task_level(c: &mut Check, td: &RegisterTaskDefinition) {
    unsupported(c, "", &td.unknown);
    if td.network_mode == Some(RequestedNetworkMode::Awsvpc) {
        c.err(
            "networkMode",
            "awsvpc is not supported by berth (no ENIs); use bridge or host",
        );
    }
    for (i, compat) in td.requires_compatibilities.iter().enumerate() {
        if compat != "EC2" && compat != "EXTERNAL" {
            c.err(
                format!("requiresCompatibilities[{i}]"),
                format!("`{compat}` is not supported by berth; use EC2 or EXTERNAL"),
            );
        }
    }
    for (i, v) in td.volumes.iter().enumerate() {
        volume(c, &format!("volumes[{i}]"), v);
    }
}

fn volume(c: &mut Check, p: &str, v: &Volume) {
    unsupported(c, p, &v.unknown);
    if let Some(h) = &v.host {
        unsupported(c, &format!("{p}.host"), &h.unknown);
        if let Some(src) = h.source_path.as_deref()
            && !src.is_empty()
            && !src.starts_with('/')
        {
            c.err(
                format!("{p}.host.sourcePath"),
                format!("`{src}` is not an absolute path"),
            );
        }
    }
    let Some(dv) = &v.docker_volume_configuration else {
        return;
    };
    let dp = format!("{p}.dockerVolumeConfiguration");
    unsupported(c, &dp, &dv.unknown);
    if v.host.is_some() {
        c.err(
            dp.clone(),
            "a volume takes host or dockerVolumeConfiguration, not both",
        );
    }
    if dv.autoprovision == Some(true) && dv.scope != Some(crate::model::VolumeScope::Shared) {
        c.err(
            format!("{dp}.autoprovision"),
            "autoprovision applies to scope shared only",
        );
    }
    if let Some(d) = dv.driver.as_deref()
        && (d.is_empty() || d.chars().any(char::is_whitespace))
    {
        c.err(
            format!("{dp}.driver"),
            format!("`{d}` is not a volume driver name"),
        );
    }
}

/// The Docker options of container `p` (not checked elsewhere) and its unknown fields.
pub(super) fn container(c: &mut Check, p: &str, d: &ContainerDefinition, network: NetworkMode) {
    unsupported(c, p, &d.unknown);
    for (j, pm) in d.port_mappings.iter().enumerate() {
        unsupported(c, &format!("{p}.portMappings[{j}]"), &pm.unknown);
    }
    if let Some(hc) = &d.health_check {
        unsupported(c, &format!("{p}.healthCheck"), &hc.unknown);
    }
    for (j, m) in d.mount_points.iter().enumerate() {
        unsupported(c, &format!("{p}.mountPoints[{j}]"), &m.unknown);
    }
    for (j, v) in d.volumes_from.iter().enumerate() {
        unsupported(c, &format!("{p}.volumesFrom[{j}]"), &v.unknown);
    }
    if let Some(rc) = &d.repository_credentials {
        let rp = format!("{p}.repositoryCredentials");
        unsupported(c, &rp, &rc.unknown);
        if !valid_secret_name(&rc.credentials_parameter) {
            c.err(
                format!("{rp}.credentialsParameter"),
                format!(
                    "`{}` is not a secret name (1-255 letters, digits, `-`, `_`, `.`, `/`; store one with berth secrets put NAME)",
                    rc.credentials_parameter
                ),
            );
        }
    }
    if let Some(lc) = &d.log_configuration {
        unsupported(c, &format!("{p}.logConfiguration"), &lc.unknown);
        if !LOG_DRIVERS.contains(&lc.log_driver.as_str()) {
            c.err(
                format!("{p}.logConfiguration.logDriver"),
                format!(
                    "`{}` is not supported by berth; use json-file, local, syslog or none",
                    lc.log_driver
                ),
            );
        }
    }
    for (j, u) in d.ulimits.iter().enumerate() {
        unsupported(c, &format!("{p}.ulimits[{j}]"), &u.unknown);
        if !ULIMIT_NAMES.contains(&u.name.as_str()) {
            c.err(
                format!("{p}.ulimits[{j}].name"),
                format!("`{}` is not a ulimit name", u.name),
            );
        }
    }
    if let Some(lp) = &d.linux_parameters {
        linux_parameters(c, &format!("{p}.linuxParameters"), lp);
    }
    networking(c, p, d, network);
    for (k, _) in d
        .docker_labels
        .iter()
        .filter(|(k, _)| k.starts_with(BERTH_LABEL_PREFIX))
    {
        c.err(
            format!("{p}.dockerLabels"),
            format!("`{k}` is in berth's own label namespace (berth.*)"),
        );
    }
    c.range(&format!("{p}.startTimeout"), d.start_timeout, 1, 600);
    if d.user.as_deref().is_some_and(str::is_empty) {
        c.err(format!("{p}.user"), "an empty user names no one");
    }
    if let Some(w) = d.working_directory.as_deref()
        && !w.starts_with('/')
    {
        c.err(
            format!("{p}.workingDirectory"),
            format!("`{w}` is not an absolute path"),
        );
    }
}

/// hostname, extraHosts, dnsServers, dnsSearchDomains and systemControls.
fn networking(c: &mut Check, p: &str, d: &ContainerDefinition, network: NetworkMode) {
    if d.hostname.is_some() && network == NetworkMode::Host {
        c.err(
            format!("{p}.hostname"),
            "not allowed with networkMode host (the container has the host's)",
        );
    }
    for (j, h) in d.extra_hosts.iter().enumerate() {
        unsupported(c, &format!("{p}.extraHosts[{j}]"), &h.unknown);
        if h.hostname.is_empty() || h.hostname.contains(char::is_whitespace) {
            c.err(
                format!("{p}.extraHosts[{j}].hostname"),
                format!("`{}` is not a host name", h.hostname),
            );
        }
        if h.ip_address.parse::<IpAddr>().is_err() {
            c.err(
                format!("{p}.extraHosts[{j}].ipAddress"),
                format!("`{}` is not an IP address", h.ip_address),
            );
        }
    }
    for (j, s) in d.dns_servers.iter().enumerate() {
        if s.parse::<IpAddr>().is_err() {
            c.err(
                format!("{p}.dnsServers[{j}]"),
                format!("`{s}` is not an IP address"),
            );
        }
    }
    for (j, s) in d.dns_search_domains.iter().enumerate() {
        if s.is_empty() || s.contains(char::is_whitespace) {
            c.err(
                format!("{p}.dnsSearchDomains[{j}]"),
                format!("`{s}` is not a domain"),
            );
        }
    }
    for (j, sc) in d.system_controls.iter().enumerate() {
        let sp = format!("{p}.systemControls[{j}]");
        unsupported(c, &sp, &sc.unknown);
        match (sc.namespace.as_deref(), sc.value.as_deref()) {
            (Some(n), Some(_)) if !n.is_empty() => {
                if network == NetworkMode::Host && n.starts_with("net.") {
                    c.err(
                        format!("{sp}.namespace"),
                        format!("`{n}`: net.* controls are not allowed with networkMode host"),
                    );
                }
            }
            _ => c.err(sp, "a namespace and a value are required"),
        }
    }
}

fn linux_parameters(c: &mut Check, lp_path: &str, lp: &LinuxParameters) {
    unsupported(c, lp_path, &lp.unknown);
    if let Some(caps) = &lp.capabilities {
        let cp = format!("{lp_path}.capabilities");
        unsupported(c, &cp, &caps.unknown);
        for (what, list) in [("add", &caps.add), ("drop", &caps.drop)] {
            for (j, cap) in list.iter().enumerate() {
                if !CAPABILITIES.contains(&cap.as_str()) {
                    c.err(
                        format!("{cp}.{what}[{j}]"),
                        format!("`{cap}` is not a capability"),
                    );
                }
            }
        }
    }
    for (j, dev) in lp.devices.iter().enumerate() {
        let dp = format!("{lp_path}.devices[{j}]");
        unsupported(c, &dp, &dev.unknown);
        if !dev.host_path.starts_with('/') {
            c.err(
                format!("{dp}.hostPath"),
                format!("`{}` is not an absolute path", dev.host_path),
            );
        }
        if let Some(cp) = dev.container_path.as_deref()
            && !cp.starts_with('/')
        {
            c.err(
                format!("{dp}.containerPath"),
                format!("`{cp}` is not an absolute path"),
            );
        }
        for (k, perm) in dev.permissions.iter().enumerate() {
            if !["read", "write", "mknod"].contains(&perm.as_str()) {
                c.err(
                    format!("{dp}.permissions[{k}]"),
                    format!("`{perm}` is not read, write or mknod"),
                );
            }
        }
    }
    if lp.shared_memory_size == Some(0) {
        c.err(
            format!("{lp_path}.sharedMemorySize"),
            "0 MiB; give at least 1",
        );
    }
    for (j, t) in lp.tmpfs.iter().enumerate() {
        let tp = format!("{lp_path}.tmpfs[{j}]");
        unsupported(c, &tp, &t.unknown);
        if !t.container_path.starts_with('/') {
            c.err(
                format!("{tp}.containerPath"),
                format!("`{}` is not an absolute path", t.container_path),
            );
        }
        if t.size == 0 {
            c.err(format!("{tp}.size"), "0 MiB; give at least 1");
        }
    }
}
