use anyhow::Result;
use serde_json::Value;

use crate::output::{self, short_id, text, time};
use comity_client::Client;

pub fn list(client: &Client, inbox: bool, outbox: bool, json: bool) -> Result<()> {
    let path = match (inbox, outbox) {
        (true, _) => "/v1/messages?box=inbox",
        (_, true) => "/v1/messages?box=outbox",
        _ => "/v1/messages",
    };
    let v = client.get(path)?;
    if json {
        output::json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|m| {
            vec![
                text(&m["id"]),
                if m["direction"] == "inbound" {
                    "in"
                } else {
                    "out"
                }
                .to_string(),
                text(&m["kind"]),
                short_id(&m["peer"]),
                text(&m["state"]),
                time(&m["created_at"]),
                text(&m["subject"]),
            ]
        })
        .collect();
    output::table(
        &["id", "dir", "kind", "peer", "state", "created", "subject"],
        &rows,
    );
    Ok(())
}

pub fn show(client: &Client, id: &str, json: bool) -> Result<()> {
    let m = client.get(&super::MessageArg::parse(id)?.path("/v1/messages", ""))?;
    if json {
        output::json(&m);
        return Ok(());
    }
    let b = &m["body"];
    let dir = if m["direction"] == "inbound" {
        "from"
    } else {
        "to"
    };
    println!(
        "{} {}  ({dir} {})",
        text(&m["kind"]),
        text(&m["id"]),
        text(&m["peer"])
    );
    println!("state:       {}", text(&m["state"]));
    println!("created:     {}", time(&m["created_at"]));
    if !m["received_at"].is_null() {
        println!("received:    {}", time(&m["received_at"]));
    }
    if !m["delivered_at"].is_null() {
        println!("delivered:   {}", time(&m["delivered_at"]));
    }
    if let Some(e) = m["last_error"].as_str() {
        println!("last error:  {e}");
    }
    if let Some(r) = m["resent_as"].as_str() {
        println!("resent as:   {r}");
    }
    if let Some(o) = m["resend_of"].as_str() {
        println!("resend of:   {o}");
    }
    println!("envelope:    {}", text(&m["envelope_digest"]));
    println!(
        "receipt:     {}",
        if m["receipt"].is_string() {
            "held (signed by the recipient)"
        } else {
            "none yet"
        }
    );
    for (label, key) in [
        ("type", "request_type"),
        ("legal basis", "legal_basis"),
        ("urgency", "urgency"),
        ("deadline", "deadline"),
        ("language", "language"),
    ] {
        if !b[key].is_null() {
            println!("{:<12} {}", format!("{label}:"), text(&b[key]));
        }
    }
    if b["offence"].is_object() {
        println!(
            "offence:     {} (ICCS {})",
            text(&b["offence"]["description"]),
            text(&b["offence"]["iccs"])
        );
    }
    show_restrictions(&b["restrictions"]);
    if b["status"].is_object() {
        println!(
            "status:      {} regarding {}",
            text(&b["status"]["status"]),
            text(&b["regarding"])
        );
    }
    if let Some(s) = b["subject"].as_str() {
        println!("subject:     {s}");
    }
    if let Some(text) = b["body"].as_str() {
        println!("\n{text}\n");
    }
    let history = m["history"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default();
    if !history.is_empty() {
        println!("history:");
        for h in history {
            let s = &h["status"];
            let detail = ["reference", "grounds", "details", "reason", "until"]
                .iter()
                .filter_map(|k| s[*k].as_str().map(|v| format!("{k}: {v}")))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "  {}  {:<30} by {:<4} {}{}",
                time(&h["at"]),
                text(&s["status"]),
                text(&h["from"]),
                detail,
                h["note"]
                    .as_str()
                    .map(|n| format!("  note: {n}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn show_restrictions(r: &Value) {
    if !r.is_object() {
        return;
    }
    if r["confidential"] == true {
        println!("RESTRICTION: confidential (UNCAC art. 46(5)): keep it, and the fact it was received, confidential");
    }
    for u in r["use_restrictions"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
    {
        println!("RESTRICTION on use: {}", text(u));
    }
}
