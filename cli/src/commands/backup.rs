//! `comity backup --out DIR` (through the daemon) and `comity restore FILE`
//! (offline, into a stopped node's empty data directory).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use anyhow::{bail, Context, Result};
use comity_client::restore::{restore as restore_backup, RestoreKey};
use comity_client::Client;
use serde_json::{json, Value};

use crate::output;

/// Longest passphrase read.
const MAX_PASSPHRASE: u64 = 1024;

/// The first line of `path`, or the terminal's answer (twice, to confirm,
/// when `confirm`).
fn passphrase(file: Option<PathBuf>, confirm: bool) -> Result<SecretString> {
    let text = match file {
        Some(path) => {
            let text = super::read_text(&path, MAX_PASSPHRASE, "passphrase file")?;
            text.lines().next().unwrap_or_default().to_string()
        }
        None => {
            let first = rpassword::prompt_password("Backup passphrase: ").context(
                "cannot ask for the passphrase (no terminal?): give --passphrase-file FILE",
            )?;
            if confirm {
                let again = rpassword::prompt_password("Again: ")
                    .context("cannot ask for the passphrase")?;
                if again != first {
                    bail!("the two passphrases differ");
                }
            }
            first
        }
    };
    if text.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(SecretString::from(text))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `comity-backup-<country>-<UTC time>.tar.age`.
fn file_name(country: &str, now_ms: u64) -> String {
    let t = output::time(&json!(now_ms));
    let stamp: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    let (date, time) = stamp.split_at(stamp.len().min(8));
    let country: String = country
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("comity-backup-{country}-{date}T{time}Z.tar.age")
}

pub fn backup(
    client: &Client,
    out: &Path,
    passphrase_file: Option<PathBuf>,
    recipient: Option<String>,
    json_out: bool,
) -> Result<()> {
    if !out.is_dir() {
        bail!(
            "{} is not a directory (--out names the directory to write in)",
            out.display()
        );
    }
    let body = match recipient {
        Some(r) => {
            age::x25519::Recipient::from_str(r.trim()).map_err(|e| {
                anyhow::anyhow!("--recipient {r:?} is not an age X25519 recipient (age1…): {e}")
            })?;
            json!({ "recipient": r.trim() })
        }
        None => {
            let p = passphrase(passphrase_file, true)?;
            json!({ "passphrase": p.expose_secret() })
        }
    };
    // Named once the answer says the country; written under a temporary
    // name in `out` until then, and renamed.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let tmp = out.join(format!(".comity-backup-{started}.partial"));
    let (bytes, headers) = super::write_new_file(&tmp, |file| {
        Ok(client.download_post("/v1/backup", &body, file, u64::MAX)?)
    })?;
    let country = header(&headers, "comity-backup-country").unwrap_or("XX");
    let path = out.join(file_name(country, started));
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    let checkpoint: u64 = header(&headers, "comity-backup-checkpoint")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let paused: u64 = header(&headers, "comity-backup-paused-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    if json_out {
        output::json(&json!({
            "path": path.display().to_string(),
            "bytes": bytes,
            "checkpoint": checkpoint,
            "paused_ms": paused,
        }));
    } else {
        println!(
            "backup written to {} ({bytes} bytes), ending at audit checkpoint {checkpoint} \
             (writes paused {paused} ms)",
            path.display()
        );
    }
    Ok(())
}

pub fn restore(
    config_path: &Path,
    file: &Path,
    passphrase_file: Option<PathBuf>,
    identity: Option<PathBuf>,
    json_out: bool,
) -> Result<()> {
    let config = super::load_config(config_path)?;
    let key = match identity {
        Some(path) => {
            let text = super::read_text(&path, 64 * 1024, "age identity file")?;
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                .with_context(|| format!("{} holds no AGE-SECRET-KEY-1… line", path.display()))?;
            let id = age::x25519::Identity::from_str(line)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            RestoreKey::Identity(Box::new(id))
        }
        None => RestoreKey::Passphrase(passphrase(passphrase_file, false)?),
    };
    let r = restore_backup(file, &config, key)?;
    let m = &r.manifest;
    if json_out {
        let v: Value = json!({
            "node": m.node,
            "country": m.country,
            "audit_size": m.audit_size,
            "created_ms": m.created_ms,
            "data_dir": r.data_dir.display().to_string(),
            "key": r.key_path.display().to_string(),
            "config_at_backup": r.old_config.as_ref().map(|p| p.display().to_string()),
        });
        output::json(&v);
        return Ok(());
    }
    println!(
        "restored node {} ({}) as of {} into {}: audit log of {} entries, to its checkpoint",
        m.node,
        m.country,
        output::time(&json!(m.created_ms)),
        r.data_dir.display(),
        m.audit_size
    );
    println!("key file: {}", r.key_path.display());
    if let Some(old) = &r.old_config {
        println!(
            "the node's configuration at backup time: {} (compare its [[peers]] with {})",
            old.display(),
            config_path.display()
        );
    }
    println!("next:");
    println!(
        "  1. tell every pinned peer's operator that this node was restored to audit size {}: \
         everything it did after the backup is lost, and their witnesses will raise a rollback \
         alarm against it until they are told",
        m.audit_size
    );
    println!(
        "  2. start it: comityd --config {}; messages sent or received after the backup are not \
         on this node (peers resend what they did not get a receipt for)",
        config_path.display()
    );
    println!("  3. take a new backup once it runs");
    Ok(())
}
