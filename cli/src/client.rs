//! The admin API client: HTTP/1.1 over the node's Unix socket, one request
//! per connection. Small on purpose: the API is local and JSON only.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Largest response accepted (an audit export streams to a file instead).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

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
}

pub struct Client {
    socket: PathBuf,
    config: PathBuf,
}

impl Client {
    pub fn new(socket: PathBuf, config: PathBuf) -> Client {
        Client { socket, config }
    }

    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.request("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.request("DELETE", path, None)
    }

    /// GET whose body, at most `max` bytes, is streamed to `out` (for large
    /// exports).
    pub fn download(&self, path: &str, out: &mut dyn Write, max: u64) -> Result<u64, ClientError> {
        let (status, mut reader) = self.send("GET", path, None)?;
        if status != 200 {
            let body = read_body(&mut reader.0, &reader.1)?;
            return Err(api_error(status, &body));
        }
        copy_body(&mut reader.0, &reader.1, out, max).map_err(|e| self.io(e))
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            socket: self.socket.clone(),
            source,
        }
    }

    fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.socket).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning {
                    socket: self.socket.clone(),
                    config: self.config.clone(),
                }
            }
            _ => self.io(e),
        })
    }

    #[allow(clippy::type_complexity)]
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, (BufReader<UnixStream>, Framing)), ClientError> {
        let mut s = self.connect()?;
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| self.io(e))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: comity\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())
            .and_then(|()| s.write_all(body.as_bytes()))
            .map_err(|e| self.io(e))?;
        let mut reader = BufReader::new(s);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).map_err(|e| self.io(e))?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                ClientError::BadResponse(status_line.trim().chars().take(100).collect())
            })?;
        let mut framing = Framing::UntilClose;
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).map_err(|e| self.io(e))?;
            if n == 0 || line == "\r\n" || line == "\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                let len = v
                    .trim()
                    .parse()
                    .map_err(|_| ClientError::BadResponse("bad content-length".into()))?;
                framing = Framing::Length(len);
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                framing = Framing::Chunked;
            }
        }
        Ok((status, (reader, framing)))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, (mut reader, framing)) = self.send(method, path, body)?;
        let bytes = read_body(&mut reader, &framing)?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }
}

pub enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

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

fn read_body(
    reader: &mut BufReader<UnixStream>,
    framing: &Framing,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    copy_body(reader, framing, &mut out, MAX_RESPONSE as u64)
        .map_err(|e| ClientError::BadResponse(e.to_string()))?;
    Ok(out)
}

/// Copies a response body of at most `max` bytes; a body announced with a
/// length must arrive whole.
fn copy_body(
    reader: &mut BufReader<UnixStream>,
    framing: &Framing,
    out: &mut dyn Write,
    max: u64,
) -> std::io::Result<u64> {
    let too_big = || std::io::Error::other(format!("response larger than {max} bytes"));
    match framing {
        Framing::Length(n) => {
            let n = *n as u64;
            if n > max {
                return Err(too_big());
            }
            let got = std::io::copy(&mut reader.take(n), out)?;
            if got != n {
                return Err(std::io::Error::other(format!(
                    "response cut short: {got} of {n} bytes"
                )));
            }
            Ok(got)
        }
        Framing::UntilClose => {
            let got = std::io::copy(&mut reader.take(max.saturating_add(1)), out)?;
            if got > max {
                return Err(too_big());
            }
            Ok(got)
        }
        Framing::Chunked => {
            let mut total = 0u64;
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                if n == 0 {
                    return Ok(total);
                }
                total = total
                    .checked_add(n)
                    .filter(|t| *t <= max)
                    .ok_or_else(too_big)?;
                std::io::copy(&mut reader.by_ref().take(n), out)?;
                let mut crlf = String::new();
                reader.read_line(&mut crlf)?;
            }
        }
    }
}

/// The socket path a config names, with the config for error messages.
pub fn for_config(config_path: &Path) -> anyhow::Result<Client> {
    let config = comity_config::Config::load(config_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    Ok(Client::new(
        config.node.admin_socket,
        config_path.to_path_buf(),
    ))
}
