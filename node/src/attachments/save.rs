//! Writing retrieved plaintext to a path the operator chose
//! (`comity attachment get … --out PATH`): never over an existing file,
//! never through a link, 0600, and only complete files appear.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::error::{io_at, AttachmentError};
use super::layout::{create_new_private, exists, remove_if_present, StoredId};

/// Copies `source` to a new file at `out`. The data goes to a temporary
/// file beside it, is synced, and is then linked to `out`, which fails if
/// anything (a link included) appeared there meanwhile: no moment exists
/// at which `out` holds part of the data or was overwritten. A source
/// error (a chunk that failed its check) leaves nothing behind. Returns
/// the bytes written.
pub fn save_new_file(mut source: impl Read, out: &Path) -> Result<u64, AttachmentError> {
    if exists(out)? {
        return Err(AttachmentError::Exists {
            path: out.to_path_buf(),
        });
    }
    let tmp = temp_beside(out);
    let result: Result<u64, AttachmentError> = (|| {
        let mut file = create_new_private(&tmp)?;
        let n = io::copy(&mut source, &mut file).map_err(io_at("writing", &tmp))?;
        file.flush().map_err(io_at("writing", &tmp))?;
        file.sync_all().map_err(io_at("syncing", &tmp))?;
        std::fs::hard_link(&tmp, out).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => AttachmentError::Exists {
                path: out.to_path_buf(),
            },
            _ => io_at("linking", out)(e),
        })?;
        Ok(n)
    })();
    if let Err(e) = remove_if_present(&tmp) {
        tracing::warn!(error = %e, "cannot remove a temporary file");
    }
    let n = result?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        super::layout::sync_dir(parent)?;
    }
    Ok(n)
}

/// `.NAME.RANDOM.tmp` in `out`'s directory (a hidden name the operator's
/// tools skip, on the same file system so the link works).
fn temp_beside(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.{}.tmp", StoredId::random()))
}
