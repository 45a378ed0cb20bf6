//! How many messages the node holds, by direction, kind and state; counted
//! one record at a time, never holding them all in memory.

use std::collections::BTreeMap;

use comity_protocol::message::MessageKind;
use serde::Serialize;

use crate::store::{OutboundState, Store, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// A held message's delivery state: an outgoing one's [`OutboundState`],
/// or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HeldState {
    Outbound(OutboundState),
    Received,
}

impl HeldState {
    pub fn name(self) -> &'static str {
        match self {
            HeldState::Outbound(s) => s.name(),
            HeldState::Received => "received",
        }
    }
}

impl Serialize for HeldState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Clone, Debug, Default)]
pub struct MessageCounts {
    pub by: BTreeMap<(Direction, MessageKind, HeldState), u64>,
}

impl MessageCounts {
    pub fn of(store: &Store) -> Result<MessageCounts, StoreError> {
        let mut c = MessageCounts::default();
        for r in store.outbound_all() {
            let (m, s) = r?;
            *c.by
                .entry((Direction::Outbound, m.kind, HeldState::Outbound(s.state)))
                .or_default() += 1;
        }
        for r in store.inbound_all() {
            *c.by
                .entry((Direction::Inbound, r?.kind, HeldState::Received))
                .or_default() += 1;
        }
        Ok(c)
    }

    /// Outbound messages by state name.
    pub fn outbound_by_state(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for ((dir, _, state), n) in &self.by {
            if *dir == Direction::Outbound {
                *out.entry(state.name()).or_default() += n;
            }
        }
        out
    }

    pub fn inbound(&self) -> u64 {
        self.by
            .iter()
            .filter(|((dir, _, _), _)| *dir == Direction::Inbound)
            .map(|(_, n)| n)
            .sum()
    }
}
