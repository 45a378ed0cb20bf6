//! Binding the admin socket: created 0600 from the start, a stale file from
//! a crashed daemon replaced, a live daemon's socket never stolen.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another comityd is serving the admin socket {0}; stop it first")]
    InUse(String),
    #[error("admin socket {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let io = |source| SocketError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io(std::io::Error::other(
                "exists and is not a socket; refusing to replace it (check node.admin_socket)",
            )))
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse(path.display().to_string())),
            // Left by a daemon that did not shut down cleanly.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        },
    }
    // Bind inside a fresh directory only we can enter, restrict the socket,
    // then move it into place: it is never reachable with looser
    // permissions, not even under a temporary name.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Short: the socket's path must fit in sun_path (108 bytes) also here.
    let private = parent.join(format!(".c{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io)?;
    let tmp = private.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result.map_err(io)
}
