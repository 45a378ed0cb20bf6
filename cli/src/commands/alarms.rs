//! `comity alarms`: the node's audit alarms, and acknowledging one.

use anyhow::Result;
use serde_json::{json, Value};

use crate::args::AlarmsCommand;
use crate::output::{self, short_id, text, time};
use comity_client::Client;

pub fn run(client: &Client, cmd: Option<AlarmsCommand>, json: bool) -> Result<()> {
    match cmd {
        None => list(client, json),
        Some(AlarmsCommand::Ack { id, json }) => {
            let v = client.post(&format!("/v1/alarms/{id}/ack"), &json!({}))?;
            if json {
                output::json(&v);
            } else {
                println!("alarm {} acknowledged", text(&v["id"]));
            }
            Ok(())
        }
    }
}

/// A peer as people know it: its country if pinned, else a short id.
fn peer(v: &Value) -> String {
    if !v["country"].is_null() {
        text(&v["country"])
    } else if v["peer"].is_null() {
        "unknown".into()
    } else {
        short_id(&v["peer"])
    }
}

fn list(client: &Client, json: bool) -> Result<()> {
    let v = client.get("/v1/alarms")?;
    if json {
        output::json(&v);
        return Ok(());
    }
    let empty = Vec::new();
    let alarms = v["alarms"].as_array().unwrap_or(&empty);
    if alarms.is_empty() {
        println!("no alarms");
    } else {
        let rows: Vec<Vec<String>> = alarms
            .iter()
            .map(|a| {
                let ack = &a["acknowledged"];
                vec![
                    text(&a["id"]),
                    peer(a),
                    time(&a["time"]),
                    if ack.is_null() {
                        "-".into()
                    } else {
                        format!("{} by {}", time(&ack["at"]), text(&ack["by"]))
                    },
                    text(&a["text"]),
                ]
            })
            .collect();
        output::table(&["id", "peer", "time", "acknowledged", "text"], &rows);
    }
    for p in v["peers"].as_array().unwrap_or(&empty) {
        if p["suppressed"].as_u64().unwrap_or(0) > 0 {
            println!(
                "{}: {} older alarms not kept",
                peer(p),
                text(&p["suppressed"])
            );
        }
    }
    Ok(())
}
