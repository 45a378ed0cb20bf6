//! `comity resend MSGID`: a failed message sent again under a new id.

use anyhow::Result;

use crate::args::RetryArgs;
use crate::output;
use comity_client::Client;

pub fn run(client: &Client, id: &str, retry: &RetryArgs, json: bool) -> Result<()> {
    let arg = super::MessageArg::parse(id)?;
    let v = super::post_once(client, &arg.path("/v1/messages", "/resend"), None, retry)?;
    if json {
        output::json(&v);
    } else {
        println!(
            "{} resent as {} for {}: {}",
            arg.id(),
            output::text(&v["id"]),
            output::short_id(&v["peer"]),
            output::text(&v["state"])
        );
    }
    Ok(())
}
