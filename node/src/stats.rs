//! Statistics for the central authority (the UN working paper on
//! international cooperation in criminal matters, §63(b) and (i)): requests
//! sent and received by type, legal basis, offence section, peer and state;
//! how long execution takes; which open requests are past their deadline.

use std::collections::BTreeMap;

use comity_protocol::message::{Body, Date, Request};
use comity_protocol::{MessageId, NodeId, Timestamp};
use serde::Serialize;

use crate::context::Context;
use crate::store::{BusinessEvent, StoreError, Way};

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub generated_at: Timestamp,
    pub sent: DirectionStats,
    pub received: DirectionStats,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DirectionStats {
    pub requests: usize,
    pub by_type: BTreeMap<String, usize>,
    pub by_legal_basis: BTreeMap<String, usize>,
    /// ICCS level-1 section ("07") or "none".
    pub by_offence_section: BTreeMap<String, usize>,
    /// The peer's country code.
    pub by_peer: BTreeMap<String, usize>,
    /// The latest business status, or the delivery state before any.
    pub by_state: BTreeMap<String, usize>,
    /// From receipt of the request to its final status.
    pub time_to_final: Durations,
    pub open_past_deadline: Vec<Overdue>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Durations {
    /// Requests that reached a final status.
    pub count: usize,
    pub median_secs: Option<u64>,
    pub p90_secs: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Overdue {
    pub id: MessageId,
    pub peer: String,
    pub deadline: Date,
    pub state: String,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

struct Acc {
    stats: DirectionStats,
    durations: Vec<u64>,
}

impl Acc {
    fn new() -> Self {
        Acc {
            stats: DirectionStats::default(),
            durations: Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        id: MessageId,
        r: &Request,
        peer: String,
        history: &[BusinessEvent],
        before_any_status: &str,
        received_at: Option<Timestamp>,
        today: Date,
    ) {
        let s = &mut self.stats;
        s.requests += 1;
        *s.by_type
            .entry(r.request_type.name().to_string())
            .or_default() += 1;
        *s.by_legal_basis
            .entry(r.legal_basis.name().to_string())
            .or_default() += 1;
        let section = r
            .offence
            .as_ref()
            .map(|o| format!("{:02}", o.iccs.section()))
            .unwrap_or_else(|| "none".into());
        *s.by_offence_section.entry(section).or_default() += 1;
        *s.by_peer.entry(peer.clone()).or_default() += 1;
        let state = history
            .last()
            .map(|e| e.status.name().to_string())
            .unwrap_or_else(|| before_any_status.to_string());
        *s.by_state.entry(state.clone()).or_default() += 1;
        let final_event = history.iter().find(|e| e.status.is_final());
        match (final_event, received_at) {
            (Some(f), Some(start)) => self
                .durations
                .push(f.at.as_millis().saturating_sub(start.as_millis()) / 1000),
            (None, _) => {
                if let Some(deadline) = r.deadline {
                    if deadline < today {
                        s.open_past_deadline.push(Overdue {
                            id,
                            peer,
                            deadline,
                            state,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    fn finish(mut self) -> DirectionStats {
        self.durations.sort_unstable();
        self.stats.time_to_final = Durations {
            count: self.durations.len(),
            median_secs: percentile(&self.durations, 50.0),
            p90_secs: percentile(&self.durations, 90.0),
        };
        self.stats
    }
}

/// Statistics over everything the node holds, one record at a time.
pub(crate) fn collect(ctx: &Context) -> Result<Stats, StoreError> {
    let now = Timestamp::now();
    let today = Date::from_timestamp(now);
    let countries: BTreeMap<NodeId, String> = ctx
        .peers
        .all()
        .into_iter()
        .map(|p| (p.id(), p.config.country.to_string()))
        .collect();
    let name = |id: &NodeId| countries.get(id).cloned().unwrap_or_else(|| id.short());
    let store = &ctx.store;

    let mut sent = Acc::new();
    for r in store.outbound_all() {
        let (m, s) = r?;
        if let Body::Request(req) = &m.body {
            let history = store.business_history(&m.peer, &m.id, Way::Sent)?;
            sent.add(
                m.id,
                req,
                name(&m.peer),
                &history,
                s.state.name(),
                s.delivered_at,
                today,
            );
        }
    }
    let mut received = Acc::new();
    for m in store.inbound_all() {
        let m = m?;
        if let Body::Request(req) = &m.body {
            let history = store.business_history(&m.sender, &m.id, Way::Received)?;
            received.add(
                m.id,
                req,
                name(&m.sender),
                &history,
                "received",
                Some(m.received_at),
                today,
            );
        }
    }
    Ok(Stats {
        generated_at: now,
        sent: sent.finish(),
        received: received.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50.0), Some(5));
        assert_eq!(percentile(&v, 90.0), Some(9));
        assert_eq!(percentile(&[7], 90.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
