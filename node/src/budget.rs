//! What one peer can make this node record. Every refused envelope or
//! broken stream is evidence, so the first ones are stored, audited and
//! logged one by one — up to `limits.rejections_per_hour` in any rolling
//! hour and `limits.rejections_per_day` a day. Beyond that they are only
//! counted, by reason, and summarised in one audit entry ("N more
//! rejections of reason R from P between t0 and t1"), and the peer's
//! inbound connections are closed and refused for
//! `limits.over_budget_backoff_secs`: junk costs the attacker its session,
//! not our disk. Our deliveries to the peer are not affected.
//!
//! Pure bookkeeping: callers pass the clock and act on the answers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use comity_protocol::{NodeId, Timestamp};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Suppressed rejections are summarised at most this often per peer.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
pub struct BudgetLimits {
    pub per_hour: u32,
    pub per_day: u32,
    pub backoff: Duration,
}

/// What to do with one rejection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Store, audit and log it as before.
    Record,
    /// Count it only. `close` when the peer just went over its budget: close
    /// its inbound connections now.
    Suppress { close: bool },
}

/// Rejections of one kind (a reject reason's name, or "duplicate")
/// counted but not recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub what: &'static str,
    pub count: u64,
    pub first: Timestamp,
    pub last: Timestamp,
}

#[derive(Default)]
struct PeerBudget {
    /// When recent rejections were recorded (at most `per_hour` kept).
    hour: VecDeque<Instant>,
    day_start: Option<Instant>,
    day_count: u32,
    pending: BTreeMap<&'static str, Suppressed>,
    last_summary: Option<Instant>,
    suppressed_total: u64,
    backoff_until: Option<Instant>,
}

/// What an operator sees of a peer's budget.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BudgetStatus {
    /// Rejections counted but not recorded one by one, since start.
    pub suppressed: u64,
    /// Whether its inbound connections are refused now.
    pub backing_off: bool,
}

pub struct Budgets {
    limits: BudgetLimits,
    /// Per peer, and per class: what can start a back-off (`true`) and what
    /// cannot (duplicates), each with a budget of its own, so an honest
    /// peer resending its window never uses up its rejection budget.
    peers: Mutex<HashMap<(NodeId, bool), PeerBudget>>,
}

impl Budgets {
    pub fn new(limits: BudgetLimits) -> Budgets {
        Budgets {
            limits,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(NodeId, bool), PeerBudget>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One rejection of `peer`'s input, of kind `what`, now. `penalize`:
    /// going over the budget with it starts a back-off (not for what an
    /// honest peer also sends in bursts, such as duplicates after a lost
    /// receipt).
    pub fn rejection(
        &self,
        peer: NodeId,
        what: &'static str,
        penalize: bool,
        now: Instant,
        at: Timestamp,
    ) -> Verdict {
        let mut peers = self.lock();
        let b = peers.entry((peer, penalize)).or_default();
        while b
            .hour
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= HOUR)
        {
            b.hour.pop_front();
        }
        if b.day_start
            .is_none_or(|s| now.saturating_duration_since(s) >= DAY)
        {
            b.day_start = Some(now);
            b.day_count = 0;
        }
        let within = (b.hour.len() as u64) < u64::from(self.limits.per_hour)
            && b.day_count < self.limits.per_day;
        if within && b.pending.is_empty() {
            b.hour.push_back(now);
            b.day_count += 1;
            return Verdict::Record;
        }
        let close = penalize && b.backoff_until.is_none_or(|t| now >= t);
        if close {
            b.backoff_until = Some(now + self.limits.backoff);
        }
        b.suppressed_total += 1;
        let s = b.pending.entry(what).or_insert(Suppressed {
            what,
            count: 0,
            first: at,
            last: at,
        });
        s.count += 1;
        s.last = at;
        Verdict::Suppress { close }
    }

    /// The summaries to record for `peer` now: what was suppressed, at most
    /// once per [`SUMMARY_EVERY`] (or whatever is pending, if `force`).
    pub fn summaries(&self, peer: &NodeId, now: Instant, force: bool) -> Vec<Suppressed> {
        let mut peers = self.lock();
        let mut out = Vec::new();
        for class in [true, false] {
            let Some(b) = peers.get_mut(&(*peer, class)) else {
                continue;
            };
            let due = force
                || b.last_summary
                    .is_none_or(|t| now.saturating_duration_since(t) >= SUMMARY_EVERY);
            if b.pending.is_empty() || !due {
                continue;
            }
            b.last_summary = Some(now);
            out.extend(std::mem::take(&mut b.pending).into_values());
        }
        out
    }

    /// Peers with suppressed rejections not yet summarised.
    pub fn pending_peers(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self
            .lock()
            .iter()
            .filter(|(_, b)| !b.pending.is_empty())
            .map(|((p, _), _)| *p)
            .collect();
        peers.sort_unstable_by_key(|p| p.0);
        peers.dedup();
        peers
    }

    /// Whether `peer`'s inbound connections are refused now.
    pub fn backing_off(&self, peer: &NodeId, now: Instant) -> bool {
        self.lock()
            .get(&(*peer, true))
            .and_then(|b| b.backoff_until)
            .is_some_and(|t| now < t)
    }

    pub fn status(&self, peer: &NodeId, now: Instant) -> BudgetStatus {
        let peers = self.lock();
        let of = |class| peers.get(&(*peer, class));
        BudgetStatus {
            suppressed: [true, false]
                .into_iter()
                .filter_map(of)
                .map(|b| b.suppressed_total)
                .sum(),
            backing_off: of(true)
                .and_then(|b| b.backoff_until)
                .is_some_and(|t| now < t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets() -> Budgets {
        Budgets::new(BudgetLimits {
            per_hour: 3,
            per_day: 5,
            backoff: Duration::from_secs(60),
        })
    }

    const P: NodeId = NodeId([7; 32]);
    const MALFORMED: &str = "malformed";
    const Q: NodeId = NodeId([8; 32]);

    #[test]
    fn beyond_the_hourly_budget_rejections_are_counted_and_summarised() {
        let b = budgets();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                b.rejection(P, MALFORMED, true, t0, Timestamp(i)),
                Verdict::Record
            );
        }
        assert_eq!(
            b.rejection(P, MALFORMED, true, t0, Timestamp(10)),
            Verdict::Suppress { close: true }
        );
        assert!(b.backing_off(&P, t0));
        for i in 0..1000 {
            assert_eq!(
                b.rejection(P, MALFORMED, true, t0, Timestamp(11 + i)),
                Verdict::Suppress { close: false }
            );
        }
        b.rejection(P, "bad-signature", true, t0, Timestamp(2000));
        // Another peer's budget is its own.
        assert_eq!(
            b.rejection(Q, MALFORMED, true, t0, Timestamp(1)),
            Verdict::Record
        );
        let s = b.summaries(&P, t0, false);
        assert_eq!(s.len(), 2);
        let malformed = s.iter().find(|s| s.what == MALFORMED).unwrap();
        assert_eq!(
            (malformed.count, malformed.first, malformed.last),
            (1001, Timestamp(10), Timestamp(1010))
        );
        // Summaries at most once a minute.
        b.rejection(P, MALFORMED, true, t0, Timestamp(3000));
        assert!(b
            .summaries(&P, t0 + Duration::from_secs(5), false)
            .is_empty());
        assert_eq!(b.summaries(&P, t0 + SUMMARY_EVERY, false)[0].count, 1);
        assert_eq!(b.status(&P, t0).suppressed, 1003);
    }

    #[test]
    fn duplicates_have_a_budget_of_their_own_and_never_start_a_backoff() {
        let b = budgets();
        let t0 = Instant::now();
        // A window of duplicates, well over the budget.
        for i in 0..256 {
            let v = b.rejection(P, "duplicates", false, t0, Timestamp(i));
            assert!(matches!(
                v,
                Verdict::Record | Verdict::Suppress { close: false }
            ));
        }
        assert!(!b.backing_off(&P, t0));
        // The rejection budget is untouched.
        assert_eq!(
            b.rejection(P, MALFORMED, true, t0, Timestamp(300)),
            Verdict::Record
        );
        assert_eq!(b.status(&P, t0).suppressed, 253);
    }

    #[test]
    fn the_backoff_ends_and_the_hour_rolls_but_the_day_holds() {
        let b = budgets();
        let t0 = Instant::now();
        for i in 0..4 {
            b.rejection(P, MALFORMED, true, t0, Timestamp(i));
        }
        assert!(b.backing_off(&P, t0 + Duration::from_secs(59)));
        assert!(!b.backing_off(&P, t0 + Duration::from_secs(60)));
        b.summaries(&P, t0, true);
        // An hour later: two more recorded (day budget 5), then suppressed.
        let later = t0 + HOUR;
        assert_eq!(
            b.rejection(P, MALFORMED, true, later, Timestamp(9)),
            Verdict::Record
        );
        assert_eq!(
            b.rejection(P, MALFORMED, true, later, Timestamp(9)),
            Verdict::Record
        );
        assert!(matches!(
            b.rejection(P, MALFORMED, true, later, Timestamp(9)),
            Verdict::Suppress { close: true }
        ));
        // A day later everything is fresh.
        let next_day = t0 + DAY + HOUR;
        b.summaries(&P, next_day, true);
        assert_eq!(
            b.rejection(P, MALFORMED, true, next_day, Timestamp(9)),
            Verdict::Record
        );
    }
}
