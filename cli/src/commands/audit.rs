//! `comity audit`: export and prove (through the daemon), verify (offline,
//! with nothing but `comity-protocol`).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context, Result};
use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
use comity_protocol::audit::proof_file::{verify_inclusion_file, MAX_PROOF_FILE_BYTES};
use comity_protocol::NodeId;

use crate::args::AuditCommand;
use crate::output;

pub fn run(config: Option<&Path>, cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Export { out } => {
            let client = super::client_for(&super::config_path(config.map(Path::to_path_buf))?)?;
            let bytes = super::write_new_file(&out, |file| {
                Ok(client.download("/v1/audit/export", file, u64::MAX)?)
            })?;
            // Say at once what the bundle holds: how far witnesses vouch.
            let file =
                File::open(&out).with_context(|| format!("cannot open {}", out.display()))?;
            let report = verify_bundle(
                BufReader::with_capacity(1 << 20, file),
                &VerifyOptions::default(),
            )
            .with_context(|| format!("cannot read {}", out.display()))?;
            println!(
                "audit log exported to {} ({bytes} bytes, {} entries); check it with `comity audit verify {}`",
                out.display(),
                report.entries,
                out.display()
            );
            let covering: Vec<String> = report
                .witnesses
                .iter()
                .filter(|w| w.newest_size >= report.entries)
                .map(|w| w.witness.short())
                .collect();
            if !covering.is_empty() {
                println!("  cosigned to its end by: {}", covering.join(", "));
            }
            if let Some(u) = report.unwitnessed {
                println!(
                    "  entries {}..{} are cosigned by no witness yet (a peer down or slow to answer); they rest on this node's signature",
                    u.from, u.to
                );
            }
        }
        AuditCommand::Verify {
            path,
            node,
            witnesses,
            allow_unwitnessed_tail,
            json,
        } => {
            let options = VerifyOptions {
                expected_node: node.as_deref().map(str::parse::<NodeId>).transpose()?,
                required_witnesses: witnesses
                    .iter()
                    .map(|w| w.parse::<NodeId>())
                    .collect::<Result<_, _>>()?,
                allow_unwitnessed_tail,
                threads: 0,
            };
            let file =
                File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let report = verify_bundle(BufReader::with_capacity(1 << 20, file), &options)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if json {
                output::json(&serde_json::to_value(&report)?);
            } else {
                print_report(&report);
            }
            if !report.is_valid() {
                bail!(
                    "{}: the audit log does NOT verify ({} findings)",
                    path.display(),
                    report.findings.len() as u64 + report.findings_omitted
                );
            }
        }
        AuditCommand::Witnessed { peer, out } => {
            let client = super::client_for(&super::config_path(config.map(Path::to_path_buf))?)?;
            let v = client.get(&format!("/v1/audit/witnessed/{peer}"))?;
            if let Some(why) = v["problem"].as_str() {
                bail!("the checkpoint this node cosigned last does not name its log: {why} (ask a peer that followed the log's switches)");
            }
            let text = v["file"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("the node's answer has no checkpoint"))?;
            super::write_new_file(&out, |file| Ok(file.write_all(text.as_bytes())?))?;
            let switches = match v["switches"].as_u64().unwrap_or(0) {
                0 => String::new(),
                n => format!(" with the {n} switch(es) of its key that lead to its signer"),
            };
            let again = match v["cosigned"].as_bool() {
                Some(true) => " (cosigned again now)",
                _ => " (not cosigned again: the note is too long)",
            };
            println!(
                "the checkpoint of size {} of {}'s log, as this node cosigned it last{again}{switches}, written to {}",
                v["size"],
                v["node"].as_str().unwrap_or_default(),
                out.display()
            );
        }
        AuditCommand::Proof { id, out } => {
            let arg = super::MessageArg::parse(&id)?;
            let id = arg.id();
            let client = super::client_for(&super::config_path(config.map(Path::to_path_buf))?)?;
            let mut buf = Vec::new();
            client.download(
                &arg.path("/v1/audit/proof", ""),
                &mut buf,
                MAX_PROOF_FILE_BYTES as u64,
            )?;
            super::write_new_file(&out, |file| Ok(file.write_all(&buf)?))?;
            println!("inclusion proof for {id} written to {}; check it with `comity audit verify-proof {}`", out.display(), out.display());
        }
        AuditCommand::VerifyProof { path, json } => {
            let text = super::read_text(&path, MAX_PROOF_FILE_BYTES as u64, "proof file")?;
            let report = verify_inclusion_file(&text).map_err(|e| {
                anyhow::anyhow!("{}: the proof does NOT verify: {e}", path.display())
            })?;
            if json {
                output::json(&serde_json::to_value(&report)?);
            } else {
                println!(
                    "proof verified: {} entries about message {} are in the log of {}",
                    report.entries.len(),
                    report.message_id,
                    report.node_id
                );
                println!(
                    "  checkpoint: size {}, root {}",
                    report.checkpoint_size, report.checkpoint_root
                );
                for c in &report.cosigners {
                    println!(
                        "  cosigned by: {}",
                        serde_json::to_value(c)
                            .map(|v| v.to_string())
                            .unwrap_or_default()
                    );
                }
                for e in &report.entries {
                    println!(
                        "  #{} {} {} {}",
                        e.seq,
                        output::time(&serde_json::Value::from(e.time.as_millis())),
                        e.kind,
                        e.detail
                    );
                }
                print_custody(&report.custody);
            }
        }
    }
    Ok(())
}

fn print_report(r: &comity_protocol::audit::bundle::Report) {
    let node = r
        .node_id
        .map(|n| n.to_string())
        .unwrap_or_else(|| "?".into());
    if r.is_valid() {
        println!("VERIFIED: the audit log of {node} is intact");
    } else {
        println!("FAILED: the audit log of {node} does not verify");
    }
    println!(
        "  entries: {}, signed checkpoints: {}",
        r.entries, r.checkpoints
    );
    if let Some(c) = &r.newest_checkpoint {
        println!("  newest checkpoint: size {}, root {}", c.size, c.root);
    }
    if !r.node_pinned {
        println!(
            "  note: the node key was taken from the bundle itself; pass --node NODEID to pin it"
        );
    }
    for w in &r.witnesses {
        println!(
            "  witness {}: cosigned {} checkpoints, newest size {}",
            w.witness, w.cosigned_checkpoints, w.newest_size
        );
    }
    match r.unwitnessed {
        Some(u) if r.witnesses.is_empty() => println!(
            "  no witness cosigned any of the {} entries: they rest on the node's own signature",
            u.to - u.from
        ),
        Some(u) => println!(
            "  entries {}..{} ({} entries) are cosigned by no witness: they rest on the node's own signature",
            u.from,
            u.to,
            u.to - u.from
        ),
        None => println!("  every entry is cosigned by at least one witness"),
    }
    for x in &r.restorations {
        let size = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        match (x.kind, x.peer) {
            (comity_protocol::audit::AuditKind::PeerRestored, Some(peer)) => println!(
                "  entry {}: peer {peer} restored its log to size {} (it had {} cosigned here): its entries {}..{} are lost",
                x.entry,
                size(x.restored_size),
                size(x.witnessed_size),
                size(x.restored_size),
                size(x.witnessed_size),
            ),
            _ => println!(
                "  entry {}: this log was restored from a backup at size {}; entries its witnesses saw after it are lost (their logs name how many)",
                x.entry,
                size(x.restored_size),
            ),
        }
    }
    if let Some(p) = &r.predecessor {
        println!(
            "  entry 0: this log begins after the log of {} (a lost key), at its checkpoint of size {}, root {}; the two are linked by the operators' repin, not by a key",
            p.node, p.size, p.root
        );
        for k in &p.later_keys {
            println!("    the old log had switched to {k} before that checkpoint");
        }
        let by: Vec<String> = p.cosigned_by.iter().map(ToString::to_string).collect();
        match by.is_empty() {
            true => println!("    no witness's cosignature of that checkpoint is carried: it rests on the old key"),
            false => println!("    that checkpoint is cosigned by {}", by.join(", ")),
        }
    }
    for k in &r.key_switches {
        println!(
            "  entry {}: the node switched its identity key from {} to {} (\"{}\"); later checkpoints are signed by the new key",
            k.entry, k.old, k.new, k.reason
        );
    }
    for f in &r.findings {
        println!("  PROBLEM: {f}");
    }
    if r.findings_omitted > 0 {
        println!("  ... and {} more problems", r.findings_omitted);
    }
}

/// Each attachment's steps on this node, as the proof's entries state
/// them, and whether they all name the same bytes.
fn print_custody(chains: &[comity_protocol::audit::custody::AttachmentCustody]) {
    if chains.is_empty() {
        return;
    }
    println!("chain of custody of the attachments (as this node's log records it):");
    for c in chains {
        if c.index == u64::MAX {
            println!("  attachment ?:");
        } else {
            println!("  attachment {}:", c.index);
        }
        for s in &c.steps {
            let mut facts = Vec::new();
            if let Some(n) = s.size {
                facts.push(format!("size {n}"));
            }
            if let Some(h) = s.sha256 {
                facts.push(format!("sha256 {h}"));
            }
            if let Some(r) = s.tree_root {
                facts.push(format!("tree root {r}"));
            }
            if let Some(note) = &s.note {
                facts.push(note.clone());
            }
            println!(
                "    #{} {} {:<17} by {:<8} {}",
                s.seq,
                output::time(&serde_json::Value::from(s.time.as_millis())),
                s.event.as_str(),
                s.actor.as_str(),
                facts.join(", ")
            );
        }
        if c.consistent {
            println!("    every step names the same size and digests");
        } else {
            println!("    MISMATCH: the steps do not all name the same size and digests (or a detail could not be read)");
        }
    }
}
