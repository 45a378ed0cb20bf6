//! `comity backup` of a running node and `comity restore` into a fresh
//! data directory, with real processes: a backup taken while messages are
//! being submitted ends at a checkpoint, restores into a node that starts,
//! holds every message accepted before the backup, and exports a log that
//! verifies; the file reveals nothing without its key.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use comity_client::LocalNode;
use comity_node::store::Store;
use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
use comity_tests::{comityd_beside, request_args, TestNode};
use serde_json::Value;

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

fn comity(args: &[&str]) -> Output {
    Command::new(COMITY).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Two pinned nodes, running.
fn pair() -> (TestNode, TestNode) {
    comity_tests::pair(comityd_beside(COMITY).to_str().unwrap())
}

fn backup_output(node: &TestNode, out: &Path, key: &[&str]) -> Output {
    let config = node.config_path().to_str().unwrap().to_string();
    let mut args = vec![
        "--config",
        &config,
        "backup",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(key);
    comity(&args)
}

fn backup(node: &TestNode, out: &Path, key: &[&str]) -> Value {
    let o = backup_output(node, out, key);
    assert!(o.status.success(), "backup failed: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A copy of `node`'s config file in a new directory: its relative data
/// directory, key file and socket are there, empty.
fn fresh_config(node: &TestNode, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join("comity.toml");
    std::fs::copy(node.config_path(), &to).unwrap();
    to
}

fn restore(config: &Path, file: &str, key: &[&str]) -> Output {
    let config = config.to_str().unwrap();
    let mut args = vec!["--config", config, "restore", file, "--json"];
    args.extend_from_slice(key);
    comity(&args)
}

fn write_passphrase(dir: &Path, name: &str, p: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{p}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn backup_while_sending_restores_to_its_checkpoint() {
    let (mut a, b) = pair();
    let work = tempfile::tempdir().unwrap();
    let secret_subject = "Freezing of accounts of Zeta Holdings 8814";
    a.send(&b, secret_subject);
    a.send_many(&b, 200, 2);

    // A client keeps submitting during the backup; ids accepted before the
    // backup started must all be in it.
    let stop = AtomicBool::new(false);
    let accepted: Mutex<Vec<(Instant, String)>> = Mutex::new(Vec::new());
    let pf = write_passphrase(work.path(), "pass", "correct horse battery staple");
    let (v, started) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = a.send(&b, &format!("during backup {i}"));
                accepted.lock().unwrap().push((Instant::now(), id));
                i += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let o = backup_output(&a, work.path(), &["--passphrase-file", &pf]);
        if o.status.success() {
            std::thread::sleep(Duration::from_millis(300));
        }
        stop.store(true, Ordering::Relaxed);
        (o, started)
    });
    assert!(v.status.success(), "backup failed: {}", text(&v.stderr));
    let v: Value = serde_json::from_slice(&v.stdout).unwrap();
    let accepted = accepted.into_inner().unwrap();
    let before: Vec<&String> = accepted
        .iter()
        .filter(|(t, _)| *t < started)
        .map(|(_, id)| id)
        .collect();
    let after = accepted.len() - before.len();
    assert!(
        !before.is_empty() && after > 0,
        "sending ran during the backup: {} before, {after} after",
        before.len()
    );
    let file = v["path"].as_str().unwrap().to_string();
    let checkpoint = v["checkpoint"].as_u64().unwrap();
    assert!(checkpoint > 0, "{v}");
    let name = Path::new(&file)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("comity-backup-AR-") && name.ends_with("Z.tar.age"),
        "{name}"
    );

    // Mode 0600, and nothing of the store readable without the passphrase.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "),
        "not an age passphrase file"
    );
    for needle in [
        secret_subject.as_bytes(),
        b"during backup 1",
        b"manifest.json",
        b"Arcadia",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{} readable in the backup",
            text(needle)
        );
    }

    // The backup is recorded on the node, after the checkpoint it ends at.
    let export = a.get_text("/v1/audit/export");
    let line = export
        .lines()
        .find(|l| l.contains(&format!("backup to checkpoint {checkpoint}")))
        .unwrap_or_else(|| panic!("no backup entry in the node's log"));
    let seq = serde_json::from_str::<Value>(line).unwrap()["entry"]
        .as_u64()
        .unwrap();
    assert!(
        seq >= checkpoint,
        "backup entry {seq} inside the backup's {checkpoint} entries"
    );
    a.sigterm();

    // A wrong passphrase: a clear error, nothing written.
    let fresh = work.path().join("restored");
    let config = fresh_config(&a, &fresh);
    let wrong = write_passphrase(work.path(), "wrong", "incorrect horse");
    let o = restore(&config, &file, &["--passphrase-file", &wrong]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("wrong passphrase or key"),
        "{}",
        text(&o.stderr)
    );
    assert!(!fresh.join("data").exists(), "a failed restore left files");

    let o = restore(&config, &file, &["--passphrase-file", &pf]);
    assert!(o.status.success(), "restore failed: {}", text(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["audit_size"].as_u64(), Some(checkpoint), "{r}");
    assert_eq!(r["node"].as_str(), Some(a.id.to_string().as_str()));
    for (p, want) in [
        (fresh.join("data"), 0o700),
        (fresh.join("data/store"), 0o700),
        (PathBuf::from(r["key"].as_str().unwrap()), 0o600),
        (fresh.join("data/store/sled/db"), 0o600),
    ] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "{}", p.display());
    }

    // Not again into the same (now non-empty) directory.
    let o = restore(&config, &file, &["--passphrase-file", &pf]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is not empty"),
        "{}",
        text(&o.stderr)
    );

    // Every message accepted before the backup is in the restored store.
    let store_dir = fresh.join("data/store");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held: Vec<String> = rt.block_on(async {
        let store = Store::open(&store_dir).unwrap();
        let ids = store
            .outbound_all()
            .map(|r| r.unwrap().0.id.to_string())
            .collect();
        store.close().await.unwrap();
        ids
    });
    for id in &before {
        assert!(
            held.contains(id),
            "message {id}, accepted before the backup, is not in it"
        );
    }
    // The 201 sent before the loop, and what the loop had accepted (more
    // may have been accepted between `started` and the store's copy).
    assert!(held.len() >= 201 + before.len(), "{} held", held.len());

    // The restored node starts; its log verifies as the node's, and ends
    // its backed-up part exactly at the checkpoint: entry `checkpoint`
    // records the restoration, the next the restored node's start.
    let mut restored = LocalNode::open(comityd_beside(COMITY), &config).unwrap();
    restored.start().unwrap();
    let bundle = restored.client().get_text("/v1/audit/export").unwrap();
    let report = verify_bundle(
        Cursor::new(bundle.as_bytes()),
        &VerifyOptions {
            expected_node: Some(a.id),
            required_witnesses: vec![],
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap();
    assert!(report.is_valid(), "{:?}", report.findings);
    let entries: Vec<Value> = bundle
        .lines()
        .filter(|l| l.starts_with("{\"entry\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_after = &entries[checkpoint as usize]["fields"];
    assert_eq!(
        first_after["kind"].as_str(),
        Some("log-restored"),
        "{first_after}"
    );
    assert!(
        first_after["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("restored-size {checkpoint} ")),
        "{first_after}"
    );
    let second = &entries[checkpoint as usize + 1]["fields"];
    assert_eq!(second["kind"].as_str(), Some("node-started"), "{second}");
    // Every held message has its acceptance in the log (no event without its entry).
    for id in &held {
        assert!(
            entries[..checkpoint as usize]
                .iter()
                .any(|e| e["fields"]["message_id"].as_str() == Some(id.as_str())),
            "message {id} has no entry in the backed-up log"
        );
    }
    restored.sigterm(Duration::from_secs(20)).unwrap();
}

#[test]
fn backup_to_a_recipient_opens_with_its_identity_only() {
    let (a, b) = pair();
    a.send(&b, "to a recipient");
    let work = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let id_file = work.path().join("operator.key");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &id_file,
            format!("# operator\n{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
    }
    let v = backup(&a, work.path(), &["--recipient", &recipient]);
    let file = v["path"].as_str().unwrap().to_string();
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        bytes.starts_with(b"age-encryption.org/v1\n-> X25519 "),
        "not an age X25519 file"
    );

    let config = fresh_config(&a, &work.path().join("r1"));
    let pf = write_passphrase(work.path(), "pass", "a passphrase");
    let o = restore(&config, &file, &["--passphrase-file", &pf]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("encrypted to a recipient key"),
        "{}",
        text(&o.stderr)
    );

    let other = work.path().join("other.key");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &other,
            format!(
                "{}\n",
                age::x25519::Identity::generate()
                    .to_string()
                    .expose_secret()
            ),
        )
        .unwrap();
    }
    let o = restore(&config, &file, &["--identity", other.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("wrong passphrase or key"),
        "{}",
        text(&o.stderr)
    );

    let o = restore(&config, &file, &["--identity", id_file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["audit_size"].as_u64(), v["checkpoint"].as_u64());
    let _ = age::x25519::Recipient::from_str(&recipient).unwrap();
}

/// `COMITY_BACKUP_MEASURE=N`: the pause, time and size of a backup of a
/// node that sent N messages (printed; nothing asserted beyond success).
#[test]
fn measure_backup() {
    let Some(n) = std::env::var("COMITY_BACKUP_MEASURE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return;
    };
    let (a, b) = pair();
    a.send_many(&b, n, 4);
    let work = tempfile::tempdir().unwrap();
    let pf = write_passphrase(work.path(), "pass", "measure");
    let t = Instant::now();
    let v = backup(&a, work.path(), &["--passphrase-file", &pf]);
    let took = t.elapsed();
    let store = fs_size(&a.dir().join("data/store"));
    println!(
        "backup of {n} messages: writes paused {} ms, backup {:.2} s in all, file {} bytes, store {} bytes",
        v["paused_ms"], took.as_secs_f64(), v["bytes"], store
    );
}

fn fs_size(p: &Path) -> u64 {
    let m = std::fs::metadata(p).unwrap();
    if m.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| fs_size(&e.unwrap().path()))
            .sum()
    } else {
        m.len()
    }
}

#[test]
fn a_backup_holds_the_evidence_and_a_restore_reads_it_out() {
    let (a, mut b) = pair();
    let work = tempfile::tempdir().unwrap();
    let evidence: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let path = work.path().join("ledger.bin");
    std::fs::write(&path, &evidence).unwrap();
    let config = a.config_path().to_str().unwrap().to_string();
    let mut args = vec!["--config", &config];
    args.extend(request_args(
        "BO",
        "Ledger",
        "Attached.",
        &["--attach", path.to_str().unwrap(), "--json"],
    ));
    let o = comity(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    a.wait_until(Duration::from_secs(30), "delivered", || {
        a.outbox_count("delivered") == 1
    });
    let pf = write_passphrase(work.path(), "pass", "correct horse battery staple");
    let v = backup(&b, work.path(), &["--passphrase-file", &pf]);
    b.sigterm();

    let fresh = work.path().join("restored");
    let config = fresh_config(&b, &fresh);
    let file = v["path"].as_str().unwrap();
    let o = restore(&config, file, &["--passphrase-file", &pf]);
    assert!(o.status.success(), "restore failed: {}", text(&o.stderr));
    let mut restored = LocalNode::open(comityd_beside(COMITY), &config).unwrap();
    restored.start().unwrap();
    let mut out = Vec::new();
    restored
        .client()
        .download(
            &format!("/v1/messages/{id}/attachments/0/content"),
            &mut out,
            1 << 23,
        )
        .unwrap();
    assert!(out == evidence, "the restored node reads out other bytes");
    restored.sigterm(Duration::from_secs(30)).unwrap();
}

/// An announced identity transition survives a backup and a restore: the
/// new key's file is in the backup and put back beside the key file, so
/// the restored node presents the statement again.
#[test]
fn an_announced_identity_key_is_backed_up_and_restored() {
    let (_a, mut b) = pair();
    let work = tempfile::tempdir().unwrap();
    let config = b.config_path().to_str().unwrap().to_string();
    let o = comity(&[
        "--config",
        &config,
        "keys",
        "rotate-identity",
        "--reason",
        "scheduled",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let new = serde_json::from_slice::<Value>(&o.stdout).unwrap()["new"]
        .as_str()
        .unwrap()
        .to_string();
    let pf = write_passphrase(work.path(), "pass", "correct horse battery staple");
    let v = backup(&b, work.path(), &["--passphrase-file", &pf]);
    b.sigterm();

    let fresh = work.path().join("restored");
    let config = fresh_config(&b, &fresh);
    // Another key where the announced one goes: refused, nothing moved.
    let key_file = comity_config::Config::load(&config)
        .unwrap()
        .node
        .identity_key;
    let next = comity_config::next_key_path(&key_file);
    let foreign = comity_protocol::Identity::generate(comity_protocol::Timestamp::now());
    comity_config::write_new_key_file(&next, &foreign).unwrap();
    let o = restore(
        &config,
        v["path"].as_str().unwrap(),
        &["--passphrase-file", &pf],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("holds another key"),
        "{}",
        text(&o.stderr)
    );
    assert!(!key_file.exists(), "nothing restored");
    std::fs::remove_file(&next).unwrap();
    let o = restore(
        &config,
        v["path"].as_str().unwrap(),
        &["--passphrase-file", &pf],
    );
    assert!(o.status.success(), "restore failed: {}", text(&o.stderr));
    let mut restored = LocalNode::open(comityd_beside(COMITY), &config).unwrap();
    restored.start().unwrap();
    let keys = restored.client().get("/v1/keys").unwrap();
    assert_eq!(keys["identity_transition"]["new"], new.as_str());
    let next = PathBuf::from(
        keys["identity_transition"]["next_key_file"]
            .as_str()
            .unwrap(),
    );
    let held = comity_config::load_key_file(&next)
        .unwrap()
        .id()
        .to_string();
    assert_eq!(held, new, "the restored file holds the announced key");
    assert!(
        restored
            .log()
            .contains("presenting the announced identity transition"),
        "{}",
        restored.log()
    );
    restored.sigterm(Duration::from_secs(30)).unwrap();
}
