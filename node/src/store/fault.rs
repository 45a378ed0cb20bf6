//! Why the store cannot write. Once set it stays set: sled keeps failing
//! after an I/O error and the audit files refuse to append after a failed
//! write, so only reopening the store (see `crate::recovery`) clears it.

use std::sync::{Arc, Mutex};

use comity_protocol::Timestamp;
use serde::Serialize;

/// The first failed write or sync, and when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoreFault {
    pub since: Timestamp,
    pub reason: String,
}

/// Shared by the store's clones and its committer.
#[derive(Clone, Debug, Default)]
pub(super) struct FaultCell(Arc<Mutex<Option<StoreFault>>>);

impl FaultCell {
    /// Records `reason` unless a fault is already recorded (the first one
    /// says what went wrong; later ones follow from it).
    pub(super) fn set(&self, reason: &str) {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!(%reason, "the store cannot write; submissions are refused and incoming messages deferred until it can");
            *f = Some(StoreFault {
                since: Timestamp::now(),
                reason: reason.to_string(),
            });
        }
    }

    pub(super) fn get(&self) -> Option<StoreFault> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
