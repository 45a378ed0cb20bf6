//! Support for end-to-end tests: real `comityd` processes on 127.0.0.1,
//! driven through their admin sockets, inspected through their stores once
//! stopped. Every process is killed when its [`TestNode`] is dropped.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test support: a panic is the report

pub mod http;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use comity_node::store::{InboundMessage, OutboundMessage, OutboundStatus, Store};
use comity_protocol::message::{
    Body, CaseReferences, IccsCode, Language, LegalBasis, Offence, Request, RequestType, Thread,
    Urgency,
};
use comity_protocol::{Identity, NodeId, PeerKeys, Timestamp};
use serde_json::{json, Value};

/// A free UDP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node's files and, while running, its `comityd` process.
pub struct TestNode {
    pub name: String,
    pub country: String,
    pub id: NodeId,
    /// Public keys, for verifying what this node signed.
    pub keys: PeerKeys,
    pub port: u16,
    dir: tempfile::TempDir,
    comityd: PathBuf,
    child: Option<Child>,
}

impl TestNode {
    /// Keys (0600) and a config listening on a free port; no peers yet.
    pub fn new(comityd: &str, name: &str, country: &str) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate(Timestamp::now());
        comity_config::write_new_key_file(&dir.path().join("keys/node.key"), &identity).unwrap();
        let port = free_port();
        let config = format!(
            "[node]\nname = {name:?}\ncountry = {country:?}\nlisten = \"127.0.0.1:{port}\"\n\
             identity_key = \"keys/node.key\"\ndata_dir = \"data\"\nadmin_socket = \"admin.sock\"\n\n\
             [limits]\nhandshake_timeout_secs = 3\nidle_timeout_secs = 5\n\n\
             [retry]\ninitial_backoff_ms = 100\nmax_backoff_secs = 1\n\n\
             [audit]\ncheckpoint_entries = 50\ncheckpoint_interval_secs = 1\n"
        );
        std::fs::write(dir.path().join("comity.toml"), config).unwrap();
        TestNode {
            name: name.into(),
            country: country.into(),
            id: identity.id(),
            keys: identity.public().clone(),
            port,
            dir,
            comityd: PathBuf::from(comityd),
            child: None,
        }
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

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("comityd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Pins `other` (appends a `[[peer]]` table; takes effect at next start).
    pub fn pin(&self, other: &TestNode) {
        self.pin_as(other.id, other.port, &other.name, &other.country);
    }

    pub fn pin_as(&self, id: NodeId, port: u16, name: &str, country: &str) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.config_path())
            .unwrap();
        write!(
            f,
            "\n[[peer]]\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\nname = {name:?}\ncountry = {country:?}\n"
        )
        .unwrap();
    }

    /// Starts `comityd` and waits until its admin API answers.
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// [`TestNode::start`] with extra environment (e.g. `COMITY_METRICS_LISTEN`).
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(&self.comityd)
            .arg("--config")
            .arg(self.config_path())
            .env("COMITY_LOG", "info,comity_node=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if http::get(&self.socket(), "/v1/node").is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited at start ({status}):\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not start:\n{}", self.name, self.log());
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => c.try_wait().unwrap().is_none(),
        }
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("not running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM and wait for the exit status (at most 20 s).
    pub fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("not running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{} did not stop within 20 s after SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's secret keys (from its key file), for tests that must
    /// forge what only this node could sign.
    pub fn identity(&self) -> Identity {
        comity_config::load_key_file(&self.dir().join("keys/node.key")).unwrap()
    }

    /// The raw body of a GET (for the audit export).
    pub fn get_text(&self, path: &str) -> String {
        http::get_raw(&self.socket(), path).unwrap()
    }

    pub fn get(&self, path: &str) -> Value {
        http::get(&self.socket(), path).unwrap().1
    }

    /// Submits a request through the admin API; returns its id.
    pub fn send(&self, to: &TestNode, subject: &str) -> String {
        let (status, v) = http::post(
            &self.socket(),
            "/v1/messages",
            &json!({"to": to.country, "body": request_body(subject)}),
        )
        .unwrap();
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Sends `n` requests to `to` from `threads` client threads; returns
    /// the ids the node accepted.
    pub fn send_many(&self, to: &TestNode, n: usize, threads: usize) -> Vec<String> {
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t * per..((t + 1) * per).min(n))
                            .map(|i| self.send(to, &format!("request {i}")))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        })
    }

    /// Outbox counts by state, from the running node.
    pub fn outbox_count(&self, state: &str) -> u64 {
        self.get("/v1/node")["outbox"][state].as_u64().unwrap_or(0)
    }

    pub fn inbox_count(&self) -> u64 {
        self.get("/v1/node")["inbox"].as_u64().unwrap()
    }

    /// Waits until `f` holds, polling; panics with `what` after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{}: timed out waiting for {what}\n--- log ---\n{}",
            self.name,
            tail(&self.log(), 60)
        );
    }

    /// Everything in the (stopped) node's store.
    pub fn snapshot(&self) -> Snapshot {
        assert!(
            self.child.is_none(),
            "stop {} before reading its store",
            self.name
        );
        let path = self.dir().join("data/store");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = Store::open(&path).unwrap();
            let outbound = store.outbound_all().collect::<Result<Vec<_>, _>>().unwrap();
            let inbound = store.inbound_all().collect::<Result<Vec<_>, _>>().unwrap();
            let rejections = store.rejections().count();
            store.close().await.unwrap();
            Snapshot {
                outbound,
                inbound,
                rejections,
            }
        })
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Snapshot {
    pub outbound: Vec<(OutboundMessage, OutboundStatus)>,
    pub inbound: Vec<InboundMessage>,
    pub rejections: usize,
}

/// A valid MLA request with this subject.
pub fn request_body(subject: &str) -> Body {
    Body::Request(Request {
        request_type: RequestType::MutualLegalAssistance,
        legal_basis: LegalBasis::UncacArt46,
        offence: Some(Offence {
            description: "Bribery of a national public official".into(),
            iccs: IccsCode::new("07031").unwrap(),
        }),
        urgency: Urgency::Normal,
        deadline: None,
        language: Language::default(),
        case_refs: CaseReferences::default(),
        subject: subject.into(),
        body: "Please provide the bank records described in the annex.".into(),
        thread: Thread::default(),
    })
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl TestNode {
    /// The process id of the running `comityd`, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}
