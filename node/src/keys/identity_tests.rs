#![allow(clippy::unwrap_used)]

use comity_config::Config;
use comity_protocol::transition::{IdentityTransition, TransitionStatement};
use comity_protocol::{Identity, Timestamp};

use super::at_start;
use crate::store::Store;

fn config(dir: &std::path::Path) -> Config {
    let text = "[node]\nname = \"AR\"\ncountry = \"AR\"\nlisten = \"127.0.0.1:7401\"\n";
    Config::from_toml_str(text, dir, &|_| None).unwrap()
}

/// A transition from `old` to `new`, effective now.
fn effective_now(old: &Identity, new: &Identity) -> TransitionStatement {
    let now = Timestamp::now();
    IdentityTransition {
        old: old.id(),
        new: new.id(),
        created_at: now,
        effective_after: now,
        reason: "scheduled identity rotation".into(),
    }
    .sign(old, new)
    .unwrap()
}

#[tokio::test]
async fn a_switch_marked_in_the_store_whose_key_file_was_not_replaced_is_finished_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let key_file = config.node.identity_key.clone();
    let old = Identity::generate(Timestamp::now());
    let new = Identity::generate(Timestamp::now());
    comity_config::write_new_key_file(&key_file, &old).unwrap();
    let next = comity_config::next_key_path(&key_file);
    comity_config::write_new_key_file(&next, &new).unwrap();
    let statement = effective_now(&old, &new);
    let store = Store::open(&dir.path().join("store")).unwrap();
    store.set_own_transition(&statement).unwrap();

    // Announced, not switched: the node is its old self.
    let loaded = comity_config::load_key_file(&key_file).unwrap();
    let me = at_start(&config, &store, loaded).unwrap();
    assert_eq!(me.id(), old.id());
    assert!(me.earlier_ids().is_empty());
    assert!(next.exists());

    // Switched (the mark is the point of no return), key file not yet
    // replaced: start finishes it.
    store.set_own_switch(&statement, 5).unwrap();
    let loaded = comity_config::load_key_file(&key_file).unwrap();
    let me = at_start(&config, &store, loaded).unwrap();
    assert_eq!(me.id(), new.id());
    assert_eq!(me.earlier_ids(), &[old.id()]);
    assert!(me.answers_to(&old.id()));
    assert_eq!(
        comity_config::load_key_file(&key_file).unwrap().id(),
        new.id()
    );
    assert!(!next.exists());

    // And again at the next start: nothing more to do.
    let loaded = comity_config::load_key_file(&key_file).unwrap();
    let me = at_start(&config, &store, loaded).unwrap();
    assert_eq!(me.id(), new.id());
    assert_eq!(me.earlier_ids(), &[old.id()]);

    // A crash after the key file was replaced but before the `.next` file
    // went: start removes it (it would block the next announcement).
    comity_config::write_new_key_file(&next, &new).unwrap();
    let loaded = comity_config::load_key_file(&key_file).unwrap();
    let me = at_start(&config, &store, loaded).unwrap();
    assert_eq!(me.id(), new.id());
    assert!(!next.exists());

    // A key file put back to the old key (a rollback: the switch would be
    // finished, but its new key is not at hand), or a stranger's: the log
    // is the new key's now, and start refuses.
    store.set_log_first_key(&old.id()).unwrap();
    let back = Identity::from_key_file(&old.to_key_file()).unwrap();
    assert!(at_start(&config, &store, back).is_err());
    let stranger = Identity::generate(Timestamp::now());
    let e = at_start(&config, &store, stranger).unwrap_err();
    assert!(matches!(e, super::SwitchError::NotThisLog { .. }), "{e}");
    let loaded = comity_config::load_key_file(&key_file).unwrap();
    assert_eq!(at_start(&config, &store, loaded).unwrap().id(), new.id());
}

#[tokio::test]
async fn a_switch_whose_earlier_id_record_outlived_its_mark_still_starts_under_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let old = Identity::generate(Timestamp::now());
    let new = Identity::generate(Timestamp::now());
    let statement = effective_now(&old, &new);
    let store = Store::open(&dir.path().join("store")).unwrap();
    store.set_log_first_key(&old.id()).unwrap();
    store.set_own_transition(&statement).unwrap();
    // The earlier-id record without the mark (as two separate writes of
    // an earlier build could leave them): the log is still the old key's.
    store.set_own_switch(&statement, 5).unwrap();
    store.clear_own_transition().unwrap();
    store.set_own_transition(&statement).unwrap();
    assert_eq!(store.own_switch().unwrap(), None);
    assert_eq!(store.earlier_switches().unwrap().len(), 1);
    let me = at_start(&config, &store, old).unwrap();
    assert_eq!(me.id(), statement.transition.old);
}
