//! What a peer did wrong, recorded: a refused envelope (answered with its
//! rejection), a broken stream, a bad attachment chunk — each within the
//! peer's budget (see `crate::budget`), beyond which it is counted, not
//! recorded one by one, and the peer's connections are closed.

use std::time::Instant;

use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::session::{RejectReason, SessionFrame};
use comity_protocol::{MessageId, NodeId, Timestamp};
use tracing::{info, warn};

use crate::audit::Fact;
use crate::budget::Verdict;
use crate::context::Context;
use crate::events::Event;
use crate::session::bounded;
use crate::store::Rejection;

pub(crate) fn reject(
    ctx: &Context,
    peer: NodeId,
    id: Option<MessageId>,
    bytes: &[u8],
    reason: RejectReason,
    detail: String,
) -> SessionFrame {
    // Errors may quote the sender's own strings: bound what is logged,
    // stored and sent back.
    let detail = bounded(&detail);
    ctx.emit(Event::Rejected { peer, id, reason });
    if !within_budget(ctx, peer, reason.name(), true) {
        return SessionFrame::Rejected { id, reason, detail };
    }
    warn!(peer = %peer.short(), ?id, %reason, %detail, "envelope refused");
    let rejection = Rejection {
        at: Timestamp::now(),
        peer,
        id,
        digest: (!bytes.is_empty()).then(|| comity_protocol::envelope::envelope_digest(bytes)),
        reason,
        detail: detail.clone(),
    };
    ctx.audit.note(
        Fact::new(AuditKind::EnvelopeRejected, Actor::Node)
            .peer(peer)
            .digest(rejection.digest)
            .detail(reason.name()),
    );
    if let Err(e) = ctx.store.record_rejection(&rejection) {
        warn!(error = %e, "cannot record a rejection");
    }
    SessionFrame::Rejected { id, reason, detail }
}

/// Whether this rejection of `peer`'s input is recorded one by one; if not
/// it is counted (see `budget`), and when the peer has just gone over its
/// budget its inbound connections are closed.
pub(super) fn within_budget(
    ctx: &Context,
    peer: NodeId,
    what: &'static str,
    penalize: bool,
) -> bool {
    let now = Instant::now();
    match ctx
        .budgets
        .rejection(peer, what, penalize, now, Timestamp::now())
    {
        Verdict::Record => true,
        Verdict::Suppress { close } => {
            if close {
                warn!(
                    peer = %peer.short(),
                    backoff = ?ctx.config.limits.over_budget_backoff(),
                    "peer over its budget of rejections: inbound connections closed for the back-off; further ones are counted"
                );
                ctx.close_inbound(&peer);
            }
            record_summaries(ctx, &peer, now, false);
            false
        }
    }
}

/// Records what `peer`'s budget suppressed, one entry per kind, if a
/// summary is due (or whatever is pending, if `force`).
pub(crate) fn record_summaries(ctx: &Context, peer: &NodeId, now: Instant, force: bool) {
    for s in ctx.budgets.summaries(peer, now, force) {
        let text = format!(
            "{} more {} from this peer between {} and {} (ms since the epoch), over its budget: counted, not recorded one by one",
            s.count, s.what, s.first.0, s.last.0
        );
        info!(peer = %peer.short(), "{text}");
        ctx.audit.note(
            Fact::new(AuditKind::EnvelopeRejected, Actor::Node)
                .peer(*peer)
                .detail(&text),
        );
    }
}

pub(crate) fn record_bad_stream(ctx: &Context, peer: NodeId, why: &str) {
    record_bad_input(ctx, peer, None, "broken streams", why);
}

/// Records `peer`'s bad input (a broken stream, a bad attachment chunk)
/// within its budget, counted under `what`.
pub(crate) fn record_bad_input(
    ctx: &Context,
    peer: NodeId,
    id: Option<MessageId>,
    what: &'static str,
    why: &str,
) {
    ctx.emit(Event::Rejected {
        peer,
        id,
        reason: RejectReason::Malformed,
    });
    if !within_budget(ctx, peer, what, true) {
        return;
    }
    warn!(peer = %peer.short(), why, "peer sent bad input; closing the stream");
    let rejection = Rejection {
        at: Timestamp::now(),
        peer,
        id,
        digest: None,
        reason: RejectReason::Malformed,
        detail: bounded(why),
    };
    ctx.audit.note(
        Fact::new(AuditKind::EnvelopeRejected, Actor::Node)
            .peer(peer)
            .detail(&rejection.detail),
    );
    if let Err(e) = ctx.store.record_rejection(&rejection) {
        warn!(error = %e, "cannot record a rejection");
    }
}
