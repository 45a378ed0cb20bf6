//! How long `comityd` waits before reopening its store again, so that a
//! disk that fails again at once (a failing device rather than a full one)
//! does not make it spin. The state outlives a re-execution of the process
//! (it travels in the environment, [`ReopenBackoff::to_env`]): a disk that
//! fails right after each reopen must not make comityd re-execute in a
//! tight loop. Wall-clock time, since an `Instant` means nothing to the
//! next process image.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first wait after a recent reopen; it doubles up to [`CAP`].
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest wait; a reopen longer ago than this resets the backoff.
pub const CAP: Duration = Duration::from_secs(300);

/// The last reopen and the wait before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReopenBackoff {
    /// When the last reopen began, in ms since the Unix epoch.
    last_ms: Option<u64>,
    delay: Duration,
}

/// Why the environment's backoff could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not DELAY_MS@LAST_MS: {0:?}")]
pub struct BadBackoff(String);

fn unix_ms(t: SystemTime) -> u64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl ReopenBackoff {
    /// The wait before a reopen that would begin at `now`, and records it:
    /// none when the last one is more than [`CAP`] ago (or there was none),
    /// else twice the last wait, from [`FIRST`] to [`CAP`]. A clock that
    /// went back counts as recent.
    pub fn next(&mut self, now: SystemTime) -> Duration {
        let now_ms = unix_ms(now);
        let recent = self
            .last_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < CAP.as_millis() as u64);
        self.delay = if recent {
            (self.delay * 2).clamp(FIRST, CAP)
        } else {
            Duration::ZERO
        };
        let begins = now_ms.saturating_add(self.delay.as_millis() as u64);
        self.last_ms = Some(begins);
        self.delay
    }

    /// The environment form: `DELAY_MS@LAST_MS`.
    pub fn to_env(&self) -> String {
        format!(
            "{}@{}",
            self.delay.as_millis(),
            self.last_ms.unwrap_or_default()
        )
    }

    pub fn from_env(text: &str) -> Result<ReopenBackoff, BadBackoff> {
        let bad = || BadBackoff(text.chars().take(64).collect());
        let (delay, last) = text.trim().split_once('@').ok_or_else(bad)?;
        let delay: u64 = delay.parse().map_err(|_| bad())?;
        let last: u64 = last.parse().map_err(|_| bad())?;
        Ok(ReopenBackoff {
            last_ms: Some(last),
            delay: Duration::from_millis(delay).min(CAP),
        })
    }

    /// What to assume when the environment said a reopen happened but not
    /// how: one just began, after the first wait.
    pub fn unknown(now: SystemTime) -> ReopenBackoff {
        ReopenBackoff {
            last_ms: Some(unix_ms(now)),
            delay: FIRST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn the_first_reopen_waits_not_then_each_recent_one_twice_as_long_up_to_the_cap() {
        let mut b = ReopenBackoff::default();
        let mut t = 0;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let d = b.next(at(t));
            waits.push(d.as_secs());
            t += d.as_secs() + 1; // fails again a second after each reopen
        }
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn a_reopen_long_after_the_last_waits_not() {
        let mut b = ReopenBackoff::default();
        b.next(at(0));
        assert_eq!(b.next(at(1)), FIRST);
        assert_eq!(b.next(at(1 + 1 + CAP.as_secs() + 1)), Duration::ZERO);
    }

    #[test]
    fn a_clock_that_went_back_counts_as_recent() {
        let mut b = ReopenBackoff::default();
        b.next(at(100));
        assert_eq!(b.next(at(50)), FIRST);
    }

    /// What a re-executed comityd does: its first reopen continues the
    /// backoff of the image before it, rather than starting at zero.
    #[test]
    fn the_backoff_survives_a_reexecution_through_the_environment() {
        let mut before = ReopenBackoff::default();
        let mut t = 0;
        for _ in 0..4 {
            t += before.next(at(t)).as_secs() + 1;
        }
        // 0, 1, 2, 4: the next one waits 8 s.
        let carried = ReopenBackoff::from_env(&before.to_env()).unwrap();
        assert_eq!(carried, before);
        let mut after = carried;
        assert_eq!(after.next(at(t)), Duration::from_secs(8));
        assert_eq!(before.next(at(t)), Duration::from_secs(8));
    }

    #[test]
    fn a_garbled_environment_is_refused_and_a_huge_delay_capped() {
        for bad in ["", "12", "a@1", "1@b", "1@2@3", "-1@5"] {
            assert!(ReopenBackoff::from_env(bad).is_err(), "{bad:?}");
        }
        let b = ReopenBackoff::from_env("999999999@0").unwrap();
        assert_eq!(b.delay, CAP);
        let mut u = ReopenBackoff::unknown(at(10));
        assert_eq!(u.next(at(11)), FIRST * 2);
    }
}
