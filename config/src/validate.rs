//! Checks that need the whole typed config. Each error names its key and
//! says what to write instead.

use std::collections::HashMap;

use comity_protocol::attachment::AttachmentLimits;
use comity_protocol::codec::MAX_FRAME_BYTES;
use comity_protocol::NodeId;

use crate::address::{parse_host_port, ADDRESS_FIX};
use crate::defaults as d;
use crate::env::label;
use crate::error::{invalid, ConfigError};
use crate::schema::Config;

impl Config {
    /// Checks every rule; returns the first problem found. The one rule
    /// that depends on the environment (`audit.enabled = false` needs
    /// `COMITY_ALLOW_AUDIT_OFF`) reads the process environment.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with(&crate::env::process_env)
    }

    /// [`Config::validate`] with `env` standing for `std::env::var`, as in
    /// [`Config::from_toml_str`].
    pub(crate) fn validate_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        self.validate_node()?;
        self.validate_limits()?;
        self.validate_retry()?;
        self.validate_audit(env)?;
        self.validate_peers()
    }

    fn label(&self, key: &str) -> String {
        label(key, &self.env_overrides)
    }

    fn validate_node(&self) -> Result<(), ConfigError> {
        let n = &self.node;
        check_name(&n.name, &self.label("node.name"), true)?;
        if n.listen.port() == 0 {
            return Err(invalid(
                self.label("node.listen"),
                "port 0 would pick a random port that peers cannot pin",
                "choose a fixed port, e.g. \"0.0.0.0:7400\"",
            ));
        }
        if n.metrics_listen.is_some_and(|m| m.port() == 0) {
            return Err(invalid(
                self.label("node.metrics_listen"),
                "port 0 would pick a random port that Prometheus cannot scrape",
                "choose a fixed port, e.g. \"127.0.0.1:9400\", or remove the key",
            ));
        }
        for (key, p) in [
            ("node.identity_key", &n.identity_key),
            ("node.data_dir", &n.data_dir),
            ("node.admin_socket", &n.admin_socket),
        ] {
            if p.as_os_str().is_empty() {
                return Err(invalid(self.label(key), "is empty", "give a path"));
            }
        }
        let sock = n.admin_socket.as_os_str().len();
        if sock > d::MAX_SOCKET_PATH_BYTES {
            return Err(invalid(
                self.label("node.admin_socket"),
                format!(
                    "{} is {sock} bytes long; Unix socket paths are limited to {} bytes",
                    n.admin_socket.display(),
                    d::MAX_SOCKET_PATH_BYTES
                ),
                "use a shorter path, e.g. an absolute one such as \"/run/comity/comity.sock\"",
            ));
        }
        if self.log.level.trim().is_empty() {
            return Err(invalid(
                "log.level",
                "is empty",
                "use e.g. \"info\", or remove the key",
            ));
        }
        Ok(())
    }

    fn validate_audit(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let a = &self.audit;
        if a.checkpoint_entries == 0 {
            return Err(invalid(
                self.label("audit.checkpoint_entries"),
                "is 0",
                "use a positive number of entries, e.g. 1000",
            ));
        }
        if a.checkpoint_interval_secs == 0 || a.checkpoint_interval_secs > 86_400 {
            return Err(invalid(
                self.label("audit.checkpoint_interval_secs"),
                format!("{} is out of range", a.checkpoint_interval_secs),
                "use 1 to 86400 seconds, e.g. 60",
            ));
        }
        if !a.enabled && env("COMITY_ALLOW_AUDIT_OFF").is_none() {
            return Err(invalid(
                self.label("audit.enabled"),
                "is false: the node would keep no audit log",
                "remove the key (it exists only for benchmarks, with COMITY_ALLOW_AUDIT_OFF=1)",
            ));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let ceiling = u32::try_from(MAX_FRAME_BYTES).unwrap_or(u32::MAX);
        let mb = l.max_message_bytes;
        let key = self.label("limits.max_message_bytes");
        if mb > ceiling {
            return Err(invalid(
                key,
                format!("{mb} is above the protocol ceiling of {ceiling}"),
                format!("use at most {ceiling}"),
            ));
        }
        if mb < d::MIN_MESSAGE_BYTES {
            return Err(invalid(
                key,
                format!("{mb} is too small for an ordinary request"),
                format!(
                    "use at least {} (default {})",
                    d::MIN_MESSAGE_BYTES,
                    d::MAX_MESSAGE_BYTES
                ),
            ));
        }
        let ranges = [
            (
                "limits.max_streams_per_peer",
                l.max_streams_per_peer,
                d::STREAMS_PER_PEER_CEILING,
                d::MAX_STREAMS_PER_PEER,
            ),
            (
                "limits.max_connections_per_peer",
                l.max_connections_per_peer,
                d::CONNECTIONS_PER_PEER_CEILING,
                d::MAX_CONNECTIONS_PER_PEER,
            ),
            (
                "limits.clock_skew_secs",
                l.clock_skew_secs,
                d::CLOCK_SKEW_CEILING_SECS,
                d::CLOCK_SKEW_SECS,
            ),
            (
                "limits.max_message_age_days",
                l.max_message_age_days,
                d::MESSAGE_AGE_CEILING_DAYS,
                d::MAX_MESSAGE_AGE_DAYS,
            ),
            (
                "limits.handshake_timeout_secs",
                l.handshake_timeout_secs,
                d::HANDSHAKE_TIMEOUT_CEILING_SECS,
                d::HANDSHAKE_TIMEOUT_SECS,
            ),
            (
                "limits.idle_timeout_secs",
                l.idle_timeout_secs,
                d::IDLE_TIMEOUT_CEILING_SECS,
                d::IDLE_TIMEOUT_SECS,
            ),
            (
                "limits.delivery_window",
                l.delivery_window,
                d::DELIVERY_WINDOW_CEILING,
                d::DELIVERY_WINDOW,
            ),
            (
                "limits.rejections_per_hour",
                l.rejections_per_hour,
                d::REJECTIONS_PER_HOUR_CEILING,
                d::REJECTIONS_PER_HOUR,
            ),
            (
                "limits.rejections_per_day",
                l.rejections_per_day,
                d::REJECTIONS_PER_DAY_CEILING,
                d::REJECTIONS_PER_DAY,
            ),
            (
                "limits.over_budget_backoff_secs",
                l.over_budget_backoff_secs,
                d::OVER_BUDGET_BACKOFF_CEILING_SECS,
                d::OVER_BUDGET_BACKOFF_SECS,
            ),
        ];
        for (key, v, max, default) in ranges {
            check_range(
                &self.label(key),
                u64::from(v),
                1,
                max.into(),
                default.into(),
            )?;
        }
        // Zero is allowed: it turns that part of the reserve off.
        for (key, v, max, default) in [
            (
                "limits.disk_reserve_mib",
                l.disk_reserve_mib,
                d::DISK_RESERVE_CEILING_MIB,
                d::DISK_RESERVE_MIB,
            ),
            (
                "limits.disk_reserve_percent",
                l.disk_reserve_percent,
                d::DISK_RESERVE_CEILING_PERCENT,
                d::DISK_RESERVE_PERCENT,
            ),
        ] {
            check_range(&self.label(key), v.into(), 0, max.into(), default.into())?;
        }
        self.validate_attachment_limits()
    }

    fn validate_attachment_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let ceiling = AttachmentLimits::ceiling().max_attachment_bytes;
        check_range(
            &self.label("limits.max_attachment_bytes"),
            l.max_attachment_bytes,
            0,
            ceiling,
            d::MAX_ATTACHMENT_BYTES,
        )?;
        if l.max_message_attachment_bytes < l.max_attachment_bytes {
            return Err(invalid(
                self.label("limits.max_message_attachment_bytes"),
                format!(
                    "{} is below limits.max_attachment_bytes ({}): a message could not \
                     carry one attachment of the largest size allowed",
                    l.max_message_attachment_bytes, l.max_attachment_bytes
                ),
                format!(
                    "use at least {} (default {})",
                    l.max_attachment_bytes,
                    d::MAX_MESSAGE_ATTACHMENT_BYTES
                ),
            ));
        }
        let share = l.max_incomplete_attachment_bytes_per_peer;
        if let Some(share) = share.filter(|s| *s < l.max_message_attachment_bytes) {
            return Err(invalid(
                self.label("limits.max_incomplete_attachment_bytes_per_peer"),
                format!(
                    "{share} is below limits.max_message_attachment_bytes ({}): a second \
                     message with the most attachments allowed would always wait",
                    l.max_message_attachment_bytes
                ),
                format!(
                    "use at least {} (default {})",
                    l.max_message_attachment_bytes,
                    d::MAX_INCOMPLETE_ATTACHMENT_BYTES_PER_PEER
                ),
            ));
        }
        check_range(
            &self.label("limits.staged_attachment_secs"),
            l.staged_attachment_secs.into(),
            1,
            d::STAGED_ATTACHMENT_CEILING_SECS.into(),
            d::STAGED_ATTACHMENT_SECS.into(),
        )?;
        let most = u64::try_from(AttachmentLimits::MAX_ATTACHMENTS_CEILING).unwrap_or(u64::MAX);
        check_range(
            &self.label("limits.max_attachments_per_message"),
            l.max_attachments_per_message.into(),
            0,
            most,
            d::MAX_ATTACHMENTS_PER_MESSAGE.into(),
        )
    }

    fn validate_retry(&self) -> Result<(), ConfigError> {
        let r = &self.retry;
        check_range(
            "retry.initial_backoff_ms",
            r.initial_backoff_ms.into(),
            1,
            u64::from(d::MAX_BACKOFF_CEILING_SECS) * 1000,
            d::INITIAL_BACKOFF_MS.into(),
        )?;
        check_range(
            "retry.max_backoff_secs",
            r.max_backoff_secs.into(),
            1,
            d::MAX_BACKOFF_CEILING_SECS.into(),
            d::MAX_BACKOFF_SECS.into(),
        )?;
        if r.initial_backoff() > r.max_backoff() {
            return Err(invalid(
                "retry.max_backoff_secs",
                format!(
                    "{} s is shorter than retry.initial_backoff_ms ({} ms)",
                    r.max_backoff_secs, r.initial_backoff_ms
                ),
                "make the cap at least the initial backoff",
            ));
        }
        if !(1.0..=d::MULTIPLIER_CEILING).contains(&r.multiplier) {
            return Err(invalid(
                "retry.multiplier",
                format!("{} is outside 1.0..=10.0", r.multiplier),
                format!(
                    "use a growth factor between 1.0 and 10.0 (default {:?})",
                    d::MULTIPLIER
                ),
            ));
        }
        if !(0.0..=1.0).contains(&r.jitter) {
            return Err(invalid(
                "retry.jitter",
                format!("{} is outside 0.0..=1.0", r.jitter),
                format!("use a fraction between 0.0 and 1.0 (default {})", d::JITTER),
            ));
        }
        Ok(())
    }

    fn validate_peers(&self) -> Result<(), ConfigError> {
        let mut ids = HashMap::new();
        let mut countries = HashMap::new();
        let cut_out: HashMap<NodeId, usize> = self
            .peers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.repinned_from.iter().map(move |id| (*id, i)))
            .collect();
        let rotated: HashMap<NodeId, usize> = self
            .peers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.rotated_from.iter().map(move |id| (*id, i)))
            .collect();
        for (i, p) in self.peers.iter().enumerate() {
            let key = |k: &str| format!("peer[{i}].{k}");
            parse_host_port(&p.address)
                .map_err(|e| invalid(key("address"), e.to_string(), ADDRESS_FIX))?;
            check_name(&p.name, &key("name"), false)?;
            if p.country == self.node.country {
                return Err(invalid(
                    key("country"),
                    format!("{} is this node's own country (node.country)", p.country),
                    "a peer is another country's authority: check the peer's country and node.country",
                ));
            }
            if let Some(j) = ids.insert(p.id, i) {
                return Err(invalid(
                    key("id"),
                    format!("is the same node id as peer[{j}].id"),
                    "each peer is pinned once: remove one of the two [[peer]] tables",
                ));
            }
            if let Some(j) = cut_out.get(&p.id) {
                return Err(invalid(
                    key("id"),
                    format!("is in peer[{j}].repinned_from: a key cut out by `comity peer repin`"),
                    "a key cut out is never pinned again: pin the peer's new id",
                ));
            }
            if let Some(j) = rotated.get(&p.id) {
                return Err(invalid(
                    key("id"),
                    format!("is in peer[{j}].rotated_from: a key that peer left by an identity transition"),
                    "pin the peer's current id, or remove the id from rotated_from",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = p
                .repinned_from
                .iter()
                .chain(&p.rotated_from)
                .find(|id| !seen.insert(**id))
            {
                return Err(invalid(
                    key("repinned_from"),
                    format!("lists {} twice", dup.short()),
                    "list each id cut out once",
                ));
            }
            if let Some(j) = countries.insert(p.country, i) {
                return Err(invalid(
                    key("country"),
                    format!("{} is also the country of peer[{j}]", p.country),
                    "peers are addressed by country (`--to CC`), so each needs its own: remove or correct one of them",
                ));
            }
        }
        Ok(())
    }
}

fn check_range(key: &str, v: u64, min: u64, max: u64, default: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&v) {
        return Ok(());
    }
    let problem = if v < min {
        format!("{v} is below the minimum of {min}")
    } else {
        format!("{v} is above the maximum of {max}")
    };
    Err(invalid(
        key,
        problem,
        format!("use a value from {min} to {max} (default {default})"),
    ))
}

fn check_name(name: &str, key: &str, required: bool) -> Result<(), ConfigError> {
    if required && name.trim().is_empty() {
        return Err(invalid(
            key,
            "is empty",
            "give the authority's name, e.g. \"Ministry of Justice of Arcadia\"",
        ));
    }
    if name.chars().count() > d::MAX_NAME_CHARS {
        return Err(invalid(
            key,
            format!("is {} characters long", name.chars().count()),
            format!("shorten it to at most {} characters", d::MAX_NAME_CHARS),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            key,
            "contains control characters (e.g. a newline)",
            "write it on one line",
        ));
    }
    Ok(())
}
