//! The measured scenarios, each on fresh nodes in fresh directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use comity_client::Client;
use comity_protocol::{Identity, Timestamp};
use serde::Serialize;

use crate::cluster::{country, free_port, mesh, peer, BenchNode, NodeOptions};
use crate::load::{submission, submit_at_rate, submit_many};
use crate::procfs;

/// What every scenario needs.
pub struct Ctx {
    pub comityd: PathBuf,
    pub window: u32,
    /// Concurrent admin API clients for closed-loop submission.
    pub clients: usize,
    pub quiet: bool,
    /// Record a `perf` profile of every node during submission and
    /// delivery into this directory (the figures of such runs are skewed).
    pub perf_dir: Option<PathBuf>,
    /// Count flushes, writes, futex calls and context switches of every
    /// node with `perf stat` during the timed windows.
    pub count_events: bool,
}

/// Kernel events counted per process with `perf stat` (`--count-events`):
/// how often each node flushes, writes, wakes threads, switches context.
const COUNTED_EVENTS: &str = "syscalls:sys_enter_sync_file_range,syscalls:sys_enter_fsync,\
syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64,syscalls:sys_enter_futex,\
syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_clone3,context-switches";

/// `perf record` (`--perf DIR`) or `perf stat` (`--count-events`)
/// attached to one process until [`Profiler::finish`].
pub(crate) struct Profiler {
    child: Option<std::process::Child>,
    stat_out: Option<PathBuf>,
}

impl Profiler {
    pub(crate) fn attach(ctx: &Ctx, pid: u32, name: &str) -> Result<Profiler> {
        let (args, out): (Vec<String>, PathBuf) = if let Some(dir) = &ctx.perf_dir {
            std::fs::create_dir_all(dir)?;
            let mut out = dir.join(format!("{name}.data"));
            let mut k = 1;
            while out.exists() {
                k += 1;
                out = dir.join(format!("{name}-{k}.data"));
            }
            let args = "record -q -e cpu-clock -F 499 --call-graph dwarf,16384";
            (args.split(' ').map(String::from).collect(), out)
        } else if ctx.count_events {
            let out = std::env::temp_dir()
                .join(format!("comity-bench-{}-{name}.stat", std::process::id()));
            let args = vec![
                "stat".into(),
                "-x".into(),
                ",".into(),
                "-e".into(),
                COUNTED_EVENTS.into(),
            ];
            (args, out)
        } else {
            return Ok(Profiler {
                child: None,
                stat_out: None,
            });
        };
        let child = std::process::Command::new("perf")
            .args(&args)
            .arg("-p")
            .arg(pid.to_string())
            .arg("-o")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting perf (apt-get install linux-perf)")?;
        // perf needs a moment to attach.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Profiler {
            child: Some(child),
            stat_out: ctx.perf_dir.is_none().then_some(out),
        })
    }

    /// Stops perf; for `perf stat`, the counts by event.
    pub(crate) fn finish(self) -> Result<Option<BTreeMap<String, f64>>> {
        let Some(mut child) = self.child else {
            return Ok(None);
        };
        std::process::Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status()?;
        child.wait()?;
        let Some(path) = self.stat_out else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path).context("reading perf stat output")?;
        let _ = std::fs::remove_file(&path);
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() >= 3 {
                if let Ok(v) = f[0].parse::<f64>() {
                    let event = f[2].trim_start_matches("syscalls:sys_enter_");
                    counts.insert(event.to_string(), v);
                }
            }
        }
        Ok(Some(counts))
    }
}

impl Ctx {
    pub fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("  {}", msg.as_ref());
        }
    }

    fn options(&self, audit: bool) -> NodeOptions {
        NodeOptions {
            window: self.window,
            audit,
            fast_retry: true,
        }
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

pub fn median_of(v: impl IntoIterator<Item = f64>) -> f64 {
    median(&v.into_iter().collect::<Vec<_>>())
}

/// CPU seconds of several processes, the machine and the bench itself at
/// one instant.
#[derive(Clone, Debug)]
struct CpuSnapshot {
    at: Instant,
    /// (user, system) seconds of each node.
    nodes: Vec<(f64, f64)>,
    written: Vec<u64>,
    machine: procfs::MachineCpu,
    bench: f64,
}

fn snapshot(nodes: &[BenchNode]) -> Result<CpuSnapshot> {
    Ok(CpuSnapshot {
        at: Instant::now(),
        nodes: nodes
            .iter()
            .map(BenchNode::cpu_split)
            .collect::<Result<_>>()?,
        written: nodes
            .iter()
            .map(BenchNode::write_bytes)
            .collect::<Result<_>>()?,
        machine: procfs::machine_cpu()?,
        bench: procfs::self_cpu_secs()?,
    })
}

/// Where the CPU went between two snapshots.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuUse {
    pub secs: f64,
    /// CPU seconds of each node.
    pub node_cpu_secs: Vec<f64>,
    /// Each node's CPU as % of one core.
    pub node_core_pct: Vec<f64>,
    /// Each node's share of its CPU time spent in the kernel, %.
    pub node_sys_pct: Vec<f64>,
    /// Bytes each node sent to storage.
    pub node_write_bytes: Vec<u64>,
    /// The load generator (this process), % of one core.
    pub bench_core_pct: f64,
    /// Everything else on the machine (other users, the kernel's own
    /// threads), % of one core: interference to keep in mind.
    pub other_core_pct: f64,
}

fn cpu_between(a: &CpuSnapshot, b: &CpuSnapshot) -> CpuUse {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let node_cpu_secs: Vec<f64> = a
        .nodes
        .iter()
        .zip(&b.nodes)
        .map(|(x, y)| (y.0 + y.1 - x.0 - x.1).max(0.0))
        .collect();
    let node_sys_pct = a
        .nodes
        .iter()
        .zip(&b.nodes)
        .map(|(x, y)| {
            let all = y.0 + y.1 - x.0 - x.1;
            if all > 0.0 {
                (y.1 - x.1) / all * 100.0
            } else {
                0.0
            }
        })
        .collect();
    let node_write_bytes = a
        .written
        .iter()
        .zip(&b.written)
        .map(|(x, y)| y.saturating_sub(*x))
        .collect();
    let bench = (b.bench - a.bench).max(0.0);
    let machine_busy = (b.machine.busy - a.machine.busy).max(0.0);
    let other = (machine_busy - node_cpu_secs.iter().sum::<f64>() - bench).max(0.0);
    CpuUse {
        secs,
        node_core_pct: node_cpu_secs.iter().map(|c| c / secs * 100.0).collect(),
        node_cpu_secs,
        node_sys_pct,
        node_write_bytes,
        bench_core_pct: bench / secs * 100.0,
        other_core_pct: other / secs * 100.0,
    }
}

/// Who sends to whom.
#[derive(Clone, Debug)]
pub struct Topology {
    pub nodes: usize,
    pub routes: Vec<(usize, usize)>,
}

impl Topology {
    pub fn one_way() -> Topology {
        Topology {
            nodes: 2,
            routes: vec![(0, 1)],
        }
    }

    /// Every node sends to every other.
    pub fn all_to_all(nodes: usize) -> Topology {
        let mut routes = Vec::new();
        for a in 0..nodes {
            for b in 0..nodes {
                if a != b {
                    routes.push((a, b));
                }
            }
        }
        Topology { nodes, routes }
    }

    fn senders(&self) -> Vec<usize> {
        let mut s: Vec<usize> = self.routes.iter().map(|r| r.0).collect();
        s.dedup();
        s
    }

    fn targets_of(&self, sender: usize) -> Vec<usize> {
        self.routes
            .iter()
            .filter(|r| r.0 == sender)
            .map(|r| r.1)
            .collect()
    }
}

pub(crate) fn start_all(nodes: &mut [BenchNode]) -> Result<()> {
    for n in nodes.iter_mut() {
        n.spawn()?;
    }
    for n in nodes.iter_mut() {
        n.wait_ready()?;
    }
    Ok(())
}

pub(crate) fn stop_all(nodes: &mut [BenchNode]) -> Result<()> {
    for n in nodes.iter_mut() {
        n.stop()?;
    }
    Ok(())
}

/// Polls until every sender has `expected[i]` delivered (a small outbox:
/// `/v1/node` is cheap here).
fn wait_delivered(nodes: &[BenchNode], expected: &[(usize, u64)], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for &(i, want) in expected {
        let conn = nodes[i].conn();
        loop {
            let got = nodes[i].delivered(&conn)?;
            if got >= want {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: {got} of {want} delivered after {timeout:?}:\n{}",
                    nodes[i].name,
                    nodes[i].log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Starts the nodes and sends one message on every route, so that every
/// sender knows its peers' encryption keys and seals at submission, as in
/// steady operation (a message to a never-contacted peer is sealed at
/// first contact instead).
pub(crate) fn prime(nodes: &mut [BenchNode], topo: &Topology) -> Result<Vec<(usize, u64)>> {
    start_all(nodes)?;
    for &(s, r) in &topo.routes {
        let body = submission(&nodes[r].country)?;
        nodes[s].conn().post_bytes("/v1/messages", &body)?;
    }
    let expected: Vec<(usize, u64)> = topo
        .senders()
        .into_iter()
        .map(|s| (s, topo.targets_of(s).len() as u64))
        .collect();
    wait_delivered(nodes, &expected, Duration::from_secs(60))?;
    Ok(expected)
}

/// One throughput run.
#[derive(Clone, Debug, Serialize)]
pub struct DrainRun {
    pub audit: bool,
    pub nodes: usize,
    pub window: u32,
    /// Messages submitted (all routes).
    pub messages: u64,
    /// Messages whose receipts arrived inside the timed window.
    pub timed_messages: u64,
    pub timed_secs: f64,
    pub msgs_per_sec: f64,
    /// Submission alone (peers down): messages/s the admin API accepted.
    pub submit_msgs_per_sec: f64,
    /// Sender CPU during submission, per message (admin API, seal, store, flush).
    pub submit_cpu_us_per_msg: f64,
    /// All nodes' CPU in the timed window, per message delivered in it.
    pub delivery_cpu_us_per_msg: f64,
    /// Each node's part of `delivery_cpu_us_per_msg`.
    pub delivery_cpu_us_per_msg_by_node: Vec<f64>,
    /// The whole path: submission + delivery.
    pub cpu_us_per_msg: f64,
    pub cpu: CpuUse,
    /// VmHWM of each node at the end of the drain (fresh processes).
    pub peak_rss_mib: Vec<f64>,
    /// Bytes written to storage per message: submission (sender), then
    /// delivery by node.
    pub submit_write_bytes_per_msg: f64,
    pub delivery_write_bytes_per_msg_by_node: Vec<f64>,
    /// With `--count-events`: kernel events per message, submission (per
    /// sender) and delivery (per node; counted from before the first
    /// receipt, so slightly high).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub submit_events_per_msg: Vec<BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delivery_events_per_msg_by_node: Vec<BTreeMap<String, f64>>,
}

/// Submit-then-drain: messages are accepted through the admin API while
/// their receivers are down, then every node starts and the time to
/// deliver them is measured. Delivery is timed from the first receipt to
/// the last, with the whole window of messages in flight; submission is
/// timed separately, so its rate shows whether it could be the bottleneck.
pub fn drain_run(ctx: &Ctx, topo: &Topology, per_route: u64, audit: bool) -> Result<DrainRun> {
    let mut nodes = mesh(&ctx.comityd, topo.nodes, &ctx.options(audit))?;
    let primed = prime(&mut nodes, topo)?;
    stop_all(&mut nodes)?;

    // Submission, one sender at a time with every receiver down.
    let mut submit_secs = 0.0;
    let mut submit_cpu = 0.0;
    let mut submit_written = 0u64;
    let mut submit_events = Vec::new();
    let mut total = 0u64;
    let mut expected = Vec::new();
    for s in topo.senders() {
        let targets = topo.targets_of(s);
        let bodies = targets
            .iter()
            .map(|&r| submission(&nodes[r].country))
            .collect::<Result<Vec<_>>>()?;
        let n = per_route * targets.len() as u64;
        nodes[s].start()?;
        let perf = Profiler::attach(ctx, nodes[s].pid()?, &format!("submit-node{s}"))?;
        let cpu0 = nodes[s].cpu_secs()?;
        let w0 = nodes[s].write_bytes()?;
        let sub = submit_many(&nodes[s].conn(), &bodies, n, ctx.clients)?;
        submit_cpu += nodes[s].cpu_secs()? - cpu0;
        submit_written += nodes[s].write_bytes()?.saturating_sub(w0);
        if let Some(c) = perf.finish()? {
            submit_events.push(per_message(&c, n));
        }
        submit_secs += sub.secs;
        total += n;
        nodes[s].stop()?;
        let base = primed.iter().find(|p| p.0 == s).map_or(0, |p| p.1);
        expected.push((s, base + n));
    }
    let submit_rate = total as f64 / submit_secs.max(1e-9);
    ctx.say(format!(
        "submitted {total} messages at {submit_rate:.0}/s (receivers down)"
    ));

    // Delivery: everyone up.
    start_all(&mut nodes)?;
    let profilers = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let tag = if audit { "audit-on" } else { "audit-off" };
            Profiler::attach(ctx, n.pid()?, &format!("drain-{tag}-node{i}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let senders = topo.senders();
    let conns: Vec<Client> = senders.iter().map(|&s| nodes[s].conn()).collect();
    let pending = |conns: &[Client], nodes: &[BenchNode]| -> Result<u64> {
        let mut sum = 0;
        for (c, &s) in conns.iter().zip(&senders) {
            sum += nodes[s].pending(c)?;
        }
        Ok(sum)
    };
    let mut first: Option<(CpuSnapshot, u64)> = None;
    let mut last_progress = (Instant::now(), total);
    let end = loop {
        let p = pending(&conns, &nodes)?;
        if first.is_none() && p < total {
            first = Some((snapshot(&nodes)?, total - p));
        }
        if p == 0 {
            break snapshot(&nodes)?;
        }
        if p < last_progress.1 {
            last_progress = (Instant::now(), p);
        } else if last_progress.0.elapsed() > Duration::from_secs(30) {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| format!("--- {} ---\n{}", n.name, n.log_tail(20)))
                .collect();
            bail!(
                "no progress for 30 s with {p} messages pending\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (start, done_at_start) = first.ok_or_else(|| anyhow!("no receipt was observed"))?;
    let mut delivery_events = Vec::new();
    for p in profilers {
        if let Some(c) = p.finish()? {
            delivery_events.push(per_message(&c, total - done_at_start));
        }
    }
    let peak_rss_mib = nodes
        .iter()
        .map(BenchNode::peak_rss_mib)
        .collect::<Result<Vec<_>>>()?;
    // Every receipt recorded on its sender (durable at its group commit).
    wait_delivered(&nodes, &expected, Duration::from_secs(30))?;
    stop_all(&mut nodes)?;

    let cpu = cpu_between(&start, &end);
    let timed = total - done_at_start;
    let per_msg = |c: f64| c * 1e6 / timed.max(1) as f64;
    let delivery_cpu_us_per_msg = per_msg(cpu.node_cpu_secs.iter().sum());
    let submit_cpu_us_per_msg = submit_cpu * 1e6 / total.max(1) as f64;
    Ok(DrainRun {
        audit,
        nodes: topo.nodes,
        window: ctx.window,
        messages: total,
        timed_messages: timed,
        timed_secs: cpu.secs,
        msgs_per_sec: timed as f64 / cpu.secs,
        submit_msgs_per_sec: submit_rate,
        submit_cpu_us_per_msg,
        delivery_cpu_us_per_msg,
        delivery_cpu_us_per_msg_by_node: cpu.node_cpu_secs.iter().map(|&c| per_msg(c)).collect(),
        cpu_us_per_msg: submit_cpu_us_per_msg + delivery_cpu_us_per_msg,
        submit_write_bytes_per_msg: submit_written as f64 / total.max(1) as f64,
        delivery_write_bytes_per_msg_by_node: cpu
            .node_write_bytes
            .iter()
            .map(|&b| b as f64 / timed.max(1) as f64)
            .collect(),
        submit_events_per_msg: submit_events,
        delivery_events_per_msg_by_node: delivery_events,
        cpu,
        peak_rss_mib,
    })
}

fn per_message(counts: &BTreeMap<String, f64>, n: u64) -> BTreeMap<String, f64> {
    counts
        .iter()
        .map(|(k, v)| (k.clone(), v / n.max(1) as f64))
        .collect()
}

/// Submission and delivery at once: `n` messages submitted by many
/// clients while both nodes run, timed from the first submission to the
/// last receipt.
#[derive(Clone, Debug, Serialize)]
pub struct SustainedRun {
    pub messages: u64,
    pub secs: f64,
    pub msgs_per_sec: f64,
    /// How fast the admin API accepted them meanwhile.
    pub submit_msgs_per_sec: f64,
    pub cpu_us_per_msg: f64,
    pub cpu: CpuUse,
    pub peak_rss_mib: Vec<f64>,
}

pub fn sustained_run(ctx: &Ctx, n: u64) -> Result<SustainedRun> {
    let topo = Topology::one_way();
    let mut nodes = mesh(&ctx.comityd, 2, &ctx.options(true))?;
    let primed = prime(&mut nodes, &topo)?;
    let body = vec![submission(&nodes[1].country)?];
    let conn = nodes[0].conn();
    let start = snapshot(&nodes)?;
    let clients = ctx.clients;
    let submitter = std::thread::spawn(move || submit_many(&conn, &body, n, clients));
    while !submitter.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let submitted = submitter
        .join()
        .map_err(|_| anyhow!("the submitter panicked"))??;
    let conn = nodes[0].conn();
    let end = loop {
        if nodes[0].pending(&conn)? == 0 {
            break snapshot(&nodes)?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let peak_rss_mib = nodes
        .iter()
        .map(BenchNode::peak_rss_mib)
        .collect::<Result<Vec<_>>>()?;
    wait_delivered(&nodes, &[(0, primed[0].1 + n)], Duration::from_secs(30))?;
    stop_all(&mut nodes)?;
    let cpu = cpu_between(&start, &end);
    Ok(SustainedRun {
        messages: n,
        secs: cpu.secs,
        msgs_per_sec: n as f64 / cpu.secs,
        submit_msgs_per_sec: submitted.rate(),
        cpu_us_per_msg: cpu.node_cpu_secs.iter().sum::<f64>() * 1e6 / n.max(1) as f64,
        cpu,
        peak_rss_mib,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyRun {
    pub offered_msgs_per_sec: f64,
    pub achieved_msgs_per_sec: f64,
    pub messages: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Admin API answer time (accepted = flushed on the sender).
    pub submit_p50_ms: f64,
    pub submit_p99_ms: f64,
    /// How late the load generator sent against its schedule (p99).
    pub schedule_lateness_p99_ms: f64,
    pub cpu: CpuUse,
}

/// Nearest-rank percentile of sorted data.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Send → durable receipt at a fixed offered rate: `delivered_at −
/// created_at` of every message (both stamped by the sender, in ms).
pub fn latency_run(ctx: &Ctx, rate: f64, secs: f64) -> Result<LatencyRun> {
    let topo = Topology::one_way();
    let mut nodes = mesh(&ctx.comityd, 2, &ctx.options(true))?;
    prime(&mut nodes, &topo)?;
    // Let the priming's checkpoint and witnessing settle.
    std::thread::sleep(Duration::from_millis(500));
    let body = submission(&nodes[1].country)?;
    let start = snapshot(&nodes)?;
    let t0 = Instant::now();
    let sent = submit_at_rate(&nodes[0].conn(), &body, rate, secs, 16)?;
    let achieved = sent.len() as f64 / t0.elapsed().as_secs_f64();
    let end = snapshot(&nodes)?;
    let conn = nodes[0].conn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes[0].pending(&conn)? > 0 {
        if Instant::now() > deadline {
            bail!("messages still pending 60 s after the latency run");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut lat = Vec::with_capacity(sent.len());
    for t in &sent {
        let v = conn.get(&format!("/v1/messages/{}", t.id))?;
        let created = v["created_at"]
            .as_u64()
            .ok_or_else(|| anyhow!("no created_at: {v}"))?;
        let delivered = v["delivered_at"]
            .as_u64()
            .ok_or_else(|| anyhow!("{} not delivered: {}", t.id, v["state"]))?;
        lat.push(delivered.saturating_sub(created) as f64);
    }
    stop_all(&mut nodes)?;
    lat.sort_by(f64::total_cmp);
    let mut rtt: Vec<f64> = sent.iter().map(|t| t.rtt_ms).collect();
    rtt.sort_by(f64::total_cmp);
    let mut late: Vec<f64> = sent.iter().map(|t| t.late_ms).collect();
    late.sort_by(f64::total_cmp);
    Ok(LatencyRun {
        offered_msgs_per_sec: rate,
        achieved_msgs_per_sec: achieved,
        messages: lat.len(),
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        p999_ms: percentile(&lat, 99.9),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        submit_p50_ms: percentile(&rtt, 50.0),
        submit_p99_ms: percentile(&rtt, 99.0),
        schedule_lateness_p99_ms: percentile(&late, 99.0),
        cpu: cpu_between(&start, &end),
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct IdlePeers {
    pub peers: usize,
    pub settle_secs: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// The node's CPU while idle, % of one core.
    pub idle_core_pct: f64,
}

/// One node with `peers` pinned peers that do not run (generated ids,
/// unused ports), production retry settings: its memory once settled.
pub fn idle_peers(ctx: &Ctx, peers: usize, settle: Duration) -> Result<IdlePeers> {
    let options = NodeOptions {
        window: ctx.window,
        audit: true,
        fast_retry: false,
    };
    let mut node = BenchNode::new(&ctx.comityd, 0, &options)?;
    let idle = (0..peers)
        .map(|i| {
            let id = Identity::generate(Timestamp::now()).id();
            peer(
                &id,
                free_port()?,
                &format!("Idle peer {i}"),
                &country(i + 1),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    node.pin_all(&idle)?;
    node.start()?;
    let c0 = node.cpu_secs()?;
    let t0 = Instant::now();
    std::thread::sleep(settle);
    let idle_core_pct = (node.cpu_secs()? - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let listed = node.get("/v1/peers")?;
    let n = listed.as_array().map_or(0, Vec::len);
    if n != peers {
        bail!("the node lists {n} peers, not {peers}");
    }
    let rss_mib = node.rss_mib()?;
    let peak_rss_mib = node.peak_rss_mib()?;
    node.stop()?;
    Ok(IdlePeers {
        peers,
        settle_secs: settle.as_secs_f64(),
        rss_mib,
        peak_rss_mib,
        idle_core_pct,
    })
}

/// `comityd` next to this binary (target/release when run with
/// `cargo run --release -p comity-bench`).
pub fn locate_comityd(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", exe.display()))?;
    let comityd = dir.join("comityd");
    if !comityd.is_file() {
        bail!(
            "comityd not found at {}: build it first with\n    cargo build --release -p comity-node\n(or pass --comityd PATH)",
            comityd.display()
        );
    }
    Ok(comityd)
}
