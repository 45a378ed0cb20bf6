//! Alarms, in the sled tree `audit`, bounded per peer so that one peer's
//! flood never hides another peer's alarm.
//!
//! Keys (`seq` u64 big-endian, `bucket` the peer's 32-byte id, or 32 zero
//! bytes for an alarm whose peer is unknown):
//! * `p ‖ bucket ‖ seq` → [`Alarm`] (bincode); `seq` is the alarm's id
//! * `q ‖ bucket` → how many of the bucket's alarms were dropped (u64 BE)
//! * `a ‖ seq` → an alarm of the old format (its text only): moved
//!   into the unknown bucket by [`Store::migrate_alarms`]

use bincode::{Decode, Encode};
use comity_protocol::{NodeId, Timestamp};

use super::{decode, encode, key, Result, Store, StoreError};

/// Alarms kept per peer: the newest; older ones are only counted. One
/// genuine fork needs one alarm to be seen; 100 leave room for a peer's
/// history of distinct incidents without letting it fill the store.
pub const MAX_ALARMS_PER_PEER: usize = 100;

/// An alarm's text is cut to this many bytes (parts of it come from the
/// peer).
pub const MAX_ALARM_TEXT: usize = 2048;

/// The bucket of alarms whose peer is unknown (old-format records). No
/// node id is all zeros: it is not a valid Ed25519 key.
const UNKNOWN: [u8; 32] = [0; 32];

/// What raised an alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum AlarmKind {
    /// As its witness, this node saw a checkpoint of the peer's that does
    /// not extend the one cosigned before (forked, shrank, inconsistent).
    PeerCheckpoint,
    /// A witness refused this node's own checkpoint.
    CheckpointRefused,
    /// Stored by an earlier version, which kept only the text.
    Legacy,
    /// As its witness, this node accepted the peer's restoration statement:
    /// the peer's log lost entries this node had cosigned. Acknowledged by
    /// the statement when raised (the gap is the peer's signed word and in
    /// both logs); kept so that operators see it.
    Restored,
    /// A pinned peer announced an identity transition: it applies after
    /// the notice period unless the operator refuses it.
    PeerTransition,
}

impl AlarmKind {
    pub fn name(self) -> &'static str {
        match self {
            AlarmKind::PeerCheckpoint => "peer-checkpoint",
            AlarmKind::CheckpointRefused => "checkpoint-refused",
            AlarmKind::Legacy => "legacy",
            AlarmKind::Restored => "restored",
            AlarmKind::PeerTransition => "peer-transition",
        }
    }
}

/// Who acknowledged an alarm, and when.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AlarmAck {
    pub at: Timestamp,
    /// The audit log's actor name (`operator` for the admin socket).
    pub by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Alarm {
    /// A stable sequence number, unique in this store.
    pub id: u64,
    /// None for an old-format alarm.
    pub peer: Option<NodeId>,
    /// None for an old-format alarm.
    pub time: Option<Timestamp>,
    pub kind: AlarmKind,
    /// The witness refusal's name (`fork`, `shrank`, ...), if any.
    pub reason: String,
    pub text: String,
    pub acknowledged: Option<AlarmAck>,
}

/// Per peer: alarms kept, of which unacknowledged, and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlarmCounts {
    pub peer: Option<NodeId>,
    pub kept: u64,
    pub unacknowledged: u64,
    pub suppressed: u64,
    /// Of those kept, `restored` ones (the peer's restorations accepted).
    pub restored: u64,
}

/// Why an acknowledgement was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("no alarm {0}")]
    NotFound(u64),
    #[error("alarm {0} is already acknowledged")]
    Already(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bucket(peer: Option<&NodeId>) -> [u8; 32] {
    peer.map(|p| p.0).unwrap_or(UNKNOWN)
}

fn peer_of(bucket: [u8; 32]) -> Option<NodeId> {
    (bucket != UNKNOWN).then_some(NodeId(bucket))
}

fn corrupt(k: &[u8], why: &str) -> StoreError {
    StoreError::Corrupt {
        key: super::hex_key(k),
        why: why.into(),
    }
}

/// The bucket and seq of a `p ‖ bucket ‖ seq` key.
fn alarm_key_parts(k: &[u8]) -> Option<([u8; 32], u64)> {
    let b = k.get(1..33).and_then(|b| <[u8; 32]>::try_from(b).ok())?;
    let s = k.get(33..41).and_then(|b| <[u8; 8]>::try_from(b).ok())?;
    (k.len() == 41).then_some((b, u64::from_be_bytes(s)))
}

fn alarm_record(k: &[u8], v: &[u8]) -> Result<Alarm> {
    let (_, seq) = alarm_key_parts(k).ok_or_else(|| corrupt(k, "bad alarm key"))?;
    let a: Alarm = decode(k, v)?;
    if a.id != seq {
        return Err(corrupt(k, "alarm id differs from its key"));
    }
    Ok(a)
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Store {
    /// A new alarm's id (never reused: sled's id generator only grows).
    pub fn next_alarm_id(&self) -> Result<u64> {
        Ok(super::barrier::generate_id(&self.db, &self.barrier)?)
    }

    /// Stores `alarm` in its peer's bucket, then drops the bucket's oldest
    /// beyond [`MAX_ALARMS_PER_PEER`] — acknowledged ones before open ones —
    /// counting them. Callers serialise.
    pub fn put_alarm(&self, alarm: &Alarm) -> Result<()> {
        let b = bucket(alarm.peer.as_ref());
        self.audit
            .insert(key(b'p', &[&b, &alarm.id.to_be_bytes()]), encode(alarm)?)?;
        // (key, acknowledged), oldest first; at most one over the cap.
        let kept: Vec<(sled::IVec, bool)> = self
            .audit
            .scan_prefix(key(b'p', &[&b]))
            .map(|kv| {
                let (k, v) = kv?;
                let acknowledged = alarm_record(&k, &v)?.acknowledged.is_some();
                Ok((k, acknowledged))
            })
            .collect::<Result<_>>()?;
        let excess = kept.len().saturating_sub(MAX_ALARMS_PER_PEER);
        if excess > 0 {
            // Acknowledged ones go first: a peer can raise those at will
            // (each restoration it presents), and must not push an open
            // alarm out of sight with them.
            let victims = kept
                .iter()
                .filter(|(_, acknowledged)| *acknowledged)
                .chain(kept.iter().filter(|(_, acknowledged)| !*acknowledged))
                .take(excess);
            let mut batch = sled::Batch::default();
            for (k, _) in victims {
                batch.remove(k);
            }
            let n = self.alarms_suppressed(alarm.peer.as_ref())? + excess as u64;
            batch.insert(key(b'q', &[&b]), &n.to_be_bytes()[..]);
            self.audit.apply_batch(batch)?;
        }
        Ok(())
    }

    fn alarms_suppressed(&self, peer: Option<&NodeId>) -> Result<u64> {
        let k = key(b'q', &[&bucket(peer)]);
        match self.audit.get(&k)? {
            None => Ok(0),
            Some(v) => <[u8; 8]>::try_from(&v[..])
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt(&k, "bad suppressed count")),
        }
    }

    /// Every alarm kept, newest first.
    pub fn alarms(&self) -> Result<Vec<Alarm>> {
        let mut all = self
            .audit
            .scan_prefix([b'p'])
            .map(|kv| {
                let (k, v) = kv?;
                alarm_record(&k, &v)
            })
            .collect::<Result<Vec<_>>>()?;
        all.sort_by_key(|a| std::cmp::Reverse(a.id));
        Ok(all)
    }

    /// Per peer with an alarm kept or dropped: the counts.
    pub fn alarm_counts(&self) -> Result<Vec<AlarmCounts>> {
        let mut by: std::collections::BTreeMap<[u8; 32], AlarmCounts> = Default::default();
        for a in self.alarms()? {
            let c = by.entry(bucket(a.peer.as_ref())).or_default();
            c.kept += 1;
            if a.acknowledged.is_none() {
                c.unacknowledged += 1;
            }
            if a.kind == AlarmKind::Restored {
                c.restored += 1;
            }
        }
        for kv in self.audit.scan_prefix([b'q']) {
            let (k, v) = kv?;
            let b = k
                .get(1..)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| corrupt(&k, "bad suppressed key"))?;
            let n = <[u8; 8]>::try_from(&v[..])
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt(&k, "bad suppressed count"))?;
            by.entry(b).or_default().suppressed = n;
        }
        Ok(by
            .into_iter()
            .map(|(b, mut c)| {
                c.peer = peer_of(b);
                c
            })
            .collect())
    }

    /// Marks alarm `id` acknowledged; returns it as it is now.
    pub fn ack_alarm(&self, id: u64, ack: AlarmAck) -> std::result::Result<Alarm, AckError> {
        let found = self
            .audit
            .scan_prefix([b'p'])
            .keys()
            .find(|k| match k {
                Ok(k) => alarm_key_parts(k).map(|(_, s)| s) == Some(id),
                Err(_) => true,
            })
            .transpose()
            .map_err(StoreError::from)?
            .ok_or(AckError::NotFound(id))?;
        let v = self
            .audit
            .get(&found)
            .map_err(StoreError::from)?
            .ok_or(AckError::NotFound(id))?;
        let mut alarm = alarm_record(&found, &v)?;
        if alarm.acknowledged.is_some() {
            return Err(AckError::Already(id));
        }
        alarm.acknowledged = Some(ack);
        self.audit
            .insert(found, encode(&alarm)?)
            .map_err(StoreError::from)?;
        Ok(alarm)
    }

    /// Moves old-format alarms (`a ‖ seq`, text) into the unknown
    /// peer's bucket, keeping their seq as id; returns how many.
    pub fn migrate_alarms(&self) -> Result<usize> {
        let old: Vec<(sled::IVec, sled::IVec)> = self
            .audit
            .scan_prefix([b'a'])
            .collect::<std::result::Result<_, _>>()?;
        for (k, v) in &old {
            let id = k
                .get(1..9)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| corrupt(k, "bad alarm key"))?;
            // Plain UTF-8 text; a damaged one keeps what is readable.
            let text = String::from_utf8_lossy(v);
            self.put_alarm(&Alarm {
                id,
                peer: None,
                time: None,
                kind: AlarmKind::Legacy,
                reason: String::new(),
                text: cut(&text, MAX_ALARM_TEXT),
                acknowledged: None,
            })?;
            self.audit.remove(k)?;
        }
        Ok(old.len())
    }
}

#[cfg(test)]
impl Store {
    /// Writes an alarm as earlier versions did.
    #[allow(clippy::unwrap_used)]
    pub(crate) fn put_old_format_alarm_for_test(&self, seq: u64, text: &str) {
        self.audit
            .insert(key(b'a', &[&seq.to_be_bytes()]), text.as_bytes())
            .unwrap();
    }
}
