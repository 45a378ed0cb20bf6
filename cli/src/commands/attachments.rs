//! `comity attachments MSGID` and `comity attachment get`: what a message
//! carries, and reading one attachment out to a new file.
//!
//! Names come from the sender: they are printed escaped
//! (`comity_protocol::attachment::escaped`) and never used as a path. The
//! file written is the one `--out` names, created new.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use comity_client::Client;
use comity_protocol::attachment::escaped;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::MessageArg;
use crate::args::AttachmentCommand;
use crate::output::{self, bytes, duration, text};
use crate::progress::{percent, Progress};

pub fn list(client: &Client, id: &str, json: bool) -> Result<()> {
    let arg = MessageArg::parse(id)?;
    let v = client.get(&arg.path("/v1/messages", "/attachments"))?;
    if json {
        output::json(&v);
        return Ok(());
    }
    if v["arriving"] == true {
        println!(
            "message {} from {}: still arriving (it is in the inbox once every attachment is complete)",
            text(&v["id"]),
            text(&v["peer"])
        );
    }
    let items = array(&v["attachments"]);
    if items.is_empty() {
        println!("message {} has no attachments", text(&v["id"]));
        return Ok(());
    }
    print_table(items);
    Ok(())
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The attachments as a table (also `comity show`'s section).
pub(crate) fn print_table(items: &[Value]) {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    output::table(&["#", "name", "size", "state", "progress", "sha256"], &rows);
}

fn row(a: &Value) -> Vec<String> {
    let size = a["size"].as_u64().unwrap_or(0);
    vec![
        text(&a["index"]),
        shown_name(a),
        format!("{} ({size} bytes)", bytes(size)),
        text(&a["state"]),
        progress_cell(a),
        text(&a["sha256"]),
    ]
}

/// The sender's name, escaped, in quotes (so edges and spaces show).
fn shown_name(a: &Value) -> String {
    format!("\"{}\"", escaped(a["name"].as_str().unwrap_or_default()))
}

/// `42% 1.2 MiB/s ETA 3m 2s` while moving; empty when there is nothing to
/// say (queued, or done).
fn progress_cell(a: &Value) -> String {
    let state = a["state"].as_str().unwrap_or_default();
    if !matches!(state, "sending" | "receiving") {
        return String::new();
    }
    let size = a["size"].as_u64().unwrap_or(0);
    let done = a["bytes_done"].as_u64().unwrap_or(0);
    let mut cell = format!("{}% of {}", percent(done, size), bytes(size));
    match a["rate"].as_f64() {
        Some(rate) if rate >= 1.0 => {
            cell.push_str(&format!(" at {}/s", bytes(rate as u64)));
            if let Some(eta) = a["eta_seconds"].as_u64() {
                cell.push_str(&format!(" ETA {}", duration(eta)));
            }
        }
        _ => cell.push_str(" (no data moving now)"),
    }
    cell
}

pub fn run(client: &Client, cmd: AttachmentCommand) -> Result<()> {
    match cmd {
        AttachmentCommand::Get {
            id,
            attachment,
            out,
            index,
            json,
        } => get(client, &id, &attachment, &out, index, json),
    }
}

/// The attachment `which` names: a name, exactly, unless `by_index`; else
/// an index.
fn choose<'a>(items: &'a [Value], which: &str, by_index: bool) -> Result<&'a Value> {
    if !by_index {
        if let Some(a) = items.iter().find(|a| a["name"].as_str() == Some(which)) {
            return Ok(a);
        }
    }
    let as_index = which
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| which.parse::<u64>().ok())
        .flatten();
    if let Some(i) = as_index {
        if let Some(a) = items.iter().find(|a| a["index"].as_u64() == Some(i)) {
            return Ok(a);
        }
    }
    let known = items
        .iter()
        .map(|a| format!("  {}  {}", text(&a["index"]), shown_name(a)))
        .collect::<Vec<_>>()
        .join("\n");
    let asked = if by_index {
        format!("index {:?}", escaped(which))
    } else {
        format!("\"{}\"", escaped(which))
    };
    if items.is_empty() {
        bail!("the message has no attachments (asked for {asked})");
    }
    bail!("the message has no attachment {asked}; give a name exactly as listed, or its index:\n{known}")
}

fn get(
    client: &Client,
    id: &str,
    which: &str,
    out: &Path,
    by_index: bool,
    json: bool,
) -> Result<()> {
    let arg = MessageArg::parse(id)?;
    let listing = client.get(&arg.path("/v1/messages", "/attachments"))?;
    let a = choose(array(&listing["attachments"]), which, by_index)?;
    let (Some(index), Some(size), Some(sha256)) = (
        a["index"].as_u64(),
        a["size"].as_u64(),
        a["sha256"].as_str(),
    ) else {
        bail!("unexpected answer from comityd: an attachment without index, size or sha256");
    };
    let label = format!("attachment {index} {}", shown_name(a));
    if a["state"] == "receiving" {
        bail!(
            "{label} is still arriving ({}% of {}): read it out once `comity attachments {id}` shows it complete",
            percent(a["bytes_done"].as_u64().unwrap_or(0), size),
            bytes(size)
        );
    }
    refuse_existing(out)?;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A hidden temporary file beside `out`, named after `out` (never after
    // the sender's name), 0600, removed on any failure.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.",
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ))
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let mut progress = Progress::new(size, &label, json);
    let mut w = Hashing {
        file: BufWriter::with_capacity(1 << 20, tmp.as_file()),
        sha: Sha256::new(),
        written: 0,
        progress: &mut progress,
    };
    let path = arg.path("/v1/messages", &format!("/attachments/{index}/content"));
    let fetched = client.download(&path, &mut w, size);
    let flushed = w.file.flush();
    let written = w.written;
    let digest = hex::encode(w.sha.finalize_reset());
    drop(w);
    progress.finish();
    let outcome = fetched
        .map_err(anyhow::Error::from)
        .and_then(|_| flushed.context("writing the file"));
    if let Err(e) = outcome {
        bail!(
            "{label}: the read-out failed after {written} of {size} bytes: {e}; nothing was written to {} \
             (the node recorded the read-out, and a stored chunk that failed its check, in its audit log)",
            out.display()
        );
    }
    if written != size {
        bail!(
            "{label}: {written} bytes arrived, but the signed size is {size}; nothing was written to {}",
            out.display()
        );
    }
    if digest != sha256 {
        bail!(
            "{label}: the SHA-256 of what arrived is {digest}, but the signed manifest says {sha256}; nothing was written to {}",
            out.display()
        );
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", out.display()))?;
    // Linked into place only if nothing is there now (a file or a link
    // planted meanwhile makes this fail, and the temporary file goes).
    tmp.persist_noclobber(out).map_err(|e| {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} appeared while the attachment was read out: refusing to overwrite it; nothing was written",
                out.display()
            )
        } else {
            anyhow::Error::new(e.error).context(format!("cannot write {}", out.display()))
        }
    })?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    if json {
        output::json(&json!({
            "id": listing["id"],
            "peer": listing["peer"],
            "index": index,
            "name": a["name"],
            "size": size,
            "sha256": digest,
            "path": out,
            "verified": true,
        }));
    } else {
        println!(
            "{label} written to {}: {} ({size} bytes), SHA-256 {digest}, as signed by the sender",
            out.display(),
            bytes(size)
        );
    }
    Ok(())
}

/// Refuses a path where anything is, a link (even a dangling one)
/// included, before anything is fetched.
fn refuse_existing(out: &Path) -> Result<()> {
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.file_type().is_symlink() => bail!(
            "{} is a symbolic link: refusing to write through it; choose a new path",
            out.display()
        ),
        Ok(_) => bail!(
            "{} already exists: refusing to overwrite it; choose a new path",
            out.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot check {}", out.display()))),
    }
}

/// Writes through to the file, hashing and counting what passes.
struct Hashing<'a, W: Write> {
    file: W,
    sha: Sha256,
    written: u64,
    progress: &'a mut Progress,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Value> {
        vec![
            json!({"index": 0, "name": "1", "size": 3, "sha256": "aa", "state": "complete"}),
            json!({"index": 1, "name": "../../etc/passwd", "size": 3, "sha256": "bb", "state": "complete"}),
            json!({"index": 2, "name": "report\u{202e}fdp.exe", "size": 3, "sha256": "cc", "state": "receiving", "bytes_done": 1, "rate": 2048.0, "eta_seconds": 61}),
        ]
    }

    #[test]
    fn a_name_wins_over_an_index_unless_index_is_asked_for() {
        let items = items();
        assert_eq!(choose(&items, "1", false).unwrap()["index"], 0);
        assert_eq!(choose(&items, "1", true).unwrap()["index"], 1);
        assert_eq!(choose(&items, "2", false).unwrap()["index"], 2);
        assert_eq!(
            choose(&items, "../../etc/passwd", false).unwrap()["index"],
            1
        );
        // Matching is exact: no case folding, no trimming, no path logic.
        assert!(choose(&items, "../../ETC/passwd", false).is_err());
        assert!(choose(&items, "passwd", false).is_err());
        assert!(choose(&items, " 1", false).is_err());
        assert!(choose(&items, "+1", false).is_err());
        assert!(choose(&items, "9", false).is_err());
    }

    #[test]
    fn names_are_shown_escaped_in_tables_and_errors() {
        let items = items();
        assert_eq!(shown_name(&items[2]), "\"report\\u{202e}fdp.exe\"");
        let e = choose(&items, "evil\u{1b}[2J", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"evil\\u{1b}[2J\""), "{e}");
        assert!(e.contains("report\\u{202e}fdp.exe"), "{e}");
        assert!(!e.contains('\u{202e}') && !e.contains('\u{1b}'), "{e}");
        let r = row(&items[2]);
        assert_eq!(r[1], "\"report\\u{202e}fdp.exe\"");
        assert_eq!(r[4], "33% of 3 B at 2.0 KiB/s ETA 1m 1s");
        assert_eq!(row(&items[0])[2], "3 B (3 bytes)");
        assert_eq!(row(&items[0])[4], "");
    }

    #[test]
    fn an_existing_path_or_a_link_is_refused_before_fetching() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("exists");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(refuse_existing(&file)
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        assert!(refuse_existing(&link)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        assert!(refuse_existing(&dir.path().join("new")).is_ok());
    }
}
