//! The admin API: JSON over HTTP/1.1 on a Unix socket (mode 0600), for the
//! `comity` CLI. Never on a network port. Endpoints are under `/v1`.
//!
//! The socket's users are local, but a stuck or hostile client must not
//! hold the daemon: at most [`MAX_CONNECTIONS`] at once (more are answered
//! 503 and closed), and a request's head must arrive within
//! [`HEADER_TIMEOUT`].

mod routes;
mod socket;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::node::Node;
use crate::shutdown::ShutdownSignal;

pub use socket::{bind, SocketError};

/// Admin connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

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
    let state = routes::state(node, config_path);
    // Peers' identity transitions move their pins as they apply, and the
    // file with them (under the same lock as the API's peer edits).
    let applying = tokio::spawn(routes::apply_transitions(state.clone(), stop.clone()));
    let app = routes::router_for(state, body_limit);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.triggered() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                warn!(error = %e, "admin socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            warn!(
                limit = MAX_CONNECTIONS,
                "admin socket: too many connections; refusing one"
            );
            connections.spawn(refuse(stream));
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.triggered() => {
                    // Let a response in progress (an export) finish.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(error = %e, "admin connection ended");
            }
            drop(slot);
        });
    }
    connections.close();
    let _ = applying.await;
    if tokio::time::timeout(Duration::from_secs(10), connections.wait())
        .await
        .is_err()
    {
        warn!("admin connections still open 10 s after the stop");
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Answers a connection beyond the limit with 503 and closes it.
async fn refuse(mut stream: UnixStream) {
    let body =
        r#"{"error":{"code":"busy","message":"too many admin connections at once; try again"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
