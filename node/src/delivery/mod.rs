//! The delivery engine, the IO around the session core: per-peer senders
//! that hold a connection open and pipeline envelopes ([`send`], recording
//! each [`outcome`]), and the receiver that accepts streams ([`accept`])
//! and checks, stores, flushes and only then receipts what arrives
//! ([`receive`]); attachments travel on streams of their own
//! ([`attachments_out`], [`attachments_in`]).

pub mod accept;
pub(crate) mod attachments_in;
mod attachments_out;
mod outcome;
pub(crate) mod receive;
pub mod send;

/// Runs file work off the async threads (a panic in it is the caller's).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: only when the runtime is shutting down, which drops
        // this task too; wait for that.
        Err(_) => std::future::pending().await,
    }
}
