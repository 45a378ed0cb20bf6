//! What the kernel says about processes and the machine: CPU time from
//! `/proc/PID/stat`, peak and current resident memory from
//! `/proc/PID/status`, machine-wide busy time from `/proc/stat`.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on
/// every Linux this runs on, but asked rather than assumed).
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// utime and stime of a process, all its threads (live and exited), in
/// seconds.
pub fn cpu_secs(pid: u32) -> Result<(f64, f64)> {
    let (u, s) = stat_ticks(&Path::new("/proc").join(pid.to_string()).join("stat"))?;
    let tck = clk_tck() as f64;
    Ok((u as f64 / tck, s as f64 / tck))
}

/// This process's own CPU time (the load generator's cost).
pub fn self_cpu_secs() -> Result<f64> {
    let (u, s) = stat_ticks(Path::new("/proc/self/stat"))?;
    Ok((u + s) as f64 / clk_tck() as f64)
}

/// Bytes a process caused to be sent to storage (`write_bytes` of
/// `/proc/PID/io`).
pub fn write_bytes(pid: u32) -> Result<u64> {
    let path = Path::new("/proc").join(pid.to_string()).join("io");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .ok_or_else(|| anyhow!("{}: no write_bytes", path.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{}: write_bytes", path.display()))
}

fn stat_ticks(path: &Path) -> Result<(u64, u64)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // The command name is in parentheses and may contain spaces: the
    // fields that follow the last ')' start at field 3 (state).
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("{}: no ')' in {text:?}", path.display()))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime is field 14 and stime field 15 (1-based), i.e. 11 and 12 here.
    let num = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("{}: too few fields", path.display()))?
            .parse::<u64>()
            .with_context(|| format!("{}: field {i}", path.display()))
    };
    Ok((num(11)?, num(12)?))
}

/// A `kB` line of `/proc/PID/status` (e.g. `VmHWM`, `VmRSS`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = Path::new("/proc").join(pid.to_string()).join("status");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let n = v.trim().trim_end_matches("kB").trim();
            return n
                .parse()
                .with_context(|| format!("{}: {field} is {v:?}", path.display()));
        }
    }
    bail!("{}: no {field} line", path.display())
}

/// Machine-wide busy CPU time (all cores, not idle nor waiting), seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct MachineCpu {
    pub busy: f64,
}

pub fn machine_cpu() -> Result<MachineCpu> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow!("/proc/stat has no cpu line"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let tck = clk_tck() as f64;
    Ok(MachineCpu {
        busy: total.saturating_sub(idle) as f64 / tck,
    })
}

/// Thread CPU time in nanoseconds (`/proc/thread-self/schedstat`, first
/// field): precise enough to time microsecond operations, and not inflated
/// when other processes compete for the core.
pub fn thread_cpu_ns() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    text.split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("empty schedstat"))?
        .parse()
        .context("schedstat")
}

/// A one-line description of the machine, for the report.
pub fn machine_description() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    serde_json::json!({
        "cpu": model,
        "cores": cores,
        "kernel": kernel,
        "memory_mib": mem_kib / 1024,
        "loadavg_at_start": load,
    })
}
