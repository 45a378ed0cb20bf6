//! Attachments, the submission side, through real processes: files uploaded
//! through the admin socket (streamed, in bounded memory, into a private
//! encrypted copy), attached to messages by the CLI and the API, refused
//! when they break a rule or a limit (before their data where the rule
//! allows), removed when never attached, and retried under an idempotency
//! key.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use comity_client::upload::attachment_path;
use comity_client::{ClientError, Settings};
use comity_tests::{comityd_beside, http, request_args, request_body, test_settings, TestNode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const COMITY: &str = env!("CARGO_BIN_EXE_comity");
const MIB: u64 = 1 << 20;

fn node(name: &str, country: &str, settings: Settings) -> TestNode {
    TestNode::with_settings(
        comityd_beside(COMITY).to_str().unwrap(),
        name,
        country,
        settings,
    )
}

/// A node for AR with a pinned peer BO that never runs (nothing here is
/// delivered), started.
fn sender(settings: Settings) -> (TestNode, TestNode) {
    let mut a = node("Arcadia", "AR", settings);
    let b = node("Borduria", "BO", test_settings());
    a.pin(&b);
    a.start();
    (a, b)
}

/// Small limits, to reach each of them with small files.
fn small_limits() -> Settings {
    Settings {
        max_attachment_bytes: Some(1000),
        max_message_attachment_bytes: Some(1500),
        max_attachments_per_message: Some(2),
        ..test_settings()
    }
}

fn comity(node: &TestNode, args: &[&str]) -> Output {
    Command::new(COMITY)
        .arg("--config")
        .arg(node.config_path())
        .args(args)
        .env_remove("COMITY_CONFIG")
        .output()
        .unwrap()
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Uploads `content` through the client; the node's answer.
fn upload(
    n: &TestNode,
    name: &str,
    media_type: &str,
    content: &[u8],
) -> Result<Value, ClientError> {
    n.client().upload(
        &attachment_path(name, media_type),
        &mut &content[..],
        content.len() as u64,
        &mut |_| {},
    )
}

fn uploaded_id(n: &TestNode, name: &str, content: &[u8]) -> String {
    let v = upload(n, name, "application/octet-stream", content).unwrap();
    v["attachment"].as_str().unwrap().to_string()
}

/// POST of a JSON body, optionally with an idempotency key: status,
/// whether it was replayed, body.
fn post(n: &TestNode, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    let r = n
        .client()
        .request_with("POST", path, &headers, Some(body.to_string().as_bytes()))
        .unwrap();
    (r.status, r.value())
}

fn submit(n: &TestNode, attachments: &[&str], key: Option<&str>) -> (u16, Value) {
    let body = json!({"to": "BO", "body": request_body("evidence"), "attachments": attachments});
    post(n, "/v1/messages", &body, key)
}

/// Files under `data/attachments/DIR` of the node.
fn files_in(n: &TestNode, dir: &str) -> Vec<PathBuf> {
    let d = n.dir().join("data/attachments").join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Peak resident set of a process so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A raw request on the admin socket: the head as given, then `body`,
/// then (if `close_after`) the write side shut; the status and body of
/// the answer, read within 10 s.
fn raw(n: &TestNode, head: &str, body: &[u8], close_after: bool) -> (u16, Value) {
    let mut s = UnixStream::connect(n.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    if close_after {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut r = BufReader::new(s);
    let h = http::read_head(&mut r).unwrap();
    let b = http::read_body(&mut r, h.framing, 1 << 20).unwrap();
    (h.status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn a_256_mib_upload_streams_into_a_private_staged_copy_in_bounded_memory() {
    let (a, _b) = sender(test_settings());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server-image.bin");
    let size = 256 * MIB;
    let mut hasher = Sha256::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut block = vec![0u8; MIB as usize];
        for i in 0..(size / MIB) {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (i as usize * 31 + j * 7 + (j >> 9)) as u8;
            }
            hasher.update(&block);
            f.write_all(&block).unwrap();
        }
        f.flush().unwrap();
    }
    let expected_sha256 = hex(&hasher.finalize());
    let pid = a.pid().unwrap();
    let before = peak_rss(pid);
    let started = Instant::now();
    let mut file = std::fs::File::open(&path).unwrap();
    let v = a
        .client()
        .upload(
            &attachment_path("server-image.bin", "application/octet-stream"),
            &mut file,
            size,
            &mut |_| {},
        )
        .unwrap();
    let took = started.elapsed();
    let after = peak_rss(pid);
    let growth = after.saturating_sub(before);
    eprintln!(
        "256 MiB upload: {:.1} s ({:.0} MiB/s); daemon VmHWM {} MiB before, {} MiB after, grew {:.1} MiB",
        took.as_secs_f64(),
        256.0 / took.as_secs_f64(),
        before / MIB,
        after / MIB,
        growth as f64 / MIB as f64
    );
    assert!(growth < 64 * MIB, "peak RSS grew by {growth} bytes");
    assert_eq!(v["sha256"].as_str().unwrap(), expected_sha256);
    assert_eq!(v["size"].as_u64().unwrap(), size);
    assert_eq!(v["name"], "server-image.bin");
    assert_eq!(v["chunk_size"].as_u64().unwrap(), MIB);
    let id = v["attachment"].as_str().unwrap();
    // The sender's copy: 0600, the ciphertext (16-byte tag per chunk) and
    // the chunk table (32 bytes per chunk).
    let copy = a.dir().join("data/attachments/sent").join(id);
    let meta = std::fs::metadata(&copy).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), size + 256 * (16 + 32));
    assert!(files_in(&a, "staging").is_empty());
    // The staged record was committed before the answer.
    let mut a = a;
    a.kill9();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = comity_node::store::Store::open(&a.dir().join("data/store")).unwrap();
        let stored: comity_node::attachments::StoredId = id.parse().unwrap();
        let staged = store.staged_attachment(&stored).unwrap().unwrap();
        assert_eq!(staged.sealed.manifest.sha256.to_string(), expected_sha256);
        assert_eq!(staged.sealed.manifest.size, size);
        store.close().await.unwrap();
    });
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn send_request_with_two_attachments_through_the_cli() {
    let (a, _b) = sender(test_settings());
    let dir = tempfile::tempdir().unwrap();
    let pdf = write_file(dir.path(), "a.pdf", b"%PDF-1.7 letter of request");
    let bin = write_file(dir.path(), "b.bin", &vec![0x5a; 200_000]);
    let out = comity(
        &a,
        &request_args(
            "BO",
            "Bank records",
            "See the annexes.",
            &[
                "--attach",
                pdf.to_str().unwrap(),
                "--attach",
                bin.to_str().unwrap(),
                "--json",
            ],
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // --json: the answer alone on stdout, nothing on stderr.
    assert!(stderr.is_empty(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap();
    let shown = a.get(&format!("/v1/messages/{id}"));
    let att = shown["attachments"].as_array().unwrap();
    assert_eq!(att.len(), 2, "{shown}");
    assert_eq!(att[0]["name"], "a.pdf");
    assert_eq!(att[0]["media_type"], "application/pdf");
    assert_eq!(att[0]["size"], 26);
    assert_eq!(
        att[0]["sha256"].as_str().unwrap(),
        hex(&Sha256::digest(b"%PDF-1.7 letter of request"))
    );
    assert_eq!(att[1]["name"], "b.bin");
    assert_eq!(att[1]["media_type"], "application/octet-stream");
    assert_eq!(att[1]["size"], 200_000);
    // Taken out of staging; the stored copies stay, for the transfer.
    assert_eq!(files_in(&a, "sent").len(), 2);
    // One audit entry per attachment, with digests and sizes, never the
    // name or the key.
    let bundle = a.get_text("/v1/audit/export");
    let accepted: Vec<&str> = bundle
        .lines()
        .filter(|l| l.contains("attachment-accepted"))
        .collect();
    assert_eq!(accepted.len(), 2, "{bundle}");
    let detail = format!(
        "attachment 0 size 26 sha256 {} root {}",
        att[0]["sha256"].as_str().unwrap(),
        att[0]["tree_root"].as_str().unwrap()
    );
    assert!(accepted[0].contains(&detail), "{}", accepted[0]);
    assert!(accepted[0].contains(id), "{}", accepted[0]);
    assert!(accepted[1].contains("attachment 1 size 200000 sha256 "));
    assert!(!bundle.contains("a.pdf") && !bundle.contains("b.bin"));

    // Without --json and not on a terminal: plain lines on stderr.
    let out = comity(
        &a,
        &[
            "send",
            "info",
            "--to",
            "BO",
            "--subject",
            "Heads-up",
            "--body",
            "Annexed.",
            "--attach",
            pdf.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("uploaded a.pdf: 26 bytes, sha256 "),
        "{stderr}"
    );
}

#[test]
fn reply_with_an_attachment_through_the_cli() {
    let mut a = node("Arcadia", "AR", test_settings());
    let mut b = node("Borduria", "BO", test_settings());
    a.pin(&b);
    b.pin(&a);
    a.start();
    b.start();
    let request = a.send(&b, "Bank records");
    b.wait_until(Duration::from_secs(20), "the request received", || {
        b.inbox_count() == 1
    });
    let dir = tempfile::tempdir().unwrap();
    let statements = write_file(
        dir.path(),
        "statements-2024.csv",
        b"date,amount\n2024-01-02,100\n",
    );
    let out = comity(
        &b,
        &[
            "reply",
            &request,
            "--subject",
            "Statements 2024",
            "--body",
            "Attached.",
            "--attach",
            statements.to_str().unwrap(),
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["in_reply_to"].as_str().unwrap(), request);
    let shown = b.get(&format!("/v1/messages/{}", v["id"].as_str().unwrap()));
    assert_eq!(shown["kind"], "reply");
    let att = shown["attachments"].as_array().unwrap();
    assert_eq!(att.len(), 1, "{shown}");
    assert_eq!(att[0]["name"], "statements-2024.csv");
    assert_eq!(att[0]["media_type"], "text/csv");
}

#[test]
fn a_refused_upload_stops_the_cli_before_it_submits() {
    let (a, _b) = sender(small_limits());
    let dir = tempfile::tempdir().unwrap();
    let ok = write_file(dir.path(), "ok.pdf", b"small");
    let big = write_file(dir.path(), "big.bin", &[1u8; 5000]);
    let out = comity(
        &a,
        &request_args(
            "BO",
            "S",
            "B",
            &[
                "--attach",
                ok.to_str().unwrap(),
                "--attach",
                big.to_str().unwrap(),
            ],
        ),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("big.bin was not accepted")
            && stderr.contains("above limits.max_attachment_bytes (1000)"),
        "{stderr}"
    );
    assert_eq!(a.outbox_count("queued"), 0);
}

#[test]
fn uploads_break_no_rule_or_limit() {
    let (a, _b) = sender(small_limits());

    // Over the per-attachment limit: refused on the head alone (the body
    // is never sent here, so an answer proves none was waited for).
    let (status, v) = raw(
        &a,
        &format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
            attachment_path("big.bin", "application/octet-stream")
        ),
        b"",
        false,
    );
    assert_eq!(status, 413, "{v}");
    assert_eq!(code(&v), "too-large");
    // No declared size: 411.
    let (status, v) = raw(
        &a,
        &format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
            attachment_path("x.bin", "application/octet-stream")
        ),
        b"",
        false,
    );
    assert_eq!(status, 411, "{v}");
    // A name that is a path, a media type with parameters: 422.
    let e = upload(&a, "../../etc/passwd", "text/plain", b"x").unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 422, .. }), "{e}");
    let e = upload(&a, "x.txt", "text/plain; charset=utf-8", b"x").unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 422, .. }), "{e}");

    // A body shorter than declared: 400, and nothing left behind.
    let sent_before = files_in(&a, "sent");
    let (status, v) = raw(
        &a,
        &format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n",
            attachment_path("short.bin", "application/octet-stream")
        ),
        &[7u8; 300],
        true,
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(code(&v), "body-length", "{v}");
    assert!(files_in(&a, "staging").is_empty());
    assert_eq!(files_in(&a, "sent"), sent_before);
}

#[test]
fn attaching_breaks_no_rule_or_limit() {
    let (a, _b) = sender(small_limits());
    let x = uploaded_id(&a, "x.bin", &[1; 10]);
    let y = uploaded_id(&a, "y.bin", &[2; 10]);
    let z = uploaded_id(&a, "z.bin", &[3; 10]);
    let refused = |ids: &[&str], says: &str| {
        let (status, v) = submit(&a, ids, None);
        assert_eq!(status, 422, "{v}");
        assert_eq!(code(&v), "invalid-attachment", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{msg}");
    };
    refused(&[&x, &y, &z], "3 attachments, at most 2");
    refused(
        &["00112233445566778899aabbccddeeff"],
        "not waiting to be attached",
    );
    refused(&["not-an-id"], "not an attachment id");
    let big1 = uploaded_id(&a, "big1.bin", &[4; 800]);
    let big2 = uploaded_id(&a, "big2.bin", &[5; 800]);
    refused(&[&big1, &big2], "above");
    // A status update carries none.
    let (status, v) = post(
        &a,
        "/v1/messages/00112233445566778899aabbccddeeff/status",
        &json!({"status": {"status": "in-execution"}, "attachments": [x]}),
        None,
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(code(&v), "invalid-attachment");
    // Nothing refused took anything: all still attach, once.
    let (status, v) = submit(&a, &[&x, &y], None);
    assert_eq!(status, 201, "{v}");
    refused(&[&x], "not waiting to be attached");
    assert_eq!(a.outbox_count("queued"), 1);
}

#[test]
fn an_upload_that_would_eat_into_the_disk_reserve_is_refused_as_retriable() {
    // A reserve larger than any disk here.
    let settings = Settings {
        disk_reserve_mib: Some(1 << 20),
        ..test_settings()
    };
    let (a, _b) = sender(settings);
    let e = upload(&a, "x.bin", "application/octet-stream", &[1; 100]).unwrap_err();
    match e {
        ClientError::Api {
            status,
            code,
            message,
        } => {
            assert_eq!((status, code.as_str()), (507, "disk-reserve"));
            assert!(message.contains("bytes needed"), "{message}");
            assert!(message.contains("free"), "{message}");
        }
        e => panic!("{e}"),
    }
    assert!(files_in(&a, "sent").is_empty());
    assert!(files_in(&a, "staging").is_empty());
}

#[test]
fn staged_files_never_attached_are_removed_with_their_records() {
    let settings = Settings {
        staged_attachment_secs: Some(1),
        ..test_settings()
    };
    let (a, _b) = sender(settings);
    let id = uploaded_id(&a, "forgotten.pdf", b"never attached");
    let copy = a.dir().join("data/attachments/sent").join(&id);
    assert!(copy.exists());
    a.wait_until(Duration::from_secs(10), "the staged file removed", || {
        !copy.exists()
    });
    let (status, v) = submit(&a, &[&id], None);
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not waiting to be attached"),
        "{v}"
    );
}

#[test]
fn a_retry_with_the_same_key_and_attachments_answers_the_first_message() {
    let (a, _b) = sender(test_settings());
    let x = uploaded_id(&a, "x.pdf", b"first file");
    let y = uploaded_id(&a, "y.pdf", b"second file");
    let (status, first) = submit(&a, &[&x, &y], Some("case-42-attempt-1"));
    assert_eq!(status, 201, "{first}");
    // The same request again (its answer lost): the same message.
    let (status, again) = submit(&a, &[&x, &y], Some("case-42-attempt-1"));
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], first["id"]);
    // The same files uploaded again (a script run again with its key).
    let x2 = uploaded_id(&a, "x.pdf", b"first file");
    let y2 = uploaded_id(&a, "y.pdf", b"second file");
    let (status, rerun) = submit(&a, &[&x2, &y2], Some("case-42-attempt-1"));
    assert_eq!(status, 201, "{rerun}");
    assert_eq!(rerun["id"], first["id"]);
    // Other files under the same key: refused.
    let z = uploaded_id(&a, "z.pdf", b"another file");
    let (status, v) = submit(&a, &[&x2, &z], Some("case-42-attempt-1"));
    assert_eq!(status, 409, "{v}");
    assert_eq!(code(&v), "idempotency-key-reused");
    assert_eq!(a.outbox_count("queued"), 1);
}
