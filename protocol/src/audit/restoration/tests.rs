use super::*;
use crate::audit::merkle::{leaf_hash, MemoryTree};

fn me() -> Identity {
    Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0))
}

fn tree(leaves: &[&str]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in leaves {
        t.push(leaf_hash(l.as_bytes()));
    }
    t
}

fn checkpoint(node: &NodeId, t: &MemoryTree, size: u64) -> Checkpoint {
    Checkpoint {
        origin: origin_for(node),
        size,
        root: t.root_at(size).unwrap(),
    }
}

/// The witness saw `seen` (entries a..f, cosigned at 4 and 6); the
/// restored log is a..d, then its restoration entry `R` (size 5).
struct Case {
    id: Identity,
    seen: MemoryTree,
    restored: MemoryTree,
    statement: RestorationStatement,
}

fn case(restored_size: u64) -> Case {
    let id = me();
    let seen = tree(&["a", "b", "c", "d", "e", "f"]);
    let mut restored = tree(&["a", "b", "c", "d", "e", "f"][..restored_size as usize]);
    restored.push(leaf_hash(b"R"));
    let statement = RestorationStatement {
        node: id.id(),
        restored_size,
        restored_root: restored.root_at(restored_size).unwrap(),
        backup_time: Timestamp(1000),
        restored_at: Timestamp(2000),
        continuation_size: restored.size(),
        continuation_root: restored.root(),
    };
    Case {
        id,
        seen,
        restored,
        statement,
    }
}

impl Case {
    fn proof(&self) -> Vec<Digest> {
        self.restored
            .consistency_proof(self.statement.restored_size, self.restored.size())
            .unwrap()
    }

    fn check(&self, record: WitnessRecord<'_>) -> Result<Accepted, RestorationError> {
        check_restoration(
            &self.statement,
            &self.statement.continuation(),
            &self.proof(),
            record,
        )
    }
}

#[test]
fn an_honest_restoration_is_accepted_with_the_root_checked_where_it_can_be() {
    let c = case(4);
    let last = checkpoint(&c.id.id(), &c.seen, 6);
    // It cosigned size 4 too: the root is compared.
    let record = WitnessRecord {
        last: Some(&last),
        root_at_restored_size: Some(c.seen.root_at(4).unwrap()),
        accepted: None,
    };
    assert_eq!(
        c.check(record),
        Ok(Accepted::New {
            witnessed_size: 6,
            witnessed_root: last.root,
            root_checked: true
        })
    );
    // It knows only size 6: accepted, saying the root was not compared.
    let record = WitnessRecord {
        last: Some(&last),
        ..Default::default()
    };
    assert!(matches!(
        c.check(record),
        Ok(Accepted::New {
            root_checked: false,
            ..
        })
    ));
    // Presented again after it was accepted: a repeat, whatever came since.
    let record = WitnessRecord {
        last: Some(&last),
        accepted: Some(&c.statement),
        ..Default::default()
    };
    assert_eq!(c.check(record), Ok(Accepted::Repeated));
}

#[test]
fn a_statement_verifies_only_with_the_pinned_key_and_unchanged() {
    let c = case(4);
    let sig = c.statement.sign(&c.id).unwrap();
    assert_eq!(c.statement.verify(&c.id.id(), &sig), Ok(()));
    let other = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0));
    // Signed by another key, though naming the node.
    assert_eq!(
        c.statement
            .verify(&c.id.id(), &c.statement.sign(&other).unwrap()),
        Err(RestorationError::BadSignature)
    );
    // Checked against another peer's key.
    assert_eq!(
        c.statement.verify(&other.id(), &sig),
        Err(RestorationError::WrongNode)
    );
    let mut changed = c.statement.clone();
    changed.restored_size = 3;
    assert_eq!(
        changed.verify(&c.id.id(), &sig),
        Err(RestorationError::BadSignature)
    );
    let mut bad = sig;
    bad[10] ^= 1;
    assert_eq!(
        c.statement.verify(&c.id.id(), &bad),
        Err(RestorationError::BadSignature)
    );
    assert_eq!(
        c.statement.signing_input().len(),
        domain::RESTORATION_STATEMENT_SIGNATURE.len() + RESTORATION_STATEMENT_BYTES
    );
}

#[test]
fn a_statement_beyond_what_the_witness_cosigned_is_refused_as_ahead() {
    let c = case(4);
    let last = checkpoint(&c.id.id(), &c.seen, 3);
    let record = WitnessRecord {
        last: Some(&last),
        ..Default::default()
    };
    assert_eq!(
        c.check(record),
        Err(RestorationError::Ahead {
            restored: 4,
            witnessed: 3
        })
    );
    assert_eq!(
        c.check(WitnessRecord::default()),
        Err(RestorationError::Ahead {
            restored: 4,
            witnessed: 0
        })
    );
    assert!(!RestorationError::Ahead {
        restored: 4,
        witnessed: 3
    }
    .is_evidence());
}

#[test]
fn a_root_contradicting_a_cosigned_checkpoint_is_a_fork() {
    // The restored log differs from the witnessed one at entry 3.
    let id = me();
    let seen = tree(&["a", "b", "c", "d", "e", "f"]);
    let mut restored = tree(&["a", "b", "X", "d"]);
    restored.push(leaf_hash(b"R"));
    let statement = RestorationStatement {
        node: id.id(),
        restored_size: 4,
        restored_root: restored.root_at(4).unwrap(),
        backup_time: Timestamp(1000),
        restored_at: Timestamp(2000),
        continuation_size: 5,
        continuation_root: restored.root(),
    };
    let proof = restored.consistency_proof(4, 5).unwrap();
    let last = checkpoint(&id.id(), &seen, 6);
    let record = WitnessRecord {
        last: Some(&last),
        root_at_restored_size: Some(seen.root_at(4).unwrap()),
        accepted: None,
    };
    let e = check_restoration(&statement, &statement.continuation(), &proof, record);
    assert_eq!(e, Err(RestorationError::Fork { size: 4 }));
    assert!(e.unwrap_err().is_evidence());
    // At exactly the size last cosigned, the stored checkpoint decides.
    let last = checkpoint(&id.id(), &seen, 4);
    let record = WitnessRecord {
        last: Some(&last),
        ..Default::default()
    };
    assert_eq!(
        check_restoration(&statement, &statement.continuation(), &proof, record),
        Err(RestorationError::Fork { size: 4 })
    );
}

#[test]
fn a_second_rollback_behind_an_accepted_restoration_is_refused() {
    let first = case(4);
    // The witness accepted `first` (continued at 5) and cosigned up to 6
    // since; a second statement restores to 3, behind 5.
    let second = case(3);
    let last = checkpoint(&first.id.id(), &first.seen, 6);
    let record = WitnessRecord {
        last: Some(&last),
        root_at_restored_size: None,
        accepted: Some(&first.statement),
    };
    let e = second.check(record);
    assert_eq!(
        e,
        Err(RestorationError::RollsBackAgain {
            restored: 3,
            previous: 5,
            previous_at: Timestamp(2000)
        })
    );
    assert!(e.unwrap_err().is_evidence());
}

#[test]
fn a_bad_proof_or_a_continuation_that_is_not_the_statement_is_refused() {
    let c = case(4);
    let last = checkpoint(&c.id.id(), &c.seen, 6);
    let record = WitnessRecord {
        last: Some(&last),
        ..Default::default()
    };
    let mut proof = c.proof();
    proof[0].0[0] ^= 1;
    assert!(matches!(
        check_restoration(&c.statement, &c.statement.continuation(), &proof, record),
        Err(RestorationError::Inconsistent { .. })
    ));
    let mut other = c.statement.continuation();
    other.size += 1;
    assert_eq!(
        check_restoration(&c.statement, &other, &c.proof(), record),
        Err(RestorationError::ContinuationMismatch)
    );
    let mut s = c.statement.clone();
    s.continuation_size = s.restored_size;
    assert!(matches!(
        check_restoration(&s, &s.continuation(), &[], record),
        Err(RestorationError::NotAContinuation { .. })
    ));
}

/// Size 0 has one root everyone knows: a statement naming another is not
/// "not comparable" but false.
#[test]
fn a_restoration_to_size_zero_is_checked_against_the_empty_root() {
    let mut c = case(0);
    let last = checkpoint(&c.id.id(), &c.seen, 6);
    let record = WitnessRecord {
        last: Some(&last),
        ..WitnessRecord::default()
    };
    assert_eq!(
        c.check(record),
        Ok(Accepted::New {
            witnessed_size: 6,
            witnessed_root: last.root,
            root_checked: true,
        })
    );
    c.statement.restored_root = Digest([7; 32]);
    assert_eq!(c.check(record), Err(RestorationError::Fork { size: 0 }));
}

/// Sizes at the ends of the range do not panic and are refused.
#[test]
fn extreme_sizes_are_refused_without_panic() {
    let c = case(4);
    let last = checkpoint(&c.id.id(), &c.seen, 6);
    let record = WitnessRecord {
        last: Some(&last),
        ..WitnessRecord::default()
    };
    for (restored, continuation) in [(u64::MAX, u64::MAX), (u64::MAX, 0), (5, 5), (5, 4)] {
        let mut s = c.statement.clone();
        s.restored_size = restored;
        s.continuation_size = continuation;
        assert!(matches!(
            check_restoration(&s, &s.continuation(), &c.proof(), record),
            Err(RestorationError::NotAContinuation { .. })
        ));
    }
    // Beyond the witness, with a huge continuation: ahead, no allocation.
    let mut s = c.statement.clone();
    s.restored_size = u64::MAX - 1;
    s.continuation_size = u64::MAX;
    assert!(matches!(
        check_restoration(&s, &s.continuation(), &[], record),
        Err(RestorationError::Ahead { .. })
    ));
    // Within it, with a huge continuation and a long junk proof: inconsistent.
    let mut s = c.statement.clone();
    s.continuation_size = u64::MAX;
    let junk = vec![Digest([1; 32]); 64];
    assert!(matches!(
        check_restoration(&s, &s.continuation(), &junk, record),
        Err(RestorationError::Inconsistent { .. })
    ));
}
