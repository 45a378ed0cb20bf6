//! Load generation through the admin API: closed-loop submission by many
//! concurrent keep-alive clients (as fast as the node accepts), and
//! open-loop submission at a fixed rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use comity_client::Client;
use comity_protocol::message::Body;

/// A mutual legal assistance request with a 1 KiB body text: the message
/// of the benchmark (the same one `protocol/benches/envelope.rs` seals).
pub fn request_1kib() -> Result<Body> {
    Ok(comity_protocol::sample::request_1kib()?)
}

/// The `POST /v1/messages` body sending the 1 KiB request to `to`.
pub fn submission(to: &str) -> Result<Vec<u8>> {
    let v = serde_json::json!({"to": to, "body": request_1kib()?});
    Ok(serde_json::to_vec(&v)?)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Submitted {
    pub count: u64,
    pub secs: f64,
}

impl Submitted {
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.secs.max(1e-9)
    }
}

/// Submits `n` messages with `clients` concurrent connections (each a
/// keep-alive clone of `client`: one connection per client thread, not one
/// per message), cycling through `bodies` (one per destination). Every
/// answer must be a 2xx.
pub fn submit_many(
    client: &Client,
    bodies: &[Vec<u8>],
    n: u64,
    clients: usize,
) -> Result<Submitted> {
    let next = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..clients.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let conn = client.clone().keep_alive();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        let body = &bodies[usize::try_from(i).unwrap_or(0) % bodies.len()];
                        conn.post_bytes("/v1/messages", body)
                            .with_context(|| format!("submitting message {i}"))?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow!("a client thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(Submitted {
        count: n,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// One message submitted at a fixed rate.
#[derive(Clone, Debug)]
pub struct Timed {
    pub id: String,
    /// How late the request left against its schedule (client queueing).
    pub late_ms: f64,
    /// The admin API's answer time (accepted = flushed on the sender).
    pub rtt_ms: f64,
}

/// Open loop: one submission every 1/`rate` s for `secs`, whatever the
/// answers do, carried by `workers` keep-alive connections (clones of
/// `client`).
pub fn submit_at_rate(
    client: &Client,
    body: &[u8],
    rate: f64,
    secs: f64,
    workers: usize,
) -> Result<Vec<Timed>> {
    let total = (rate * secs).round().max(1.0) as u64;
    let (jobs_tx, jobs_rx) = mpsc::channel::<(u64, Instant)>();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    std::thread::scope(|s| -> Result<Vec<Timed>> {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|_| {
                let jobs = jobs_rx.clone();
                s.spawn(move || -> Result<Vec<Timed>> {
                    let conn = client.clone().keep_alive();
                    let mut out = Vec::new();
                    loop {
                        let job = jobs.lock().map_err(|_| anyhow!("poisoned"))?.recv();
                        let Ok((i, scheduled)) = job else {
                            return Ok(out);
                        };
                        let started = Instant::now();
                        let answer = conn
                            .post_bytes("/v1/messages", body)
                            .with_context(|| format!("submitting message {i}"))?;
                        let rtt = started.elapsed();
                        let id = answer["id"]
                            .as_str()
                            .ok_or_else(|| anyhow!("no id in {answer}"))?
                            .to_string();
                        out.push(Timed {
                            id,
                            late_ms: started.saturating_duration_since(scheduled).as_secs_f64()
                                * 1e3,
                            rtt_ms: rtt.as_secs_f64() * 1e3,
                        });
                    }
                })
            })
            .collect();
        let t0 = Instant::now();
        for i in 0..total {
            let at = t0 + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            jobs_tx
                .send((i, at))
                .map_err(|_| anyhow!("every worker stopped"))?;
        }
        drop(jobs_tx);
        let mut all = Vec::new();
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| anyhow!("a worker thread panicked"))??,
            );
        }
        Ok(all)
    })
}
