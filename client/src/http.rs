//! HTTP/1.1 responses as comityd's admin API sends them, read from any
//! [`BufRead`]: the status line and headers ([`read_head`]), then a body
//! framed by `Content-Length`, by chunks, or by the end of the connection
//! ([`copy_body`]). Everything is bounded, so a confused or hostile peer on
//! the socket cannot make the client allocate without limit.
//!
//! Malformed input is an [`std::io::ErrorKind::InvalidData`] error, a body
//! that ends early an [`std::io::ErrorKind::UnexpectedEof`] one.

use std::io::{self, BufRead, Read, Write};

/// Longest status or header line accepted, in bytes.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines (and trailer lines) accepted in one response.
const MAX_HEADERS: usize = 100;
/// Most interim (1xx) responses skipped before the real one.
const MAX_INTERIM: usize = 10;

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`: exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the server closes the connection.
    UntilClose,
}

/// The status line and the headers that matter to this client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// The server will close the connection after this response, so it
    /// cannot carry another request.
    pub close: bool,
    /// Headers named `comity-…` (lower-cased name, value), at most
    /// [`MAX_HEADERS`] of them as every header.
    pub comity: Vec<(String, String)>,
    /// `Comity-Next-Cursor`: where the next page of a listing starts.
    pub next_cursor: Option<String>,
}

/// Longest `Comity-Next-Cursor` accepted (the daemon's are about 35 bytes).
const MAX_CURSOR: usize = 256;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn cut_short(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg.into())
}

/// One line of at most [`MAX_LINE`] bytes, without its line ending; `None`
/// at the end of the input.
fn read_line(r: &mut impl BufRead, what: &str) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if n as u64 > MAX_LINE {
            return Err(bad(format!("{what} longer than {MAX_LINE} bytes")));
        }
        return Err(cut_short(format!("connection closed in the {what}")));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| bad(format!("{what} is not text")))
}

/// Reads the status line and headers, skipping interim (1xx) responses.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Head> {
    for _ in 0..=MAX_INTERIM {
        let line = read_line(r, "status line")?
            .ok_or_else(|| cut_short("connection closed before the status line"))?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts
            .next()
            .filter(|s| s.len() == 3)
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..600).contains(s));
        let (http10, status) = match (version, status) {
            ("HTTP/1.1", Some(s)) => (false, s),
            ("HTTP/1.0", Some(s)) => (true, s),
            _ => {
                let shown: String = line.chars().take(100).collect();
                return Err(bad(format!("not an HTTP/1.x status line: {shown:?}")));
            }
        };
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = http10;
        let mut comity = Vec::new();
        let mut next_cursor = None;
        for i in 0.. {
            let line = read_line(r, "headers")?
                .ok_or_else(|| cut_short("connection closed in the headers"))?;
            if line.is_empty() {
                break;
            }
            if i == MAX_HEADERS {
                return Err(bad(format!("more than {MAX_HEADERS} header lines")));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("header line without a colon: {line:?}")))?;
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    let n = value
                        .parse::<u64>()
                        .ok()
                        .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| bad("bad content-length"))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(bad("conflicting content-length headers"));
                    }
                    length = Some(n);
                }
                "transfer-encoding" => {
                    chunked = value
                        .rsplit(',')
                        .next()
                        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
                }
                "connection" => {
                    for token in value.split(',').map(str::trim) {
                        if token.eq_ignore_ascii_case("close") {
                            close = true;
                        } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                            close = false;
                        }
                    }
                }
                "comity-next-cursor" => {
                    if value.len() > MAX_CURSOR || !value.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(bad("bad comity-next-cursor header"));
                    }
                    next_cursor = Some(value.to_string());
                }
                n if n.starts_with("comity-") => comity.push((n.to_string(), value.to_string())),
                _ => {}
            }
        }
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let framing = if status == 204 || status == 304 {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        return Ok(Head {
            status,
            comity,
            framing,
            close: close || framing == Framing::UntilClose,
            next_cursor,
        });
    }
    Err(bad(format!("more than {MAX_INTERIM} interim responses")))
}

fn too_large(max: u64) -> io::Error {
    bad(format!("response larger than {max} bytes"))
}

/// Copies a body of at most `max` bytes to `out`; returns its length. A
/// body announced with a length, or in chunks, must arrive whole. After a
/// length-framed or chunked body the reader is at the next response.
pub fn copy_body(
    r: &mut impl BufRead,
    framing: Framing,
    out: &mut dyn Write,
    max: u64,
) -> io::Result<u64> {
    match framing {
        Framing::Length(n) => {
            if n > max {
                return Err(too_large(max));
            }
            let got = io::copy(&mut r.by_ref().take(n), out)?;
            if got != n {
                return Err(cut_short(format!("response cut short: {got} of {n} bytes")));
            }
            Ok(got)
        }
        Framing::UntilClose => {
            let got = io::copy(&mut r.by_ref().take(max.saturating_add(1)), out)?;
            if got > max {
                return Err(too_large(max));
            }
            Ok(got)
        }
        Framing::Chunked => {
            let mut total = 0u64;
            loop {
                let line = read_line(r, "chunk size")?
                    .ok_or_else(|| cut_short("response cut short before a chunk"))?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let n = u64::from_str_radix(size, 16)
                    .ok()
                    .filter(|_| !size.starts_with('+'))
                    .ok_or_else(|| bad(format!("bad chunk size {:?}", size)))?;
                if n == 0 {
                    for _ in 0..=MAX_HEADERS {
                        let trailer = read_line(r, "trailers")?
                            .ok_or_else(|| cut_short("response cut short in its trailers"))?;
                        if trailer.is_empty() {
                            return Ok(total);
                        }
                    }
                    return Err(bad(format!("more than {MAX_HEADERS} trailer lines")));
                }
                total = total
                    .checked_add(n)
                    .filter(|t| *t <= max)
                    .ok_or_else(|| too_large(max))?;
                let got = io::copy(&mut r.by_ref().take(n), out)?;
                if got != n {
                    return Err(cut_short(format!(
                        "response cut short in a chunk: {got} of {n} bytes"
                    )));
                }
                match read_line(r, "chunk end")? {
                    Some(end) if end.is_empty() => {}
                    Some(_) => return Err(bad("chunk longer than its size")),
                    None => return Err(cut_short("response cut short after a chunk")),
                }
            }
        }
    }
}

/// [`copy_body`] into memory.
pub fn read_body(r: &mut impl BufRead, framing: Framing, max: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    copy_body(r, framing, &mut out, max)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(raw: &str, max: u64) -> io::Result<(Head, Vec<u8>, usize)> {
        let mut r = Cursor::new(raw.as_bytes());
        let head = read_head(&mut r)?;
        let body = read_body(&mut r, head.framing, max)?;
        Ok((head, body, raw.len() - r.position() as usize))
    }

    fn kind(raw: &str, max: u64) -> io::ErrorKind {
        match parse(raw, max) {
            Ok(r) => panic!("accepted {raw:?}: {r:?}"),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn content_length_frames_the_body_and_leaves_the_next_response() {
        let raw = "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n\
                   Content-Length: 11\r\n\r\n{\"id\":\"x\"}\nHTTP/1.1 200 OK\r\n";
        let (head, body, left) = parse(raw, 1024).unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(head.framing, Framing::Length(11));
        assert!(!head.close);
        assert_eq!(body, b"{\"id\":\"x\"}\n");
        assert_eq!(left, "HTTP/1.1 200 OK\r\n".len());
    }

    #[test]
    fn chunks_are_joined_and_trailers_consumed() {
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let (head, body, left) = parse(raw, 1024).unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(body, b"hello, world");
        assert_eq!(left, 4);
        // Chunked wins over a length, as RFC 9112 says.
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                   2\r\nab\r\n0\r\n\r\n";
        assert_eq!(parse(raw, 1024).unwrap().1, b"ab");
    }

    #[test]
    fn no_length_means_until_close() {
        let raw = "HTTP/1.1 200 OK\r\n\r\nall of it";
        let (head, body, _) = parse(raw, 1024).unwrap();
        assert_eq!(head.framing, Framing::UntilClose);
        assert!(head.close, "the connection cannot be reused");
        assert_eq!(body, b"all of it");
        let (head, _, _) = parse(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            0,
        )
        .unwrap();
        assert!(head.close);
        let (head, _, _) = parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0).unwrap();
        assert!(head.close, "HTTP/1.0 closes unless told otherwise");
    }

    #[test]
    fn interim_responses_are_skipped_and_204_has_no_body() {
        let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (head, body, left) = parse(raw, 1024).unwrap();
        assert_eq!((head.status, body.len(), left), (204, 0, 0));
    }

    #[test]
    fn too_large_bodies_are_refused_whatever_the_framing() {
        let invalid = io::ErrorKind::InvalidData;
        assert_eq!(
            kind(
                "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
                10
            ),
            invalid
        );
        assert_eq!(kind("HTTP/1.1 200 OK\r\n\r\nhello world", 10), invalid);
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n", 10),
            invalid
        );
        // A huge announced chunk is refused before anything is read.
        assert_eq!(
            kind(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
                10
            ),
            invalid
        );
        // Exactly the limit is fine.
        assert!(parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
            10
        )
        .is_ok());
        assert!(parse("HTTP/1.1 200 OK\r\n\r\n0123456789", 10).is_ok());
    }

    #[test]
    fn bodies_cut_short_are_errors() {
        let eof = io::ErrorKind::UnexpectedEof;
        let e = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
            1024,
        )
        .unwrap_err();
        assert_eq!(e.kind(), eof);
        assert!(e.to_string().contains("9 of 100 bytes"), "{e}");
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(kind(&format!("{chunked}a\r\nhello"), 1024), eof);
        assert_eq!(kind(&format!("{chunked}5\r\nhello\r\n"), 1024), eof);
        assert_eq!(kind(&format!("{chunked}5\r\nhello\r\n0\r\n"), 1024), eof);
        assert_eq!(kind("HTTP/1.1 200 OK\r\nContent-Le", 1024), eof);
        assert_eq!(kind("", 1024), eof);
    }

    #[test]
    fn malformed_heads_and_chunks_are_refused() {
        let invalid = io::ErrorKind::InvalidData;
        for raw in [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 99 Low\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        ] {
            assert_eq!(kind(raw, 1024), invalid, "{raw:?}");
        }
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert_eq!(kind(&long, 1024), invalid);
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: 1\r\n".repeat(101));
        assert_eq!(kind(&many, 1024), invalid);
    }
}
