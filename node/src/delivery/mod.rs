//! The delivery engine: per-peer senders that hold a connection open and
//! pipeline envelopes ([`outbound`]), and the receiver that checks, stores,
//! flushes and only then receipts what arrives ([`inbound`]).

pub mod inbound;
pub mod outbound;
