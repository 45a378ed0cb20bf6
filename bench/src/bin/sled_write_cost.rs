//! `sled-write-cost`: what sled 0.34.7 costs per message for the writes a
//! receiving node makes, with and without `sled::Batch`, isolated from
//! everything else (no crypto, no network, no tokio).
//!
//! ```text
//! cargo run --release -p comity-bench --bin sled-write-cost -- [MESSAGES] [GROUP]
//! ```
//!
//! Per message, like `delivery/inbound.rs` today: two audit entries (leaf,
//! one tree node, the ~700-byte frontier, the message index) and the inbox
//! record (~2.7 KB), its de-duplication entry and its id index; one flush
//! (group commit) every GROUP messages. Modes:
//! * `batch`: each audit entry and the inbox record is one `apply_batch`
//!   (what the node does);
//! * `plain`: the same keys written with ordered plain `insert`s;
//! * `*-noaudit`: the same without the audit entries.
//!
//! Why it matters: `Tree::apply_batch` calls `PageCache::pin_log`, which
//! seals and writes the current log buffer before and after reserving the
//! batch (sled-0.34.7/src/pagecache/mod.rs), and every buffer write is a
//! `pwrite` followed by `sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER)`
//! (pagecache/iobuf.rs): two synchronous disk writes per batch, whatever
//! the group commit does.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};

fn proc_field(path: &str, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .ok_or_else(|| anyhow!("{path}: no {key}"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("{path}: {key}"))
}

fn cpu_secs() -> Result<f64> {
    let s = std::fs::read_to_string("/proc/self/stat")?;
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad /proc/self/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f
        .get(11)
        .ok_or_else(|| anyhow!("short stat"))?
        .parse::<u64>()?
        + f.get(12)
            .ok_or_else(|| anyhow!("short stat"))?
            .parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn write(tree: &sled::Tree, keys: Vec<(Vec<u8>, Vec<u8>)>, batched: bool) -> Result<()> {
    if batched {
        let mut b = sled::Batch::default();
        for (k, v) in keys {
            b.insert(k, v);
        }
        tree.apply_batch(b)?;
    } else {
        for (k, v) in keys {
            tree.insert(k, v)?;
        }
    }
    Ok(())
}

fn run(mode: &str, n: u64, group: u64) -> Result<()> {
    let batched = mode.starts_with("batch");
    let audit_entries = if mode.ends_with("noaudit") { 0 } else { 2 };
    let dir = tempfile::Builder::new()
        .prefix("sled-write-cost-")
        .tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .flush_every_ms(Some(1000))
        .open()?;
    let inbox = db.open_tree("inbox")?;
    let audit = db.open_tree("audit")?;
    let record = vec![7u8; 2700];
    let frontier = vec![1u8; 700];
    let sender = [5u8; 32];
    let mut seq = 0u64;
    let (c0, w0, s0) = (
        cpu_secs()?,
        proc_field("/proc/self/io", "write_bytes:")?,
        proc_field("/proc/self/io", "syscw:")?,
    );
    let t0 = Instant::now();
    for i in 0..n {
        let id: [u8; 16] = rand::random();
        for _ in 0..audit_entries {
            let s = seq.to_be_bytes();
            let keys = vec![
                (key(b"e", &[&s]), vec![3u8; 180]),
                (key(b"n\0", &[&s]), vec![9u8; 32]),
                (b"f".to_vec(), frontier.clone()),
                (key(b"m", &[&id, &s]), Vec::new()),
            ];
            write(&audit, keys, batched)?;
            seq += 1;
        }
        let keys = vec![
            (key(b"m", &[&sender, &id]), record.clone()),
            (key(b"i", &[&id]), sender.to_vec()),
            (key(b"d", &[&sender, &id]), vec![4u8; 250]),
        ];
        write(&inbox, keys, batched)?;
        if (i + 1) % group == 0 {
            db.flush()?;
        }
    }
    db.flush()?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs()? - c0;
    let written = proc_field("/proc/self/io", "write_bytes:")? - w0;
    let syscw = proc_field("/proc/self/io", "syscw:")? - s0;
    let per = |v: f64| v / n as f64;
    println!(
        "{mode:<13} {:>8.0} msg/s {:>6.0} µs CPU/msg {:>7.0} B written/msg {:>5.2} write syscalls/msg",
        n as f64 / secs,
        per(cpu) * 1e6,
        per(written as f64),
        per(syscw as f64),
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(20_000), |s| s.parse())?;
    let group: u64 = args.next().map_or(Ok(16), |s| s.parse())?;
    println!("{n} messages, one flush every {group} (sled 0.34.7, one thread)");
    for mode in ["batch", "plain", "batch-noaudit", "plain-noaudit"] {
        run(mode, n, group.max(1))?;
    }
    Ok(())
}
