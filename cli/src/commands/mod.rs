mod alarms;
mod attach;
mod attachments;
mod audit;
mod backup;
mod demo;
mod id;
mod init;
mod keys;
mod messages;
mod peer;
mod resend;
mod send;
mod stats;
mod status;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::args::{Cli, Command, RetryArgs};
use comity_client::admin::Retry;
use comity_client::Client;

/// Test hook (set by tests/retry.rs): the CLI stops once the node's answer
/// starts to arrive and waits to be killed, as a client that dies between
/// the node's flush and reading the answer.
const STALL_BEFORE_ANSWER: &str = "COMITY_TEST_STALL_BEFORE_ANSWER";

/// POSTs `body` to `path`, a request that makes a message, at most once:
/// under the caller's `--idempotency-key`, or a key made for this run, with
/// which it is tried again while the answer does not arrive.
pub(crate) fn post_once(
    client: &Client,
    path: &str,
    body: Option<&serde_json::Value>,
    retry: &RetryArgs,
) -> Result<serde_json::Value> {
    let key = match &retry.idempotency_key {
        Some(k) => k.clone(),
        None => format!("cli-{}", comity_protocol::MessageId::random()),
    };
    Ok(client.post_retried(path, body, &key, Retry::default())?)
}

/// Reads a UTF-8 text file of at most `max` bytes, whatever the file is
/// (a pipe or a growing file cannot get past the limit).
pub(crate) fn read_text(path: &std::path::Path, max: u64, what: &str) -> Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if bytes.len() as u64 > max {
        anyhow::bail!("{what} {} is larger than {max} bytes", path.display());
    }
    String::from_utf8(bytes).with_context(|| format!("{what} {} is not UTF-8 text", path.display()))
}

/// A message as an operator names it: `ID`, or `PEER/ID` (a pinned peer's
/// country code or a node id) when the id alone names messages of more
/// than one peer.
pub(crate) struct MessageArg {
    id: comity_protocol::MessageId,
    peer: Option<String>,
    /// `sent` or `received` (`PEER/ID:sent`), when one peer both sent and
    /// received the id.
    way: Option<&'static str>,
}

impl MessageArg {
    pub(crate) fn parse(text: &str) -> Result<MessageArg> {
        let (text_id, way) = match text.rsplit_once(':') {
            Some((t, "sent")) => (t, Some("sent")),
            Some((t, "received")) => (t, Some("received")),
            _ => (text, None),
        };
        let full = text;
        let text = text_id;
        let (peer, id) = match text.split_once('/') {
            Some((p, i)) => (Some(p), i),
            None => (None, text),
        };
        if let Some(p) = peer {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                anyhow::bail!(
                    "{text:?}: the peer before the '/' must be a country code or a node id"
                );
            }
        }
        Ok(MessageArg {
            id: id
                .parse()
                .with_context(|| format!("{full:?} is not a message id (ID or PEER/ID)"))?,
            peer: peer.map(str::to_string),
            way,
        })
    }

    pub(crate) fn id(&self) -> comity_protocol::MessageId {
        self.id
    }

    /// `{base}/{id}{tail}`, with `?peer=` when the peer was given.
    pub(crate) fn path(&self, base: &str, tail: &str) -> String {
        let mut query = Vec::new();
        if let Some(p) = &self.peer {
            query.push(format!("peer={p}"));
        }
        if let Some(w) = self.way {
            query.push(format!("way={w}"));
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        format!("{base}/{}{tail}{query}", self.id)
    }
}

/// Writes `out` as a new file (mode 0600) without following a link planted
/// at its path or beside it: `fill` writes a temporary file created
/// exclusively in the same directory, which is synced and then renamed over
/// `out` (a rename replaces a link, never its target). On error nothing is
/// left behind.
pub(crate) fn write_new_file<T>(
    out: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> Result<T>,
) -> Result<T> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let mut w = std::io::BufWriter::new(tmp);
    let value = fill(&mut w)?;
    let tmp = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", out.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", out.display()))?;
    tmp.persist(out)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(value)
}

pub fn run(cli: Cli) -> Result<()> {
    let config = cli.config;
    let client = || -> Result<Client> { client_for(&config_path(config.clone())?) };
    match cli.command {
        Command::Init {
            dir,
            name,
            country,
            listen,
            pkcs11,
            predecessor_checkpoint,
            json,
        } => init::run(
            &dir,
            &name,
            &country,
            listen,
            pkcs11,
            predecessor_checkpoint.as_deref(),
            json,
        ),
        Command::Id { json } => id::run(&config_path(config)?, json),
        Command::Peer(cmd) => peer::run(&client()?, cmd),
        Command::Send(cmd) => send::run(&client()?, cmd),
        Command::Messages(args) => messages::list(&client()?, &args),
        Command::Show { id, json } => messages::show(&client()?, &id, json),
        Command::Attachments { id, json } => attachments::list(&client()?, &id, json),
        Command::Attachment(cmd) => attachments::run(&client()?, cmd),
        Command::Status {
            id,
            set,
            note,
            reference,
            grounds,
            details,
            reason,
            until,
            retry,
            json,
        } => match (id, set) {
            (Some(id), Some(set)) => status::set(
                &client()?,
                &id,
                status::StatusArgs {
                    set,
                    note,
                    reference,
                    grounds,
                    details,
                    reason,
                    until,
                },
                &retry,
                json,
            ),
            _ => status::overview(&client()?, json),
        },
        Command::Reply {
            id,
            subject,
            body,
            partial,
            attach,
            retry,
            json,
        } => status::reply(
            &client()?,
            &id,
            subject,
            &body,
            partial,
            &attach,
            &retry,
            json,
        ),
        Command::Resend { id, retry, json } => resend::run(&client()?, &id, &retry, json),
        Command::Stats { format } => stats::run(&client()?, format),
        Command::Audit(cmd) => audit::run(config.as_deref(), cmd),
        Command::Backup {
            out,
            passphrase_file,
            recipient,
            json,
        } => backup::backup(&client()?, &out, passphrase_file, recipient, json),
        Command::Restore {
            file,
            passphrase_file,
            identity,
            json,
        } => backup::restore(
            &config_path(config)?,
            &file,
            passphrase_file,
            identity,
            json,
        ),
        Command::Alarms { command, json } => alarms::run(&client()?, command, json),
        Command::Keys { command, json } => keys::run(&client()?, command, json),
        Command::Demo { keep } => demo::run(keep),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "comity", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
    }
}

pub(crate) fn config_path(given: Option<PathBuf>) -> Result<PathBuf> {
    given.context(
        "no configuration given: pass --config DIR/comity.toml or set COMITY_CONFIG \
         (create a node with `comity init`)",
    )
}

/// The admin API client of the node the config at `path` describes.
pub(crate) fn client_for(path: &Path) -> Result<Client> {
    Client::for_config(path)
        .map(|c| c.stall_before_answer(std::env::var_os(STALL_BEFORE_ANSWER).is_some()))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Loads the config, naming the file in errors.
fn load_config(path: &Path) -> Result<comity_config::Config> {
    comity_config::Config::load(path).with_context(|| format!("{}", path.display()))
}
