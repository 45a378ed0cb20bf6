//! The periodic checkpoint: when enough entries accumulated, or at the
//! interval if anything was added, a durable checkpoint is signed and
//! offered to witnesses. Anything but this node's cosignatures of peers'
//! checkpoints ([`crate::audit::Fact::calls_for_checkpoint`]): an idle
//! network goes quiet.

use std::sync::Arc;

use tracing::warn;

use crate::context::Context;
use crate::shutdown::ShutdownSignal;

pub(crate) async fn run(ctx: Arc<Context>, mut stop: ShutdownSignal) {
    let mut tick = tokio::time::interval(ctx.config.audit.checkpoint_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.audit.due.notified() => {}
            _ = tick.tick() => {}
            _ = stop.triggered() => return,
        }
        // Suppressed rejections are summarised even when the peer stopped.
        let now = std::time::Instant::now();
        for peer in ctx.budgets.pending_peers() {
            crate::delivery::refusals::record_summaries(&ctx, &peer, now, false);
        }
        if let Err(e) = ctx.audit.durable_checkpoint().await {
            warn!(error = %e, "cannot make a checkpoint durable");
        }
    }
}
