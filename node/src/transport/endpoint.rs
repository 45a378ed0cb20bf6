//! The node's one UDP socket: it accepts pinned peers and dials them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use comity_config::Limits;
use comity_protocol::NodeId;

use super::tls::{client_crypto, server_crypto, OnRefused, Pins, TlsIdentity, TlsSetupError};

/// Connection attempts quinn holds before the accept loop takes them.
const MAX_INCOMING: usize = 1024;

/// Per-connection limits: streams a peer may open, idle timeout, flow
/// control windows (which are also the backpressure on a fast sender).
fn transport(limits: &Limits) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(limits.max_streams_per_peer.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((4u32 << 20).into())
        .receive_window((8u32 << 20).into())
        .send_window(8 << 20);
    let idle = limits.idle_timeout();
    if let Ok(timeout) = quinn::IdleTimeout::try_from(idle) {
        t.max_idle_timeout(Some(timeout));
    }
    t.keep_alive_interval(Some((idle / 3).max(Duration::from_secs(1))));
    t
}

/// Serves `socket` (bound to `listen`, see [`super::bind`]) and accepts
/// connections from pinned peers only.
///
/// `reset_key` keys QUIC stateless resets. Deriving it from the node's
/// identity (rather than at random per process) means a node restarted
/// after a crash can reset its peers' stale connections at once, instead of
/// leaving them to wait for the idle timeout.
pub fn server_endpoint(
    listen: SocketAddr,
    socket: std::net::UdpSocket,
    tls: &TlsIdentity,
    pins: Pins,
    on_refused: OnRefused,
    limits: &Limits,
    reset_key: &[u8; 32],
) -> Result<quinn::Endpoint, EndpointError> {
    let crypto = server_crypto(tls, pins, on_refused)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport(limits)));
    // quinn's own queue of attempts not yet handed to the accept loop
    // (which decides on each at once, see `super::handshakes`): beyond
    // these, Initials are dropped unread instead of buffered (defaults:
    // 65,536 attempts, 10 MiB each, 100 MiB in all).
    server
        .max_incoming(MAX_INCOMING)
        .incoming_buffer_size(64 << 10)
        .incoming_buffer_size_total(4 << 20);
    let mut endpoint_config = quinn::EndpointConfig::default();
    endpoint_config.reset_key(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset_key,
    )));
    let bind = |source| EndpointError::Bind { listen, source };
    quinn::Endpoint::new(
        endpoint_config,
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bind)
}

/// A client configuration that accepts only the peer `expected`.
pub fn client_config(
    tls: &TlsIdentity,
    expected: NodeId,
    limits: &Limits,
) -> Result<quinn::ClientConfig, EndpointError> {
    let crypto = client_crypto(tls, expected)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport(limits)));
    Ok(config)
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot listen on {listen}: {source} (is another node using this port?)")]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {listen}: still in use {waited:?} after the store was reopened \
         (the previous endpoint's socket was not released); restart comityd"
    )]
    StillInUse {
        listen: SocketAddr,
        waited: Duration,
    },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}
