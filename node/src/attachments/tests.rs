//! The attachment store without a network: copy-in, chunk reads, the
//! receiver's writes and crash states, retrieval.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use comity_protocol::attachment::{
    AttachmentLimits, ChunkError, ChunkTable, InvalidAttachment, Opener, SMALL_CHUNK_BYTES,
};
use comity_protocol::Digest;
use sha2::{Digest as _, Sha256};

use super::receive::{CrashAt, Step};
use super::test_support::*;
use super::*;

const CHUNK: u64 = SMALL_CHUNK_BYTES as u64;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn dir() -> (tempfile::TempDir, AttachmentDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = AttachmentDir::open(tmp.path()).unwrap();
    (tmp, dir)
}

fn entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn copy_in_at_chunk_boundaries_opens_with_the_protocol_opener() {
    let (_tmp, dir) = dir();
    for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * MIB, 5 * MIB + 17] {
        let bytes = data(size, 1);
        let copied = copy(&dir, &bytes);
        assert_eq!(copied.sealed.manifest.size, size);
        assert_eq!(
            copied.sealed.manifest.sha256,
            Digest(Sha256::digest(&bytes).into()),
            "size {size}"
        );
        assert_eq!(mode(&copied.path), 0o600);
        let checked = checked(&copied.sealed);
        let stored = StoredAttachment::open(&copied.path, &copied.sealed.manifest).unwrap();
        let table = ChunkTable::verify(&checked, &stored.table_bytes().unwrap()).unwrap();
        let mut opener = Opener::new(&checked, table).unwrap();
        let mut plain = Vec::new();
        for i in 0..stored.chunk_count() {
            let opened = opener.open_chunk(i, stored.read_chunk(i).unwrap()).unwrap();
            assert_eq!(opened.complete, i + 1 == stored.chunk_count());
            plain.extend_from_slice(&opened.plaintext);
        }
        assert!(opener.is_complete(), "size {size}");
        assert_eq!(plain, bytes, "size {size}");
        // Chunk i is found by a seek, in any order.
        if stored.chunk_count() > 2 {
            let last = stored.chunk_count() - 1;
            assert_eq!(
                stored.read_chunk(last).unwrap().len() as u64,
                (size - last * CHUNK) + 16
            );
        }
    }
    for d in ["", "staging", "sent", "received"] {
        assert_eq!(mode(&dir.root().join(d)), 0o700, "{d}");
    }
    assert!(entries(&dir.root().join("staging")).is_empty());
}

/// Counts what is read, to prove a refusal came before any reading.
struct Counting<'a>(&'a [u8], usize);

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n;
        Ok(n)
    }
}

#[test]
fn a_file_larger_than_the_free_space_is_refused_before_reading() {
    let (_tmp, dir) = dir();
    let bytes = data(3 * MIB, 2);
    let space = FixedSpace::free(&[3 * MIB]); // 1 MiB of it is the reserve
    let mut source = Counting(&bytes, 0);
    let e = dir
        .copy_in(
            &space,
            &AttachmentLimits::default(),
            "big.bin",
            "application/octet-stream",
            bytes.len() as u64,
            &mut source,
        )
        .unwrap_err();
    assert!(matches!(e, AttachmentError::NoRoom { .. }), "{e}");
    assert!(e.is_retriable());
    assert!(e.to_string().contains("not enough free space"), "{e}");
    assert_eq!(source.1, 0, "nothing read");
    assert!(entries(&dir.root().join("sent")).is_empty());
    assert!(entries(&dir.root().join("staging")).is_empty());
}

#[test]
fn space_running_out_during_the_copy_stops_it_and_leaves_nothing() {
    let (_tmp, dir) = dir();
    let bytes = data(2 * MIB, 3);
    // Plenty at first and for four chunks, then gone.
    let space = FixedSpace::free(&[100 * MIB, 100 * MIB, 100 * MIB, 100 * MIB, 100 * MIB, MIB]);
    let e = dir
        .copy_in(
            &space,
            &AttachmentLimits::default(),
            "x.bin",
            "application/octet-stream",
            bytes.len() as u64,
            &bytes[..],
        )
        .unwrap_err();
    assert!(matches!(e, AttachmentError::NoRoom { .. }), "{e}");
    assert!(entries(&dir.root().join("sent")).is_empty());
    assert!(entries(&dir.root().join("staging")).is_empty());
}

#[test]
fn a_source_shorter_or_longer_than_declared_is_refused() {
    let (_tmp, dir) = dir();
    let bytes = data(CHUNK + 5, 4);
    let limits = AttachmentLimits::default();
    let space = FixedSpace::plenty();
    let short = dir
        .copy_in(&space, &limits, "a", "text/plain", CHUNK + 6, &bytes[..])
        .unwrap_err();
    assert!(
        matches!(short, AttachmentError::SourceShort { expected, got } if expected == CHUNK + 6 && got == CHUNK + 5),
        "{short}"
    );
    let long = dir
        .copy_in(&space, &limits, "a", "text/plain", CHUNK + 4, &bytes[..])
        .unwrap_err();
    assert!(matches!(long, AttachmentError::SourceLong { .. }), "{long}");
    let limits = AttachmentLimits {
        max_attachment_bytes: CHUNK,
        ..limits
    };
    let big = dir
        .copy_in(&space, &limits, "a", "text/plain", CHUNK + 5, &bytes[..])
        .unwrap_err();
    assert!(
        matches!(
            big,
            AttachmentError::Invalid(InvalidAttachment::TooLarge { .. })
        ),
        "{big}"
    );
    assert!(!big.is_retriable());
    let bad_name = dir
        .copy_in(
            &space,
            &AttachmentLimits::default(),
            "../../etc/passwd",
            "text/plain",
            1,
            &b"x"[..],
        )
        .unwrap_err();
    assert!(
        matches!(bad_name, AttachmentError::Invalid(_)),
        "{bad_name}"
    );
    assert!(entries(&dir.root().join("sent")).is_empty());
    assert!(entries(&dir.root().join("staging")).is_empty());
}

#[test]
fn a_copy_in_left_in_staging_is_removed_on_open() {
    let (tmp, dir) = dir();
    fs::write(dir.root().join("staging/0011.part"), b"half").unwrap();
    let dir = AttachmentDir::open(tmp.path()).unwrap();
    assert!(entries(&dir.root().join("staging")).is_empty());
}

/// A receiver of `sent` at `key(0)`, fed by the sender's stored file.
fn start(dir: &AttachmentDir, sent: &CopiedIn) -> (StoredAttachment, Receiving) {
    let stored = StoredAttachment::open(&sent.path, &sent.sealed.manifest).unwrap();
    let Incoming::NotStarted(n) = dir.incoming(&key(0), &checked(&sent.sealed)).unwrap() else {
        panic!("nothing on disk yet");
    };
    let r = n
        .begin(&stored.table_bytes().unwrap(), &FixedSpace::plenty())
        .unwrap();
    (stored, r)
}

fn partial(dir: &AttachmentDir, sent: &CopiedIn) -> Receiving {
    match dir.incoming(&key(0), &checked(&sent.sealed)).unwrap() {
        Incoming::Partial(r) => *r,
        other => panic!("expected a partial transfer, got {other:?}"),
    }
}

fn part_len(dir: &AttachmentDir) -> u64 {
    fs::metadata(dir.received_path(&key(0), ".part"))
        .unwrap()
        .len()
}

/// Feeds every chunk from `r`'s next one to the end.
fn finish(stored: &StoredAttachment, r: &mut Receiving) -> Received {
    loop {
        let i = r.next_chunk().unwrap();
        match r.accept_durably(i, stored.read_chunk(i).unwrap()).unwrap() {
            Accepted::Next(n) => assert_eq!(n, i + 1),
            Accepted::Complete(done) => return done,
        }
    }
}

fn plaintext(done: &Received) -> Vec<u8> {
    let mut out = Vec::new();
    PlaintextReader::new(done.open().unwrap(), done.attachment())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn chunks_in_order_complete_and_match() {
    let (_tmp, dir) = dir();
    let bytes = data(5 * CHUNK + 100, 5);
    let sent = copy(&dir, &bytes);
    let (stored, mut r) = start(&dir, &sent);
    assert_eq!(r.next_chunk(), Some(0));
    let done = finish(&stored, &mut r);
    // The receiver's file is the sender's, byte for byte.
    assert_eq!(
        fs::read(done.path()).unwrap(),
        fs::read(&sent.path).unwrap()
    );
    assert_eq!(mode(done.path()), 0o600);
    assert_eq!(mode(&dir.received_dir(&key(0))), 0o700);
    assert_eq!(plaintext(&done), bytes);
    assert!(dir
        .incoming(&key(0), &checked(&sent.sealed))
        .unwrap()
        .is_complete());
    // Only the complete file is left.
    assert_eq!(entries(&dir.received_dir(&key(0))), vec!["0".to_string()]);
}

#[test]
fn a_refused_chunk_writes_nothing_and_keeps_the_resume_point() {
    let (_tmp, dir) = dir();
    let bytes = data(4 * CHUNK, 6);
    let sent = copy(&dir, &bytes);
    let other = copy(&dir, &data(4 * CHUNK, 7));
    let other = StoredAttachment::open(&other.path, &other.sealed.manifest).unwrap();
    let (stored, mut r) = start(&dir, &sent);
    r.accept_durably(0, stored.read_chunk(0).unwrap()).unwrap();
    let len = part_len(&dir);
    let mut flipped = stored.read_chunk(1).unwrap();
    flipped[10] ^= 1;
    let refusals = [
        (1, flipped),
        (1, other.read_chunk(1).unwrap()),
        (2, stored.read_chunk(2).unwrap()),
        (1, stored.read_chunk(1).unwrap()[..100].to_vec()),
    ];
    for (i, c) in refusals {
        let e = r.accept_durably(i, c).unwrap_err();
        assert!(matches!(e, AttachmentError::Chunk(_)), "{e}");
        assert_eq!(r.next_chunk(), Some(1));
        assert_eq!(part_len(&dir), len, "nothing written");
    }
    let e = r
        .accept_durably(1, other.read_chunk(1).unwrap())
        .unwrap_err();
    assert!(
        matches!(e, AttachmentError::Chunk(ChunkError::BadTag { index: 1 })),
        "{e}"
    );
    assert_eq!(partial(&dir, &sent).next_chunk(), Some(1));
    let done = finish(&stored, &mut r);
    assert_eq!(plaintext(&done), bytes);
}

/// A crash at `step` while chunk `at` is written: reopening resumes at
/// `resumes` with the file cut to exactly the chunks before it, and the
/// transfer then completes with the same bytes.
fn crash_and_resume(chunks: u64, at: u64, step: Step, resumes: u64) {
    let (_tmp, dir) = dir();
    let bytes = data(chunks * CHUNK - 3, 8);
    let sent = copy(&dir, &bytes);
    let (stored, mut r) = start(&dir, &sent);
    for i in 0..at {
        r.accept_durably(i, stored.read_chunk(i).unwrap()).unwrap();
    }
    r.crash = CrashAt(Some(step));
    let e = r
        .accept_durably(at, stored.read_chunk(at).unwrap())
        .unwrap_err();
    assert!(matches!(e, AttachmentError::SimulatedCrash), "{e}");
    drop(r);
    let mut r = partial(&dir, &sent);
    assert_eq!(r.next_chunk(), Some(resumes), "{step:?} at chunk {at}");
    assert_eq!(
        part_len(&dir),
        resumes * (CHUNK + 16),
        "{step:?} at chunk {at}"
    );
    let done = finish(&stored, &mut r);
    assert_eq!(plaintext(&done), bytes);
}

#[test]
fn a_crash_between_any_two_steps_of_a_chunk_resumes_at_that_chunk() {
    for step in [Step::ChunkWritten, Step::ChunkSynced, Step::ResumeWritten] {
        crash_and_resume(5, 0, step, 0);
        crash_and_resume(5, 2, step, 2);
    }
}

#[test]
fn a_crash_before_the_final_rename_resumes_at_the_last_chunk() {
    for step in [Step::ChunkWritten, Step::TableAppended, Step::FinalSynced] {
        crash_and_resume(4, 3, step, 3);
    }
}

#[test]
fn a_crash_after_the_final_rename_is_complete() {
    let (_tmp, dir) = dir();
    let bytes = data(2 * CHUNK, 9);
    let sent = copy(&dir, &bytes);
    let (stored, mut r) = start(&dir, &sent);
    r.accept_durably(0, stored.read_chunk(0).unwrap()).unwrap();
    r.crash = CrashAt(Some(Step::Renamed));
    assert!(r.accept_durably(1, stored.read_chunk(1).unwrap()).is_err());
    let Incoming::Complete(done) = dir.incoming(&key(0), &checked(&sent.sealed)).unwrap() else {
        panic!("complete once renamed");
    };
    assert_eq!(plaintext(&done), bytes);
    assert_eq!(entries(&dir.received_dir(&key(0))), vec!["0".to_string()]);
}

#[test]
fn a_torn_write_past_the_point_or_a_file_shorter_than_it_is_recovered() {
    let (_tmp, dir) = dir();
    let bytes = data(4 * CHUNK, 10);
    let sent = copy(&dir, &bytes);
    let (stored, mut r) = start(&dir, &sent);
    for i in 0..2 {
        r.accept_durably(i, stored.read_chunk(i).unwrap()).unwrap();
    }
    drop(r);
    let part = dir.received_path(&key(0), ".part");
    // Half a chunk of garbage after the durable prefix.
    let mut f = fs::OpenOptions::new().append(true).open(&part).unwrap();
    std::io::Write::write_all(&mut f, &vec![0xAA; 30_000]).unwrap();
    drop(f);
    let r = partial(&dir, &sent);
    assert_eq!(r.next_chunk(), Some(2));
    assert_eq!(part_len(&dir), 2 * (CHUNK + 16));
    drop(r);
    // Storage that lost synced bytes: shorter than the point says.
    fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .unwrap()
        .set_len(CHUNK)
        .unwrap();
    let mut r = partial(&dir, &sent);
    assert_eq!(r.next_chunk(), Some(0));
    assert_eq!(part_len(&dir), 0);
    let done = finish(&stored, &mut r);
    assert_eq!(plaintext(&done), bytes);
}

#[test]
fn chunks_written_after_the_last_committed_checkpoint_are_asked_for_again() {
    let (_tmp, dir) = dir();
    let bytes = data(6 * CHUNK - 5, 17);
    let sent = copy(&dir, &bytes);
    let (stored, mut r) = start(&dir, &sent);
    r.accept(0, stored.read_chunk(0).unwrap()).unwrap();
    // Taken after chunk 0, committed only after chunks 1 and 2 were
    // written (as on its blocking thread): it names chunk 1.
    let checkpoint = r.checkpoint().expect("a point after chunk 0");
    assert_eq!(checkpoint.next_chunk(), 1);
    r.accept(1, stored.read_chunk(1).unwrap()).unwrap();
    r.accept(2, stored.read_chunk(2).unwrap()).unwrap();
    assert_eq!(checkpoint.commit().unwrap(), 1);
    // Chunk 3 written, never checkpointed: a crash now.
    r.accept(3, stored.read_chunk(3).unwrap()).unwrap();
    drop(r);
    let mut r = partial(&dir, &sent);
    assert_eq!(r.next_chunk(), Some(1));
    assert_eq!(part_len(&dir), CHUNK + 16);
    let done = finish(&stored, &mut r);
    assert_eq!(plaintext(&done), bytes);
}

#[test]
fn a_checkpoint_committed_after_completion_changes_nothing() {
    let (_tmp, dir) = dir();
    let bytes = data(2 * CHUNK + 1, 18);
    let sent = copy(&dir, &bytes);
    let (stored, mut r) = start(&dir, &sent);
    r.accept(0, stored.read_chunk(0).unwrap()).unwrap();
    let late = r.checkpoint().expect("a point after chunk 0");
    let done = finish(&stored, &mut r);
    assert_eq!(late.commit().unwrap(), 1);
    assert_eq!(entries(&dir.received_dir(&key(0))), vec!["0".to_string()]);
    assert_eq!(plaintext(&done), bytes);
    assert!(dir
        .incoming(&key(0), &checked(&sent.sealed))
        .unwrap()
        .is_complete());
}

/// A sync that failed may have lost written pages, and the kernel says so
/// only once per file: after a failed checkpoint nothing of that handle is
/// committed or completed (no receipt could follow); reopening resumes
/// from the last durable point.
#[test]
fn after_a_failed_checkpoint_nothing_commits_or_completes_until_reopened() {
    let (_tmp, dir) = dir();
    let bytes = data(3 * CHUNK - 7, 19);
    let sent = copy(&dir, &bytes);
    let (stored, mut r) = start(&dir, &sent);
    r.accept(0, stored.read_chunk(0).unwrap()).unwrap();
    let mut failing = r.checkpoint().unwrap();
    failing.crash = CrashAt(Some(Step::ChunkSynced));
    assert!(matches!(
        failing.commit(),
        Err(AttachmentError::SimulatedCrash)
    ));
    r.accept(1, stored.read_chunk(1).unwrap()).unwrap();
    let e = r.checkpoint().unwrap().commit().unwrap_err();
    assert!(matches!(e, AttachmentError::Corrupt { .. }), "{e}");
    let e = r.accept(2, stored.read_chunk(2).unwrap()).unwrap_err();
    assert!(matches!(e, AttachmentError::Corrupt { .. }), "{e}");
    drop(r);
    let mut r = partial(&dir, &sent);
    assert_eq!(r.next_chunk(), Some(0));
    let done = finish(&stored, &mut r);
    assert_eq!(plaintext(&done), bytes);
}

/// What a receipt waits for: the complete file, of its stored length, in
/// place; a partial, missing or cut file is not confirmed.
#[test]
fn only_a_whole_received_file_is_confirmed_for_the_receipt() {
    let (_tmp, dir) = dir();
    let bytes = data(2 * CHUNK + 9, 20);
    let sent = copy(&dir, &bytes);
    let manifest = &checked(&sent.sealed);
    assert!(
        dir.confirm_received(&key(0), manifest).is_err(),
        "nothing yet"
    );
    let (stored, mut r) = start(&dir, &sent);
    r.accept_durably(0, stored.read_chunk(0).unwrap()).unwrap();
    assert!(dir.confirm_received(&key(0), manifest).is_err(), "partial");
    let done = finish(&stored, &mut r);
    dir.confirm_received(&key(0), manifest).unwrap();
    let len = fs::metadata(done.path()).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(done.path())
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let e = dir.confirm_received(&key(0), manifest).unwrap_err();
    assert!(matches!(e, AttachmentError::Corrupt { .. }), "{e}");
}

/// A complete file of another manifest under the same key (an envelope
/// whose record a crash lost, sent again with the same id and other
/// content of the same size): never confirmed, and received again.
#[test]
fn a_complete_file_of_another_manifest_is_not_confirmed_and_is_received_again() {
    let (_tmp, dir) = dir();
    let first = copy(&dir, &data(2 * CHUNK + 9, 21));
    let (stored, mut r) = start(&dir, &first);
    finish(&stored, &mut r);
    dir.confirm_received(&key(0), &checked(&first.sealed))
        .unwrap();
    let other = copy(&dir, &data(2 * CHUNK + 9, 22));
    let e = dir
        .confirm_received(&key(0), &checked(&other.sealed))
        .unwrap_err();
    assert!(matches!(e, AttachmentError::Chunk(_)), "{e}");
    match dir.incoming(&key(0), &checked(&other.sealed)).unwrap() {
        Incoming::NotStarted(_) => {}
        _ => panic!("the other manifest's file was taken as complete"),
    }
    assert!(
        dir.confirm_received(&key(0), &checked(&first.sealed))
            .is_err(),
        "removed"
    );
}

#[test]
fn a_resume_point_of_another_attachment_is_ignored() {
    let (_tmp, dir) = dir();
    let a = copy(&dir, &data(3 * CHUNK, 11));
    let (stored, mut r) = start(&dir, &a);
    r.accept_durably(0, stored.read_chunk(0).unwrap()).unwrap();
    r.accept_durably(1, stored.read_chunk(1).unwrap()).unwrap();
    drop(r);
    let point = dir.received_path(&key(0), ".resume");
    let mut bytes = fs::read(&point).unwrap();
    bytes[20] ^= 1; // inside the tree root
    fs::write(&point, &bytes).unwrap();
    assert_eq!(partial(&dir, &a).next_chunk(), Some(0));
}

#[test]
fn the_receiver_refuses_to_start_without_room_as_retriable() {
    let (_tmp, dir) = dir();
    let sent = copy(&dir, &data(3 * MIB, 12));
    let stored = StoredAttachment::open(&sent.path, &sent.sealed.manifest).unwrap();
    let Incoming::NotStarted(n) = dir.incoming(&key(0), &checked(&sent.sealed)).unwrap() else {
        panic!("nothing yet");
    };
    let e = n
        .begin(
            &stored.table_bytes().unwrap(),
            &FixedSpace::free(&[2 * MIB]),
        )
        .unwrap_err();
    assert!(e.is_retriable(), "{e}");
    assert!(!dir.received_dir(&key(0)).join("0.part").exists());
    // A table that is not the signed one is refused before anything is written.
    let Incoming::NotStarted(n) = dir.incoming(&key(0), &checked(&sent.sealed)).unwrap() else {
        panic!("nothing yet");
    };
    let mut table = stored.table_bytes().unwrap();
    table[0] ^= 1;
    let e = n.begin(&table, &FixedSpace::plenty()).unwrap_err();
    assert!(
        matches!(e, AttachmentError::Chunk(ChunkError::TableRootMismatch)),
        "{e}"
    );
}

#[test]
fn retrieval_writes_a_new_private_file_and_refuses_existing_paths_and_links() {
    let (tmp, dir) = dir();
    let bytes = data(2 * CHUNK + 1, 13);
    let sent = copy(&dir, &bytes);
    let (stored, mut r) = start(&dir, &sent);
    let done = finish(&stored, &mut r);
    let reader = || PlaintextReader::new(done.open().unwrap(), done.attachment()).unwrap();
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();

    let out = out_dir.join("evidence.bin");
    assert_eq!(save_new_file(reader(), &out).unwrap(), bytes.len() as u64);
    assert_eq!(fs::read(&out).unwrap(), bytes);
    assert_eq!(mode(&out), 0o600);

    let existing = out_dir.join("existing");
    fs::write(&existing, b"keep me").unwrap();
    let e = save_new_file(reader(), &existing).unwrap_err();
    assert!(matches!(e, AttachmentError::Exists { .. }), "{e}");
    assert_eq!(fs::read(&existing).unwrap(), b"keep me");

    let target = out_dir.join("target");
    fs::write(&target, b"target").unwrap();
    let link = out_dir.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = save_new_file(reader(), &link).unwrap_err();
    assert!(matches!(e, AttachmentError::Exists { .. }), "{e}");
    assert_eq!(fs::read(&target).unwrap(), b"target");
    let dangling = out_dir.join("dangling");
    std::os::unix::fs::symlink(out_dir.join("nowhere"), &dangling).unwrap();
    assert!(save_new_file(reader(), &dangling).is_err());
    assert!(!out_dir.join("nowhere").exists());

    // No temporary file is left behind by any of them.
    assert_eq!(
        entries(&out_dir),
        vec!["dangling", "evidence.bin", "existing", "link", "target"]
    );
}

#[test]
fn retrieval_of_an_altered_file_fails_and_writes_nothing() {
    let (tmp, dir) = dir();
    let bytes = data(3 * CHUNK, 14);
    let sent = copy(&dir, &bytes);
    let (stored, mut r) = start(&dir, &sent);
    let done = finish(&stored, &mut r);
    // One bit of the stored ciphertext, in the middle chunk.
    let mut f = fs::read(done.path()).unwrap();
    f[(CHUNK + 16 + 5) as usize] ^= 1;
    fs::write(done.path(), &f).unwrap();
    let out = tmp.path().join("out.bin");
    let reader = PlaintextReader::new(done.open().unwrap(), done.attachment()).unwrap();
    let e = save_new_file(reader, &out).unwrap_err();
    assert!(e.to_string().contains("authentication tag"), "{e}");
    assert!(!out.exists());
    assert_eq!(
        entries(tmp.path()),
        vec!["attachments".to_string()],
        "no temporary file left"
    );
}

mod crash_anywhere {
    use proptest::prelude::*;

    use super::*;

    const STEPS: [Step; 6] = [
        Step::ChunkWritten,
        Step::ChunkSynced,
        Step::ResumeWritten,
        Step::TableAppended,
        Step::FinalSynced,
        Step::Renamed,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Crashes at random steps of random chunks, each followed by a
        /// reopen, still end with the original bytes.
        #[test]
        fn crash_anywhere_resume_complete_same_bytes(
            size in 0u64..(6 * CHUNK),
            crashes in proptest::collection::vec((0usize..6, 0u64..7), 0..4),
        ) {
            let (_tmp, dir) = dir();
            let bytes = data(size, 15);
            let sent = copy(&dir, &bytes);
            let stored = StoredAttachment::open(&sent.path, &sent.sealed.manifest).unwrap();
            let (_, mut r) = start(&dir, &sent);
            let mut crashes = crashes.into_iter();
            let mut pending = crashes.next();
            let done = loop {
                let i = r.next_chunk().unwrap();
                if let Some((step, at)) = pending.filter(|&(_, at)| at == i) {
                    let _ = at;
                    r.crash = CrashAt(Some(STEPS[step]));
                    pending = crashes.next();
                }
                match r.accept_durably(i, stored.read_chunk(i).unwrap()) {
                    Ok(Accepted::Next(_)) => {}
                    Ok(Accepted::Complete(done)) => break done,
                    Err(AttachmentError::SimulatedCrash) => {
                        match dir.incoming(&key(0), &checked(&sent.sealed)).unwrap() {
                            Incoming::Partial(again) => {
                                let next = again.next_chunk().unwrap();
                                prop_assert!(next <= i + 1 && next >= i);
                                prop_assert_eq!(part_len(&dir), next * (CHUNK + 16));
                                r = *again;
                            }
                            Incoming::Complete(done) => break done,
                            Incoming::NotStarted(_) => prop_assert!(false, "the table was lost"),
                        }
                    }
                    Err(e) => prop_assert!(false, "{}", e),
                }
            };
            prop_assert_eq!(plaintext(&done), bytes);
        }
    }
}

/// Not a check but a figure: `cargo test --release -p comity-node --lib
/// attachments::tests::figures -- --ignored --nocapture`.
#[test]
#[ignore]
fn figures_copy_in_receive_and_read() {
    // The largest file of 64 KiB chunks, and one of 1 MiB chunks.
    for mib in [64, 96] {
        let (_tmp, dir) = dir();
        let bytes = data(mib * MIB, 16);
        let t = std::time::Instant::now();
        let sent = copy(&dir, &bytes);
        let copy_in = t.elapsed();
        let t = std::time::Instant::now();
        let (stored, mut r) = start(&dir, &sent);
        let done = finish(&stored, &mut r);
        let receive = t.elapsed();
        let t = std::time::Instant::now();
        assert_eq!(plaintext(&done), bytes);
        let read = t.elapsed();
        let mib_s = |d: std::time::Duration| mib as f64 / d.as_secs_f64();
        println!(
            "{mib} MiB, {} chunks: copy-in {:?} ({:.0} MiB/s), receive {:?} ({:.0} MiB/s), \
             verified read {:?} ({:.0} MiB/s)",
            stored.chunk_count(),
            copy_in,
            mib_s(copy_in),
            receive,
            mib_s(receive),
            read,
            mib_s(read)
        );
    }
}
