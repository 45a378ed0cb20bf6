//! `comity send request|info|consultation`: build the message from flags,
//! check it the way the peer will, submit it.

use anyhow::{Context, Result};
use comity_protocol::message::{
    Body, CaseReferences, Consultation, Offence, Request, Restrictions, SpontaneousInformation,
    Thread, Urgency,
};
use comity_protocol::MessageId;
use serde_json::json;

use super::attach::{self, Progress};
use crate::args::{BodyArgs, SendCommand};
use crate::output;
use comity_client::Client;

/// Largest body file read (the node enforces its own, lower, limit).
const MAX_BODY_FILE: u64 = comity_protocol::message::limits::MAX_BODY_BYTES as u64;

pub fn body_text(args: &BodyArgs) -> Result<String> {
    match (&args.body, &args.body_file) {
        (Some(text), _) => Ok(text.clone()),
        (None, Some(path)) => {
            super::read_text(path, MAX_BODY_FILE, "body file").with_context(|| {
                format!(
                    "a message body is at most {MAX_BODY_FILE} bytes (send large evidence separately)"
                )
            })
        }
        (None, None) => anyhow::bail!("give --body TEXT or --body-file PATH"),
    }
}

fn offence(text: &Option<String>, iccs: &Option<String>) -> Result<Option<Offence>> {
    Ok(match (text, iccs) {
        (Some(d), Some(c)) => Some(Offence {
            description: d.clone(),
            iccs: c.parse()?,
        }),
        _ => None,
    })
}

fn message_id(s: &Option<String>) -> Result<Option<MessageId>> {
    s.as_deref().map(str::parse).transpose().map_err(Into::into)
}

pub fn run(client: &Client, cmd: SendCommand) -> Result<()> {
    let (to, body, attach, retry, json) = match cmd {
        SendCommand::Request(a) => {
            let in_reply_to = message_id(&a.in_reply_to)?;
            let body = Body::Request(Request {
                request_type: a.request_type.parse()?,
                legal_basis: a.legal_basis.parse()?,
                offence: offence(&a.about.offence, &a.about.iccs)?,
                urgency: if a.urgent {
                    Urgency::Urgent
                } else {
                    Urgency::Normal
                },
                deadline: a.deadline.as_deref().map(str::parse).transpose()?,
                language: a.about.language.parse()?,
                case_refs: CaseReferences {
                    sender: a.about.our_ref,
                    receiver: a.their_ref,
                },
                subject: a.subject,
                body: body_text(&a.body)?,
                thread: Thread {
                    in_reply_to,
                    root: in_reply_to,
                },
            });
            (a.to, body, a.attach, a.retry, a.json)
        }
        SendCommand::Info(a) => {
            let body = Body::SpontaneousInformation(SpontaneousInformation {
                subject: a.subject,
                body: body_text(&a.body)?,
                offence: offence(&a.about.offence, &a.about.iccs)?,
                language: a.about.language.parse()?,
                case_refs: CaseReferences {
                    sender: a.about.our_ref,
                    receiver: None,
                },
                restrictions: Restrictions {
                    confidential: a.confidential,
                    use_restrictions: a.restrictions,
                },
                thread: Thread::default(),
            });
            (a.to, body, a.attach, a.retry, a.json)
        }
        SendCommand::Consultation(a) => {
            let body = Body::Consultation(Consultation {
                regarding: message_id(&a.regarding)?,
                subject: a.subject,
                body: body_text(&a.body)?,
                thread: Thread::default(),
            });
            (a.to, body, a.attach, a.retry, a.json)
        }
    };
    body.validate()?;
    let attachments = attach::upload_all(client, &attach.files, Progress::for_output(json))?;
    let mut request = json!({"to": to, "body": body});
    if !attachments.is_empty() {
        request["attachments"] = json!(attachments);
    }
    let v = super::post_once(client, "/v1/messages", Some(&request), &retry)?;
    if json {
        output::json(&v);
    } else {
        println!(
            "{} {} accepted for {to}: {}",
            body.kind(),
            output::text(&v["id"]),
            output::text(&v["state"])
        );
    }
    Ok(())
}
