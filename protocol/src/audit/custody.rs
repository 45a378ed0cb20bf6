//! An attachment's chain of custody, read from its message's audit
//! entries: accepted from the operator, sent (verified by the peer),
//! received (verified and durable), retrieved (read out by an operator),
//! each with the size and digests it names.
//!
//! The four kinds' details (`docs/audit.md` §2.2) start `attachment I`,
//! then `key value` pairs (`size S`, `sha256 H`, `root R`); a
//! retrieval that failed a check ends `aborted after B bytes: REASON`.
//! Unknown keys are skipped, so a detail may grow.

use serde::Serialize;

use super::entry::{Actor, AuditEntry, AuditKind};
use crate::digest::Digest;
use crate::time::Timestamp;

/// What happened to the attachment at one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustodyEvent {
    Accepted,
    Sent,
    Received,
    Retrieved,
    /// A retrieval stopped by a failed check of the stored copy.
    RetrievalAborted,
}

impl CustodyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            CustodyEvent::Accepted => "accepted",
            CustodyEvent::Sent => "sent",
            CustodyEvent::Received => "received",
            CustodyEvent::Retrieved => "retrieved",
            CustodyEvent::RetrievalAborted => "retrieval aborted",
        }
    }
}

/// One entry of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustodyStep {
    /// The entry's position in the log.
    pub seq: u64,
    pub time: Timestamp,
    pub event: CustodyEvent,
    pub actor: Actor,
    pub size: Option<u64>,
    pub sha256: Option<Digest>,
    pub tree_root: Option<Digest>,
    pub envelope_digest: Option<Digest>,
    /// An aborted retrieval's `after B bytes: REASON`, or what could not
    /// be read in the detail.
    pub note: Option<String>,
}

/// Every step of one attachment, in log order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachmentCustody {
    pub index: u64,
    pub steps: Vec<CustodyStep>,
    /// Every step that names a size, SHA-256 or tree root names the same
    /// one: what was accepted is what was sent, received and read out.
    pub consistent: bool,
}

/// The chains of every attachment the entries name, by index.
pub fn chain_of_custody(entries: &[AuditEntry]) -> Vec<AttachmentCustody> {
    let mut out: Vec<AttachmentCustody> = Vec::new();
    for e in entries {
        let event = match e.kind {
            AuditKind::AttachmentAccepted => CustodyEvent::Accepted,
            AuditKind::AttachmentSent => CustodyEvent::Sent,
            AuditKind::AttachmentReceived => CustodyEvent::Received,
            AuditKind::AttachmentRetrieved => CustodyEvent::Retrieved,
            _ => continue,
        };
        let parsed = parse_detail(&e.detail);
        let index = parsed.index.unwrap_or(u64::MAX);
        let step = CustodyStep {
            seq: e.seq,
            time: e.time,
            event: if parsed.aborted.is_some() {
                CustodyEvent::RetrievalAborted
            } else {
                event
            },
            actor: e.actor,
            size: parsed.size,
            sha256: parsed.sha256,
            tree_root: parsed.tree_root,
            envelope_digest: e.envelope_digest,
            note: parsed.aborted.or(parsed.problem),
        };
        match out.iter_mut().find(|c| c.index == index) {
            Some(c) => c.steps.push(step),
            None => out.push(AttachmentCustody {
                index,
                steps: vec![step],
                consistent: true,
            }),
        }
    }
    for c in &mut out {
        c.consistent = agree(c.steps.iter().map(|s| s.size))
            && agree(c.steps.iter().map(|s| s.sha256))
            && agree(c.steps.iter().map(|s| s.tree_root))
            && c.steps
                .iter()
                .all(|s| s.note.is_none() || s.event == CustodyEvent::RetrievalAborted);
    }
    out.sort_by_key(|c| c.index);
    out
}

/// Whether every value given is the same.
fn agree<T: PartialEq>(values: impl Iterator<Item = Option<T>>) -> bool {
    let mut first = None;
    for v in values.flatten() {
        match &first {
            None => first = Some(v),
            Some(f) if *f != v => return false,
            Some(_) => {}
        }
    }
    true
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Detail {
    index: Option<u64>,
    size: Option<u64>,
    sha256: Option<Digest>,
    tree_root: Option<Digest>,
    aborted: Option<String>,
    problem: Option<String>,
}

fn parse_detail(detail: &str) -> Detail {
    let mut d = Detail::default();
    let (facts, aborted) = match detail.split_once(" aborted ") {
        Some((f, rest)) => (f, Some(rest.to_string())),
        None => (detail, None),
    };
    d.aborted = aborted;
    let words: Vec<&str> = facts.split_whitespace().collect();
    let mut bad = Vec::new();
    for pair in words.chunks(2) {
        let [key, value] = pair else {
            bad.push(pair.join(" "));
            continue;
        };
        let ok = match *key {
            "attachment" => value.parse().map(|v| d.index = Some(v)).is_ok(),
            "size" => value.parse().map(|v| d.size = Some(v)).is_ok(),
            "sha256" => digest(value).map(|v| d.sha256 = Some(v)).is_some(),
            "tree-root" | "tree_root" | "root" => {
                digest(value).map(|v| d.tree_root = Some(v)).is_some()
            }
            _ => true,
        };
        if !ok {
            bad.push(format!("{key} {value}"));
        }
    }
    if d.index.is_none() {
        bad.push("no attachment index".into());
    }
    if !bad.is_empty() {
        d.problem = Some(format!("detail not understood: {}", bad.join(", ")));
    }
    d
}

fn digest(hex_text: &str) -> Option<Digest> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_text.as_bytes(), &mut b).ok()?;
    Some(Digest(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeId;
    use crate::ids::MessageId;

    fn entry(seq: u64, kind: AuditKind, actor: Actor, detail: &str) -> AuditEntry {
        AuditEntry {
            seq,
            time: Timestamp(1_700_000_000_000 + seq),
            kind,
            actor,
            peer: Some(NodeId([3; 32])),
            message_id: Some(MessageId([4; 16])),
            envelope_digest: Some(Digest([5; 32])),
            detail: detail.into(),
        }
    }

    const H: &str = "abababababababababababababababababababababababababababababababab";
    const R: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

    #[test]
    fn the_four_kinds_make_one_chain_per_attachment() {
        let entries = vec![
            entry(0, AuditKind::MessageAccepted, Actor::Operator, ""),
            entry(
                1,
                AuditKind::AttachmentAccepted,
                Actor::Operator,
                &format!("attachment 0 size 10 sha256 {H} root {R}"),
            ),
            entry(
                2,
                AuditKind::AttachmentAccepted,
                Actor::Operator,
                &format!("attachment 1 size 99 sha256 {R} tree-root {H}"),
            ),
            entry(
                3,
                AuditKind::AttachmentSent,
                Actor::Node,
                &format!("attachment 0 size 10 sha256 {H} tree-root {R}"),
            ),
            entry(
                4,
                AuditKind::AttachmentRetrieved,
                Actor::Operator,
                &format!("attachment 0 size 10 sha256 {H}"),
            ),
            entry(
                5,
                AuditKind::AttachmentRetrieved,
                Actor::Operator,
                &format!("attachment 0 size 10 sha256 {H} aborted after 4 bytes: chunk 1: bad tag"),
            ),
        ];
        let c = chain_of_custody(&entries);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].index, 0);
        let events: Vec<CustodyEvent> = c[0].steps.iter().map(|s| s.event).collect();
        assert_eq!(
            events,
            [
                CustodyEvent::Accepted,
                CustodyEvent::Sent,
                CustodyEvent::Retrieved,
                CustodyEvent::RetrievalAborted
            ]
        );
        assert!(c[0].consistent);
        let s = &c[0].steps[0];
        assert_eq!((s.seq, s.size), (1, Some(10)));
        assert_eq!(s.sha256.map(|d| d.to_string()).as_deref(), Some(H));
        assert_eq!(s.tree_root.map(|d| d.to_string()).as_deref(), Some(R));
        assert_eq!(
            c[0].steps[3].note.as_deref(),
            Some("after 4 bytes: chunk 1: bad tag")
        );
        assert_eq!(c[1].steps.len(), 1);
    }

    #[test]
    fn a_step_naming_other_bytes_breaks_the_chain() {
        let entries = vec![
            entry(
                1,
                AuditKind::AttachmentAccepted,
                Actor::Operator,
                &format!("attachment 0 size 10 sha256 {H}"),
            ),
            entry(
                2,
                AuditKind::AttachmentRetrieved,
                Actor::Operator,
                &format!("attachment 0 size 10 sha256 {R}"),
            ),
        ];
        assert!(!chain_of_custody(&entries)[0].consistent);
        let sized = vec![
            entries[0].clone(),
            entry(
                2,
                AuditKind::AttachmentReceived,
                Actor::Peer,
                &format!("attachment 0 size 11 sha256 {H}"),
            ),
        ];
        assert!(!chain_of_custody(&sized)[0].consistent);
    }

    #[test]
    fn a_detail_it_cannot_read_is_shown_as_such_not_dropped() {
        let entries = vec![
            entry(
                1,
                AuditKind::AttachmentSent,
                Actor::Node,
                "attachment x size",
            ),
            entry(
                2,
                AuditKind::AttachmentSent,
                Actor::Node,
                "attachment 3 size 5 colour blue",
            ),
        ];
        let c = chain_of_custody(&entries);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].index, 3, "unknown keys are skipped");
        assert!(c[0].consistent);
        assert_eq!(c[1].index, u64::MAX);
        let note = c[1].steps[0].note.as_deref().unwrap();
        assert!(note.starts_with("detail not understood"), "{note}");
        assert!(!c[1].consistent);
    }
}
