//! A pinned peer's identity transition, as node A hears it over real TLS
//! handshakes on 127.0.0.1: peer H (in this process) presents statements
//! in its certificate. A forged one is refused and counted (its presenter
//! proved nothing, so it is not audited); the genuine one
//! is pending for the notice period, audited and alarmed once, shown by
//! `comity peer list`; a second successor named by the same key is refused;
//! the operator accepts, then refuses it, and the refused successor is
//! never taken again; after `peer repin`, a statement the cut-out key signs
//! is refused although both its signatures verify.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use comity_node::transport::{wire, TlsIdentity};
use comity_protocol::session::SessionFrame;
use comity_protocol::transition::{IdentityTransition, TransitionStatement};
use comity_protocol::{Identity, Timestamp};
use comity_tests::peer::try_connect_as;
use comity_tests::{free_port, succeeded, TestNode};
use serde_json::Value;
use tokio::time::timeout;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");
const HOUR_MS: u64 = 3_600_000;

fn comity(node: &TestNode, args: &[&str]) -> Output {
    // Built beside comityd by `cargo build --workspace`.
    node.cli(
        &std::path::Path::new(COMITYD).with_file_name("comity"),
        args,
    )
}

fn statement(old: &Identity, new: &Identity, reason: &str) -> TransitionStatement {
    let now = Timestamp::now();
    IdentityTransition {
        old: old.id(),
        new: new.id(),
        created_at: now,
        effective_after: Timestamp(now.0 + HOUR_MS),
        reason: reason.into(),
    }
    .sign(old, new)
    .unwrap()
}

/// `h` dials `a` presenting `statement` in its certificate: whether the
/// handshake was accepted.
fn present(
    rt: &tokio::runtime::Runtime,
    h: &Identity,
    s: &TransitionStatement,
    a: &TestNode,
) -> bool {
    rt.block_on(async {
        let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let tls = TlsIdentity::new(h).unwrap();
        tls.present(h, Some(s)).unwrap();
        // With TLS 1.3 the client may finish its side before A checked
        // its certificate: accepted means A answers a hello.
        let accepted = match try_connect_as(&endpoint, &tls, a).await {
            Ok(conn) => {
                let talk = async {
                    let (mut send, mut recv) = conn.open_bi().await.ok()?;
                    let hello = SessionFrame::Hello {
                        cert: h.encryption_cert().clone(),
                    };
                    wire::write_frame(&mut send, &hello).await.ok()?;
                    wire::read_frame(&mut recv, 1 << 20, Duration::from_secs(5))
                        .await
                        .ok()?
                };
                let answered = timeout(Duration::from_secs(5), talk).await.ok().flatten();
                conn.close(0u32.into(), b"done");
                matches!(answered, Some(SessionFrame::Hello { .. }))
            }
            Err(_) => false,
        };
        endpoint.wait_idle().await;
        accepted
    })
}

/// A's audit entries of kind identity-transition.
fn transition_entries(a: &TestNode) -> Vec<String> {
    a.get_text("/v1/audit/export")
        .lines()
        .filter(|l| l.contains("identity-transition"))
        .map(str::to_string)
        .collect()
}

/// A has looked at the statement: its log says so (the audit export waits
/// for witnesses, so it is read once, at the end).
fn wait_for_log(a: &TestNode, what: &str, needle: &str) {
    a.wait_until(Duration::from_secs(10), what, || {
        a.log().lines().any(|l| l.contains(needle))
    });
}

fn rotation_of_ho(a: &TestNode) -> Value {
    let peers = a.get("/v1/peers");
    peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["country"] == "HO")
        .unwrap()["rotation"]
        .clone()
}

#[test]
fn a_peers_transition_is_checked_held_for_notice_decided_by_the_operator_and_refused_once_cut_out()
{
    let h = Identity::generate(Timestamp::now());
    let h2 = Identity::generate(Timestamp::now());
    let thief = Identity::generate(Timestamp::now());
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    a.pin_as(h.id(), free_port(), "Hostile", "HO");
    a.start();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Forged: the new key's signature where the old key's belongs. H is
    // pinned, so the handshake goes on; the statement is refused.
    let genuine = statement(&h, &h2, "scheduled identity rotation");
    let mut forged = genuine.clone();
    forged.old_signature = forged.new_signature;
    assert!(present(&rt, &h, &forged, &a));
    a.wait_until(
        Duration::from_secs(10),
        "the forged statement counted",
        || a.get("/v1/node")["transition_statements_unverified"] == 1,
    );
    assert!(rotation_of_ho(&a).is_null(), "nothing pending");

    // Genuine: pending for the 72 h notice, audited and alarmed once.
    assert!(present(&rt, &h, &genuine, &a));
    wait_for_log(
        &a,
        "the statement announced",
        "announced an identity transition",
    );
    let r = rotation_of_ho(&a);
    assert_eq!(r["new"], h2.id().to_string());
    assert_eq!(r["reason"], "scheduled identity rotation");
    let received = r["received_at"].as_u64().unwrap();
    assert_eq!(r["applies_at"].as_u64().unwrap(), received + 72 * HOUR_MS);
    assert!(present(&rt, &h, &genuine, &a), "presented again");
    let list = succeeded(&comity(&a, &["peer", "list"]));
    assert!(list.contains("HO: ROTATION PENDING to"), "{list}");
    let alarms = succeeded(&comity(&a, &["alarms", "--json"]));
    assert!(alarms.contains("peer-transition"), "{alarms}");

    // The same key names a second successor: refused as a conflict, and
    // the first stays pending.
    assert!(present(&rt, &h, &statement(&h, &thief, "other"), &a));
    wait_for_log(&a, "the conflict refused", "two successors");
    assert_eq!(rotation_of_ho(&a)["new"], h2.id().to_string());

    // The operator accepts (after a call): the notice ends; it applies
    // once effective.
    succeeded(&comity(
        &a,
        &[
            "peer",
            "accept-rotation",
            "HO",
            "--reason",
            "new id read out by phone",
        ],
    ));
    succeeded(&comity(
        &a,
        &[
            "peer",
            "accept-rotation",
            "HO",
            "--reason",
            "new id read out by phone",
        ],
    ));
    let r = rotation_of_ho(&a);
    assert_eq!(
        r["applies_at"].as_u64().unwrap(),
        genuine.transition.effective_after.0
    );

    // Then refuses it after all: the successor is never taken again.
    succeeded(&comity(
        &a,
        &[
            "peer",
            "refuse-rotation",
            "HO",
            "--reason",
            "call-back failed",
        ],
    ));
    assert!(rotation_of_ho(&a).is_null());
    assert!(present(&rt, &h, &genuine, &a));
    wait_for_log(
        &a,
        "the refused successor refused",
        "refused or repinned away from",
    );
    assert!(rotation_of_ho(&a).is_null());
    let none = comity(
        &a,
        &[
            "peer",
            "accept-rotation",
            "HO",
            "--reason",
            "new id read out by phone",
        ],
    );
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no identity transition"));

    // H's key is presumed stolen: A repins HO to K. The old key then signs
    // a transition to a key of the thief's: both signatures verify, the
    // handshake is refused, and so is the statement.
    let k = Identity::generate(Timestamp::now());
    let kid = k.id().to_string();
    succeeded(&comity(
        &a,
        &[
            "peer",
            "repin",
            "HO",
            "--id",
            &kid,
            "--reason",
            "key stolen, call of today",
        ],
    ));
    let stolen = statement(&h, &thief, "all is well");
    assert!(!present(&rt, &h, &stolen, &a), "the cut-out key is refused");
    wait_for_log(
        &a,
        "the cut-out key's statement refused",
        "signed by a key cut out by a repin",
    );
    assert!(rotation_of_ho(&a).is_null());

    // Each in A's audit log, the announcement once.
    let entries = transition_entries(&a);
    for needle in [
        "two successors",
        "accepted HO's identity transition",
        "call-back failed",
        "refused or repinned away from",
        "signed by a key cut out by a repin",
    ] {
        assert!(
            entries.iter().any(|l| l.contains(needle)),
            "no entry with {needle:?}: {entries:#?}"
        );
    }
    assert!(
        !entries.iter().any(|l| l.contains("does not verify")),
        "a forged statement is not audited: {entries:#?}"
    );
    for (once, needle) in [("announced", "announced"), ("accepted", "accepted HO's")] {
        let n = entries.iter().filter(|l| l.contains(needle)).count();
        assert_eq!(n, 1, "{once} once: {entries:#?}");
    }
}
