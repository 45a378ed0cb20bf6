//! The library API driven directly, two nodes in one process: start,
//! submit, follow events, list, shut down, restart on the same store.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comity_config::Config;
use comity_node::store::OutboundState;
use comity_node::{Event, Node};
use comity_protocol::message::BusinessStatus;
use comity_protocol::{Identity, Timestamp};
use comity_tests::{free_port, request_body};

struct Spec {
    dir: tempfile::TempDir,
    identity_text: String,
    port: u16,
}

fn spec() -> Spec {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate(Timestamp::now());
    Spec {
        identity_text: identity.to_key_file().to_string(),
        dir,
        port: free_port(),
    }
}

fn config(me: &Spec, country: &str, peer: &Spec, peer_country: &str) -> (Config, Identity) {
    let identity = Identity::from_key_file(&me.identity_text).unwrap();
    let peer_id = Identity::from_key_file(&peer.identity_text).unwrap().id();
    let text = format!(
        "[node]\nname = \"{country}\"\ncountry = \"{country}\"\nlisten = \"127.0.0.1:{}\"\n\
         [[peer]]\nid = \"{peer_id}\"\naddress = \"127.0.0.1:{}\"\ncountry = \"{peer_country}\"\n",
        me.port, peer.port
    );
    (
        Config::from_toml_str(&text, me.dir.path(), &|_| None).unwrap(),
        identity,
    )
}

async fn next_delivered(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Event {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("event within 20 s")
            .unwrap();
        if matches!(e, Event::Delivered { .. }) {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_deliver_list_and_restart() {
    let (sa, sb) = (spec(), spec());
    let (ca, ia) = config(&sa, "AR", &sb, "BO");
    let (cb, ib) = config(&sb, "BO", &sa, "AR");
    let b_id = ib.id();
    let a = Node::start_with(ca.clone(), ia).await.unwrap();
    let b = Node::start_with(cb, ib).await.unwrap();
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();

    let id = a
        .submit(b_id, request_body("Bank records"), None)
        .await
        .unwrap()
        .id;
    assert_eq!(
        next_delivered(&mut a_events).await,
        Event::Delivered { id, peer: b_id }
    );
    let received = loop {
        match b_events.recv().await.unwrap() {
            Event::Received { id, .. } => break id,
            _ => continue,
        }
    };
    assert_eq!(received, id);

    // Two final statuses from two tasks (as two admin requests are):
    // exactly one may follow the last one. (The window the business gate
    // closes, between reading the history and appending to it, is short:
    // this test did not catch its absence in three runs; it checks the
    // rule, the gate is argued in business.rs.)
    let b = std::sync::Arc::new(b);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let update = |status: BusinessStatus| {
        let (b, start) = (b.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            b.set_status(id, status, None, None).await
        })
    };
    let executed = update(BusinessStatus::Executed);
    let refused = update(BusinessStatus::Refused {
        grounds: "dual criminality".into(),
    });
    let (executed, refused) = (executed.await.unwrap(), refused.await.unwrap());
    assert!(
        executed.is_ok() != refused.is_ok(),
        "{executed:?} {refused:?}"
    );
    let b = std::sync::Arc::into_inner(b).unwrap();

    let outbox = a.outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].state, OutboundState::Delivered);
    assert!(outbox[0].has_receipt);
    assert_eq!(b.inbox().unwrap()[0].id, id);
    assert!(a.peers()[0].connected);

    // Unknown peers are refused before anything is stored.
    let stranger = Identity::generate(Timestamp::now()).id();
    assert!(a.submit(stranger, request_body("x"), None).await.is_err());
    assert_eq!(a.outbox().unwrap().len(), 1);

    a.close().await.unwrap();
    b.close().await.unwrap();

    // The same store opens again with everything in it.
    let a = Node::start_with(ca, Identity::from_key_file(&sa.identity_text).unwrap())
        .await
        .unwrap();
    assert_eq!(a.outbox().unwrap()[0].state, OutboundState::Delivered);
    a.close().await.unwrap();
}

#[tokio::test]
async fn a_configuration_pinning_the_node_itself_is_refused_at_start() {
    let me = spec();
    // Its own id under another country, as a hand-edited file could have it.
    let (config, identity) = config(&me, "AR", &me, "ZZ");
    let id = identity.id();
    match Node::start_with(config, identity).await {
        Err(e @ comity_node::StartError::SelfPinned(got)) => {
            assert_eq!(got, id);
            assert!(e.to_string().contains("own id"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// An identity key held "elsewhere" (as on a token) that can be made to
/// stop signing — everything, as a token that is pulled out, or only the
/// inputs that start with a given prefix.
struct Flaky {
    key: ed25519_dalek::SigningKey,
    failing: Failing,
}

type Failing = std::sync::Arc<std::sync::Mutex<Option<&'static [u8]>>>;

impl comity_protocol::identity::ExternalSigner for Flaky {
    fn node_id(&self) -> comity_protocol::NodeId {
        comity_protocol::NodeId(self.key.verifying_key().to_bytes())
    }
    fn sign(&self, input: &[u8]) -> Result<[u8; 64], comity_protocol::identity::SignError> {
        use ed25519_dalek::Signer as _;
        if let Some(prefix) = *self.failing.lock().unwrap() {
            if input.starts_with(prefix) {
                return Err(comity_protocol::identity::SignError::Token(
                    "CKR_DEVICE_REMOVED".into(),
                ));
            }
        }
        Ok(self.key.sign(input).to_bytes())
    }
    fn describe(&self) -> String {
        "a token that can be pulled out".into()
    }
}

/// `identity` with its key moved to a [`Flaky`] token.
fn on_flaky_token(identity: Identity) -> (Identity, Failing) {
    let failing: Failing = std::sync::Arc::default();
    let token = std::sync::Arc::new(Flaky {
        key: ed25519_dalek::SigningKey::from_bytes(&identity.ed25519_secret().unwrap()),
        failing: failing.clone(),
    });
    let on_token = Identity::with_external_key(
        token,
        identity.encryption_seed(),
        identity.encryption_cert().created_at,
    )
    .unwrap();
    (on_token, failing)
}

fn delivered(n: &Node) -> usize {
    n.outbox()
        .unwrap()
        .iter()
        .filter(|m| m.state == OutboundState::Delivered)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_stops_signing_loses_and_duplicates_nothing() {
    let (sa, sb) = (spec(), spec());
    let (ca, ia) = config(&sa, "AR", &sb, "BO");
    let (cb, ib) = config(&sb, "BO", &sa, "AR");
    let (ib, failing) = on_flaky_token(ib);
    let b_id = ib.id();
    let a = Node::start_with(ca, ia).await.unwrap();
    let b = Node::start_with(cb, ib).await.unwrap();
    let mut a_events = a.subscribe();
    a.submit(b_id, request_body("before"), None).await.unwrap();
    next_delivered(&mut a_events).await;

    // The token stops: B can neither sign a receipt nor a new handshake.
    *failing.lock().unwrap() = Some(b"");
    for i in 0..3 {
        a.submit(b_id, request_body(&format!("while it is out {i}")), None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(delivered(&a), 1, "no receipt without a signature");
    assert_eq!(
        b.inbox().unwrap().len(),
        1,
        "nothing kept that was not receipted"
    );

    // Back: each delivered, once.
    *failing.lock().unwrap() = None;
    for _ in 0..3 {
        next_delivered(&mut a_events).await;
    }
    assert_eq!(delivered(&a), 4);
    assert_eq!(b.inbox().unwrap().len(), 4);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_its_senders_token_could_not_seal_stays_queued() {
    let (sa, sb) = (spec(), spec());
    let (ca, ia) = config(&sa, "AR", &sb, "BO");
    let (cb, ib) = config(&sb, "BO", &sa, "AR");
    let (ia, failing) = on_flaky_token(ia);
    let b_id = ib.id();
    // Submitted before A has ever met B: sealed when the session starts.
    let a = Node::start_with(ca, ia).await.unwrap();
    let mut a_events = a.subscribe();
    let id = a
        .submit(b_id, request_body("sealed late"), None)
        .await
        .unwrap()
        .id;
    // A's token signs handshakes and everything else, but no envelope.
    *failing.lock().unwrap() = Some(comity_protocol::domain::ENVELOPE_SIGNATURE);
    let b = Node::start_with(cb, ib).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = |n: &Node| n.outbox().unwrap()[0].state;
    assert_eq!(state(&a), OutboundState::Queued, "kept, not failed");
    assert!(b.inbox().unwrap().is_empty());

    *failing.lock().unwrap() = None;
    assert_eq!(
        next_delivered(&mut a_events).await,
        Event::Delivered { id, peer: b_id }
    );
    assert_eq!(b.inbox().unwrap().len(), 1);
    a.close().await.unwrap();
    b.close().await.unwrap();
}
