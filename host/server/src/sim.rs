//! `berth sim`: placement policies tried on a workload in virtual time
//! before they place real work (the engine is the `berth-sim` crate;
//! this is its command line). docs/sim.md describes the formats.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use berth_policy::{Fallback, HostConfig, PolicyHost};
use berth_sim::{ClusterSpec, SimConfig, Workload, generate};
use clap::{Args, ValueEnum};

use crate::bench::Output;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SimArgs {
    #[command(subcommand)]
    command: Option<SimCommand>,
    /// The tasks: a JSON-lines file (docs/sim.md), or `synthetic:NAME[:TASKS]`
    /// (NAME: uniform, batch, mixed).
    #[arg(long, value_name = "FILE|synthetic:NAME[:TASKS]", required = true)]
    workload: Option<String>,
    /// The cluster: `COUNTxCPU:MEMORY[@ZONE/ZONE...]`, several joined by `,`
    /// (`90x4096:16384@a/b/c,10x16384:65536@a`), or a JSON file with
    /// attributes and join/drain/lose events (docs/sim.md).
    #[arg(long, value_name = "SPEC|FILE", required = true)]
    cluster: Option<String>,
    /// What places the tasks (repeat to compare side by side): a policy
    /// component (FILE.wasm), `native:binpack`, `native:spread`,
    /// `native:random`, `native:spread-binpack`, `native:default`, or
    /// `native` (each task's own strategy). Default: native:binpack and native:spread.
    #[arg(long = "policy", value_name = "FILE.wasm|native[:CHAIN]")]
    policies: Vec<String>,
    /// What a policy component's failed decision falls back to.
    #[arg(long, value_enum, default_value_t = FallbackArg::Native)]
    fallback: FallbackArg,
    /// Seed of the synthetic workload and of random placement: the same
    /// seed gives the same report, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    /// Also draw CPU and memory reserved, memory stranded and tasks waiting over time, per
    /// policy, to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Also find, per policy, the fewest starting instances the workload
    /// fits in (no task waits), by bisection: a run per step.
    #[arg(long)]
    compact: bool,
    /// Also report wall-clock decision latency (p50/p99): the report then
    /// differs from run to run.
    #[arg(long)]
    timings: bool,
    /// Where policy components' log lines go, a file (appended to) or `-`
    /// for stderr; dropped when not given.
    #[arg(long, value_name = "FILE|-")]
    pub policy_log: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum SimCommand {
    /// Write a trace as berth sim's workload lines (stdout).
    Convert {
        /// The trace's format: clusterdata2019 (Google's ClusterData 2019
        /// `instance_events`, JSON lines as BigQuery exports them).
        #[arg(long, value_enum)]
        from: TraceFormat,
        file: PathBuf,
        /// CPU units of the trace's largest machine (its `cpus` 1.0).
        #[arg(long, default_value_t = 16_384.0)]
        cpu_units: f64,
        /// MiB of the trace's largest machine (its `memory` 1.0).
        #[arg(long, default_value_t = 65_536.0)]
        memory_mib: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TraceFormat {
    Clusterdata2019,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FallbackArg {
    /// berth's native engine on the task's strategy places it.
    Native,
    /// The task waits, as on a server with `--fallback pending`.
    Pending,
}

pub fn run(args: &SimArgs) -> anyhow::Result<()> {
    if let Some(SimCommand::Convert {
        from: TraceFormat::Clusterdata2019,
        file,
        cpu_units,
        memory_mib,
    }) = &args.command
    {
        if !(*cpu_units > 0.0 && *memory_mib > 0.0) {
            bail!("--cpu-units and --memory-mib must be above 0");
        }
        let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
        let scale = berth_sim::convert::Scale {
            cpu: *cpu_units,
            memory: *memory_mib,
        };
        let out = std::io::BufWriter::new(std::io::stdout().lock());
        let n = berth_sim::convert::clusterdata2019(std::io::BufReader::new(f), out, scale)
            .map_err(|e| anyhow!("{}: {e}", file.display()))?;
        eprintln!("berth sim convert: {n} tasks");
        return Ok(());
    }
    let (Some(workload_arg), Some(cluster_arg)) = (&args.workload, &args.cluster) else {
        bail!("berth sim needs --workload and --cluster");
    };
    let cluster = ClusterSpec::parse(cluster_arg).map_err(|e| anyhow!("--cluster {e}"))?;
    let workload = load_workload(workload_arg, &cluster, args.seed)?;
    let fallback = match args.fallback {
        FallbackArg::Native => Fallback::Native,
        FallbackArg::Pending => Fallback::Pending,
    };
    let host: std::cell::OnceCell<Arc<PolicyHost>> = std::cell::OnceCell::new();
    let get_host = || -> Result<Arc<PolicyHost>, String> {
        if let Some(h) = host.get() {
            return Ok(h.clone());
        }
        let h = Arc::new(
            PolicyHost::new(HostConfig::default()).map_err(|e| format!("policy host: {e}"))?,
        );
        Ok(host.get_or_init(|| h).clone())
    };
    let names = if args.policies.is_empty() {
        vec!["native:binpack".to_owned(), "native:spread".to_owned()]
    } else {
        args.policies.clone()
    };
    let policies = names
        .iter()
        .map(|p| berth_sim::policy_choice(p, &get_host, fallback))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!(e))?;
    let cfg = SimConfig {
        workload_name: workload_arg.clone(),
        workload,
        cluster_name: cluster_arg.clone(),
        cluster,
        policies,
        seed: args.seed,
        compact: args.compact,
        timings: args.timings,
    };
    let (report, runs) = berth_sim::simulate(&cfg).map_err(|e| anyhow!(e))?;
    if let Some(path) = &args.chart {
        let labelled: Vec<(String, &berth_sim::RunResult)> = report
            .policies
            .iter()
            .map(|p| p.policy.clone())
            .zip(&runs)
            .collect();
        berth_sim::chart::draw(path, &labelled).map_err(|e| anyhow!(e))?;
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Table => out.write_all(report.table().as_bytes())?,
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
    }
    Ok(())
}

fn load_workload(arg: &str, cluster: &ClusterSpec, seed: u64) -> anyhow::Result<Workload> {
    if let Some(spec) = arg.strip_prefix("synthetic:") {
        let capacity = cluster.shapes.iter().fold((0u64, 0u64), |(c, m), s| {
            (
                c + s.count * u64::from(s.cpu),
                m + s.count * u64::from(s.memory),
            )
        });
        return generate::generate(spec, capacity, seed).map_err(|e| anyhow!("--workload {e}"));
    }
    let f = std::fs::File::open(arg)
        .with_context(|| format!("--workload {arg}: not synthetic:NAME and not a readable file"))?;
    let w =
        Workload::read(std::io::BufReader::new(f)).with_context(|| format!("--workload {arg}"))?;
    if w.tasks.is_empty() {
        bail!("--workload {arg}: no task in it");
    }
    Ok(w)
}
