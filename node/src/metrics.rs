//! Prometheus `/metrics` and `/healthz` on an opt-in HTTP listener
//! (`node.metrics_listen`, loopback by default in the examples). Counters
//! follow the node's event stream; gauges are read at scrape time.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use comity_protocol::{MessageId, Timestamp};
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

use crate::attachments::{Direction, Progress};
use crate::events::Event;
use crate::node::Node;
use crate::peers::PeerStatus;
use crate::shutdown::ShutdownSignal;
use crate::store::alarms::AlarmCounts;

/// Upper bounds (seconds) of the delivery-latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0,
];
/// Messages whose acceptance time is remembered for the latency histogram.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
struct Counters {
    /// (metric, label pairs) → value.
    counts: BTreeMap<(&'static str, String), u64>,
    accepted_at: HashMap<MessageId, Instant>,
    latency_buckets: [u64; LATENCY_BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
    lagged: u64,
}

impl Counters {
    fn inc(&mut self, metric: &'static str, labels: String) {
        *self.counts.entry((metric, labels)).or_default() += 1;
    }

    fn observe(&mut self, e: &Event) {
        match e {
            Event::Accepted { id, .. } => {
                self.inc(
                    "comity_messages_outbound_total",
                    "event=\"accepted\"".into(),
                );
                if self.accepted_at.len() < MAX_TRACKED {
                    self.accepted_at.insert(*id, Instant::now());
                }
            }
            Event::Sent { .. } => {
                self.inc("comity_messages_outbound_total", "event=\"sent\"".into())
            }
            Event::Delivered { id, .. } => {
                self.inc(
                    "comity_messages_outbound_total",
                    "event=\"delivered\"".into(),
                );
                if let Some(t) = self.accepted_at.remove(id) {
                    let s = t.elapsed().as_secs_f64();
                    self.latency_count += 1;
                    self.latency_sum += s;
                    for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                        if s <= *le {
                            self.latency_buckets[i] += 1;
                        }
                    }
                }
            }
            Event::Failed { id, .. } => {
                self.accepted_at.remove(id);
                self.inc("comity_messages_outbound_total", "event=\"failed\"".into());
            }
            Event::Received { kind, .. } => self.inc(
                "comity_messages_received_total",
                format!("kind=\"{}\"", kind.name()),
            ),
            Event::Rejected { reason, .. } => self.inc(
                "comity_envelopes_rejected_total",
                format!("reason=\"{}\"", reason.name()),
            ),
            Event::PeerRefused { .. } => self.inc("comity_handshakes_refused_total", String::new()),
            Event::PeerConnected { .. } | Event::PeerDisconnected { .. } => {}
        }
    }
}

#[derive(Clone)]
struct MetricsState {
    node: Arc<Node>,
    counters: Arc<Mutex<Counters>>,
}

/// Serves `/metrics` and `/healthz` on `addr` until `stop`.
pub async fn serve(
    node: Arc<Node>,
    addr: SocketAddr,
    mut stop: ShutdownSignal,
) -> std::io::Result<()> {
    let counters = Arc::new(Mutex::new(Counters::default()));
    let mut events = node.subscribe();
    let c = counters.clone();
    let mut events_stop = stop.clone();
    tokio::spawn(async move {
        loop {
            let e = tokio::select! {
                e = events.recv() => e,
                _ = events_stop.triggered() => return,
            };
            match e {
                Ok(e) => c.lock().unwrap_or_else(|p| p.into_inner()).observe(&e),
                Err(RecvError::Lagged(n)) => {
                    c.lock().unwrap_or_else(|p| p.into_inner()).lagged += n
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(MetricsState { node, counters });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "metrics listener is not on a loopback address");
    }
    info!(%addr, "metrics and health listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.triggered().await })
        .await
}

/// 200 when the node can do its job; 503 while its disk is full or its
/// store cannot write (it recovers by itself once the disk has room).
async fn healthz(State(s): State<MetricsState>) -> impl IntoResponse {
    let alarms = s.node.audit().unacknowledged_alarms().unwrap_or(0);
    let id = s.node.id().to_string();
    let storage = s.node.storage();
    let (status, body) = if storage.is_ok() {
        (
            StatusCode::OK,
            serde_json::json!({"status": "ok", "id": id, "alarms": alarms}),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": storage.state, "id": id, "alarms": alarms, "storage": storage}),
        )
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}

async fn metrics(State(s): State<MetricsState>) -> impl IntoResponse {
    let mut out = String::new();
    let node = &s.node;
    {
        let c = s.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = "";
        for ((metric, labels), v) in &c.counts {
            if *metric != last {
                let _ = writeln!(out, "# TYPE {metric} counter");
                last = metric;
            }
            if labels.is_empty() {
                let _ = writeln!(out, "{metric} {v}");
            } else {
                let _ = writeln!(out, "{metric}{{{labels}}} {v}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP comity_delivery_latency_seconds From acceptance to a durable receipt."
        );
        let _ = writeln!(out, "# TYPE comity_delivery_latency_seconds histogram");
        for (le, n) in LATENCY_BUCKETS.iter().zip(c.latency_buckets) {
            let _ = writeln!(
                out,
                "comity_delivery_latency_seconds_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "comity_delivery_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            c.latency_count
        );
        let _ = writeln!(out, "comity_delivery_latency_seconds_sum {}", c.latency_sum);
        let _ = writeln!(
            out,
            "comity_delivery_latency_seconds_count {}",
            c.latency_count
        );
        let _ = writeln!(
            out,
            "# TYPE comity_events_lagged_total counter\ncomity_events_lagged_total {}",
            c.lagged
        );
    }
    // Messages held, by direction, kind and state (read from the store).
    let held = node.message_counts().by;
    let _ = writeln!(out, "# HELP comity_messages Messages held, by direction, kind and state.\n# TYPE comity_messages gauge");
    for ((d, k, st), n) in held {
        let _ = writeln!(
            out,
            "comity_messages{{direction=\"{}\",kind=\"{}\",state=\"{}\"}} {n}",
            d.name(),
            k.name(),
            st.name()
        );
    }
    let peers = node.peers();
    let _ = writeln!(out, "# TYPE comity_queue_depth gauge");
    for p in &peers {
        let _ = writeln!(
            out,
            "comity_queue_depth{{peer=\"{}\"}} {}",
            p.country, p.pending
        );
    }
    let _ = writeln!(
        out,
        "# HELP comity_peer_rejections_suppressed Rejections of a peer's input counted, not recorded (over its budget).\n# TYPE comity_peer_rejections_suppressed gauge"
    );
    for p in &peers {
        let _ = writeln!(
            out,
            "comity_peer_rejections_suppressed{{peer=\"{}\"}} {}",
            p.country, p.rejections_suppressed
        );
    }
    let _ = writeln!(out, "# TYPE comity_peer_over_budget gauge");
    for p in &peers {
        let _ = writeln!(
            out,
            "comity_peer_over_budget{{peer=\"{}\"}} {}",
            p.country,
            u8::from(p.over_budget)
        );
    }
    let connected = peers.iter().filter(|p| p.connected).count();
    let _ = writeln!(
        out,
        "# TYPE comity_peers_connected gauge\ncomity_peers_connected {connected}"
    );
    let _ = writeln!(
        out,
        "# TYPE comity_peers_pinned gauge\ncomity_peers_pinned {}",
        peers.len()
    );
    let h = node.incoming_handshakes();
    let _ = writeln!(
        out,
        "# TYPE comity_incoming_handshakes_in_progress gauge\ncomity_incoming_handshakes_in_progress {}",
        h.in_progress
    );
    let _ = writeln!(
        out,
        "# TYPE comity_incoming_handshakes_turned_away_total counter"
    );
    for (outcome, n) in [
        ("retry", h.retried),
        ("refused", h.refused),
        ("ignored", h.ignored),
    ] {
        let _ = writeln!(
            out,
            "comity_incoming_handshakes_turned_away_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    let audit = node.audit();
    let _ = writeln!(
        out,
        "# TYPE comity_audit_entries gauge\ncomity_audit_entries {}",
        audit.size()
    );
    if let Some(at) = audit.latest_checkpoint_time() {
        let age = Timestamp::now().as_millis().saturating_sub(at.as_millis()) as f64 / 1000.0;
        let _ = writeln!(out, "# TYPE comity_audit_last_checkpoint_age_seconds gauge\ncomity_audit_last_checkpoint_age_seconds {age}");
    }
    let _ = writeln!(
        out,
        "# HELP comity_checkpoints_offered_total Checkpoints offered to each witness since start.\n# TYPE comity_checkpoints_offered_total counter"
    );
    for p in &peers {
        let _ = writeln!(
            out,
            "comity_checkpoints_offered_total{{peer=\"{}\"}} {}",
            p.country,
            audit.offers_to(&p.id)
        );
    }
    {
        let k = node.key_status();
        let age = Timestamp::now()
            .as_millis()
            .saturating_sub(k.created_at.as_millis()) as f64
            / 1000.0;
        let _ = writeln!(
            out,
            "# HELP comity_encryption_key_age_seconds Age of the current encryption key.\n# TYPE comity_encryption_key_age_seconds gauge\ncomity_encryption_key_age_seconds {age}\n# HELP comity_encryption_key_overdue 1 once the encryption key is older than its rotation policy.\n# TYPE comity_encryption_key_overdue gauge\ncomity_encryption_key_overdue {}\n# HELP comity_encryption_keys_superseded Superseded encryption keys still opened (grace period).\n# TYPE comity_encryption_keys_superseded gauge\ncomity_encryption_keys_superseded {}",
            u8::from(k.overdue),
            k.previous.len()
        );
        let _ = writeln!(
            out,
            "# HELP comity_tls_handshake_signatures_total TLS handshakes this node signed with its identity key since it started.\n# TYPE comity_tls_handshake_signatures_total counter\ncomity_tls_handshake_signatures_total {}",
            k.identity.tls_handshake_signatures
        );
        if let Some(n) = k.identity.token_signatures {
            let _ = writeln!(
                out,
                "# HELP comity_token_signatures_total Signatures the PKCS#11 token made for this node since it started.\n# TYPE comity_token_signatures_total counter\ncomity_token_signatures_total {n}"
            );
        }
        if let Some(refused) = k.identity.token_pin_refused {
            let _ = writeln!(
                out,
                "# HELP comity_token_pin_refused 1 once the token refused the PIN: nothing is signed until a restart with the right one.\n# TYPE comity_token_pin_refused gauge\ncomity_token_pin_refused {}",
                u8::from(refused)
            );
        }
    }
    alarm_metrics(&mut out, &audit.alarm_counts().unwrap_or_default(), &peers);
    attachment_metrics(&mut out, node.progress(), &peers);
    storage_metrics(&mut out, node);

    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Attachment transfers under way per peer (country code; `unknown` for a
/// peer no longer pinned) and direction, and attachments finished and read
/// out since start.
fn attachment_metrics(out: &mut String, progress: &Progress, peers: &[PeerStatus]) {
    // (peer, direction) → (transfers, bytes done, bytes left)
    let mut by: BTreeMap<(String, &'static str), (u64, u64, u64)> = BTreeMap::new();
    for p in peers {
        for d in [Direction::Outbound, Direction::Inbound] {
            by.insert((p.country.clone(), d.name()), (0, 0, 0));
        }
    }
    for (key, t) in progress.in_progress() {
        let peer = peers
            .iter()
            .find(|p| p.id == key.peer)
            .map(|p| p.country.clone())
            .unwrap_or_else(|| "unknown".into());
        let e = by.entry((peer, key.direction.name())).or_default();
        e.0 += 1;
        e.1 += t.bytes_done;
        e.2 += t.total.saturating_sub(t.bytes_done);
    }
    let _ = writeln!(out, "# HELP comity_attachment_transfers Attachment transfers under way, per peer and direction.\n# TYPE comity_attachment_transfers gauge");
    for ((peer, d), (n, _, _)) in &by {
        let _ = writeln!(
            out,
            "comity_attachment_transfers{{peer=\"{peer}\",direction=\"{d}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# HELP comity_attachment_bytes_in_progress Plaintext bytes through so far of the attachment transfers under way, per peer and direction.\n# TYPE comity_attachment_bytes_in_progress gauge");
    for ((peer, d), (_, done, _)) in &by {
        let _ = writeln!(
            out,
            "comity_attachment_bytes_in_progress{{peer=\"{peer}\",direction=\"{d}\"}} {done}"
        );
    }
    let _ = writeln!(out, "# HELP comity_attachment_bytes_remaining Plaintext bytes still to go of the attachment transfers under way, per peer and direction.\n# TYPE comity_attachment_bytes_remaining gauge");
    for ((peer, d), (_, _, left)) in &by {
        let _ = writeln!(
            out,
            "comity_attachment_bytes_remaining{{peer=\"{peer}\",direction=\"{d}\"}} {left}"
        );
    }
    let c = progress.counts();
    let _ = writeln!(out, "# HELP comity_attachments_total Attachments sent (verified by the peer), received (verified and durable) and retrieved (read out by an operator) since start.\n# TYPE comity_attachments_total counter");
    for (event, n) in [
        ("sent", c.sent),
        ("received", c.received),
        ("retrieved", c.retrieved),
    ] {
        let _ = writeln!(out, "comity_attachments_total{{event=\"{event}\"}} {n}");
    }
}

/// Whether the store can write, and the data directory's free space.
fn storage_metrics(out: &mut String, node: &Node) {
    let storage = node.storage();
    let _ = writeln!(
        out,
        "# HELP comity_store_writable 0 while the store cannot write (it is reopened once the disk has room).\n# TYPE comity_store_writable gauge\ncomity_store_writable {}",
        u8::from(storage.writable)
    );
    let _ = writeln!(
        out,
        "# HELP comity_disk_full 1 while incoming envelopes are deferred for lack of space.\n# TYPE comity_disk_full gauge\ncomity_disk_full {}",
        u8::from(storage.state == "disk-full")
    );
    if let Some(d) = storage.disk {
        let _ = writeln!(
            out,
            "# TYPE comity_disk_free_bytes gauge\ncomity_disk_free_bytes {}\n# TYPE comity_disk_reserve_bytes gauge\ncomity_disk_reserve_bytes {}",
            d.free_bytes, d.reserve_bytes
        );
    }
}

/// Unacknowledged and suppressed alarms per peer (its country code; alarms
/// about a peer no longer pinned, or unknown, under `peer="unknown"`), and
/// the unacknowledged total.
fn alarm_metrics(out: &mut String, counts: &[AlarmCounts], peers: &[PeerStatus]) {
    let mut by: BTreeMap<String, (u64, u64, u64)> = peers
        .iter()
        .map(|p| (p.country.clone(), (0, 0, 0)))
        .collect();
    for c in counts {
        let label = c
            .peer
            .and_then(|id| peers.iter().find(|p| p.id == id))
            .map(|p| p.country.clone())
            .unwrap_or_else(|| "unknown".into());
        let e = by.entry(label).or_default();
        e.0 += c.unacknowledged;
        e.1 += c.suppressed;
        e.2 += c.restored;
    }
    let _ = writeln!(out, "# HELP comity_witness_alarms Alarms not acknowledged, per peer.\n# TYPE comity_witness_alarms gauge");
    for (cc, (n, _, _)) in &by {
        let _ = writeln!(out, "comity_witness_alarms{{peer=\"{cc}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP comity_witness_alarms_suppressed Alarms not kept (beyond the newest per peer), per peer.\n# TYPE comity_witness_alarms_suppressed gauge");
    for (cc, (_, n, _)) in &by {
        let _ = writeln!(out, "comity_witness_alarms_suppressed{{peer=\"{cc}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP comity_witness_restorations Restorations of the peer's log accepted as its witness (alarms kept, acknowledged by the peer's statement), per peer.\n# TYPE comity_witness_restorations gauge");
    for (cc, (_, _, n)) in &by {
        let _ = writeln!(out, "comity_witness_restorations{{peer=\"{cc}\"}} {n}");
    }
    let total: u64 = by.values().map(|(n, _, _)| n).sum();
    let _ = writeln!(out, "# HELP comity_witness_alarms_unacknowledged Alarms not acknowledged, all peers.\n# TYPE comity_witness_alarms_unacknowledged gauge\ncomity_witness_alarms_unacknowledged {total}");
}
