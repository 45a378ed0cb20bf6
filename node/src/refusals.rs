//! Handshakes refused for an unpinned key are logged and audited, but a
//! stranger decides how many it makes, and with which keys: the key comes
//! from its certificate before it has proved it holds it. So each key is
//! recorded at most once an hour, and at most [`PER_HOUR`] keys an hour in
//! all; the rest are only counted (the `PeerRefused` event and its metric).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use comity_protocol::NodeId;

/// How long a recorded key is not recorded again.
const PER_KEY: Duration = Duration::from_secs(3600);
/// Keys recorded per hour at most.
pub const PER_HOUR: u32 = 60;

/// Keyed by what is refused: a key (the default), or anything else a
/// stranger chooses, such as a statement's digest.
#[derive(Debug)]
pub struct RefusalLimit<K = NodeId> {
    state: Mutex<State<K>>,
}

#[derive(Debug)]
struct State<K> {
    recorded: HashMap<K, Instant>,
    window_start: Instant,
    in_window: u32,
}

impl<K: std::hash::Hash + Eq + Copy> RefusalLimit<K> {
    pub fn new(now: Instant) -> Self {
        RefusalLimit {
            state: Mutex::new(State {
                recorded: HashMap::new(),
                window_start: now,
                in_window: 0,
            }),
        }
    }

    /// Whether a refusal of `key` at `now` is to be logged and audited.
    pub fn admit(&self, key: &K, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(s.window_start) >= PER_KEY {
            s.window_start = now;
            s.in_window = 0;
            s.recorded.retain(|_, at| now.duration_since(*at) < PER_KEY);
        }
        if s.recorded
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < PER_KEY)
        {
            return false;
        }
        if s.in_window >= PER_HOUR {
            return false;
        }
        s.in_window += 1;
        // At most PER_HOUR keys are added per window before the retain above.
        s.recorded.insert(*key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_once_an_hour_and_a_cap_on_keys() {
        let t0 = Instant::now();
        let limit = RefusalLimit::new(t0);
        let a = NodeId([1; 32]);
        assert!(limit.admit(&a, t0));
        assert!(!limit.admit(&a, t0 + Duration::from_secs(60)));
        let admitted = (0..1000u32)
            .filter(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_le_bytes());
                k[31] = 9;
                limit.admit(&NodeId(k), t0 + Duration::from_secs(1))
            })
            .count();
        assert_eq!(admitted as u32, PER_HOUR - 1);
        // An hour later, the same key is recorded again.
        assert!(limit.admit(&a, t0 + PER_KEY + Duration::from_secs(1)));
    }
}
