//! The `idempotency` tree: which message an admin request carrying an
//! idempotency key produced, so that its retry gets the same message back
//! instead of a second one.
//!
//! * `k ‖ key` → [`KeyRecord`]
//! * `t ‖ at (u64 BE, ms) ‖ key` → empty: the order in which records
//!   expire, walked by [`Store::sweep_idempotency`]
//!
//! A record is written while its message is staged, after the message and
//! before its status (see [`Store::insert_outbound_with`]): sled recovers
//! writes in order, so after a crash a record either has its message's
//! status (accepted) or its message has none (never accepted, nobody was
//! told). Readers take a record of the second kind as absent.

use bincode::{Decode, Encode};
use comity_protocol::{Digest, MessageId, Timestamp};

use super::{decode, encode, key, Result, Store};

/// What one keyed request produced.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct KeyRecord {
    /// Digest of the request: a retry must match it.
    pub request: Digest,
    /// The message the request produced.
    pub message: MessageId,
    /// When it was recorded; it expires from then.
    pub at: Timestamp,
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swept {
    /// Records removed.
    pub removed: usize,
    /// The sweep stopped at its bound with expired records left.
    pub more: bool,
}

impl Store {
    pub fn idempotency_record(&self, idem_key: &[u8]) -> Result<Option<KeyRecord>> {
        let k = key(b'k', &[idem_key]);
        self.idempotency
            .get(&k)?
            .map(|v| decode(&k, &v))
            .transpose()
    }

    /// Writes (or replaces) the record of `idem_key`. Not flushed: call it
    /// while staging the message, before its status.
    pub fn put_idempotency_record(&self, idem_key: &[u8], record: &KeyRecord) -> Result<()> {
        // The index entry first: a crash between the two leaves an entry
        // the sweep drops, never a record the sweep cannot find.
        self.idempotency.insert(
            key(b't', &[&record.at.as_millis().to_be_bytes(), idem_key]),
            &[][..],
        )?;
        self.idempotency
            .insert(key(b'k', &[idem_key]), encode(record)?)?;
        Ok(())
    }

    /// Removes records made before `older_than`, oldest first, at most
    /// `max` index entries in one call (so one sweep's work is bounded
    /// whatever the store holds).
    pub fn sweep_idempotency(&self, older_than: Timestamp, max: usize) -> Result<Swept> {
        let mut removed = 0;
        let mut visited = 0;
        for kv in self.idempotency.scan_prefix([b't']) {
            let (k, _) = kv?;
            let (Some(at), Some(idem_key)) = (k.get(1..9), k.get(9..)) else {
                // Not an index key we wrote: drop it rather than stop here.
                self.idempotency.remove(&k)?;
                continue;
            };
            let at = u64::from_be_bytes(at.try_into().unwrap_or([0xff; 8]));
            if at >= older_than.as_millis() {
                return Ok(Swept {
                    removed,
                    more: false,
                });
            }
            if visited == max {
                return Ok(Swept {
                    removed,
                    more: true,
                });
            }
            visited += 1;
            // A key used again after its record was voided (see the module
            // doc) has a newer record: leave that one.
            if self
                .idempotency_record(idem_key)?
                .is_some_and(|r| r.at.as_millis() == at)
            {
                self.idempotency.remove(key(b'k', &[idem_key]))?;
                removed += 1;
            }
            self.idempotency.remove(&k)?;
        }
        Ok(Swept {
            removed,
            more: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at: u64, id: u8) -> KeyRecord {
        KeyRecord {
            request: Digest([id; 32]),
            message: MessageId([id; 16]),
            at: Timestamp(at),
        }
    }

    #[tokio::test]
    async fn sweep_removes_expired_records_oldest_first_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..5u8 {
            store
                .put_idempotency_record(
                    format!("key-{i}").as_bytes(),
                    &record(100 + u64::from(i), i),
                )
                .unwrap();
        }
        // Expired: at < 103, i.e. key-0, key-1, key-2; at most 2 per sweep.
        let first = store.sweep_idempotency(Timestamp(103), 2).unwrap();
        assert_eq!(
            first,
            Swept {
                removed: 2,
                more: true
            }
        );
        assert!(store.idempotency_record(b"key-0").unwrap().is_none());
        assert!(store.idempotency_record(b"key-1").unwrap().is_none());
        assert!(store.idempotency_record(b"key-2").unwrap().is_some());
        let second = store.sweep_idempotency(Timestamp(103), 2).unwrap();
        assert_eq!(
            second,
            Swept {
                removed: 1,
                more: false
            }
        );
        assert!(store.idempotency_record(b"key-2").unwrap().is_none());
        assert_eq!(
            store.idempotency_record(b"key-3").unwrap(),
            Some(record(103, 3))
        );
        assert_eq!(
            store.sweep_idempotency(Timestamp(103), 2).unwrap(),
            Swept {
                removed: 0,
                more: false
            }
        );
    }

    #[tokio::test]
    async fn a_replaced_record_outlives_the_index_entry_of_the_one_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_idempotency_record(b"k", &record(10, 1)).unwrap();
        store.put_idempotency_record(b"k", &record(50, 2)).unwrap();
        let swept = store.sweep_idempotency(Timestamp(20), 10).unwrap();
        assert_eq!(
            swept,
            Swept {
                removed: 0,
                more: false
            }
        );
        assert_eq!(store.idempotency_record(b"k").unwrap(), Some(record(50, 2)));
        store.sweep_idempotency(Timestamp(51), 10).unwrap();
        assert!(store.idempotency_record(b"k").unwrap().is_none());
    }
}
