//! The operator's workflow through the real binaries only: `comity init`,
//! `comityd`, `comity peer add`, `send`, `messages`, `show`, `status`,
//! `stats`; and bad input through the CLI and the admin socket.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use comity_client::{Client, LocalNode};
use comity_tests::{comityd_beside, free_port};
use serde_json::Value;

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

/// One node made by `comity init`, and its daemon while it runs.
struct Node {
    /// Dropped first: its daemon is killed before the directory goes.
    local: LocalNode,
    dir: tempfile::TempDir,
    country: String,
    id: String,
    port: u16,
}

impl Node {
    fn init(name: &str, country: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let out = comity(&[
            "init",
            "--dir",
            dir.path().join("node").to_str().unwrap(),
            "--name",
            name,
            "--country",
            country,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let config = dir.path().join("node/comity.toml");
        Node {
            local: LocalNode::open(comityd_beside(COMITY), &config).unwrap(),
            dir,
            country: country.into(),
            id: v["id"].as_str().unwrap().into(),
            port,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("node/comity.toml")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("node/comity.sock")
    }

    /// Starts `comityd` and waits until its admin socket answers.
    fn start(&mut self) {
        if let Err(e) = self.local.start() {
            panic!("{e}");
        }
    }

    /// A client of the admin socket, for requests made by hand.
    fn client(&self) -> Client {
        self.local.client()
    }

    /// `comity --config <this node> args…`
    fn run(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        comity(&all)
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "comity {args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    fn pin(&self, other: &Node) {
        let addr = format!("127.0.0.1:{}", other.port);
        let out = self.run(&[
            "peer",
            "add",
            "--id",
            &other.id,
            "--addr",
            &addr,
            "--name",
            "peer",
            "--country",
            &other.country,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

fn comity(args: &[&str]) -> Output {
    Command::new(COMITY)
        .args(args)
        .env_remove("COMITY_CONFIG")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn pair() -> (Node, Node) {
    let mut a = Node::init("Ministry of Justice of Arcadia", "AR");
    let mut b = Node::init("Attorney General of Borduria", "BO");
    a.start();
    b.start();
    a.pin(&b);
    b.pin(&a);
    (a, b)
}

fn state_of(node: &Node, id: &str) -> String {
    node.json(&["show", id, "--json"])["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn request_walks_from_sending_to_executed_through_the_cli() {
    let (a, b) = pair();
    let sent = a.json(&[
        "send",
        "request",
        "--to",
        "BO",
        "--type",
        "mla",
        "--legal-basis",
        "uncac-46",
        "--subject",
        "Bank records of Example Holdings",
        "--body",
        "Please provide the records.",
        "--urgent",
        "--deadline",
        "2027-01-31",
        "--offence",
        "Bribery",
        "--iccs",
        "07031",
        "--json",
    ]);
    let id = sent["id"].as_str().unwrap().to_string();
    wait_for(
        || state_of(&a, &id) == "delivered",
        "delivered on the sender",
    );

    let inbox = b.json(&["messages", "--inbox", "--json"]);
    let m = inbox
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id.as_str())
        .expect("in B's inbox");
    assert_eq!(m["kind"], "request");
    assert_eq!(m["peer"], a.id.as_str());
    let outbox = a.json(&["messages", "--outbox", "--json"]);
    assert_eq!(outbox[0]["state"], "delivered");

    // B walks it through its business states.
    for args in [
        vec![
            "status",
            &id,
            "--set",
            "registered",
            "--ref",
            "BO-AG-2026-5531",
        ],
        vec![
            "status",
            &id,
            "--set",
            "in-execution",
            "--note",
            "Bank contacted",
        ],
        vec!["status", &id, "--set", "executed"],
    ] {
        let out = b.run(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    // An invalid transition is refused with a reason.
    let out = b.run(&["status", &id, "--set", "registered", "--ref", "again"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("final"), "{}", stderr(&out));

    // A sees the history.
    wait_for(
        || {
            a.json(&["show", &id, "--json"])["history"]
                .as_array()
                .map(|h| h.len())
                == Some(3)
        },
        "three status updates at the requester",
    );
    let shown = a.json(&["show", &id, "--json"]);
    let states: Vec<&str> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["registered", "in-execution", "executed"]);
    assert_eq!(
        shown["history"][0]["status"]["reference"],
        "BO-AG-2026-5531"
    );
    let human = a.run(&["show", &id]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("executed"));

    // Statistics on both sides.
    let stats = a.json(&["stats", "--format", "json"]);
    assert_eq!(stats["sent"]["requests"], 1);
    assert_eq!(stats["sent"]["by_type"]["mla"], 1);
    assert_eq!(stats["sent"]["by_legal_basis"]["uncac-46"], 1);
    assert_eq!(stats["sent"]["by_offence_section"]["07"], 1);
    assert_eq!(stats["sent"]["by_peer"]["BO"], 1);
    assert_eq!(stats["sent"]["by_state"]["executed"], 1);
    assert_eq!(stats["sent"]["time_to_final"]["count"], 1);
    let stats_b = b.json(&["stats", "--format", "json"]);
    assert_eq!(stats_b["received"]["requests"], 1);
    assert_eq!(stats_b["received"]["by_state"]["executed"], 1);
    let csv = a.run(&["stats", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert_eq!(csv.lines().next(), Some("direction,dimension,value,count"));
    assert!(csv.contains("sent,type,mla,1"), "{csv}");

    // Peers show their connection.
    let peers = a.json(&["peer", "list", "--json"]);
    assert_eq!(peers[0]["country"], "BO");
    assert_eq!(peers[0]["pending"], 0);
}

#[test]
fn spontaneous_information_is_acknowledged_with_its_restrictions_shown() {
    let (a, b) = pair();
    let sent = a.json(&[
        "send",
        "info",
        "--to",
        "BO",
        "--subject",
        "Transfers through shell companies",
        "--body",
        "We observed transfers.",
        "--restriction",
        "Not to be used as evidence without consent",
        "--confidential",
        "--json",
    ]);
    let id = sent["id"].as_str().unwrap().to_string();
    wait_for(|| b.run(&["show", &id]).status.success(), "info received");
    let shown = String::from_utf8_lossy(&b.run(&["show", &id]).stdout).into_owned();
    assert!(
        shown.contains("RESTRICTION on use: Not to be used as evidence without consent"),
        "{shown}"
    );
    assert!(shown.contains("confidential"), "{shown}");
    let out = b.run(&["status", &id, "--set", "executed"]);
    assert_eq!(out.status.code(), Some(1), "info cannot be executed");
    let out = b.run(&["status", &id, "--set", "acknowledged"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        || a.json(&["show", &id, "--json"])["history"][0]["status"]["status"] == "acknowledged",
        "acknowledgement at the sender",
    );
}

#[test]
fn bad_input_is_refused_clearly_and_the_node_carries_on() {
    let (a, _b) = pair();
    let send = |extra: &[&str]| {
        let mut args = vec![
            "send",
            "request",
            "--to",
            "BO",
            "--subject",
            "S",
            "--body",
            "B",
        ];
        args.extend_from_slice(extra);
        a.run(&args)
    };
    // Unknown request type: the error lists the valid values.
    let out = send(&["--type", "mlaa", "--legal-basis", "uncac-46"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("valid values: mla, extradition"),
        "{}",
        stderr(&out)
    );
    // Unknown legal basis.
    let out = send(&["--type", "mla", "--legal-basis", "uncac-99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("uncac-46"), "{}", stderr(&out));
    // Missing required flag: a usage error.
    let out = a.run(&[
        "send",
        "request",
        "--to",
        "BO",
        "--type",
        "mla",
        "--subject",
        "S",
        "--body",
        "B",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--legal-basis"), "{}", stderr(&out));
    // Required per type: extradition needs the offence.
    let out = send(&["--type", "extradition", "--legal-basis", "uncac-44"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("offence"), "{}", stderr(&out));
    // Unknown peer.
    let out = a.run(&[
        "send",
        "request",
        "--to",
        "ZZ",
        "--type",
        "mla",
        "--legal-basis",
        "uncac-46",
        "--subject",
        "S",
        "--body",
        "B",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no pinned peer"), "{}", stderr(&out));
    // Oversize body file.
    let big = a.dir.path().join("big.txt");
    std::fs::write(
        &big,
        vec![b'x'; comity_protocol::message::limits::MAX_BODY_BYTES + 1],
    )
    .unwrap();
    let out = a.run(&[
        "send",
        "request",
        "--to",
        "BO",
        "--type",
        "mla",
        "--legal-basis",
        "uncac-46",
        "--subject",
        "S",
        "--body-file",
        big.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at most"), "{}", stderr(&out));
    // Malformed JSON straight to the socket.
    let raw = |path: &str, body: &[u8]| {
        let r = a.client().post_raw(path, body).unwrap();
        (r.status, r.value())
    };
    let get = |path: &str| {
        let r = a.client().request("GET", path, None).unwrap();
        (r.status, r.value())
    };
    let (status, v) = raw("/v1/messages", b"{\"to\": \"BO\", \"body\": ");
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "bad-request");
    let (status, v) = raw(
        "/v1/messages",
        b"{\"to\": \"BO\", \"body\": {\"kind\": \"request\"}}",
    );
    // Well-formed JSON of the wrong shape: 422, still in the error format.
    assert_eq!(
        (status, &v["error"]["code"]),
        (422, &Value::from("bad-request")),
        "{v}"
    );
    let (status, _) = raw("/v1/peers", &[0xff, 0xfe, 0x00]);
    assert_eq!(status, 400);
    // Status updates only through their own endpoint, which checks the rules.
    let update =
        comity_protocol::message::Body::StatusUpdate(comity_protocol::message::StatusUpdate {
            regarding: comity_protocol::MessageId([0; 16]),
            status: comity_protocol::message::BusinessStatus::Executed,
            note: None,
        });
    let raw_status = serde_json::json!({"to": "BO", "body": update});
    let (status, v) = raw("/v1/messages", raw_status.to_string().as_bytes());
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid-message");
    let (status, v) = get("/v1/messages?box=bogus");
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &Value::from("bad-request"))
    );
    let (status, _) = get("/v1/nonexistent");
    assert_eq!(status, 404);
    // A typo in a node id is caught by its checksum.
    let mut typo = a.id.clone().into_bytes();
    typo[3] = if typo[3] == b'a' { b'b' } else { b'a' };
    let out = a.run(&[
        "peer",
        "add",
        "--id",
        std::str::from_utf8(&typo).unwrap(),
        "--addr",
        "127.0.0.1:1",
        "--country",
        "CC",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("mistyped"), "{}", stderr(&out));

    // Nothing above disturbed the node: it still answers and sends.
    let ok = send(&["--type", "mla", "--legal-basis", "uncac-46", "--json"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        a.json(&["messages", "--outbox", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn admin_socket_is_0600_and_a_stopped_daemon_is_explained() {
    let mut a = Node::init("Ministry of Justice of Arcadia", "AR");
    // Something that is not a socket at the socket's path is never replaced.
    std::fs::write(a.socket(), "operator's notes").unwrap();
    let out = Command::new(comityd_beside(COMITY))
        .arg("--config")
        .arg(a.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a socket"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(a.socket()).unwrap(),
        "operator's notes"
    );
    std::fs::remove_file(a.socket()).unwrap();
    let out = a.run(&["peer", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("comityd is not running"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("comityd --config"),
        "{}",
        stderr(&out)
    );
    a.start();
    let mode = std::fs::metadata(a.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let key = std::fs::metadata(a.dir.path().join("node/keys/node.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    // Usage errors exit 2.
    assert_eq!(comity(&["send"]).status.code(), Some(2));
    assert_eq!(comity(&["bogus"]).status.code(), Some(2));
    // Completions and man page come from the same definitions.
    let out = comity(&["completions", "bash"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("comity"));
    let out = comity(&["man"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH comity"));
}

#[test]
fn audit_files_are_written_without_following_a_planted_link() {
    let (a, b) = pair();
    let out = a.run(&[
        "send",
        "request",
        "--to",
        "BO",
        "--type",
        "mla",
        "--legal-basis",
        "uncac-46",
        "--subject",
        "Bank records",
        "--body",
        "Please.",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(|| state_of(&a, &id) == "delivered", "delivery");
    drop(b);
    // Another local user plants links where the files will be written: at
    // the partial path the old export used, and at the final paths.
    let dir = a.dir.path();
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let bundle = dir.join("bundle.jsonl");
    let proof = dir.join("proof.json");
    std::os::unix::fs::symlink(&victim, dir.join("bundle.partial")).unwrap();
    std::os::unix::fs::symlink(&victim, &proof).unwrap();
    for args in [
        vec!["audit", "export", "--out", bundle.to_str().unwrap()],
        vec!["audit", "proof", &id, "--out", proof.to_str().unwrap()],
    ] {
        let out = a.run(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    for written in [&bundle, &proof] {
        let meta = std::fs::symlink_metadata(written).unwrap();
        assert!(
            meta.file_type().is_file(),
            "{} is a link",
            written.display()
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    assert!(comity(&["audit", "verify", bundle.to_str().unwrap()])
        .status
        .success());
}
