//! The figures, their targets (issue 7 and issue 4), the table and the
//! JSON object.

use std::process::Command;

use serde_json::{json, Value};

use crate::attachment::AttachmentBench;
use crate::audit::AuditVerify;
use crate::crypto::CryptoFloor;
use crate::large_store::LargeStore;
use crate::procfs;
use crate::runs::{median_of, DrainRun, IdlePeers, LatencyRun, SustainedRun};

#[derive(Clone, Copy, Debug)]
enum Op {
    AtLeast,
    AtMost,
}

struct Target {
    key: &'static str,
    label: String,
    value: f64,
    unit: &'static str,
    op: Op,
    limit: f64,
}

impl Target {
    fn pass(&self) -> bool {
        match self.op {
            Op::AtLeast => self.value >= self.limit,
            Op::AtMost => self.value <= self.limit,
        }
    }
}

pub struct Report {
    settings: Value,
    machine: Value,
    pub crypto: Option<CryptoFloor>,
    pub signing: Option<crate::signing::Signing>,
    pub audit_verify: Option<AuditVerify>,
    pub throughput_runs: Vec<DrainRun>,
    pub audit_off_runs: Vec<DrainRun>,
    pub sustained: Option<SustainedRun>,
    pub latency: Option<LatencyRun>,
    pub mesh_runs: Vec<DrainRun>,
    pub idle: Option<IdlePeers>,
    pub large_store: Option<LargeStore>,
    pub attachment: Option<AttachmentBench>,
    pub discarded_runs: Vec<DrainRun>,
    pub elapsed_secs: f64,
}

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
}

fn med(runs: &[DrainRun], f: impl Fn(&DrainRun) -> f64) -> Option<f64> {
    (!runs.is_empty()).then(|| median_of(runs.iter().map(f)))
}

fn max_of(runs: &[DrainRun], f: impl Fn(&DrainRun) -> f64) -> Option<f64> {
    runs.iter().map(f).reduce(f64::max)
}

impl Report {
    pub fn new(settings: Value) -> Report {
        Report {
            settings,
            machine: procfs::machine_description(),
            crypto: None,
            signing: None,
            audit_verify: None,
            throughput_runs: Vec::new(),
            audit_off_runs: Vec::new(),
            sustained: None,
            latency: None,
            mesh_runs: Vec::new(),
            idle: None,
            large_store: None,
            attachment: None,
            discarded_runs: Vec::new(),
            elapsed_secs: 0.0,
        }
    }

    /// Every headline figure, by key (absent when its section did not run).
    fn figures(&self) -> Vec<(&'static str, Option<f64>)> {
        let t = &self.throughput_runs;
        let throughput = med(t, |r| r.msgs_per_sec);
        let off = med(&self.audit_off_runs, |r| r.msgs_per_sec);
        let cpu = med(t, |r| r.cpu_us_per_msg);
        let floor = self.crypto.as_ref().map(|c| c.total_us);
        let slowdown = throughput
            .zip(off)
            .map(|(on, off)| (off - on) / off * 100.0);
        vec![
            ("throughput_msgs_per_sec", throughput),
            ("throughput_audit_off_msgs_per_sec", off),
            ("audit_slowdown_pct", slowdown),
            ("submit_msgs_per_sec", med(t, |r| r.submit_msgs_per_sec)),
            (
                "sustained_msgs_per_sec",
                self.sustained.as_ref().map(|s| s.msgs_per_sec),
            ),
            (
                "sustained_submit_msgs_per_sec",
                self.sustained.as_ref().map(|s| s.submit_msgs_per_sec),
            ),
            ("latency_p50_ms", self.latency.as_ref().map(|l| l.p50_ms)),
            ("latency_p99_ms", self.latency.as_ref().map(|l| l.p99_ms)),
            ("latency_p999_ms", self.latency.as_ref().map(|l| l.p999_ms)),
            ("cpu_us_per_msg", cpu),
            ("submit_cpu_us_per_msg", med(t, |r| r.submit_cpu_us_per_msg)),
            (
                "sender_delivery_cpu_us_per_msg",
                med(t, |r| r.delivery_cpu_us_per_msg_by_node[0]),
            ),
            (
                "receiver_delivery_cpu_us_per_msg",
                med(t, |r| r.delivery_cpu_us_per_msg_by_node[1]),
            ),
            (
                "submit_write_bytes_per_msg",
                med(t, |r| r.submit_write_bytes_per_msg),
            ),
            (
                "sender_write_bytes_per_msg",
                med(t, |r| r.delivery_write_bytes_per_msg_by_node[0]),
            ),
            (
                "receiver_write_bytes_per_msg",
                med(t, |r| r.delivery_write_bytes_per_msg_by_node[1]),
            ),
            ("sender_core_pct", med(t, |r| r.cpu.node_core_pct[0])),
            ("receiver_core_pct", med(t, |r| r.cpu.node_core_pct[1])),
            ("sender_sys_pct", med(t, |r| r.cpu.node_sys_pct[0])),
            ("receiver_sys_pct", med(t, |r| r.cpu.node_sys_pct[1])),
            ("crypto_floor_us_per_msg", floor),
            ("cpu_floor_ratio", cpu.zip(floor).map(|(c, f)| c / f)),
            ("peak_rss_sender_mib", max_of(t, |r| r.peak_rss_mib[0])),
            ("peak_rss_receiver_mib", max_of(t, |r| r.peak_rss_mib[1])),
            ("idle_peers_rss_mib", self.idle.as_ref().map(|i| i.rss_mib)),
            (
                "idle_peers_peak_rss_mib",
                self.idle.as_ref().map(|i| i.peak_rss_mib),
            ),
            (
                "audit_verify_entries_per_sec",
                self.audit_verify.as_ref().map(|a| a.entries_per_sec),
            ),
            (
                "mesh_msgs_per_sec",
                med(&self.mesh_runs, |r| r.msgs_per_sec),
            ),
            (
                "mesh_peak_rss_mib",
                max_of(&self.mesh_runs, |r| {
                    r.peak_rss_mib.iter().copied().fold(0.0, f64::max)
                }),
            ),
            ("large_store_status_ms", self.store(|n| n.status.median_ms)),
            (
                "large_store_metrics_ms",
                self.store(|n| n.metrics.median_ms),
            ),
            ("large_store_page_ms", self.store(|n| n.page.median_ms)),
            (
                "large_store_next_page_ms",
                self.store_opt(|n| n.next_page.as_ref().map(|t| t.median_ms)),
            ),
            (
                "large_store_unmatched_filter_page_ms",
                self.store_opt(|n| n.unmatched_filter_page.as_ref().map(|t| t.median_ms)),
            ),
            (
                "large_store_status_cli_ms",
                self.store_opt(|n| n.status_cli.as_ref().map(|t| t.median_ms)),
            ),
            (
                "large_store_page_cli_ms",
                self.store_opt(|n| n.page_cli.as_ref().map(|t| t.median_ms)),
            ),
            (
                "large_store_rss_growth_mib",
                self.store(|n| n.rss_after_mib - n.rss_before_mib),
            ),
            (
                "large_store_peak_rss_growth_mib",
                self.store(|n| n.peak_rss_after_mib - n.peak_rss_before_mib),
            ),
            (
                "large_store_restart_secs",
                self.large_store
                    .as_ref()
                    .map(|s| s.restart_secs.iter().copied().fold(0.0, f64::max)),
            ),
        ]
        .into_iter()
        .chain(self.attachment_figures())
        .collect()
    }

    fn attachment_figures(&self) -> Vec<(&'static str, Option<f64>)> {
        let a = self.attachment.as_ref();
        let m = |f: fn(&crate::attachment::AttachmentRun) -> f64| a.and_then(|a| a.median(f));
        vec![
            (
                "attachment_send_to_receipt_mib_per_sec",
                m(|r| r.send_to_receipt_mib_per_sec),
            ),
            (
                "attachment_send_to_receipt_secs",
                m(|r| r.send_to_receipt_secs),
            ),
            (
                "attachment_invocation_to_receipt_mib_per_sec",
                m(|r| r.invocation_to_receipt_mib_per_sec),
            ),
            (
                "attachment_invocation_to_receipt_secs",
                m(|r| r.invocation_to_receipt_secs),
            ),
            ("attachment_cli_secs", m(|r| r.cli_secs)),
            (
                "attachment_scp_mib_per_sec",
                a.and_then(AttachmentBench::scp_mib_per_sec),
            ),
            (
                "attachment_sender_peak_above_idle_mib",
                m(|r| r.peak_above_idle_mib[0]),
            ),
            (
                "attachment_receiver_peak_above_idle_mib",
                m(|r| r.peak_above_idle_mib[1]),
            ),
            ("attachment_sender_idle_rss_mib", m(|r| r.idle_rss_mib[0])),
            ("attachment_receiver_idle_rss_mib", m(|r| r.idle_rss_mib[1])),
            ("attachment_sender_cpu_secs", m(|r| r.cpu_secs[0])),
            ("attachment_receiver_cpu_secs", m(|r| r.cpu_secs[1])),
            ("attachment_small_p50_ms", m(|r| r.small_p50_ms)),
            ("attachment_small_p99_ms", m(|r| r.small_p99_ms)),
            (
                "attachment_small_p99_upload_ms",
                m(|r| r.small_p99_upload_ms),
            ),
            (
                "attachment_small_p99_transfer_ms",
                m(|r| r.small_p99_transfer_ms),
            ),
            (
                "attachment_chacha20poly1305_mib_per_sec",
                a.map(|a| a.floor.chacha20poly1305_mib_per_sec),
            ),
            (
                "attachment_sha256_mib_per_sec",
                a.map(|a| a.floor.sha256_mib_per_sec),
            ),
            (
                "attachment_sealer_mib_per_sec",
                a.map(|a| a.floor.sealer_mib_per_sec),
            ),
        ]
    }

    /// The slowest node's figure of the large store.
    fn store(&self, f: impl Fn(&crate::large_store::NodeFigures) -> f64) -> Option<f64> {
        self.large_store.as_ref().map(|s| s.worst(f))
    }

    fn store_opt(
        &self,
        f: impl Fn(&crate::large_store::NodeFigures) -> Option<f64>,
    ) -> Option<f64> {
        let s = self.large_store.as_ref()?;
        s.nodes
            .iter()
            .map(f)
            .collect::<Option<Vec<f64>>>()
            .map(|v| v.into_iter().fold(0.0, f64::max))
    }

    fn figure(&self, key: &str) -> Option<f64> {
        self.figures()
            .into_iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v)
    }

    fn targets(&self) -> Vec<Target> {
        let idle_peers = self.idle.as_ref().map_or(200, |i| i.peers);
        let stored = self.large_store.as_ref().map_or(0, |s| s.messages);
        let mut spec: Vec<(&'static str, String, &'static str, Op, f64)> = vec![
            (
                "throughput_msgs_per_sec",
                "throughput A→B, audit on".into(),
                "msg/s",
                Op::AtLeast,
                3000.0,
            ),
            (
                "latency_p99_ms",
                format!(
                    "p99 send→durable receipt at {} msg/s",
                    self.latency
                        .as_ref()
                        .map_or(200.0, |l| l.offered_msgs_per_sec)
                ),
                "ms",
                Op::AtMost,
                20.0,
            ),
            (
                "cpu_floor_ratio",
                "CPU per message / crypto floor".into(),
                "×",
                Op::AtMost,
                3.0,
            ),
            (
                "peak_rss_sender_mib",
                "peak RSS, sender (throughput run)".into(),
                "MiB",
                Op::AtMost,
                150.0,
            ),
            (
                "peak_rss_receiver_mib",
                "peak RSS, receiver (throughput run)".into(),
                "MiB",
                Op::AtMost,
                150.0,
            ),
            (
                "idle_peers_peak_rss_mib",
                format!("peak RSS with {idle_peers} idle peers"),
                "MiB",
                Op::AtMost,
                100.0,
            ),
            (
                "audit_verify_entries_per_sec",
                "audit bundle verification".into(),
                "entries/s",
                Op::AtLeast,
                500_000.0,
            ),
            (
                "audit_slowdown_pct",
                "throughput cost of the audit log".into(),
                "%",
                Op::AtMost,
                10.0,
            ),
            (
                "large_store_status_ms",
                format!("status, {stored} messages stored (median)"),
                "ms",
                Op::AtMost,
                20.0,
            ),
            (
                "large_store_metrics_ms",
                format!("/metrics, {stored} messages stored"),
                "ms",
                Op::AtMost,
                20.0,
            ),
            (
                "large_store_page_ms",
                format!("page of 100, {stored} messages stored"),
                "ms",
                Op::AtMost,
                20.0,
            ),
            (
                "large_store_peak_rss_growth_mib",
                "peak RSS growth over those questions".into(),
                "MiB",
                Op::AtMost,
                1.0,
            ),
            (
                "attachment_sender_peak_above_idle_mib",
                "attachment: sender peak RSS above idle".into(),
                "MiB",
                Op::AtMost,
                64.0,
            ),
            (
                "attachment_receiver_peak_above_idle_mib",
                "attachment: receiver peak RSS above idle".into(),
                "MiB",
                Op::AtMost,
                64.0,
            ),
            (
                "attachment_small_p99_ms",
                format!(
                    "attachment: p99 of 1 KiB at {} msg/s",
                    self.attachment.as_ref().map_or(50.0, |a| a.small_rate)
                ),
                "ms",
                Op::AtMost,
                20.0,
            ),
        ];
        // (a) against scp of the same file in the same run: no scp figure,
        // no target.
        if let Some(scp) = self.figure("attachment_scp_mib_per_sec") {
            spec.push((
                "attachment_send_to_receipt_mib_per_sec",
                "attachment (a) send→receipt, vs scp".into(),
                "MiB/s",
                Op::AtLeast,
                scp,
            ));
        }
        spec.into_iter()
            .filter_map(|(key, label, unit, op, limit)| {
                self.figure(key).map(|value| Target {
                    key,
                    label,
                    value,
                    unit,
                    op,
                    limit,
                })
            })
            .collect()
    }

    pub fn all_pass(&self) -> bool {
        self.targets().iter().all(Target::pass)
    }

    pub fn print_table(&self, to_stderr: bool) {
        let mut out = String::new();
        let line = |out: &mut String, label: &str, value: String, target: &str, verdict: &str| {
            out.push_str(&format!(
                "{label:<44} {value:>16}  {target:<14} {verdict}\n"
            ));
        };
        out.push_str(&format!(
            "\ncomity-bench — {} ({} cores), {}{}\n",
            self.machine["cpu"].as_str().unwrap_or("?"),
            self.machine["cores"],
            self.settings["window"]
                .as_u64()
                .map_or(String::new(), |w| format!("window {w}")),
            if self.settings["smoke"].as_bool() == Some(true) {
                ", SMOKE RUN (not comparable)"
            } else {
                ""
            }
        ));
        line(&mut out, "figure", "value".into(), "target", "verdict");
        out.push_str(&format!("{}\n", "-".repeat(86)));
        for t in self.targets() {
            let target = match t.op {
                Op::AtLeast => format!("≥ {}", fmt_num(t.limit)),
                Op::AtMost => format!("≤ {}", fmt_num(t.limit)),
            };
            line(
                &mut out,
                &t.label,
                format!("{} {}", fmt_num(t.value), t.unit),
                &target,
                if t.pass() { "PASS" } else { "FAIL" },
            );
        }
        out.push_str(&format!("{}\n", "-".repeat(86)));
        let info: Vec<(&str, &str, &str)> = vec![
            (
                "throughput_audit_off_msgs_per_sec",
                "throughput A→B, audit off",
                "msg/s",
            ),
            ("submit_msgs_per_sec", "admin API submission alone", "msg/s"),
            ("sustained_msgs_per_sec", "A→B while submitting", "msg/s"),
            (
                "sustained_submit_msgs_per_sec",
                "  submission meanwhile",
                "msg/s",
            ),
            (
                "mesh_msgs_per_sec",
                "all-to-all throughput (4 nodes)",
                "msg/s",
            ),
            (
                "mesh_peak_rss_mib",
                "all-to-all peak RSS (largest node)",
                "MiB",
            ),
            ("latency_p50_ms", "latency p50", "ms"),
            ("latency_p999_ms", "latency p99.9", "ms"),
            ("cpu_us_per_msg", "CPU per message, both nodes", "µs"),
            (
                "submit_cpu_us_per_msg",
                "  of which submission (sender)",
                "µs",
            ),
            (
                "sender_delivery_cpu_us_per_msg",
                "  of which delivery, sender",
                "µs",
            ),
            (
                "receiver_delivery_cpu_us_per_msg",
                "  of which delivery, receiver",
                "µs",
            ),
            (
                "sender_core_pct",
                "sender CPU while draining, % of a core",
                "%",
            ),
            (
                "receiver_core_pct",
                "receiver CPU while draining, % of a core",
                "%",
            ),
            ("sender_sys_pct", "kernel share of CPU, sender", "%"),
            ("receiver_sys_pct", "kernel share of CPU, receiver", "%"),
            (
                "submit_write_bytes_per_msg",
                "bytes written per msg, submission",
                "B",
            ),
            (
                "sender_write_bytes_per_msg",
                "bytes written per msg, sender delivery",
                "B",
            ),
            (
                "receiver_write_bytes_per_msg",
                "bytes written per msg, receiver",
                "B",
            ),
            ("crypto_floor_us_per_msg", "crypto floor per message", "µs"),
            ("idle_peers_rss_mib", "RSS with idle peers, settled", "MiB"),
            (
                "large_store_next_page_ms",
                "  next page, through its cursor",
                "ms",
            ),
            (
                "large_store_unmatched_filter_page_ms",
                "  page of a filter nothing matches",
                "ms",
            ),
            (
                "large_store_status_cli_ms",
                "  comity status (process)",
                "ms",
            ),
            (
                "large_store_page_cli_ms",
                "  comity messages (process)",
                "ms",
            ),
            (
                "large_store_rss_growth_mib",
                "  RSS growth over those questions",
                "MiB",
            ),
            (
                "large_store_restart_secs",
                "  restart with that store, median of 3",
                "s",
            ),
        ];
        let attachment_info: Vec<(&str, &str, &str)> = vec![
            (
                "attachment_send_to_receipt_secs",
                "attachment (a): send returned → receipt",
                "s",
            ),
            (
                "attachment_invocation_to_receipt_mib_per_sec",
                "attachment (b): CLI invoked → receipt",
                "MiB/s",
            ),
            (
                "attachment_invocation_to_receipt_secs",
                "attachment (b): CLI invoked → receipt",
                "s",
            ),
            ("attachment_cli_secs", "  of which comity send itself", "s"),
            (
                "attachment_scp_mib_per_sec",
                "  scp + sync, same file",
                "MiB/s",
            ),
            ("attachment_sender_idle_rss_mib", "  sender idle RSS", "MiB"),
            (
                "attachment_receiver_idle_rss_mib",
                "  receiver idle RSS",
                "MiB",
            ),
            (
                "attachment_sender_cpu_secs",
                "  sender CPU, invoked → receipt",
                "s",
            ),
            (
                "attachment_receiver_cpu_secs",
                "  receiver CPU, invoked → receipt",
                "s",
            ),
            ("attachment_small_p50_ms", "  1 KiB meanwhile, p50", "ms"),
            (
                "attachment_small_p99_upload_ms",
                "  1 KiB p99 while comity send uploads",
                "ms",
            ),
            (
                "attachment_small_p99_transfer_ms",
                "  1 KiB p99 while the nodes transfer",
                "ms",
            ),
            (
                "attachment_chacha20poly1305_mib_per_sec",
                "  ChaCha20-Poly1305, one core",
                "MiB/s",
            ),
            (
                "attachment_sha256_mib_per_sec",
                "  SHA-256, one core",
                "MiB/s",
            ),
            (
                "attachment_sealer_mib_per_sec",
                "  attachment Sealer per 1 MiB chunk, one core",
                "MiB/s",
            ),
        ];
        for (key, label, unit) in info.into_iter().chain(attachment_info) {
            if let Some(v) = self.figure(key) {
                let label = if key == "mesh_msgs_per_sec" || key == "mesh_peak_rss_mib" {
                    label.replace(
                        '4',
                        &self.settings["mesh_nodes"]
                            .as_u64()
                            .unwrap_or(4)
                            .to_string(),
                    )
                } else {
                    label.to_string()
                };
                line(&mut out, &label, format!("{} {unit}", fmt_num(v)), "", "");
            }
        }
        if let (Some(sub), Some(del)) = (
            self.figure("submit_msgs_per_sec"),
            self.figure("throughput_msgs_per_sec"),
        ) {
            out.push_str(&format!(
                "  submission alone accepts {} msg/s against {} msg/s delivered: {}\n",
                fmt_num(sub),
                fmt_num(del),
                if sub > del {
                    "it is not what limits delivery"
                } else {
                    "SUBMISSION IS SLOWER THAN DELIVERY"
                }
            ));
        }
        if let Some(c) = &self.crypto {
            out.push_str(&format!(
                "  floor = seal {:.1} + outer check {:.1} + open {:.1} + receipt sign {:.1} + receipt verify {:.1} µs\n",
                c.seal_us, c.outer_check_us, c.open_us, c.receipt_sign_us, c.receipt_verify_us
            ));
            out.push_str(&format!(
                "  (not in the floor: PeerKeys::new {:.1} µs, which the node pays per submission)\n",
                c.peer_keys_new_us
            ));
        }
        if let Some(s) = &self.signing {
            out.push_str(&format!(
                "  identity signature: key file {:.1} µs; PKCS#11 token (SoftHSM2) {}\n",
                s.file_key_us,
                match s.token_us {
                    Some(t) => format!("{t:.1} µs ({:.1}× the key file)", t / s.file_key_us),
                    None => "not measured (apt-get install softhsm2)".into(),
                }
            ));
        }
        let others: Vec<f64> = self
            .throughput_runs
            .iter()
            .chain(&self.audit_off_runs)
            .chain(&self.mesh_runs)
            .map(|r| r.cpu.other_core_pct)
            .collect();
        if !others.is_empty() {
            let other = median_of(others);
            out.push_str(&format!(
                "  other processes used {other:.0}% of a core (median) during the timed windows{}\n",
                if other > 20.0 {
                    ": WARNING, the machine was busy; throughput and latency are understated"
                } else {
                    ""
                }
            ));
        }
        if let Some(a) = &self.attachment {
            out.push_str(&format!(
                "  attachment: {} MiB, median of {} runs (each node fresh); scp: {}\n",
                a.bytes >> 20,
                a.runs.len(),
                match (&a.scp_missing, a.scp_runs.len()) {
                    (Some(why), 0) => format!("NO FIGURE ({why})"),
                    (Some(why), n) => format!("{n} runs, then no figure ({why})"),
                    (None, n) => format!("median of {n} runs, alternating with Comity"),
                }
            ));
        }
        out.push_str(&format!("  total bench time {:.0} s\n", self.elapsed_secs));
        if to_stderr {
            eprint!("{out}");
        } else {
            print!("{out}");
        }
    }

    pub fn json(&self) -> Value {
        let figures: serde_json::Map<String, Value> = self
            .figures()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.map_or(Value::Null, |v| json!(v))))
            .collect();
        let targets: Vec<Value> = self
            .targets()
            .iter()
            .map(|t| {
                json!({
                    "figure": t.key,
                    "label": t.label,
                    "value": t.value,
                    "unit": t.unit,
                    "op": match t.op { Op::AtLeast => ">=", Op::AtMost => "<=" },
                    "limit": t.limit,
                    "pass": t.pass(),
                })
            })
            .collect();
        json!({
            "bench": "comity-bench",
            "version": env!("CARGO_PKG_VERSION"),
            "commit": git(&["rev-parse", "HEAD"]),
            "worktree_dirty": git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
            "machine": self.machine,
            "settings": self.settings,
            "figures": figures,
            "targets": targets,
            "all_pass": self.all_pass(),
            "elapsed_secs": self.elapsed_secs,
            "details": {
                "crypto_floor": self.crypto,
                "signing": self.signing,
                "audit_verify": self.audit_verify,
                "throughput_runs": self.throughput_runs,
                "audit_off_runs": self.audit_off_runs,
                "sustained": self.sustained,
                "latency": self.latency,
                "mesh_runs": self.mesh_runs,
                "idle_peers": self.idle,
                "large_store": self.large_store,
                "attachment": self.attachment,
                "discarded_runs": self.discarded_runs,
            },
        })
    }
}

/// 3,456 / 12.3 / 0.42: thousands separated, a few significant digits.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let n = v.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            format!("-{out}")
        } else {
            out
        }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
