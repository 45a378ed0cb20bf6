//! Which incoming QUIC handshakes a node takes on (decided in
//! `delivery::accept` as quinn hands each attempt over). An Initial costs
//! its sender one datagram but us a TLS state, a server flight and its
//! retransmissions, held until the handshake timeout; a flood of
//! Initials never completed (review issue 12, item 10) grew RSS by
//! hundreds of MiB. So: handshakes in progress are counted, overall and
//! per source IP; under load an Initial whose address is not validated is
//! answered with a stateless Retry (a spoofed or silent source never gets
//! further, and costs us nothing); beyond hard caps even a validated one is
//! refused. Below the load thresholds nothing changes for anyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Handshakes in progress from which an unvalidated Initial gets a Retry.
/// A node has tens of pinned peers; all of them reconnecting at once after
/// a restart stays near this, and a Retry costs them one round trip.
pub const RETRY_ABOVE: usize = 32;
/// The same, from one source IP (peers seldom share one).
pub const RETRY_ABOVE_PER_IP: usize = 4;
/// Handshakes in progress beyond which even a validated one is refused:
/// each holds ~40 KiB until it completes or times out.
pub const MAX_IN_PROGRESS: usize = 256;
/// The same, from one source IP.
pub const MAX_IN_PROGRESS_PER_IP: usize = 32;

/// What to do with one incoming connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Accept,
    /// Stateless Retry: the client must prove it receives at its address.
    Retry,
    /// CONNECTION_REFUSED (the address is validated, so no reflection).
    Refuse,
}

/// The rule, given the handshakes in progress overall and from this IP.
pub fn decide(total: usize, from_ip: usize, validated: bool) -> Admit {
    if !validated && (total >= RETRY_ABOVE || from_ip >= RETRY_ABOVE_PER_IP) {
        Admit::Retry
    } else if total >= MAX_IN_PROGRESS || from_ip >= MAX_IN_PROGRESS_PER_IP {
        Admit::Refuse
    } else {
        Admit::Accept
    }
}

/// What an operator sees in `GET /v1/node` (`incoming_handshakes`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HandshakeCounts {
    pub in_progress: usize,
    /// Initials answered with a Retry since start.
    pub retried: u64,
    /// Validated Initials refused over a cap since start.
    pub refused: u64,
    /// Initials dropped without an answer since start.
    pub ignored: u64,
}

#[derive(Default)]
pub struct Handshakes {
    in_progress: Mutex<InProgress>,
    retried: AtomicU64,
    refused: AtomicU64,
    ignored: AtomicU64,
}

#[derive(Default)]
struct InProgress {
    total: usize,
    /// Only IPs with a handshake in progress, so at most
    /// [`MAX_IN_PROGRESS`] entries.
    by_ip: HashMap<IpAddr, usize>,
}

/// A handshake in progress; counted until dropped.
pub struct Slot {
    handshakes: Arc<Handshakes>,
    ip: IpAddr,
}

impl Handshakes {
    /// Decides on `incoming`: returns it with its [`Slot`] if it may go on,
    /// or answers it (Retry, refusal) and returns `None`.
    pub fn admit(self: &Arc<Self>, incoming: quinn::Incoming) -> Option<(quinn::Incoming, Slot)> {
        // An IPv4 peer on a dual-stack socket counts as its IPv4 address.
        let ip = incoming.remote_address().ip().to_canonical();
        let admit = {
            let mut p = self.lock();
            let from_ip = p.by_ip.get(&ip).copied().unwrap_or(0);
            let admit = decide(p.total, from_ip, incoming.remote_address_validated());
            if admit == Admit::Accept {
                p.total += 1;
                *p.by_ip.entry(ip).or_insert(0) += 1;
            }
            admit
        };
        match admit {
            Admit::Accept => {
                let slot = Slot {
                    handshakes: self.clone(),
                    ip,
                };
                return Some((incoming, slot));
            }
            Admit::Retry => match incoming.retry() {
                Ok(()) => self.retried.fetch_add(1, Ordering::Relaxed),
                // Not allowed (it already carries a Retry token): drop it.
                Err(e) => {
                    e.into_incoming().ignore();
                    self.ignored.fetch_add(1, Ordering::Relaxed)
                }
            },
            Admit::Refuse => {
                incoming.refuse();
                self.refused.fetch_add(1, Ordering::Relaxed)
            }
        };
        None
    }

    pub fn counts(&self) -> HandshakeCounts {
        HandshakeCounts {
            in_progress: self.lock().total,
            retried: self.retried.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InProgress> {
        self.in_progress.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut p = self.handshakes.lock();
        p.total = p.total.saturating_sub(1);
        if let Some(n) = p.by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_node_accepts_everyone_without_retry() {
        assert_eq!(decide(0, 0, false), Admit::Accept);
        assert_eq!(
            decide(RETRY_ABOVE - 1, RETRY_ABOVE_PER_IP - 1, false),
            Admit::Accept
        );
    }

    #[test]
    fn under_load_unvalidated_initials_get_retry() {
        assert_eq!(decide(RETRY_ABOVE, 0, false), Admit::Retry);
        assert_eq!(decide(0, RETRY_ABOVE_PER_IP, false), Admit::Retry);
        // Even beyond the hard caps: a Retry keeps no state.
        assert_eq!(
            decide(MAX_IN_PROGRESS, MAX_IN_PROGRESS_PER_IP, false),
            Admit::Retry
        );
    }

    #[test]
    fn validated_initials_get_in_until_the_hard_caps() {
        assert_eq!(decide(RETRY_ABOVE, RETRY_ABOVE_PER_IP, true), Admit::Accept);
        assert_eq!(
            decide(MAX_IN_PROGRESS - 1, MAX_IN_PROGRESS_PER_IP - 1, true),
            Admit::Accept
        );
        assert_eq!(decide(MAX_IN_PROGRESS, 0, true), Admit::Refuse);
        assert_eq!(decide(0, MAX_IN_PROGRESS_PER_IP, true), Admit::Refuse);
    }
}
