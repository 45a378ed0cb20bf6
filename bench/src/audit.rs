//! Offline verification speed of a large audit bundle, built in memory by
//! `comity_protocol::sample::sample_bundle` as `protocol/benches/audit_verify.rs`
//! builds it (entries shaped like a real log, a signed checkpoint every
//! 100,000 entries, each cosigned by a witness) and verified with `verify_bundle`, as `comity audit verify`
//! does (all cores).

use std::io::Cursor;
use std::time::Instant;

use anyhow::{bail, Result};
use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
use comity_protocol::sample::sample_bundle;
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
    let bundle = sample_bundle(entries, CHECKPOINT_EVERY)?;
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
