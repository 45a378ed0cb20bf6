//! A Comity node: QUIC transport between pinned peers, the delivery engine,
//! the sled store and the admin API. `comityd` is a thin binary over
//! [`Node`].
//!
//! Where a message goes, by file: `admin/` (or [`Node::submit`]) →
//! `store/` (accepted = flushed) → `delivery/outbound.rs` (seal, send,
//! receipt) → the peer's `delivery/inbound.rs` (check, open, store, flush,
//! receipt) → its inbox.

pub mod admin;
pub mod audit;
pub mod business;
pub(crate) mod delivery;
pub mod events;
pub mod malloc;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod refusals;
pub mod shutdown;
pub mod stats;
pub mod store;
pub mod transport;

pub use events::Event;
pub use node::{Node, OutboxEntry, StartError, SubmitError};
pub use peers::PeerStatus;
