//! `--attach FILE` of `send` and `reply`: each file uploaded to the node,
//! streamed, before the message that names the stored copies is submitted.
//! A refused upload stops the command before anything is submitted.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use comity_client::upload::attachment_path;
use comity_client::Client;
use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown while a file uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A bar on the terminal (bytes, rate, time left).
    Bar,
    /// One line per file on stderr, for logs.
    Lines,
    /// Nothing (`--json`: the output is the JSON answer alone).
    Quiet,
}

impl Progress {
    pub fn for_output(json: bool) -> Progress {
        if json {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines
        }
    }
}

/// Uploads `files` in order; the stored ids the node answered, in order.
pub fn upload_all(
    client: &Client,
    files: &[std::path::PathBuf],
    progress: Progress,
) -> Result<Vec<String>> {
    files.iter().map(|f| upload(client, f, progress)).collect()
}

fn upload(client: &Client, path: &Path, progress: Progress) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: the file name is not UTF-8 text", path.display()))?;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let size = meta.len();
    let media_type = media_type_of(path);
    let bar = match progress {
        Progress::Bar => {
            let bar = ProgressBar::new(size);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            Some(bar)
        }
        Progress::Lines => {
            eprintln!("uploading {name} ({size} bytes, {media_type})");
            None
        }
        Progress::Quiet => None,
    };
    let answer = client.upload(
        &attachment_path(name, media_type),
        &mut file,
        size,
        &mut |sent| {
            if let Some(b) = &bar {
                b.set_position(sent);
            }
        },
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let v = answer.with_context(|| format!("{} was not accepted", path.display()))?;
    let Some(id) = v["attachment"].as_str() else {
        bail!("unexpected answer from comityd to the upload of {name}: {v}");
    };
    if progress != Progress::Quiet {
        eprintln!(
            "uploaded {name}: {} bytes, sha256 {}",
            v["size"],
            v["sha256"].as_str().unwrap_or("?")
        );
    }
    Ok(id.to_string())
}

/// The media type for a file's extension (lowercase); anything unknown is
/// `application/octet-stream`.
pub fn media_type_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "xml" => "application/xml",
        "json" => "application/json",
        "eml" => "message/rfc822",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "7z" => "application/x-7z-compressed",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "tif" | "tiff" => "image/tiff",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_follow_the_extension_and_pass_the_protocol_rules() {
        assert_eq!(media_type_of(Path::new("Letter.PDF")), "application/pdf");
        assert_eq!(
            media_type_of(Path::new("dump.E01")),
            "application/octet-stream"
        );
        assert_eq!(
            media_type_of(Path::new("noext")),
            "application/octet-stream"
        );
        for ext in ["pdf", "docx", "xlsx", "mp4", "7z", "eml", "bin"] {
            let t = media_type_of(Path::new(&format!("f.{ext}")));
            assert_eq!(
                comity_protocol::attachment::check_media_type(t),
                Ok(()),
                "{t}"
            );
        }
    }
}
