//! Pinning between real `comityd` processes on 127.0.0.1: a node talks
//! only to the keys it pinned, in both directions — as a server it refuses
//! clients it has not pinned, as a client it refuses a server that does not
//! present the pinned key — and nothing is delivered until the operators'
//! pins agree.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comity_config::Limits;
use comity_node::transport::tls::SERVER_NAME;
use comity_node::transport::{client_config, wire, TlsIdentity};
use comity_protocol::session::SessionFrame;
use comity_protocol::{Identity, Timestamp};
use comity_tests::{request_body, TestNode};
use serde_json::{json, Value};
use tokio::time::timeout;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");
const LONG: Duration = Duration::from_secs(30);
/// Several retries at the test configuration's backoff (100 ms .. 1 s).
const SEVERAL_RETRIES: Duration = Duration::from_millis(2500);
/// How long A may take to answer or refuse.
const ANSWER: Duration = Duration::from_secs(5);
const REFUSED: &str = "refused a connection from a key that is not pinned";

/// The outbox entry of `id` on `node`, as the operator lists it.
fn outbox_entry(node: &TestNode, id: &str) -> Value {
    node.get("/v1/messages?box=outbox")
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {}'s outbox", node.name))
        .clone()
}

/// Lines of `node`'s log that report refusing the key `of`.
fn refusals_of(node: &TestNode, of: &TestNode) -> usize {
    let id = of.id.to_string();
    node.log()
        .lines()
        .filter(|l| l.contains(REFUSED) && l.contains(&id))
        .count()
}

/// Handshakes `node` refused since it started (each one, unlike the log).
fn handshakes_refused(node: &TestNode) -> u64 {
    node.get("/v1/node")["handshakes_refused"].as_u64().unwrap()
}

/// `id` is still waiting on `node`: queued, not delivered, with an error
/// the operator can read. Returns the error.
fn assert_still_queued(node: &TestNode, id: &str) -> String {
    let m = outbox_entry(node, id);
    assert_eq!(m["state"], "queued", "{m}");
    assert_eq!(node.outbox_count("delivered"), 0);
    m["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no last_error: {m}"))
        .to_string()
}

/// `to` holds exactly the messages `ids` from `from` (after both stopped).
fn assert_received_once(from: &TestNode, to: &TestNode, ids: &[&str]) {
    let snap = to.snapshot();
    let mut got: Vec<String> = snap
        .inbound
        .iter()
        .filter(|m| m.sender == from.id)
        .map(|m| m.id.to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

/// (a) C pins A, A has not pinned C: A refuses C at the handshake, logs
/// C's key, and stores nothing; C keeps the message queued with the error.
/// Once A's operator pins C, the same message goes through.
#[test]
fn a_server_refuses_a_client_whose_key_it_has_not_pinned() {
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let mut c = TestNode::new(COMITYD, "Prosecutor General of Carpania", "CP");
    c.pin(&a);
    a.start();
    c.start();

    let id = c.send(&a, "from a node Arcadia never pinned");
    a.wait_until(LONG, "A to log that it refused C's key", || {
        refusals_of(&a, &c) > 0
    });
    c.wait_until(LONG, "the refusal as C's last error", || {
        outbox_entry(&c, &id)["last_error"].is_string()
    });
    std::thread::sleep(SEVERAL_RETRIES);
    let error = assert_still_queued(&c, &id);
    println!("C's last error: {error}");
    // The log names C's key once; every attempt is counted.
    assert!(
        handshakes_refused(&a) >= 2,
        "C retries and A refuses every attempt:\n{}",
        a.log()
    );
    assert_eq!(a.inbox_count(), 0);
    assert_eq!(a.get("/v1/node")["inbox"], 0);
    // A cannot even address C: C is nobody to A.
    let body = json!({"to": c.country, "body": request_body("to a stranger")});
    let r = a
        .client()
        .post_raw("/v1/messages", body.to_string().as_bytes())
        .unwrap();
    let (status, v) = (r.status, r.value());
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "unknown-peer", "{v}");

    // A's operator pins C: the queued message is delivered on C's next try.
    assert!(a.sigterm().success());
    a.pin(&c);
    a.start();
    c.wait_until(LONG, "delivery once A pins C", || {
        c.outbox_count("delivered") == 1
    });
    assert!(a.sigterm().success());
    assert!(c.sigterm().success());
    assert_received_once(&c, &a, &[&id]);
}

/// (b) A pins C, C has not pinned A: C refuses A at the handshake; A's
/// messages stay queued with the error and C's inbox stays empty.
#[test]
fn a_client_is_refused_by_a_server_that_has_not_pinned_it() {
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let mut c = TestNode::new(COMITYD, "Prosecutor General of Carpania", "CP");
    a.pin(&c);
    a.start();
    c.start();

    let ids = [
        a.send(&c, "to a node that never pinned Arcadia (1)"),
        a.send(&c, "to a node that never pinned Arcadia (2)"),
    ];
    c.wait_until(LONG, "C to log that it refused A's key", || {
        refusals_of(&c, &a) > 0
    });
    a.wait_until(LONG, "the refusal as A's last error", || {
        ids.iter()
            .all(|id| outbox_entry(&a, id)["last_error"].is_string())
    });
    std::thread::sleep(SEVERAL_RETRIES);
    for id in &ids {
        let error = assert_still_queued(&a, id);
        println!("A's last error for {id}: {error}");
    }
    assert!(handshakes_refused(&c) >= 2, "{}", c.log());
    assert_eq!(c.inbox_count(), 0);

    // C's operator pins A: both go through.
    assert!(c.sigterm().success());
    c.pin(&a);
    c.start();
    a.wait_until(LONG, "delivery once C pins A", || {
        a.outbox_count("delivered") == 2
    });
    assert!(a.sigterm().success());
    assert!(c.sigterm().success());
    assert_received_once(&a, &c, &[&ids[0], &ids[1]]);
}

/// A pinned B's id at an address where D listens. D pins A, so D would
/// accept A: only A's check of the server's key can refuse, and it does.
/// Nothing reaches D; A's message waits with the reason. Once A's pin
/// points at B's real address, it is delivered to B.
#[test]
fn a_pinned_id_at_an_address_with_a_different_key_is_refused() {
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let mut b = TestNode::new(COMITYD, "Attorney General of Borduria", "BO");
    let mut d = TestNode::new(COMITYD, "Impostor of Borduria", "DA");
    a.pin_as(b.id, d.port, &b.name, &b.country);
    d.pin(&a);
    b.pin(&a);
    a.start();
    d.start();

    let id = a.send(&b, "meant for Borduria");
    a.wait_until(LONG, "the wrong key as A's last error", || {
        outbox_entry(&a, &id)["last_error"].is_string()
    });
    std::thread::sleep(SEVERAL_RETRIES);
    let error = assert_still_queued(&a, &id);
    println!("A's last error: {error}");
    assert!(
        error.contains("cannot connect"),
        "the handshake itself failed: {error}"
    );
    // D saw A try (it accepts A's key: A's own check aborted the
    // handshake) and got nothing.
    assert!(d.log().contains("handshake failed"), "{}", d.log());
    assert_eq!(d.inbox_count(), 0);
    assert_eq!(refusals_of(&d, &a), 0, "D never refused A: A refused D");
    // A's peer list says it is not connected to "B".
    let peers = a.get("/v1/peers");
    let pb = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["country"] == "BO")
        .unwrap();
    assert_eq!(pb["connected"], false, "{pb}");

    // Correct the pin: B's id at B's address.
    assert!(a.sigterm().success());
    let config = std::fs::read_to_string(a.config_path()).unwrap();
    let wrong = format!("address = \"127.0.0.1:{}\"", d.port);
    assert_eq!(config.matches(&wrong).count(), 1, "{config}");
    let right = format!("address = \"127.0.0.1:{}\"", b.port);
    std::fs::write(a.config_path(), config.replace(&wrong, &right)).unwrap();
    b.start();
    a.start();
    a.wait_until(LONG, "delivery to the real B", || {
        a.outbox_count("delivered") == 1
    });
    assert_eq!(d.inbox_count(), 0);
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
    assert!(d.sigterm().success());
    assert_received_once(&a, &b, &[&id]);
    assert_eq!(d.snapshot().inbound.len(), 0);
}

/// At the protocol level: a client with an unpinned key completes nothing
/// with A. Its connection is closed with a TLS error (the refusal happens
/// in the handshake, A's verifier names the key), and A never says hello.
#[test]
fn an_unpinned_key_is_refused_in_the_handshake_before_any_stream() {
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    a.start();
    let stranger = Identity::generate(Timestamp::now());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reason = rt.block_on(async {
        let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
        let tls = TlsIdentity::new(&stranger).unwrap();
        let config = client_config(&tls, a.id, &Limits::default()).unwrap();
        let addr = ([127, 0, 0, 1], a.port).into();
        let connecting = endpoint.connect_with(config, addr, SERVER_NAME).unwrap();
        // With TLS 1.3 the client may finish its side of the handshake
        // before the server has checked its certificate; the refusal then
        // arrives as the connection's close.
        let conn = match timeout(ANSWER, connecting).await.unwrap() {
            Err(e) => return e,
            Ok(c) => c,
        };
        let talk = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            let hello = SessionFrame::Hello {
                cert: stranger.encryption_cert().clone(),
            };
            let _ = wire::write_frame(&mut send, &hello).await;
            match wire::read_frame(&mut recv, 4096, std::time::Duration::from_secs(10)).await {
                Ok(f) => panic!("A answered an unpinned key: {f:?}"),
                Err(_) => Ok::<(), quinn::ConnectionError>(()),
            }
        };
        let _ = timeout(ANSWER, talk).await.expect("A closes within 5 s");
        conn.close_reason().expect("the connection is closed")
    });
    println!("the stranger's connection: {reason}");
    match &reason {
        quinn::ConnectionError::ConnectionClosed(close) => {
            assert!(
                close.error_code.to_string().contains("crypto")
                    || format!("{close:?}").contains("crypto"),
                "closed with a TLS alert: {close:?}"
            );
        }
        other => panic!("refused otherwise than by a TLS alert: {other:?}"),
    }
    let key = stranger.id().to_string();
    a.wait_until(LONG, "A to log the stranger's key", || {
        a.log()
            .lines()
            .any(|l| l.contains(REFUSED) && l.contains(&key))
    });
    assert_eq!(a.inbox_count(), 0);
    assert!(a.sigterm().success());
}

/// BUG (diagnostics): when a peer refuses this node's key, the operator's
/// `last_error` reads "stream read: connection lost", which does not say
/// that the peer refused us in the TLS handshake. The cause is there —
/// quinn's `ReadError::ConnectionLost` carries `ConnectionClosed { error_code:
/// crypto(31), reason: "invalid peer certificate:
/// ApplicationVerificationFailure" }` — but `WireError`'s Display
/// (`"stream read: {0}"`, node/src/transport/wire.rs) prints only the outer
/// "connection lost", and `outbound::run` stores `e.to_string()`.
#[test]
fn the_operator_sees_that_the_peer_refused_our_key() {
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let mut c = TestNode::new(COMITYD, "Prosecutor General of Carpania", "CP");
    c.pin(&a);
    a.start();
    c.start();
    let id = c.send(&a, "from a node Arcadia never pinned");
    a.wait_until(LONG, "A to refuse C", || refusals_of(&a, &c) > 0);
    c.wait_until(LONG, "C's last error", || {
        outbox_entry(&c, &id)["last_error"].is_string()
    });
    std::thread::sleep(SEVERAL_RETRIES);
    let error = assert_still_queued(&c, &id);
    assert!(
        ["certificate", "handshake", "refused", "not pinned"]
            .iter()
            .any(|w| error.contains(w)),
        "last_error does not say that A refused C's key: {error:?}"
    );
}
