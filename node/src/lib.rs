//! A Comity node: QUIC transport between pinned peers, the delivery engine,
//! the sled store and the admin API. `comityd` is a thin binary over
//! [`Node`].
//!
//! Where a message goes, by file: `admin/routes/messages.rs` →
//! `outbox.rs` (validate, [`outbox`]'s `seal_for`, store; accepted =
//! flushed) → `delivery/send.rs` driving `session/sender.rs` (hello,
//! window, answers) and recording each `delivery/outcome.rs` → the peer's
//! `delivery/accept.rs` driving `session/receiver.rs` → its
//! `delivery/receive.rs` (check, open, store, flush, receipt) → its inbox.
//!
//! Modules depend downward only: `node` (the facade) on the rest;
//! `delivery`, `business`, `outbox`, `stats` on `context`; `transitions` on `context`, `peers`, `refusals`, `transport`; `context` on
//! `store`, `audit`, `peers`, `transport`; `session` on nothing but the
//! protocol crate.
//!
//! A store that cannot write (a full disk) is reopened by the daemon once
//! there is room again: `recovery.rs` watches, `comityd`'s main loop stops
//! the node and starts it again in the same process.

pub mod admin;
pub mod attachments;
pub mod audit;
pub mod backup;
pub mod budget;
pub mod business;
mod checkpoints;
mod context;
pub mod counts;
pub(crate) mod delivery;
pub mod disk;
pub mod events;
pub mod evidence;
pub mod files;
pub mod idempotency;
pub mod keys;
pub mod listing;
pub mod lookup;
pub mod malloc;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod peers;
mod recovery;
pub mod refusals;
pub mod reopens;
pub mod resend;
pub mod restoration;
pub mod session;
pub mod shutdown;
pub mod staged;
pub mod stats;
mod status_gate;
pub mod storage;
pub mod store;
pub mod transitions;
pub mod transport;

pub use counts::MessageCounts;
pub use events::Event;
pub use node::{AddPeerError, Node, StartError};
pub use outbox::{OutboxEntry, SubmitError};
pub use peers::{PeerError, PeerStatus};
