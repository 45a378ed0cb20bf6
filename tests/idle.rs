//! Idle means silent: five nodes pinned to each other, after one message
//! each way between every two of them, append nothing to their audit logs
//! and offer no checkpoint once their newest checkpoints are cosigned —
//! and an export afterwards still shows every witness's cosignature and
//! the node's own witness duty.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::Cursor;
use std::time::{Duration, Instant};

use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
use comity_protocol::audit::entry::{Actor, AuditEntry, AuditKind};
use comity_protocol::NodeId;
use comity_tests::{test_settings, TestNode};
use serde_json::Value;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");
const LONG: Duration = Duration::from_secs(60);
/// How long the network may take to settle before the measurement.
const SETTLE: Duration = Duration::from_secs(30);

const COUNTRIES: [(&str, &str); 5] = [
    ("Ministry of Justice of Arcadia", "AR"),
    ("Attorney General of Borduria", "BO"),
    ("Ministry of Justice of Carpania", "CA"),
    ("Central Authority of Dorvania", "DO"),
    ("Ministry of Justice of Elbonia", "EL"),
];

/// What one node's `GET /v1/node` says of its log and its witnesses.
struct AuditView {
    entries: u64,
    latest_checkpoint: u64,
    /// (witness, largest size it cosigned, checkpoints offered to it).
    witnesses: Vec<(String, u64, u64)>,
}

fn audit_view(node: &TestNode) -> AuditView {
    let audit = &node.get("/v1/node")["audit"];
    AuditView {
        entries: audit["entries"].as_u64().unwrap(),
        latest_checkpoint: audit["latest_checkpoint"].as_u64().unwrap(),
        witnesses: audit["witnesses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["country"].as_str().unwrap().to_string(),
                    w["cosigned_size"].as_u64().unwrap(),
                    w["checkpoints_offered"].as_u64().unwrap(),
                )
            })
            .collect(),
    }
}

#[test]
fn five_idle_nodes_append_nothing_and_offer_nothing_once_cosigned() {
    let mut nodes: Vec<TestNode> = COUNTRIES
        .iter()
        .map(|(name, cc)| TestNode::new(COMITYD, name, cc))
        .collect();
    for a in &nodes {
        for b in &nodes {
            if a.id != b.id {
                a.pin(b);
            }
        }
    }
    for n in &mut nodes {
        n.start();
    }
    let interval = Duration::from_secs(test_settings().checkpoint_interval_secs.unwrap().into());

    // One message each way between every two nodes.
    for a in &nodes {
        for b in &nodes {
            if a.id != b.id {
                a.send(b, &format!("from {} to {}", a.country, b.country));
            }
        }
    }
    let peers = (nodes.len() - 1) as u64;
    for n in &nodes {
        n.wait_until(LONG, "all four messages delivered", || {
            n.outbox_count("delivered") == peers && n.inbox_count() == peers
        });
    }

    // Settled: for two intervals no node signed a new checkpoint, and every
    // witness cosigned each node's newest. (Entries may still be newer than
    // it: a node's cosignatures of its peers' checkpoints are not
    // checkpointed on their own.) Today's nodes never settle; then the
    // measurement below is taken all the same, and fails.
    let settle_by = Instant::now() + SETTLE;
    let mut stable_since = Instant::now();
    let mut last: Vec<u64> = Vec::new();
    loop {
        let views: Vec<AuditView> = nodes.iter().map(audit_view).collect();
        let latest: Vec<u64> = views.iter().map(|v| v.latest_checkpoint).collect();
        let cosigned = views.iter().all(|v| {
            v.witnesses.len() == peers as usize
                && v.witnesses
                    .iter()
                    .all(|(_, cosigned, _)| *cosigned >= v.latest_checkpoint)
        });
        if latest != last || !cosigned {
            stable_since = Instant::now();
            last = latest;
        } else if stable_since.elapsed() >= interval * 2 {
            break;
        }
        if Instant::now() >= settle_by {
            eprintln!("not settled after {SETTLE:?}: measuring anyway");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let settled: Vec<AuditView> = nodes.iter().map(audit_view).collect();
    for (n, s) in nodes.iter().zip(&settled) {
        let offers: Vec<u64> = s.witnesses.iter().map(|w| w.2).collect();
        eprintln!(
            "settled {}: {} entries, checkpoint {}, offers per witness so far {offers:?}",
            n.country, s.entries, s.latest_checkpoint
        );
    }

    // Ten checkpoint intervals of nothing.
    std::thread::sleep(interval * 10 + Duration::from_millis(500));
    let later: Vec<AuditView> = nodes.iter().map(audit_view).collect();

    let mut grew = Vec::new();
    let mut offered = Vec::new();
    for ((n, s), l) in nodes.iter().zip(&settled).zip(&later) {
        if l.entries != s.entries {
            grew.push(format!(
                "{}: {} -> {} entries, checkpoint {} -> {}",
                n.country, s.entries, l.entries, s.latest_checkpoint, l.latest_checkpoint
            ));
        }
        for ((cc, _, before), (_, _, after)) in s.witnesses.iter().zip(&l.witnesses) {
            if after != before {
                offered.push(format!(
                    "{} -> {cc}: {} checkpoints offered",
                    n.country,
                    after - before
                ));
            }
        }
    }
    assert!(
        grew.is_empty() && offered.is_empty(),
        "idle for {:?} after settling:\n{}\n{}",
        interval * 10,
        grew.join("\n"),
        offered.join("\n")
    );

    // The evidence is all there: an export of one node verifies with every
    // peer required as witness of its end, and its log records that it
    // cosigned each peer's checkpoint (its witness duty).
    let a = &nodes[0];
    let bundle = a.get_text("/v1/audit/export");
    let others: Vec<NodeId> = nodes[1..].iter().map(|n| n.id).collect();
    let report = verify_bundle(
        Cursor::new(bundle.as_bytes()),
        &VerifyOptions {
            expected_node: Some(a.id),
            required_witnesses: others.clone(),
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap();
    assert!(report.is_valid(), "{:?}", report.findings);
    let duty: Vec<NodeId> = bundle
        .lines()
        .filter(|l| l.starts_with("{\"entry\""))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["fields"].clone()
        })
        .filter(|f| f["kind"] == "checkpoint-cosigned")
        .map(|f| {
            let leaf_peer = f["peer"].as_str().unwrap().parse::<NodeId>().unwrap();
            assert_eq!(f["actor"], "node", "{f}");
            leaf_peer
        })
        .collect();
    for o in &others {
        assert!(duty.contains(o), "no witness-duty entry for {o}");
    }
    // The fields are a copy; the leaf is the truth. Check one.
    let first = bundle
        .lines()
        .find(|l| l.contains("checkpoint-cosigned"))
        .unwrap();
    let v: Value = serde_json::from_str(first).unwrap();
    let leaf = base64_decode(v["leaf"].as_str().unwrap());
    let e = AuditEntry::from_leaf(&leaf).unwrap();
    assert_eq!(
        (e.kind, e.actor),
        (AuditKind::CheckpointCosigned, Actor::Node)
    );

    for n in &mut nodes {
        assert!(n.sigterm().success());
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
