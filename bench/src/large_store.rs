//! Bounded work with a large store: `N` messages go from A to B through
//! the real path (admin API submission, sealing, delivery, receipts), then
//! the operator's everyday questions are timed on both nodes — `comity
//! status` (`GET /v1/node`), a `/metrics` scrape and a page of 100
//! messages — with each node's resident memory read before and after.
//! A's outbox and B's inbox then hold `N` messages each.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use comity_client::{Client, LocalNode, Network, Settings};
use serde::Serialize;

use crate::cluster::country;
use crate::load::{submission, submit_many};
use crate::procfs;
use crate::runs::{median_of, Ctx};

/// Times each question is asked; the median is the figure.
const ROUNDS: usize = 10;

/// Restarts of each node with the large store (the median is the figure).
const RESTARTS: usize = 3;

/// Largest answer read (the listing of today's code is the whole store).
const MAX_RESPONSE: u64 = 1024 * 1024 * 1024;

/// How long one timed question may take before the bench gives up on it.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(300);

/// Ten timings of one question, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Size of the answer (the last one).
    pub bytes: usize,
    /// Messages in the answer, for listings (the last one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<usize>,
    /// What was asked, as the bench asked it.
    pub asked: String,
}

fn timings(asked: String, ms: &[f64], bytes: usize, messages: Option<usize>) -> Timings {
    Timings {
        median_ms: median_of(ms.iter().copied()),
        min_ms: ms.iter().copied().fold(f64::INFINITY, f64::min),
        max_ms: ms.iter().copied().fold(0.0, f64::max),
        bytes,
        messages,
        asked,
    }
}

/// One node's answers with the large store.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeFigures {
    pub node: String,
    /// `GET /v1/node` on a fresh connection, as `comity status` asks it.
    pub status: Timings,
    /// The `comity status` command, process start included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_cli: Option<Timings>,
    pub metrics: Timings,
    /// `GET /v1/messages?limit=100` (a daemon without pages answers with
    /// every message).
    pub page: Timings,
    /// The page after the first, through its cursor (daemons with pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page: Option<Timings>,
    /// A page of a filter no message matches (`kind=consultation`): the
    /// most a filtered page scans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmatched_filter_page: Option<Timings>,
    /// `comity messages --limit 100 --json` (or `comity messages --json`
    /// where the CLI has no `--limit`), process start included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_cli: Option<Timings>,
    /// VmRSS and VmHWM before the first question and after the last.
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub peak_rss_before_mib: f64,
    pub peak_rss_after_mib: f64,
    /// What `GET /v1/node` reports (to check the store is what we think).
    pub outbox: serde_json::Value,
    pub inbox: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct LargeStore {
    pub messages: u64,
    pub submit_secs: f64,
    pub deliver_secs: f64,
    /// Size of each node's data directory after the run.
    pub store_mib: Vec<f64>,
    pub nodes: Vec<NodeFigures>,
    /// From `comityd` spawned to its admin API answering, with the large
    /// store (A, then B): the median of [`RESTARTS`].
    pub restart_secs: Vec<f64>,
    /// Every restart's time, per node.
    pub restart_runs: Vec<Vec<f64>>,
    /// Each node's RSS right after the restart.
    pub restart_rss_mib: Vec<f64>,
}

impl LargeStore {
    /// The slowest node's median, per question.
    pub fn worst(&self, f: impl Fn(&NodeFigures) -> f64) -> f64 {
        self.nodes.iter().map(f).fold(0.0, f64::max)
    }
}

fn tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The whole body of `GET /metrics` (HTTP/1.1, one connection).
fn scrape(addr: SocketAddr) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(QUESTION_TIMEOUT))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    if !out.starts_with(b"HTTP/1.1 200") {
        bail!(
            "/metrics answered {:?}",
            String::from_utf8_lossy(&out[..out.len().min(80)])
        );
    }
    Ok(out)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn rss(node: &LocalNode) -> Result<(f64, f64)> {
    let pid = node
        .pid()
        .ok_or_else(|| anyhow!("{} is not running", node.name))?;
    Ok((
        procfs::status_kib(pid, "VmRSS")? as f64 / 1024.0,
        procfs::status_kib(pid, "VmHWM")? as f64 / 1024.0,
    ))
}

fn dir_mib(dir: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir) as f64 / (1024.0 * 1024.0)
}

/// Runs `comity ARGS` ROUNDS times; `None` if it fails the first time
/// with a usage error (exit 2: an older CLI without these options).
fn time_cli(comity: &Path, config: &Path, args: &[&str]) -> Result<Option<Timings>> {
    let mut ms = Vec::new();
    let mut bytes = 0;
    for i in 0..ROUNDS {
        let t = Instant::now();
        let out = Command::new(comity)
            .arg("--config")
            .arg(config)
            .args(args)
            .output()
            .with_context(|| format!("running {}", comity.display()))?;
        ms.push(ms_since(t));
        if !out.status.success() {
            if i == 0 && out.status.code() == Some(2) {
                return Ok(None);
            }
            bail!(
                "comity {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        bytes = out.stdout.len();
    }
    Ok(Some(timings(
        format!("comity {}", args.join(" ")),
        &ms,
        bytes,
        None,
    )))
}

/// ROUNDS answers to `GET path`, each on a fresh connection (as the CLI
/// asks); the cursor of the last answer's next page, if it has one.
fn time_get(client: &Client, path: &str) -> Result<(Timings, Option<String>)> {
    let mut ms = Vec::new();
    let mut last = None;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let r = client.request("GET", path, None)?;
        ms.push(ms_since(t));
        if !r.is_success() {
            bail!("GET {path}: {}", String::from_utf8_lossy(&r.body));
        }
        last = Some(r);
    }
    let r = last.ok_or_else(|| anyhow!("no answer"))?;
    let messages = path.starts_with("/v1/messages").then(|| {
        serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0)
    });
    let next = r.next_cursor.clone();
    Ok((timings(path.to_string(), &ms, r.body.len(), messages), next))
}

fn ask(
    node: &LocalNode,
    metrics: SocketAddr,
    comity: Option<&Path>,
    say: &dyn Fn(String),
) -> Result<NodeFigures> {
    let client = node
        .client()
        .max_response(MAX_RESPONSE)
        .timeout(QUESTION_TIMEOUT);
    let (rss_before_mib, peak_rss_before_mib) = rss(node)?;
    let (status, _) = time_get(&client, "/v1/node")?;
    say(format!("{}: status {:.1} ms", node.name, status.median_ms));
    let mut ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        bytes = scrape(metrics)?.len();
        ms.push(ms_since(t));
    }
    let metrics = timings("GET /metrics".into(), &ms, bytes, None);
    say(format!(
        "{}: /metrics {:.1} ms",
        node.name, metrics.median_ms
    ));
    let (page, next) = time_get(&client, "/v1/messages?limit=100")?;
    say(format!(
        "{}: page {:.1} ms ({} messages, {} bytes)",
        node.name,
        page.median_ms,
        page.messages.unwrap_or(0),
        page.bytes
    ));
    let next_page = match &next {
        Some(c) => Some(time_get(&client, &format!("/v1/messages?limit=100&after={c}"))?.0),
        None => None,
    };
    // Only a daemon with pages has filters (an older one ignores them and
    // lists everything again).
    let unmatched_filter_page = match next {
        Some(_) => Some(time_get(&client, "/v1/messages?limit=100&kind=consultation")?.0),
        None => None,
    };
    let page_cli = match comity {
        Some(c) => match time_cli(
            c,
            node.config_path(),
            &["messages", "--limit", "100", "--json"],
        )? {
            Some(t) => Some(t),
            None => time_cli(c, node.config_path(), &["messages", "--json"])?,
        },
        None => None,
    };
    let status_cli = match comity {
        Some(c) => time_cli(c, node.config_path(), &["status"])?,
        None => None,
    };
    let (rss_after_mib, peak_rss_after_mib) = rss(node)?;
    let v = client.get("/v1/node")?;
    Ok(NodeFigures {
        node: node.name.clone(),
        status,
        status_cli,
        metrics,
        page,
        next_page,
        unmatched_filter_page,
        page_cli,
        rss_before_mib,
        rss_after_mib,
        peak_rss_before_mib,
        peak_rss_after_mib,
        outbox: v["outbox"].clone(),
        inbox: v["inbox"].clone(),
    })
}

/// Sends `n` messages A→B (both running, as in operation), waits for every
/// receipt, then asks each node its questions.
pub fn run(ctx: &Ctx, comity: Option<&PathBuf>, n: u64) -> Result<LargeStore> {
    let metrics: Vec<SocketAddr> = (0..2)
        .map(|_| Ok(SocketAddr::from(([127, 0, 0, 1], tcp_port()?))))
        .collect::<Result<_>>()?;
    let builders = (0..2)
        .map(|i| {
            LocalNode::builder(&ctx.comityd, &format!("Bench node {i}"), &country(i))
                .temp_prefix("comity-bench-")
                .settings(Settings {
                    metrics_listen: Some(metrics[i]),
                    delivery_window: Some(ctx.window),
                    initial_backoff_ms: Some(100),
                    max_backoff_secs: Some(1),
                    ..Settings::default()
                })
        })
        .collect();
    let mut net = Network::create(builders)?;
    for node in net.iter_mut() {
        node.set_ready_timeout(Duration::from_secs(300));
    }
    net.start_all()?;
    let a = net[0].keep_alive_client().max_response(MAX_RESPONSE);
    // Priming: A learns B's encryption key and seals at submission.
    let body = submission(&net[1].country)?;
    a.post_bytes("/v1/messages", &body)?;
    let pending = |c: &Client| -> Result<u64> {
        let peers = c.get("/v1/peers")?;
        Ok(peers.as_array().map_or(0, |p| {
            p.iter().map(|p| p["pending"].as_u64().unwrap_or(0)).sum()
        }))
    };
    let until_delivered = |c: &Client, limit: Duration| -> Result<()> {
        let deadline = Instant::now() + limit;
        while pending(c)? > 0 {
            if Instant::now() > deadline {
                bail!("messages still pending after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    };
    until_delivered(&a, Duration::from_secs(60))?;
    let t0 = Instant::now();
    let conn = a.clone();
    let clients = ctx.clients;
    let total = n.saturating_sub(1);
    let submitter = std::thread::spawn(move || submit_many(&conn, &[body], total, clients));
    let mut last = Instant::now();
    while !submitter.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
        if last.elapsed() > Duration::from_secs(15) {
            ctx.say(format!("{:.0} s, submitting…", t0.elapsed().as_secs_f64()));
            last = Instant::now();
        }
    }
    submitter
        .join()
        .map_err(|_| anyhow!("the submitter panicked"))??;
    let submit_secs = t0.elapsed().as_secs_f64();
    ctx.say(format!("{n} messages submitted in {submit_secs:.0} s"));
    until_delivered(&a, Duration::from_secs(3600))?;
    let deliver_secs = t0.elapsed().as_secs_f64();
    ctx.say(format!("every receipt held after {deliver_secs:.0} s"));
    // Let the last checkpoint and its witnessing settle.
    std::thread::sleep(Duration::from_secs(3));

    let say = |s: String| ctx.say(s);
    let comity = comity.map(PathBuf::as_path);
    let mut nodes = Vec::new();
    for (i, node) in net.iter().enumerate() {
        nodes.push(ask(node, metrics[i], comity, &say)?);
    }
    let mut restart_runs = Vec::new();
    let mut restart_rss_mib = Vec::new();
    for node in net.iter_mut() {
        let mut runs = Vec::new();
        for _ in 0..RESTARTS {
            node.sigterm(Duration::from_secs(120))?;
            let t = Instant::now();
            node.start()?;
            runs.push(t.elapsed().as_secs_f64());
        }
        restart_rss_mib.push(rss(node)?.0);
        restart_runs.push(runs);
    }
    let restart_secs: Vec<f64> = restart_runs
        .iter()
        .map(|r| median_of(r.iter().copied()))
        .collect();
    ctx.say(format!("restarts: {restart_runs:.2?} s"));
    let store_mib = net.iter().map(|n| dir_mib(n.dir())).collect();
    net.stop_all(Duration::from_secs(120))?;
    Ok(LargeStore {
        messages: n,
        submit_secs,
        deliver_secs,
        store_mib,
        nodes,
        restart_secs,
        restart_runs,
        restart_rss_mib,
    })
}
