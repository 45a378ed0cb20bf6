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
        Some(KeysCommand::RotateIdentity {
            reason,
            effective_in_hours,
            json,
        }) => {
            let v = client.post(
                "/v1/keys/rotate-identity",
                &json!({"reason": reason,
                        "effective_in_secs": effective_in_hours.saturating_mul(3600)}),
            )?;
            if json {
                output::json(&v);
            } else {
                print_transition(&v);
                println!(
                    "read the new id to each peer's operator by phone: they accept it with \
                     `comity peer accept-rotation`, or it applies after their notice period"
                );
            }
            return Ok(());
        }
    };
    if json {
        output::json(&v);
    } else {
        print(&v);
    }
    Ok(())
}

/// This node's announced identity transition.
fn print_transition(t: &Value) {
    if t["switched"] == Value::Bool(true) {
        println!(
            "identity switched: {} -> {} (\"{}\"), effective after {}; {}",
            text(&t["old"]),
            text(&t["new"]),
            text(&t["reason"]),
            time(&t["effective_after"]),
            if t["presented"] == Value::Bool(true) {
                "the statement is still presented to peers"
            } else {
                "the statement is no longer presented"
            }
        );
        return;
    }
    println!(
        "identity transition announced: {} -> {} (\"{}\"), effective after {}; new key in {}",
        text(&t["old"]),
        text(&t["new"]),
        text(&t["reason"]),
        time(&t["effective_after"]),
        text(&t["next_key_file"])
    );
    if t["presented"] == Value::Bool(false) {
        println!(
            "  NOT PRESENTED to peers: the new key's file is missing or holds another key (see the daemon's log); put it back from a backup, or restart after fixing it"
        );
    }
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
    if v["identity_transition"].is_object() {
        print_transition(&v["identity_transition"]);
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
