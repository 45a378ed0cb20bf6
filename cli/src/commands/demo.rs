//! `comity demo`: three fictional central authorities on 127.0.0.1, each a
//! real `comityd`, play a short story end to end; then every audit log is
//! exported and verified offline and the network is shut down.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use comity_client::local::wait_until;
use comity_client::upload::attachment_path;
use comity_client::{LocalNode, Network, Settings};
use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// How long each step of the story may take.
const STEP: Duration = Duration::from_secs(30);

fn wait_for(what: &str, ok: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_until(STEP, what, ok)
}

fn comityd_path() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("comityd");
    if !p.exists() {
        bail!(
            "comityd not found next to comity ({}); build both: cargo build --release",
            p.display()
        );
    }
    Ok(p)
}

/// A file of `len` bytes starting with `head`, the rest random, in `dir`;
/// its path and SHA-256 (hex).
fn evidence_file(dir: &Path, name: &str, head: &[u8], len: usize) -> Result<(PathBuf, String)> {
    let path = dir.join(name);
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes[..head.len()].copy_from_slice(head);
    std::fs::write(&path, &bytes)?;
    Ok((path, hex::encode(Sha256::digest(&bytes))))
}

/// Uploads `path` to `node` (streamed, as `comity send --attach` does):
/// the stored id to attach.
fn upload(node: &LocalNode, path: &Path, media_type: &str) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("a file name")?;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let v = node.client().upload(
        &attachment_path(name, media_type),
        &mut file,
        len,
        &mut |_| {},
    )?;
    Ok(v["attachment"].as_str().unwrap_or_default().to_string())
}

/// Reads attachment `index` of message `id` out of `node` (every chunk
/// verified by the node as it reads) and hashes what arrives.
fn read_out_digest(node: &LocalNode, id: &str, index: usize) -> Result<String> {
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(Sha256::new());
    node.client().download(
        &format!("/v1/messages/{id}/attachments/{index}/content"),
        &mut h,
        u64::MAX,
    )?;
    Ok(hex::encode(h.0.finalize()))
}

pub fn run(keep: Option<PathBuf>) -> Result<()> {
    let started = Instant::now();
    let comityd = comityd_path()?;
    let temp;
    let root: PathBuf = match &keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            if std::fs::read_dir(dir)?.next().is_some() {
                bail!("--keep {}: the directory must be empty", dir.display());
            }
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };

    println!("Comity demo: three central authorities on 127.0.0.1, each a real comityd.\n");
    let cast = [
        ("Ministry of Justice of Arcadia", "AR"),
        ("Attorney General of Borduria", "BO"),
        ("Central Authority of Carpania", "CA"),
    ];
    // Faster checkpoints and retries than in production, so that the story
    // fits in seconds.
    let settings = Settings {
        checkpoint_interval_secs: Some(1),
        checkpoint_entries: Some(10),
        initial_backoff_ms: Some(100),
        max_backoff_secs: Some(2),
        ..Settings::default()
    };
    let mut nodes = Vec::new();
    for (name, cc) in cast {
        // Made as `comity init` makes a node, with the settings above.
        let node = LocalNode::builder(&comityd, name, cc)
            .dir(root.join(cc.to_ascii_lowercase()))
            .settings(settings.clone())
            .log_filter("warn")
            .create()?;
        println!(
            "  {name} ({cc})\n    node id {}\n    QUIC on 127.0.0.1:{}",
            node.id, node.port
        );
        nodes.push(node);
    }
    // Stops every daemon still running if the demo ends early.
    let mut net = Network::new(nodes);
    net.start_all()?;
    println!("\nEach operator pins the other two (ids read out over the phone; the checksum catches typos).");
    net.pin_all()?;
    let (ar, bo, ca) = (&net[0], &net[1], &net[2]);

    let send = |from: &LocalNode, to: &LocalNode, body: Value| -> Result<String> {
        let v = from
            .client()
            .post("/v1/messages", &json!({"to": to.country, "body": body}))?;
        Ok(v["id"].as_str().unwrap_or_default().to_string())
    };
    let show = |a: &LocalNode, id: &str| a.client().get(&format!("/v1/messages/{id}"));
    let delivered = |from: &LocalNode, id: &str| -> Result<()> {
        wait_for(&format!("delivery of {id}"), || {
            Ok(show(from, id)?["state"] == "delivered")
        })
    };
    let status = |a: &LocalNode, id: &str, st: Value, note: Option<&str>| -> Result<String> {
        let v = a.client().post(
            &format!("/v1/messages/{id}/status"),
            &json!({"status": st, "note": note}),
        )?;
        Ok(v["id"].as_str().unwrap_or_default().to_string())
    };

    println!("\n1. Arcadia asks Borduria, urgently, for bank records (mutual legal assistance, UNCAC art. 46),\n   with the signed request letter attached.");
    let files = root.join("files");
    std::fs::create_dir_all(&files)?;
    let (letter, letter_sha) =
        evidence_file(&files, "request-letter.pdf", b"%PDF-1.7\n", 240 * 1024)?;
    let letter_id = upload(ar, &letter, "application/pdf")?;
    let mla = ar.client().post(
        "/v1/messages",
        &json!({"to": bo.country, "attachments": [letter_id], "body": {
        "kind": "request", "request_type": "mla", "legal_basis": "uncac-46",
        "offence": {"description": "Bribery of a national public official", "iccs": "07031"},
        "urgency": "urgent", "deadline": "2027-03-31", "case_refs": {"sender": "AR-MJ-2026/0147"},
        "subject": "Bank records of Example Holdings Ltd",
        "body": "Please provide the account statements of Example Holdings Ltd, 2022-2025."}}),
    )?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    delivered(ar, &mla)?;
    println!("   request {mla}: delivered; Arcadia holds Borduria's signed receipt, which covers the letter.");
    let at_bo = read_out_digest(bo, &mla, 0)?;
    println!("   request-letter.pdf, SHA-256 {}…: attached at Arcadia {}…, read out and verified at Borduria {}…",
        &letter_sha[..16], &letter_sha[..16], &at_bo[..16]);
    if at_bo != letter_sha {
        bail!("the letter Borduria holds is not the one Arcadia attached");
    }
    for (st, note) in [
        (
            json!({"status": "registered", "reference": "BO-AG-2026-5531"}),
            None,
        ),
        (
            json!({"status": "in-execution"}),
            Some("Bank served with a production order"),
        ),
        (
            json!({"status": "executed"}),
            Some("Statements sent by reply"),
        ),
    ] {
        let name = st["status"].as_str().unwrap_or_default().to_string();
        let update = status(bo, &mla, st, note)?;
        delivered(bo, &update)?;
        println!(
            "   Borduria: {name}{}",
            note.map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
    let (statements, statements_sha) = evidence_file(
        &files,
        "account-statements-2022-2025.zip",
        b"PK\x03\x04",
        48 << 20,
    )?;
    let statements_id = upload(bo, &statements, "application/zip")?;
    let reply = bo.client().post(
        &format!("/v1/messages/{mla}/reply"),
        &json!({"subject": "Account statements", "body": "Statements attached as agreed.",
        "attachments": [statements_id]}),
    )?;
    let reply_id = reply["id"].as_str().unwrap_or_default().to_string();
    let sent = Instant::now();
    delivered(bo, &reply_id)?;
    let at_ar = read_out_digest(ar, &reply_id, 0)?;
    println!(
        "   Borduria replies with the evidence, 48 MiB, delivered in {:.1} s: account-statements-2022-2025.zip,\n   SHA-256 {}… at Borduria, read out and verified at Arcadia {}…",
        sent.elapsed().as_secs_f64(),
        &statements_sha[..16],
        &at_ar[..16]
    );
    if at_ar != statements_sha {
        bail!("the evidence Arcadia holds is not what Borduria attached");
    }
    wait_for("the history at Arcadia", || {
        Ok(show(ar, &mla)?["history"].as_array().map(|h| h.len()) == Some(3))
    })?;
    let history: Vec<String> = show(ar, &mla)?["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| {
                    e["status"]["status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "   Arcadia sees the history: {}; and the reply.",
        history.join(" -> ")
    );

    println!("\n2. Carpania sends Arcadia spontaneous information (UNCAC art. 46(4)), with a use restriction.");
    let info = send(
        ca,
        ar,
        json!({"kind": "info", "subject": "Transfers through shell companies",
        "body": "Our FIU observed transfers that may relate to your case AR-MJ-2026/0147.",
        "restrictions": {"confidential": true, "use_restrictions": ["Not to be used as evidence without prior consent (art. 46(5))"]}}),
    )?;
    delivered(ca, &info)?;
    let got = show(ar, &info)?;
    for r in got["body"]["restrictions"]["use_restrictions"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
    {
        println!(
            "   Arcadia's operator is shown: RESTRICTION {}",
            r.as_str().unwrap_or_default()
        );
    }
    let ack = status(
        ar,
        &info,
        json!({"status": "acknowledged"}),
        Some("Restriction noted"),
    )?;
    delivered(ar, &ack)?;
    println!("   Arcadia acknowledges it, restrictions accepted.");

    println!("\n3. Arcadia requests extradition; Borduria refuses, with grounds.");
    let ext = send(
        ar,
        bo,
        json!({"kind": "request", "request_type": "extradition", "legal_basis": "uncac-44",
        "offence": {"description": "Embezzlement of public funds", "iccs": "07039"},
        "subject": "Extradition of J. Doe", "body": "Warrant of arrest attached."}),
    )?;
    delivered(ar, &ext)?;
    let refusal = status(
        bo,
        &ext,
        json!({"status": "refused", "grounds": "The person is a national of Borduria (art. 44(11)); Borduria will prosecute."}),
        None,
    )?;
    delivered(bo, &refusal)?;
    wait_for("the refusal at Arcadia", || {
        Ok(show(ar, &ext)?["history"].as_array().map(|h| h.len()) == Some(1))
    })?;
    println!(
        "   request {ext}: refused — {}",
        show(ar, &ext)?["history"][0]["status"]["grounds"]
            .as_str()
            .unwrap_or_default()
    );

    println!(
        "\n4. The nodes witness each other's audit logs (signed checkpoints, cosigned by peers)."
    );
    for a in net.iter() {
        wait_for(&format!("cosignatures on {}'s log", a.country), || {
            let v = a.client().get("/v1/node")?;
            Ok(v["audit"]["witnesses"].as_array().is_some_and(|w| {
                w.len() == 2
                    && w.iter()
                        .all(|w| w["cosigned_size"].as_u64().unwrap_or(0) > 0)
            }))
        })?;
    }
    let mut all_verified = true;
    for a in net.iter() {
        let path = a.dir().join("audit-bundle.jsonl");
        let mut file = std::fs::File::create(&path)?;
        a.client()
            .download("/v1/audit/export", &mut file, u64::MAX)?;
        drop(file);
        let report = verify_bundle(
            std::io::BufReader::new(std::fs::File::open(&path)?),
            &VerifyOptions {
                expected_node: Some(a.id),
                required_witnesses: Vec::new(),
                allow_unwitnessed_tail: 0,
                threads: 1,
            },
        )?;
        let witnesses: Vec<String> = report
            .witnesses
            .iter()
            .map(|w| {
                net.iter()
                    .find(|x| x.id == w.witness)
                    .map(|x| x.country.clone())
                    .unwrap_or_else(|| w.witness.short())
            })
            .collect();
        if report.is_valid() && witnesses.len() == 2 {
            println!(
                "   VERIFIED audit log of {}: {} entries, {} signed checkpoints, cosigned by {}",
                a.country,
                report.entries,
                report.checkpoints,
                witnesses.join(" and ")
            );
        } else {
            all_verified = false;
            println!(
                "   FAILED audit log of {}: {:?}",
                a.country, report.findings
            );
        }
    }

    println!(
        "\n5. Statistics (the UN working paper on international cooperation in criminal matters, §63)."
    );
    for a in net.iter() {
        let s = a.client().get("/v1/stats")?;
        let fmt = |m: &Value| {
            m.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        println!(
            "   {}: sent {} requests ({}), received {} ({}); states sent: {}; received: {}",
            a.country,
            s["sent"]["requests"],
            fmt(&s["sent"]["by_type"]),
            s["received"]["requests"],
            fmt(&s["received"]["by_type"]),
            fmt(&s["sent"]["by_state"]),
            fmt(&s["received"]["by_state"])
        );
    }

    println!("\n6. Shutting down (SIGTERM: each node finishes what it holds, flushes, signs a last checkpoint).");
    for a in net.iter_mut() {
        let status = a.sigterm(Duration::from_secs(60))?;
        println!(
            "   {} stopped: {}",
            a.country,
            if status.success() {
                "exit 0".to_string()
            } else {
                status.to_string()
            }
        );
        if !status.success() {
            all_verified = false;
        }
    }
    match &keep {
        Some(dir) => println!("\nThe network's files are kept in {} (configs, keys, stores, logs, audit bundles).", dir.display()),
        None => println!("\nThe network's files were in a temporary directory, now removed (use --keep DIR to inspect them)."),
    }
    println!("Done in {:.1} s.", started.elapsed().as_secs_f64());
    if !all_verified {
        bail!("the demo found a problem (see above)");
    }
    Ok(())
}
