//! A minimal HTTP/1.1 client for the admin API on its Unix socket, with
//! keep-alive: one connection serves many requests, so the load generator
//! costs the node one accept per client, not one per message.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Largest response read (message listings of a long run are big).
const MAX_BODY: usize = 512 * 1024 * 1024;

pub struct Conn {
    socket: PathBuf,
    stream: Option<BufReader<UnixStream>>,
}

impl Conn {
    pub fn new(socket: &Path) -> Conn {
        Conn {
            socket: socket.to_path_buf(),
            stream: None,
        }
    }

    fn stream(&mut self) -> Result<&mut BufReader<UnixStream>> {
        if self.stream.is_none() {
            let s = UnixStream::connect(&self.socket)
                .with_context(|| format!("connecting to {}", self.socket.display()))?;
            s.set_read_timeout(Some(Duration::from_secs(120)))?;
            self.stream = Some(BufReader::with_capacity(64 * 1024, s));
        }
        self.stream.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    /// One request; reconnects once if a kept-alive connection was closed
    /// by the server between requests.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>)> {
        match self.try_request(method, path, body) {
            Ok(r) => Ok(r),
            Err(_) if self.stream.is_none() => {
                // The error dropped the connection: a fresh one, once.
                self.try_request(method, path, body)
            }
            Err(e) => Err(e),
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>)> {
        let result = self.exchange(method, path, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>)> {
        let s = self.stream()?;
        let mut req = Vec::with_capacity(256 + body.map_or(0, <[u8]>::len));
        write!(req, "{method} {path} HTTP/1.1\r\nHost: comity\r\n")?;
        if let Some(b) = body {
            write!(
                req,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )?;
        }
        req.extend_from_slice(b"\r\n");
        if let Some(b) = body {
            req.extend_from_slice(b);
        }
        s.get_mut().write_all(&req)?;

        let mut line = String::new();
        if s.read_line(&mut line)? == 0 {
            bail!("connection closed before the status line");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            if s.read_line(&mut line)? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = Some(v.parse().context("content-length")?),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                s.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("chunk size {line:?}"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        line.clear();
                        if s.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                if out.len() + size > MAX_BODY {
                    bail!("response larger than {MAX_BODY} bytes");
                }
                let start = out.len();
                out.resize(start + size, 0);
                s.read_exact(&mut out[start..])?;
                line.clear();
                s.read_line(&mut line)?;
            }
        } else if let Some(n) = length {
            if n > MAX_BODY {
                bail!("response larger than {MAX_BODY} bytes");
            }
            out.resize(n, 0);
            s.read_exact(&mut out)?;
        } else {
            s.read_to_end(&mut out)?;
            close = true;
        }
        if close {
            self.stream = None;
        }
        Ok((status, out))
    }

    pub fn get_json(&mut self, path: &str) -> Result<Value> {
        let (status, body) = self.request("GET", path, None)?;
        if status != 200 {
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
    }

    /// POSTs a JSON body; returns the parsed answer of a 2xx.
    pub fn post_json(&mut self, path: &str, body: &[u8]) -> Result<Value> {
        let (status, answer) = self.request("POST", path, Some(body))?;
        if !(200..300).contains(&status) {
            bail!(
                "POST {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        serde_json::from_slice(&answer).with_context(|| format!("POST {path}: not JSON"))
    }
}
