//! Stores written by earlier versions of comityd open with this one.
//!
//! `tests/fixtures/store-vN/` holds the data directories of two pinned
//! nodes, Arcadia (AR) and Borduria (BO), as store format N left them:
//! requests, a status, a reply, a consultation, spontaneous information,
//! a request refused for its size (failed) and resent, a submission made
//! with an idempotency key, rejections, cosigned checkpoints. `expected.json`
//! says what each held when it was written. The test copies them, starts
//! them with this build and checks that nothing was lost or misread: the
//! same messages in the same states, the same counts, the idempotency key
//! and the resend link still answered, audit logs that verify with the
//! other node as witness, and a new exchange delivered and witnessed.
//!
//! A change that adds state to the store adds a format version, and a new
//! fixture directory written by that version (`write_fixture` below); the
//! old fixtures stay and keep being opened. The keys in the fixtures are
//! test keys of nodes that exist nowhere else.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use comity_client::LocalNode;
use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
use comity_protocol::NodeId;
use comity_tests::{free_port, request_body, TestNode};
use serde_json::{json, Value};

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");
const LONG: Duration = Duration::from_secs(30);
/// The fixtures, newest last; each is opened by [`every_fixture_store_opens`].
const FIXTURES: &[(&str, u32)] = &[("store-v3", 3), ("store-v4", 4), ("store-v5", 5)];
const IDEMPOTENCY_KEY: &str = "fixture-case-2026-0042";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// What a node holds, as the API lists it: (direction, id) → (kind, state, peer).
type Held = BTreeMap<String, Value>;

fn held(node: &LocalNode) -> Held {
    let mut all = Held::new();
    let mut path = "/v1/messages?limit=1000".to_string();
    loop {
        let (page, next) = node.client().get_page(&path).unwrap();
        for m in page.as_array().unwrap() {
            let key = format!(
                "{}/{}/{}",
                m["direction"].as_str().unwrap(),
                m["peer"].as_str().unwrap(),
                m["id"].as_str().unwrap()
            );
            let keep = json!({"kind": m["kind"], "state": m["state"], "subject": m["subject"]});
            assert!(
                all.insert(key.clone(), keep).is_none(),
                "{key} listed twice"
            );
        }
        match next {
            Some(c) => path = format!("/v1/messages?limit=1000&after={c}"),
            None => return all,
        }
    }
}

/// The counts of `GET /v1/node` that must survive (not uptime, not peers' state).
fn counts(node: &LocalNode) -> Value {
    let n = node.client().get("/v1/node").unwrap();
    json!({"outbox": n["outbox"], "inbox": n["inbox"], "rejected": n["rejected"]})
}

fn post(node: &LocalNode, path: &str, body: &Value) -> Value {
    let r = node
        .client()
        .post_raw(path, body.to_string().as_bytes())
        .unwrap();
    assert!(r.is_success(), "POST {path}: {} {}", r.status, r.value());
    r.value()
}

fn with_key(node: &LocalNode, body: &Value) -> Value {
    node.client()
        .post_retried(
            "/v1/messages",
            Some(body),
            IDEMPOTENCY_KEY,
            Default::default(),
        )
        .unwrap()
}

fn verify(node: &LocalNode, witness: NodeId) {
    let bundle = node.client().get_text("/v1/audit/export").unwrap();
    let report = verify_bundle(
        Cursor::new(bundle.as_bytes()),
        &VerifyOptions {
            expected_node: Some(node.id),
            required_witnesses: vec![witness],
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap();
    assert!(report.is_valid(), "{}: {:?}", node.name, report.findings);
}

/// Every witness has cosigned the latest checkpoint (an export asks for
/// one over the entries after it).
fn cosigned(node: &LocalNode) -> bool {
    let audit = &node.client().get("/v1/node").unwrap()["audit"];
    let witnesses = audit["witnesses"].as_array().unwrap();
    !witnesses.is_empty()
        && witnesses
            .iter()
            .all(|w| w["cosigned_size"] == audit["latest_checkpoint"])
}

fn wait(node: &LocalNode, what: &str, mut f: impl FnMut() -> bool) {
    node.wait_until::<comity_client::LocalError>(LONG, what, || Ok(f()))
        .unwrap();
}

/// Copies a fixture node's directory, as git checked it out (modes
/// 0644/0755), giving it the modes comityd requires.
fn copy_node(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_node(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// Gives the copied nodes fresh ports: each one's own and its peer's.
fn new_ports(configs: &[PathBuf; 2]) {
    let old: Vec<u16> = configs
        .iter()
        .map(|c| LocalNode::open(COMITYD, c).unwrap().port)
        .collect();
    let new = [free_port(), free_port()];
    for c in configs {
        let mut text = std::fs::read_to_string(c).unwrap();
        for (o, n) in old.iter().zip(new) {
            text = text.replace(&format!("127.0.0.1:{o}\""), &format!("127.0.0.1:{n}\""));
        }
        std::fs::write(c, text).unwrap();
    }
}

#[test]
fn every_fixture_store_opens() {
    for (name, format) in FIXTURES {
        open_fixture(name, *format);
    }
}

fn open_fixture(name: &str, format: u32) {
    let fixture = fixtures().join(name);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
            .unwrap();
    let work = tempfile::tempdir().unwrap();
    let configs = ["ar", "bo"].map(|n| {
        copy_node(&fixture.join(n), &work.path().join(n));
        work.path().join(n).join("comity.toml")
    });
    new_ports(&configs);
    let [mut a, mut b] = configs.map(|c| LocalNode::open(COMITYD, &c).unwrap());
    a.start().unwrap();
    b.start().unwrap();

    for (node, e) in [(&a, &expected["ar"]), (&b, &expected["bo"])] {
        let log = node.log();
        let opened = if format == comity_node::store::version::CURRENT {
            format!("store format current format={format}")
        } else {
            format!("store format brought up to date from={format}")
        };
        assert!(
            log.contains(&opened),
            "{name}/{}: {opened:?} not in the log",
            node.name
        );
        assert_eq!(node.id.to_string(), e["id"].as_str().unwrap());
        let want: Held = serde_json::from_value(e["messages"].clone()).unwrap();
        assert_eq!(held(node), want, "{name}/{}: messages", node.name);
        assert_eq!(counts(node), e["counts"], "{name}/{}: counts", node.name);
    }
    // The idempotency key still names its message.
    let resubmitted = with_key(&a, &expected["ar"]["keyed_body"]);
    assert_eq!(
        resubmitted["id"], expected["ar"]["keyed_id"],
        "{name}: the idempotency key"
    );
    // The resend link, both ways.
    let failed = expected["ar"]["failed_id"].as_str().unwrap();
    let m = a.client().get(&format!("/v1/messages/{failed}")).unwrap();
    assert_eq!(m["resent_as"], expected["ar"]["resent_as"], "{name}: {m}");

    // The evidence reads out as it was attached, on both sides.
    if let Some(reply) = expected["ar"]["evidence_reply_id"].as_str() {
        for node in [&a, &b] {
            let mut out = Vec::new();
            node.client()
                .download(
                    &format!("/v1/messages/{reply}/attachments/0/content"),
                    &mut out,
                    1 << 20,
                )
                .unwrap();
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&out));
            assert_eq!(
                sha, expected["ar"]["evidence_sha256"],
                "{name}/{}: the evidence",
                node.name
            );
        }
    }

    // Both logs verify, the other node required as witness, before and
    // after a new exchange that continues them.
    verify(&a, b.id);
    verify(&b, a.id);
    let body = json!({"to": "BO", "body": request_body("after the upgrade")});
    let id = post(&a, "/v1/messages", &body)["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait(&a, "the new request delivered", || {
        a.client().get(&format!("/v1/messages/{id}")).unwrap()["state"] == "delivered"
    });
    wait(&a, "AR's log witnessed to its end", || cosigned(&a));
    wait(&b, "BO's log witnessed to its end", || cosigned(&b));
    verify(&a, b.id);
    verify(&b, a.id);
    a.sigterm(LONG).unwrap();
    b.sigterm(LONG).unwrap();
}

/// Writes a fixture of the current store format into `COMITY_WRITE_FIXTURE`
/// (a new directory under tests/fixtures/), then add it to [`FIXTURES`]:
/// `COMITY_WRITE_FIXTURE=tests/fixtures/store-vN cargo test -p comity-node
/// --test fixture_store -- --ignored write_fixture`
#[test]
#[ignore = "writes a fixture; run by hand when the store format changes"]
fn write_fixture() {
    let out = PathBuf::from(std::env::var("COMITY_WRITE_FIXTURE").unwrap());
    assert!(!out.exists(), "{} exists", out.display());
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let mut b = TestNode::new(COMITYD, "Attorney General of Borduria", "BO");
    a.pin(&b);
    b.pin(&a);
    a.start();
    // BO takes envelopes of at most 8 KiB: a larger request fails on AR.
    b.start_with_env(&[("COMITY_MAX_MESSAGE_BYTES", "8192")]);

    let ids = a.send_many(&b, 6, 2);
    let keyed_body = json!({"to": "BO", "body": request_body("Submitted with a key")});
    let keyed_id = with_key(&a, &keyed_body)["id"].clone();
    let info = json!({"to": "BO", "body": {"kind": "info", "subject": "Spontaneous information",
        "body": "Transfers seen on the accounts of Example Holdings Ltd."}});
    let info = post(&a, "/v1/messages", &info);
    let mut big = request_body("Too large for Borduria");
    if let comity_protocol::message::Body::Request(r) = &mut big {
        r.body = "x".repeat(20_000);
    }
    let failed = post(&a, "/v1/messages", &json!({"to": "BO", "body": big}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait(&a, "the large one failed", || a.outbox_count("failed") == 1);
    let resent = post(&a, &format!("/v1/messages/{failed}/resend"), &json!({}));
    let b_msgs = 8;
    wait(&b, "everything received", || b.inbox_count() == b_msgs);
    post(
        &b,
        &format!("/v1/messages/{}/status", ids[0]),
        &json!({"status": {"status": "registered", "reference": "BO-2026-17"}}),
    );
    // The reply carries evidence (format 5: its manifest and key in the
    // store, its files under data/attachments/ on both nodes).
    let evidence: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let evidence_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&evidence));
    let staged = b
        .client()
        .upload(
            &comity_client::upload::attachment_path("statements-2025.csv", "text/csv"),
            &mut &evidence[..],
            evidence.len() as u64,
            &mut |_| {},
        )
        .unwrap();
    let reply = post(
        &b,
        &format!("/v1/messages/{}/reply", ids[1]),
        &json!({"subject": "Bank records", "body": "Statements for 2025 attached.",
            "attachments": [staged["attachment"]]}),
    );
    let consultation = json!({"to": "AR", "body": {"kind": "consultation",
        "subject": "Before refusing", "body": "Could the request be narrowed to 2025?",
        "regarding": ids[2]}});
    post(&b, "/v1/messages", &consultation);
    wait(&a, "BO's three messages received", || a.inbox_count() == 3);
    std::thread::sleep(Duration::from_secs(2));
    wait(&a, "AR witnessed", || cosigned(&a));
    wait(&b, "BO witnessed", || cosigned(&b));

    let describe = |node: &TestNode| json!({"id": node.id.to_string(), "messages": held(node), "counts": counts(node)});
    let mut expected = json!({"ar": describe(&a), "bo": describe(&b)});
    expected["ar"]["keyed_body"] = keyed_body;
    expected["ar"]["keyed_id"] = keyed_id;
    expected["ar"]["failed_id"] = json!(failed);
    expected["ar"]["resent_as"] = resent["id"].clone();
    expected["ar"]["info_id"] = info["id"].clone();
    expected["ar"]["evidence_reply_id"] = reply["id"].clone();
    expected["ar"]["evidence_sha256"] = json!(evidence_sha);
    a.sigterm();
    b.sigterm();
    for (node, name) in [(&a, "ar"), (&b, "bo")] {
        copy_tree(node.dir(), &out.join(name));
    }
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap(),
    )
    .unwrap();
}

/// The node's directory without what a run leaves beside the store (its
/// log, its socket).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "comityd.log" || e.file_type().unwrap().is_socket() {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}
