//! The receiver's side: a partial file per (peer, message, attachment
//! index), written chunk by chunk, each chunk verified by the protocol's
//! `Opener` before a byte of it is written, with a durable resume point.
//!
//! Chunk `i` (not the last) is verified and written at its offset in
//! `N.part` ([`Receiving::accept`]); it becomes durable with a
//! [`Checkpoint`] taken after it, whose commit
//! 1. syncs the file's data;
//! 2. writes the resume point `i + 1` to `N.resume.tmp` and syncs it;
//! 3. renames it over `N.resume`.
//!
//! A checkpoint may commit on another thread while later chunks are
//! written (so the syncs are off the path of every chunk): what it names
//! was written before it was taken, and step 1 makes those bytes durable
//! whatever is written after them.
//!
//! On reopening, `N.part` is cut to the length the resume point names.
//! A crash before 3 leaves the old point and a file that may be longer
//! (chunks written since, whole, torn, or lost): cut back, they are asked
//! for again. After 3 the point names `i + 1` and step 1 made every byte
//! before it durable. The file is never shorter than its point; if it is
//! (storage that lied), the transfer starts again from chunk 0.
//!
//! The last chunk: write it, append the chunk table, sync, rename `N.part`
//! to `N`, sync the directory. Until the rename, reopening resumes at the
//! last chunk; after it the attachment is complete. Only the directory
//! sync makes [`Received`], the proof that the attachment is durable and
//! verified, which is what the receipt waits for.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use comity_protocol::attachment::{CheckedAttachment, ChunkTable, Opener, ResumePoint};

use super::error::{io_at, AttachmentError};
use super::layout::{
    create_new_private, create_private_dir, drop_cached, exists, open_private, remove_if_present,
    sync_dir, AttachmentDir, IncomingKey,
};
use super::resume;
use super::space::{ensure_room, SpaceSource};
use super::stored::{Geometry, StoredAttachment};

/// The files of one received attachment.
#[derive(Clone, Debug)]
struct Paths {
    dir: PathBuf,
    table: PathBuf,
    table_tmp: PathBuf,
    part: PathBuf,
    point: PathBuf,
    point_tmp: PathBuf,
    done: PathBuf,
}

impl Paths {
    fn new(dir: &AttachmentDir, key: &IncomingKey) -> Self {
        Paths {
            dir: dir.received_dir(key),
            table: dir.received_path(key, ".table"),
            table_tmp: dir.received_path(key, ".table.tmp"),
            part: dir.received_path(key, ".part"),
            point: dir.received_path(key, ".resume"),
            point_tmp: dir.received_path(key, ".resume.tmp"),
            done: dir.received_path(key, ""),
        }
    }

    /// Everything but the complete file.
    fn remove_transfer_files(&self) -> Result<(), AttachmentError> {
        for p in [
            &self.part,
            &self.point,
            &self.point_tmp,
            &self.table,
            &self.table_tmp,
        ] {
            remove_if_present(p)?;
        }
        Ok(())
    }
}

/// Where a received attachment stands, from what is on disk.
#[derive(Debug)]
pub enum Incoming {
    /// No chunk table yet: the transfer starts with it.
    NotStarted(NotStarted),
    Partial(Box<Receiving>),
    Complete(Received),
}

impl Incoming {
    pub fn is_complete(&self) -> bool {
        matches!(self, Incoming::Complete(_))
    }
}

/// A complete attachment, verified chunk by chunk against the signed
/// manifest and its whole-file SHA-256, synced and renamed into place.
/// Only this module makes one.
#[derive(Debug, Clone)]
pub struct Received {
    path: PathBuf,
    attachment: CheckedAttachment,
}

impl Received {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn attachment(&self) -> &CheckedAttachment {
        &self.attachment
    }

    pub fn open(&self) -> Result<StoredAttachment, AttachmentError> {
        StoredAttachment::open(&self.path, self.attachment.manifest())
    }
}

/// A received attachment with nothing on disk yet.
#[derive(Debug)]
pub struct NotStarted {
    paths: Paths,
    attachment: CheckedAttachment,
}

/// The next step of a transfer after a chunk was accepted.
#[derive(Debug)]
pub enum Accepted {
    /// Written (durable once a [`Checkpoint`] taken now commits): the
    /// chunk to take next.
    Next(u64),
    Complete(Received),
}

/// Between two steps of [`Receiving::accept`], where a test stops as a
/// crash would (see the module documentation for the order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    ChunkWritten,
    ChunkSynced,
    ResumeWritten,
    TableAppended,
    FinalSynced,
    Renamed,
}

/// What the checkpoints of a [`Receiving`] have come to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Points {
    #[default]
    Open,
    /// A commit failed part-way. A failed sync may have lost written pages
    /// and reports so once per file, so no later sync of this handle can
    /// be trusted: nothing more is committed or completed; reopening cuts
    /// the file back to the last durable point.
    Failed,
    /// Complete: a checkpoint committed later does nothing.
    Finished,
}

/// A transfer under way, from its last durable chunk.
#[derive(Debug)]
pub struct Receiving {
    paths: Paths,
    attachment: CheckedAttachment,
    geometry: Geometry,
    file: Arc<File>,
    /// Held by a committing checkpoint and by the completion, so that the
    /// two never touch the resume point at once.
    points: Arc<Mutex<Points>>,
    opener: Opener,
    /// A write failed after a chunk was verified: the file and the opener
    /// no longer agree, so only reopening (from the durable point) helps.
    broken: bool,
    pub(super) crash: CrashAt,
}

impl AttachmentDir {
    /// What is on disk for the attachment `key` of a message whose
    /// manifests were checked as `attachment`. Cuts a partial file back to
    /// its durable resume point. The delivery code signs the receipt only
    /// when this is [`Incoming::Complete`] for every attachment.
    pub fn incoming(
        &self,
        key: &IncomingKey,
        attachment: &CheckedAttachment,
    ) -> Result<Incoming, AttachmentError> {
        let paths = Paths::new(self, key);
        let geometry = Geometry::of(attachment.manifest());
        if exists(&paths.done)? {
            let stored = StoredAttachment::open(&paths.done, attachment.manifest())?;
            if ChunkTable::verify(attachment, &stored.table_bytes()?).is_ok() {
                paths.remove_transfer_files()?;
                return Ok(Incoming::Complete(Received {
                    path: paths.done,
                    attachment: attachment.clone(),
                }));
            }
            // Another manifest's file (see `confirm_received`): received
            // again from the start.
            drop(stored);
            remove_if_present(&paths.done)?;
        }
        let not_started = |paths: Paths| {
            Incoming::NotStarted(NotStarted {
                paths,
                attachment: attachment.clone(),
            })
        };
        let Some(table) = read_table(&paths.table, attachment, &geometry)? else {
            return Ok(not_started(paths));
        };
        let point = resume::load(&paths.point, &attachment.manifest().tree_root)?;
        let file = match open_private(&paths.part) {
            Ok(f) => f,
            // The table is written before the part file: a crash between.
            Err(AttachmentError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(not_started(paths));
            }
            Err(e) => return Err(e),
        };
        let len = file
            .metadata()
            .map_err(io_at("reading", &paths.part))?
            .len();
        let resumed = point
            .filter(|p| geometry.chunk_offset(p.next_chunk) <= len)
            .and_then(|p| Opener::resume(attachment, table.clone(), &p).ok());
        let opener = match resumed {
            Some(o) => o,
            None => {
                remove_if_present(&paths.point)?;
                Opener::new(attachment, table)?
            }
        };
        let next = opener.next_chunk().unwrap_or(0);
        let keep = geometry.chunk_offset(next);
        if len != keep {
            file.set_len(keep)
                .map_err(io_at("truncating", &paths.part))?;
            file.sync_all().map_err(io_at("syncing", &paths.part))?;
        }
        Ok(Incoming::Partial(Box::new(Receiving {
            paths,
            attachment: attachment.clone(),
            geometry,
            file: Arc::new(file),
            points: Arc::default(),
            opener,
            broken: false,
            crash: CrashAt::default(),
        })))
    }
}

/// The stored chunk table, if there is one and it is this attachment's.
fn read_table(
    path: &Path,
    attachment: &CheckedAttachment,
    geometry: &Geometry,
) -> Result<Option<ChunkTable>, AttachmentError> {
    let len = match fs::symlink_metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at("reading", path)(e)),
    };
    // Checked before reading, so a wrong file cannot make us allocate.
    if len != geometry.table_len() {
        return Ok(None);
    }
    let bytes = fs::read(path).map_err(io_at("reading", path))?;
    Ok(ChunkTable::verify(attachment, &bytes).ok())
}

impl NotStarted {
    /// Starts the transfer with the sender's chunk table: verified against
    /// the signed root, then made durable. Refused, as retriable, if the
    /// whole attachment would eat into the disk reserve; a manifest over
    /// the limits never got this far (it is refused when the message is
    /// opened, permanently).
    pub fn begin(
        self,
        table_bytes: &[u8],
        space: &dyn SpaceSource,
    ) -> Result<Receiving, AttachmentError> {
        let table = ChunkTable::verify(&self.attachment, table_bytes)?;
        let geometry = Geometry::of(self.attachment.manifest());
        ensure_room(space, geometry.stored_len())?;
        let paths = self.paths;
        create_private_dir(&paths.dir)?;
        paths.remove_transfer_files()?;
        {
            let tmp = &paths.table_tmp;
            let f = create_new_private(tmp)?;
            f.write_all_at(table_bytes, 0)
                .map_err(io_at("writing", tmp))?;
            f.sync_all().map_err(io_at("syncing", tmp))?;
            fs::rename(tmp, &paths.table).map_err(io_at("renaming", tmp))?;
        }
        let file = create_new_private(&paths.part)?;
        sync_dir(&paths.dir)?;
        Ok(Receiving {
            opener: Opener::new(&self.attachment, table)?,
            paths,
            attachment: self.attachment,
            geometry,
            file: Arc::new(file),
            points: Arc::default(),
            broken: false,
            crash: CrashAt::default(),
        })
    }
}

impl Receiving {
    /// The chunk to ask the sender for (where the transfer resumes).
    pub fn next_chunk(&self) -> Option<u64> {
        self.opener.next_chunk()
    }

    pub fn chunk_count(&self) -> u64 {
        self.geometry.chunks
    }

    /// Plaintext bytes received and verified so far.
    pub fn bytes_done(&self) -> u64 {
        let next = self.opener.next_chunk().unwrap_or(self.geometry.chunks);
        next.saturating_mul(u64::from(self.geometry.chunk_size))
            .min(self.geometry.size)
    }

    /// Refuses, as retriable, a resumed transfer whose rest would eat into
    /// the disk reserve; ask before the data flows.
    pub fn ensure_room(&self, space: &dyn SpaceSource) -> Result<(), AttachmentError> {
        let next = self.opener.next_chunk().unwrap_or(self.geometry.chunks);
        let rest = self
            .geometry
            .stored_len()
            .saturating_sub(self.geometry.chunk_offset(next));
        ensure_room(space, rest)
    }

    /// Verifies ciphertext chunk `index` and writes it; the last chunk
    /// also completes the attachment (durable, renamed into place). A
    /// refused chunk writes nothing and leaves the next chunk as it was.
    pub fn accept(&mut self, index: u64, ciphertext: Vec<u8>) -> Result<Accepted, AttachmentError> {
        if self.broken {
            return Err(AttachmentError::Corrupt {
                path: self.paths.part.clone(),
                problem: "an earlier write failed; reopen to resume from the last durable chunk"
                    .into(),
            });
        }
        // The file keeps the ciphertext and the opener decrypts it in
        // place, so it is written first (no copy of the chunk): only a
        // chunk that is the next one and of its length, and the bytes of
        // one that then fails its checks are cut off again. A crash in
        // between leaves them past the durable point, where reopening cuts
        // the file anyway.
        let offset = self.geometry.chunk_offset(index);
        let fits = self.opener.next_chunk() == Some(index)
            && self.geometry.chunk_ciphertext_len(index) == Some(ciphertext.len());
        let part = &self.paths.part;
        if fits {
            self.broken = true;
            self.file
                .write_all_at(&ciphertext, offset)
                .map_err(io_at("writing", part))?;
        }
        let opened = match self.opener.open_chunk(index, ciphertext) {
            Ok(o) if fits => o,
            // The opener and the file's geometry disagree: never accept
            // a chunk that was not written.
            Ok(_) => {
                self.broken = true;
                return Err(AttachmentError::Corrupt {
                    path: part.clone(),
                    problem: format!("chunk {index} passed the opener but not the file's geometry"),
                });
            }
            Err(e) => {
                if fits {
                    self.file
                        .set_len(offset)
                        .map_err(io_at("truncating", part))?;
                    self.broken = false;
                }
                return Err(e.into());
            }
        };
        self.broken = true;
        self.crash.at(Step::ChunkWritten)?;
        if opened.complete {
            return self.complete().map(Accepted::Complete);
        }
        self.broken = false;
        Ok(Accepted::Next(index + 1))
    }

    /// [`Receiving::accept`], then a checkpoint committed at once (as
    /// the transfer did before checkpoints moved off its path).
    #[cfg(test)]
    pub(crate) fn accept_durably(
        &mut self,
        index: u64,
        ciphertext: Vec<u8>,
    ) -> Result<Accepted, AttachmentError> {
        let accepted = self.accept(index, ciphertext)?;
        if let (Accepted::Next(_), Some(c)) = (&accepted, self.checkpoint()) {
            c.commit()?;
        }
        Ok(accepted)
    }

    /// What makes every chunk accepted so far durable, to commit now or on
    /// another thread while more are accepted; `None` before the first.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        // After a failed write the opener is ahead of the file.
        if self.broken {
            return None;
        }
        let point = self.opener.resume_point()?;
        Some(Checkpoint {
            file: self.file.clone(),
            points: self.points.clone(),
            paths: self.paths.clone(),
            root: self.attachment.manifest().tree_root,
            offset: self.geometry.chunk_offset(point.next_chunk),
            point,
            crash: self.crash,
        })
    }

    fn complete(&mut self) -> Result<Received, AttachmentError> {
        // A checkpoint committing now finishes first; one after, no-ops.
        let mut points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        let part = &self.paths.part;
        if *points == Points::Failed {
            self.broken = true;
            return Err(AttachmentError::Corrupt {
                path: part.clone(),
                problem: "a checkpoint failed; reopen to resume from the last durable chunk".into(),
            });
        }
        let table = fs::read(&self.paths.table).map_err(io_at("reading", &self.paths.table))?;
        self.file
            .write_all_at(&table, self.geometry.ciphertext_len())
            .map_err(io_at("writing", part))?;
        self.crash.at(Step::TableAppended)?;
        self.file.sync_all().map_err(io_at("syncing", part))?;
        self.crash.at(Step::FinalSynced)?;
        fs::rename(part, &self.paths.done).map_err(io_at("renaming", part))?;
        self.crash.at(Step::Renamed)?;
        sync_dir(&self.paths.dir)?;
        *points = Points::Finished;
        self.broken = false;
        // Leftovers are harmless (the complete file wins) and removed on
        // the next look.
        if let Err(e) = self.paths.remove_transfer_files() {
            tracing::warn!(error = %e, "cannot remove an attachment's transfer files");
        }
        Ok(Received {
            path: self.paths.done.clone(),
            attachment: self.attachment.clone(),
        })
    }
}

/// The resume point after the chunks a [`Receiving`] had accepted when
/// this was taken; [`Checkpoint::commit`] makes them durable.
#[derive(Debug)]
pub struct Checkpoint {
    file: Arc<File>,
    points: Arc<Mutex<Points>>,
    paths: Paths,
    root: comity_protocol::Digest,
    point: ResumePoint,
    /// Where the chunk the point names begins: the bytes made durable.
    offset: u64,
    pub(super) crash: CrashAt,
}

impl Checkpoint {
    /// The chunk the point names: the receiver's next after a reopen.
    pub fn next_chunk(&self) -> u64 {
        self.point.next_chunk
    }

    /// Syncs the chunks and records the point (see the module
    /// documentation for the steps); returns the chunk it names. Does
    /// nothing once the attachment is complete; refused once a commit
    /// failed (see [`Points::Failed`]).
    pub fn commit(self) -> Result<u64, AttachmentError> {
        let mut points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        match *points {
            Points::Finished => return Ok(self.point.next_chunk),
            Points::Failed => {
                return Err(AttachmentError::Corrupt {
                    path: self.paths.part.clone(),
                    problem: "an earlier checkpoint failed".into(),
                })
            }
            Points::Open => {}
        }
        let result = self.steps();
        if result.is_err() {
            *points = Points::Failed;
        }
        result.map(|()| self.point.next_chunk)
    }

    fn steps(&self) -> Result<(), AttachmentError> {
        let part = &self.paths.part;
        self.file.sync_data().map_err(io_at("syncing", part))?;
        self.crash.at(Step::ChunkSynced)?;
        drop_cached(&self.file, self.offset);
        resume::write(&self.paths.point_tmp, &self.root, &self.point)?;
        self.crash.at(Step::ResumeWritten)?;
        resume::commit(&self.paths.point_tmp, &self.paths.point)
    }
}

/// Where a test stops the work as a crash would (see [`Step`]); outside
/// tests it holds nothing and never stops.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CrashAt(#[cfg(test)] pub(super) Option<Step>);

impl CrashAt {
    fn at(self, step: Step) -> Result<(), AttachmentError> {
        #[cfg(test)]
        if self.0 == Some(step) {
            return Err(AttachmentError::SimulatedCrash);
        }
        let _ = step;
        Ok(())
    }
}
