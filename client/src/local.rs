//! Real `comityd` processes on 127.0.0.1, for the demo, the end-to-end
//! tests and the benchmarks: a [`LocalNode`] is one node's directory and,
//! while it runs, its process; a [`Network`] is several that pin each
//! other. A node made here is made by [`crate::init::create_node`], as
//! `comity init` makes one, with typed [`Settings`]; a directory made by
//! `comity init` itself can be taken over with [`LocalNode::open`].
//!
//! Every process still running is killed when its node is dropped, so a
//! failed test or an interrupted demo leaves nothing behind.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use comity_config::{Config, PeerConfig};
use comity_protocol::{Identity, NodeId, PeerKeys};
use serde_json::json;

use crate::admin::Client;
use crate::init::create_node;
use crate::settings::Settings;
use crate::LocalError;

/// How long [`LocalNode::start`] waits for the admin API by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A free UDP port on 127.0.0.1 (bound and released: another process may
/// take it in between, which is good enough for local networks).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The last `lines` lines of `s`.
pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Polls `f` every 50 ms until it returns `Ok(true)`; an error from `f`
/// ends the wait with that error, and so does `timeout` (with
/// [`LocalError::Timeout`] naming `what`).
pub fn wait_until<E: From<LocalError>>(
    timeout: Duration,
    what: &str,
    f: impl FnMut() -> Result<bool, E>,
) -> Result<(), E> {
    poll(timeout, f, || LocalError::Timeout { what: what.into() })
}

fn poll<E: From<LocalError>>(
    timeout: Duration,
    mut f: impl FnMut() -> Result<bool, E>,
    timed_out: impl FnOnce() -> LocalError,
) -> Result<(), E> {
    let deadline = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(timed_out().into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a new node's directory goes.
#[derive(Clone, Debug)]
enum Place {
    /// A new temporary directory, removed with the node.
    Temp { prefix: String },
    /// This directory, kept.
    Dir(PathBuf),
}

/// A new node: [`LocalNode::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct NodeBuilder {
    comityd: PathBuf,
    name: String,
    country: String,
    settings: Settings,
    place: Place,
    port: Option<u16>,
    log_filter: Option<String>,
    env: Vec<(String, String)>,
}

impl NodeBuilder {
    /// Options written into the configuration (default: none, i.e. the
    /// production defaults of `comity init`).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Makes the node in `dir` (created if missing, must hold no node) and
    /// keeps it, instead of in a temporary directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.place = Place::Dir(dir.into());
        self
    }

    /// The prefix of the temporary directory's name (default `comity-`).
    pub fn temp_prefix(mut self, prefix: &str) -> Self {
        self.place = Place::Temp {
            prefix: prefix.into(),
        };
        self
    }

    /// Listen on this port (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `COMITY_LOG` for the daemon (default: not set, so the config's
    /// `[log] level` applies unless the caller's environment sets it).
    pub fn log_filter(mut self, filter: &str) -> Self {
        self.log_filter = Some(filter.into());
        self
    }

    /// One more variable in the daemon's environment at every start.
    pub fn env(mut self, var: &str, value: &str) -> Self {
        self.env.push((var.into(), value.into()));
        self
    }

    /// Creates the directory, key and configuration.
    pub fn create(self) -> Result<LocalNode, LocalError> {
        let (dir, temp) = match &self.place {
            Place::Temp { prefix } => {
                let t = tempfile::Builder::new()
                    .prefix(prefix)
                    .tempdir()
                    .map_err(|source| LocalError::Io {
                        action: "create a temporary directory in",
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (t.path().to_path_buf(), Some(t))
            }
            Place::Dir(d) => (d.clone(), None),
        };
        let port = match self.port {
            Some(p) => p,
            None => free_port().map_err(|source| LocalError::Io {
                action: "find a free port on",
                path: "127.0.0.1".into(),
                source,
            })?,
        };
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut env = self.env;
        if self.settings.audit_off() {
            env.push(("COMITY_ALLOW_AUDIT_OFF".into(), "1".into()));
        }
        let new = create_node(
            &dir,
            &self.name,
            &self.country,
            listen,
            &self.settings,
            &env_lookup(&env),
        )?;
        let mut node = LocalNode::from_config(self.comityd, &new.config_path, new.config, env)?;
        node.log_filter = self.log_filter;
        node.temp = temp;
        Ok(node)
    }
}

fn env_lookup(env: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |var| {
        env.iter()
            .rev()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
    }
}

/// The daemon's process, as far as this node knows.
#[derive(Debug)]
enum Process {
    Stopped,
    Running(Child),
    /// Exited on its own and reaped (so its pid is never signalled again).
    Exited(ExitStatus),
}

/// One node's files and, while it runs, its `comityd` process.
#[derive(Debug)]
pub struct LocalNode {
    pub name: String,
    /// As in its configuration (upper case).
    pub country: String,
    pub id: NodeId,
    /// Public keys, for verifying what this node signed.
    pub keys: PeerKeys,
    /// The QUIC (UDP) port it listens on, on 127.0.0.1.
    pub port: u16,
    comityd: PathBuf,
    dir: PathBuf,
    config_path: PathBuf,
    socket: PathBuf,
    key_path: PathBuf,
    log_path: PathBuf,
    log_filter: Option<String>,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
    process: Process,
    /// Removed when the node is dropped, after its process is killed.
    temp: Option<tempfile::TempDir>,
}

impl LocalNode {
    /// A new node named `name` of `country`, to be run with the `comityd`
    /// binary at `comityd`.
    pub fn builder(comityd: impl Into<PathBuf>, name: &str, country: &str) -> NodeBuilder {
        NodeBuilder {
            comityd: comityd.into(),
            name: name.into(),
            country: country.into(),
            settings: Settings::default(),
            place: Place::Temp {
                prefix: "comity-".into(),
            },
            port: None,
            log_filter: None,
            env: Vec::new(),
        }
    }

    /// The existing node whose configuration is at `config_path` (made by
    /// `comity init`, say). Its files are left in place when it is dropped.
    pub fn open(comityd: impl Into<PathBuf>, config_path: &Path) -> Result<LocalNode, LocalError> {
        let config = Config::load(config_path).map_err(|source| LocalError::Config {
            path: config_path.to_path_buf(),
            source,
        })?;
        LocalNode::from_config(comityd.into(), config_path, config, Vec::new())
    }

    fn from_config(
        comityd: PathBuf,
        config_path: &Path,
        config: Config,
        env: Vec<(String, String)>,
    ) -> Result<LocalNode, LocalError> {
        let identity = comity_token::load(&config)?.identity;
        let dir = config.base_dir().to_path_buf();
        Ok(LocalNode {
            name: config.node.name.clone(),
            country: config.node.country.as_str().to_string(),
            id: identity.id(),
            keys: identity.public().clone(),
            port: config.node.listen.port(),
            comityd,
            log_path: dir.join("comityd.log"),
            config_path: std::path::absolute(config_path).map_err(|source| LocalError::Io {
                action: "resolve",
                path: config_path.to_path_buf(),
                source,
            })?,
            socket: config.node.admin_socket,
            key_path: config.node.identity_key,
            dir,
            log_filter: None,
            env,
            ready_timeout: READY_TIMEOUT,
            process: Process::Stopped,
            temp: None,
        })
    }

    /// `COMITY_LOG` for the daemon from its next start (`None`: unset).
    pub fn set_log_filter(&mut self, filter: Option<&str>) {
        self.log_filter = filter.map(str::to_string);
    }

    /// How long [`LocalNode::start`] waits for the admin API.
    pub fn set_ready_timeout(&mut self, timeout: Duration) {
        self.ready_timeout = timeout;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The admin API's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The daemon's stdout and stderr, across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far (empty if there is none yet).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// The node's secret keys, from its key file.
    pub fn identity(&self) -> Result<Identity, LocalError> {
        Ok(comity_config::load_key_file(&self.key_path)?)
    }

    /// How other nodes pin this one.
    pub fn as_peer(&self) -> Result<PeerConfig, LocalError> {
        Ok(PeerConfig {
            id: self.id,
            address: format!("127.0.0.1:{}", self.port),
            name: self.name.clone(),
            country: self.country.parse()?,
            repinned_from: Vec::new(),
            rotated_from: Vec::new(),
            confirm_rotation: false,
        })
    }

    /// A client of the admin API, one connection per request.
    pub fn client(&self) -> Client {
        Client::new(self.socket.clone(), self.config_path.clone())
    }

    /// A client that keeps one connection for all its requests.
    pub fn keep_alive_client(&self) -> Client {
        self.client().keep_alive()
    }

    /// Pins `peers`: through `POST /v1/peers` while the daemon runs (which
    /// also writes them into the file), otherwise straight into the
    /// configuration file, effective at the next start. Either way the
    /// configuration is checked as the daemon will load it.
    pub fn pin_all(&self, peers: &[PeerConfig]) -> Result<(), LocalError> {
        if matches!(self.process, Process::Running(_)) {
            let client = self.client();
            for p in peers {
                client.post(
                    "/v1/peers",
                    &json!({"id": p.id.to_string(), "address": p.address, "name": p.name, "country": p.country.as_str()}),
                )?;
            }
            return Ok(());
        }
        let path = &self.config_path;
        let config_error = |source| LocalError::Config {
            path: path.clone(),
            source,
        };
        let mut text = std::fs::read_to_string(path).map_err(|source| LocalError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        for p in peers {
            text = comity_config::add_peer(&text, p).map_err(config_error)?;
        }
        Config::from_toml_str(&text, &self.dir, &env_lookup(&self.env)).map_err(config_error)?;
        std::fs::write(path, text).map_err(|source| LocalError::Io {
            action: "write",
            path: path.clone(),
            source,
        })
    }

    /// [`LocalNode::pin_all`] of one peer.
    pub fn pin(&self, peer: &PeerConfig) -> Result<(), LocalError> {
        self.pin_all(std::slice::from_ref(peer))
    }

    /// Starts `comityd` and waits until its admin API answers.
    pub fn start(&mut self) -> Result<(), LocalError> {
        self.start_with_env(&[])
    }

    /// [`LocalNode::start`] with more environment for this start only.
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) -> Result<(), LocalError> {
        self.spawn_with_env(env)?;
        self.wait_ready()
    }

    /// Starts `comityd` without waiting for it (see [`LocalNode::wait_ready`]).
    pub fn spawn(&mut self) -> Result<(), LocalError> {
        self.spawn_with_env(&[])
    }

    pub fn spawn_with_env(&mut self, env: &[(&str, &str)]) -> Result<(), LocalError> {
        if matches!(self.process, Process::Running(_)) {
            return Err(LocalError::AlreadyRunning {
                name: self.name.clone(),
            });
        }
        let log_path = self.log_path.clone();
        let io = |action| {
            let path = log_path.clone();
            move |source| LocalError::Io {
                action,
                path,
                source,
            }
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io("open"))?;
        let mut cmd = Command::new(&self.comityd);
        cmd.arg("--config")
            .arg(&self.config_path)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("open"))?)
            .stderr(log);
        if let Some(f) = &self.log_filter {
            cmd.env("COMITY_LOG", f);
        }
        let child = cmd.spawn().map_err(|source| LocalError::Spawn {
            comityd: self.comityd.clone(),
            source,
        })?;
        self.process = Process::Running(child);
        Ok(())
    }

    /// Waits until the admin API answers (`GET /v1/peers`, cheap whatever
    /// the size of the outbox); fails at once, with the end of the log, if
    /// the daemon exits meanwhile.
    pub fn wait_ready(&mut self) -> Result<(), LocalError> {
        let deadline = Instant::now() + self.ready_timeout;
        let client = self.client().timeout(Duration::from_secs(10));
        loop {
            if client.get("/v1/peers").is_ok() {
                return Ok(());
            }
            if let Some(status) = self.exit_status()? {
                return Err(LocalError::ExitedAtStart {
                    name: self.name.clone(),
                    status,
                    log: self.log_tail(30),
                });
            }
            if Instant::now() >= deadline {
                return Err(LocalError::NotReady {
                    name: self.name.clone(),
                    secs: self.ready_timeout.as_secs(),
                    log: self.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `Some` once the daemon has exited (or was never started, as
    /// `NotRunning`); reaps it if it just did.
    fn exit_status(&mut self) -> Result<Option<ExitStatus>, LocalError> {
        match &mut self.process {
            Process::Stopped => Err(LocalError::NotRunning {
                name: self.name.clone(),
            }),
            Process::Exited(s) => Ok(Some(*s)),
            Process::Running(child) => {
                let status = child.try_wait().map_err(|source| LocalError::Io {
                    action: "wait for",
                    path: self.comityd.clone(),
                    source,
                })?;
                if let Some(s) = status {
                    self.process = Process::Exited(s);
                }
                Ok(status)
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.exit_status(), Ok(None))
    }

    /// The daemon's process id while it runs (for `/proc/PID/…`).
    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Running(c) => Some(c.id()),
            _ => None,
        }
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) -> Result<ExitStatus, LocalError> {
        match std::mem::replace(&mut self.process, Process::Stopped) {
            Process::Stopped => Err(LocalError::NotRunning {
                name: self.name.clone(),
            }),
            Process::Exited(s) => Ok(s),
            Process::Running(mut child) => {
                let io = |source| LocalError::Io {
                    action: "kill",
                    path: self.comityd.clone(),
                    source,
                };
                child.kill().map_err(io)?;
                child.wait().map_err(io)
            }
        }
    }

    /// SIGTERM, the graceful stop, and the exit status once the daemon has
    /// exited; after `timeout` it is killed and this is an error. A daemon
    /// that had already exited gives its status.
    pub fn sigterm(&mut self, timeout: Duration) -> Result<ExitStatus, LocalError> {
        let mut child = match std::mem::replace(&mut self.process, Process::Stopped) {
            Process::Stopped => {
                return Err(LocalError::NotRunning {
                    name: self.name.clone(),
                })
            }
            Process::Exited(s) => return Ok(s),
            Process::Running(child) => child,
        };
        if let Err(source) = send_sigterm(&child) {
            let pid = child.id();
            self.process = Process::Running(child);
            return Err(LocalError::Signal {
                name: self.name.clone(),
                pid,
                source,
            });
        }
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {}
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(LocalError::StopTimeout {
                        name: self.name.clone(),
                        secs: timeout.as_secs(),
                        log: self.log_tail(30),
                    });
                }
                Err(source) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(LocalError::Io {
                        action: "wait for",
                        path: self.comityd.clone(),
                        source,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`wait_until`] for something about this node; on timeout the error
    /// ([`LocalError::NodeTimeout`]) ends with the last 60 lines of its log.
    pub fn wait_until<E: From<LocalError>>(
        &self,
        timeout: Duration,
        what: &str,
        f: impl FnMut() -> Result<bool, E>,
    ) -> Result<(), E> {
        poll(timeout, f, || LocalError::NodeTimeout {
            name: self.name.clone(),
            what: what.into(),
            log: self.log_tail(60),
        })
    }
}

/// Sends SIGTERM to `child`.
#[allow(unsafe_code)]
fn send_sigterm(child: &Child) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours, so
    // it cannot break memory safety. It signals the right process: `child`
    // has not been reaped (LocalNode keeps a `Child` only in
    // `Process::Running`, and turns it into `Process::Exited` as soon as a
    // wait reaps it), so the pid is still our child's, zombie or not, and
    // cannot have been reused by another process.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        if let Process::Running(c) = &mut self.process {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Several local nodes, every one pinning every other. Dropping the
/// network drops its nodes, which kills those still running.
#[derive(Debug, Default)]
pub struct Network {
    nodes: Vec<LocalNode>,
}

impl Network {
    /// Nodes as they are (not pinned: see [`Network::pin_all`]).
    pub fn new(nodes: Vec<LocalNode>) -> Network {
        Network { nodes }
    }

    /// Creates the nodes and pins every one to every other in its
    /// configuration file.
    pub fn create(builders: Vec<NodeBuilder>) -> Result<Network, LocalError> {
        let nodes = builders
            .into_iter()
            .map(NodeBuilder::create)
            .collect::<Result<Vec<_>, _>>()?;
        let net = Network::new(nodes);
        net.pin_all()?;
        Ok(net)
    }

    /// Pins every node to every other ([`LocalNode::pin_all`]: through the
    /// admin API of those running, in the files of the others).
    pub fn pin_all(&self) -> Result<(), LocalError> {
        let peers = self
            .nodes
            .iter()
            .map(LocalNode::as_peer)
            .collect::<Result<Vec<_>, _>>()?;
        for a in &self.nodes {
            let others: Vec<PeerConfig> = peers.iter().filter(|p| p.id != a.id).cloned().collect();
            a.pin_all(&others)?;
        }
        Ok(())
    }

    /// Starts every node, then waits for each (they start in parallel).
    pub fn start_all(&mut self) -> Result<(), LocalError> {
        for n in &mut self.nodes {
            n.spawn()?;
        }
        for n in &mut self.nodes {
            n.wait_ready()?;
        }
        Ok(())
    }

    /// SIGTERM to every node in turn, each given `timeout` to exit; their
    /// exit statuses.
    pub fn stop_all(&mut self, timeout: Duration) -> Result<Vec<ExitStatus>, LocalError> {
        self.nodes.iter_mut().map(|n| n.sigterm(timeout)).collect()
    }

    pub fn into_nodes(self) -> Vec<LocalNode> {
        self.nodes
    }
}

impl std::ops::Deref for Network {
    type Target = [LocalNode];

    fn deref(&self) -> &[LocalNode] {
        &self.nodes
    }
}

impl std::ops::DerefMut for Network {
    fn deref_mut(&mut self) -> &mut [LocalNode] {
        &mut self.nodes
    }
}
