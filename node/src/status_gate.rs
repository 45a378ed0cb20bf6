//! One status update at a time, in both directions: the check against a
//! message's business history and the append to it happen under one lock,
//! so two updates cannot both follow the same last status — the requested
//! authority's "executed" sent from here and the requester's "withdrawn"
//! arriving from it, say.

use std::sync::Mutex;

use comity_protocol::message::BusinessStatus;
use comity_protocol::{MessageId, NodeId};

use crate::store::{Store, StoreError, Way};

#[derive(Debug, Default)]
pub struct StatusGate(Mutex<()>);

impl StatusGate {
    /// Reads the latest status of `regarding`, lets `check` decide on it,
    /// and if it agrees runs `write` (which appends the new status), all
    /// before another update may read the history.
    pub fn update<T, E: From<StoreError>>(
        &self,
        store: &Store,
        peer: &NodeId,
        regarding: &MessageId,
        way: Way,
        check: impl FnOnce(Option<&BusinessStatus>) -> Result<(), E>,
        write: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let _one = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let history = store.business_history(peer, regarding, way)?;
        check(history.last().map(|e| &e.status))?;
        write()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use comity_protocol::message::{check_status, MessageKind, Side, StatusRefusal};
    use comity_protocol::Timestamp;

    use super::*;
    use crate::store::BusinessEvent;

    #[derive(Debug)]
    enum E {
        Refused(StatusRefusal),
        // Read only by `Debug`, in a failed assertion's message.
        #[allow(dead_code)]
        Store(StoreError),
    }

    impl From<StoreError> for E {
        fn from(e: StoreError) -> Self {
            E::Store(e)
        }
    }

    const PEER: NodeId = NodeId([2; 32]);

    fn event(status: BusinessStatus) -> BusinessEvent {
        BusinessEvent {
            status,
            note: None,
            at: Timestamp(1),
            by: NodeId([1; 32]),
            update: MessageId::random(),
        }
    }

    /// The local update stops between its check and its append (a test
    /// barrier, not a sleep) while the peer's arrives: the peer's must see
    /// the local one's result, so exactly one of them is accepted.
    #[tokio::test]
    async fn a_local_and_an_incoming_final_status_cannot_both_follow_the_same_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = MessageId([9; 16]);
        let registered = BusinessStatus::Registered {
            reference: "R-1".into(),
        };
        store
            .append_business(&PEER, &id, Way::Received, &event(registered))
            .unwrap();
        store
            .append_business(
                &PEER,
                &id,
                Way::Received,
                &event(BusinessStatus::InExecution),
            )
            .unwrap();
        let gate = StatusGate::default();
        let (checked_tx, checked_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (store, gate) = (&store, &gate);
        let (local, incoming) = std::thread::scope(|s| {
            let local = s.spawn(move || {
                gate.update(
                    store,
                    &PEER,
                    &id,
                    Way::Received,
                    |prev| {
                        let r = check_status(
                            MessageKind::Request,
                            Side::Recipient,
                            prev,
                            &BusinessStatus::Executed,
                        )
                        .map_err(E::Refused);
                        checked_tx.send(()).unwrap();
                        go_rx.recv().unwrap();
                        r
                    },
                    || {
                        store
                            .append_business(
                                &PEER,
                                &id,
                                Way::Received,
                                &event(BusinessStatus::Executed),
                            )
                            .map_err(E::from)
                    },
                )
            });
            checked_rx.recv().unwrap();
            let incoming = s.spawn(|| {
                gate.update(
                    store,
                    &PEER,
                    &id,
                    Way::Received,
                    |prev| {
                        check_status(
                            MessageKind::Request,
                            Side::Sender,
                            prev,
                            &BusinessStatus::Withdrawn,
                        )
                        .map_err(E::Refused)
                    },
                    || {
                        store
                            .append_business(
                                &PEER,
                                &id,
                                Way::Received,
                                &event(BusinessStatus::Withdrawn),
                            )
                            .map_err(E::from)
                    },
                )
            });
            // Let the incoming update run as far as it can; it must wait
            // for the local one, which then goes on.
            std::thread::sleep(Duration::from_millis(200));
            go_tx.send(()).unwrap();
            (local.join().unwrap(), incoming.join().unwrap())
        });
        assert!(local.is_ok(), "{local:?}");
        assert!(
            matches!(incoming, Err(E::Refused(StatusRefusal::Transition(_)))),
            "{incoming:?}"
        );
        assert_eq!(
            store
                .business_history(&PEER, &id, Way::Received)
                .unwrap()
                .len(),
            3
        );
    }
}
