//! Alarms through the real binaries: a pinned peer H (in this process)
//! shows node A a forked checkpoint, A raises an alarm, `comity alarms
//! --json` lists it, `comity alarms ack ID` acknowledges it (once: a second
//! ack is refused), and the acknowledgement is in A's exported audit log.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use comity_config::Limits;
use comity_node::transport::tls::SERVER_NAME;
use comity_node::transport::{client_config, wire, TlsIdentity};
use comity_protocol::audit::checkpoint::{origin_for, sign_checkpoint, Checkpoint};
use comity_protocol::session::{SessionFrame, WitnessRefusal};
use comity_protocol::{Digest, Identity, Timestamp};
use comity_tests::{free_port, TestNode};
use serde_json::Value;
use tokio::time::timeout;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");
const ANSWER: Duration = Duration::from_secs(5);

fn comity_bin() -> PathBuf {
    let p = std::path::Path::new(COMITYD).with_file_name("comity");
    assert!(
        p.exists(),
        "build comity first (cargo build --workspace): {}",
        p.display()
    );
    p
}

fn comity(node: &TestNode, args: &[&str]) -> Output {
    Command::new(comity_bin())
        .arg("--config")
        .arg(node.config_path())
        .args(args)
        .output()
        .unwrap()
}

/// A checkpoint of H's log of `size` entries with root `root`.
fn note(h: &Identity, size: u64, root: u8) -> SessionFrame {
    let note = sign_checkpoint(
        h,
        &Checkpoint {
            origin: origin_for(&h.id()),
            size,
            root: Digest([root; 32]),
        },
    )
    .unwrap();
    SessionFrame::Checkpoint {
        note,
        old_size: if root == 1 { 0 } else { size },
        proof: vec![],
    }
}

/// A's next frame.
async fn read(recv: &mut quinn::RecvStream) -> SessionFrame {
    let f = wire::read_frame(recv, 1 << 20, Duration::from_secs(10));
    timeout(ANSWER, f).await.unwrap().unwrap().unwrap()
}

/// H offers A a checkpoint, then one of the same size with another root.
async fn show_a_fork(h: &Identity, a: &TestNode) {
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let config = client_config(&TlsIdentity::new(h).unwrap(), a.id, &Limits::default()).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], a.port));
    let conn = timeout(
        ANSWER,
        endpoint.connect_with(config, addr, SERVER_NAME).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = SessionFrame::Hello {
        cert: h.encryption_cert().clone(),
    };
    wire::write_frame(&mut send, &hello).await.unwrap();
    assert!(matches!(read(&mut recv).await, SessionFrame::Hello { .. }));
    wire::write_frame(&mut send, &note(h, 4, 1)).await.unwrap();
    let first = read(&mut recv).await;
    assert!(
        matches!(first, SessionFrame::Cosigned { size: 4, .. }),
        "{first:?}"
    );
    wire::write_frame(&mut send, &note(h, 4, 2)).await.unwrap();
    match read(&mut recv).await {
        SessionFrame::CheckpointRefused { reason, .. } => assert_eq!(reason, WitnessRefusal::Fork),
        other => panic!("not refused: {other:?}"),
    }
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
}

#[test]
fn an_alarm_is_listed_and_acknowledged_once_and_the_ack_is_audited() {
    let h = Identity::generate(Timestamp::now());
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    a.pin_as(h.id(), free_port(), "Hostile", "HO");
    a.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(show_a_fork(&h, &a));

    let mut listed = Value::Null;
    a.wait_until(Duration::from_secs(10), "the alarm", || {
        let out = comity(&a, &["alarms", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        listed = serde_json::from_slice(&out.stdout).unwrap();
        !listed["alarms"].as_array().unwrap().is_empty()
    });
    let alarm = &listed["alarms"][0];
    assert_eq!(alarm["peer"], h.id().to_string());
    assert_eq!(alarm["country"], "HO");
    assert_eq!(alarm["kind"], "peer-checkpoint");
    assert_eq!(alarm["reason"], "fork");
    assert!(alarm["acknowledged"].is_null());
    assert!(alarm["text"]
        .as_str()
        .unwrap()
        .contains(&h.id().to_string()));
    let id = alarm["id"].as_u64().unwrap();
    assert_eq!(listed["peers"][0]["unacknowledged"], 1);
    assert_eq!(listed["peers"][0]["suppressed"], 0);

    // The table names it too.
    let out = comity(&a, &["alarms"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&id.to_string()) && table.contains("HO"),
        "{table}"
    );

    let out = comity(&a, &["alarms", "ack", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = a.get("/v1/alarms");
    assert_eq!(after["alarms"][0]["acknowledged"]["by"], "operator");
    assert!(after["alarms"][0]["acknowledged"]["at"].as_u64().is_some());
    assert_eq!(a.get("/v1/node")["audit"]["alarms"], serde_json::json!([]));

    // Once only; an unknown id is not found; a non-number is a usage error.
    let again = comity(&a, &["alarms", "ack", &id.to_string()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already acknowledged"));
    let unknown = comity(&a, &["alarms", "ack", &(id + 1000).to_string()]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(comity(&a, &["alarms", "ack", "x"]).status.code(), Some(2));
    let raw = a
        .client()
        .post_raw(&format!("/v1/alarms/{id}/ack"), b"{}")
        .unwrap();
    assert_eq!(raw.status, 409);
    assert_eq!(raw.json().unwrap()["error"]["code"], "already-acknowledged");
    let raw = a
        .client()
        .post_raw("/v1/alarms/999999999/ack", b"{}")
        .unwrap();
    assert_eq!(raw.status, 404);

    // The acknowledgement is in the exported log, as the operator's.
    let bundle = a.get_text("/v1/audit/export");
    let ack = format!("alarm ack {id}");
    let entry = bundle
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l.to_string().contains(&ack))
        .unwrap_or_else(|| panic!("no {ack:?} in the export"));
    let entry = entry.to_string();
    assert!(
        entry.contains("admin-action") && entry.contains("operator"),
        "{entry}"
    );
    assert_eq!(
        bundle.matches(&ack).count(),
        1,
        "the refused ack is not logged"
    );

    assert!(a.sigterm().success());
}
