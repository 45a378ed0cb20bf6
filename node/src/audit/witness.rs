//! Witnessing, both ways: offering our checkpoints to peers and keeping
//! their cosignatures, and cosigning peers' checkpoints that extend the
//! last one we cosigned for them.

use comity_protocol::audit::checkpoint::{
    check_witness_update, cosign, node_for_origin, open_checkpoint, origin_for, verify_cosignature,
    WitnessError,
};
use comity_protocol::audit::merkle::consistency_proof;
use comity_protocol::audit::note::Note;
use comity_protocol::audit::restoration::{
    check_restoration, Accepted, RestorationError, RestorationStatement, WitnessRecord,
};
use comity_protocol::session::WitnessRefusal;
use comity_protocol::{Digest, NodeId, Timestamp};

use comity_protocol::audit::entry::{Actor, AuditKind};

use super::{AuditError, AuditLog, Fact, StoredHashes};
use crate::store::alarms::AlarmKind;

impl AuditLog {
    pub fn cosigned_by(&self, witness: &NodeId) -> u64 {
        *self
            .cosigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(witness)
            .unwrap_or(&0)
    }

    /// Counts a checkpoint offered to `witness` (one `Checkpoint` frame).
    pub fn offered_to(&self, witness: &NodeId) {
        let mut o = self.offers.lock().unwrap_or_else(|p| p.into_inner());
        let n = o.entry(*witness).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Checkpoints offered to `witness` since start.
    pub fn offers_to(&self, witness: &NodeId) -> u64 {
        *self
            .offers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(witness)
            .unwrap_or(&0)
    }

    /// The checkpoint to offer a witness that cosigned `cosigned`, on the
    /// way to `newest`: the first backup checkpoint between them if there
    /// is one (a restoration from that backup is then checked against the
    /// root the witness cosigned), else `newest`.
    pub fn offer_target(&self, cosigned: u64, newest: u64) -> u64 {
        // `range` panics on an empty interval the wrong way round.
        if cosigned >= newest {
            return newest;
        }
        self.backup_checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .range(cosigned.saturating_add(1)..=newest)
            .next()
            .copied()
            .unwrap_or(newest)
    }

    /// What to send a witness: our checkpoint of size `newest` (durable:
    /// the caller has it from [`AuditLog::latest`]) and a proof from
    /// `old_size`, if `newest` is larger.
    pub fn offer(
        &self,
        old_size: u64,
        newest: u64,
    ) -> Result<Option<(u64, String, Vec<Digest>)>, AuditError> {
        if newest <= old_size {
            return Ok(None);
        }
        let Some(note) = self.store.checkpoint_at(newest)? else {
            return Ok(None);
        };
        let proof = consistency_proof(&StoredHashes(&self.store), old_size, newest)?;
        Ok(Some((newest, note, proof)))
    }

    /// The largest checkpoint size, at least `from`, that every one of
    /// `witnesses` cosigned (`None` if there is none, or no witnesses).
    pub fn newest_cosigned_by_all(
        &self,
        witnesses: &[NodeId],
        from: u64,
    ) -> Result<Option<u64>, AuditError> {
        if witnesses.is_empty() {
            return Ok(None);
        }
        let mut by_size: std::collections::BTreeMap<u64, std::collections::BTreeSet<NodeId>> =
            Default::default();
        for (size, witness, _) in self.store.cosignatures()? {
            if size >= from && witnesses.contains(&witness) {
                by_size.entry(size).or_default().insert(witness);
            }
        }
        Ok(by_size
            .into_iter()
            .rev()
            .find(|(_, w)| w.len() == witnesses.len())
            .map(|(s, _)| s))
    }

    /// Verifies and stores `witness`'s cosignature on our checkpoint `size`.
    pub fn accept_cosignature(
        &self,
        witness: &NodeId,
        size: u64,
        line: &str,
    ) -> Result<(), AuditError> {
        // A peer names the size: one keyed read, and no re-verification of
        // our own signature, whatever it sends.
        let note = self
            .store
            .checkpoint_at(size)?
            .ok_or(AuditError::NoCheckpoint(size))?;
        let parsed = Note::parse(&note).map_err(comity_protocol::audit::CheckpointError::from)?;
        verify_cosignature(line, &origin_for(witness), witness, parsed.text())?;
        self.store.put_cosignature(size, witness, line)?;
        let mut c = self.cosigned.lock().unwrap_or_else(|p| p.into_inner());
        let e = c.entry(*witness).or_insert(0);
        *e = (*e).max(size);
        drop(c);
        self.cosigned_changed.notify_waiters();
        Ok(())
    }

    /// The witness's side: checks `peer`'s checkpoint against the last one
    /// cosigned for it, persists it, and returns the cosignature line. The
    /// caller commits before sending the line.
    ///
    /// `earlier`: the keys `peer` had before its identity transitions moved
    /// its pin, oldest first. Its log is still the one they signed: named
    /// by the first, and continued from the last checkpoint cosigned under
    /// any of them — so the new key is taken for the same log only by way
    /// of the transition this node applied, never as a fresh log.
    pub fn witness(
        &self,
        peer: &NodeId,
        earlier: &[NodeId],
        note_text: &str,
        old_size: u64,
        proof: &[Digest],
    ) -> Result<Witnessed, Refused> {
        let me = &*self.signer();
        let store_err =
            |e| Refused::new(WitnessRefusal::BadCheckpoint, 0, 0, format!("store: {e}"));
        let (origin, stored, previous) = self.witnessed_log(peer, earlier).map_err(store_err)?;
        // A peer first pinned after it switched keys names its log by a key
        // this node never knew: with nothing witnessed for it yet, the
        // first checkpoint's own name is taken (as its first size is) if it
        // is a node's name; from then on it must stay.
        let origin = match (&stored, note_text.lines().next()) {
            (None, Some(named)) if earlier.is_empty() && node_for_origin(named).is_some() => {
                named.to_string()
            }
            _ => origin,
        };
        if let Some((prev, prev_note)) = &previous {
            // The one cosigned last, again: sign it again, store nothing —
            // if it is of our form (one stored by an older build may not be).
            if stored.as_deref() == Some(note_text) && prev_note.text() == prev.body() {
                let now_secs = Timestamp::now().as_millis() / 1000;
                let line =
                    cosign(me, &origin_for(&me.id()), prev_note.text(), now_secs).map_err(|e| {
                        Refused::new(WitnessRefusal::BadCheckpoint, 0, 0, e.to_string())
                    })?;
                return Ok(Witnessed {
                    size: prev.size,
                    line,
                    new: false,
                });
            }
        }
        let previous = previous.map(|(c, _)| c);
        let witnessed = previous.as_ref().map(|c| c.size).unwrap_or(0);
        let (new, note) = open_checkpoint(note_text, &origin, peer).map_err(|e| {
            Refused::new(WitnessRefusal::BadCheckpoint, 0, witnessed, e.to_string())
        })?;
        let refused =
            |r: WitnessRefusal, detail: String| Refused::new(r, new.size, witnessed, detail);
        // Exactly the form our nodes sign: origin, size, root, nothing after.
        if note.text() != new.body() {
            return Err(refused(
                WitnessRefusal::UnknownForm,
                "the checkpoint carries lines after its root; not cosigned".into(),
            ));
        }
        if let Some(prev) = &previous {
            if new.size < prev.size {
                let e = WitnessError::Shrank {
                    old_size: prev.size,
                    new_size: new.size,
                };
                return Err(refused(WitnessRefusal::Shrank, e.to_string()));
            }
        }
        if old_size != witnessed {
            return Err(refused(
                WitnessRefusal::OldSizeMismatch,
                format!("last cosigned size is {witnessed}, not {old_size}"),
            ));
        }
        check_witness_update(previous.as_ref(), &new, proof).map_err(|e| match e {
            WitnessError::Fork { .. } => refused(WitnessRefusal::Fork, e.to_string()),
            WitnessError::Shrank { .. } => refused(WitnessRefusal::Shrank, e.to_string()),
            WitnessError::Inconsistent { .. } => {
                refused(WitnessRefusal::Inconsistent, e.to_string())
            }
            WitnessError::WrongOrigin { .. } => {
                refused(WitnessRefusal::BadCheckpoint, e.to_string())
            }
        })?;
        self.store
            .put_witnessed(peer, note_text)
            .and_then(|()| self.store.put_witnessed_root(peer, new.size, &new.root))
            .map_err(|e| refused(WitnessRefusal::BadCheckpoint, format!("store: {e}")))?;
        let now_secs = Timestamp::now().as_millis() / 1000;
        let line = cosign(me, &origin_for(&me.id()), note.text(), now_secs)
            .map_err(|e| refused(WitnessRefusal::BadCheckpoint, e.to_string()))?;
        Ok(Witnessed {
            size: new.size,
            line,
            new: true,
        })
    }
}

impl AuditLog {
    /// `peer`'s log as this node witnessed it: its origin (the name it was
    /// cosigned under, or else its first key's, `earlier` oldest first),
    /// the note cosigned last under any of its keys, and that note opened
    /// under the key that signed it.
    #[allow(clippy::type_complexity)]
    fn witnessed_log(
        &self,
        peer: &NodeId,
        earlier: &[NodeId],
    ) -> Result<
        (
            String,
            Option<String>,
            Option<(comity_protocol::audit::checkpoint::Checkpoint, Note)>,
        ),
        crate::store::StoreError,
    > {
        let mut stored = self.store.witnessed(peer)?;
        for old in earlier.iter().rev() {
            if stored.is_some() {
                break;
            }
            stored = self.store.witnessed(old)?;
        }
        // The name the log was witnessed under, once it was.
        let origin = stored
            .as_deref()
            .and_then(|t| t.lines().next())
            .filter(|named| node_for_origin(named).is_some())
            .map_or_else(
                || origin_for(earlier.first().unwrap_or(peer)),
                str::to_string,
            );
        let previous = stored.as_deref().and_then(|t| {
            std::iter::once(peer)
                .chain(earlier.iter().rev())
                .find_map(|key| open_checkpoint(t, &origin, key).ok())
        });
        Ok((origin, stored, previous))
    }

    /// The witness's side of a restoration: checks `peer`'s statement
    /// against what this node cosigned for it ([`check_restoration`]); if
    /// it holds, persists the continuation as the last checkpoint cosigned
    /// (re-basing the peer's log at the restored size) and the statement,
    /// records the gap ([`AuditLog::record_restoration`]), and returns the
    /// cosignature on the continuation. The caller commits before sending
    /// the line.
    pub fn witness_restoration(
        &self,
        peer: &NodeId,
        earlier: &[NodeId],
        statement: &RestorationStatement,
        signature: &[u8; 64],
        continuation: &str,
        proof: &[Digest],
    ) -> Result<RestorationWitnessed, Refused> {
        let size = statement.continuation_size;
        let store_error = |e: crate::store::StoreError| {
            Refused::new(
                WitnessRefusal::BadCheckpoint,
                size,
                0,
                format!("store: {e}"),
            )
        };
        let (origin, _, previous) = self.witnessed_log(peer, earlier).map_err(store_error)?;
        let previous = previous.map(|(c, _)| c);
        let witnessed = previous.as_ref().map(|c| c.size).unwrap_or(0);
        let refused = |r: WitnessRefusal, detail: String| Refused::new(r, size, witnessed, detail);
        statement
            .verify(peer, signature)
            .map_err(|e| refused(WitnessRefusal::BadCheckpoint, e.to_string()))?;
        let (new, note) = open_checkpoint(continuation, &origin, peer)
            .map_err(|e| refused(WitnessRefusal::BadCheckpoint, e.to_string()))?;
        if note.text() != new.body() {
            return Err(refused(
                WitnessRefusal::UnknownForm,
                "the checkpoint carries lines after its root; not cosigned".into(),
            ));
        }
        let accepted = self.store.accepted_restoration(peer).map_err(store_error)?;
        let root_at_restored_size = self
            .store
            .witnessed_root(peer, statement.restored_size)
            .map_err(store_error)?;
        let record = WitnessRecord {
            last: previous.as_ref(),
            root_at_restored_size,
            accepted: accepted.as_ref().map(|(s, _)| s),
        };
        let verdict = check_restoration(statement, &new, proof, record).map_err(|e| {
            let reason = match e {
                RestorationError::Ahead { .. } => WitnessRefusal::OldSizeMismatch,
                RestorationError::RollsBackAgain { .. } => WitnessRefusal::Shrank,
                RestorationError::Fork { .. } => WitnessRefusal::Fork,
                RestorationError::Inconsistent { .. } => WitnessRefusal::Inconsistent,
                RestorationError::BadSignature
                | RestorationError::WrongNode
                | RestorationError::ContinuationMismatch
                | RestorationError::NotAContinuation { .. } => WitnessRefusal::BadCheckpoint,
            };
            refused(reason, e.to_string())
        })?;
        let gap = match verdict {
            Accepted::Repeated if previous.as_ref() == Some(&new) => None,
            // Accepted before, and the log went on since: prove from there.
            Accepted::Repeated => {
                return Err(refused(
                    WitnessRefusal::OldSizeMismatch,
                    format!("this restoration was accepted; last cosigned size is {witnessed}"),
                ))
            }
            Accepted::New {
                witnessed_size,
                witnessed_root,
                root_checked,
            } => {
                let gap = RestorationGap {
                    restored_size: statement.restored_size,
                    restored_root: statement.restored_root,
                    witnessed_size,
                    witnessed_root,
                    root_checked,
                };
                // The gap goes on record before the re-basing: a crash
                // between them (with another task's commit flushing the
                // first) can repeat the entry on the retry, never lose it.
                self.record_restoration(*peer, &gap, size, statement.backup_time);
                self.store
                    .put_accepted_restoration(peer, continuation, statement, signature)
                    .and_then(|()| {
                        self.store
                            .drop_witnessed_roots_above(peer, statement.restored_size)
                    })
                    .and_then(|()| self.store.put_witnessed_root(peer, new.size, &new.root))
                    .map_err(|e| refused(WitnessRefusal::BadCheckpoint, format!("store: {e}")))?;
                Some(gap)
            }
        };
        let now_secs = Timestamp::now().as_millis() / 1000;
        let line = cosign(
            &self.signer(),
            &origin_for(&self.signer().id()),
            note.text(),
            now_secs,
        )
        .map_err(|e| refused(WitnessRefusal::BadCheckpoint, e.to_string()))?;
        Ok(RestorationWitnessed { size, line, gap })
    }
}

impl AuditLog {
    /// An accepted restoration of `peer`'s log, continued at `continuation`,
    /// on record: `peer-restored` and `checkpoint-cosigned` entries, and a
    /// `restored` alarm, acknowledged by the statement only if the restored
    /// root was compared with one cosigned.
    pub fn record_restoration(
        &self,
        peer: NodeId,
        gap: &RestorationGap,
        continuation: u64,
        backup_time: Timestamp,
    ) {
        let detail = format!(
            "restored-size {} restored-root {} witnessed-size {} witnessed-root {} continuation {} root-checked {} backup-time {}",
            gap.restored_size,
            gap.restored_root,
            gap.witnessed_size,
            gap.witnessed_root,
            continuation,
            gap.root_checked,
            backup_time.as_millis(),
        );
        self.note(
            Fact::new(AuditKind::PeerRestored, Actor::Peer)
                .peer(peer)
                .detail(&detail),
        );
        self.note(
            Fact::new(AuditKind::CheckpointCosigned, Actor::Node)
                .peer(peer)
                .detail(&continuation.to_string()),
        );
        let lost = if gap.witnessed_size > gap.restored_size {
            format!(
                "entries {}..{} that this node had cosigned are lost",
                gap.restored_size + 1,
                gap.witnessed_size
            )
        } else {
            "no entry this node had cosigned is lost".to_string()
        };
        let text = format!(
            "peer {peer} restored its audit log from a backup at size {} (root {}{}); {lost}; cosigning goes on from its checkpoint {}",
            gap.restored_size,
            gap.restored_root,
            if gap.root_checked {
                ", as cosigned"
            } else {
                ", not comparable with a cosigned root: its first entries may not be those this node cosigned; compare with an earlier export of its log"
            },
            continuation,
        );
        // Unchecked, the statement proves only N <= M: a node holding its
        // key could have rewritten every entry. That is for a person to
        // settle, so the alarm stays open.
        if gap.root_checked {
            self.alarm_acknowledged(
                peer,
                AlarmKind::Restored,
                "restored",
                &text,
                "restoration-statement",
            );
        } else {
            self.alarm(peer, AlarmKind::Restored, "restored-unchecked", &text);
        }
    }
}

/// A restoration statement accepted as a witness.
#[derive(Debug)]
pub struct RestorationWitnessed {
    /// The continuation's size, cosigned.
    pub size: u64,
    pub line: String,
    /// What the peer lost; `None` when the statement was accepted before.
    pub gap: Option<RestorationGap>,
}

/// What a witness saw lost: its entries `restored_size .. witnessed_size`
/// (seqs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorationGap {
    pub restored_size: u64,
    pub restored_root: Digest,
    pub witnessed_size: u64,
    pub witnessed_root: Digest,
    /// Whether the restored root was compared with one cosigned at that size.
    pub root_checked: bool,
}

/// A cosignature made as a witness.
#[derive(Debug)]
pub struct Witnessed {
    pub size: u64,
    pub line: String,
    /// False when the checkpoint is the one cosigned last (nothing stored).
    pub new: bool,
}

/// A witness's refusal, as it goes back to the log.
#[derive(Debug)]
pub struct Refused {
    pub reason: WitnessRefusal,
    pub size: u64,
    pub witnessed_size: u64,
    pub detail: String,
}

impl Refused {
    fn new(reason: WitnessRefusal, size: u64, witnessed_size: u64, detail: String) -> Self {
        Refused {
            reason,
            size,
            witnessed_size,
            detail,
        }
    }
}
