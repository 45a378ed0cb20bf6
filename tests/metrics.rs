//! The opt-in metrics listener: `/healthz` answers, and `/metrics` counts
//! what happened.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use comity_tests::{free_port, http_get, TestNode};

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");

/// The value of the first sample line starting with `prefix`, if any.
fn sample_opt(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The value of a series that must be there.
fn sample(metrics: &str, prefix: &str) -> f64 {
    sample_opt(metrics, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
}

#[test]
fn metrics_follow_traffic_and_health_answers() {
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let mut b = TestNode::new(COMITYD, "Attorney General of Borduria", "BO");
    a.pin(&b);
    b.pin(&a);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    a.start_with_env(&[("COMITY_METRICS_LISTEN", listen.as_str())]);
    b.start();
    a.wait_until(Duration::from_secs(10), "metrics listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let (status, health) = http_get(port, "/healthz");
    assert_eq!(status, 200);
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    let (_, before) = http_get(port, "/metrics");
    // A counter that never counted is absent or zero.
    assert_eq!(
        sample_opt(
            &before,
            "comity_messages_outbound_total{event=\"delivered\"}"
        )
        .unwrap_or(0.0),
        0.0
    );
    a.send_many(&b, 20, 2);
    a.wait_until(Duration::from_secs(30), "delivery", || {
        a.outbox_count("delivered") == 20
    });
    a.wait_until(Duration::from_secs(10), "delivered counter", || {
        sample(
            &http_get(port, "/metrics").1,
            "comity_messages_outbound_total{event=\"delivered\"}",
        ) == 20.0
    });
    let (_, after) = http_get(port, "/metrics");
    assert_eq!(
        sample(&after, "comity_messages_outbound_total{event=\"accepted\"}"),
        20.0
    );
    assert_eq!(
        sample(&after, "comity_delivery_latency_seconds_count"),
        20.0
    );
    assert_eq!(
        sample(
            &after,
            "comity_messages{direction=\"outbound\",kind=\"request\",state=\"delivered\"}"
        ),
        20.0
    );
    assert_eq!(sample(&after, "comity_peers_connected"), 1.0);
    assert_eq!(sample(&after, "comity_queue_depth{peer=\"BO\"}"), 0.0);
    assert!(sample(&after, "comity_audit_entries") > sample(&before, "comity_audit_entries"));
    assert_eq!(sample(&after, "comity_witness_alarms{peer=\"BO\"}"), 0.0);
    assert_eq!(
        sample(&after, "comity_witness_alarms_suppressed{peer=\"BO\"}"),
        0.0
    );
    assert_eq!(sample(&after, "comity_witness_alarms_unacknowledged "), 0.0);
    assert!(after.contains("# TYPE comity_delivery_latency_seconds histogram"));
    // The traffic's checkpoint is offered to the witness (a session frame).
    a.wait_until(Duration::from_secs(10), "a checkpoint offered", || {
        sample(
            &http_get(port, "/metrics").1,
            "comity_checkpoints_offered_total{peer=\"BO\"}",
        ) >= 1.0
    });
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
}
