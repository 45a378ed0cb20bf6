//! The audit log's entries and Merkle tree, in append-only files beside
//! sled. (In sled, every entry was a batch, and sled writes its log twice
//! per batch: five entries a message halved throughput. docs/performance.md)
//!
//! Files in the directory:
//! * `leaves`: one record per entry, in sequence order:
//!   `length u32 LE ‖ crc32 u32 LE ‖ leaf bytes`
//! * `offsets`: where each record starts in `leaves` (u64 LE, entry `seq` at `8 × seq`)
//! * `hashes`: every complete subtree hash, 32 bytes, in the order the
//!   subtrees complete (see [`position`]), so an append writes the leaf hash
//!   and the subtrees it completes: O(log n), no reads
//! * `messages`: `message id ‖ seq u64 LE` for each entry naming a message
//!
//! Durability: an entry's record is handed to the OS (one `write`) before the
//! caller writes the event it describes, and `leaves` is fdatasynced before
//! every sled flush (`commit.rs`), so after a crash no event is on disk
//! without its entry. The other three files are derived from `leaves`:
//! they are written lazily and, on open, rebuilt from the last [`Mark`] —
//! the lengths synced when the last checkpoint was signed, kept in sled —
//! so a restart reads only the entries since that checkpoint.
//!
//! Longer than the node's other files, on purpose: the record format, the
//! append path and crash recovery share invariants (the order of writes,
//! what the mark promises) that are checked by reading them together.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use comity_protocol::audit::entry::{AuditEntry, MAX_LEAF_BYTES};
use comity_protocol::audit::merkle::{leaf_hash, Frontier, SubtreeHashes};
use comity_protocol::{Digest, MessageId};

const RECORD_HEADER: u64 = 8;
const MESSAGE_RECORD: u64 = 24;

/// Where the derived files were last known complete and synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// Entries covered.
    pub size: u64,
    /// Length of `leaves` holding exactly those entries.
    pub leaves_len: u64,
    /// Length of `messages` holding exactly their message records.
    pub messages_len: u64,
}

impl Mark {
    pub fn to_bytes(self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..16].copy_from_slice(&self.leaves_len.to_le_bytes());
        b[16..].copy_from_slice(&self.messages_len.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Mark> {
        let word = |i: usize| {
            b.get(i * 8..i * 8 + 8)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_le_bytes)
        };
        if b.len() != 24 {
            return None;
        }
        Some(Mark {
            size: word(0)?,
            leaves_len: word(1)?,
            messages_len: word(2)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditFileError {
    #[error("audit file {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("audit file {path} is damaged: {why}")]
    Damaged { path: String, why: String },
    #[error("the audit log stopped after a failed write ({0}); the node reopens it once it can write again")]
    Broken(String),
    #[error("audit entry: {0}")]
    Entry(#[from] comity_protocol::audit::EntryError),
    #[error("a leaf of {0} bytes is not an entry")]
    LeafSize(usize),
}

type Result<T> = std::result::Result<T, AuditFileError>;

/// Index of the subtree `(level, index)` in `hashes`. Subtrees are stored
/// as they complete: leaf `m` goes at `2m − popcount(m)` (every earlier
/// leaf and every subtree they completed come first), followed by the
/// subtrees it completes, bottom-up; the one at `level` ends at leaf
/// `((index + 1) << level) − 1`.
pub fn position(level: u32, index: u64) -> Option<u64> {
    let last = index.checked_add(1)?.checked_shl(level)?.checked_sub(1)?;
    if last >> level != index {
        return None; // shifted out: no such subtree
    }
    stored_before(last)?.checked_add(u64::from(level))
}

/// Length of `hashes` for a log of `size` entries.
pub(super) fn hashes_len(size: u64) -> Option<u64> {
    stored_before(size)?.checked_mul(32)
}

/// How many hashes the first `n` leaves put in `hashes`.
fn stored_before(n: u64) -> Option<u64> {
    n.checked_mul(2)?.checked_sub(u64::from(n.count_ones()))
}

/// An append-only file whose tail is buffered until the next flush.
struct Lazy {
    file: File,
    flushed: u64,
    buf: Vec<u8>,
}

impl Lazy {
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

struct Inner {
    frontier: Frontier,
    leaves: File,
    leaves_len: u64,
    derived: Derived,
    /// Set when a write failed half-way: appending on would corrupt.
    broken: Option<String>,
}

/// Read and sync handles, usable without the append lock: records below
/// the flushed lengths never change.
struct Handles {
    leaves: File,
    offsets: File,
    hashes: File,
    messages: File,
}

pub struct AuditFiles {
    dir: PathBuf,
    inner: Mutex<Inner>,
    handles: Handles,
}

impl std::fmt::Debug for AuditFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFiles")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What opening found after the mark.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Entries read back after the mark (their derived records rebuilt).
    pub replayed: u64,
    /// Bytes of an incomplete or damaged tail of `leaves`, moved aside.
    pub dropped_bytes: u64,
    /// Where those bytes were saved, if any.
    pub saved_to: Option<PathBuf>,
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> AuditFileError + '_ {
    move |source| AuditFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(io_err(path))
}

/// Reads a file from a position of its own (`pread`). Clones of a `File`
/// share one offset, which appends and other readers would move.
struct At {
    file: File,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn reader_at(file: &File, path: &Path, pos: u64) -> Result<BufReader<At>> {
    let file = file.try_clone().map_err(io_err(path))?;
    Ok(BufReader::with_capacity(1 << 16, At { file, pos }))
}

/// Hashes read straight from the `hashes` file.
struct HashFile<'a>(&'a File, &'a Path);

impl SubtreeHashes for HashFile<'_> {
    type Error = AuditFileError;

    fn complete(&self, level: u32, index: u64) -> Result<Digest> {
        read_hash(self.0, self.1, level, index)
    }
}

fn read_hash(file: &File, path: &Path, level: u32, index: u64) -> Result<Digest> {
    let at = position(level, index)
        .and_then(|p| p.checked_mul(32))
        .ok_or_else(|| AuditFileError::Damaged {
            path: path.display().to_string(),
            why: format!("no subtree at level {level} index {index}"),
        })?;
    let mut h = [0u8; 32];
    file.read_exact_at(&mut h, at).map_err(io_err(path))?;
    Ok(Digest(h))
}

/// Reads one record at the reader's position: `Ok(None)` at a clean end,
/// `Err(why)` for a torn or damaged record.
fn read_record(r: &mut impl Read) -> std::result::Result<Option<Vec<u8>>, String> {
    read_record_at_end(r).map_err(|(why, _)| why)
}

/// As [`read_record`], and on error whether the record claimed to reach the
/// end of the file (true for a write cut short by a crash).
fn read_record_at_end(r: &mut impl Read) -> std::result::Result<Option<Vec<u8>>, (String, bool)> {
    let mut header = [0u8; RECORD_HEADER as usize];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err((format!("record header cut after {got} bytes"), true)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e.to_string(), false)),
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_LEAF_BYTES {
        return Err((format!("record length {len} is not a leaf's"), false));
    }
    let mut leaf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match r.read(&mut leaf[got..]) {
            Ok(0) => return Err((format!("record of {len} bytes cut after {got}"), true)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e.to_string(), false)),
        }
    }
    if crc32fast::hash(&leaf) != crc {
        let mut rest = [0u8; 1];
        let last = matches!(r.read(&mut rest), Ok(0));
        return Err(("record checksum does not match".into(), last));
    }
    Ok(Some(leaf))
}

fn record_bytes(leaf: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(leaf.len() + RECORD_HEADER as usize);
    rec.extend_from_slice(&(leaf.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32fast::hash(leaf).to_le_bytes());
    rec.extend_from_slice(leaf);
    rec
}

/// The files derived from `leaves`.
struct Derived {
    offsets: Lazy,
    hashes: Lazy,
    messages: Lazy,
}

impl Derived {
    /// Records entry `seq`'s offset, the subtrees it completes, and the
    /// message it names.
    fn add(
        &mut self,
        frontier: &mut Frontier,
        seq: u64,
        offset: u64,
        leaf: &[u8],
        message: Option<MessageId>,
    ) -> std::result::Result<(), String> {
        let completed = frontier.push(leaf_hash(leaf)).map_err(|e| e.to_string())?;
        self.offsets.buf.extend_from_slice(&offset.to_le_bytes());
        for (_, _, h) in completed {
            self.hashes.buf.extend_from_slice(&h.0);
        }
        if let Some(m) = message {
            self.messages.buf.extend_from_slice(&m.0);
            self.messages.buf.extend_from_slice(&seq.to_le_bytes());
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.offsets.flush()?;
        self.hashes.flush()?;
        self.messages.flush()
    }
}

/// Checks that the mark ends exactly where entry `size − 1` ends.
fn check_mark(leaves: &File, lp: &Path, offsets: &File, op: &Path, mark: Mark) -> Result<()> {
    let damaged = |why: String| AuditFileError::Damaged {
        path: lp.display().to_string(),
        why,
    };
    let last = mark.size - 1;
    let mut b = [0u8; 8];
    let at_offset = last
        .checked_mul(8)
        .ok_or_else(|| damaged(format!("mark of {} entries is out of range", mark.size)))?;
    offsets
        .read_exact_at(&mut b, at_offset)
        .map_err(io_err(op))?;
    let at = u64::from_le_bytes(b);
    let leaf = match read_record(&mut reader_at(leaves, lp, at)?) {
        Ok(Some(leaf)) => leaf,
        Ok(None) => return Err(damaged(format!("entry {last} at byte {at} is missing"))),
        Err(why) => return Err(damaged(format!("entry {last} at byte {at}: {why}"))),
    };
    let ends = at.checked_add(RECORD_HEADER + leaf.len() as u64);
    let seq = AuditEntry::from_leaf(&leaf).ok().map(|e| e.seq);
    if ends != Some(mark.leaves_len) || seq != Some(last) {
        return Err(damaged(format!(
            "the last checkpoint's mark ({} entries, {} bytes) does not match the log",
            mark.size, mark.leaves_len
        )));
    }
    Ok(())
}

/// Whether `file` holds only zero bytes from `from` on.
fn zeros_from(file: &File, path: &Path, from: u64) -> Result<bool> {
    let mut r = reader_at(file, path, from)?;
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
    }
}

/// Copies `leaves` from `end` on to a file beside it, durably, before the
/// caller cuts it there.
fn save_tail(leaves: &File, lp: &Path, end: u64) -> Result<PathBuf> {
    let saved = lp.with_file_name(format!("leaves.tail-at-{end}"));
    let mut out = File::create(&saved).map_err(io_err(&saved))?;
    io::copy(&mut reader_at(leaves, lp, end)?, &mut out).map_err(io_err(&saved))?;
    out.sync_all().map_err(io_err(&saved))?;
    if let Some(dir) = saved.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(saved)
}

impl Inner {
    /// Writes the buffered derived records. A failed write may leave part
    /// of them in a file: nothing more is appended until a restart
    /// rebuilds them from the mark.
    fn flush_derived(&mut self, dir: &Path) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(AuditFileError::Broken(why.clone()));
        }
        self.derived.flush().map_err(|e| {
            self.broken = Some(e.to_string());
            io_err(dir)(e)
        })
    }
}

impl AuditFiles {
    /// Opens (or creates) the files in `dir`, trusting what `mark` covers
    /// and re-reading only the entries after it. An incomplete or damaged
    /// tail (a crash during a write) is cut off and saved beside the log.
    pub fn open(dir: &Path, mark: Mark) -> Result<(AuditFiles, Recovery)> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = |name: &str| dir.join(name);
        let (lp, op, hp, mp) = (
            path("leaves"),
            path("offsets"),
            path("hashes"),
            path("messages"),
        );
        let leaves = open_append(&lp)?;
        let offsets = open_append(&op)?;
        let hashes = open_append(&hp)?;
        let messages = open_append(&mp)?;

        let hashes_len = stored_before(mark.size)
            .and_then(|n| n.checked_mul(32))
            .ok_or_else(|| AuditFileError::Damaged {
                path: hp.display().to_string(),
                why: format!("mark of {} entries is out of range", mark.size),
            })?;
        let expected = [
            (&leaves, &lp, mark.leaves_len, false),
            (&offsets, &op, mark.size.saturating_mul(8), true),
            (&hashes, &hp, hashes_len, true),
            (&messages, &mp, mark.messages_len, true),
        ];
        for (file, p, want, _) in expected {
            let have = file.metadata().map_err(io_err(p))?.len();
            if have < want {
                return Err(AuditFileError::Damaged {
                    path: p.display().to_string(),
                    why: format!(
                        "{have} bytes, but the last checkpoint covered {want}: \
                         the file was replaced or cut"
                    ),
                });
            }
        }
        if mark.size > 0 {
            check_mark(&leaves, &lp, &offsets, &op, mark)?;
        }
        // Only now that nothing was refused: derived files are rebuilt from
        // the mark on.
        for (file, p, want, derived) in expected {
            if derived {
                file.set_len(want).map_err(io_err(p))?;
            }
        }

        let mut frontier =
            Frontier::from_store(&HashFile(&hashes, &hp), mark.size).map_err(|e| {
                AuditFileError::Damaged {
                    path: hp.display().to_string(),
                    why: e.to_string(),
                }
            })?;
        let lazy = |file: &File, p: &Path, flushed: u64| -> Result<Lazy> {
            Ok(Lazy {
                file: file.try_clone().map_err(io_err(p))?,
                flushed,
                buf: Vec::new(),
            })
        };
        let mut derived = Derived {
            offsets: lazy(&offsets, &op, mark.size * 8)?,
            hashes: lazy(&hashes, &hp, hashes_len)?,
            messages: lazy(&messages, &mp, mark.messages_len)?,
        };

        // Replay the entries after the mark.
        let mut recovery = Recovery::default();
        let total = leaves.metadata().map_err(io_err(&lp))?.len();
        let mut reader = reader_at(&leaves, &lp, mark.leaves_len)?;
        let mut end = mark.leaves_len;
        let mut damage = None;
        loop {
            let leaf = match read_record_at_end(&mut reader) {
                Ok(Some(leaf)) => leaf,
                Ok(None) => break,
                Err(d) => {
                    damage = Some(d);
                    break;
                }
            };
            let seq = frontier.size();
            // A record whose checksum holds was written whole: if it is not
            // the next entry, that is damage, not a cut write.
            let entry = match AuditEntry::from_leaf(&leaf) {
                Ok(e) if e.seq == seq => e,
                Ok(e) => {
                    damage = Some((format!("entry {seq} says it is entry {}", e.seq), false));
                    break;
                }
                Err(e) => {
                    damage = Some((format!("entry {seq}: {e}"), false));
                    break;
                }
            };
            derived
                .add(&mut frontier, seq, end, &leaf, entry.message_id)
                .map_err(|why| AuditFileError::Damaged {
                    path: lp.display().to_string(),
                    why,
                })?;
            end += RECORD_HEADER + leaf.len() as u64;
            recovery.replayed += 1;
        }
        if end < total {
            let (why, reaches_end) = damage.unwrap_or_else(|| ("unreadable record".into(), false));
            // Only a write cut short by a crash (the last record, or zeros a
            // power cut left) is cut; damage with entries after it is not
            // ours to throw away.
            if !reaches_end && !zeros_from(&leaves, &lp, end)? {
                return Err(AuditFileError::Damaged {
                    path: lp.display().to_string(),
                    why: format!(
                        "entry {} at byte {end}: {why}, and data follows it: this is not a \
                         write cut short by a crash; restore the data directory from a backup",
                        frontier.size()
                    ),
                });
            }
            let saved = save_tail(&leaves, &lp, end)?;
            leaves.set_len(end).map_err(io_err(&lp))?;
            leaves.sync_all().map_err(io_err(&lp))?;
            tracing::warn!(
                at = end,
                bytes = total - end,
                why,
                saved = %saved.display(),
                "audit log: cut a record left incomplete by a crash"
            );
            recovery.dropped_bytes = total - end;
            recovery.saved_to = Some(saved);
        }

        let handles = Handles {
            leaves: leaves.try_clone().map_err(io_err(&lp))?,
            offsets,
            hashes,
            messages,
        };
        let mut inner = Inner {
            frontier,
            leaves,
            leaves_len: end,
            derived,
            broken: None,
        };
        inner.flush_derived(dir)?;
        Ok((
            AuditFiles {
                dir: dir.to_path_buf(),
                inner: Mutex::new(inner),
                handles,
            },
            recovery,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Appends the entry `build(seq)` returns for the next sequence number
    /// and hands it to the OS before returning (not yet synced: the next
    /// commit does that). Entries are numbered in the order they are written.
    pub fn append<F>(&self, build: F) -> Result<u64>
    where
        F: FnOnce(
            u64,
        ) -> std::result::Result<
            (Vec<u8>, Option<MessageId>),
            comity_protocol::audit::EntryError,
        >,
    {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Some(why) = &inner.broken {
            return Err(AuditFileError::Broken(why.clone()));
        }
        let seq = inner.frontier.size();
        let (leaf, message) = build(seq)?;
        self.write_leaf(inner, seq, &leaf, message)?;
        Ok(seq)
    }

    /// Writes entry `seq` (the next) and what derives from it.
    fn write_leaf(
        &self,
        inner: &mut Inner,
        seq: u64,
        leaf: &[u8],
        message: Option<MessageId>,
    ) -> Result<()> {
        if leaf.is_empty() || leaf.len() > MAX_LEAF_BYTES {
            return Err(AuditFileError::LeafSize(leaf.len()));
        }
        let rec = record_bytes(leaf);
        if let Err(e) = inner.leaves.write_all(&rec) {
            // Part of the record may be in the file: appending after it
            // would hide the next entries from recovery.
            inner.broken = Some(e.to_string());
            return Err(io_err(&self.path("leaves"))(e));
        }
        let offset = inner.leaves_len;
        inner.leaves_len += rec.len() as u64;
        if let Err(why) = inner
            .derived
            .add(&mut inner.frontier, seq, offset, leaf, message)
        {
            inner.broken = Some(why.clone());
            return Err(AuditFileError::Broken(why));
        }
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.lock().frontier.size()
    }

    /// Why the log stopped, if a write or sync failed.
    pub fn broken(&self) -> Option<String> {
        self.lock().broken.clone()
    }

    /// Size and root of the tree now.
    #[cfg(test)]
    pub fn head(&self) -> (u64, Digest) {
        let inner = self.lock();
        (inner.frontier.size(), inner.frontier.root())
    }

    /// Makes every appended entry durable (before sled's flush: see the
    /// module doc).
    ///
    /// Fails while the log is broken, so no commit can make an event durable
    /// whose entry may be missing; a failed sync breaks it (after a failed
    /// `fdatasync` the kernel may have dropped the pages).
    pub fn sync(&self) -> Result<()> {
        if let Some(why) = &self.lock().broken {
            return Err(AuditFileError::Broken(why.clone()));
        }
        self.handles.leaves.sync_data().map_err(|e| {
            self.lock().broken = Some(format!("fdatasync: {e}"));
            io_err(&self.path("leaves"))(e)
        })
    }

    /// Size and root of the tree now, with every file synced up to it: the
    /// returned [`Mark`] may be stored (in the same commit as the checkpoint
    /// of that size) as the point recovery starts from.
    pub fn seal(&self) -> Result<(Mark, Digest)> {
        let (mark, root) = {
            let mut inner = self.lock();
            inner.flush_derived(&self.dir)?;
            (
                Mark {
                    size: inner.frontier.size(),
                    leaves_len: inner.leaves_len,
                    messages_len: inner.derived.messages.flushed,
                },
                inner.frontier.root(),
            )
        };
        // Outside the lock: what was written before is covered all the same.
        let h = &self.handles;
        for (f, name) in [
            (&h.leaves, "leaves"),
            (&h.offsets, "offsets"),
            (&h.hashes, "hashes"),
            (&h.messages, "messages"),
        ] {
            f.sync_data().map_err(|e| {
                self.lock().broken = Some(format!("fdatasync of {name}: {e}"));
                io_err(&self.path(name))(e)
            })?;
        }
        Ok((mark, root))
    }

    /// [`AuditFiles::seal`], and then, before any other entry can be
    /// written, appends the entry `build(size)` returns (at sequence number
    /// `size`): a checkpoint of the returned size is then of everything
    /// before that entry and nothing else. The identity switch needs this.
    pub fn seal_and_append<F>(&self, build: F) -> Result<(Mark, Digest)>
    where
        F: FnOnce(
            u64,
        ) -> std::result::Result<
            (Vec<u8>, Option<MessageId>),
            comity_protocol::audit::EntryError,
        >,
    {
        let (mark, root) = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            if let Some(why) = &inner.broken {
                return Err(AuditFileError::Broken(why.clone()));
            }
            inner.flush_derived(&self.dir)?;
            let mark = Mark {
                size: inner.frontier.size(),
                leaves_len: inner.leaves_len,
                messages_len: inner.derived.messages.flushed,
            };
            let root = inner.frontier.root();
            let (leaf, message) = build(mark.size)?;
            self.write_leaf(inner, mark.size, &leaf, message)?;
            (mark, root)
        };
        // What the mark covers was written before it; syncing now covers it.
        self.seal()?;
        Ok((mark, root))
    }

    /// Writes buffered derived records so reads see every entry so far.
    fn readable(&self) -> Result<u64> {
        let mut inner = self.lock();
        inner.flush_derived(&self.dir)?;
        Ok(inner.frontier.size())
    }

    /// The hash of a complete subtree of the current tree.
    pub fn node(&self, level: u32, index: u64) -> Result<Option<Digest>> {
        let size = self.size();
        let covered = index
            .checked_add(1)
            .and_then(|i| i.checked_shl(level))
            .filter(|last| last >> level == index + 1);
        match covered {
            Some(n) if n <= size => {}
            _ => return Ok(None),
        }
        let hp = self.path("hashes");
        let needed = position(level, index)
            .map(|p| (p + 1) * 32)
            .unwrap_or(u64::MAX);
        if needed > self.lock().derived.hashes.flushed {
            self.readable()?;
        }
        read_hash(&self.handles.hashes, &hp, level, index).map(Some)
    }

    fn offset(&self, seq: u64) -> Result<u64> {
        let op = self.path("offsets");
        let mut b = [0u8; 8];
        self.handles
            .offsets
            .read_exact_at(&mut b, seq * 8)
            .map_err(io_err(&op))?;
        Ok(u64::from_le_bytes(b))
    }

    /// The leaf bytes of entry `seq`, if there is one.
    pub fn leaf(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        if seq >= self.readable()? {
            return Ok(None);
        }
        let at = self.offset(seq)?;
        let lp = self.path("leaves");
        match read_record(&mut reader_at(&self.handles.leaves, &lp, at)?) {
            Ok(Some(leaf)) => Ok(Some(leaf)),
            Ok(None) => Err(AuditFileError::Damaged {
                path: lp.display().to_string(),
                why: format!("entry {seq} at {at} is missing"),
            }),
            Err(why) => Err(AuditFileError::Damaged {
                path: lp.display().to_string(),
                why: format!("entry {seq} at {at}: {why}"),
            }),
        }
    }

    /// Leaves `from..to`, in order, read sequentially.
    pub fn leaves(&self, from: u64, to: u64) -> Result<Leaves> {
        let size = self.readable()?;
        let to = to.min(size);
        let lp = self.path("leaves");
        let at = if from < to { self.offset(from)? } else { 0 };
        Ok(Leaves {
            reader: reader_at(&self.handles.leaves, &lp, at)?,
            next: from,
            to,
            path: lp,
        })
    }

    /// Sequence numbers of the entries naming `message` (a scan of the
    /// `messages` file: 24 bytes an entry, for an admin's proof request).
    pub fn entries_for(&self, message: &MessageId) -> Result<Vec<u64>> {
        self.readable()?;
        let mp = self.path("messages");
        let len = self.lock().derived.messages.flushed;
        let mut reader = reader_at(&self.handles.messages, &mp, 0)?;
        let mut out = Vec::new();
        let mut rec = [0u8; MESSAGE_RECORD as usize];
        for _ in 0..len / MESSAGE_RECORD {
            reader.read_exact(&mut rec).map_err(io_err(&mp))?;
            if rec[..16] == message.0 {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&rec[16..]);
                out.push(u64::from_le_bytes(seq));
            }
        }
        Ok(out)
    }
}

/// Iterator over stored leaves (see [`AuditFiles::leaves`]).
pub struct Leaves {
    reader: BufReader<At>,
    next: u64,
    to: u64,
    path: PathBuf,
}

impl Iterator for Leaves {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.to {
            return None;
        }
        let seq = self.next;
        self.next += 1;
        Some(match read_record(&mut self.reader) {
            Ok(Some(leaf)) => Ok((seq, leaf)),
            Ok(None) => Err(AuditFileError::Damaged {
                path: self.path.display().to_string(),
                why: format!("entry {seq} is missing"),
            }),
            Err(why) => Err(AuditFileError::Damaged {
                path: self.path.display().to_string(),
                why: format!("entry {seq}: {why}"),
            }),
        })
    }
}

#[cfg(test)]
mod tests;
