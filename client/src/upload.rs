//! Uploading a file to the node (`POST /v1/attachments`) as the raw request
//! body, streamed from the file: never the whole file in memory.

use std::io::{self, BufRead, Cursor, Read, Write};

use serde_json::Value;

use crate::admin::{Client, ClientError, Response};
use crate::http;

/// Bytes read from the file and written to the socket at a time.
const PIECE: usize = 256 * 1024;
/// Longest status line or header line of an interim response read.
const MAX_LINE: u64 = 8 * 1024;

/// `/v1/attachments?name=…&type=…`, the values percent-encoded as UTF-8.
pub fn attachment_path(name: &str, media_type: &str) -> String {
    format!(
        "/v1/attachments?name={}&type={}",
        percent_encode(name),
        percent_encode(media_type)
    )
}

/// Every byte but the unreserved characters of RFC 3986 as `%XX`: a URL
/// query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// POSTs `len` bytes from `source` to `path` as the raw body, with
    /// `Expect: 100-continue`: the body is sent only once the node has
    /// checked what the request declares, so a refusal (too large, no
    /// room) costs no data. `progress` hears the bytes sent so far. The
    /// JSON answer of a 2xx, else the API's error.
    pub fn upload(
        &self,
        path: &str,
        source: &mut dyn Read,
        len: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Value, ClientError> {
        let mut conn = self.connect()?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: comity\r\nConnection: close\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
             Expect: 100-continue\r\n\r\n"
        );
        let mut socket = NoSigPipe(socket2::Socket::from(
            conn.get_ref().try_clone().map_err(|e| self.io(e))?,
        ));
        socket.write_all(head.as_bytes()).map_err(|e| self.io(e))?;
        let mut first = status_line(&mut conn).map_err(|e| self.read_error(e))?;
        let mut unsent = None;
        if first.starts_with(b"HTTP/1.1 100") || first.starts_with(b"HTTP/1.0 100") {
            skip_headers(&mut conn).map_err(|e| self.read_error(e))?;
            match send_body(&mut socket, source, len, progress) {
                Ok(()) => {}
                Err(Sending::Source(e)) => return Err(e),
                // The node stopped reading (it refused the data part way,
                // e.g. the disk filled): its answer may still be there.
                Err(Sending::Socket(e)) => unsent = Some(e),
            }
            first = Vec::new();
        }
        let mut r = Cursor::new(first).chain(conn);
        let answer = http::read_head(&mut r).and_then(|head| {
            let body = http::read_body(&mut r, head.framing, self.max_response_len())?;
            Ok(Response {
                status: head.status,
                body,
                next_cursor: None,
            })
        });
        match (answer, unsent) {
            (Ok(response), _) => response.into_json(),
            (Err(_), Some(e)) => Err(self.io(e)),
            (Err(e), None) => Err(self.read_error(e)),
        }
    }
}

/// Writes with `MSG_NOSIGNAL`: a peer that closed gives `EPIPE`, not the
/// default SIGPIPE that would end the process without a word.
struct NoSigPipe(socket2::Socket);

impl Write for NoSigPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send_with_flags(buf, libc::MSG_NOSIGNAL)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Sending {
    Source(ClientError),
    Socket(io::Error),
}

fn send_body(
    socket: &mut impl Write,
    source: &mut dyn Read,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), Sending> {
    let mut buf = vec![0u8; PIECE];
    let mut sent = 0u64;
    while sent < len {
        let want = usize::try_from(len - sent).unwrap_or(PIECE).min(PIECE);
        let n = match source.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Sending::Source(ClientError::BadRequest(format!(
                    "the file ended after {sent} of its {len} bytes: did it change while \
                     being uploaded?"
                ))))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Sending::Source(ClientError::BadRequest(format!(
                    "reading the file: {e}"
                ))))
            }
        };
        socket.write_all(&buf[..n]).map_err(Sending::Socket)?;
        sent += n as u64;
        progress(sent);
    }
    socket.flush().map_err(Sending::Socket)
}

/// The first line of the answer, line ending included.
fn status_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
    Ok(line)
}

/// Reads the headers of an interim response up to its blank line.
fn skip_headers(r: &mut impl BufRead) -> io::Result<()> {
    loop {
        let line = status_line(r)?;
        if line.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in an interim response",
            ));
        }
        if line == b"\r\n" || line == b"\n" {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            attachment_path("Relevé 2024 & co.pdf", "application/pdf"),
            "/v1/attachments?name=Relev%C3%A9%202024%20%26%20co.pdf&type=application%2Fpdf"
        );
    }
}
