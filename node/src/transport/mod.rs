//! QUIC between pinned peers: TLS setup, the endpoint, and frames on streams.

pub mod bind;
pub mod endpoint;
pub mod handshakes;
pub mod tls;
pub mod wire;

pub use endpoint::{client_config, server_endpoint};

use comity_protocol::identity::SignError;
use comity_protocol::Identity;

/// The key of QUIC stateless resets: secret, and the same across restarts
/// so that a peer's connection to our previous run is reset at once. It is
/// a hash of the identity key's signature of a fixed input of its own
/// domain (Ed25519 is deterministic; nothing else signs this input), which
/// works where the key cannot be read, on a token.
pub fn stateless_reset_key(identity: &Identity) -> Result<[u8; 32], SignError> {
    const INPUT: &[u8] = comity_protocol::domain::QUIC_STATELESS_RESET_KEY;
    let signature = identity.signer().sign(INPUT)?;
    Ok(comity_protocol::Digest::of(INPUT, &[&signature[..]]).0)
}
pub use tls::{peer_of, Pins, TlsIdentity};
