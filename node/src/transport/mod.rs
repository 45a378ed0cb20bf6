//! QUIC between pinned peers: TLS setup, the endpoint, and frames on streams.

pub mod bind;
pub mod endpoint;
pub mod handshakes;
pub mod tls;
pub mod wire;

pub use endpoint::{client_config, server_endpoint};
pub use tls::{peer_of, Pins, TlsIdentity};
