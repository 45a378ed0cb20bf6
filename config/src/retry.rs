//! Backoff arithmetic, pure so that the delivery engine's schedule is
//! testable without clocks or randomness.

use std::time::Duration;

use crate::schema::RetryPolicy;

impl RetryPolicy {
    pub fn initial_backoff(&self) -> Duration {
        Duration::from_millis(self.initial_backoff_ms.into())
    }

    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs(self.max_backoff_secs.into())
    }

    /// Delay before the next try after `attempt + 1` consecutive failures
    /// (`attempt` 0 is the first retry): `initial × multiplier^attempt`,
    /// capped at `max_backoff`, then shortened by up to `jitter` of itself:
    /// the result lies in `(1 − jitter) × d ..= d` and never exceeds the cap.
    ///
    /// `jitter_sample` is a uniform random number in `[0, 1)` supplied by the
    /// caller; out-of-range or NaN samples are clamped, and nothing here
    /// panics, whatever the policy's values.
    pub fn delay(&self, attempt: u32, jitter_sample: f64) -> Duration {
        let cap_ms = f64::from(self.max_backoff_secs) * 1000.0;
        let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
        let grown = f64::from(self.initial_backoff_ms) * self.multiplier.powi(exp);
        let base = if grown.is_finite() {
            grown.clamp(0.0, cap_ms)
        } else {
            cap_ms
        };
        let unit = |x: f64| {
            if x.is_finite() {
                x.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let ms = base * (1.0 - unit(self.jitter) * unit(jitter_sample));
        Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_else(|_| self.max_backoff())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_until_the_cap() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(0, 0.5), Duration::from_millis(500));
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(1000));
        assert_eq!(p.delay(2, 0.5), Duration::from_millis(2000));
        assert_eq!(p.delay(9, 0.5), Duration::from_secs(256));
        assert_eq!(p.delay(10, 0.5), Duration::from_secs(300));
        assert_eq!(p.delay(u32::MAX, 0.5), Duration::from_secs(300));
        let mut prev = Duration::ZERO;
        for a in 0..40 {
            let d = p.delay(a, 0.0);
            assert!(d >= prev && d <= p.max_backoff());
            prev = d;
        }
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_cap() {
        let p = RetryPolicy::default();
        for a in [0, 3, 20] {
            let full = p.delay(a, 0.0);
            for i in 0..100 {
                let d = p.delay(a, f64::from(i) / 100.0);
                assert!(d <= full && d <= p.max_backoff());
                assert!(d.as_secs_f64() >= full.as_secs_f64() * (1.0 - p.jitter) - 1e-9);
            }
        }
        assert!(p.delay(0, 0.99) < p.delay(0, 0.0));
    }

    #[test]
    fn never_panics_on_odd_inputs() {
        let odd = RetryPolicy {
            initial_backoff_ms: u32::MAX,
            max_backoff_secs: u32::MAX,
            multiplier: f64::NAN,
            jitter: f64::INFINITY,
        };
        for s in [f64::NAN, -1.0, 2.0, f64::INFINITY] {
            let _ = odd.delay(5, s);
            let _ = RetryPolicy::default().delay(5, s);
        }
        let zero = RetryPolicy {
            multiplier: -3.0,
            ..RetryPolicy::default()
        };
        assert_eq!(zero.delay(1, 0.0), Duration::ZERO);
    }
}
