//! `comity-bench`: measures real `comityd` nodes on 127.0.0.1 — the full
//! production path (signing, HPKE, sled with the durability rule, audit
//! log and witnessing on) — and prints each figure beside its target.
//!
//! ```text
//! cargo build --release -p comity-node
//! cargo run --release -p comity-bench -- [--json] [--smoke] [--runs N] [--duration SECS] …
//! ```
//!
//! Method and latest figures: `docs/performance.md`.

mod attachment;
mod audit;
mod cluster;
mod crypto;
mod large_store;
mod load;
mod procfs;
mod report;
mod runs;
mod signing;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;

use crate::report::Report;
use crate::runs::{median_of, Ctx, DrainRun, Topology};

#[derive(Debug, Parser)]
#[command(
    name = "comity-bench",
    version,
    about = "Benchmarks real comityd nodes on 127.0.0.1 against the targets of issue 7",
    after_help = "Sections: crypto, signing (the identity key in memory and on SoftHSM2), audit, throughput (includes the audit-off runs), sustained, latency, mesh, idle;\n\
                  store (a large store: status, /metrics and a page of messages timed; only when named in --only);\n\
                  attachment (a 1 GiB attachment A→B through the CLI beside scp; only when named in --only).\n\
                  Build the daemon first: cargo build --release -p comity-node"
)]
struct Args {
    /// Print one JSON object with every figure on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// A quick check that everything works: short runs, small audit bundle.
    /// Its figures are not comparable with a full run.
    #[arg(long)]
    smoke: bool,
    /// Throughput runs per configuration (median reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Minimum timed window of each throughput run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Envelopes in flight per connection (`[limits] delivery_window`).
    #[arg(long, default_value_t = 256)]
    window: u32,
    /// Concurrent admin API clients submitting messages.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Offered rate of the latency run, messages/s.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 20.0)]
    latency_secs: f64,
    /// Nodes in the all-to-all run.
    #[arg(long, default_value_t = 4)]
    mesh_nodes: usize,
    /// Runs of the all-to-all configuration (median reported).
    #[arg(long, default_value_t = 3)]
    mesh_runs: usize,
    /// Pinned idle peers of the memory run.
    #[arg(long, default_value_t = 200)]
    idle_peers: usize,
    /// How long the idle node runs before its memory is read, seconds.
    #[arg(long, default_value_t = 20.0)]
    idle_secs: f64,
    /// Messages sent A→B before the large-store questions are timed
    /// (section `store`).
    #[arg(long, default_value_t = 200_000)]
    store_messages: u64,
    /// The `comity` CLI timed in section `store` (default: next to comityd,
    /// if there is one).
    #[arg(long)]
    comity: Option<PathBuf>,
    /// Entries of the audit bundle verified.
    #[arg(long, default_value_t = 1_000_000)]
    audit_entries: u64,
    /// Calls per timing round of each crypto primitive.
    #[arg(long, default_value_t = 2000)]
    crypto_iterations: u32,
    /// Expected messages/s, to size the first throughput run (later runs
    /// use what was measured).
    #[arg(long, default_value_t = 3000.0)]
    estimate: f64,
    /// Size of the attachment of section `attachment`, MiB.
    #[arg(long, default_value_t = 1024)]
    attachment_mib: u64,
    /// Runs of section `attachment` (median reported), each followed by
    /// one scp of the same file.
    #[arg(long, default_value_t = 3)]
    attachment_runs: usize,
    /// 1 KiB requests per second sent while the attachment transfers.
    #[arg(long, default_value_t = 50.0)]
    attachment_rate: f64,
    /// Where the random file of section `attachment` is written (default:
    /// the temporary directory; the nodes' data stays there whatever this
    /// says).
    #[arg(long, value_name = "DIR")]
    attachment_dir: Option<PathBuf>,
    /// Only these sections (comma-separated; see below).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The comityd binary (default: next to this one).
    #[arg(long)]
    comityd: Option<PathBuf>,
    /// Exit with status 2 when a target is missed.
    #[arg(long)]
    fail_on_miss: bool,
    /// Record `perf` profiles (cpu-clock, DWARF call graphs) of every node
    /// during submission and delivery into this directory. Profiling slows
    /// the nodes: such figures are for finding hot spots, not for reporting.
    #[arg(long, value_name = "DIR")]
    perf: Option<PathBuf>,
    /// Count each node's flushes (sync_file_range), writes, futex calls,
    /// thread creations and context switches per message with `perf stat`.
    #[arg(long)]
    count_events: bool,
    /// No progress messages on stderr.
    #[arg(long, short)]
    quiet: bool,
}

const SECTIONS: [&str; 10] = [
    "crypto",
    "signing",
    "audit",
    "throughput",
    "sustained",
    "latency",
    "mesh",
    "idle",
    "store",
    "attachment",
];

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        args.runs = args.runs.min(1);
        args.duration = args.duration.min(2.0);
        args.latency_secs = args.latency_secs.min(3.0);
        args.mesh_runs = args.mesh_runs.min(1);
        args.idle_secs = args.idle_secs.min(3.0);
        args.audit_entries = args.audit_entries.min(100_000);
        args.crypto_iterations = args.crypto_iterations.min(300);
        args.store_messages = args.store_messages.min(5000);
        args.attachment_mib = args.attachment_mib.min(64);
        args.attachment_runs = args.attachment_runs.min(1);
    }
    match run(&args) {
        Ok(report) => {
            report.print_table(args.json);
            if args.json {
                println!("{}", report.json());
            }
            if args.fail_on_miss && !report.all_pass() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("comity-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<Report> {
    for s in &args.only {
        if !SECTIONS.contains(&s.as_str()) {
            bail!(
                "unknown section {s:?}; the sections are {}",
                SECTIONS.join(", ")
            );
        }
    }
    if args.window == 0 || args.window > 4096 {
        bail!("--window must be 1..=4096");
    }
    // The large store takes minutes to fill, and the attachment needs 3×
    // its size of free disk and an sshd beside it: they run only when named.
    let want = |s: &str| {
        (args.only.is_empty() && s != "store" && s != "attachment")
            || args.only.iter().any(|o| o == s)
    };
    let comityd = runs::locate_comityd(args.comityd.as_deref())?;
    let exe = std::env::current_exe()?;
    if !exe.to_string_lossy().contains("/release/")
        || !comityd.to_string_lossy().contains("/release/")
    {
        eprintln!(
            "comity-bench: warning: not a release build ({}, {}); figures are meaningless (use cargo run --release)",
            exe.display(),
            comityd.display()
        );
    }
    // A private copy: a `cargo build` during the run must not swap the
    // binary between runs.
    let pinned = tempfile::Builder::new()
        .prefix("comity-bench-bin-")
        .tempdir()?;
    let comityd_copy = pinned.path().join("comityd");
    std::fs::copy(&comityd, &comityd_copy)
        .with_context(|| format!("copying {}", comityd.display()))?;
    let comity = match &args.comity {
        Some(c) => Some(c.clone()),
        None => comityd
            .parent()
            .map(|d| d.join("comity"))
            .filter(|c| c.is_file()),
    };
    let comity_copy = match &comity {
        Some(c) => {
            let copy = pinned.path().join("comity");
            std::fs::copy(c, &copy).with_context(|| format!("copying {}", c.display()))?;
            Some(copy)
        }
        None => None,
    };
    let comityd_built = std::fs::metadata(&comityd)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let ctx = Ctx {
        comityd: comityd_copy,
        window: args.window,
        clients: args.clients,
        quiet: args.quiet,
        perf_dir: args.perf.clone(),
        count_events: args.count_events,
    };
    let say = |s: &str| {
        if !args.quiet {
            eprintln!("{s}");
        }
    };
    let started = Instant::now();
    let mut report = Report::new(json!({
        "smoke": args.smoke,
        "comityd": comityd.display().to_string(),
        "comityd_modified_unix": comityd_built,
        "window": args.window,
        "clients": args.clients,
        "runs": args.runs,
        "min_run_secs": args.duration,
        "latency_rate": args.rate,
        "latency_secs": args.latency_secs,
        "mesh_nodes": args.mesh_nodes,
        "mesh_runs": args.mesh_runs,
        "idle_peers": args.idle_peers,
        "idle_secs": args.idle_secs,
        "audit_entries": args.audit_entries,
        "store_messages": args.store_messages,
        "comity": comity.as_ref().map(|c| c.display().to_string()),
        "crypto_iterations": args.crypto_iterations,
        "attachment_mib": args.attachment_mib,
        "attachment_runs": args.attachment_runs,
        "attachment_rate": args.attachment_rate,
    }));

    if want("crypto") {
        say("crypto floor: timing the primitives for one 1 KiB message…");
        report.crypto = Some(crypto::measure(args.crypto_iterations)?);
    }
    if want("signing") {
        say("signing: one identity signature with the key file and on a PKCS#11 token…");
        report.signing = Some(signing::measure(args.crypto_iterations)?);
    }
    if want("audit") {
        say(&format!(
            "audit: building and verifying a {}-entry bundle…",
            args.audit_entries
        ));
        report.audit_verify = Some(audit::measure(args.audit_entries, 3)?);
    }

    let mut discarded = Vec::new();
    if want("throughput") {
        // Audit on and off alternate, so slow drifts of the machine hit
        // both alike.
        let mut estimate = [args.estimate, args.estimate];
        for i in 0..args.runs {
            for (k, audit) in [(0usize, true), (1, false)] {
                let label = if audit { "audit on" } else { "audit off" };
                say(&format!(
                    "throughput A→B, {label}, run {}/{}:",
                    i + 1,
                    args.runs
                ));
                let run = drain_sized(
                    &ctx,
                    &Topology::one_way(),
                    &mut estimate[k],
                    args.duration,
                    audit,
                    &mut discarded,
                )?;
                if audit {
                    report.throughput_runs.push(run);
                } else {
                    report.audit_off_runs.push(run);
                }
            }
        }
    }
    if want("sustained") {
        let rate = if report.throughput_runs.is_empty() {
            args.estimate
        } else {
            median_of(report.throughput_runs.iter().map(|r| r.msgs_per_sec))
        };
        let n = (rate * args.duration).ceil().max(100.0) as u64;
        say(&format!(
            "sustained A→B: {n} messages submitted while both nodes run…"
        ));
        let r = runs::sustained_run(&ctx, n)?;
        say(&format!("  {:.0} msg/s", r.msgs_per_sec));
        report.sustained = Some(r);
    }
    if want("latency") {
        say(&format!(
            "latency A→B at {} msg/s for {} s…",
            args.rate, args.latency_secs
        ));
        let r = runs::latency_run(&ctx, args.rate, args.latency_secs)?;
        say(&format!(
            "  p50 {} ms, p99 {} ms, p99.9 {} ms",
            r.p50_ms, r.p99_ms, r.p999_ms
        ));
        report.latency = Some(r);
    }
    if want("mesh") {
        let topo = Topology::all_to_all(args.mesh_nodes);
        let mut estimate = args.estimate;
        for i in 0..args.mesh_runs {
            say(&format!(
                "all-to-all, {} nodes, run {}/{}:",
                args.mesh_nodes,
                i + 1,
                args.mesh_runs
            ));
            let run = drain_sized(
                &ctx,
                &topo,
                &mut estimate,
                args.duration,
                true,
                &mut discarded,
            )?;
            report.mesh_runs.push(run);
        }
    }
    if want("idle") {
        say(&format!(
            "memory with {} pinned idle peers ({} s)…",
            args.idle_peers, args.idle_secs
        ));
        report.idle = Some(runs::idle_peers(
            &ctx,
            args.idle_peers,
            Duration::from_secs_f64(args.idle_secs),
        )?);
    }
    if want("store") {
        say(&format!(
            "large store: {} messages A→B, then status, /metrics and a page of messages, {} times each…",
            args.store_messages, 10
        ));
        report.large_store = Some(large_store::run(
            &ctx,
            comity_copy.as_ref(),
            args.store_messages,
        )?);
    }
    if want("attachment") {
        let Some(comity) = comity_copy.as_ref() else {
            bail!("section attachment needs the comity CLI: build it (cargo build --release -p comity-cli) or pass --comity PATH");
        };
        say(&format!(
            "attachment: {} MiB A→B through comity send --attach, {} runs, scp of the same file after each…",
            args.attachment_mib, args.attachment_runs
        ));
        let dir = args
            .attachment_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        report.attachment = Some(attachment::run(
            &ctx,
            comity,
            args.attachment_mib << 20,
            args.attachment_runs.max(1),
            args.attachment_rate,
            &dir,
        )?);
    }
    report.discarded_runs = discarded;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A drain run sized from `estimate` to last at least `min_secs`; a run
/// that turns out shorter is set aside and done again, larger.
fn drain_sized(
    ctx: &Ctx,
    topo: &Topology,
    estimate: &mut f64,
    min_secs: f64,
    audit: bool,
    discarded: &mut Vec<DrainRun>,
) -> Result<DrainRun> {
    for _ in 0..4 {
        // 30 % above the estimate: the timed window starts at the first
        // receipt and the last few hundred messages drain a smaller window.
        let total = (*estimate * min_secs * 1.3).ceil().max(200.0);
        let per_route = (total / topo.routes.len() as f64).ceil() as u64;
        let run = runs::drain_run(ctx, topo, per_route, audit)?;
        ctx.say(format!(
            "{:.0} msg/s over {:.1} s ({} messages), {:.0} µs CPU/msg",
            run.msgs_per_sec, run.timed_secs, run.timed_messages, run.cpu_us_per_msg
        ));
        *estimate = run.msgs_per_sec;
        if run.timed_secs >= min_secs {
            return Ok(run);
        }
        ctx.say("shorter than the minimum: set aside, running again with more messages");
        discarded.push(run);
    }
    bail!("could not size a run to last {min_secs} s")
}
