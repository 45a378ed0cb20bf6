//! A peer played by the test process: its own identity, pinned by a real
//! node, speaking QUIC to it with the node's own client configuration and
//! then saying whatever the test likes on its streams.

use std::net::SocketAddr;
use std::time::Duration;

use comity_config::Limits;
use comity_node::transport::tls::SERVER_NAME;
use comity_node::transport::{client_config, wire, TlsIdentity};
use comity_protocol::session::SessionFrame;
use comity_protocol::{Identity, NodeId, PeerKeys};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::time::timeout;

use crate::TestNode;

/// How long the node may take to answer a frame or close a stream.
pub const ANSWER: Duration = Duration::from_secs(5);

/// `h`'s QUIC client endpoint connected to `a`, as a pinned peer.
pub async fn connect(h: &Identity, a: &TestNode) -> (Endpoint, Connection) {
    let endpoint = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let conn = try_connect(&endpoint, h, a).await.unwrap();
    (endpoint, conn)
}

pub async fn try_connect(
    endpoint: &Endpoint,
    h: &Identity,
    a: &TestNode,
) -> Result<Connection, quinn::ConnectionError> {
    try_connect_as(endpoint, &TlsIdentity::new(h).unwrap(), a).await
}

/// [`try_connect`] presenting `tls` (a key, and maybe a transition statement).
pub async fn try_connect_as(
    endpoint: &Endpoint,
    tls: &TlsIdentity,
    a: &TestNode,
) -> Result<Connection, quinn::ConnectionError> {
    let config = client_config(tls, a.id, &Limits::default()).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], a.port));
    timeout(
        ANSWER,
        endpoint.connect_with(config, addr, SERVER_NAME).unwrap(),
    )
    .await
    .expect("handshake within 5 s")
}

/// A new stream on which `h` and the node `a` have exchanged hellos; `a`'s
/// keys as its hello presents them.
pub async fn stream(
    conn: &Connection,
    h: &Identity,
    a: NodeId,
) -> (SendStream, RecvStream, PeerKeys) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = SessionFrame::Hello {
        cert: h.encryption_cert().clone(),
    };
    wire::write_frame(&mut send, &hello).await.unwrap();
    match answer(&mut recv).await {
        SessionFrame::Hello { cert } => {
            let keys = PeerKeys::new(a, cert).unwrap();
            (send, recv, keys)
        }
        other => panic!("the node's first frame is not a hello: {other:?}"),
    }
}

/// The node's next frame on this stream.
pub async fn answer(recv: &mut RecvStream) -> SessionFrame {
    timeout(
        ANSWER,
        wire::read_frame(recv, 1 << 20, Duration::from_secs(10)),
    )
    .await
    .expect("the node answers within 5 s")
    .unwrap()
    .expect("a frame, not the end of the stream")
}

/// The node ends the stream (finishes or resets it) without another frame.
pub async fn assert_closed_by_node(recv: &mut RecvStream, after: &str) {
    match timeout(
        ANSWER,
        wire::read_frame(recv, 1 << 20, Duration::from_secs(10)),
    )
    .await
    {
        Err(_) => panic!("the node kept the stream open after {after}"),
        Ok(Ok(Some(f))) => panic!("the node answered {after} with {f:?}"),
        Ok(Ok(None) | Err(_)) => {}
    }
}
