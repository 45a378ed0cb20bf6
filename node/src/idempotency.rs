//! Retry-safe admin requests. A caller that may send a request twice (its
//! connection dropped after the node accepted the message but before the
//! answer arrived) names the request with an idempotency key; the node
//! keeps, for each key, a digest of the request and the message it made.
//! The same key with the same request gets that message back, with the
//! key and other content the request is refused ([`KeyError::Reused`]).
//!
//! The record is written with the message, in its durable commit, before
//! the answer (see [`crate::store::idempotency`]); records expire after
//! `limits.max_message_age_days`, removed by [`sweep`] a bounded batch at a
//! time.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use comity_protocol::{codec, Digest, MessageId, Timestamp};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::shutdown::ShutdownSignal;
use crate::store::idempotency::KeyRecord;
use crate::store::{Store, StoreError};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// An idempotency key as the caller gave it: 1 to [`MAX_KEY_BYTES`] of
/// ASCII letters, digits and `-_.:+/=` (UUIDs, ULIDs, hex, base64, a case
/// reference with an attempt number).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error("the idempotency key is empty")]
    Empty,
    #[error("the idempotency key is {len} bytes long, at most {MAX_KEY_BYTES} allowed")]
    TooLong { len: usize },
    #[error(
        "the idempotency key has {found:?} at byte {at}: use ASCII letters, digits and -_.:+/= only"
    )]
    BadCharacter { found: char, at: usize },
}

impl IdempotencyKey {
    /// The key in a header value: the key itself, or (as a structured-field
    /// string) in double quotes.
    pub fn parse(value: &str) -> Result<IdempotencyKey, BadKey> {
        let key = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if key.is_empty() {
            return Err(BadKey::Empty);
        }
        if let Some((at, found)) = key
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || "-_.:+/=".contains(*c)))
        {
            return Err(BadKey::BadCharacter { found, at });
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(BadKey::TooLong { len: key.len() });
        }
        Ok(IdempotencyKey(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which admin operation a keyed request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Submit,
    Status,
    Reply,
    Resend,
}

impl Operation {
    fn tag(self) -> &'static [u8] {
        match self {
            Operation::Submit => b"submit\0",
            Operation::Status => b"status\0",
            Operation::Reply => b"reply\0",
            Operation::Resend => b"resend\0",
        }
    }
}

/// Domain of [`KeyedRequest::new`]'s digest (local to a node, never sent).
const REQUEST_DIGEST: &[u8] = b"comity/v1/admin-idempotent-request\0";

/// A request with its key, and what it asks for in a form a retry can be
/// compared with: the operation, its target and its content, as the node
/// resolved them (so `BO` and Borduria's node id are the same `to`).
#[derive(Clone, Debug)]
pub struct KeyedRequest {
    pub key: IdempotencyKey,
    request: Digest,
}

impl KeyedRequest {
    /// `target` names what the request acts on, in fixed-size fields (node
    /// ids, message ids, a way byte); `content` is the rest, in the codec's
    /// unambiguous encoding.
    pub fn new(
        key: IdempotencyKey,
        op: Operation,
        target: &[&[u8]],
        content: &impl bincode::Encode,
    ) -> Result<KeyedRequest, KeyError> {
        let content = codec::encode(content).map_err(|e| KeyError::Encode(e.to_string()))?;
        let mut parts = vec![op.tag()];
        parts.extend_from_slice(target);
        parts.push(&content);
        Ok(KeyedRequest {
            key,
            request: Digest::of(REQUEST_DIGEST, &parts),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "idempotency key {key:?} was used for another request (at {at}, ms since the epoch): a retry must repeat its request exactly; use a new key for a new request"
    )]
    Reused { key: String, at: u64 },
    #[error("cannot encode the request to compare it with a retry: {0}")]
    Encode(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The message an earlier request with this key made, if it was the same
/// request and the message was accepted.
pub(crate) fn earlier(store: &Store, keyed: &KeyedRequest) -> Result<Option<MessageId>, KeyError> {
    let Some(record) = store.idempotency_record(keyed.key.as_str().as_bytes())? else {
        return Ok(None);
    };
    if store.outbound_status(&record.message)?.is_none() {
        // Staged before a crash and never accepted: as if never made.
        return Ok(None);
    }
    if record.request != keyed.request {
        return Err(KeyError::Reused {
            key: keyed.key.as_str().to_string(),
            at: record.at.as_millis(),
        });
    }
    Ok(Some(record.message))
}

/// Records that `keyed` made `message`: while staging it, before its status.
pub(crate) fn record(
    store: &Store,
    keyed: &KeyedRequest,
    message: MessageId,
) -> Result<(), StoreError> {
    store.put_idempotency_record(
        keyed.key.as_str().as_bytes(),
        &KeyRecord {
            request: keyed.request,
            message,
            at: Timestamp::now(),
        },
    )
}

/// The keys whose requests are being staged now. A second request with a
/// key waits here until the first is staged, then finds its record. (Names
/// with a space, which no key has, serve other one-at-a-time work.)
#[derive(Debug, Default)]
pub struct KeyLocks {
    held: Mutex<HashSet<String>>,
    released: Notify,
}

/// Holds a key of [`KeyLocks`] until dropped.
pub struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
}

impl KeyLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard<'_> {
        loop {
            // Registered before the check, so a release between the check
            // and the wait is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                if held.insert(key.to_string()) {
                    return KeyGuard {
                        locks: self,
                        key: key.to_string(),
                    };
                }
            }
            released.await;
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.locks
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        self.locks.released.notify_waiters();
    }
}

/// Records removed per sweep step.
const SWEEP_BATCH: usize = 1000;
/// Pause between steps while expired records remain.
const SWEEP_STEP_PAUSE: Duration = Duration::from_millis(100);
/// Pause once none remain.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Removes records older than `retention`, [`SWEEP_BATCH`] at a time, until
/// `stop`. The removals need no flush of their own: a record that comes
/// back after a crash is removed again.
pub(crate) async fn sweep(store: Store, retention: Duration, mut stop: ShutdownSignal) {
    loop {
        let pause = match store
            .sweep_idempotency(Timestamp::now().saturating_sub(retention), SWEEP_BATCH)
        {
            Ok(swept) => {
                if swept.removed > 0 {
                    debug!(removed = swept.removed, "expired idempotency keys removed");
                }
                if swept.more {
                    SWEEP_STEP_PAUSE
                } else {
                    SWEEP_INTERVAL
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot remove expired idempotency keys");
                SWEEP_INTERVAL
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.triggered() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_printable() {
        assert_eq!(
            IdempotencyKey::parse("8e03978e-40d5-43e8-bc93-6894a57f9324")
                .unwrap()
                .as_str(),
            "8e03978e-40d5-43e8-bc93-6894a57f9324"
        );
        assert_eq!(
            IdempotencyKey::parse("\"case:42/1\"").unwrap().as_str(),
            "case:42/1"
        );
        assert_eq!(IdempotencyKey::parse(""), Err(BadKey::Empty));
        assert_eq!(IdempotencyKey::parse("\"\""), Err(BadKey::Empty));
        assert_eq!(
            IdempotencyKey::parse("a b"),
            Err(BadKey::BadCharacter { found: ' ', at: 1 })
        );
        assert_eq!(
            IdempotencyKey::parse("é"),
            Err(BadKey::BadCharacter { found: 'é', at: 0 })
        );
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(BadKey::TooLong {
                len: MAX_KEY_BYTES + 1
            })
        );
    }

    #[test]
    fn the_digest_separates_operations_and_content() {
        let k = || IdempotencyKey::parse("k").unwrap();
        let d = |op, target: &[u8], content: &str| {
            KeyedRequest::new(k(), op, &[target], &content.to_string())
                .unwrap()
                .request
        };
        let one = d(Operation::Submit, b"peer", "a");
        assert_eq!(one, d(Operation::Submit, b"peer", "a"));
        assert_ne!(one, d(Operation::Reply, b"peer", "a"));
        assert_ne!(one, d(Operation::Submit, b"other", "a"));
        assert_ne!(one, d(Operation::Submit, b"peer", "b"));
    }

    #[tokio::test]
    async fn a_record_counts_only_once_its_message_is_accepted() {
        use crate::store::{OutboundMessage, OutboundStatus};
        use comity_protocol::message::{Body, Consultation, Thread};

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let body = Body::Consultation(Consultation {
            regarding: None,
            subject: "Before a formal request".into(),
            body: "Would you accept a request on this basis?".into(),
            thread: Thread::default(),
        });
        let keyed = |content: &Body| {
            KeyedRequest::new(
                IdempotencyKey::parse("k").unwrap(),
                Operation::Submit,
                &[&[7; 32]],
                content,
            )
            .unwrap()
        };
        let msg = OutboundMessage {
            id: MessageId([1; 16]),
            peer: comity_protocol::NodeId([7; 32]),
            kind: body.kind(),
            body: body.clone(),
            created_at: Timestamp(1),
            envelope: None,
            digest: None,
        };
        // As a crash between the record and the status leaves it: the
        // message was never accepted, the key is free.
        store.put_outbound_message(&msg).unwrap();
        record(&store, &keyed(&body), msg.id).unwrap();
        assert_eq!(earlier(&store, &keyed(&body)).unwrap(), None);

        store
            .put_outbound_status(&msg.id, &OutboundStatus::queued())
            .unwrap();
        assert_eq!(earlier(&store, &keyed(&body)).unwrap(), Some(msg.id));
        let Body::Consultation(mut other) = body else {
            unreachable!()
        };
        other.subject.push('!');
        assert!(matches!(
            earlier(&store, &keyed(&Body::Consultation(other))),
            Err(KeyError::Reused { .. })
        ));
    }

    #[tokio::test]
    async fn a_key_is_held_by_one_request_at_a_time() {
        let locks = std::sync::Arc::new(KeyLocks::default());
        let first = locks.lock("k").await;
        let other = locks.lock("other").await;
        drop(other);
        let l = locks.clone();
        let second = tokio::spawn(async move {
            let _g = l.lock("k").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second took a held key");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second never got the released key")
            .unwrap();
    }
}
