//! The cost of one identity signature with the key in memory (the key
//! file) and on a PKCS#11 token (SoftHSM2, in this process: the floor of
//! any token; a network HSM adds its round trip).

use std::time::Instant;

use anyhow::{anyhow, Result};
use comity_config::TokenKey;
use comity_protocol::{Identity, Timestamp};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Signing {
    /// Median wall-clock µs of one signature of a 1,200-byte input.
    pub file_key_us: f64,
    /// The same on SoftHSM2; `None` when it is not installed.
    pub token_us: Option<f64>,
    pub iterations: u32,
}

fn median_us(rounds: u32, iters: u32, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t0 = Instant::now();
        for _ in 0..iters {
            f()?;
        }
        samples.push(t0.elapsed().as_secs_f64() * 1e6 / f64::from(iters));
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

pub fn measure(iterations: u32) -> Result<Signing> {
    // About an envelope's signing input for a 1 KiB body.
    let input = vec![0x5a; 1200];
    let file = Identity::generate(Timestamp::now()).signer();
    let iters = iterations.max(10);
    let file_key_us = median_us(5, iters, || {
        file.sign(&input).map(|_| ()).map_err(|e| anyhow!("{e}"))
    })?;
    let token_us = match comity_tests::softhsm::SoftHsm::new("comity-bench") {
        None => {
            eprintln!("signing: SoftHSM2 is not installed (apt-get install softhsm2): the token's figure is left out");
            None
        }
        Some(hsm) => {
            let key = TokenKey::parse(&hsm.uri("bench-identity"))?;
            comity_token::generate(&key)?;
            let signer = comity_token::TokenSigner::open(&key)?;
            let identity = Identity::with_external_key(signer, &[7; 32], Timestamp::now())?;
            let token = identity.signer();
            Some(median_us(5, iters, || {
                token.sign(&input).map(|_| ()).map_err(|e| anyhow!("{e}"))
            })?)
        }
    };
    Ok(Signing {
        file_key_us,
        token_us,
        iterations: iters,
    })
}
