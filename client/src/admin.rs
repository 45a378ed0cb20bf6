//! The admin API client: HTTP/1.1 over the node's Unix socket. Small on
//! purpose: the API is local and JSON only.
//!
//! By default every request has its own connection (`Connection: close`),
//! which is what a command line wants. [`Client::keep_alive`] instead keeps
//! one connection for request after request, so that a load generator costs
//! the node one accept per client rather than one per message.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use crate::http::{self, Head};

/// Largest response accepted by default (an audit export streams to a file
/// instead, see [`Client::download`]).
pub const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// How long a request may wait for the socket by default.
pub const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "comityd is not running (nothing answers on {socket}); start it with `comityd --config {config}`"
    )]
    NotRunning { socket: PathBuf, config: PathBuf },
    #[error("admin socket {socket}: {source}")]
    Io {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from comityd: {0}")]
    BadResponse(String),
    #[error("{0}")]
    BadRequest(String),
}

/// A whole response, whatever its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// Where the next page of a listing starts (`Comity-Next-Cursor`);
    /// `None` on the last page and on answers that are not listings.
    pub next_cursor: Option<String>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`null` if empty).
    pub fn json(&self) -> Result<Value, ClientError> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// The body as JSON if it is JSON, else as a JSON string of its text
    /// (`null` if empty): for tests that look at error bodies of requests
    /// that were malformed on purpose.
    pub fn value(&self) -> Value {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Value::Null;
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }

    /// The JSON body of a 2xx; otherwise the API's error.
    pub fn into_json(self) -> Result<Value, ClientError> {
        if !self.is_success() {
            return Err(api_error(self.status, &self.body));
        }
        self.json()
    }
}

/// A client of one node's admin socket.
///
/// Every method takes `&self`; with [`Client::keep_alive`], callers on
/// several threads take turns on the one connection (give each thread its
/// own client, e.g. a [`Clone`], to have one connection each).
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    /// The config naming the socket, for the hint of [`ClientError::NotRunning`].
    config: PathBuf,
    timeout: Duration,
    max_response: u64,
    keep_alive: bool,
    /// Test hook: once an answer starts to arrive, stop reading and wait
    /// to be killed (see [`Client::stall_before_answer`]).
    stall_before_answer: bool,
    /// The kept-alive connection, between requests.
    conn: Mutex<Option<BufReader<UnixStream>>>,
}

/// How [`Client::post_retried`] tries again when a request's answer did not
/// arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubled before each further one.
    pub first_delay: Duration,
}

impl Default for Retry {
    /// Five tries over about 4 s: long enough for a daemon that a service
    /// manager restarts at once.
    fn default() -> Retry {
        Retry {
            attempts: 5,
            first_delay: Duration::from_millis(250),
        }
    }
}

/// A clone has the same socket and settings, and a connection of its own.
impl Clone for Client {
    fn clone(&self) -> Client {
        Client {
            socket: self.socket.clone(),
            config: self.config.clone(),
            timeout: self.timeout,
            max_response: self.max_response,
            keep_alive: self.keep_alive,
            stall_before_answer: self.stall_before_answer,
            conn: Mutex::new(None),
        }
    }
}

/// Reads the body of a response whose head was read; after it the
/// connection must be at the end of the response.
type ReadBody<'a, T> = dyn FnMut(&mut BufReader<UnixStream>, &Head) -> Result<T, ClientError> + 'a;

/// What went wrong in one exchange, and whether trying again on a fresh
/// connection is safe.
enum Failure {
    /// The connection was found closed before any of the response arrived:
    /// a kept-alive connection the server had closed while idle. The
    /// request was not processed (the server closes only idle connections).
    Stale(ClientError),
    Other(ClientError),
}

impl Failure {
    fn into_error(self) -> ClientError {
        match self {
            Failure::Stale(e) | Failure::Other(e) => e,
        }
    }
}

impl Client {
    /// `socket` as named by the config at `config`.
    pub fn new(socket: PathBuf, config: PathBuf) -> Client {
        Client {
            socket,
            config,
            timeout: TIMEOUT,
            max_response: MAX_RESPONSE,
            keep_alive: false,
            stall_before_answer: false,
            conn: Mutex::new(None),
        }
    }

    /// The socket the config at `config_path` names (the config is loaded
    /// with the process environment, as the daemon loads it).
    pub fn for_config(config_path: &Path) -> Result<Client, comity_config::ConfigError> {
        let config = comity_config::Config::load(config_path)?;
        Ok(Client::new(
            config.node.admin_socket,
            config_path.to_path_buf(),
        ))
    }

    /// Keeps one connection open for request after request (reconnecting
    /// when the server has closed it).
    pub fn keep_alive(mut self) -> Client {
        self.keep_alive = true;
        self
    }

    /// Read and write timeout of the socket (default [`TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Largest response read into memory (default [`MAX_RESPONSE`]).
    pub fn max_response(mut self, max: u64) -> Client {
        self.max_response = max;
        self
    }

    /// For tests of what a client that dies mid-request leaves: after
    /// sending a request, wait until its answer starts to arrive (the node
    /// has done the work), say so on stderr, and then never read it,
    /// sleeping until killed.
    pub fn stall_before_answer(mut self, stall: bool) -> Client {
        self.stall_before_answer = stall;
        self
    }

    pub(crate) fn max_response_len(&self) -> u64 {
        self.max_response
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// GET; the JSON answer of a 2xx, else the API's error.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request("GET", path, None)?.into_json()
    }

    /// GET of one page of a listing: its JSON answer (of a 2xx, else the
    /// API's error) and the cursor of the next page, if there is one.
    pub fn get_page(&self, path: &str) -> Result<(Value, Option<String>), ClientError> {
        let r = self.request("GET", path, None)?;
        let next = r.next_cursor.clone();
        Ok((r.into_json()?, next))
    }

    /// POST of a JSON body; the JSON answer of a 2xx, else the API's error.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.post_bytes(path, body.to_string().as_bytes())
    }

    /// [`Client::post`] of a body already serialised as JSON.
    pub fn post_bytes(&self, path: &str, body: &[u8]) -> Result<Value, ClientError> {
        self.request("POST", path, Some(body))?.into_json()
    }

    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.request("DELETE", path, None)?.into_json()
    }

    /// The body of a 2xx GET as text, whatever its type (an audit export,
    /// a proof file, metrics).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let r = self.request("GET", path, None)?;
        if !r.is_success() {
            return Err(api_error(r.status, &r.body));
        }
        String::from_utf8(r.body)
            .map_err(|_| ClientError::BadResponse(format!("GET {path}: not UTF-8 text")))
    }

    /// POST of any bytes, labelled as JSON; the response whatever its
    /// status (for tests of malformed input).
    pub fn post_raw(&self, path: &str, body: &[u8]) -> Result<Response, ClientError> {
        self.request("POST", path, Some(body))
    }

    /// POST of a JSON body (or none) with `Idempotency-Key: key`, tried
    /// again with the same key while its answer does not arrive (the
    /// connection dropped, the daemon restarted, it was busy): the node
    /// makes the message at most once per key, and answers a retry with
    /// what the first try made. Any answer of the API ends the tries.
    pub fn post_retried(
        &self,
        path: &str,
        body: Option<&Value>,
        key: &str,
        retry: Retry,
    ) -> Result<Value, ClientError> {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::BadRequest(format!(
                "idempotency key {key:?}: use visible ASCII characters only"
            )));
        }
        let body = body.map(Value::to_string);
        let headers = [("Idempotency-Key", key)];
        let mut delay = retry.first_delay;
        let mut tries = 1;
        loop {
            let result = self
                .request_with("POST", path, &headers, body.as_deref().map(str::as_bytes))
                .and_then(Response::into_json);
            match result {
                // Nothing was sent: no daemon is there to retry for.
                Err(e @ ClientError::NotRunning { .. }) if tries == 1 => return Err(e),
                Err(e) if tries < retry.attempts && answer_missing(&e) => {
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// One request; the whole response whatever its status. A `body` is
    /// sent as `application/json`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        self.request_with(method, path, &[], body)
    }

    /// [`Client::request`] with more request headers.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let max = self.max_response;
        self.exchange(method, path, headers, body, &mut |r, head| {
            let body = http::read_body(r, head.framing, max).map_err(|e| self.read_error(e))?;
            Ok(Response {
                status: head.status,
                body,
                next_cursor: head.next_cursor.clone(),
            })
        })
    }

    /// GET whose body, at most `max` bytes, is streamed to `out` (for large
    /// exports); returns its length.
    pub fn download(&self, path: &str, out: &mut dyn Write, max: u64) -> Result<u64, ClientError> {
        let limit = self.max_response;
        self.exchange("GET", path, &[], None, &mut |r, head| {
            if !(200..300).contains(&head.status) {
                let body =
                    http::read_body(r, head.framing, limit).map_err(|e| self.read_error(e))?;
                return Err(api_error(head.status, &body));
            }
            http::copy_body(r, head.framing, out, max).map_err(|e| self.read_error(e))
        })
    }

    /// POST of a JSON body whose 2xx answer, at most `max` bytes, is
    /// streamed to `out` (a backup); returns its length and the answer's
    /// `comity-…` headers.
    pub fn download_post(
        &self,
        path: &str,
        body: &Value,
        out: &mut dyn Write,
        max: u64,
    ) -> Result<(u64, Vec<(String, String)>), ClientError> {
        let limit = self.max_response;
        let body = body.to_string();
        self.exchange("POST", path, &[], Some(body.as_bytes()), &mut |r, head| {
            if !(200..300).contains(&head.status) {
                let body =
                    http::read_body(r, head.framing, limit).map_err(|e| self.read_error(e))?;
                return Err(api_error(head.status, &body));
            }
            let n = http::copy_body(r, head.framing, out, max).map_err(|e| self.read_error(e))?;
            Ok((n, head.comity.clone()))
        })
    }

    /// Sends the request and hands the head to `read` for the body. With
    /// keep-alive, reuses the connection if there is one and retries once,
    /// on a fresh one, if it turns out to have been closed by the server.
    fn exchange<T>(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        read: &mut ReadBody<'_, T>,
    ) -> Result<T, ClientError> {
        let request = self.encode(method, path, headers, body);
        if !self.keep_alive {
            let mut conn = self.connect()?;
            return self
                .once(&mut conn, &request, read)
                .map(|(v, _)| v)
                .map_err(Failure::into_error);
        }
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut conn, reused) = match slot.take() {
            Some(c) => (c, true),
            None => (self.connect()?, false),
        };
        let result = match self.once(&mut conn, &request, read) {
            Err(Failure::Stale(_)) if reused => {
                conn = self.connect()?;
                self.once(&mut conn, &request, read)
            }
            other => other,
        };
        match result {
            Ok((v, reusable)) => {
                if reusable {
                    *slot = Some(conn);
                }
                Ok(v)
            }
            Err(f) => Err(f.into_error()),
        }
    }

    /// One request and response on `conn`; whether `conn` can carry
    /// another.
    fn once<T>(
        &self,
        conn: &mut BufReader<UnixStream>,
        request: &[u8],
        read: &mut ReadBody<'_, T>,
    ) -> Result<(T, bool), Failure> {
        let stale = |e: std::io::Error| {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
            if matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted) {
                Failure::Stale(self.io(e))
            } else {
                Failure::Other(self.io(e))
            }
        };
        conn.get_mut().write_all(request).map_err(stale)?;
        // Nothing at all before the end: the server closed the connection
        // without reading the request.
        if conn.fill_buf().map_err(stale)?.is_empty() {
            return Err(Failure::Stale(ClientError::BadResponse(
                "connection closed before the status line".into(),
            )));
        }
        if self.stall_before_answer {
            eprintln!("comity: stalled before reading the answer");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let head = http::read_head(conn).map_err(|e| Failure::Other(self.read_error(e)))?;
        let value = read(conn, &head).map_err(Failure::Other)?;
        Ok((value, self.keep_alive && !head.close))
    }

    fn encode(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut req = Vec::with_capacity(160 + body.map_or(0, <[u8]>::len));
        req.extend_from_slice(method.as_bytes());
        req.push(b' ');
        req.extend_from_slice(path.as_bytes());
        req.extend_from_slice(b" HTTP/1.1\r\nHost: comity\r\n");
        if !self.keep_alive {
            req.extend_from_slice(b"Connection: close\r\n");
        }
        for (name, value) in headers {
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(value.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        if let Some(b) = body {
            req.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
            req.extend_from_slice(b.len().to_string().as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        if let Some(b) = body {
            req.extend_from_slice(b);
        }
        req
    }

    pub(crate) fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            socket: self.socket.clone(),
            source,
        }
    }

    /// A malformed or truncated answer is a bad response; anything else
    /// (a timeout, a reset) is an I/O error on the socket.
    pub(crate) fn read_error(&self, e: std::io::Error) -> ClientError {
        match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                ClientError::BadResponse(e.to_string())
            }
            _ => self.io(e),
        }
    }

    pub(crate) fn connect(&self) -> Result<BufReader<UnixStream>, ClientError> {
        let s = UnixStream::connect(&self.socket).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning {
                    socket: self.socket.clone(),
                    config: self.config.clone(),
                }
            }
            _ => self.io(e),
        })?;
        s.set_read_timeout(Some(self.timeout))
            .and_then(|()| s.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.io(e))?;
        Ok(BufReader::with_capacity(64 * 1024, s))
    }
}

/// Whether `e` means that no answer of the API arrived, so that the request
/// may or may not have been carried out: no connection, a connection that
/// broke or timed out, an answer cut short, or 503 (too many connections).
fn answer_missing(e: &ClientError) -> bool {
    match e {
        ClientError::NotRunning { .. } | ClientError::Io { .. } | ClientError::BadResponse(_) => {
            true
        }
        ClientError::Api { status, .. } => *status == 503,
        ClientError::BadRequest(_) => false,
    }
}

/// The API's error (`{"error": {"code", "message"}}`), or the status and
/// the start of the body if the answer is not in that format.
fn api_error(status: u16, body: &[u8]) -> ClientError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    ClientError::Api {
        status,
        code: v["error"]["code"].as_str().unwrap_or("http").to_string(),
        message: v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    /// A server that answers each accepted connection's requests with the
    /// canned responses, in order; returns how many connections it saw.
    fn serve(
        dir: &Path,
        per_connection: Vec<Vec<String>>,
    ) -> (PathBuf, std::thread::JoinHandle<usize>) {
        let path = dir.join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let mut seen = 0;
            for answers in per_connection {
                let (mut s, _) = listener.accept().unwrap();
                seen += 1;
                for a in answers {
                    // Read one request head (these tests send no bodies).
                    let mut head = Vec::new();
                    let mut byte = [0u8];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read(&mut byte).unwrap() == 0 {
                            break;
                        }
                        head.push(byte[0]);
                    }
                    s.write_all(a.as_bytes()).unwrap();
                }
            }
            seen
        });
        (path, handle)
    }

    fn answer(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn keep_alive_reuses_one_connection_and_reconnects_once_closed() {
        let dir = tempfile::tempdir().unwrap();
        // Three answers on the first connection, which the server then
        // drops; the fourth request must go through on a second one.
        let ok = || answer("200 OK", "{}");
        let (sock, server) = serve(dir.path(), vec![vec![ok(), ok(), ok()], vec![ok()]]);
        let c = Client::new(sock, "c.toml".into()).keep_alive();
        for _ in 0..4 {
            assert_eq!(c.get("/v1/peers").unwrap(), serde_json::json!({}));
        }
        assert_eq!(server.join().unwrap(), 2);
    }

    #[test]
    fn errors_say_what_happened() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::new(dir.path().join("none.sock"), "/etc/c.toml".into());
        let e = c.get("/v1/node").unwrap_err();
        assert!(matches!(e, ClientError::NotRunning { .. }), "{e}");
        assert!(
            e.to_string().contains("comityd --config /etc/c.toml"),
            "{e}"
        );

        let api = answer(
            "404 Not Found",
            r#"{"error":{"code":"not-found","message":"no such id"}}"#,
        );
        let (sock, server) = serve(
            dir.path(),
            vec![
                vec![api],
                vec!["HTTP/1.1 500 Oops\r\n\r\nplain text".into()],
                vec!["garbage\r\n".into()],
            ],
        );
        let c = Client::new(sock, "c.toml".into());
        match c.get("/v1/messages/x").unwrap_err() {
            ClientError::Api {
                status,
                code,
                message,
            } => {
                assert_eq!(
                    (status, code.as_str(), message.as_str()),
                    (404, "not-found", "no such id")
                );
            }
            e => panic!("{e}"),
        }
        let e = c.request("GET", "/", None).unwrap();
        assert_eq!((e.status, e.value()), (500, Value::from("plain text")));
        assert!(matches!(
            c.get("/").unwrap_err(),
            ClientError::BadResponse(_)
        ));
        server.join().unwrap();
    }

    #[test]
    fn a_keyed_post_fails_at_once_without_a_daemon_and_refuses_a_key_it_cannot_send() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::new(dir.path().join("none.sock"), "c.toml".into());
        let started = std::time::Instant::now();
        let e = c
            .post_retried("/v1/messages", None, "k", Retry::default())
            .unwrap_err();
        assert!(matches!(e, ClientError::NotRunning { .. }), "{e}");
        assert!(
            started.elapsed() < Retry::default().first_delay,
            "it waited for a daemon that was never there"
        );
        let e = c
            .post_retried("/v1/messages", None, "a\r\nX-Injected: 1", Retry::default())
            .unwrap_err();
        assert!(matches!(e, ClientError::BadRequest(_)), "{e}");
    }

    #[test]
    fn downloads_are_streamed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let chunked = || {
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
                .to_string()
        };
        let (sock, server) = serve(dir.path(), vec![vec![chunked()], vec![chunked()]]);
        let c = Client::new(sock, "c.toml".into());
        let mut out = Vec::new();
        assert_eq!(c.download("/v1/audit/export", &mut out, 6).unwrap(), 6);
        assert_eq!(out, b"abcdef");
        let e = c
            .download("/v1/audit/export", &mut Vec::new(), 5)
            .unwrap_err();
        assert!(e.to_string().contains("larger than 5 bytes"), "{e}");
        server.join().unwrap();
    }
}
