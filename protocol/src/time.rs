//! Wall-clock instants as they travel on the wire.

use std::fmt;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
///
/// The protocol never reads the clock itself (it is sans-IO): callers pass
/// `now` in, which keeps every check deterministic and testable.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The current time from the system clock (for callers that do I/O).
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64)
            .unwrap_or(0);
        Timestamp(ms)
    }

    pub fn saturating_add(self, d: std::time::Duration) -> Self {
        let ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
        Timestamp(self.0.saturating_add(ms))
    }

    pub fn saturating_sub(self, d: std::time::Duration) -> Self {
        let ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
        Timestamp(self.0.saturating_sub(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
