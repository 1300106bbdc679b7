//! The `berth` binary: one command that starts the orchestrator on this
//! machine, and the tools around it.

// See host/server/Cargo.toml: a fuzz build links the fuzzer into the binary.
#[cfg(fuzzing)]
extern crate bolero as _;

// jemalloc returns freed memory to the system; glibc's malloc kept it in one
// arena per thread, so a long-running server's RSS only grew (the soak in
// docs/benchmarks.md). A fuzz build keeps the fuzzer's own.
#[cfg(not(fuzzing))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod agent;
mod agent_args;
mod api;
mod api_args;
mod bench;
mod cli;
mod control;
mod credentials;
mod limits;
mod liveness_args;
mod logs;
mod metrics;
mod obs_args;
mod remote_agent;
mod sim;
mod simulate;
mod store_args;
mod store_cmd;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// berth: a container orchestrator after Amazon ECS, with placement policies
/// as WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about = None, after_help = cli::EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object a line) for a log collector.
    #[arg(long, global = true, env = "BERTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start berth on this machine: the embedded store (and, as they land,
    /// the local Docker agent, the schedulers and the ECS API).
    Up {
        /// Where berth keeps its state.
        #[arg(long, env = "BERTH_DATA_DIR", default_value_os_t = up::default_data_dir())]
        data_dir: PathBuf,
        /// Open the store, report it, and exit instead of running until stopped.
        #[arg(long)]
        check: bool,
        /// Address of the ECS API (port 0: any free port, printed at start).
        #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:7171")]
        listen: std::net::SocketAddr,
        /// `ecs.availability-zone` attribute of this host's container instance.
        #[arg(long, env = "BERTH_AVAILABILITY_ZONE", default_value = "local")]
        availability_zone: String,
        /// Zones to spread this host's `--instances` over, round robin
        /// (`a,b,c`: instance 0 in a, 1 in b, 2 in c, 3 in a...); each
        /// instance's `ecs.availability-zone`, set at every start (given,
        /// it takes the place of `--availability-zone`).
        #[arg(long, env = "BERTH_ZONES", value_delimiter = ',')]
        zones: Vec<String>,
        /// MiB of Docker's memory not offered to tasks.
        #[arg(long, env = "BERTH_MEMORY_RESERVE", default_value_t = 0)]
        memory_reserve: i64,
        /// Container instances to run on this one Docker daemon, each its own
        /// agent with a stable id and an equal share of CPU and memory: a way
        /// to try spread placement and draining on one machine. They share
        /// the host's ports, so give tasks dynamic host ports (hostPort 0).
        #[arg(long, env = "BERTH_INSTANCES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        instances: u32,
        #[command(flatten)]
        store: store_args::StoreArgs,
        #[command(flatten)]
        liveness: liveness_args::LivenessArgs,
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// The cluster this host's container instances join (created if missing).
        #[arg(long, env = "BERTH_CLUSTER", default_value = "default")]
        cluster: String,
        #[command(flatten)]
        runtime: agent_args::AgentRuntimeArgs,
        #[command(flatten)]
        obs: obs_args::ObsArgs,
    },
    /// Start the control plane only (ECS API, schedulers, placement policies,
    /// and the agent protocol at /agent/v1): each host joins it with `berth agent`.
    Server {
        /// Where berth keeps its credentials and compiled policies, and its
        /// store unless `--store` says otherwise.
        #[arg(long, env = "BERTH_DATA_DIR", default_value_os_t = up::default_data_dir())]
        data_dir: PathBuf,
        /// The store: `redb` (the data directory's file), or
        /// `etcd://HOST:PORT[,HOST:PORT...][/prefix]`, shared by every
        /// server given the same (README, "Several servers").
        #[arg(long = "store", env = "BERTH_STORE", default_value = "redb", value_parser = store_cmd::parse_location)]
        store_at: store_cmd::StoreLocation,
        /// Address of the API and the agent endpoints (port 0: any free port,
        /// printed at start; 0.0.0.0:PORT for agents on other hosts).
        #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:7171")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        store: store_args::StoreArgs,
        #[command(flatten)]
        liveness: liveness_args::LivenessArgs,
        #[command(flatten)]
        api: api_args::ApiArgs,
        #[command(flatten)]
        obs: obs_args::ObsArgs,
    },
    /// Join this host's Docker engine to a `berth server` as a container
    /// instance, signing with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    Agent {
        /// The server(s), `http://HOST:PORT`, comma-separated: on a connection
        /// failure the agent moves to the next.
        #[arg(long, env = "BERTH_SERVER", value_delimiter = ',', required = true)]
        server: Vec<String>,
        /// The cluster to join (created if missing).
        #[arg(long, env = "BERTH_CLUSTER", default_value = "default")]
        cluster: String,
        /// The Docker engine: unix:///PATH or tcp://HOST:PORT (default: DOCKER_HOST, else the local socket).
        #[arg(long, value_parser = remote_agent::parse_docker_host)]
        docker_host: Option<String>,
        /// Where the agent keeps its identity, so a restarted agent is the
        /// same container instance and re-adopts its containers.
        #[arg(long, env = "BERTH_AGENT_DATA_DIR", default_value_os_t = up::default_data_dir().join("agent"))]
        data_dir: PathBuf,
        /// `ecs.availability-zone` attribute of this host.
        #[arg(long, default_value = "local")]
        availability_zone: String,
        /// `ecs.instance-type` attribute of this host.
        #[arg(long, default_value = "local")]
        instance_type: String,
        /// A custom attribute of this host, NAME=VALUE (repeatable), for
        /// placement constraints and the query language.
        #[arg(long = "attribute", value_name = "NAME=VALUE", value_parser = remote_agent::parse_attribute)]
        attributes: Vec<berth_core::model::Attribute>,
        #[command(flatten)]
        runtime: agent_args::AgentRuntimeArgs,
        /// Simulate N instances without Docker (for measuring a server at
        /// fleet scale): each registers, heartbeats and reports the tasks
        /// it is given RUNNING; figures are printed every --report-every.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        simulate: Option<u32>,
        /// With --simulate: CPU units of each simulated instance.
        #[arg(long, default_value_t = 65_536, requires = "simulate")]
        sim_cpu: i64,
        /// With --simulate: MiB of memory of each simulated instance.
        #[arg(long, default_value_t = 262_144, requires = "simulate")]
        sim_memory: i64,
        /// With --simulate: seconds between lines of figures.
        #[arg(long, default_value_t = 5, requires = "simulate")]
        report_every: u64,
    },
    /// The API's access key.
    Credentials {
        #[command(subcommand)]
        what: CredentialsCommand,
    },
    /// Move a whole store between redb and etcd (with no server running on
    /// a redb store).
    Store {
        #[command(subcommand)]
        what: StoreCommand,
    },
    /// Client commands against a running `berth up` (its ECS API).
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Try placement policies on a workload first: a discrete-event
    /// simulation in virtual time through berth's placement engine and
    /// policy host, policies side by side (docs/sim.md).
    Sim(sim::SimArgs),
    /// Measure berth's own speed on this machine.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Write every record of the store to FILE (JSON lines, one snapshot).
    Export {
        /// The file to write.
        file: PathBuf,
        #[command(flatten)]
        at: StoreAt,
    },
    /// Read FILE (from `berth store export`) into an empty store.
    Import {
        /// The file to read.
        file: PathBuf,
        #[command(flatten)]
        at: StoreAt,
    },
}

/// Which store `berth store` works on.
#[derive(Debug, clap::Args)]
struct StoreAt {
    /// Where berth keeps its state (the redb store's directory).
    #[arg(long, env = "BERTH_DATA_DIR", default_value_os_t = up::default_data_dir())]
    data_dir: PathBuf,
    /// `redb` (the data directory's file) or `etcd://HOST:PORT[,...][/prefix]`.
    #[arg(long = "store", env = "BERTH_STORE", default_value = "redb", value_parser = store_cmd::parse_location)]
    store_at: store_cmd::StoreLocation,
}

#[derive(Debug, Subcommand)]
enum CredentialsCommand {
    /// Write a fresh key to the data directory's credentials file and print
    /// it; a running berth accepts the old key until it restarts.
    Rotate {
        /// Where berth keeps its state.
        #[arg(long, env = "BERTH_DATA_DIR", default_value_os_t = up::default_data_dir())]
        data_dir: PathBuf,
    },
}

/// berth's log on stderr at `BERTH_LOG`'s level, else `RUST_LOG`'s, else
/// info. The lines policies log go with it, except in `berth bench
/// placement`, which drops them unless `--policy-log` names a file (or `-`,
/// stderr): a policy logging per decision would bury the figures.
fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    use anyhow::Context;
    use tracing_subscriber::filter::{EnvFilter, filter_fn};
    use tracing_subscriber::prelude::*;
    let level = || {
        EnvFilter::try_from_env("BERTH_LOG")
            .or_else(|_| EnvFilter::try_from_env("RUST_LOG"))
            .unwrap_or_else(|_| "info".into())
    };
    let policy_log = match &cli.command {
        Command::Bench {
            what: bench::BenchCommand::Placement(args),
        } => Some(args.policy_log.as_deref()),
        Command::Sim(args) => Some(args.policy_log.as_deref()),
        _ => None,
    };
    let to_stderr = match policy_log {
        None => true,
        Some(p) => p.is_some_and(|p| p.as_os_str() == "-"),
    };
    let file = match policy_log {
        Some(Some(p)) if p.as_os_str() != "-" => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("--policy-log {}", p.display()))?,
        ),
        _ => None,
    };
    let is_policy = |m: &tracing::Metadata<'_>| m.target() == berth_policy::POLICY_LOG_TARGET;
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // --log-format json: fields at the top level, beside time, level and target.
    let stderr = match cli.log_format {
        LogFormat::Text => stderr.boxed(),
        LogFormat::Json => stderr.json().flatten_event(true).boxed(),
    };
    // berth sim counts every failed decision of a policy in its report; the
    // policy host's warning per failure would bury it (a hostile policy
    // fails thousands of times a run).
    let sim = matches!(cli.command, Command::Sim(_));
    let stderr = stderr
        .with_filter(level())
        .with_filter(filter_fn(move |m| to_stderr || !is_policy(m)))
        .with_filter(filter_fn(move |m| {
            !(sim
                && !is_policy(m)
                && m.target().starts_with("berth_policy")
                && *m.level() > tracing::Level::ERROR)
        }));
    let file = file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .with_filter(level())
            .with_filter(filter_fn(is_policy))
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init()
        .context("setting up the log")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("berth: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Up {
            data_dir,
            check,
            listen,
            availability_zone,
            zones,
            memory_reserve,
            instances,
            store,
            liveness,
            api,
            cluster,
            runtime,
            obs,
        } => up::run(
            &data_dir,
            store,
            check,
            listen,
            &agent::AgentOptions {
                cluster,
                zones: if zones.is_empty() {
                    vec![availability_zone]
                } else {
                    zones
                },
                memory_reserve_mib: memory_reserve,
                instances,
                runtime,
            },
            liveness.timing(),
            api.limits(),
            obs,
        ),
        Command::Server {
            data_dir,
            store_at,
            listen,
            store,
            liveness,
            api,
            obs,
        } => up::run_server(
            &store_at,
            &data_dir,
            store,
            listen,
            liveness.timing(),
            api.limits(),
            obs,
        ),
        Command::Agent {
            server,
            cluster,
            simulate: Some(count),
            sim_cpu,
            sim_memory,
            report_every,
            ..
        } => simulate::run(simulate::SimulateOptions {
            servers: server,
            cluster,
            count,
            cpu: sim_cpu,
            memory_mib: sim_memory,
            zones: 3,
            report_every: std::time::Duration::from_secs(report_every.max(1)),
        }),
        Command::Agent {
            server,
            cluster,
            docker_host,
            data_dir,
            availability_zone,
            instance_type,
            attributes,
            runtime,
            ..
        } => remote_agent::run(remote_agent::RemoteAgentOptions {
            servers: server,
            cluster,
            docker_host,
            data_dir,
            availability_zone,
            instance_type,
            attributes,
            runtime,
        }),
        Command::Credentials {
            what: CredentialsCommand::Rotate { data_dir },
        } => credentials::run_rotate(&data_dir),
        Command::Sim(args) => sim::run(&args),
        Command::Store {
            what: StoreCommand::Export { file, at },
        } => store_cmd::run(&at.store_at, &at.data_dir, &file, true),
        Command::Store {
            what: StoreCommand::Import { file, at },
        } => store_cmd::run(&at.store_at, &at.data_dir, &file, false),
        Command::Bench { what } => bench::run(what),
        Command::Client(cmd) => cli::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            // A client command's failure says which kind it is (`--help` lists them).
            ExitCode::from(
                e.downcast_ref::<cli::CliError>()
                    .map_or(1, cli::CliError::exit_code),
            )
        }
    }
}
