//! Retry-safe submission and resending, through the real binaries: a
//! client killed between the node's flush and its answer, a client that
//! goes away, a dropped connection the CLI retries itself, a key reused for
//! other content, and a failed message sent again under a new id.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comity_protocol::codec;
use comity_tests::{comityd_beside, request_body, TestNode};
use serde_json::{json, Value};

const COMITY: &str = env!("CARGO_BIN_EXE_comity");
const WAIT: Duration = Duration::from_secs(30);

/// Arcadia and Borduria, pinned to each other; started unless told.
fn pair(start_b: bool) -> (TestNode, TestNode) {
    let mut a = TestNode::new(
        comityd_beside(COMITY).to_str().unwrap(),
        "Ministry of Justice of Arcadia",
        "AR",
    );
    let mut b = TestNode::new(
        comityd_beside(COMITY).to_str().unwrap(),
        "Attorney General of Borduria",
        "BO",
    );
    a.pin(&b);
    b.pin(&a);
    a.start();
    if start_b {
        b.start();
    }
    (a, b)
}

fn cli(node: &TestNode) -> Command {
    let mut c = Command::new(COMITY);
    c.arg("--config")
        .arg(node.config_path())
        .env_remove("COMITY_CONFIG")
        .env_remove("COMITY_ADMIN_SOCKET")
        .env_remove("COMITY_TEST_STALL_BEFORE_ANSWER");
    c
}

fn run(node: &TestNode, args: &[&str]) -> Output {
    cli(node).args(args).output().unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "comity failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

const SEND: &[&str] = &[
    "send",
    "request",
    "--to",
    "BO",
    "--type",
    "mla",
    "--legal-basis",
    "uncac-46",
    "--body",
    "Please provide the account statements of Example Holdings for 2025.",
    "--json",
];

/// `comity send request` with this subject and extra flags.
fn send_args<'a>(subject: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = SEND.to_vec();
    v.extend_from_slice(&["--subject", subject]);
    v.extend_from_slice(extra);
    v
}

fn outbox(node: &TestNode) -> Vec<Value> {
    node.get("/v1/messages?box=outbox")
        .as_array()
        .unwrap()
        .clone()
}

fn inbox_from(node: &TestNode, from: &TestNode) -> Vec<Value> {
    node.get("/v1/messages?box=inbox")
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["peer"] == from.id.to_string().as_str())
        .cloned()
        .collect()
}

fn state(node: &TestNode, id: &str) -> String {
    node.get(&format!("/v1/messages/{id}"))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An HTTP/1.1 request as the CLI writes it, with an `Idempotency-Key`.
fn keyed_request(path: &str, key: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: comity\r\nConnection: close\r\nIdempotency-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Writes `request` to the admin socket and reads the whole answer.
fn exchange(socket: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

fn answer_body(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

#[test]
fn kill9_of_the_cli_between_the_flush_and_its_answer_then_a_retry_with_its_key_makes_one_message() {
    let (a, b) = pair(true);
    let args = send_args("Bank records", &["--idempotency-key", "AR-MLA-2026-0042.1"]);
    let mut first = cli(&a)
        .args(&args)
        .env("COMITY_TEST_STALL_BEFORE_ANSWER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hook says so once the node's answer has begun to arrive: the
    // node has flushed the message and answered; the CLI has not read it.
    let stderr = first.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let line = rx
        .recv_timeout(WAIT)
        .expect("the CLI never got to its stall");
    assert!(line.contains("stalled before reading the answer"), "{line}");
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut printed = String::new();
    first
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert_eq!(printed, "", "the killed CLI printed an answer");

    let retry = json_of(&run(&a, &args));
    let id = retry["id"].as_str().unwrap();
    let sent = outbox(&a);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["id"], id);
    b.wait_until(WAIT, "the message at Borduria", || {
        !inbox_from(&b, &a).is_empty()
    });
    a.wait_until(WAIT, "the receipt at Arcadia", || {
        state(&a, id) == "delivered"
    });
    let received = inbox_from(&b, &a);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["id"], id);
}

/// Writes the keyed `request` to `node` and hangs up once it has made its
/// message (hanging up at once could end the connection before the node
/// read the body: then nothing was made), without reading the answer;
/// waits until that message is delivered to `peer` without a restart,
/// then sends the same request again and checks it is answered as a
/// replay of the same message. Returns the id and the replayed answer.
fn abandoned_then_replayed(node: &TestNode, peer: &TestNode, request: &[u8]) -> (String, Value) {
    {
        let mut s = UnixStream::connect(node.socket()).unwrap();
        s.write_all(request).unwrap();
        node.wait_until(WAIT, "the message made", || outbox(node).len() == 1);
    }
    let id = outbox(node)[0]["id"].as_str().unwrap().to_string();
    node.wait_until(WAIT, "the abandoned message delivered", || {
        state(node, &id) == "delivered"
    });
    assert_eq!(inbox_from(peer, node).len(), 1);

    let again = exchange(node.socket(), request);
    assert!(again.starts_with("HTTP/1.1 201"), "{again}");
    assert!(
        again
            .to_ascii_lowercase()
            .contains("\r\nidempotent-replayed: true\r\n"),
        "{again}"
    );
    let v = answer_body(&again);
    assert_eq!(v["id"], id.as_str());
    assert_eq!(outbox(node).len(), 1);
    (id, v)
}

#[test]
fn a_submission_whose_client_went_away_is_completed_and_its_retry_answered_alike() {
    let (a, b) = pair(true);
    let body = json!({"to": "BO", "body": request_body("Freezing of accounts")});
    let request = keyed_request("/v1/messages", "gone-1", &body);
    let (_, v) = abandoned_then_replayed(&a, &b, &request);
    assert_eq!(v["state"], "queued");
}

/// As for a submission, so for a status update (and, in the same way,
/// a reply, a resend and an alarm's acknowledgement): it is finished on
/// its own task whether or not its client waits. (On this machine the
/// handler also finishes before the hang-up is seen, so this passes with
/// `to_completion` removed too: it checks the outcome, not the race.)
#[test]
fn a_status_update_whose_client_went_away_is_completed_and_its_retry_answered_alike() {
    let (a, b) = pair(true);
    let request = a.send(&b, "Hearing of a witness");
    b.wait_until(WAIT, "the request at Borduria", || {
        !inbox_from(&b, &a).is_empty()
    });
    let body = json!({"status": {"status": "registered", "reference": "BO-2026-17"}});
    let path = format!("/v1/messages/{request}/status?peer=AR");
    let update = keyed_request(&path, "status-gone-1", &body);
    let (_, v) = abandoned_then_replayed(&b, &a, &update);
    assert_eq!(v["regarding"], request.as_str());
}

#[test]
fn a_key_answered_is_durable_with_its_message_through_kill9_of_the_node() {
    let (mut a, _b) = pair(false);
    let args = send_args("Bank records", &["--idempotency-key", "before-the-crash"]);
    let first = json_of(&run(&a, &args));
    a.kill9();
    a.start();
    assert_eq!(json_of(&run(&a, &args)), first);
    assert_eq!(outbox(&a).len(), 1);
}

#[test]
fn the_same_key_with_other_content_is_refused_and_makes_nothing() {
    let (a, _b) = pair(false);
    let first = json_of(&run(
        &a,
        &send_args("Bank records", &["--idempotency-key", "k-1"]),
    ));
    let again = json_of(&run(
        &a,
        &send_args("Bank records", &["--idempotency-key", "k-1"]),
    ));
    assert_eq!(again, first, "a retry gets the same answer");

    let other = run(
        &a,
        &send_args("Other records", &["--idempotency-key", "k-1"]),
    );
    assert_eq!(other.status.code(), Some(1));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("idempotency key \"k-1\" was used for another request"),
        "{err}"
    );

    // Through the API: 409 with its code, for another endpoint too.
    let socket = a.socket().to_path_buf();
    let id = first["id"].as_str().unwrap();
    for (path, body) in [
        (
            "/v1/messages".to_string(),
            json!({"to": "BO", "body": request_body("Other records")}),
        ),
        (
            format!("/v1/messages/{id}/status"),
            json!({"status": {"status": "withdrawn"}}),
        ),
    ] {
        let answer = exchange(&socket, &keyed_request(&path, "k-1", &body));
        assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
        assert_eq!(
            answer_body(&answer)["error"]["code"],
            "idempotency-key-reused"
        );
    }
    let long = "k".repeat(129);
    for bad in ["", "a b", long.as_str()] {
        let answer = exchange(&socket, &keyed_request("/v1/messages", bad, &json!({})));
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad:?}: {answer}");
        assert_eq!(answer_body(&answer)["error"]["code"], "bad-idempotency-key");
    }
    assert_eq!(outbox(&a).len(), 1, "a refused request made a message");
}

/// A stand-in for the admin socket: it hands each request to the real
/// one, but for the first it drops the client's connection once the node
/// has answered, without passing the answer on. Returns the requests seen.
fn dropping_proxy(listen: PathBuf, node: PathBuf) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(listen).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let mut client = conn.unwrap();
            let request = read_request(&mut client);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&request).into_owned());
            let answer = exchange(&node, &request);
            if n > 0 {
                let _ = client.write_all(answer.as_bytes());
            }
        }
    });
    seen
}

/// One request: its head, and as many body bytes as it announces.
fn read_request(s: &mut UnixStream) -> Vec<u8> {
    let mut r = BufReader::new(s);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        head.extend_from_slice(&line);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    head.extend_from_slice(&body);
    head
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|l| {
        let (n, v) = l.split_once(": ")?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[test]
fn the_cli_retries_a_dropped_connection_with_its_own_key_and_makes_one_message() {
    let (a, _b) = pair(false);
    let dir = tempfile::tempdir().unwrap();
    let proxy = dir.path().join("proxy.sock");
    let seen = dropping_proxy(proxy.clone(), a.socket().to_path_buf());
    let out = cli(&a)
        .args(send_args("Bank records", &[]))
        .env("COMITY_ADMIN_SOCKET", &proxy)
        .output()
        .unwrap();
    let v = json_of(&out);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one try and one retry: {seen:?}");
    let keys: Vec<_> = seen
        .iter()
        .map(|r| header(r, "idempotency-key").unwrap())
        .collect();
    assert_eq!(keys[0], keys[1], "the retry changed the key");
    assert!(keys[0].starts_with("cli-"), "{}", keys[0]);
    let sent = outbox(&a);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["id"], v["id"]);
}

/// A request whose sealed envelope is `len` bytes (a frame of 314 bytes
/// around the encoded body: docs/protocol.md §6.1).
fn request_sealed_to(subject: &str, len: usize) -> Value {
    let mut body = request_body(subject);
    let encoded = codec::encode(&body).unwrap().len();
    let comity_protocol::message::Body::Request(r) = &mut body else {
        unreachable!()
    };
    r.body.push_str(&"x".repeat(len - 314 - encoded));
    assert_eq!(314 + codec::encode(&body).unwrap().len(), len);
    json!({"to": "BO", "body": body})
}

#[test]
fn a_failed_message_is_resent_under_a_new_id_linked_both_ways_and_a_delivered_one_is_not() {
    let (a, mut b) = pair(false);
    // Borduria refuses envelopes over 4096 bytes for good (TooLarge).
    b.start_with_env(&[("COMITY_MAX_MESSAGE_BYTES", "4096")]);
    let small = json_of(&run(&a, &send_args("Small", &[])));
    let small = small["id"].as_str().unwrap().to_string();
    let post = |body: &Value| {
        let r = a
            .client()
            .post_raw("/v1/messages", body.to_string().as_bytes())
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.value());
        r.value()["id"].as_str().unwrap().to_string()
    };
    let big = post(&request_sealed_to("Large", 4120));
    a.wait_until(
        WAIT,
        "the small one delivered, the large one failed",
        || state(&a, &small) == "delivered" && state(&a, &big) == "failed",
    );
    let shown = a.get(&format!("/v1/messages/{big}"));
    assert!(
        shown["last_error"]
            .as_str()
            .unwrap()
            .contains("refused by peer (too-large)"),
        "{shown}"
    );

    // Only a failed message can be resent.
    let refused = run(&a, &["resend", &small, "--json"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("is delivered, not failed"), "{err}");
    let on_b = run(&b, &["resend", &small]);
    assert_eq!(on_b.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&on_b.stderr).contains("only a message this node sent"),
        "{}",
        String::from_utf8_lossy(&on_b.stderr)
    );

    // Borduria raises its limit; the resend reaches it.
    b.sigterm();
    b.start();
    let resent = json_of(&run(&a, &["resend", &big, "--json"]));
    let new = resent["id"].as_str().unwrap().to_string();
    assert_ne!(new, big);
    assert_eq!(resent["resend_of"], big.as_str());
    assert_eq!(resent["state"], "queued");
    a.wait_until(WAIT, "the resend delivered", || {
        state(&a, &new) == "delivered"
    });
    let original = a.get(&format!("/v1/messages/{big}"));
    let copy = a.get(&format!("/v1/messages/{new}"));
    assert_eq!(original["state"], "failed");
    assert_eq!(original["resent_as"], new.as_str());
    assert_eq!(copy["resend_of"], big.as_str());
    assert_eq!(copy["resent_as"], Value::Null);
    assert_eq!(copy["body"], original["body"], "the content changed");
    assert_ne!(copy["envelope_digest"], original["envelope_digest"]);
    let received = b.get(&format!("/v1/messages/{new}"));
    assert_eq!(received["body"], original["body"]);
    // Borduria was told, in the notice signed by Arcadia, what it resends.
    assert_eq!(received["resend_of"], big.as_str());
    let shown = String::from_utf8_lossy(&run(&a, &["show", &big]).stdout).into_owned();
    assert!(shown.contains(&format!("resent as:   {new}")), "{shown}");

    // Once is enough: the original now has its resend.
    let twice = run(&a, &["resend", &big]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains(&format!("already resent as {new}")),
        "{}",
        String::from_utf8_lossy(&twice.stderr)
    );

    // The audit log names both.
    let log = a.get_text("/v1/audit/export");
    let entry = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| {
            e["fields"]["kind"] == "admin-action" && e["fields"]["message_id"] == big.as_str()
        })
        .unwrap_or_else(|| panic!("no admin-action entry on {big}:\n{log}"));
    assert_eq!(entry["fields"]["detail"], format!("resent as {new}"));
    assert_eq!(entry["fields"]["peer"], b.id.to_string().as_str());
}
