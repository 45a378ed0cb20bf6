//! Section `attachment`: one large attachment A→B through the CLI, timed
//! (a) from `comity send` returning and (b) from its invocation to the
//! durable receipt, with the memory and CPU of both nodes, 1 KiB requests
//! sent meanwhile at a fixed rate (their send→receipt latency), OpenSSH
//! scp of the same file to a throwaway sshd on loopback (alternating with
//! the Comity runs), and the single-core speeds of the primitives an
//! attachment chunk goes through.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use comity_client::Settings;
use rand::RngCore;
use serde::Serialize;
use serde_json::Value;

use crate::cluster::{mesh_with, BenchNode};
use crate::load::submission;
use crate::procfs::thread_cpu_ns;
use crate::runs::{median_of, percentile, prime, stop_all, Ctx, Profiler, Topology};

/// The side-by-side peer: scp of FILE to a throwaway sshd, then `sync`
/// of the copy; one JSON line per run, exit 3 without sshd.
const SCP_SCRIPT: &str = include_str!("../scp.sh");
const SCP_CIPHER: &str = "chacha20-poly1305@openssh.com";

/// How long one transfer may take before the run is given up.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Clone, Debug, Serialize)]
pub struct AttachmentRun {
    /// (a): `comity send` returned → receipt recorded (`delivered_at`).
    pub send_to_receipt_secs: f64,
    pub send_to_receipt_mib_per_sec: f64,
    /// (b): `comity send` invoked → receipt recorded.
    pub invocation_to_receipt_secs: f64,
    pub invocation_to_receipt_mib_per_sec: f64,
    /// The CLI's own time: upload (the sender seals and stores as it
    /// copies in) and submission.
    pub cli_secs: f64,
    /// VmRSS of each node once primed and settled, before the transfer.
    pub idle_rss_mib: [f64; 2],
    /// VmHWM of each node after the receipt, minus its idle RSS.
    pub peak_above_idle_mib: [f64; 2],
    /// utime + stime of each node from the invocation to the receipt.
    pub cpu_secs: [f64; 2],
    /// The 1 KiB requests sent meanwhile: count and send→receipt latency.
    pub small_messages: usize,
    pub small_p50_ms: f64,
    pub small_p99_ms: f64,
    pub small_max_ms: f64,
    /// p99 of those sent while `comity send` uploaded, and of those sent
    /// after it returned (while the nodes transferred).
    pub small_p99_upload_ms: f64,
    pub small_p99_transfer_ms: f64,
    /// With `--count-events`: each node's kernel events, invoked → receipt.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<BTreeMap<String, f64>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScpRun {
    pub mib_per_sec: f64,
    pub secs: f64,
}

/// Single-core speeds, MiB of plaintext per CPU second (thread time).
#[derive(Clone, Debug, Serialize)]
pub struct ChunkFloor {
    /// ChaCha20-Poly1305 (RFC 8439) seal of 1 MiB buffers.
    pub chacha20poly1305_mib_per_sec: f64,
    /// SHA-256 of 1 MiB buffers.
    pub sha256_mib_per_sec: f64,
    /// The protocol's attachment `Sealer` per 1 MiB chunk (chunk leaf hash,
    /// whole-file digest and STREAM seal): what the sender pays per byte.
    pub sealer_mib_per_sec: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttachmentBench {
    pub bytes: u64,
    pub small_rate: f64,
    pub runs: Vec<AttachmentRun>,
    pub scp_runs: Vec<ScpRun>,
    /// Why there is no scp figure (sshd absent, the script failed).
    pub scp_missing: Option<String>,
    pub floor: ChunkFloor,
}

impl AttachmentBench {
    pub fn median(&self, f: impl Fn(&AttachmentRun) -> f64) -> Option<f64> {
        (!self.runs.is_empty()).then(|| median_of(self.runs.iter().map(f)))
    }

    pub fn scp_mib_per_sec(&self) -> Option<f64> {
        (!self.scp_runs.is_empty()).then(|| median_of(self.scp_runs.iter().map(|r| r.mib_per_sec)))
    }
}

fn unix_ms() -> Result<u64> {
    Ok(u64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

/// Bytes available to this user on the filesystem of `dir` (`df`).
fn free_bytes(dir: &Path) -> Result<u64> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .context("running df")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow!("unexpected output of df {}", dir.display()))
}

/// A file of `bytes` random bytes (incompressible, so no layer below can
/// make it cheaper than it is).
fn random_file(dir: &Path, bytes: u64) -> Result<PathBuf> {
    let path = dir.join("evidence.bin");
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut rng = rand::rng();
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64))?;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(path)
}

pub fn run(
    ctx: &Ctx,
    comity: &Path,
    bytes: u64,
    runs: usize,
    small_rate: f64,
    file_dir: &Path,
) -> Result<AttachmentBench> {
    ctx.say("single-core speeds of the chunk primitives…");
    let floor = chunk_floor()?;
    ctx.say(format!(
        "ChaCha20-Poly1305 {:.0} MiB/s, SHA-256 {:.0} MiB/s, Sealer {:.0} MiB/s",
        floor.chacha20poly1305_mib_per_sec, floor.sha256_mib_per_sec, floor.sealer_mib_per_sec
    ));
    let dir = tempfile::Builder::new()
        .prefix("comity-bench-file-")
        .tempdir_in(file_dir)
        .with_context(|| format!("a directory for the file in {}", file_dir.display()))?;
    ctx.say(format!("writing {} MiB of random bytes…", bytes >> 20));
    let file = random_file(dir.path(), bytes)?;
    let mut out = AttachmentBench {
        bytes,
        small_rate,
        runs: Vec::new(),
        scp_runs: Vec::new(),
        scp_missing: None,
        floor,
    };
    // Comity and scp alternate, so slow drifts of the machine hit both.
    for i in 0..runs {
        ctx.say(format!(
            "attachment run {}/{runs}: comity send --attach…",
            i + 1
        ));
        let r = one_run(ctx, comity, &file, bytes, small_rate)?;
        ctx.say(format!(
            "(a) {:.1} s = {:.0} MiB/s, (b) {:.1} s = {:.0} MiB/s; peak above idle {:.0} / {:.0} MiB; CPU {:.1} / {:.1} s; 1 KiB p99 {:.0} ms (upload {:.0}, transfer {:.0})",
            r.send_to_receipt_secs,
            r.send_to_receipt_mib_per_sec,
            r.invocation_to_receipt_secs,
            r.invocation_to_receipt_mib_per_sec,
            r.peak_above_idle_mib[0],
            r.peak_above_idle_mib[1],
            r.cpu_secs[0],
            r.cpu_secs[1],
            r.small_p99_ms,
            r.small_p99_upload_ms,
            r.small_p99_transfer_ms
        ));
        out.runs.push(r);
        if out.scp_missing.is_none() {
            ctx.say(format!("scp run {}/{runs}…", i + 1));
            match scp_once(&file) {
                Ok(r) => {
                    ctx.say(format!("scp {:.0} MiB/s ({:.1} s)", r.mib_per_sec, r.secs));
                    out.scp_runs.push(r);
                }
                Err(why) => {
                    ctx.say(format!("no scp figure: {why}"));
                    out.scp_missing = Some(why);
                }
            }
        }
    }
    Ok(out)
}

/// One scp of `file` (a fresh sshd each time); `Err` says why there is no
/// figure.
fn scp_once(file: &Path) -> Result<ScpRun, String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(SCP_SCRIPT)
        .arg("scp.sh")
        .arg(file)
        .arg(SCP_CIPHER)
        .arg("1")
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    if let Some(e) = v["error"].as_str() {
        return Err(e.to_string());
    }
    if !out.status.success() {
        return Err(format!(
            "scp.sh exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    match (v["mib_per_s"].as_f64(), v["secs"].as_f64()) {
        (Some(mib_per_sec), Some(secs)) => Ok(ScpRun { mib_per_sec, secs }),
        _ => Err(format!("unexpected output of scp.sh: {stdout:?}")),
    }
}

fn settings() -> Settings {
    Settings {
        initial_backoff_ms: Some(100),
        max_backoff_secs: Some(1),
        // The run needs the file and a copy on each node (3× its size); on
        // a nearly full disk the 1 % reserve alone would refuse it. The
        // byte reserve stays at its default.
        disk_reserve_percent: Some(0),
        ..Settings::default()
    }
}

fn one_run(
    ctx: &Ctx,
    comity: &Path,
    file: &Path,
    bytes: u64,
    small_rate: f64,
) -> Result<AttachmentRun> {
    // Each node keeps a copy; a disk that fills half way would measure
    // the node's refusal, and hurt everyone else on the machine.
    let need = 2 * bytes + (512 << 20);
    let free = free_bytes(&std::env::temp_dir())?;
    if free < need {
        bail!(
            "{} has {} MiB free; the two nodes need {} MiB (two copies of the attachment and a margin)",
            std::env::temp_dir().display(),
            free >> 20,
            need >> 20
        );
    }
    let mut nodes = mesh_with(&ctx.comityd, 2, &settings())?;
    prime(&mut nodes, &Topology::one_way())?;
    // Let the priming's checkpoint and witnessing settle.
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss_mib = [nodes[0].rss_mib()?, nodes[1].rss_mib()?];
    let profilers = [
        Profiler::attach(ctx, nodes[0].pid()?, "attachment-sender")?,
        Profiler::attach(ctx, nodes[1].pid()?, "attachment-receiver")?,
    ];
    let cpu0 = [nodes[0].cpu_secs()?, nodes[1].cpu_secs()?];
    let stop = AtomicBool::new(false);
    let small_body = submission(&nodes[1].country)?;
    let (transfer, small) = std::thread::scope(|s| {
        let small = s.spawn(|| small_requests(&nodes[0], &small_body, small_rate, &stop));
        let transfer = transfer(&nodes, comity, file);
        stop.store(true, Ordering::Relaxed);
        (transfer, small.join())
    });
    let transfer = transfer?;
    let cpu1 = [nodes[0].cpu_secs()?, nodes[1].cpu_secs()?];
    let peak = [nodes[0].peak_rss_mib()?, nodes[1].peak_rss_mib()?];
    let mut events = Vec::new();
    for p in profilers {
        events.push(p.finish()?.unwrap_or_default());
    }
    let small_ids = small.map_err(|_| anyhow!("the 1 KiB sender panicked"))??;
    let timed = small_latencies(&nodes[0], &small_ids)?;
    stop_all(&mut nodes)?;
    // Which phase a request met: the upload (`comity send` running) or
    // the transfer between the nodes.
    let mut upload: Vec<f64> = timed
        .iter()
        .filter(|(created, _)| *created < transfer.returned_ms)
        .map(|t| t.1)
        .collect();
    let mut between: Vec<f64> = timed
        .iter()
        .filter(|(created, _)| *created >= transfer.returned_ms)
        .map(|t| t.1)
        .collect();
    let mut lat: Vec<f64> = timed.iter().map(|t| t.1).collect();
    for v in [&mut lat, &mut upload, &mut between] {
        v.sort_by(f64::total_cmp);
    }
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let a = transfer.delivered_ms.saturating_sub(transfer.returned_ms) as f64 / 1e3;
    let b = transfer.delivered_ms.saturating_sub(transfer.invoked_ms) as f64 / 1e3;
    Ok(AttachmentRun {
        send_to_receipt_secs: a,
        send_to_receipt_mib_per_sec: mib / a.max(1e-3),
        invocation_to_receipt_secs: b,
        invocation_to_receipt_mib_per_sec: mib / b.max(1e-3),
        cli_secs: transfer.returned_ms.saturating_sub(transfer.invoked_ms) as f64 / 1e3,
        idle_rss_mib,
        peak_above_idle_mib: [peak[0] - idle_rss_mib[0], peak[1] - idle_rss_mib[1]],
        cpu_secs: [cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]],
        small_messages: lat.len(),
        small_p50_ms: percentile(&lat, 50.0),
        small_p99_ms: percentile(&lat, 99.0),
        small_max_ms: lat.last().copied().unwrap_or(f64::NAN),
        small_p99_upload_ms: percentile(&upload, 99.0),
        small_p99_transfer_ms: percentile(&between, 99.0),
        events: if events.iter().all(BTreeMap::is_empty) {
            Vec::new()
        } else {
            events
        },
    })
}

struct Transfer {
    invoked_ms: u64,
    returned_ms: u64,
    /// `delivered_at` of the message, stamped by the sender when it
    /// recorded the receipt.
    delivered_ms: u64,
}

fn transfer(nodes: &[BenchNode], comity: &Path, file: &Path) -> Result<Transfer> {
    let invoked_ms = unix_ms()?;
    let out = Command::new(comity)
        .arg("--config")
        .arg(nodes[0].config_path())
        .args(["send", "request", "--to", &nodes[1].country])
        .args(["--type", "mla", "--legal-basis", "untoc-18"])
        .args(["--subject", "Bank statements 2019-2024 (benchmark)"])
        .args(["--body", "Evidence as requested; see the attachment."])
        .arg("--attach")
        .arg(file)
        .arg("--json")
        .output()
        .with_context(|| format!("running {}", comity.display()))?;
    let returned_ms = unix_ms()?;
    if !out.status.success() {
        bail!(
            "comity send failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("the JSON answer of comity send")?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no id in the answer of comity send: {v}"))?;
    let conn = nodes[0].conn();
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    loop {
        let m = conn.get(&format!("/v1/messages/{id}"))?;
        if let Some(at) = m["delivered_at"].as_u64() {
            return Ok(Transfer {
                invoked_ms,
                returned_ms,
                delivered_ms: at,
            });
        }
        if Instant::now() > deadline {
            bail!(
                "no receipt for {id} after {} s: {}\n{}",
                TRANSFER_TIMEOUT.as_secs(),
                m["state"],
                nodes[0].log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Open loop: one 1 KiB request every 1/`rate` s until `stop`; the ids.
fn small_requests(
    node: &BenchNode,
    body: &[u8],
    rate: f64,
    stop: &AtomicBool,
) -> Result<Vec<String>> {
    let conn = node.conn();
    let mut ids = Vec::new();
    let t0 = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let at = t0 + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let v = conn
            .post_bytes("/v1/messages", body)
            .with_context(|| format!("submitting 1 KiB request {i}"))?;
        ids.push(
            v["id"]
                .as_str()
                .ok_or_else(|| anyhow!("no id in {v}"))?
                .to_string(),
        );
        i += 1;
    }
    Ok(ids)
}

/// `created_at` and `delivered_at − created_at` of each message (both
/// stamped by the sender, ms), once all are delivered.
fn small_latencies(node: &BenchNode, ids: &[String]) -> Result<Vec<(u64, f64)>> {
    let conn = node.conn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.pending(&conn)? > 0 {
        if Instant::now() > deadline {
            bail!("1 KiB requests still pending 60 s after the attachment's receipt");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut lat = Vec::with_capacity(ids.len());
    for id in ids {
        let v = conn.get(&format!("/v1/messages/{id}"))?;
        let created = v["created_at"]
            .as_u64()
            .ok_or_else(|| anyhow!("no created_at: {v}"))?;
        let delivered = v["delivered_at"]
            .as_u64()
            .ok_or_else(|| anyhow!("{id} not delivered: {}", v["state"]))?;
        lat.push((created, delivered.saturating_sub(created) as f64));
    }
    Ok(lat)
}

/// MiB per CPU second of `f` over `mib` MiB, median of 5 rounds.
fn mib_per_cpu_sec(mib: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut samples = Vec::new();
    for _ in 0..5 {
        let t0 = thread_cpu_ns()?;
        f()?;
        let ns = thread_cpu_ns()?.saturating_sub(t0).max(1);
        samples.push(mib as f64 / (ns as f64 / 1e9));
    }
    Ok(median_of(samples))
}

fn chunk_floor() -> Result<ChunkFloor> {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use comity_protocol::attachment::{AttachmentLimits, Sealer};
    use sha2::Digest as _;

    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 64;
    let mut rng = rand::rng();
    let mut plain = vec![0u8; CHUNK];
    rng.fill_bytes(&mut plain);

    let cipher = chacha20poly1305::ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buf = plain.clone();
    let chacha = mib_per_cpu_sec(CHUNKS, || {
        for i in 0..CHUNKS {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let tag = cipher
                .encrypt_in_place_detached(&nonce.into(), b"", &mut buf)
                .map_err(|_| anyhow!("ChaCha20-Poly1305 seal failed"))?;
            std::hint::black_box(tag);
        }
        Ok(())
    })?;
    let sha = mib_per_cpu_sec(CHUNKS, || {
        for _ in 0..CHUNKS {
            std::hint::black_box(sha2::Sha256::digest(&plain));
        }
        Ok(())
    })?;
    // 1 MiB chunks: a size above the small-chunk range; only the first
    // CHUNKS chunks are sealed.
    let size = 4 * CHUNKS as u64 * CHUNK as u64;
    let sealer = mib_per_cpu_sec(CHUNKS, || {
        let mut s = Sealer::new(
            "evidence.bin",
            "application/octet-stream",
            size,
            &AttachmentLimits::default(),
            &mut rng,
        )
        .map_err(|e| anyhow!("Sealer::new: {e}"))?;
        if s.chunk_size() as usize != CHUNK {
            bail!("the sealer chose {} B chunks, not 1 MiB", s.chunk_size());
        }
        // Copies outside the timed part would need 64 MiB more; a 1 MiB
        // copy is a few % of a seal.
        for _ in 0..CHUNKS {
            std::hint::black_box(
                s.seal_chunk(plain.clone())
                    .map_err(|e| anyhow!("seal_chunk: {e}"))?,
            );
        }
        Ok(())
    })?;
    Ok(ChunkFloor {
        chacha20poly1305_mib_per_sec: chacha,
        sha256_mib_per_sec: sha,
        sealer_mib_per_sec: sealer,
    })
}
