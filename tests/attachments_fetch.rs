//! Reading evidence out through the real binaries: `comity attachments`,
//! `comity attachment get` and the chain of custody in `comity audit
//! verify-proof`, against a running `comityd`.
//!
//! Until the upload route lands, the attachments are put on a queued
//! message with the node's own store and attachment-file APIs while the
//! daemon is stopped (as the upload will: a sender's copy, then the
//! message's manifests and keys in the store); the peer never runs, so the
//! message stays queued and the files are the sender's copies.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use comity_node::attachments::{AttachmentDir, SpaceSource};
use comity_node::disk::Space;
use comity_node::store::{HeldAttachment, Store};
use comity_protocol::attachment::{AttachmentLimits, SMALL_CHUNK_BYTES, TAG_BYTES};
use comity_protocol::MessageId;
use comity_tests::{comityd_beside, pair, request_args, TestNode};
use serde_json::Value;

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

struct Plenty;

impl SpaceSource for Plenty {
    fn measure(&self) -> std::io::Result<Space> {
        Ok(Space {
            free_bytes: u64::MAX / 4,
            total_bytes: u64::MAX / 2,
            reserve_bytes: 0,
        })
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 13)) as u8 ^ seed)
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    comity_protocol::Digest::of(b"", &[b]).to_string()
}

fn comity(node: &TestNode, cwd: &Path, args: &[&str]) -> Output {
    comity_at(COMITY, node, cwd, args)
}

fn comity_at(bin: &str, node: &TestNode, cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--config")
        .arg(node.config_path())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Puts `files` (name, bytes) on our queued message `id`; returns the
/// paths of the sender's copies.
fn attach(node: &TestNode, id: &str, files: &[(&str, &[u8])]) -> Vec<PathBuf> {
    let id: MessageId = id.parse().unwrap();
    let data_dir = node.dir().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&data_dir.join("store")).unwrap();
        let dir = AttachmentDir::open(&data_dir).unwrap();
        let mut held = Vec::new();
        let mut paths = Vec::new();
        for (name, bytes) in files {
            let c = dir
                .copy_in(
                    &Plenty,
                    &AttachmentLimits::default(),
                    name,
                    "application/octet-stream",
                    bytes.len() as u64,
                    *bytes,
                )
                .unwrap();
            paths.push(c.path.clone());
            held.push(HeldAttachment {
                sealed: c.sealed,
                stored: Some(c.id),
            });
        }
        store.put_outbound_attachments(&id, &held).unwrap();
        store.close().await.unwrap();
        paths
    })
}

fn hidden_leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn attachment_get_writes_only_new_verified_files_where_told() {
    let comityd = comityd_beside(COMITY);
    let comityd = comityd.to_str().unwrap();
    let mut ar = TestNode::new(comityd, "Arcadia", "AR");
    // Pinned, never started: the message stays queued with its files.
    let bo = TestNode::new(comityd, "Borduria", "BO");
    ar.pin(&bo);
    ar.start();
    let id = ar.send(&bo, "Bank records of Example Holdings");
    ar.sigterm();
    let letter = data(20_000, 1);
    let statements = data(3 * 1024 * 1024 + 5, 2);
    let copies = attach(
        &ar,
        &id,
        &[("1", &letter), ("Kontoauszüge 2025.xlsx", &statements)],
    );
    ar.start();

    let work = tempfile::tempdir().unwrap();
    // Three levels deep, so that `../../etc/passwd` from here would land
    // inside the temporary directory if anything used it as a path.
    let cwd = work.path().join("a/b/c");
    fs::create_dir_all(&cwd).unwrap();

    // The listing: both, queued (the peer is down), with sizes and digests.
    let listed = comity(&ar, &cwd, &["attachments", &id, "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let v: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let items = v["attachments"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["name"], "Kontoauszüge 2025.xlsx");
    assert_eq!(items[1]["size"], statements.len() as u64);
    assert_eq!(items[1]["sha256"], sha256_hex(&statements));
    assert_eq!(items[1]["state"], "queued");
    assert!(items[1].get("key").is_none());
    let table = comity(&ar, &cwd, &["attachments", &id]);
    let table = stdout(&table);
    assert!(table.contains("\"Kontoauszüge 2025.xlsx\""), "{table}");
    assert!(table.contains("3.0 MiB (3145733 bytes)"), "{table}");
    let show = stdout(&comity(&ar, &cwd, &["show", &id]));
    assert!(show.contains("attachments (read one out"), "{show}");
    assert!(show.contains(&sha256_hex(&letter)), "{show}");

    // By name: written, the right bytes, 0600, digest reported.
    let out = cwd.join("statements.xlsx");
    let got = comity(
        &ar,
        &cwd,
        &[
            "attachment",
            "get",
            &id,
            "Kontoauszüge 2025.xlsx",
            "--out",
            "statements.xlsx",
            "--json",
        ],
    );
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(stderr(&got), "", "--json: nothing but the result");
    let r: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(r["sha256"], sha256_hex(&statements));
    assert_eq!(r["verified"], true);
    assert_eq!(fs::read(&out).unwrap(), statements);
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Never over an existing file: refused before anything is fetched.
    fs::write(&out, b"the operator's own notes").unwrap();
    let again = comity(
        &ar,
        &cwd,
        &["attachment", "get", &id, "1", "--out", "statements.xlsx"],
    );
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(fs::read(&out).unwrap(), b"the operator's own notes");

    // Never through a link, dangling or not.
    let target = work.path().join("target-of-link");
    let link = cwd.join("link.pdf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let linked = comity(
        &ar,
        &cwd,
        &["attachment", "get", &id, "1", "--out", "link.pdf"],
    );
    assert_eq!(linked.status.code(), Some(1));
    assert!(
        stderr(&linked).contains("symbolic link"),
        "{}",
        stderr(&linked)
    );
    assert!(!target.exists(), "nothing written through the link");

    // A name like a path is a name to match, never a path: no such
    // attachment, shown as given, and nothing written anywhere.
    let passwd = comity(
        &ar,
        &cwd,
        &["attachment", "get", &id, "../../etc/passwd", "--out", "p"],
    );
    assert_eq!(passwd.status.code(), Some(1));
    let e = stderr(&passwd);
    assert!(e.contains("no attachment \"../../etc/passwd\""), "{e}");
    assert!(
        e.contains("\"Kontoauszüge 2025.xlsx\""),
        "lists what there is: {e}"
    );
    assert!(!work.path().join("a/etc").exists());
    assert!(!cwd.join("p").exists());

    // A name wins over an index; --index takes it as one.
    let named = comity(&ar, &cwd, &["attachment", "get", &id, "1", "--out", "one"]);
    assert!(named.status.success(), "{}", stderr(&named));
    assert_eq!(fs::read(cwd.join("one")).unwrap(), letter);
    let indexed = comity(
        &ar,
        &cwd,
        &["attachment", "get", &id, "1", "--index", "--out", "second"],
    );
    assert!(indexed.status.success(), "{}", stderr(&indexed));
    assert_eq!(fs::read(cwd.join("second")).unwrap(), statements);

    // A stored chunk altered on disk: the node stops before that chunk,
    // the CLI sees the body end short, keeps nothing and says so.
    let chunk = SMALL_CHUNK_BYTES as u64 + TAG_BYTES as u64;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&copies[1])
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, 3 * chunk + 7).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], 3 * chunk + 7).unwrap();
    let bad = comity(
        &ar,
        &cwd,
        &[
            "attachment",
            "get",
            &id,
            "--index",
            "1",
            "--out",
            "bad.xlsx",
        ],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    let e = stderr(&bad);
    assert!(e.contains("the read-out failed after"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    assert!(!cwd.join("bad.xlsx").exists());
    assert_eq!(hidden_leftovers(&cwd), Vec::<String>::new());

    // The chain of custody: each read-out, and the aborted one, in the
    // message's inclusion proof.
    let proof = comity(&ar, &cwd, &["audit", "proof", &id, "--out", "proof.json"]);
    assert!(proof.status.success(), "{}", stderr(&proof));
    let verified = comity(&ar, &cwd, &["audit", "verify-proof", "proof.json"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let text = stdout(&verified);
    assert!(text.contains("chain of custody"), "{text}");
    assert_eq!(text.matches("attachment-retrieved").count(), 5, "{text}");
    assert!(text.contains("retrieval aborted"), "{text}");
    assert!(
        text.contains(&format!("size 3145733, sha256 {}", sha256_hex(&statements))),
        "{text}"
    );
}

/// Peak resident memory of process `pid` seen while `f` runs (sampled
/// every 10 ms), and its resident memory just before.
fn rss_while<T>(pid: u32, f: impl FnOnce() -> T) -> (T, u64, u64) {
    let rss = move || -> u64 {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let before = rss();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        peak
    });
    let out = f();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, before, sampler.join().unwrap())
}

/// Not a check: prints the read-out rate and the daemon's memory for a
/// large attachment, with `sha256sum` of the same file as the reference
/// of the same run, and what the progress bar looks like on a terminal.
/// `COMITY_FIGURE_MIB` sets the size (default 256); `COMITY_FIGURE_BIN_DIR`
/// a directory with the `comity` and `comityd` to measure (e.g. a release
/// build; the files are put in place by this test's debug build).
#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn figures_read_out_of_a_large_attachment() {
    let mib: usize = std::env::var("COMITY_FIGURE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let (comity_bin, comityd) = match std::env::var("COMITY_FIGURE_BIN_DIR") {
        Ok(d) => (format!("{d}/comity"), Path::new(&d).join("comityd")),
        Err(_) => (COMITY.to_string(), comityd_beside(COMITY)),
    };
    println!("binaries: {comity_bin}, {}", comityd.display());
    let comityd = comityd.to_str().unwrap();
    let mut ar = TestNode::new(comityd, "Arcadia", "AR");
    let bo = TestNode::new(comityd, "Borduria", "BO");
    ar.pin(&bo);
    ar.start();
    let id = ar.send(&bo, "Server image");
    ar.sigterm();
    let image = data(mib << 20, 3);
    attach(&ar, &id, &[("server.img", &image)]);
    let sha = sha256_hex(&image);
    drop(image);
    ar.start();
    let pid = ar.pid().unwrap();
    let work = tempfile::tempdir().unwrap();

    let t = std::time::Instant::now();
    let (got, before, peak) = rss_while(pid, || {
        comity_at(
            &comity_bin,
            &ar,
            work.path(),
            &["attachment", "get", &id, "0", "--out", "plain.img"],
        )
    });
    let took = t.elapsed();
    assert!(got.status.success(), "{}", stderr(&got));
    println!(
        "comity attachment get, {mib} MiB, not a terminal: {took:?} ({:.0} MiB/s); comityd RSS {} KiB before, peak {} KiB (+{} KiB)",
        mib as f64 / took.as_secs_f64(),
        before,
        peak,
        peak.saturating_sub(before)
    );
    println!(
        "  its stderr ({} progress lines): {:?}",
        stderr(&got).lines().count(),
        stderr(&got).lines().next()
    );

    let t = std::time::Instant::now();
    let sum = Command::new("sha256sum")
        .arg(work.path().join("plain.img"))
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(stdout(&sum).starts_with(&sha));
    println!(
        "reference, sha256sum of the same {mib} MiB: {took:?} ({:.0} MiB/s)",
        mib as f64 / took.as_secs_f64()
    );

    // On a terminal (a pseudo-terminal from script(1)): the bar.
    let line = format!(
        "{comity_bin} --config {} attachment get {id} 0 --out {}",
        ar.config_path().display(),
        work.path().join("tty.img").display()
    );
    let t = std::time::Instant::now();
    let tty = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(tty.status.success(), "{}", stdout(&tty));
    let screen = stdout(&tty);
    let frames: Vec<&str> = screen
        .split(['\r', '\n'])
        .map(|l| {
            l.trim_start_matches("\u{1b}[2K")
                .trim_start_matches("\u{1b}[1A")
        })
        .filter(|l| l.contains("ETA"))
        .collect();
    println!(
        "on a terminal: {took:?}; {} bar frames, the middle one {:?}; the result {:?}",
        frames.len(),
        frames.get(frames.len() / 2).map(|f| f.trim_end()),
        screen.rsplit("\u{1b}[1A").next()
    );
}

/// The whole way, now that upload and transfer exist: Arcadia sends a
/// request with two files (`--attach`), Borduria receives them; each side
/// lists them, Borduria reads one out, and each side's proof shows its
/// half of the chain of custody.
#[test]
fn evidence_sent_between_two_nodes_is_listed_read_out_and_in_both_chains() {
    let (ar, bo) = pair(comityd_beside(COMITY).to_str().unwrap());
    let work = tempfile::tempdir().unwrap();
    let letter = data(30_000, 4);
    let image = data(2 * 1024 * 1024 + 3, 5);
    fs::write(work.path().join("letter.pdf"), &letter).unwrap();
    fs::write(work.path().join("image.dd"), &image).unwrap();
    let sent = comity(
        &ar,
        work.path(),
        &request_args(
            "BO",
            "Server image",
            "Annexed.",
            &["--attach", "letter.pdf", "--attach", "image.dd", "--json"],
        ),
    );
    assert!(sent.status.success(), "{}", stderr(&sent));
    let v: Value = serde_json::from_slice(&sent.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    ar.wait_until(std::time::Duration::from_secs(30), "delivered", || {
        ar.get(&format!("/v1/messages/{id}"))["state"] == "delivered"
    });

    // The sender: both sent (delivered: the receipt waited for them).
    let ours: Value =
        serde_json::from_slice(&comity(&ar, work.path(), &["attachments", &id, "--json"]).stdout)
            .unwrap();
    let states: Vec<&Value> = ours["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["state"])
        .collect();
    assert_eq!(states, ["sent", "sent"], "{ours}");

    // The receiver: complete, in its inbox; read out and verified.
    let theirs: Value =
        serde_json::from_slice(&comity(&bo, work.path(), &["attachments", &id, "--json"]).stdout)
            .unwrap();
    assert_eq!(theirs["arriving"], false, "{theirs}");
    assert_eq!(theirs["attachments"][1]["state"], "complete", "{theirs}");
    assert_eq!(theirs["attachments"][1]["sha256"], sha256_hex(&image));
    let got = comity(
        &bo,
        work.path(),
        &["attachment", "get", &id, "image.dd", "--out", "received.dd"],
    );
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(fs::read(work.path().join("received.dd")).unwrap(), image);

    // Each side's proof: the sender's accepted and sent, the receiver's
    // received and retrieved, all naming the same bytes.
    for (node, expect) in [
        (&ar, &["accepted", "sent"][..]),
        (&bo, &["received", "retrieved"][..]),
    ] {
        let proof = work.path().join(format!("{}.json", node.country));
        let made = comity(
            node,
            work.path(),
            &["audit", "proof", &id, "--out", proof.to_str().unwrap()],
        );
        assert!(made.status.success(), "{}", stderr(&made));
        let checked = comity(
            node,
            work.path(),
            &["audit", "verify-proof", proof.to_str().unwrap(), "--json"],
        );
        assert!(checked.status.success(), "{}", stderr(&checked));
        let report: Value = serde_json::from_slice(&checked.stdout).unwrap();
        let custody = report["custody"].as_array().unwrap();
        assert_eq!(custody.len(), 2, "{}: {report}", node.country);
        let image_chain = &custody[1];
        assert_eq!(image_chain["consistent"], true, "{image_chain}");
        let events: Vec<&str> = image_chain["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["event"].as_str().unwrap())
            .collect();
        for e in expect {
            assert!(events.contains(e), "{}: {events:?}", node.country);
        }
        for s in image_chain["steps"].as_array().unwrap() {
            assert_eq!(s["sha256"], sha256_hex(&image), "{s}");
        }
    }
}
