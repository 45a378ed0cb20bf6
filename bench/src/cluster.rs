//! Real `comityd` processes on 127.0.0.1, each with its own key, config,
//! durable store and admin socket in a temporary directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use comity_protocol::{Identity, NodeId, Timestamp};
use serde_json::Value;

use crate::http::Conn;
use crate::procfs;

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

/// A free UDP port on 127.0.0.1 (bound and released).
pub fn free_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Two-letter country codes AA, AB, …: the CLI and the API address peers
/// by them, and only their shape is checked.
pub fn country(i: usize) -> String {
    let a = (b'A' + u8::try_from((i / 26) % 26).unwrap_or(0)) as char;
    let b = (b'A' + u8::try_from(i % 26).unwrap_or(0)) as char;
    format!("{a}{b}")
}

pub struct BenchNode {
    pub name: String,
    pub country: String,
    pub id: NodeId,
    pub port: u16,
    options: NodeOptions,
    dir: tempfile::TempDir,
    comityd: PathBuf,
    child: Option<Child>,
}

impl BenchNode {
    pub fn new(comityd: &Path, index: usize, options: &NodeOptions) -> Result<BenchNode> {
        let dir = tempfile::Builder::new()
            .prefix("comity-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let identity = Identity::generate(Timestamp::now());
        comity_config::write_new_key_file(&dir.path().join("keys/node.key"), &identity)
            .context("writing the key file")?;
        let port = free_port()?;
        let name = format!("Bench node {index}");
        let country = country(index);
        let mut config = format!(
            "[node]\nname = {name:?}\ncountry = {country:?}\nlisten = \"127.0.0.1:{port}\"\n\
             identity_key = \"keys/node.key\"\ndata_dir = \"data\"\nadmin_socket = \"admin.sock\"\n\n\
             [limits]\ndelivery_window = {}\n\n",
            options.window
        );
        if options.fast_retry {
            config.push_str("[retry]\ninitial_backoff_ms = 100\nmax_backoff_secs = 1\n\n");
        }
        if !options.audit {
            config.push_str("[audit]\nenabled = false\n\n");
        }
        std::fs::write(dir.path().join("comity.toml"), config).context("writing the config")?;
        Ok(BenchNode {
            name,
            country,
            id: identity.id(),
            port,
            options: options.clone(),
            dir,
            comityd: comityd.to_path_buf(),
            child: None,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("comity.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("admin.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("comityd.log")
    }

    /// The last lines of the daemon's log, for error reports.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let v: Vec<&str> = log.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// Pins `other` (a `[[peer]]` table; effective at the next start).
    pub fn pin(&self, other: &BenchNode) -> Result<()> {
        self.pin_as(&other.id, other.port, &other.name, &other.country)
    }

    pub fn pin_as(&self, id: &NodeId, port: u16, name: &str, country: &str) -> Result<()> {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.config_path())
            .context("opening the config")?;
        write!(
            f,
            "\n[[peer]]\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\nname = {name:?}\ncountry = {country:?}\n"
        )
        .context("pinning a peer")?;
        Ok(())
    }

    /// Spawns `comityd` (does not wait for it: see [`BenchNode::wait_ready`]).
    pub fn spawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.name);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the log")?;
        let mut cmd = Command::new(&self.comityd);
        cmd.arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !self.options.audit {
            cmd.env("COMITY_ALLOW_AUDIT_OFF", "1");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.comityd.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the admin API answers.
    pub fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            // `/v1/peers` is cheap whatever the size of the outbox.
            if Conn::new(&self.socket()).get_json("/v1/peers").is_ok() {
                return Ok(());
            }
            let child = self
                .child
                .as_mut()
                .ok_or_else(|| anyhow!("{} is not running", self.name))?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "{} exited at start ({status}):\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("{} did not start:\n{}", self.name, self.log_tail(30))
    }

    pub fn start(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_ready()
    }

    pub fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
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
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait()? {
                if !s.success() {
                    bail!(
                        "{} exited with {s} after SIGTERM:\n{}",
                        self.name,
                        self.log_tail(30)
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not stop within 60 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::new(&self.socket())
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.conn().get_json(path)
    }

    /// Messages not yet answered by their peers (queued or in flight),
    /// summed over peers: cheap to ask while a run is going on.
    pub fn pending(&self, conn: &mut Conn) -> Result<u64> {
        let peers = conn.get_json("/v1/peers")?;
        let arr = peers
            .as_array()
            .ok_or_else(|| anyhow!("/v1/peers is not an array"))?;
        Ok(arr.iter().map(|p| p["pending"].as_u64().unwrap_or(0)).sum())
    }

    /// Outgoing messages whose receipt is recorded (`outbox.delivered` of
    /// `GET /v1/node`; this walks the whole outbox, so ask it sparingly).
    pub fn delivered(&self, conn: &mut Conn) -> Result<u64> {
        let v = conn.get_json("/v1/node")?;
        Ok(v["outbox"]["delivered"].as_u64().unwrap_or(0))
    }
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `n` nodes, every one pinning every other.
pub fn mesh(comityd: &Path, n: usize, options: &NodeOptions) -> Result<Vec<BenchNode>> {
    let nodes = (0..n)
        .map(|i| BenchNode::new(comityd, i, options))
        .collect::<Result<Vec<_>>>()?;
    for a in &nodes {
        for b in &nodes {
            if a.id != b.id {
                a.pin(b)?;
            }
        }
    }
    Ok(nodes)
}
