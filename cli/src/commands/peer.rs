use anyhow::Result;
use serde_json::json;

use crate::args::PeerCommand;
use crate::output::{self, short_id, text, time};
use comity_client::Client;

pub fn run(client: &Client, cmd: PeerCommand) -> Result<()> {
    match cmd {
        PeerCommand::Add {
            id,
            addr,
            name,
            country,
            confirm_rotation,
            json,
        } => {
            // Parse here for an operator-friendly message on a typo.
            let id: comity_protocol::NodeId = id.parse()?;
            let v = client.post(
                "/v1/peers",
                &json!({"id": id, "address": addr, "name": name, "country": country,
                        "confirm_rotation": confirm_rotation}),
            )?;
            if json {
                output::json(&v);
            } else {
                println!("pinned {country} ({id}) at {addr}");
                if v["persisted"] == false {
                    println!(
                        "note: not written to the configuration; it lasts until comityd restarts"
                    );
                }
            }
        }
        PeerCommand::List { json } => {
            let v = client.get("/v1/peers")?;
            if json {
                output::json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    vec![
                        text(&p["country"]),
                        text(&p["name"]),
                        short_id(&p["id"]),
                        text(&p["address"]),
                        match (p["over_budget"] == true, p["connected"] == true) {
                            (true, _) => "over budget",
                            (false, true) => "connected",
                            (false, false) => "-",
                        }
                        .to_string(),
                        time(&p["last_contact"]),
                        text(&p["pending"]),
                        text(&p["rejections_suppressed"]),
                        text(&p["last_error"]),
                    ]
                })
                .collect();
            let history: Vec<String> = v
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .flat_map(|p| {
                    let cc = text(&p["country"]);
                    let repinned =
                        p["repinned_from"]
                            .as_array()
                            .filter(|a| !a.is_empty())
                            .map(|old| {
                                let old: Vec<String> = old.iter().map(short_id).collect();
                                format!("{cc}: repinned from {} (cut out, refused)", old.join(", "))
                            });
                    let rotated = p["rotated_from"]
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .map(|old| {
                            let old: Vec<String> = old.iter().map(short_id).collect();
                            format!("{cc}: rotated from {} (by its identity transition)", old.join(", "))
                        });
                    let r = &p["rotation"];
                    let rotation = r.is_object().then(|| {
                        let applies =
                            if r["applies_at"].is_null() {
                                format!("applies when accepted (comity peer accept-rotation {cc} --reason ...)")
                            } else {
                                format!(
                                "applies at {}{} unless refused (comity peer refuse-rotation {cc})",
                                time(&r["applies_at"]),
                                if r["accepted_at"].is_null() { "" } else { ", accepted" }
                            )
                            };
                        format!(
                            "{cc}: ROTATION PENDING to {} (\"{}\"), effective after {}; {applies}",
                            text(&r["new"]),
                            text(&r["reason"]),
                            time(&r["effective_after"]),
                        )
                    });
                    repinned.into_iter().chain(rotated).chain(rotation)
                })
                .collect();
            output::table(
                &[
                    "cc",
                    "name",
                    "id",
                    "address",
                    "state",
                    "last contact",
                    "pending",
                    "suppressed",
                    "last error",
                ],
                &rows,
            );
            for line in history {
                println!("{line}");
            }
        }
        PeerCommand::Repin {
            peer,
            id,
            addr,
            reason,
            json,
        } => {
            let id: comity_protocol::NodeId = id.parse()?;
            let v = client.post(
                &format!("/v1/peers/{peer}/repin"),
                &json!({"id": id, "address": addr, "reason": reason}),
            )?;
            if json {
                output::json(&v);
            } else {
                println!(
                    "repinned {peer} to {id}; {} cut out; {} pending message(s) to be sealed again",
                    text(&v["old"]),
                    text(&v["moved"])
                );
                if let Some(w) = v["warning"].as_str() {
                    println!("warning: {w}");
                } else if v["persisted"] == false {
                    println!(
                        "note: not written to the configuration; it lasts until comityd restarts"
                    );
                }
            }
        }
        PeerCommand::AcceptRotation { peer, reason, json } => {
            let v = client.post(
                &format!("/v1/peers/{peer}/rotation/accept"),
                &json!({"reason": reason}),
            )?;
            if json {
                output::json(&v);
            } else {
                println!(
                    "accepted {peer}'s identity transition to {}: applies from {}",
                    text(&v["rotation"]["new"]),
                    time(&v["rotation"]["applies_at"])
                );
            }
        }
        PeerCommand::RefuseRotation { peer, reason, json } => {
            let v = client.post(
                &format!("/v1/peers/{peer}/rotation/refuse"),
                &json!({"reason": reason}),
            )?;
            if json {
                output::json(&v);
            } else {
                println!(
                    "refused {peer}'s identity transition: {} is never accepted; \
                     if its old key may be stolen, repin it (comity peer repin {peer} --id NEW --reason ...)",
                    text(&v["refused"])
                );
            }
        }
        PeerCommand::Remove { peer, json } => {
            let v = client.delete(&format!("/v1/peers/{peer}"))?;
            if json {
                output::json(&v);
            } else {
                println!("unpinned {}", text(&v["id"]));
            }
        }
    }
    Ok(())
}
