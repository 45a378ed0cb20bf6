//! The typed configuration of one node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use comity_protocol::attachment::AttachmentLimits;
use comity_protocol::NodeId;
use serde::{Deserialize, Serialize};

use crate::country::CountryCode;
use crate::defaults;
use crate::env::EnvOverride;

/// A node's whole configuration, as loaded: defaults applied, environment
/// overrides applied, relative paths resolved, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node: NodeSection,
    pub limits: Limits,
    pub retry: RetryPolicy,
    pub log: LogSection,
    pub audit: AuditSection,
    pub keys: KeysSection,
    /// `[[peer]]` in the file: the pinned peers.
    pub peers: Vec<PeerConfig>,
    /// Directory relative paths were resolved against (the config file's).
    pub(crate) base_dir: PathBuf,
    pub(crate) env_overrides: Vec<EnvOverride>,
}

/// `[node]`: who this node is and where it keeps things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSection {
    /// Human name shown to peers' operators, e.g. "Ministry of Justice of
    /// Arcadia". Required.
    pub name: String,
    /// This node's country. Required.
    pub country: CountryCode,
    /// Secret key file (mode 0600). Default `keys/node.key`. When the
    /// identity key is on a token (`identity_key = "pkcs11:…"`), this is
    /// the file of the encryption key only, `keys/encryption.key`.
    pub identity_key: PathBuf,
    /// The identity key's token, when `identity_key` is a `pkcs11:` URI.
    pub identity_token: Option<crate::TokenKey>,
    /// Store and audit log directory. Default `data`.
    pub data_dir: PathBuf,
    /// QUIC (UDP) address to listen on; an IP, not a host name. Required.
    pub listen: SocketAddr,
    /// Admin API Unix socket. Default `comity.sock`.
    pub admin_socket: PathBuf,
    /// Prometheus metrics and health endpoint (HTTP). Default: none (off);
    /// it is opt-in and should be a loopback address.
    pub metrics_listen: Option<SocketAddr>,
}

/// `[limits]`: bounds on what peers may make this node do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest envelope accepted or sent, in bytes. Default 4 MiB; at most
    /// the protocol ceiling `MAX_FRAME_BYTES` (16 MiB).
    pub max_message_bytes: u32,
    /// Concurrent QUIC streams a peer may open. Default 16.
    pub max_streams_per_peer: u32,
    /// Concurrent connections from one peer. Default 2.
    pub max_connections_per_peer: u32,
    /// Envelopes dated further in the future than this are refused.
    /// Default 300 s.
    pub clock_skew_secs: u32,
    /// Envelopes older than this are refused as stale, and the sender marks
    /// undelivered ones failed (expired). Default 14 days.
    pub max_message_age_days: u32,
    /// QUIC/TLS handshake must finish within this. Default 10 s.
    pub handshake_timeout_secs: u32,
    /// An idle connection is closed after this. Default 60 s.
    pub idle_timeout_secs: u32,
    /// Envelopes sent to one peer and not yet answered by a receipt, per
    /// connection (the pipelining window). Default 256; 1–4096.
    pub delivery_window: u32,
    /// Rejections of one peer's envelopes and streams recorded one by one
    /// (store, audit log, log line) per rolling hour; beyond it they are
    /// counted and summarised. Default 100.
    pub rejections_per_hour: u32,
    /// The same, per day. Default 1000.
    pub rejections_per_day: u32,
    /// A peer over its budget has its inbound connections closed and
    /// refused for this long (our deliveries to it go on). Default 60 s.
    pub over_budget_backoff_secs: u32,
    /// Free space kept for what the node must write whatever happens
    /// (receipts, checkpoints, audit entries): below the larger of this and
    /// `disk_reserve_percent`, new local submissions are refused. Default
    /// 256 MiB; 0 turns the byte reserve off.
    pub disk_reserve_mib: u32,
    /// The same, as a percentage of the data directory's filesystem.
    /// Default 1; 0–50.
    pub disk_reserve_percent: u32,
    /// Largest single attachment, in bytes of plaintext, sent or accepted.
    /// Default 64 GiB; at most the protocol ceiling (2^32 chunks of 1 MiB).
    pub max_attachment_bytes: u64,
    /// Largest sum of one message's attachments. Default 256 GiB; at least
    /// `max_attachment_bytes`.
    pub max_message_attachment_bytes: u64,
    /// Most attachments on one message. Default 64; 0 refuses attachments;
    /// at most 1024.
    pub max_attachments_per_message: u32,
    /// Most bytes (their full declared sizes, as stored) of the attachments
    /// of one peer's messages held until they are received: a peer that
    /// starts many transfers and finishes none cannot take the disk from
    /// the others. A message over it is deferred (the peer retries later);
    /// a message alone always fits. Unset: 512 GiB, or
    /// `max_message_attachment_bytes` if larger (see
    /// [`Limits::incomplete_attachment_share`]); set: at least that.
    pub max_incomplete_attachment_bytes_per_peer: Option<u64>,
    /// An uploaded file not attached to a message within this long is
    /// removed (file and record). Default 86400 s (24 h); 1 s to 7 days.
    pub staged_attachment_secs: u32,
}

/// `[retry]`: how the sender retries a peer that is down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Delay after the first failure. Default 500 ms.
    pub initial_backoff_ms: u32,
    /// Cap on any delay. Default 300 s.
    pub max_backoff_secs: u32,
    /// Growth factor per failed attempt, 1–10. Default 2.0.
    pub multiplier: f64,
    /// Fraction, 0–1, by which each delay is randomly shortened so that
    /// nodes do not retry in lockstep. Default 0.2.
    pub jitter: f64,
}

/// `[log]`: structured logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `comity_node=debug`.
    /// Default `info`; `RUST_LOG`, if set, is for the daemon to prefer.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[audit]`: the tamper-evident audit log and its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    /// Sign a checkpoint once this many entries were added since the last
    /// one. Default 1000.
    pub checkpoint_entries: u32,
    /// …or this many seconds after the last one, if anything was added
    /// (this node's cosignatures of peers' checkpoints do not count: an
    /// idle network goes quiet). Default 60. (A checkpoint is also signed
    /// at shutdown.)
    pub checkpoint_interval_secs: u32,
    /// Record the audit log. Default true; `false` exists only to measure
    /// what the log costs, and is refused unless
    /// `COMITY_ALLOW_AUDIT_OFF=1` is set.
    pub enabled: bool,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            checkpoint_entries: defaults::CHECKPOINT_ENTRIES,
            checkpoint_interval_secs: defaults::CHECKPOINT_INTERVAL_SECS,
            enabled: true,
        }
    }
}

impl AuditSection {
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_secs(self.checkpoint_interval_secs.into())
    }
}

/// `[keys]`: when the node's keys change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysSection {
    /// Make a new encryption key once the current one is this many days
    /// old (checked hourly). Default 90; 0 never rotates on a schedule
    /// (`comity keys rotate-encryption` still does).
    pub encryption_rotation_days: u32,
    /// Days a superseded encryption key still opens envelopes sealed to
    /// it; then it is destroyed, and such envelopes are refused with a
    /// retriable error that makes the sender seal again to the current
    /// key. Default 14.
    pub encryption_grace_days: u32,
    /// Hours a peer's announced identity transition waits before this node
    /// moves its pin, unless its operator refuses it first (`comity peer
    /// refuse-rotation`) or accepts it sooner. A statement signed by a
    /// stolen key is what a thief would send first: the notice is the
    /// operators' time to call each other. Default 72; 0 means no notice
    /// (a transition applies once effective): not for production.
    pub peer_rotation_notice_hours: u32,
    /// Days this node keeps presenting its own transition statement after
    /// it switched to the new identity key, so that a peer offline at the
    /// time still learns of it (and moves its pin after its own notice).
    /// Default 30.
    pub transition_presented_days: u32,
}

impl Default for KeysSection {
    fn default() -> Self {
        KeysSection {
            encryption_rotation_days: defaults::ENCRYPTION_ROTATION_DAYS,
            encryption_grace_days: defaults::ENCRYPTION_GRACE_DAYS,
            peer_rotation_notice_hours: defaults::PEER_ROTATION_NOTICE_HOURS,
            transition_presented_days: defaults::TRANSITION_PRESENTED_DAYS,
        }
    }
}

impl KeysSection {
    /// `None`: no scheduled rotation.
    pub fn encryption_rotation(&self) -> Option<Duration> {
        (self.encryption_rotation_days > 0)
            .then(|| Duration::from_secs(u64::from(self.encryption_rotation_days) * 86_400))
    }

    pub fn encryption_grace(&self) -> Duration {
        Duration::from_secs(u64::from(self.encryption_grace_days) * 86_400)
    }

    pub fn transition_presented(&self) -> Duration {
        Duration::from_secs(u64::from(self.transition_presented_days) * 86_400)
    }

    pub fn peer_rotation_notice(&self) -> Duration {
        Duration::from_secs(u64::from(self.peer_rotation_notice_hours) * 3600)
    }
}

/// One `[[peer]]`: a pinned node of another country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's node id, as its operator read it out (`comity id`).
    pub id: NodeId,
    /// `host:port`; the host may be a DNS name, resolved at each connect.
    pub address: String,
    /// Human name for listings. Default empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Unique among peers: the CLI addresses peers by it (`--to CC`).
    pub country: CountryCode,
    /// Ids this peer had before `comity peer repin` cut them out (a key
    /// presumed stolen, or lost), oldest first: refused on every path,
    /// whatever they sign, and never pinned again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repinned_from: Vec<NodeId>,
    /// Ids this peer had before an identity transition it announced moved
    /// the pin (`comity peer list` shows "rotated from …"), oldest first:
    /// no longer pinned, but what they signed before still verifies and
    /// the messages exchanged with them are still this peer's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotated_from: Vec<NodeId>,
    /// An identity transition this peer announces is applied only when
    /// the operator accepts it (`comity peer accept-rotation`), never after
    /// the notice period alone. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm_rotation: bool,
}

impl PeerConfig {
    /// Whether `id` is one this peer's operator cut out.
    pub fn cut_out(&self, id: &NodeId) -> bool {
        self.repinned_from.contains(id)
    }

    /// Whether `id` is a key this peer had before: cut out by a repin, or
    /// left by an identity transition.
    pub fn had(&self, id: &NodeId) -> bool {
        self.repinned_from.contains(id) || self.rotated_from.contains(id)
    }
}

impl Config {
    /// The directory relative paths were resolved against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Which environment variables overrode the file, for the daemon to log.
    pub fn env_overrides(&self) -> &[EnvOverride] {
        &self.env_overrides
    }

    /// The peer that `--to CC` means.
    pub fn peer_by_country(&self, country: CountryCode) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.country == country)
    }

    pub fn peer_by_id(&self, id: &NodeId) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| &p.id == id)
    }
}

impl NodeSection {
    /// The three required fields; everything else at its default.
    pub fn new(name: impl Into<String>, country: CountryCode, listen: SocketAddr) -> Self {
        NodeSection {
            name: name.into(),
            country,
            identity_key: PathBuf::from(defaults::IDENTITY_KEY),
            identity_token: None,
            data_dir: PathBuf::from(defaults::DATA_DIR),
            listen,
            admin_socket: PathBuf::from(defaults::ADMIN_SOCKET),
            metrics_listen: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: defaults::MAX_MESSAGE_BYTES,
            max_streams_per_peer: defaults::MAX_STREAMS_PER_PEER,
            max_connections_per_peer: defaults::MAX_CONNECTIONS_PER_PEER,
            clock_skew_secs: defaults::CLOCK_SKEW_SECS,
            max_message_age_days: defaults::MAX_MESSAGE_AGE_DAYS,
            handshake_timeout_secs: defaults::HANDSHAKE_TIMEOUT_SECS,
            idle_timeout_secs: defaults::IDLE_TIMEOUT_SECS,
            delivery_window: defaults::DELIVERY_WINDOW,
            rejections_per_hour: defaults::REJECTIONS_PER_HOUR,
            rejections_per_day: defaults::REJECTIONS_PER_DAY,
            over_budget_backoff_secs: defaults::OVER_BUDGET_BACKOFF_SECS,
            disk_reserve_mib: defaults::DISK_RESERVE_MIB,
            disk_reserve_percent: defaults::DISK_RESERVE_PERCENT,
            max_attachment_bytes: defaults::MAX_ATTACHMENT_BYTES,
            max_message_attachment_bytes: defaults::MAX_MESSAGE_ATTACHMENT_BYTES,
            max_attachments_per_message: defaults::MAX_ATTACHMENTS_PER_MESSAGE,
            max_incomplete_attachment_bytes_per_peer: None,
            staged_attachment_secs: defaults::STAGED_ATTACHMENT_SECS,
        }
    }
}

impl Limits {
    /// `max_message_bytes` as a length to compare buffers against.
    pub fn max_message_len(&self) -> usize {
        usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX)
    }

    pub fn clock_skew(&self) -> Duration {
        Duration::from_secs(self.clock_skew_secs.into())
    }

    pub fn max_message_age(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_message_age_days) * 86_400)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs.into())
    }

    /// The free bytes to keep on a filesystem of `total` bytes.
    pub fn disk_reserve_bytes(&self, total: u64) -> u64 {
        let bytes = u64::from(self.disk_reserve_mib).saturating_mul(1024 * 1024);
        let percent = total / 100 * u64::from(self.disk_reserve_percent);
        bytes.max(percent)
    }

    /// One peer's share of attachments held until received (bytes).
    pub fn incomplete_attachment_share(&self) -> u64 {
        self.max_incomplete_attachment_bytes_per_peer.unwrap_or(
            defaults::MAX_INCOMPLETE_ATTACHMENT_BYTES_PER_PEER
                .max(self.max_message_attachment_bytes),
        )
    }

    /// The attachment limits as the protocol checks them.
    pub fn attachment_limits(&self) -> AttachmentLimits {
        AttachmentLimits {
            max_attachment_bytes: self.max_attachment_bytes,
            max_message_bytes: self.max_message_attachment_bytes,
            max_attachments: usize::try_from(self.max_attachments_per_message)
                .unwrap_or(usize::MAX),
        }
    }

    /// How long an uploaded file may wait to be attached to a message.
    pub fn staged_attachment_expiry(&self) -> Duration {
        Duration::from_secs(self.staged_attachment_secs.into())
    }

    pub fn over_budget_backoff(&self) -> Duration {
        Duration::from_secs(self.over_budget_backoff_secs.into())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.into())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff_ms: defaults::INITIAL_BACKOFF_MS,
            max_backoff_secs: defaults::MAX_BACKOFF_SECS,
            multiplier: defaults::MULTIPLIER,
            jitter: defaults::JITTER,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: defaults::LOG_LEVEL.to_string(),
        }
    }
}
