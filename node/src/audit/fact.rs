//! One fact for the audit log, as the node's code states it; the log turns
//! it into an entry.

use comity_protocol::audit::entry::{Actor, AuditKind, MAX_DETAIL_BYTES};
use comity_protocol::{Digest, MessageId, NodeId};

/// One fact to record.
pub struct Fact<'a> {
    pub kind: AuditKind,
    pub actor: Actor,
    pub peer: Option<NodeId>,
    pub message: Option<MessageId>,
    pub digest: Option<Digest>,
    pub detail: &'a str,
}

impl<'a> Fact<'a> {
    pub fn new(kind: AuditKind, actor: Actor) -> Self {
        Fact {
            kind,
            actor,
            peer: None,
            message: None,
            digest: None,
            detail: "",
        }
    }

    pub fn peer(mut self, p: NodeId) -> Self {
        self.peer = Some(p);
        self
    }

    pub fn message(mut self, m: MessageId) -> Self {
        self.message = Some(m);
        self
    }

    pub fn digest(mut self, d: Option<Digest>) -> Self {
        self.digest = d;
        self
    }

    pub fn detail(mut self, d: &'a str) -> Self {
        self.detail = d;
        self
    }

    /// Whether this fact makes a new checkpoint due. Every event does but
    /// the witness's own `checkpoint-cosigned`: a checkpoint of it would be
    /// cosigned by the peers, who would record that and checkpoint it in
    /// turn — an idle network writing entries forever. It is covered by the
    /// next checkpoint made for anything else (an export makes one).
    pub fn calls_for_checkpoint(&self) -> bool {
        self.kind != AuditKind::CheckpointCosigned
    }
}

/// An entry's detail: one line, bounded.
pub(super) fn clean_detail(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    while out.len() > MAX_DETAIL_BYTES {
        out.pop();
    }
    out
}
