//! Offline verification speed of a large audit bundle, built in memory the
//! way `protocol/benches/audit_verify.rs` builds it (entries shaped like a
//! real log, a signed checkpoint every 100,000 entries, each cosigned by a
//! witness) and verified with `verify_bundle`, as `comity audit verify`
//! does (all cores).

use std::io::Cursor;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use comity_protocol::audit::bundle::{verify_bundle, BundleWriter, VerifyOptions};
use comity_protocol::audit::checkpoint::{cosign, origin_for, sign_checkpoint, Checkpoint};
use comity_protocol::audit::entry::{Actor, AuditEntry, AuditKind};
use comity_protocol::audit::merkle::{leaf_hash, Frontier};
use comity_protocol::audit::note::Note;
use comity_protocol::{Digest, Identity, MessageId, Timestamp};
use serde::Serialize;

const CHECKPOINT_EVERY: u64 = 100_000;

#[derive(Clone, Debug, Serialize)]
pub struct AuditVerify {
    pub entries: u64,
    pub bundle_mib: f64,
    pub build_secs: f64,
    /// Median of the runs, all cores (what `comity audit verify` uses).
    pub entries_per_sec: f64,
    pub runs_entries_per_sec: Vec<f64>,
    /// One run on one thread, for reference.
    pub one_thread_entries_per_sec: f64,
}

fn build_bundle(entries: u64) -> Result<Vec<u8>> {
    let err = |e: &dyn std::fmt::Display| anyhow!("building the bundle: {e}");
    let node = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0));
    let peer = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0));
    let origin = origin_for(&node.id());
    let capacity = usize::try_from(entries).unwrap_or(0).saturating_mul(600);
    let mut w = BundleWriter::new(Vec::with_capacity(capacity), &node.id()).map_err(|e| err(&e))?;
    let mut frontier = Frontier::new();
    let mut checkpoints = Vec::new();
    for seq in 0..entries {
        let e = AuditEntry {
            seq,
            time: Timestamp(1_700_000_000_000 + seq * 37),
            kind: AuditKind::ALL[(seq % 7) as usize],
            actor: if seq % 5 == 0 {
                Actor::Operator
            } else {
                Actor::Node
            },
            peer: (seq % 10 != 0).then_some(peer.id()),
            message_id: Some(MessageId(u128::from(seq).to_le_bytes())),
            envelope_digest: (seq % 3 != 0).then(|| Digest::of(b"e", &[&seq.to_le_bytes()])),
            detail: if seq % 4 == 0 {
                "registered".into()
            } else {
                String::new()
            },
        };
        let leaf = e.to_leaf().map_err(|e| err(&e))?;
        frontier.push(leaf_hash(&leaf)).map_err(|e| err(&e))?;
        w.write_entry(&leaf).map_err(|e| err(&e))?;
        if (seq + 1) % CHECKPOINT_EVERY == 0 || seq + 1 == entries {
            let cp = Checkpoint {
                origin: origin.clone(),
                size: seq + 1,
                root: frontier.root(),
            };
            checkpoints.push(sign_checkpoint(&node, &cp).map_err(|e| err(&e))?);
        }
    }
    for text in &checkpoints {
        let body = Note::parse(text).map_err(|e| err(&e))?.text().to_string();
        let line =
            cosign(&peer, &origin_for(&peer.id()), &body, 1_700_000_000).map_err(|e| err(&e))?;
        w.write_checkpoint(&format!("{text}{line}\n"))
            .map_err(|e| err(&e))?;
    }
    w.finish().map_err(|e| err(&e))
}

fn verify_once(bundle: &[u8], entries: u64, threads: usize) -> Result<f64> {
    let opts = VerifyOptions {
        threads,
        ..VerifyOptions::default()
    };
    let t = Instant::now();
    let report = verify_bundle(Cursor::new(bundle), &opts)?;
    let secs = t.elapsed().as_secs_f64();
    if !report.is_valid() || report.entries != entries {
        bail!(
            "the generated bundle did not verify: {} entries, {:?}",
            report.entries,
            report.findings.first()
        );
    }
    Ok(entries as f64 / secs)
}

pub fn measure(entries: u64, runs: usize) -> Result<AuditVerify> {
    let t = Instant::now();
    let bundle = build_bundle(entries)?;
    let build_secs = t.elapsed().as_secs_f64();
    let mut rates = Vec::new();
    for _ in 0..runs.max(1) {
        rates.push(verify_once(&bundle, entries, 0)?);
    }
    let one = verify_once(&bundle, entries, 1)?;
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(AuditVerify {
        entries,
        bundle_mib: bundle.len() as f64 / (1024.0 * 1024.0),
        build_secs,
        entries_per_sec: sorted[sorted.len() / 2],
        runs_entries_per_sec: rates,
        one_thread_entries_per_sec: one,
    })
}
