//! The admin API: JSON over HTTP/1.1 on a Unix socket (mode 0600), for the
//! `comity` CLI. Never on a network port. Endpoints are under `/v1`.

mod routes;
mod socket;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use crate::node::Node;
use crate::shutdown::ShutdownSignal;

pub use socket::{bind, SocketError};

/// Serves the admin API for `node` on `path` until `stop` fires.
/// Binding is separate (see [`bind`]) so that a daemon that cannot own its
/// socket stops before it starts anything else.
pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::UnixListener,
    path: PathBuf,
    config_path: Option<PathBuf>,
    mut stop: ShutdownSignal,
) -> Result<(), SocketError> {
    let path = path.as_path();
    info!(socket = %path.display(), "admin API listening");
    let body_limit = node.config().limits.max_message_len() * 2 + 64 * 1024;
    let app = routes::router(node, config_path, body_limit);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.triggered().await })
        .await;
    let _ = std::fs::remove_file(path);
    if let Err(e) = result {
        warn!(error = %e, "admin API stopped with an error");
    }
    Ok(())
}
