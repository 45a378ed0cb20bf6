//! How many messages the node holds, by direction, kind and state: the
//! counts the store keeps with its listing, never a scan of the messages.

use std::collections::BTreeMap;

use comity_protocol::message::MessageKind;
use serde::Serialize;

use crate::store::{Store, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outbound,
    Inbound,
}

fn direction(state: HeldState) -> Direction {
    match state {
        HeldState::Outbound(_) => Direction::Outbound,
        HeldState::Received => Direction::Inbound,
    }
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

pub use crate::store::HeldState;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub by: BTreeMap<(Direction, MessageKind, HeldState), u64>,
}

impl MessageCounts {
    /// The store's counts (kept with its listing: nothing is read).
    pub fn of(store: &Store) -> MessageCounts {
        let by = store
            .message_counts()
            .into_iter()
            .map(|((state, kind), n)| ((direction(state), kind, state), n))
            .collect();
        MessageCounts { by }
    }

    /// Counts made by reading every message record, bodies included: what
    /// [`MessageCounts::of`] must always agree with (for tests; its cost
    /// grows with the store).
    pub fn by_reading_every_message(store: &Store) -> Result<MessageCounts, StoreError> {
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
