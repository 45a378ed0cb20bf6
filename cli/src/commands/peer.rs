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
            json,
        } => {
            // Parse here for an operator-friendly message on a typo.
            let id: comity_protocol::NodeId = id.parse()?;
            let v = client.post(
                "/v1/peers",
                &json!({"id": id, "address": addr, "name": name, "country": country}),
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
