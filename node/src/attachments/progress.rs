//! How far each attachment transfer under way has got, in memory only:
//! bytes done, a smoothed rate and an ETA, for `comity attachments`,
//! `comity show` and the metrics. The transfer code calls
//! [`Progress::update`] once per chunk and [`Progress::finished`] at the
//! end; nothing here is durable (after a restart the files on disk say how
//! far a transfer is, and the rate starts again).
//!
//! Bounded: at most [`MAX_TRANSFERS`] entries; one not updated for
//! [`FORGET_AFTER`] (a transfer that stopped without finishing), or
//! finished [`FINISHED_KEPT`] ago, is dropped when a new transfer starts,
//! and the least recently updated goes first when it is still full.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use comity_protocol::{MessageId, NodeId};

/// Most transfers tracked at once.
pub const MAX_TRANSFERS: usize = 4096;
/// A transfer not updated for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// A finished transfer is still shown (as done) for this long: the sender's
/// message is delivered only when its last attachment is.
pub const FINISHED_KEPT: Duration = Duration::from_secs(10 * 60);
/// Without an update for this long a transfer is shown as stalled: no rate
/// and no ETA, rather than figures from before it stopped.
pub const STALLED_AFTER: Duration = Duration::from_secs(10);
/// Time constant of the rate's exponential smoothing.
const RATE_TAU: Duration = Duration::from_secs(5);
/// Updates closer together than this are folded into the next sample, so
/// that a burst of small chunks does not make the rate jump.
const MIN_SAMPLE: Duration = Duration::from_millis(250);

/// Which way the attachment travels, seen from this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// One attachment of one message, named as everywhere by peer and id, and
/// by the way it travels (a peer may reuse the id of a message we sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransferKey {
    pub direction: Direction,
    pub peer: NodeId,
    pub message: MessageId,
    pub index: usize,
}

/// What is known of one transfer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransferProgress {
    pub bytes_done: u64,
    pub total: u64,
    /// When this process first saw the transfer (a resumed one included).
    pub started: Instant,
    pub updated: Instant,
    /// Smoothed bytes per second; `None` before the first sample, when
    /// finished, and while stalled.
    pub rate: Option<f64>,
    pub finished: bool,
    /// Not updated for [`STALLED_AFTER`] and not finished.
    pub stalled: bool,
}

impl TransferProgress {
    /// Time left at the smoothed rate, when there is one.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate.filter(|r| *r > 0.0)?;
        let left = self.total.saturating_sub(self.bytes_done) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }
}

#[derive(Debug)]
struct Entry {
    bytes_done: u64,
    total: u64,
    started: Instant,
    updated: Instant,
    /// Where the current rate sample began.
    sample_at: Instant,
    sample_bytes: u64,
    rate: Option<f64>,
    finished: bool,
    /// Counted as finished once (an update after `finished`, a re-sent
    /// chunk, makes it live again but not countable again).
    counted: bool,
}

impl Entry {
    fn new(bytes_done: u64, total: u64, now: Instant) -> Self {
        Entry {
            bytes_done,
            total,
            started: now,
            updated: now,
            sample_at: now,
            sample_bytes: bytes_done,
            rate: None,
            finished: false,
            counted: false,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        let idle = now.saturating_duration_since(self.updated);
        if self.finished {
            idle >= FINISHED_KEPT
        } else {
            idle >= FORGET_AFTER
        }
    }

    fn view(&self, now: Instant) -> TransferProgress {
        let stalled =
            !self.finished && now.saturating_duration_since(self.updated) >= STALLED_AFTER;
        TransferProgress {
            bytes_done: self.bytes_done,
            total: self.total,
            started: self.started,
            updated: self.updated,
            rate: self.rate.filter(|_| !stalled && !self.finished),
            finished: self.finished,
            stalled,
        }
    }

    fn sample(&mut self, bytes_done: u64, now: Instant) {
        if bytes_done < self.sample_bytes {
            // Resumed from an earlier chunk: measure from here.
            self.sample_at = now;
            self.sample_bytes = bytes_done;
            return;
        }
        let dt = now.saturating_duration_since(self.sample_at);
        if dt < MIN_SAMPLE {
            return;
        }
        let secs = dt.as_secs_f64();
        let measured = (bytes_done - self.sample_bytes) as f64 / secs;
        self.rate = Some(match self.rate {
            None => measured,
            Some(r) => {
                let alpha = 1.0 - (-secs / RATE_TAU.as_secs_f64()).exp();
                r + alpha * (measured - r)
            }
        });
        self.sample_at = now;
        self.sample_bytes = bytes_done;
    }
}

/// Attachments finished and retrieved since start (the metrics' counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferCounts {
    pub sent: u64,
    pub received: u64,
    pub retrieved: u64,
}

/// The registry. One lock, held for a hash-map step per call.
#[derive(Debug, Default)]
pub struct Progress {
    entries: Mutex<HashMap<TransferKey, Entry>>,
    sent: AtomicU64,
    received: AtomicU64,
    retrieved: AtomicU64,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// `bytes_done` of `total` plaintext bytes are through (sent and
    /// acknowledged, or received and durable). Call once per chunk.
    pub fn update(&self, key: TransferKey, bytes_done: u64, total: u64) {
        self.update_at(key, bytes_done, total, Instant::now());
    }

    pub fn update_at(&self, key: TransferKey, bytes_done: u64, total: u64, now: Instant) {
        let mut entries = self.lock();
        if let Some(e) = entries.get_mut(&key) {
            e.total = total;
            e.bytes_done = bytes_done.min(total);
            e.updated = now;
            e.finished = false;
            e.sample(e.bytes_done, now);
            return;
        }
        make_room(&mut entries, now);
        entries.insert(key, Entry::new(bytes_done.min(total), total, now));
    }

    /// The attachment is complete: verified by the receiver (outbound) or
    /// durable and verified here (inbound). Counted once per transfer.
    pub fn finished(&self, key: TransferKey) {
        self.finished_at(key, Instant::now());
    }

    pub fn finished_at(&self, key: TransferKey, now: Instant) {
        let mut entries = self.lock();
        let first = match entries.get_mut(&key) {
            Some(e) => {
                let first = !e.counted;
                e.counted = true;
                e.finished = true;
                e.bytes_done = e.total;
                e.updated = now;
                first
            }
            None => {
                // Finished before any update (one small chunk): still
                // counted, shown as done for a while.
                make_room(&mut entries, now);
                let mut e = Entry::new(0, 0, now);
                e.finished = true;
                e.counted = true;
                entries.insert(key, e);
                true
            }
        };
        if first {
            match key.direction {
                Direction::Outbound => &self.sent,
                Direction::Inbound => &self.received,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An attachment's plaintext was read out by the operator.
    pub fn retrieved(&self) {
        self.retrieved.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, key: &TransferKey) -> Option<TransferProgress> {
        self.get_at(key, Instant::now())
    }

    pub fn get_at(&self, key: &TransferKey, now: Instant) -> Option<TransferProgress> {
        let entries = self.lock();
        entries
            .get(key)
            .filter(|e| !e.expired(now))
            .map(|e| e.view(now))
    }

    /// Every transfer under way (not finished, not forgotten).
    pub fn in_progress(&self) -> Vec<(TransferKey, TransferProgress)> {
        self.in_progress_at(Instant::now())
    }

    pub fn in_progress_at(&self, now: Instant) -> Vec<(TransferKey, TransferProgress)> {
        let entries = self.lock();
        entries
            .iter()
            .filter(|(_, e)| !e.finished && !e.expired(now))
            .map(|(k, e)| (*k, e.view(now)))
            .collect()
    }

    pub fn counts(&self) -> TransferCounts {
        TransferCounts {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            retrieved: self.retrieved.load(Ordering::Relaxed),
        }
    }

    /// Entries held, expired ones included until the next sweep.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TransferKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Before a new entry: drops the expired ones and, if still full, the
/// least recently updated. Runs once per new transfer, not per chunk.
fn make_room(entries: &mut HashMap<TransferKey, Entry>, now: Instant) {
    if entries.len() < MAX_TRANSFERS {
        return;
    }
    entries.retain(|_, e| !e.expired(now));
    while entries.len() >= MAX_TRANSFERS {
        let Some(oldest) = entries
            .iter()
            .min_by_key(|(_, e)| e.updated)
            .map(|(k, _)| *k)
        else {
            break;
        };
        entries.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: usize) -> TransferKey {
        TransferKey {
            direction: Direction::Inbound,
            peer: NodeId([1; 32]),
            message: MessageId([2; 16]),
            index,
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_steady_transfer_has_its_rate_and_eta() {
        let p = Progress::new();
        let t0 = Instant::now();
        // 100 MiB at 10 MiB/s, one 1 MiB chunk every 100 ms.
        for i in 0..=30u64 {
            p.update_at(
                key(0),
                i * MIB,
                100 * MIB,
                t0 + Duration::from_millis(100 * i),
            );
        }
        let now = t0 + Duration::from_secs(3);
        let g = p.get_at(&key(0), now).unwrap();
        assert_eq!(
            (g.bytes_done, g.total, g.started),
            (30 * MIB, 100 * MIB, t0)
        );
        let rate = g.rate.unwrap();
        assert!(
            (rate - 10.0 * MIB as f64).abs() < 0.01 * MIB as f64,
            "{rate}"
        );
        let eta = g.eta().unwrap().as_secs_f64();
        assert!((eta - 7.0).abs() < 0.1, "{eta}");
        assert!(!g.finished && !g.stalled);
        assert!(p.get_at(&key(1), now).is_none());
    }

    #[test]
    fn the_rate_follows_a_change_of_speed_smoothly() {
        let p = Progress::new();
        let t0 = Instant::now();
        let mut done = 0;
        p.update_at(key(0), 0, u64::MAX, t0);
        // 10 s at 10 MiB/s, then 10 s at 1 MiB/s, sampled every 500 ms.
        for i in 1..=40u64 {
            done += if i <= 20 { 5 * MIB } else { MIB / 2 };
            p.update_at(key(0), done, u64::MAX, t0 + Duration::from_millis(500 * i));
            let r = p
                .get_at(&key(0), t0 + Duration::from_millis(500 * i))
                .unwrap()
                .rate
                .unwrap();
            if i == 21 {
                // One slow sample moves it only part of the way.
                assert!(r > 8.0 * MIB as f64, "{r}");
            }
        }
        let r = p
            .get_at(&key(0), t0 + Duration::from_secs(20))
            .unwrap()
            .rate
            .unwrap();
        // After two time constants it is near the new speed.
        assert!(r < 2.5 * MIB as f64 && r > MIB as f64, "{r}");
    }

    #[test]
    fn a_stalled_transfer_shows_no_rate_and_a_resume_restarts_the_measure() {
        let p = Progress::new();
        let t0 = Instant::now();
        p.update_at(key(0), 0, 10 * MIB, t0);
        p.update_at(key(0), MIB, 10 * MIB, t0 + Duration::from_secs(1));
        let later = t0 + Duration::from_secs(1) + STALLED_AFTER;
        let g = p.get_at(&key(0), later).unwrap();
        assert!(g.stalled && g.rate.is_none() && g.eta().is_none(), "{g:?}");
        // The sender resumes from chunk 0 (bytes go down): no negative
        // rate, and the old rate is not mixed with the gap.
        p.update_at(key(0), 0, 10 * MIB, later);
        p.update_at(key(0), 2 * MIB, 10 * MIB, later + Duration::from_secs(1));
        let g = p.get_at(&key(0), later + Duration::from_secs(1)).unwrap();
        let r = g.rate.unwrap();
        assert!(r > 0.0 && !g.stalled, "{g:?}");
        assert_eq!(g.bytes_done, 2 * MIB);
    }

    #[test]
    fn finished_counts_once_per_transfer_and_way_and_shows_done() {
        let p = Progress::new();
        let t0 = Instant::now();
        p.update_at(key(0), MIB, 2 * MIB, t0);
        p.finished_at(key(0), t0 + Duration::from_secs(1));
        p.finished_at(key(0), t0 + Duration::from_secs(2));
        // A late update and a second finish: live again, not counted again.
        p.update_at(key(0), MIB, 2 * MIB, t0 + Duration::from_secs(2));
        assert!(
            !p.get_at(&key(0), t0 + Duration::from_secs(2))
                .unwrap()
                .finished
        );
        p.finished_at(key(0), t0 + Duration::from_secs(2));
        let out = TransferKey {
            direction: Direction::Outbound,
            ..key(0)
        };
        p.finished_at(out, t0);
        p.retrieved();
        assert_eq!(
            p.counts(),
            TransferCounts {
                sent: 1,
                received: 1,
                retrieved: 1
            }
        );
        let g = p.get_at(&key(0), t0 + Duration::from_secs(3)).unwrap();
        assert!(g.finished && g.rate.is_none() && !g.stalled);
        assert_eq!(g.bytes_done, 2 * MIB);
        assert!(p.in_progress_at(t0 + Duration::from_secs(3)).is_empty());
        // Kept for a while, then gone.
        assert!(p
            .get_at(&key(0), t0 + Duration::from_secs(2) + FINISHED_KEPT)
            .is_none());
    }

    #[test]
    fn it_stays_bounded_forgetting_the_idle_and_then_the_oldest() {
        let p = Progress::new();
        let t0 = Instant::now();
        for i in 0..MAX_TRANSFERS {
            p.update_at(key(i), 1, 2, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(p.len(), MAX_TRANSFERS);
        // Full: a new one pushes out the least recently updated (key 0).
        let t1 = t0 + Duration::from_secs(60);
        p.update_at(key(MAX_TRANSFERS), 1, 2, t1);
        assert_eq!(p.len(), MAX_TRANSFERS);
        assert!(p.get_at(&key(0), t1).is_none());
        assert!(p.get_at(&key(1), t1).is_some());
        // Updating a known one never evicts.
        p.update_at(key(1), 2, 2, t1);
        assert_eq!(p.len(), MAX_TRANSFERS);
        // Long idle: all but the fresh one are dropped at the next start.
        let t2 = t1 + FORGET_AFTER;
        assert!(
            p.get_at(&key(2), t2).is_none(),
            "expired ones are not shown"
        );
        p.update_at(key(MAX_TRANSFERS + 1), 1, 2, t1 + Duration::from_secs(1));
        assert_eq!(p.len(), MAX_TRANSFERS, "not full of expired ones yet");
        for i in 0..MAX_TRANSFERS {
            p.update_at(
                key(MAX_TRANSFERS + 2 + i),
                1,
                2,
                t2 + Duration::from_secs(1),
            );
        }
        assert!(p.len() <= MAX_TRANSFERS);
    }

    #[test]
    fn in_progress_lists_the_live_transfers() {
        let p = Progress::new();
        let t0 = Instant::now();
        p.update_at(key(0), 5, 10, t0);
        p.update_at(key(1), 5, 10, t0);
        p.finished_at(key(1), t0);
        let live = p.in_progress_at(t0);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0, key(0));
        assert_eq!(live[0].1.bytes_done, 5);
    }
}
