//! Unpinning a peer revokes it on every path within a second, against a
//! real `comityd` on 127.0.0.1: its open connection is closed, and a ticket
//! it kept from an earlier handshake does not get it back in (the node
//! issues none and keeps no session cache, so every connection is a full
//! handshake checked against the pins of that moment).
//!
//! The revoked peer H lives in this test process with its own identity, and
//! is a worse client than a node: it keeps every session ticket it is given
//! and tries to resume with it.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comity_node::transport::tls::{client_tls, SERVER_NAME};
use comity_node::transport::{wire, TlsIdentity};
use comity_protocol::session::SessionFrame;
use comity_protocol::{Identity, Timestamp};
use comity_tests::{free_port, TestNode};
use quinn::{Connection, Endpoint};
use tokio::time::timeout;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");

/// The node's own client TLS with resumption turned back on: one config,
/// one session store, for every connection H makes.
fn keeping_tickets(h: &Identity, a: &TestNode) -> quinn::ClientConfig {
    let mut tls = client_tls(&TlsIdentity::new(h).unwrap(), a.id).unwrap();
    tls.resumption = rustls::client::Resumption::in_memory_sessions(16);
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

async fn connect(
    endpoint: &Endpoint,
    config: quinn::ClientConfig,
    a: &TestNode,
) -> Result<Connection, quinn::ConnectionError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], a.port));
    timeout(
        Duration::from_secs(5),
        endpoint.connect_with(config, addr, SERVER_NAME).unwrap(),
    )
    .await
    .expect("handshake within 5 s")
}

/// Whether A answers H's hello on a new stream of `conn`.
async fn hello_answered(conn: &Connection, h: &Identity) -> bool {
    let Ok((mut send, mut recv)) = conn.open_bi().await else {
        return false;
    };
    let hello = SessionFrame::Hello {
        cert: h.encryption_cert().clone(),
    };
    if wire::write_frame(&mut send, &hello).await.is_err() {
        return false;
    }
    matches!(
        timeout(
            Duration::from_secs(3),
            wire::read_frame(&mut recv, 4096, Duration::from_secs(3))
        )
        .await,
        Ok(Ok(Some(SessionFrame::Hello { .. })))
    )
}

#[test]
fn unpinning_closes_open_connections_and_a_kept_ticket_does_not_resume() {
    let h = Identity::generate(Timestamp::now());
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    a.pin_as(h.id(), free_port(), "Hostile", "HO");
    a.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let endpoint = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let config = keeping_tickets(&h, &a);
        let conn = connect(&endpoint, config.clone(), &a).await.unwrap();
        assert!(hello_answered(&conn, &h).await, "pinned: A answers H");
        // Time for any session tickets to arrive after the handshake.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let v = a.client().delete(&format!("/v1/peers/{}", h.id())).unwrap();
        assert_eq!(v["removed"], true, "{v}");
        let unpinned = Instant::now();

        // The open connection is closed, within a second.
        let closed = timeout(Duration::from_secs(1), conn.closed()).await;
        let reason = closed.expect("A closes H's open connection within 1 s of unpinning it");
        println!(
            "open connection closed {:.0} ms after unpinning: {reason}",
            unpinned.elapsed().as_secs_f64() * 1000.0
        );
        assert!(!hello_answered(&conn, &h).await);

        // Coming back with what H kept from the first handshake fails in
        // the TLS handshake: it is a full one, and the client verifier
        // refuses the key. (A resumed session would skip the verifier and
        // only meet the node's own pin check: closed by the application,
        // code 4, which this test also refuses.)
        let reason = match connect(&endpoint, config, &a).await {
            Err(e) => e,
            Ok(c) => {
                assert!(
                    !hello_answered(&c, &h).await,
                    "hello answered after unpinning"
                );
                timeout(Duration::from_secs(2), c.closed()).await.unwrap()
            }
        };
        println!("reconnecting after unpinning: {reason}");
        match &reason {
            quinn::ConnectionError::ConnectionClosed(close) => {
                assert!(
                    close.error_code.to_string().contains("crypto"),
                    "closed by the TLS handshake, not after it: {reason}"
                )
            }
            other => panic!("expected a refused handshake, got {other}"),
        }
    });
    assert!(a.get("/v1/node")["handshakes_refused"].as_u64().unwrap() >= 1);
}
