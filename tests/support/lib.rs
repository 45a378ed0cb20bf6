//! Support for end-to-end tests: real `comityd` processes on 127.0.0.1,
//! driven through their admin sockets, inspected through their stores once
//! stopped. Every process is killed when its [`TestNode`] is dropped.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test support: a panic is the report

pub mod peer;
pub mod relay;
pub mod softhsm;
pub mod tmpfs;

use std::process::ExitStatus;
use std::time::Duration;

/// The admin client's HTTP response parser, for the tests' other listeners.
pub use comity_client::http;
pub use comity_client::local::tail;
use comity_client::LocalNode;
pub use comity_client::Settings;
use comity_node::store::{InboundMessage, OutboundMessage, OutboundStatus, Store};
use comity_protocol::message::{
    Body, CaseReferences, IccsCode, Language, LegalBasis, Offence, Request, RequestType, Thread,
    Urgency,
};
use comity_protocol::{Identity, NodeId};
use serde_json::{json, Value};

/// A free UDP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    comity_client::local::free_port().unwrap()
}

/// The `comityd` built beside the `comity` binary at `comity` (for the
/// tests of the CLI package, which has no `CARGO_BIN_EXE_comityd`).
pub fn comityd_beside(comity: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(comity).with_file_name("comityd");
    assert!(
        p.exists(),
        "build comityd first (cargo build --workspace): {}",
        p.display()
    );
    p
}

/// A GET on a plain-HTTP listener of a node (metrics, health): status and
/// body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = std::io::BufReader::new(s);
    let head = http::read_head(&mut r).unwrap();
    let body = http::read_body(&mut r, head.framing, 16 << 20).unwrap();
    (head.status, String::from_utf8(body).unwrap())
}

/// Quick timeouts, retries and checkpoints, so that a test's story takes
/// seconds rather than minutes.
pub fn test_settings() -> Settings {
    Settings {
        handshake_timeout_secs: Some(3),
        idle_timeout_secs: Some(5),
        initial_backoff_ms: Some(100),
        max_backoff_secs: Some(1),
        checkpoint_entries: Some(50),
        checkpoint_interval_secs: Some(1),
        // Independent of how full the machine's disk is (the default is 1 %
        // of it); the disk-full tests set their own.
        disk_reserve_mib: Some(16),
        disk_reserve_percent: Some(0),
        ..Settings::default()
    }
}

/// A [`LocalNode`] whose operations panic with the reason (and the node's
/// log) instead of returning errors: a panic is a test's failure report.
/// Everything else of [`LocalNode`] (`id`, `keys`, `port`, `dir()`,
/// `log()`, `pid()`, …) is reached through `Deref`.
pub struct TestNode {
    node: LocalNode,
}

impl std::ops::Deref for TestNode {
    type Target = LocalNode;

    fn deref(&self) -> &LocalNode {
        &self.node
    }
}

impl std::ops::DerefMut for TestNode {
    fn deref_mut(&mut self) -> &mut LocalNode {
        &mut self.node
    }
}

impl TestNode {
    /// A new node (as `comity init` makes one, with [`test_settings`])
    /// listening on a free port; no peers yet.
    pub fn new(comityd: &str, name: &str, country: &str) -> TestNode {
        let node = LocalNode::builder(comityd, name, country)
            .settings(test_settings())
            .log_filter("info,comity_node=debug")
            .create()
            .unwrap();
        TestNode { node }
    }

    /// [`TestNode::new`] with other settings (start from [`test_settings`]).
    pub fn with_settings(comityd: &str, name: &str, country: &str, settings: Settings) -> TestNode {
        let node = LocalNode::builder(comityd, name, country)
            .settings(settings)
            .log_filter("info,comity_node=debug")
            .create()
            .unwrap();
        TestNode { node }
    }

    /// The node `comity init` made at `config_path`, given
    /// [`test_settings`] (written into its file).
    pub fn open(comityd: &str, config_path: &std::path::Path) -> TestNode {
        let text = std::fs::read_to_string(config_path).unwrap();
        std::fs::write(config_path, test_settings().apply(&text).unwrap()).unwrap();
        let mut node = LocalNode::open(comityd, config_path).unwrap();
        node.set_log_filter(Some("info,comity_node=debug"));
        TestNode { node }
    }

    /// A node with the production defaults of `comity init` (e.g. the
    /// 10 s handshake timeout) and info logging, for measurements.
    pub fn production(comityd: &str, name: &str, country: &str) -> TestNode {
        let node = LocalNode::builder(comityd, name, country)
            .log_filter("info")
            .create()
            .unwrap();
        TestNode { node }
    }

    /// Pins `other` (in the config file; takes effect at next start).
    pub fn pin(&self, other: &TestNode) {
        self.pin_as(other.id, other.port, &other.name, &other.country);
    }

    pub fn pin_as(&self, id: NodeId, port: u16, name: &str, country: &str) {
        assert!(self.pid().is_none(), "stop {} before pinning", self.name);
        let peer = comity_config::PeerConfig {
            id,
            address: format!("127.0.0.1:{port}"),
            name: name.into(),
            country: country.parse().unwrap(),
            repinned_from: Vec::new(),
            rotated_from: Vec::new(),
            confirm_rotation: false,
        };
        self.node.pin(&peer).unwrap();
    }

    /// Starts `comityd` and waits until its admin API answers.
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// [`TestNode::start`] with extra environment (e.g. `COMITY_METRICS_LISTEN`).
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        if let Err(e) = self.node.start_with_env(env) {
            panic!("{e}");
        }
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.node.kill9().unwrap();
    }

    /// SIGTERM and wait for the exit status (at most 20 s).
    pub fn sigterm(&mut self) -> ExitStatus {
        match self.node.sigterm(Duration::from_secs(20)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// The node's secret keys (from its key file), for tests that must
    /// forge what only this node could sign.
    pub fn identity(&self) -> Identity {
        self.node.identity().unwrap()
    }

    /// `comity keys ARGS --json` of this node, run with the `comity`
    /// binary at `comity`.
    pub fn keys(&self, comity: &str, args: &[&str]) -> Value {
        let out = std::process::Command::new(comity)
            .arg("--config")
            .arg(self.config_path())
            .arg("keys")
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "comity keys {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The size of this node's log that `witness` has cosigned (0: none).
    pub fn cosigned_by(&self, witness: &TestNode) -> u64 {
        self.get("/v1/node")["audit"]["witnesses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["peer"] == witness.id.to_string())
            .and_then(|w| w["cosigned_size"].as_u64())
            .unwrap_or(0)
    }

    /// `comity --config <this node's file> ARGS`, run with the CLI binary
    /// `comity` (the environment's `COMITY_CONFIG` removed).
    pub fn cli(&self, comity: &std::path::Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new(comity)
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("COMITY_CONFIG")
            .output()
            .unwrap()
    }

    /// The body of a GET as text (for the audit export).
    pub fn get_text(&self, path: &str) -> String {
        self.node.client().get_text(path).unwrap()
    }

    pub fn get(&self, path: &str) -> Value {
        self.node.client().get(path).unwrap()
    }

    /// Submits a request through the admin API; returns its id.
    pub fn send(&self, to: &TestNode, subject: &str) -> String {
        let body = json!({"to": to.country, "body": request_body(subject)}).to_string();
        let r = self
            .node
            .client()
            .post_raw("/v1/messages", body.as_bytes())
            .unwrap();
        let v = r.value();
        assert_eq!(r.status, 201, "{v}");
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

    /// Waits until `f` holds, polling; panics with `what` and the end of
    /// the log after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let waited =
            self.node
                .wait_until(timeout, what, || Ok::<_, comity_client::LocalError>(f()));
        if let Err(e) = waited {
            panic!("{e}");
        }
    }

    /// Everything in the (stopped) node's store.
    pub fn snapshot(&self) -> Snapshot {
        assert!(
            self.pid().is_none(),
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

/// A command's stdout, once it is known to have succeeded (both streams
/// are the failure report).
pub fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two nodes of `comityd`, each pinning the other, started.
pub fn pair(comityd: &str) -> (TestNode, TestNode) {
    pair_with(comityd, test_settings())
}

/// [`pair`], Arcadia taking a peer's identity transition without a notice
/// period (`[keys] peer_rotation_notice_hours = 0`).
pub fn pair_without_notice(comityd: &str) -> (TestNode, TestNode) {
    let no_notice = Settings {
        peer_rotation_notice_hours: Some(0),
        ..test_settings()
    };
    pair_with(comityd, no_notice)
}

fn pair_with(comityd: &str, a_settings: Settings) -> (TestNode, TestNode) {
    let mut a =
        TestNode::with_settings(comityd, "Ministry of Justice of Arcadia", "AR", a_settings);
    let mut b = TestNode::new(comityd, "Attorney General of Borduria", "BO");
    a.pin(&b);
    b.pin(&a);
    a.start();
    b.start();
    (a, b)
}

/// Both nodes' audit logs, exported, verify offline as their own, each
/// with the other as a required witness.
pub fn assert_logs_verify(a: &TestNode, b: &TestNode) {
    use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
    for (n, w) in [(a, b), (b, a)] {
        let bundle = n.get_text("/v1/audit/export");
        let report = verify_bundle(
            std::io::Cursor::new(bundle.as_bytes()),
            &VerifyOptions {
                expected_node: Some(n.id),
                required_witnesses: vec![w.id],
                allow_unwitnessed_tail: 0,
                threads: 1,
            },
        )
        .unwrap();
        assert!(report.is_valid(), "{}'s log: {:?}", n.name, report.findings);
    }
}

/// The arguments of `comity send request` to `to`: a request for mutual
/// legal assistance under UNCAC art. 46 with `subject` and `body`, then
/// `extra` (`--attach FILE`, `--json`, …).
pub fn request_args<'a>(
    to: &'a str,
    subject: &'a str,
    body: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "send",
        "request",
        "--to",
        to,
        "--type",
        "mla",
        "--legal-basis",
        "uncac-46",
        "--subject",
        subject,
        "--body",
        body,
    ];
    args.extend_from_slice(extra);
    args
}
