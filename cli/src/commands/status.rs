//! `comity status` and `comity reply`: the receiving authority reports
//! progress; the requester may withdraw.

use anyhow::{bail, Result};
use comity_protocol::message::{BusinessStatus, Date};
use serde_json::json;

use crate::args::{AttachArgs, BodyArgs, RetryArgs};
use crate::output;
use comity_client::Client;

pub struct StatusArgs {
    pub set: String,
    pub note: Option<String>,
    pub reference: Option<String>,
    pub grounds: Option<String>,
    pub details: Option<String>,
    pub reason: Option<String>,
    pub until: Option<String>,
}

fn required(value: Option<String>, flag: &str, state: &str) -> Result<String> {
    match value {
        Some(v) => Ok(v),
        None => bail!("--set {state} needs {flag}"),
    }
}

/// The status the flags describe, with the details each state needs.
fn status(a: StatusArgs) -> Result<(BusinessStatus, Option<String>)> {
    let name = a.set.trim().to_ascii_lowercase();
    let s = match name.as_str() {
        "registered" => BusinessStatus::Registered {
            reference: required(a.reference, "--ref THEIR_REF (your case reference)", &name)?,
        },
        "in-execution" => BusinessStatus::InExecution,
        "additional-information-needed" => BusinessStatus::AdditionalInformationNeeded {
            details: required(a.details, "--details TEXT (what is needed)", &name)?,
        },
        "partially-executed" => BusinessStatus::PartiallyExecuted,
        "executed" => BusinessStatus::Executed,
        "refused" => BusinessStatus::Refused {
            grounds: required(a.grounds, "--grounds TEXT (the grounds for refusal)", &name)?,
        },
        "postponed" => BusinessStatus::Postponed {
            reason: required(a.reason, "--reason TEXT", &name)?,
            until: a.until.as_deref().map(str::parse::<Date>).transpose()?,
        },
        "withdrawn" => BusinessStatus::Withdrawn,
        "acknowledged" => BusinessStatus::Acknowledged,
        other => bail!(
            "unknown state {other:?}; valid states: {}",
            BusinessStatus::NAMES.join(", ")
        ),
    };
    s.validate()?;
    Ok((s, a.note))
}

pub fn set(
    client: &Client,
    id: &str,
    args: StatusArgs,
    retry: &RetryArgs,
    json: bool,
) -> Result<()> {
    let arg = super::MessageArg::parse(id)?;
    let id = arg.id();
    let (status, note) = status(args)?;
    let name = status.name();
    let v = super::post_once(
        client,
        &arg.path("/v1/messages", "/status"),
        Some(&json!({"status": status, "note": note})),
        retry,
    )?;
    if json {
        output::json(&v);
    } else {
        println!(
            "{name} sent regarding {id} (update {})",
            output::text(&v["id"])
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one per flag of `comity reply`
pub fn reply(
    client: &Client,
    id: &str,
    subject: String,
    body: &BodyArgs,
    partial: bool,
    attach: &AttachArgs,
    retry: &RetryArgs,
    json: bool,
) -> Result<()> {
    let arg = super::MessageArg::parse(id)?;
    let id = arg.id();
    let text = super::send::body_text(body)?;
    let attachments = super::attach::upload_all(
        client,
        &attach.files,
        super::attach::Progress::for_output(json),
    )?;
    let mut request = json!({"subject": subject, "body": text, "partial": partial});
    if !attachments.is_empty() {
        request["attachments"] = json!(attachments);
    }
    let v = super::post_once(
        client,
        &arg.path("/v1/messages", "/reply"),
        Some(&request),
        retry,
    )?;
    if json {
        output::json(&v);
    } else {
        println!("reply {} sent regarding {id}", output::text(&v["id"]));
    }
    Ok(())
}

/// `comity status`: the node at a glance (what `/metrics` exposes, for people).
pub fn overview(client: &Client, json: bool) -> Result<()> {
    let v = client.get("/v1/node")?;
    if json {
        output::json(&v);
        return Ok(());
    }
    let t = output::text;
    println!("{} ({})  {}", t(&v["name"]), t(&v["country"]), t(&v["id"]));
    println!("listening on {}", t(&v["listen"]));
    let outbox: Vec<String> = v["outbox"]
        .as_object()
        .map(|m| m.iter().map(|(k, n)| format!("{n} {k}")).collect())
        .unwrap_or_default();
    println!(
        "outbox: {}; inbox: {}; envelopes refused: {}",
        if outbox.is_empty() {
            "empty".to_string()
        } else {
            outbox.join(", ")
        },
        t(&v["inbox"]),
        t(&v["rejected"])
    );
    let st = &v["storage"];
    let mib = |x: &serde_json::Value| {
        x.as_u64()
            .map_or("?".to_string(), |b| (b >> 20).to_string())
    };
    let disk = &st["disk"];
    let space = format!(
        "{} MiB free of {} MiB, reserve {} MiB",
        mib(&disk["free_bytes"]),
        mib(&disk["total_bytes"]),
        mib(&disk["reserve_bytes"])
    );
    match st["state"].as_str() {
        Some("ok") => println!("storage: ok ({space})"),
        Some("disk-full") => println!(
            "STORAGE: disk full ({space}): submissions refused, incoming messages deferred until there is room"
        ),
        Some(state) => println!(
            "STORAGE: {state}: {} (the node reopens its store once the disk has room; {space})",
            t(&st["fault"]["reason"])
        ),
        None => {}
    }
    let k = &v["keys"];
    if !k.is_null() {
        let next = if k["next_rotation_at"].is_null() {
            "none scheduled".to_string()
        } else {
            crate::output::time(&k["next_rotation_at"])
        };
        println!(
            "{}: {} days old, next rotation {next}, {} superseded key(s) still opened",
            if k["overdue"].as_bool() == Some(true) {
                "ENCRYPTION KEY OLDER THAN ITS POLICY"
            } else {
                "encryption key"
            },
            t(&k["age_days"]),
            k["previous"].as_array().map_or(0, |p| p.len())
        );
        let id = &k["identity"];
        if id["token_pin_refused"].as_bool() == Some(true) {
            println!("IDENTITY KEY: THE TOKEN REFUSED THE PIN; nothing is signed until comityd restarts with the right PIN");
        } else if !id.is_null() {
            println!("identity key: {}", t(&id["location"]));
        }
    }
    let a = &v["audit"];
    println!(
        "audit log: {} entries, newest durable checkpoint at size {}",
        t(&a["entries"]),
        t(&a["latest_checkpoint"])
    );
    for w in a["witnesses"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
    {
        println!(
            "  witness {} has cosigned up to size {}",
            t(&w["country"]),
            t(&w["cosigned_size"])
        );
    }
    let alarms = a["alarms"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default();
    if alarms.is_empty() {
        println!("alarms: none unacknowledged");
    } else {
        for al in alarms {
            println!("ALARM: {}", t(al));
        }
        println!("(`comity alarms` lists them with ids; `comity alarms ack ID` acknowledges one)");
    }
    for r in a["restorations"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
    {
        println!("restored (acknowledged by its statement): {}", t(r));
    }
    Ok(())
}
