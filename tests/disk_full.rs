//! A full disk, on the receiver and then on the sender: the node that
//! cannot write says so (`/healthz` 503, `storage` in `GET /v1/node`,
//! `comity_store_writable 0`), refuses submissions and defers what it
//! receives; once the filesystem grows it reopens its store by itself — the
//! same process, no restart — and every accepted message is delivered
//! exactly once and both audit logs verify.
//!
//! The data directory is a small tmpfs, which needs root. Elsewhere these
//! tests say they are skipped; with `CI=true` a skip is a failure.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use comity_protocol::message::Body;
use comity_tests::tmpfs::Tmpfs;
use comity_tests::{
    assert_logs_verify, free_port, http_get, request_body, test_settings, Settings, TestNode,
};
use serde_json::{json, Value};

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");
const MESSAGES: usize = 40;
const LONG: Duration = Duration::from_secs(60);
/// Each request's text: 40 of them need several times the small disk.
const BODY_BYTES: usize = 2_000_000;

fn large_request(i: usize) -> Body {
    let mut body = request_body(&format!("evidence request {i}"));
    if let Body::Request(r) = &mut body {
        r.body = "x".repeat(BODY_BYTES);
    }
    body
}

/// Submits one large request: its id, or the API's answer when refused.
fn submit(from: &TestNode, to: &TestNode, i: usize) -> Result<String, (u16, Value)> {
    let body = json!({"to": to.country, "body": large_request(i)}).to_string();
    let r = from
        .client()
        .post_raw("/v1/messages", body.as_bytes())
        .unwrap();
    let v = r.value();
    match r.status {
        201 => Ok(v["id"].as_str().unwrap().to_string()),
        s => Err((s, v)),
    }
}

/// A node whose data directory may sit on a small disk: a reserve of
/// `reserve_mib` and no percentage, the metrics listener on `metrics`.
fn node(name: &str, country: &str, reserve_mib: u32, metrics: u16) -> TestNode {
    let settings = Settings {
        disk_reserve_mib: Some(reserve_mib),
        disk_reserve_percent: Some(0),
        metrics_listen: Some(format!("127.0.0.1:{metrics}").parse().unwrap()),
        max_backoff_secs: Some(1),
        ..test_settings()
    };
    TestNode::with_settings(COMITYD, name, country, settings)
}

/// The last `n` lines of a log above debug level, each message once (a
/// stuck receiver's log is the same warnings repeated every second).
fn quiet_tail(log: &str, n: usize) -> String {
    let mut seen = BTreeSet::new();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains(" DEBUG "))
        .filter(|l| seen.insert(l.get(28..).unwrap_or(l).to_string()))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn storage(n: &TestNode) -> Value {
    n.get("/v1/node")["storage"].clone()
}

/// Polls until the node reports one of `states` (`disk-full`,
/// `store-unwritable`) on every channel: `/healthz` 503, `storage` in
/// `GET /v1/node`, the metrics. Returns the state seen.
fn wait_until_unhealthy(n: &TestNode, metrics: u16, states: &[&str], deadline: Duration) -> String {
    let start = Instant::now();
    loop {
        let (status, health) = http_get(metrics, "/healthz");
        if status == 503 {
            let s = storage(n);
            let state = s["state"].as_str().unwrap().to_string();
            assert!(states.contains(&state.as_str()), "{s}");
            assert!(health.contains(&state), "{health}");
            let (_, m) = http_get(metrics, "/metrics");
            if state == "store-unwritable" {
                assert_eq!(s["writable"], false, "{s}");
                assert!(s["fault"]["reason"].as_str().is_some(), "{s}");
                assert!(m.contains("\ncomity_store_writable 0\n"), "{m}");
            } else {
                assert!(m.contains("\ncomity_disk_full 1\n"), "{m}");
            }
            return state;
        }
        assert!(
            start.elapsed() < deadline,
            "{} never reported {states:?}; /healthz {status} {health}\n{}",
            n.name,
            n.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn outbound_ids(n: &TestNode) -> BTreeSet<String> {
    n.snapshot()
        .outbound
        .iter()
        .map(|(m, _)| m.id.to_string())
        .collect()
}

/// Every message `a` holds is delivered, and `b` received each exactly once.
fn assert_exactly_once(a: &mut TestNode, b: &mut TestNode, accepted: &BTreeSet<String>) {
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
    let sent = a.snapshot();
    let received = b.snapshot();
    let sent_ids: BTreeSet<String> = sent
        .outbound
        .iter()
        .map(|(m, _)| m.id.to_string())
        .collect();
    assert!(
        sent.outbound
            .iter()
            .all(|(_, s)| s.state == comity_node::store::OutboundState::Delivered),
        "not every message was delivered"
    );
    assert!(accepted.is_subset(&sent_ids), "an accepted message is lost");
    let received_ids: Vec<String> = received.inbound.iter().map(|m| m.id.to_string()).collect();
    let distinct: BTreeSet<String> = received_ids.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        received_ids.len(),
        "a message was stored twice"
    );
    assert_eq!(distinct, sent_ids, "received is not what was sent");
}

#[test]
fn a_receiver_whose_disk_fills_defers_then_recovers_by_itself() {
    let (pa, pb) = (free_port(), free_port());
    let mut a = node("Ministry of Justice of Arcadia", "AR", 1, pa);
    // 8 MiB of reserve: incoming envelopes are deferred before sled or
    // the audit log meet a full disk.
    let mut b = node("Attorney General of Borduria", "BO", 8, pb);
    let Some(disk) = Tmpfs::mount(&b.dir().join("data"), 24) else {
        return;
    };
    a.pin(&b);
    b.pin(&a);
    a.start();
    b.start();
    let pid = b.pid();

    let accepted: BTreeSet<String> = (0..MESSAGES)
        .map(|i| submit(&a, &b, i).unwrap_or_else(|e| panic!("{e:?}")))
        .collect();
    // Deferred before the disk is full, or a write failed: sled writes a
    // leaf page holding several large values again whole, so how much one
    // message costs on disk is not known before it is written.
    let seen = wait_until_unhealthy(&b, pb, &["disk-full", "store-unwritable"], LONG);
    let delivered_while_full = a.outbox_count("delivered");
    assert!(
        delivered_while_full < MESSAGES as u64,
        "all delivered on a 24 MiB disk?"
    );

    disk.grow(1024);
    // On a timeout, the sender's side too (one CI run timed out here after
    // the slow way, a stuck flush then a re-exec, with the receiver idle).
    let until = std::time::Instant::now() + Duration::from_secs(150);
    while a.outbox_count("delivered") != MESSAGES as u64 {
        assert!(
            std::time::Instant::now() < until,
            "not every message delivered: sender outbox {}, receiver inbox {}\n--- sender log ---\n{}\n--- receiver log ---\n{}",
            a.get("/v1/node")["outbox"],
            b.inbox_count(),
            a.log_tail(60),
            quiet_tail(&b.log(), 60)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(b.pid(), pid, "the receiver was restarted");
    let (status, health) = http_get(pb, "/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(storage(&b)["state"], "ok");
    assert_logs_verify(&a, &b);
    eprintln!(
        "receiver disk full ({seen}): {delivered_while_full} of {MESSAGES} delivered while full; all after growing"
    );
    assert_exactly_once(&mut a, &mut b, &accepted);
}

#[test]
fn a_sender_whose_disk_fills_refuses_submissions_then_recovers_by_itself() {
    let (pa, pb) = (free_port(), free_port());
    // No reserve: the submissions themselves fill the disk.
    let mut a = node("Ministry of Justice of Arcadia", "AR", 0, pa);
    let mut b = node("Attorney General of Borduria", "BO", 1, pb);
    let Some(disk) = Tmpfs::mount(&a.dir().join("data"), 24) else {
        return;
    };
    a.pin(&b);
    b.pin(&a);
    // Start the sender alone: its queue fills its disk before anything
    // leaves (nothing is deleted once delivered either).
    a.start();
    let pid = a.pid();

    let mut accepted = BTreeSet::new();
    let mut refused = Vec::new();
    for i in 0..MESSAGES {
        match submit(&a, &b, i) {
            Ok(id) => {
                accepted.insert(id);
            }
            Err((status, v)) => refused.push((status, v["error"]["code"].clone())),
        }
    }
    assert!(!refused.is_empty(), "40 × 2 MB fitted on 24 MiB?");
    assert!(
        refused
            .iter()
            .all(|(s, c)| *s == 503 && (c == "store-unwritable" || c == "unconfirmed")),
        "{refused:?}"
    );
    wait_until_unhealthy(&a, pa, &["store-unwritable"], LONG);
    b.start();

    disk.grow(1024);
    // The slow way takes over a minute: a flush stuck for 20 s, the store
    // not released within 30 s, then the re-executed daemon.
    a.wait_until(
        Duration::from_secs(150),
        "the sender to reopen its store",
        || {
            a.client()
                .get("/v1/node")
                .is_ok_and(|v| v["storage"]["state"] == "ok")
        },
    );
    assert_eq!(a.pid(), pid, "the sender was restarted");
    assert!(
        a.log()
            .contains("reopening the node after its store could not write"),
        "{}",
        a.log_tail(30)
    );
    // Submissions are taken again.
    accepted.insert(submit(&a, &b, MESSAGES).unwrap_or_else(|e| panic!("{e:?}")));
    a.wait_until(
        Duration::from_secs(120),
        "every held message delivered",
        || {
            let v = a.get("/v1/node")["outbox"].clone();
            v["queued"].as_u64().unwrap_or(0) + v["sent"].as_u64().unwrap_or(0) == 0
        },
    );
    assert_logs_verify(&a, &b);
    eprintln!(
        "sender disk full: {} accepted, {} refused ({:?})",
        accepted.len(),
        refused.len(),
        refused.first()
    );
    assert_exactly_once(&mut a, &mut b, &accepted);
    drop(disk);
}

#[test]
fn a_submission_below_the_disk_reserve_is_refused() {
    // A reserve of 1 TiB is more than this machine has free.
    let mut a = node("Ministry of Justice of Arcadia", "AR", 1 << 20, free_port());
    let b = TestNode::new(COMITYD, "Attorney General of Borduria", "BO");
    a.pin(&b);
    a.start();
    let (status, v) = submit(&a, &b, 0).unwrap_err();
    assert_eq!(status, 507, "{v}");
    assert_eq!(v["error"]["code"], "disk-reserve", "{v}");
    let text = v["error"]["message"].as_str().unwrap();
    assert!(text.contains("disk_reserve_mib"), "{text}");
    let d = storage(&a)["disk"].clone();
    assert!(
        d["free_bytes"].as_u64().unwrap() < d["reserve_bytes"].as_u64().unwrap(),
        "{d}"
    );
    assert_eq!(storage(&a)["writable"], true);
    assert!(a.sigterm().success());
    assert!(outbound_ids(&a).is_empty(), "a refused message was stored");
}

// What a re-executed comityd is handed: it replaced an image whose store
// could not be released (see `reexec` in comityd's main.rs), with the same
// arguments and these two variables. Starting comityd with them is what
// the exec does, without a disk that fails.

const REOPENED_AFTER: &str = "COMITYD_REOPENED_AFTER";
const REOPEN_BACKOFF: &str = "COMITYD_REOPEN_BACKOFF";
const FULL: &str = "audit log: No space left on device (os error 28)";

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_reexecuted_daemon_goes_on_with_the_backoff_of_the_image_before_it() {
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    // The image before it reopened a moment ago after waiting 1 s: this one
    // waits 2 s before it opens the store and the admin socket.
    let backoff = format!("1000@{}", unix_ms());
    let started = Instant::now();
    a.start_with_env(&[(REOPENED_AFTER, FULL), (REOPEN_BACKOFF, &backoff)]);
    let took = started.elapsed();
    let log = a.log();
    assert!(
        log.contains("reopened recently; waiting before reopening again"),
        "{}",
        a.log_tail(30)
    );
    assert!(log.contains("delay=2s"), "{}", a.log_tail(30));
    assert!(took >= Duration::from_secs(2), "ready after {took:?}");
    let bundle = a.get_text("/v1/audit/export");
    let started: Vec<Value> = bundle
        .lines()
        .filter(|l| l.starts_with("{\"entry\""))
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["fields"].clone())
        .filter(|f| f["kind"] == "node-started")
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    let detail = started[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("reopened after the store could not write") && detail.contains(FULL),
        "{detail}"
    );
    assert!(a.sigterm().success());
}

#[test]
fn a_reopened_daemon_waits_for_its_port_to_be_released() {
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    // The old endpoint's socket, released 1.5 s after the new image starts.
    let held = std::net::UdpSocket::bind(("127.0.0.1", a.port)).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(held);
    });
    // The image before it reopened long ago: no backoff, so the bind is
    // tried while the port is still held.
    a.start_with_env(&[(REOPENED_AFTER, FULL), (REOPEN_BACKOFF, "0@0")]);
    releaser.join().unwrap();
    let log = a.log();
    assert!(
        log.contains("the port is still in use after the reopen; retrying"),
        "{}",
        a.log_tail(30)
    );
    assert!(log.contains("the port is free again"), "{}", a.log_tail(30));
    assert!(a.sigterm().success());
}

/// A submission counts its own size: with 1 MiB free above the reserve, a
/// 4 MB request is refused (it would take several times that on disk), a
/// small one is taken.
#[test]
fn a_submission_that_would_eat_into_the_reserve_is_refused() {
    let mut a = node("Ministry of Justice of Arcadia", "AR", 8, free_port());
    let b = TestNode::new(COMITYD, "Attorney General of Borduria", "BO");
    let data = a.dir().join("data");
    let Some(_disk) = Tmpfs::mount(&data, 32) else {
        return;
    };
    a.pin(&b);
    a.start();
    let d = storage(&a)["disk"].clone();
    let (free, reserve) = (
        d["free_bytes"].as_u64().unwrap(),
        d["reserve_bytes"].as_u64().unwrap(),
    );
    let filler = free - reserve - (1 << 20);
    std::fs::write(data.join("filler"), vec![0u8; filler as usize]).unwrap();
    // Measured by the node once a second.
    a.wait_until(Duration::from_secs(10), "the filler seen", || {
        storage(&a)["disk"]["free_bytes"].as_u64().unwrap() < free - filler / 2
    });
    let d = storage(&a)["disk"].clone();
    let above = d["free_bytes"].as_u64().unwrap() as i64 - reserve as i64;
    assert!((900_000..1_100_000).contains(&above), "{d}");

    let mut big = request_body("evidence request");
    if let Body::Request(r) = &mut big {
        r.body = "x".repeat(4_000_000);
    }
    let body = json!({"to": b.country, "body": big}).to_string();
    let r = a
        .client()
        .post_raw("/v1/messages", body.as_bytes())
        .unwrap();
    let v = r.value();
    assert_eq!(r.status, 507, "{v}");
    assert_eq!(v["error"]["code"], "disk-reserve", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("once this message"),
        "{v}"
    );
    let small = a.send(&b, "a small request");
    assert!(a.sigterm().success());
    assert_eq!(outbound_ids(&a), BTreeSet::from([small]));
}

/// Uploads `bytes` to `node` as an attachment: the stored id.
fn staged(node: &TestNode, name: &str, bytes: &[u8]) -> String {
    let v = node
        .client()
        .upload(
            &comity_client::upload::attachment_path(name, "application/octet-stream"),
            &mut &bytes[..],
            bytes.len() as u64,
            &mut |_| {},
        )
        .unwrap();
    v["attachment"].as_str().unwrap().to_string()
}

#[test]
fn a_receiver_without_room_for_an_attachment_waits_then_takes_it() {
    let (pa, pb) = (free_port(), free_port());
    let mut a = node("Ministry of Justice of Arcadia", "AR", 1, pa);
    let mut b = node("Attorney General of Borduria", "BO", 8, pb);
    let Some(disk) = Tmpfs::mount(&b.dir().join("data"), 40) else {
        return;
    };
    a.pin(&b);
    b.pin(&a);
    a.start();
    b.start();
    // 36 MiB of evidence: more than B has free above its reserve.
    let evidence = vec![7u8; 36 << 20];
    let attachment = staged(&a, "extraction.bin", &evidence);
    let body = json!({"to": "BO", "attachments": [attachment],
        "body": request_body("With an extraction attached")});
    let id = a.client().post("/v1/messages", &body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Deferred: B keeps nothing of it, A keeps it and says why.
    a.wait_until(LONG, "the sender told why", || {
        a.get(&format!("/v1/messages/{id}"))["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("do not fit"))
    });
    assert_eq!(a.outbox_count("delivered"), 0);
    assert_eq!(b.inbox_count(), 0);
    let received = b.dir().join("data/attachments/received");
    assert_eq!(std::fs::read_dir(&received).unwrap().count(), 0);

    disk.grow(256);
    a.wait_until(
        Duration::from_secs(120),
        "delivered once there is room",
        || a.outbox_count("delivered") == 1,
    );
    assert_eq!(b.inbox_count(), 1);
    assert_logs_verify(&a, &b);
}
