//! Default values and the bounds validation enforces, in one place so the
//! docs, the example file and the code agree.

/// Secret key file, relative to the config file's directory.
pub const IDENTITY_KEY: &str = "keys/node.key";
/// The encryption key's file when the identity key is on a token.
pub const TOKEN_ENCRYPTION_KEY: &str = "keys/encryption.key";
/// Where the node's store and audit log live.
pub const DATA_DIR: &str = "data";
/// The admin API's Unix socket.
pub const ADMIN_SOCKET: &str = "comity.sock";

/// 4 MiB: ample for a formal request with its text, well under the ceiling.
/// A 4 MiB body plus room for the envelope around it.
pub const MAX_MESSAGE_BYTES: u32 = 4 * 1024 * 1024 + 64 * 1024;
/// Smallest accepted message limit; below it ordinary requests would not fit.
pub const MIN_MESSAGE_BYTES: u32 = 4096;
pub const MAX_STREAMS_PER_PEER: u32 = 16;
pub const STREAMS_PER_PEER_CEILING: u32 = 1024;
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;
pub const CONNECTIONS_PER_PEER_CEILING: u32 = 16;
pub const CLOCK_SKEW_SECS: u32 = 300;
pub const CLOCK_SKEW_CEILING_SECS: u32 = 86_400;
pub const MAX_MESSAGE_AGE_DAYS: u32 = 14;
pub const MESSAGE_AGE_CEILING_DAYS: u32 = 365;
pub const HANDSHAKE_TIMEOUT_SECS: u32 = 10;
pub const HANDSHAKE_TIMEOUT_CEILING_SECS: u32 = 300;
pub const IDLE_TIMEOUT_SECS: u32 = 60;
pub const IDLE_TIMEOUT_CEILING_SECS: u32 = 86_400;
/// Envelopes in flight (sent, receipt not yet back) per connection.
pub const DELIVERY_WINDOW: u32 = 256;
pub const DELIVERY_WINDOW_CEILING: u32 = 4096;
pub const REJECTIONS_PER_HOUR: u32 = 100;
pub const REJECTIONS_PER_HOUR_CEILING: u32 = 100_000;
pub const REJECTIONS_PER_DAY: u32 = 1000;
pub const REJECTIONS_PER_DAY_CEILING: u32 = 1_000_000;
pub const OVER_BUDGET_BACKOFF_SECS: u32 = 60;
pub const OVER_BUDGET_BACKOFF_CEILING_SECS: u32 = 86_400;
/// Room for receipts, checkpoints and audit entries once submissions stop.
pub const DISK_RESERVE_MIB: u32 = 256;
pub const DISK_RESERVE_CEILING_MIB: u32 = 1 << 20;
pub const DISK_RESERVE_PERCENT: u32 = 1;
pub const DISK_RESERVE_CEILING_PERCENT: u32 = 50;
/// Attachments: 64 GiB each (a server image), 256 GiB and 64 files per
/// message; the protocol's ceilings bound what may be configured.
pub const MAX_ATTACHMENT_BYTES: u64 = 64 << 30;
pub const MAX_MESSAGE_ATTACHMENT_BYTES: u64 = 256 << 30;
pub const MAX_ATTACHMENTS_PER_MESSAGE: u32 = 64;
pub const MAX_INCOMPLETE_ATTACHMENT_BYTES_PER_PEER: u64 = 512 << 30;
/// An uploaded file not attached to a message within a day is removed.
pub const STAGED_ATTACHMENT_SECS: u32 = 86_400;
/// A week: long enough for any upload followed by its submission.
pub const STAGED_ATTACHMENT_CEILING_SECS: u32 = 7 * 86_400;

pub const INITIAL_BACKOFF_MS: u32 = 500;
pub const MAX_BACKOFF_SECS: u32 = 300;
/// A day: a longer cap would leave a returning peer waiting for no reason.
pub const MAX_BACKOFF_CEILING_SECS: u32 = 86_400;
pub const MULTIPLIER: f64 = 2.0;
pub const MULTIPLIER_CEILING: f64 = 10.0;
pub const JITTER: f64 = 0.2;

pub const LOG_LEVEL: &str = "info";

/// A config file is a few kilobytes; refuse anything larger than this.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Longest node or peer name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Unix socket paths are limited to 108 bytes including the final NUL (Linux).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Entries between checkpoints.
pub const CHECKPOINT_ENTRIES: u32 = 1000;
/// Seconds between checkpoints (when anything was added).
pub const CHECKPOINT_INTERVAL_SECS: u32 = 60;
/// A new encryption key this often.
pub const ENCRYPTION_ROTATION_DAYS: u32 = 90;
/// A superseded encryption key is still opened this long, then destroyed.
pub const ENCRYPTION_GRACE_DAYS: u32 = 14;
/// A peer's announced identity transition waits this long unless refused.
pub const PEER_ROTATION_NOTICE_HOURS: u32 = 72;
pub const TRANSITION_PRESENTED_DAYS: u32 = 30;
