//! `comity keys`: the node's encryption keys, and rotating one now.

use anyhow::Result;
use serde_json::{json, Value};

use crate::args::KeysCommand;
use crate::output::{self, text, time};
use comity_client::Client;

pub fn run(client: &Client, cmd: Option<KeysCommand>, json: bool) -> Result<()> {
    let (v, json) = match cmd {
        None => (client.get("/v1/keys")?, json),
        Some(KeysCommand::RotateEncryption { json }) => {
            (client.post("/v1/keys/rotate-encryption", &json!({}))?, json)
        }
    };
    if json {
        output::json(&v);
    } else {
        print(&v);
    }
    Ok(())
}

fn print(v: &Value) {
    let id = &v["identity"];
    println!(
        "identity key {}: {}",
        text(&id["node_id"]),
        text(&id["location"])
    );
    if let Some(facts) = id["token_key"].as_object() {
        let yes = |k: &str| facts.get(k).and_then(Value::as_bool) == Some(true);
        println!(
            "  on the token: {}, {}{} ({} signatures since start, {} of them TLS handshakes)",
            if yes("sensitive") {
                "sensitive"
            } else {
                "NOT SENSITIVE"
            },
            if yes("extractable") {
                "EXTRACTABLE"
            } else {
                "not extractable"
            },
            if yes("never_extractable") && yes("local") {
                ", made on the token and never extractable"
            } else {
                ""
            },
            text(&id["token_signatures"]),
            text(&id["tls_handshake_signatures"])
        );
        if id["token_pin_refused"].as_bool() == Some(true) {
            println!("  THE TOKEN REFUSED THE PIN: nothing is signed until comityd restarts with the right PIN");
        }
    }
    println!(
        "encryption key {}: made {} ({} days old){}",
        text(&v["encryption_key"]),
        time(&v["created_at"]),
        text(&v["age_days"]),
        if v["overdue"].as_bool() == Some(true) {
            " — OLDER THAN ITS POLICY"
        } else {
            ""
        }
    );
    if v["next_rotation_at"].is_null() {
        println!("next rotation: none scheduled ([keys] encryption_rotation_days = 0)");
    } else {
        println!("next rotation: {}", time(&v["next_rotation_at"]));
    }
    let empty = Vec::new();
    for p in v["previous"].as_array().unwrap_or(&empty) {
        println!(
            "superseded {}: made {}, superseded {}, destroyed {}",
            text(&p["encryption_key"]),
            time(&p["created_at"]),
            time(&p["superseded_at"]),
            time(&p["destroyed_at"])
        );
    }
}
