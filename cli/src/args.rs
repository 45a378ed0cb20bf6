//! The command-line grammar (clap derive). Kept apart from what the
//! commands do so completions and the man page are generated from it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "comity",
    version,
    about = "Operate a Comity node: secure exchange of requests for international cooperation in criminal matters",
    after_help = "Exit codes: 0 success, 1 failure, 2 usage error."
)]
pub struct Cli {
    /// The node's configuration file.
    #[arg(long, global = true, env = "COMITY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new node: keys (0600), a commented comity.toml, the data directory.
    Init {
        /// Directory to create the node in; must not hold a node already.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Human name of this central authority.
        #[arg(long)]
        name: String,
        /// This node's country, ISO 3166-1 alpha-2 (e.g. FR).
        #[arg(long, value_name = "CC")]
        country: String,
        /// QUIC address peers will connect to.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: SocketAddr,
        /// Make the identity key on a PKCS#11 token instead of in a key
        /// file: a "pkcs11:" URI naming the token (token=LABEL), the key
        /// (object=LABEL), the module (module-path=PATH) and the PIN file
        /// (pin-source=file:PATH; or the PIN in COMITY_PKCS11_PIN).
        #[arg(long, value_name = "URI")]
        pkcs11: Option<String>,
        /// This node replaces one whose identity key was lost: FILE is the
        /// old log's last cosigned checkpoint (from a peer's `comity audit
        /// witnessed OLD_ID`), which the new log's first entry names.
        #[arg(long, value_name = "FILE")]
        predecessor_checkpoint: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print this node's id (what peers pin).
    Id {
        #[arg(long)]
        json: bool,
    },
    /// Pin, list and unpin peers.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Send a request or spontaneous information.
    #[command(subcommand)]
    Send(SendCommand),
    /// List messages sent and received, oldest first, a page at a time
    /// (`--all` for every one).
    Messages(MessagesArgs),
    /// Show one message: content, delivery state, receipt, business history.
    Show {
        /// The message id (32 hex digits), or PEER/ID (a country code or node id) when another peer used the same id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A message's attachments: name, size, SHA-256, state, progress.
    Attachments {
        /// The message id, or PEER/ID (a country code or node id) when another peer used the same id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Read an attachment out (an audited action).
    #[command(subcommand)]
    Attachment(AttachmentCommand),
    /// Without MSGID: this node at a glance. With MSGID --set STATE: send a
    /// business status update about that message (e.g. registered, executed).
    Status {
        /// The message the status is about.
        #[arg(requires = "set")]
        id: Option<String>,
        /// registered, in-execution, additional-information-needed,
        /// partially-executed, executed, refused, postponed, withdrawn,
        /// acknowledged.
        #[arg(long, value_name = "STATE", requires = "id")]
        set: Option<String>,
        /// Free text for the other authority.
        #[arg(long)]
        note: Option<String>,
        /// Your reference for the case (required with --set registered).
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        /// Grounds for refusal (required with --set refused).
        #[arg(long)]
        grounds: Option<String>,
        /// What is needed (required with --set additional-information-needed).
        #[arg(long)]
        details: Option<String>,
        /// Why it is postponed (required with --set postponed).
        #[arg(long)]
        reason: Option<String>,
        /// Until when it is postponed (YYYY-MM-DD).
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        retry: RetryArgs,
        #[arg(long)]
        json: bool,
    },
    /// Send the execution result of a request back to its requester.
    Reply {
        /// The request being answered.
        id: String,
        #[arg(long)]
        subject: String,
        #[command(flatten)]
        body: BodyArgs,
        /// Only part of the request is executed by this reply.
        #[arg(long)]
        partial: bool,
        #[command(flatten)]
        attach: AttachArgs,
        #[command(flatten)]
        retry: RetryArgs,
        #[arg(long)]
        json: bool,
    },
    /// Send a failed message again: the same content under a new id,
    /// linked to the original (in `show` and the audit log).
    Resend {
        /// The failed message (sent by this node).
        id: String,
        #[command(flatten)]
        retry: RetryArgs,
        #[arg(long)]
        json: bool,
    },
    /// Statistics on requests sent and received.
    Stats {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Export and verify the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Back up the running node (store, audit log, key, config file) to
    /// DIR/comity-backup-CC-TIME.tar.age, encrypted with age to a
    /// passphrase (asked for, or --passphrase-file) or to --recipient.
    Backup {
        /// Directory to write the backup file in.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Read the passphrase from the first line of FILE instead of
        /// asking for it.
        #[arg(long, value_name = "FILE", conflicts_with = "recipient")]
        passphrase_file: Option<PathBuf>,
        /// Encrypt to this age X25519 recipient (age1…) instead of a passphrase.
        #[arg(long, value_name = "AGE1…")]
        recipient: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into the empty data directory of a stopped node
    /// (the one --config names); checks every file against the manifest.
    Restore {
        /// The backup file (.tar.age).
        file: PathBuf,
        /// Read the passphrase from the first line of FILE instead of
        /// asking for it.
        #[arg(long, value_name = "FILE", conflicts_with = "identity")]
        passphrase_file: Option<PathBuf>,
        /// The age identity file (AGE-SECRET-KEY-1…) of a backup made with
        /// --recipient.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Without a subcommand: the node's encryption keys (age, next
    /// scheduled rotation, superseded keys and when each is destroyed).
    /// `rotate-encryption` makes a new encryption key now.
    #[command(args_conflicts_with_subcommands = true)]
    Keys {
        #[command(subcommand)]
        command: Option<KeysCommand>,
        #[arg(long)]
        json: bool,
    },
    /// Without a subcommand: the alarms kept (newest first), and how many
    /// each peer had that were not kept. `ack ID` acknowledges one.
    #[command(args_conflicts_with_subcommands = true)]
    Alarms {
        #[command(subcommand)]
        command: Option<AlarmsCommand>,
        #[arg(long)]
        json: bool,
    },
    /// Run a local three-country network end to end.
    Demo {
        /// Keep the network's files in DIR for inspection.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Pin a peer (persisted in the configuration, effective at once).
    Add {
        /// The peer's node id, as its operator reads it from `comity id`.
        #[arg(long)]
        id: String,
        /// Where it listens.
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, value_name = "CC")]
        country: String,
        /// Apply an identity transition this peer announces only when you
        /// accept it (`peer accept-rotation`), never after the notice alone.
        #[arg(long)]
        confirm_rotation: bool,
        #[arg(long)]
        json: bool,
    },
    /// Pinned peers with connection state, last contact, pending count, last error.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Move a peer to its new node id when its old key is stolen or lost,
    /// after its operator has read the new id to you out of band (a call).
    /// The old key is refused from now on, on every path, even if it signs
    /// a transition; messages not yet delivered are sealed again for the
    /// new key. Persisted in the configuration, effective at once.
    Repin {
        /// Node id or country code of the peer as pinned now.
        peer: String,
        /// The peer's new node id, as its operator reads it from `comity id`.
        #[arg(long)]
        id: String,
        /// Its new address, if it changed too.
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
        /// Why, for the audit log: who confirmed the new id, and how.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Accept the identity transition a peer announced, after its operator
    /// confirmed the new id to you out of band (a call): it applies as soon
    /// as it is effective, without waiting out the notice period.
    AcceptRotation {
        /// Node id or country code of the peer as pinned now.
        peer: String,
        /// Why, for the audit log: who confirmed the new id, and how.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Refuse the identity transition a peer announced (its operator did not
    /// confirm it: the old key may be stolen). The successor it names is
    /// never accepted; if the key is stolen, `peer repin` next.
    RefuseRotation {
        /// Node id or country code of the peer as pinned now.
        peer: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Unpin a peer (by node id or country code).
    Remove {
        /// Node id or country code.
        peer: String,
        #[arg(long)]
        json: bool,
    },
}

/// Retry-safety of a command that makes a message.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Names this request so that running the command again with the same
    /// key and the same content makes no second message (it prints the
    /// first one's answer); the same key with other content is refused.
    /// For scripts that retry. Without it, a key is made for this run, with
    /// which a dropped connection to the daemon is retried.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// Files sent with a message (digital evidence).
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// A file to attach, signed and encrypted with the message; repeat for
    /// several, in the order the recipient will see them. Its name is the
    /// file's name; its media type follows from the extension.
    #[arg(long = "attach", value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BodyArgs {
    /// The text of the message.
    #[arg(long)]
    pub body: Option<String>,
    /// Read the text from a file (UTF-8).
    #[arg(long, value_name = "PATH")]
    pub body_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SendCommand {
    /// A formal request (MLA, extradition, freezing, ...).
    Request(RequestArgs),
    /// Spontaneous information (UNCAC art. 46(4), UNTOC art. 18(4)).
    Info(InfoArgs),
    /// A consultation before a formal request or before refusing one.
    Consultation(ConsultationArgs),
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The peer: its country code (or node id).
    #[arg(long, value_name = "CC")]
    pub to: String,
    /// mla, extradition, provisional-arrest, transfer-of-sentenced-persons,
    /// transfer-of-proceedings, freezing, confiscation, asset-return,
    /// law-enforcement, joint-investigation, videoconference,
    /// service-of-documents, other:TEXT.
    #[arg(long = "type", value_name = "TYPE")]
    pub request_type: String,
    /// untoc-16, untoc-18, uncac-44, uncac-46, 1988-6, 1988-7,
    /// treaty:NAME, reciprocity, other:TEXT.
    #[arg(long, value_name = "BASIS")]
    pub legal_basis: String,
    #[arg(long)]
    pub subject: String,
    #[command(flatten)]
    pub body: BodyArgs,
    /// Expeditious handling (UNCAC art. 46(24)).
    #[arg(long)]
    pub urgent: bool,
    /// Date by which execution is needed (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub deadline: Option<String>,
    #[command(flatten)]
    pub about: AboutArgs,
    /// The other authority's case reference, if known.
    #[arg(long)]
    pub their_ref: Option<String>,
    /// The message this follows up (same thread).
    #[arg(long, value_name = "MSGID")]
    pub in_reply_to: Option<String>,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[arg(long, value_name = "CC")]
    pub to: String,
    #[arg(long)]
    pub subject: String,
    #[command(flatten)]
    pub body: BodyArgs,
    /// A condition on use (UNCAC art. 46(5)); repeat for several.
    #[arg(long = "restriction", value_name = "TEXT")]
    pub restrictions: Vec<String>,
    /// Ask the receiver to keep it confidential.
    #[arg(long)]
    pub confidential: bool,
    #[command(flatten)]
    pub about: AboutArgs,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[arg(long)]
    pub json: bool,
}

/// What requests and spontaneous information both say about themselves.
#[derive(Debug, Args)]
pub struct AboutArgs {
    /// The offence, in words (required for extradition, provisional
    /// arrest, transfer of proceedings).
    #[arg(long, requires = "iccs")]
    pub offence: Option<String>,
    /// ICCS code of the offence (e.g. 0703), for statistics.
    #[arg(long, requires = "offence")]
    pub iccs: Option<String>,
    /// Language of the text (e.g. en, fr, es).
    #[arg(long, default_value = "en")]
    pub language: String,
    /// Your case reference.
    #[arg(long)]
    pub our_ref: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConsultationArgs {
    #[arg(long, value_name = "CC")]
    pub to: String,
    #[arg(long)]
    pub subject: String,
    #[command(flatten)]
    pub body: BodyArgs,
    /// The message the consultation is about.
    #[arg(long, value_name = "MSGID")]
    pub regarding: Option<String>,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AttachmentCommand {
    /// Write an attachment's plaintext to a new file, verified chunk by
    /// chunk by the node and against the signed SHA-256 here; recorded in
    /// the audit log. The sender's file name is never used as a path.
    Get {
        /// The message id, or PEER/ID (a country code or node id) when another peer used the same id.
        id: String,
        /// The attachment: its name exactly as `comity attachments` shows
        /// it, or its index there (a name wins over an index; see --index).
        attachment: String,
        /// The file to create; refused if anything (a link included) is
        /// there. Written 0600.
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// Take ATTACHMENT as an index even if an attachment has that name.
        #[arg(long)]
        index: bool,
        /// Print the result as JSON (and no progress).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlarmsCommand {
    /// Acknowledge an alarm (recorded in the audit log as yours).
    Ack {
        /// The alarm's id, as `comity alarms` lists it.
        id: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new encryption key now: peers are told it as they reconnect
    /// (at once), and the superseded key still opens what was sealed to it
    /// for `[keys] encryption_grace_days`.
    RotateEncryption {
        #[arg(long)]
        json: bool,
    },
    /// Announce a new identity key: a new key is made, and a statement
    /// signed by the current and the new key is presented to every peer,
    /// who apply it after their notice period or their operator's accept.
    /// Tell each peer's operator the new id (`comity keys`) by phone. At
    /// the effective time the node switches to the new key by itself.
    RotateIdentity {
        /// Why, for the peers' operators (one line, at most 200 bytes).
        #[arg(long)]
        reason: String,
        /// Hours from now until peers may take the new key.
        #[arg(long, value_name = "HOURS", default_value_t = 72)]
        effective_in_hours: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write the last checkpoint this node cosigned of a peer's log, by
    /// the peer's country code or a node id (also a key cut out by a
    /// repin): what a node replacing one whose key was lost names at
    /// `comity init --predecessor-checkpoint` (daemon running).
    Witnessed {
        peer: String,
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Write this node's audit log as a self-contained bundle (daemon running).
    Export {
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Verify an exported bundle offline: exit 0 only if everything holds.
    Verify {
        path: PathBuf,
        /// The node id the log must belong to, as known independently of
        /// the bundle (otherwise the bundle's own key is believed): its
        /// first id, also after the node switched to a new identity key
        /// (the verifier follows the switches the log records).
        #[arg(long, value_name = "NODEID")]
        node: Option<String>,
        /// A witness whose cosignatures must cover the whole log; repeat.
        #[arg(long = "witness", value_name = "NODEID")]
        witnesses: Vec<String>,
        /// Accept up to N of the newest entries not yet cosigned by each
        /// --witness (0: every entry must be).
        #[arg(long, value_name = "N", default_value_t = 0)]
        allow_unwitnessed_tail: u64,
        #[arg(long)]
        json: bool,
    },
    /// Write an inclusion proof for one message's entries (daemon running).
    Proof {
        /// The message id, or PEER/ID (a country code or node id) when another peer used the same id.
        id: String,
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Verify an inclusion proof file offline.
    VerifyProof {
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Which messages `comity messages` lists, and how many.
#[derive(Debug, Args)]
pub struct MessagesArgs {
    /// Only messages received.
    #[arg(long, conflicts_with = "outbox")]
    pub inbox: bool,
    /// Only messages sent.
    #[arg(long)]
    pub outbox: bool,
    /// Only messages exchanged with this peer (country code or node id).
    #[arg(long, value_name = "PEER")]
    pub peer: Option<String>,
    /// Only messages of this kind.
    #[arg(long, value_parser = ["request", "info", "status", "reply", "consultation"])]
    pub kind: Option<String>,
    /// Only messages in this delivery state (`received` for all received).
    #[arg(long, value_parser = ["queued", "sent", "delivered", "failed", "received"])]
    pub state: Option<String>,
    /// Only messages accepted or received since WHEN: a date (2027-01-31,
    /// UTC), a time ago (90s, 30m, 24h, 7d) or milliseconds since the epoch.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// At most N messages (1 to 1000; default 100).
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub limit: Option<usize>,
    /// Go on where an earlier page ended (the cursor it printed on stderr).
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
    /// Newest first.
    #[arg(long)]
    pub newest: bool,
    /// Every message, page after page.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
}
