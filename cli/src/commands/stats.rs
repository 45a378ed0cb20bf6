use anyhow::Result;
use serde_json::Value;

use crate::args::Format;
use crate::output::{self, duration, text};
use comity_client::Client;

const GROUPS: [(&str, &str); 5] = [
    ("by_type", "type"),
    ("by_legal_basis", "legal_basis"),
    ("by_offence_section", "offence_section"),
    ("by_peer", "peer"),
    ("by_state", "state"),
];

pub fn run(client: &Client, format: Format) -> Result<()> {
    let v = client.get("/v1/stats")?;
    match format {
        Format::Json => output::json(&v),
        Format::Csv => csv(&v),
        Format::Table => table(&v),
    }
    Ok(())
}

fn entries(v: &Value) -> Vec<(String, u64)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// One row per (direction, dimension, value): easy to pivot in a spreadsheet.
fn csv(v: &Value) {
    println!("direction,dimension,value,count");
    for dir in ["sent", "received"] {
        let d = &v[dir];
        println!(
            "{dir},total,requests,{}",
            d["requests"].as_u64().unwrap_or(0)
        );
        for (key, dim) in GROUPS {
            for (value, n) in entries(&d[key]) {
                println!("{dir},{dim},{},{n}", csv_field(&value));
            }
        }
        let t = &d["time_to_final"];
        println!(
            "{dir},time_to_final,count,{}",
            t["count"].as_u64().unwrap_or(0)
        );
        for p in ["median_secs", "p90_secs"] {
            if let Some(s) = t[p].as_u64() {
                println!("{dir},time_to_final,{p},{s}");
            }
        }
        let overdue = d["open_past_deadline"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0);
        println!("{dir},open_past_deadline,requests,{overdue}");
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn table(v: &Value) {
    for dir in ["sent", "received"] {
        let d = &v[dir];
        println!("Requests {dir}: {}", d["requests"].as_u64().unwrap_or(0));
        let mut rows = Vec::new();
        for (key, dim) in GROUPS {
            for (value, n) in entries(&d[key]) {
                rows.push(vec![dim.to_string(), value, n.to_string()]);
            }
        }
        if !rows.is_empty() {
            output::table(&["by", "value", "count"], &rows);
        }
        let t = &d["time_to_final"];
        match (t["median_secs"].as_u64(), t["p90_secs"].as_u64()) {
            (Some(m), Some(p)) => println!(
                "Time from receipt to a final state ({} requests): median {}, 90th percentile {}",
                t["count"],
                duration(m),
                duration(p)
            ),
            _ => println!("Time from receipt to a final state: no request has reached one yet"),
        }
        let overdue = d["open_past_deadline"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default();
        if overdue.is_empty() {
            println!("Open requests past their deadline: none");
        } else {
            println!("Open requests past their deadline:");
            for o in overdue {
                println!(
                    "  {}  {}  deadline {}  {}",
                    text(&o["id"]),
                    text(&o["peer"]),
                    text(&o["deadline"]),
                    text(&o["state"])
                );
            }
        }
        println!();
    }
}
