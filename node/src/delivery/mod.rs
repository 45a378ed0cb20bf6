//! The delivery engine, the IO around the session core: per-peer senders
//! that hold a connection open and pipeline envelopes ([`send`], recording
//! each [`outcome`]), and the receiver that accepts streams ([`accept`])
//! and checks, stores, flushes and only then receipts what arrives
//! ([`receive`]).

pub mod accept;
mod outcome;
mod receive;
pub mod send;
