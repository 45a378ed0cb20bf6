//! One envelope from a peer, checked, opened, stored and receipted (or
//! refused, and the refusal recorded); a peer's checkpoint witnessed; a
//! broken stream recorded. The answers go back once the store is flushed
//! (see [`super::accept`]).

use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::envelope::{check, CheckPolicy, EnvelopeError, SeenMessages};
use comity_protocol::message::{check_status, Body, StatusUpdate};
use comity_protocol::receipt::Receipt;
use comity_protocol::resend::{ResendNoticeError, ResendStatement};
use comity_protocol::session::{RejectReason, SessionFrame, WitnessRefusal};
use comity_protocol::{Digest, MessageId, NodeId, PeerKeys, Timestamp};

use tracing::{debug, warn};

use super::attachments_in::{self, Held};
use super::refusals::{reject, within_budget};
use crate::audit::Fact;
use crate::business;
use crate::context::Context;
use crate::events::Event;
use crate::session::bounded;
use crate::session::receiver::{ResendClaim, RestorationClaim};
use crate::session::SessionVersion;
use crate::store::alarms::AlarmKind;
use crate::store::{InboundMessage, Store, Way};

struct SeenIn<'a>(&'a Store);

impl SeenMessages for SeenIn<'_> {
    fn seen(&self, sender: &NodeId, id: &MessageId) -> Option<Digest> {
        // A read error means "unknown"; the insert below checks again.
        self.0.seen(sender, id).ok().flatten().map(|e| e.digest)
    }
}

/// One envelope from `peer`, perhaps with a resend notice: the answer to
/// send once the store is flushed.
pub(crate) fn envelope(
    ctx: &Context,
    peer: NodeId,
    keys: &PeerKeys,
    version: SessionVersion,
    bytes: &[u8],
    resends: Option<ResendClaim>,
) -> SessionFrame {
    let mut verified = None;
    let answer = receive(ctx, peer, keys, version, bytes, resends, &mut verified);
    // Linked once the message is held (new, or a copy of one held).
    if let (SessionFrame::Receipt(_), Some((id, claim))) = (&answer, verified) {
        if let Err(e) = ctx
            .store
            .put_received_resend(&peer, &id, &claim.original, &claim.signature)
        {
            warn!(error = %e, "cannot record a resend notice");
        }
    }
    answer
}

/// A resend notice checked against the envelope it came with (already
/// authenticated: sender, id and digest are the sender's).
fn check_notice(
    ctx: &Context,
    keys: &PeerKeys,
    id: MessageId,
    digest: Digest,
    claim: &ResendClaim,
) -> Result<(), ResendNoticeError> {
    ResendStatement {
        sender: *keys.id(),
        recipient: ctx.id(),
        message_id: id,
        envelope_digest: digest,
        original: claim.original,
    }
    .verify(keys, &claim.signature)
}

fn receive(
    ctx: &Context,
    peer: NodeId,
    keys: &PeerKeys,
    version: SessionVersion,
    bytes: &[u8],
    resends: Option<ResendClaim>,
    verified: &mut Option<(MessageId, ResendClaim)>,
) -> SessionFrame {
    let now = Timestamp::now();
    if !ctx.pins.contains(&peer) {
        let detail = "this peer is no longer pinned".to_string();
        return reject(
            ctx,
            peer,
            envelope_id(bytes),
            bytes,
            RejectReason::UnknownSender,
            detail,
        );
    }
    // Deferred, not refused, and not recorded (there is no room for it):
    // the sender keeps the message and tries again.
    let full = ctx.store.fault().is_some()
        || ctx.disk.measure().is_ok_and(|s| {
            s.less_unflushed(ctx.store.unflushed_bytes())
                .defers(bytes.len())
        });
    if full {
        return SessionFrame::Rejected {
            id: envelope_id(bytes),
            reason: RejectReason::Unavailable,
            detail: "the receiver's disk is full; try again later".into(),
        };
    }
    let limits = &ctx.config.limits;
    let policy = CheckPolicy {
        now,
        max_future_skew: limits.clock_skew(),
        max_age: limits.max_message_age(),
        max_envelope_bytes: limits.max_message_len(),
    };
    let me = ctx.identity();
    let me = &*me;
    // The peer's keys now and those its identity transitions left: what
    // it signed before it switched is still its own (a key cut out by a
    // repin is not among them). Only the holder of the key pinned now can
    // hand such an envelope over (the connection is authenticated by it),
    // so a thief of a key left behind cannot.
    let earlier = ctx.earlier_keys(&peer);
    let signers: Vec<PeerKeys> = std::iter::once(keys.clone()).chain(earlier).collect();
    let ids: Vec<NodeId> = signers.iter().map(|k| *k.id()).collect();
    let result = check(bytes, me, &signers[..], &SeenIn(&ctx.store), &policy)
        .and_then(|checked| checked.open_with_limits(me, &limits.attachment_limits()));
    let opened = match result {
        Ok(o) => o,
        Err(EnvelopeError::AlreadyReceived { id, digest }) => {
            if let Some(claim) = resends {
                if let Err(e) = check_notice(ctx, keys, id, digest, &claim) {
                    let reason = RejectReason::BadSignature;
                    return reject(ctx, peer, Some(id), bytes, reason, e.to_string());
                }
                *verified = Some((id, claim));
            }
            return match seen_by_any(ctx, &ids, &id) {
                Ok(Some(entry)) => {
                    // Always answered; recorded within the peer's budget (a
                    // replay loop must not grow the log without bound).
                    if within_budget(ctx, peer, "duplicates", false) {
                        ctx.audit.note(
                            Fact::new(AuditKind::ReceiptSent, Actor::Node)
                                .peer(peer)
                                .message(id)
                                .digest(Some(digest))
                                .detail("duplicate"),
                        );
                    }
                    // A crash between the inbox record and clearing the
                    // awaited one leaves the latter: cleared here too (the
                    // sweep would otherwise take it for one never received).
                    attachments_in::received(ctx, peer, &id);
                    SessionFrame::Receipt(entry.receipt)
                }
                _ => reject(
                    ctx,
                    peer,
                    Some(id),
                    bytes,
                    RejectReason::Unavailable,
                    "store read failed".into(),
                ),
            };
        }
        Err(e) => {
            let id = envelope_id(bytes);
            let reason = e.reject_reason().unwrap_or(RejectReason::Invalid);
            return reject(ctx, peer, id, bytes, reason, e.to_string());
        }
    };
    if let Some(claim) = resends {
        let (id, digest) = (opened.header.id, opened.envelope_digest);
        if let Err(e) = check_notice(ctx, keys, id, digest, &claim) {
            return reject(
                ctx,
                peer,
                Some(id),
                bytes,
                RejectReason::BadSignature,
                e.to_string(),
            );
        }
        *verified = Some((id, claim));
    }
    // A reply or consultation about a message must be about one exchanged
    // with this peer: ids are per peer, and another peer's message is not
    // this one's to answer. Checked before any attachment is asked for:
    // refused after them, they stayed on disk until given up.
    if let Err(why) = business::check_refers_to_peer(&ctx.store, &ids, &opened.body) {
        return reject(
            ctx,
            peer,
            Some(opened.header.id),
            bytes,
            RejectReason::Invalid,
            why.to_string(),
        );
    }
    // The receipt covers the evidence: signed only once every attachment
    // is here, verified and durable.
    if !opened.attachments.is_empty() {
        let id = opened.header.id;
        if version < SessionVersion::V5 {
            let detail = "attachments need session protocol 5 (comity/5)".to_string();
            return reject(ctx, peer, Some(id), bytes, RejectReason::Invalid, detail);
        }
        match attachments_in::hold(ctx, peer, &opened, bytes) {
            Held::Complete => {}
            Held::Answer(frame) => return frame,
        }
    }
    let with_attachments = !opened.attachments.is_empty();
    // A token that cannot sign now is our passing fault, not the peer's:
    // deferred as for a full disk (not recorded, not counted against the
    // peer, nothing of the token's error told), and the sender retries.
    let receipt = match Receipt::sign(me, &opened, now) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, id = %opened.header.id, "cannot sign a receipt: the identity key did not sign");
            return SessionFrame::Rejected {
                id: Some(opened.header.id),
                reason: RejectReason::Unavailable,
                detail: "the receiver cannot sign receipts now; try again later".into(),
            };
        }
    };
    let receipt_bytes = match receipt.to_bytes() {
        Ok(b) => b,
        Err(e) => {
            return reject(
                ctx,
                peer,
                Some(opened.header.id),
                bytes,
                RejectReason::Unavailable,
                e.to_string(),
            )
        }
    };
    let id = opened.header.id;
    let kind = opened.header.kind;
    let status_update = match &opened.body {
        Body::StatusUpdate(u) => Some(u.clone()),
        _ => None,
    };
    let record = InboundMessage {
        id,
        sender: opened.header.sender,
        kind,
        body: opened.body,
        created_at: opened.header.created_at,
        received_at: now,
        envelope: bytes.to_vec(),
        digest: opened.envelope_digest,
        receipt: receipt_bytes.clone(),
    };
    match &status_update {
        None => {
            let answer = store_received(ctx, peer, record, None, bytes, now);
            if with_attachments && matches!(answer, SessionFrame::Receipt(_)) {
                attachments_in::received(ctx, peer, &id);
            }
            answer
        }
        // A duplicate of an update already applied was answered with its
        // receipt above (AlreadyReceived); this is a new one, checked and
        // stored under the gate that local updates take too.
        Some(update) => {
            let stored = business::incoming_target(&ctx.store, &ids, update).and_then(
                |(way, kind, side, with)| {
                    ctx.status_gate.update(
                        &ctx.store,
                        &with,
                        &update.regarding,
                        way,
                        |previous| Ok(check_status(kind, side, previous, &update.status)?),
                        || {
                            Ok(store_received(
                                ctx,
                                peer,
                                record,
                                Some((update, way, with)),
                                bytes,
                                now,
                            ))
                        },
                    )
                },
            );
            stored.unwrap_or_else(|why| {
                reject(
                    ctx,
                    peer,
                    Some(id),
                    bytes,
                    RejectReason::Invalid,
                    why.to_string(),
                )
            })
        }
    }
}

/// Stores a received message (and applies the status update it carries);
/// the answer to send once the store is flushed.
fn store_received(
    ctx: &Context,
    peer: NodeId,
    record: InboundMessage,
    status_update: Option<(&StatusUpdate, Way, NodeId)>,
    bytes: &[u8],
    now: Timestamp,
) -> SessionFrame {
    let (id, kind) = (record.id, record.kind);
    // The entries go first: whatever the store keeps of this, the log has.
    ctx.audit.note(
        Fact::new(AuditKind::MessageReceived, Actor::Peer)
            .peer(peer)
            .message(id)
            .digest(Some(record.digest))
            .detail(kind.name()),
    );
    ctx.audit.note(
        Fact::new(AuditKind::ReceiptSent, Actor::Node)
            .peer(peer)
            .message(id)
            .digest(Some(record.digest)),
    );
    match ctx.store.insert_inbound_if_new(&record) {
        Ok(None) => {
            if let Some((update, way, with)) = status_update {
                ctx.audit.note(
                    Fact::new(AuditKind::StatusChanged, Actor::Peer)
                        .peer(peer)
                        .message(update.regarding)
                        .detail(update.status.name()),
                );
                if let Err(e) =
                    business::on_status_received(&ctx.store, peer, with, way, id, update, now)
                {
                    warn!(error = %e, "cannot record a status update");
                }
            }
            ctx.emit(Event::Received {
                id,
                from: peer,
                kind,
            });
            SessionFrame::Receipt(record.receipt.clone())
        }
        // A copy arrived on another stream at the same time.
        Ok(Some(existing)) if existing.digest == record.digest => {
            SessionFrame::Receipt(existing.receipt)
        }
        Ok(Some(_)) => reject(
            ctx,
            peer,
            Some(id),
            bytes,
            RejectReason::IdReused,
            "message id already received with different content".into(),
        ),
        Err(e) => {
            warn!(error = %e, "cannot store a received message");
            reject(
                ctx,
                peer,
                Some(id),
                bytes,
                RejectReason::Unavailable,
                "receiver cannot store it now".into(),
            )
        }
    }
}

/// The record of a message already received under one of `ids`.
fn seen_by_any(
    ctx: &Context,
    ids: &[NodeId],
    id: &MessageId,
) -> Result<Option<crate::store::SeenEntry>, crate::store::StoreError> {
    for peer in ids {
        if let Some(e) = ctx.store.seen(peer, id)? {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

/// The message id, if the bytes decode far enough to say (for the sender's
/// bookkeeping; it is not trusted for anything else).
fn envelope_id(bytes: &[u8]) -> Option<MessageId> {
    comity_protocol::envelope::Envelope::from_bytes(bytes)
        .ok()
        .map(|e| e.header.id)
}

/// This node as `peer`'s witness: cosign its checkpoint if it extends the
/// last one cosigned; otherwise refuse, and if the log misbehaved (rolled
/// back, forked, rewritten), record it and raise an alarm.
pub(crate) fn witness(
    ctx: &Context,
    peer: NodeId,
    note: &str,
    old_size: u64,
    proof: &[Digest],
) -> SessionFrame {
    let earlier = ctx
        .peer(&peer)
        .map(|p| p.config.rotated_from.clone())
        .unwrap_or_default();
    match ctx.audit.witness(&peer, &earlier, note, old_size, proof) {
        Ok(w) => {
            // The witness duty done, in our own log (the cosignature itself
            // is the peer's to keep). It does not call for a checkpoint of
            // ours (`Fact::calls_for_checkpoint`); a checkpoint cosigned
            // again is not recorded again.
            if w.new {
                ctx.audit.note(
                    Fact::new(AuditKind::CheckpointCosigned, Actor::Node)
                        .peer(peer)
                        .detail(&w.size.to_string()),
                );
            }
            SessionFrame::Cosigned {
                size: w.size,
                line: w.line,
            }
        }
        // Evidence, so recorded — within the peer's budget: a loop of junk
        // checkpoints must not grow the log and the alarms without bound.
        Err(r)
            if (r.reason.is_alarm() || r.reason == WitnessRefusal::UnknownForm)
                && !within_budget(ctx, peer, "witness refusals", true) =>
        {
            refusal_frame(r)
        }
        Err(r) => {
            if r.reason == WitnessRefusal::UnknownForm {
                ctx.audit.note(
                    Fact::new(AuditKind::CheckpointRefused, Actor::Node)
                        .peer(peer)
                        .detail(&format!("{} at size {}", r.reason.name(), r.size)),
                );
                warn!(peer = %peer.short(), size = r.size, "checkpoint of an unknown form not cosigned");
            } else if r.reason.is_alarm() {
                let text = format!(
                    "peer {peer} presented checkpoint {} that is not consistent with size {} cosigned before ({}): {}",
                    r.size, r.witnessed_size, r.reason.name(), r.detail
                );
                ctx.audit.note(
                    Fact::new(AuditKind::CheckpointRefused, Actor::Node)
                        .peer(peer)
                        .detail(&format!("{} at size {}", r.reason.name(), r.size)),
                );
                ctx.audit
                    .alarm(peer, AlarmKind::PeerCheckpoint, r.reason.name(), &text);
            } else {
                debug!(peer = %peer.short(), reason = r.reason.name(), detail = %r.detail, "checkpoint not cosigned");
            }
            refusal_frame(r)
        }
    }
}

/// This node as `peer`'s witness, shown a restoration statement: if it
/// holds, record the gap in our log and as an alarm acknowledged by the
/// statement, and cosign the continuation; otherwise refuse, and if the
/// statement is evidence (a second rollback, a fork, a rewrite), record it
/// and raise an alarm as for a checkpoint.
pub(crate) fn witness_restoration(
    ctx: &Context,
    peer: NodeId,
    claim: &RestorationClaim,
) -> SessionFrame {
    let s = &claim.statement;
    let earlier = ctx
        .peer(&peer)
        .map(|p| p.config.rotated_from.clone())
        .unwrap_or_default();
    match ctx.audit.witness_restoration(
        &peer,
        &earlier,
        s,
        &claim.signature,
        &claim.continuation,
        &claim.proof,
    ) {
        Ok(w) => {
            // An accepted statement is on record already (in
            // `AuditLog::witness_restoration`). Each extends the peer's log
            // past the last one (`check_restoration`), so these are as rare
            // as its restorations; the alarms are bounded per peer.
            SessionFrame::Cosigned {
                size: w.size,
                line: w.line,
            }
        }
        Err(r) if r.reason.is_alarm() && !within_budget(ctx, peer, "witness refusals", true) => {
            refusal_frame(r)
        }
        Err(r) => {
            if r.reason.is_alarm() {
                let text = format!(
                    "peer {peer} presented a restoration to size {} that is refused ({}): {}",
                    s.restored_size,
                    r.reason.name(),
                    r.detail
                );
                ctx.audit.note(
                    Fact::new(AuditKind::CheckpointRefused, Actor::Node)
                        .peer(peer)
                        .detail(&format!(
                            "restoration {} at size {}",
                            r.reason.name(),
                            s.restored_size
                        )),
                );
                ctx.audit
                    .alarm(peer, AlarmKind::PeerCheckpoint, r.reason.name(), &text);
            } else {
                debug!(peer = %peer.short(), reason = r.reason.name(), detail = %r.detail, "restoration not accepted");
            }
            refusal_frame(r)
        }
    }
}

fn refusal_frame(r: crate::audit::Refused) -> SessionFrame {
    SessionFrame::CheckpointRefused {
        size: r.size,
        witnessed_size: r.witnessed_size,
        reason: r.reason,
        detail: bounded(&r.detail),
    }
}
