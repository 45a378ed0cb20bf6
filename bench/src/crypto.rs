//! The crypto floor: CPU time of the cryptographic steps one 1 KiB
//! message needs end to end, timed with `comity-protocol` itself (as
//! `protocol/benches/envelope.rs` does): seal (sign + HPKE seal), outer
//! check (decode + signature verify), open (HPKE open), receipt sign,
//! receipt verify.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use anyhow::{anyhow, Result};
use comity_protocol::envelope::{check, seal, CheckPolicy};
use comity_protocol::receipt::Receipt;
use comity_protocol::{Digest, Identity, MessageId, NodeId, PeerKeys, Timestamp};
use serde::Serialize;

use crate::load::request_1kib;
use crate::procfs::thread_cpu_ns;

#[derive(Clone, Debug, Serialize)]
pub struct CryptoFloor {
    pub seal_us: f64,
    pub outer_check_us: f64,
    pub open_us: f64,
    pub receipt_sign_us: f64,
    pub receipt_verify_us: f64,
    /// The sum: CPU µs of crypto per message, both nodes together.
    pub total_us: f64,
    /// Not part of the floor: `PeerKeys::new` (certificate signature check
    /// and trial encapsulation), which the node pays on every submission.
    pub peer_keys_new_us: f64,
    pub iterations: u32,
}

/// Median over `rounds` of the mean CPU time per call of `f` over `iters`
/// calls, in µs (thread CPU time: other processes do not inflate it).
fn time_us(rounds: u32, iters: u32, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..iters.div_ceil(10) {
        f()?;
    }
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t0 = thread_cpu_ns()?;
        for _ in 0..iters {
            f()?;
        }
        let t1 = thread_cpu_ns()?;
        samples.push((t1.saturating_sub(t0)) as f64 / 1e3 / f64::from(iters));
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

pub fn measure(iterations: u32) -> Result<CryptoFloor> {
    let now = Timestamp::now();
    let a = Identity::generate(now);
    let b = Identity::generate(now);
    let pins: HashMap<NodeId, PeerKeys> = [(a.id(), a.public().clone())].into();
    let seen: HashMap<(NodeId, MessageId), Digest> = HashMap::new();
    let policy = CheckPolicy {
        now,
        max_future_skew: Duration::from_secs(300),
        max_age: Duration::from_secs(14 * 86400),
        max_envelope_bytes: 4 << 20,
    };
    let body = request_1kib()?;
    let mut rng = rand::rng();
    let rounds = 5;
    let e = |what: &str| {
        let what = what.to_string();
        move |err: comity_protocol::envelope::EnvelopeError| anyhow!("{what}: {err}")
    };

    let seal_us = time_us(rounds, iterations, || {
        black_box(
            seal(
                &a,
                b.public(),
                MessageId::random(),
                now,
                black_box(&body),
                &mut rng,
            )
            .map_err(|e| anyhow!("seal: {e}"))?,
        );
        Ok(())
    })?;
    let sealed = seal(&a, b.public(), MessageId::random(), now, &body, &mut rng)
        .map_err(|e| anyhow!("seal: {e}"))?;
    let outer_check_us = time_us(rounds, iterations, || {
        black_box(check(black_box(&sealed.bytes), &b, &pins, &seen, &policy).map_err(e("check"))?);
        Ok(())
    })?;
    let checked = check(&sealed.bytes, &b, &pins, &seen, &policy).map_err(e("check"))?;
    // `open` consumes its input: clone outside the timed part.
    let mut open_samples = Vec::new();
    for _ in 0..rounds {
        let batch: Vec<_> = (0..iterations).map(|_| checked.clone()).collect();
        let t0 = thread_cpu_ns()?;
        for c in batch {
            black_box(c.open(&b).map_err(e("open"))?);
        }
        let t1 = thread_cpu_ns()?;
        open_samples.push((t1.saturating_sub(t0)) as f64 / 1e3 / f64::from(iterations));
    }
    open_samples.sort_by(f64::total_cmp);
    let open_us = open_samples[open_samples.len() / 2];
    let opened = checked.clone().open(&b).map_err(e("open"))?;
    let receipt_sign_us = time_us(rounds, iterations, || {
        black_box(Receipt::sign(&b, black_box(&opened), now).expect("a file key signs"));
        Ok(())
    })?;
    let receipt = Receipt::sign(&b, &opened, now).expect("a file key signs");
    let receipt_verify_us = time_us(rounds, iterations, || {
        black_box(&receipt)
            .verify(&a.id(), b.public(), &sealed.id, &sealed.digest)
            .map_err(|e| anyhow!("receipt verify: {e}"))?;
        Ok(())
    })?;
    let cert = b.encryption_cert().clone();
    let b_id = b.id();
    let peer_keys_new_us = time_us(rounds, iterations / 4 + 1, || {
        black_box(PeerKeys::new(b_id, cert.clone()).map_err(|e| anyhow!("PeerKeys::new: {e}"))?);
        Ok(())
    })?;
    Ok(CryptoFloor {
        peer_keys_new_us,
        seal_us,
        outer_check_us,
        open_us,
        receipt_sign_us,
        receipt_verify_us,
        total_us: seal_us + outer_check_us + open_us + receipt_sign_us + receipt_verify_us,
        iterations,
    })
}
