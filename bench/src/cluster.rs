//! Real `comityd` processes on 127.0.0.1, each with its own key, config,
//! durable store and admin socket in a temporary directory.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use comity_client::{Client, LocalError, LocalNode, Network, NodeBuilder, Settings};
use comity_config::PeerConfig;
use comity_protocol::NodeId;
use serde_json::Value;

use crate::procfs;

/// Largest admin API answer read (message listings of a long run are big).
const MAX_RESPONSE: u64 = 512 * 1024 * 1024;

/// How long a node may take to start, and to stop after SIGTERM.
const START_STOP: Duration = Duration::from_secs(60);

/// How a benchmark node is configured. Everything not named here is the
/// production default (audit checkpoints every 1000 entries or 60 s,
/// limits, logging at `info`).
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub window: u32,
    pub audit: bool,
    /// Retry quickly (100 ms, capped at 1 s) so a drain starts as soon as
    /// the peer is up; `false` keeps the production backoff.
    pub fast_retry: bool,
}

impl NodeOptions {
    pub fn settings(&self) -> Settings {
        Settings {
            delivery_window: Some(self.window),
            audit_enabled: (!self.audit).then_some(false),
            initial_backoff_ms: self.fast_retry.then_some(100),
            max_backoff_secs: self.fast_retry.then_some(1),
            ..Settings::default()
        }
    }
}

pub use comity_client::local::free_port;

/// Two-letter country codes AA, AB, …: the CLI and the API address peers
/// by them, and only their shape is checked.
pub fn country(i: usize) -> String {
    let a = (b'A' + u8::try_from((i / 26) % 26).unwrap_or(0)) as char;
    let b = (b'A' + u8::try_from(i % 26).unwrap_or(0)) as char;
    format!("{a}{b}")
}

fn builder(comityd: &Path, index: usize, options: &NodeOptions) -> NodeBuilder {
    LocalNode::builder(comityd, &format!("Bench node {index}"), &country(index))
        .temp_prefix("comity-bench-")
        .settings(options.settings())
}

/// A local node (in a temporary directory, killed when dropped), with the
/// figures the benchmarks read from its process.
pub struct BenchNode {
    node: LocalNode,
}

impl std::ops::Deref for BenchNode {
    type Target = LocalNode;

    fn deref(&self) -> &LocalNode {
        &self.node
    }
}

impl BenchNode {
    pub fn new(comityd: &Path, index: usize, options: &NodeOptions) -> Result<BenchNode> {
        let mut node = builder(comityd, index, options).create()?;
        node.set_ready_timeout(START_STOP);
        Ok(BenchNode { node })
    }

    /// Pins nodes that are not part of the run (before the start: one
    /// edit of the config file).
    pub fn pin_all(&self, peers: &[PeerConfig]) -> Result<()> {
        Ok(self.node.pin_all(peers)?)
    }

    /// Spawns `comityd` (does not wait for it: see [`BenchNode::wait_ready`]).
    pub fn spawn(&mut self) -> Result<()> {
        Ok(self.node.spawn()?)
    }

    /// Waits until the admin API answers.
    pub fn wait_ready(&mut self) -> Result<()> {
        Ok(self.node.wait_ready()?)
    }

    pub fn start(&mut self) -> Result<()> {
        Ok(self.node.start()?)
    }

    pub fn pid(&self) -> Result<u32> {
        self.node
            .pid()
            .ok_or_else(|| anyhow!("{} is not running", self.name))
    }

    /// User + system CPU seconds so far.
    pub fn cpu_secs(&self) -> Result<f64> {
        let (u, s) = procfs::cpu_secs(self.pid()?)?;
        Ok(u + s)
    }

    /// (user, system) CPU seconds so far.
    pub fn cpu_split(&self) -> Result<(f64, f64)> {
        procfs::cpu_secs(self.pid()?)
    }

    pub fn write_bytes(&self) -> Result<u64> {
        procfs::write_bytes(self.pid()?)
    }

    /// Peak resident memory of the running process (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> Result<f64> {
        Ok(procfs::status_kib(self.pid()?, "VmHWM")? as f64 / 1024.0)
    }

    pub fn rss_mib(&self) -> Result<f64> {
        Ok(procfs::status_kib(self.pid()?, "VmRSS")? as f64 / 1024.0)
    }

    /// SIGTERM, then waits for a clean exit (graceful: drains and flushes).
    /// Nothing to do if the node is not running.
    pub fn stop(&mut self) -> Result<()> {
        let status = match self.node.sigterm(START_STOP) {
            Ok(s) => s,
            Err(LocalError::NotRunning { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if !status.success() {
            bail!(
                "{} exited with {status} after SIGTERM:\n{}",
                self.name,
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// A keep-alive connection to the admin API: one connection for all
    /// its requests, so that polling or submitting costs the node no
    /// accept per request.
    pub fn conn(&self) -> Client {
        self.node.keep_alive_client().max_response(MAX_RESPONSE)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        Ok(self.conn().get(path)?)
    }

    /// Messages not yet answered by their peers (queued or in flight),
    /// summed over peers: cheap to ask while a run is going on.
    pub fn pending(&self, conn: &Client) -> Result<u64> {
        let peers = conn.get("/v1/peers")?;
        let arr = peers
            .as_array()
            .ok_or_else(|| anyhow!("/v1/peers is not an array"))?;
        Ok(arr.iter().map(|p| p["pending"].as_u64().unwrap_or(0)).sum())
    }

    /// Outgoing messages whose receipt is recorded (`outbox.delivered` of
    /// `GET /v1/node`; this walks the whole outbox, so ask it sparingly).
    pub fn delivered(&self, conn: &Client) -> Result<u64> {
        let v = conn.get("/v1/node")?;
        Ok(v["outbox"]["delivered"].as_u64().unwrap_or(0))
    }
}

/// A peer at 127.0.0.1:`port`.
pub fn peer(id: &NodeId, port: u16, name: &str, country: &str) -> Result<PeerConfig> {
    Ok(PeerConfig {
        id: *id,
        address: format!("127.0.0.1:{port}"),
        name: name.into(),
        country: country.parse()?,
        repinned_from: Vec::new(),
        rotated_from: Vec::new(),
        confirm_rotation: false,
    })
}

/// `n` nodes, every one pinning every other.
pub fn mesh(comityd: &Path, n: usize, options: &NodeOptions) -> Result<Vec<BenchNode>> {
    mesh_with(comityd, n, &options.settings())
}

/// `n` nodes, every one pinning every other, configured by `settings`.
pub fn mesh_with(comityd: &Path, n: usize, settings: &Settings) -> Result<Vec<BenchNode>> {
    let net = Network::create(
        (0..n)
            .map(|i| {
                LocalNode::builder(comityd, &format!("Bench node {i}"), &country(i))
                    .temp_prefix("comity-bench-")
                    .settings(settings.clone())
            })
            .collect(),
    )?;
    Ok(net
        .into_nodes()
        .into_iter()
        .map(|mut node| {
            node.set_ready_timeout(START_STOP);
            BenchNode { node }
        })
        .collect())
}
