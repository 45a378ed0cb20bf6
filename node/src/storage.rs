//! What operators see of the node's storage: the store's fault, if any,
//! and the data directory's free space. Apart from [`crate::disk`] so that
//! measuring space needs nothing of the store.

use serde::Serialize;

use crate::disk::Space;
use crate::store::StoreFault;

/// What operators see of the node's storage (`GET /v1/node` `storage`,
/// `/healthz`, metrics).
#[derive(Clone, Debug, Serialize)]
pub struct Storage {
    /// `ok`; `disk-full` (incoming envelopes are deferred: less than half
    /// the reserve is free); `store-unwritable` (a write or sync failed; the
    /// store is reopened once the disk has room).
    pub state: &'static str,
    pub writable: bool,
    pub fault: Option<StoreFault>,
    pub disk: Option<Space>,
}

impl Storage {
    pub fn new(fault: Option<StoreFault>, disk: Option<Space>) -> Storage {
        let state = if fault.is_some() {
            "store-unwritable"
        } else if disk.is_some_and(|d| d.defers(0)) {
            "disk-full"
        } else {
            "ok"
        };
        Storage {
            state,
            writable: fault.is_none(),
            fault,
            disk,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.state == "ok"
    }
}
