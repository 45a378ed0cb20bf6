//! Parsing, defaults, env overrides, path resolution, validation messages.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::path::Path;
use std::time::Duration;

use comity_config::{Config, ConfigError, CountryCode, LogFormat, EXAMPLE_TOML};
use common::*;

#[test]
fn example_file_parses_and_validates() {
    let c = parse(EXAMPLE_TOML).unwrap();
    assert_eq!(c.node.country.as_str(), "AR");
    assert!(c.peers.is_empty());
    // The example states the defaults: it must agree with the code.
    let d = parse(MINIMAL).unwrap();
    assert_eq!(c.limits, d.limits);
    assert_eq!(c.retry, d.retry);
    assert_eq!(c.log, d.log);
    assert_eq!(c.node.identity_key, d.node.identity_key);
}

#[test]
fn example_peer_block_is_valid_once_filled_in() {
    let peer = EXAMPLE_TOML
        .split_once("# [[peer]]")
        .unwrap()
        .1
        .lines()
        .filter(|l| !l.starts_with("# #"))
        .map(|l| l.trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join("\n");
    let peer = peer.replace(
        "abcdefgh-ijklmnop-qrstuvwx-yzabcdef-ghijklmn-opqrstuv-wxyzabcd",
        &node_id(2).to_string(),
    );
    let text = format!("{EXAMPLE_TOML}\n[[peer]]{peer}\n");
    let c = parse(&text).unwrap();
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.peers[0].address, "comity.justice.borduria.example:7400");
    assert_eq!(c.peers[0].country.as_str(), "BO");
}

#[test]
fn defaults_are_applied() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.node.identity_key, Path::new("/etc/comity/keys/node.key"));
    assert_eq!(c.node.data_dir, Path::new("/etc/comity/data"));
    assert_eq!(c.node.admin_socket, Path::new("/etc/comity/comity.sock"));
    assert_eq!(c.node.metrics_listen, None);
    assert_eq!(c.limits.max_message_bytes, 4 * 1024 * 1024 + 64 * 1024);
    assert_eq!(c.limits.max_streams_per_peer, 16);
    assert_eq!(c.limits.max_connections_per_peer, 2);
    assert_eq!(c.limits.clock_skew(), Duration::from_secs(300));
    assert_eq!(c.limits.max_message_age(), Duration::from_secs(14 * 86_400));
    assert_eq!(c.limits.handshake_timeout(), Duration::from_secs(10));
    assert_eq!(c.limits.idle_timeout(), Duration::from_secs(60));
    assert_eq!(c.retry.initial_backoff(), Duration::from_millis(500));
    assert_eq!(c.retry.max_backoff(), Duration::from_secs(300));
    assert_eq!(c.retry.multiplier, 2.0);
    assert_eq!(c.retry.jitter, 0.2);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert!(c.env_overrides().is_empty());
}

#[test]
fn partial_sections_keep_other_defaults() {
    let c = parse(&format!(
        "{MINIMAL}\n[limits]\nmax_streams_per_peer = 4\n[retry]\nmultiplier = 3\n"
    ))
    .unwrap();
    assert_eq!(c.limits.max_streams_per_peer, 4);
    assert_eq!(c.limits.max_connections_per_peer, 2);
    assert_eq!(c.retry.multiplier, 3.0);
    assert_eq!(c.retry.jitter, 0.2);
}

#[test]
fn country_is_normalised() {
    let c = parse(&MINIMAL.replace("\"AR\"", "\"ar\"")).unwrap();
    assert_eq!(c.node.country, "AR".parse::<CountryCode>().unwrap());
}

fn invalid(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

fn assert_key(text: &str, key: &str, needle: &str) {
    let e = invalid(text);
    assert_eq!(e.key(), Some(key), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{key}: ")), "{msg}");
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

#[test]
fn node_errors_name_their_key() {
    assert_key(
        &MINIMAL.replace("\"AR\"", "\"Arcadia\""),
        "node.country",
        "\"Arcadia\" is not a two-letter country code (ISO 3166-1 alpha-2)",
    );
    assert_key(
        &MINIMAL.replace("\"AR\"", "\"Arcadia\""),
        "node.country",
        "e.g. \"FR\"",
    );
    assert_key(
        &MINIMAL.replace("127.0.0.1:7400", "localhost:7400"),
        "node.listen",
        "IP:PORT",
    );
    assert_key(
        &MINIMAL.replace("127.0.0.1:7400", "127.0.0.1:0"),
        "node.listen",
        "fixed port",
    );
    assert_key(
        &MINIMAL.replace("Ministry of Justice of Arcadia", " "),
        "node.name",
        "is empty",
    );
    assert_key(
        &MINIMAL.replace("Ministry of Justice of Arcadia", "a\\nb"),
        "node.name",
        "control",
    );
    assert_key(
        &MINIMAL.replace("name = \"Ministry of Justice of Arcadia\"", ""),
        "node.name",
        "COMITY_NAME",
    );
    assert_key(
        &MINIMAL.replace("country = \"AR\"", ""),
        "node.country",
        "is missing",
    );
    assert_key(
        &MINIMAL.replace("listen = \"127.0.0.1:7400\"", ""),
        "node.listen",
        "COMITY_LISTEN",
    );
    assert_key(
        &format!("{MINIMAL}data_dir = \"\"\n"),
        "node.data_dir",
        "is empty",
    );
    assert_key(
        &format!("{MINIMAL}metrics_listen = \"nope\"\n"),
        "node.metrics_listen",
        "IP:PORT",
    );
    let long = "s".repeat(120);
    assert_key(
        &format!("{MINIMAL}admin_socket = \"{long}\"\n"),
        "node.admin_socket",
        "107 bytes",
    );
    assert_key("", "node.name", "is missing");
}

#[test]
fn limit_errors_name_their_key() {
    let lim = |k: &str, v: &str| format!("{MINIMAL}\n[limits]\n{k} = {v}\n");
    assert_key(
        &lim("max_message_bytes", "20000000"),
        "limits.max_message_bytes",
        "20000000 is above the protocol ceiling of 16777216; use at most 16777216",
    );
    assert_key(
        &lim("max_message_bytes", "0"),
        "limits.max_message_bytes",
        "use at least 4096",
    );
    for k in [
        "max_streams_per_peer",
        "max_connections_per_peer",
        "clock_skew_secs",
        "max_message_age_days",
        "handshake_timeout_secs",
        "idle_timeout_secs",
    ] {
        assert_key(
            &lim(k, "0"),
            &format!("limits.{k}"),
            "below the minimum of 1",
        );
        assert_key(
            &lim(k, "4000000000"),
            &format!("limits.{k}"),
            "above the maximum",
        );
    }
    assert!(parse(&lim("max_message_bytes", "16777216")).is_ok());
}

#[test]
fn attachment_limits_have_defaults_and_bounds() {
    let c = parse(MINIMAL).unwrap();
    let a = c.limits.attachment_limits();
    assert_eq!(a.max_attachment_bytes, 64 << 30);
    assert_eq!(a.max_message_bytes, 256 << 30);
    assert_eq!(a.max_attachments, 64);
    let lim = |body: &str| format!("{MINIMAL}\n[limits]\n{body}\n");
    assert_key(
        &lim("max_attachment_bytes = 274877906945"),
        "limits.max_attachment_bytes",
        "above the maximum of 274877906944",
    );
    assert_key(
        &lim("max_attachment_bytes = 1000\nmax_message_attachment_bytes = 999"),
        "limits.max_message_attachment_bytes",
        "use at least 1000",
    );
    assert_key(
        &lim("max_message_attachment_bytes = 2000\nmax_attachment_bytes = 1000\nmax_incomplete_attachment_bytes_per_peer = 1999"),
        "limits.max_incomplete_attachment_bytes_per_peer",
        "use at least 2000",
    );
    // Unset, the share follows a larger message limit (an older config
    // with one keeps loading); set, it is taken as it is.
    let big = parse(&lim("max_message_attachment_bytes = 1099511627776")).unwrap();
    assert_eq!(big.limits.incomplete_attachment_share(), 1 << 40);
    assert_eq!(
        parse(MINIMAL).unwrap().limits.incomplete_attachment_share(),
        512 << 30
    );
    let set = parse(&lim(
        "max_incomplete_attachment_bytes_per_peer = 300000000000",
    ))
    .unwrap();
    assert_eq!(set.limits.incomplete_attachment_share(), 300_000_000_000);
    assert_key(
        &lim("max_attachments_per_message = 1025"),
        "limits.max_attachments_per_message",
        "above the maximum of 1024",
    );
    let c = parse(&lim(
        "max_attachment_bytes = 1048576\nmax_message_attachment_bytes = 2097152\nmax_attachments_per_message = 0",
    ))
    .unwrap();
    let a = c.limits.attachment_limits();
    assert_eq!(
        (
            a.max_attachment_bytes,
            a.max_message_bytes,
            a.max_attachments
        ),
        (1 << 20, 2 << 20, 0)
    );
}

#[test]
fn retry_errors_name_their_key() {
    let r = |k: &str, v: &str| format!("{MINIMAL}\n[retry]\n{k} = {v}\n");
    assert_key(&r("jitter", "1.5"), "retry.jitter", "between 0.0 and 1.0");
    assert_key(&r("jitter", "-0.1"), "retry.jitter", "outside");
    assert_key(&r("jitter", "nan"), "retry.jitter", "outside");
    assert_key(
        &r("multiplier", "0.5"),
        "retry.multiplier",
        "between 1.0 and 10.0",
    );
    assert_key(
        &r("initial_backoff_ms", "0"),
        "retry.initial_backoff_ms",
        "minimum",
    );
    assert_key(
        &r("max_backoff_secs", "0"),
        "retry.max_backoff_secs",
        "minimum",
    );
    assert_key(
        &r("max_backoff_secs", "1\ninitial_backoff_ms = 5000"),
        "retry.max_backoff_secs",
        "initial",
    );
    assert!(parse(&r("jitter", "0")).is_ok());
    assert!(parse(&r("jitter", "1.0")).is_ok());
}

#[test]
fn audit_off_needs_the_variable_in_the_environment_given() {
    let off = format!("{MINIMAL}\n[audit]\nenabled = false\n");
    assert_key(&off, "audit.enabled", "COMITY_ALLOW_AUDIT_OFF=1");
    let c = parse_env(&off, &[("COMITY_ALLOW_AUDIT_OFF", "1")]).unwrap();
    assert!(!c.audit.enabled);
}

#[test]
fn peer_errors_name_their_key() {
    let (a, b) = (node_id(1), node_id(2));
    let good = with_peers(&[
        (a, "borduria.example:7400", "BO"),
        (b, "192.0.2.7:7400", "SY"),
    ]);
    assert_eq!(parse(&good).unwrap().peers.len(), 2);

    // A one-character typo in the second peer's id.
    let typo = b.to_string();
    let mut t = typo.clone().into_bytes();
    t[3] = if t[3] == b'a' { b'b' } else { b'a' };
    let typo_text = good.replace(&typo, std::str::from_utf8(&t).unwrap());
    assert_key(&typo_text, "peer[1].id", "checksum mismatch");
    assert_key(&typo_text, "peer[1].id", "comity id");

    assert_key(
        &good.replace("192.0.2.7:7400", "192.0.2.7"),
        "peer[1].address",
        "HOST:PORT",
    );
    assert_key(
        &good.replace("192.0.2.7:7400", "https://x:1"),
        "peer[1].address",
        "URL",
    );
    assert_key(
        &good.replace("\"SY\"", "\"Syldavia\""),
        "peer[1].country",
        "ISO 3166-1",
    );
    assert_key(
        &good.replace("\"SY\"", "\"BO\""),
        "peer[1].country",
        "also the country of peer[0]",
    );
    assert_key(
        &good.replace("\"SY\"", "\"AR\""),
        "peer[1].country",
        "own country",
    );
    assert_key(
        &good.replace(&b.to_string(), &a.to_string()),
        "peer[1].id",
        "same node id as peer[0]",
    );
    assert_key(
        &good.replace("address = \"192.0.2.7:7400\"", ""),
        "peer[1].address",
        "is missing",
    );
    assert_key(
        &good.replace(&format!("id = \"{b}\""), ""),
        "peer[1].id",
        "is missing",
    );
    // Ids are compared as keys, not as text.
    let respelt = good.replace(
        &b.to_string(),
        &a.to_string().to_uppercase().replace('-', ""),
    );
    assert_key(&respelt, "peer[1].id", "same node id");
}

#[test]
fn peer_name_defaults_to_empty() {
    let text = format!(
        "{MINIMAL}\n[[peer]]\nid = \"{}\"\naddress = \"b:1\"\ncountry = \"BO\"\n",
        node_id(1)
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.peers[0].name, "");
    assert_eq!(
        c.peer_by_country("bo".parse().unwrap()).unwrap().id,
        node_id(1)
    );
    assert!(c.peer_by_id(&node_id(1)).is_some());
    assert!(c.peer_by_id(&node_id(9)).is_none());
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    for (text, name) in [
        (format!("{MINIMAL}listne = \"x\"\n"), "listne"),
        (format!("{MINIMAL}\n[limts]\n"), "limts"),
        (format!("{MINIMAL}\n[retry]\njiter = 0.1\n"), "jiter"),
        (format!("{MINIMAL}\n[[peers]]\n"), "peers"),
        (
            format!("{MINIMAL}\n[[peer]]\nid = \"x\"\nadress = \"x\"\n"),
            "adress",
        ),
    ] {
        let e = invalid(&text);
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("line"), "{msg}");
    }
}

#[test]
fn syntax_errors_keep_line_and_column() {
    let e = invalid("[node]\nname = \"x\"\ncountry = AR\n");
    let msg = e.to_string();
    assert!(msg.contains("line 3"), "{msg}");
    assert!(msg.contains("column"), "{msg}");
    let e = invalid(&format!(
        "{MINIMAL}\n[limits]\nmax_streams_per_peer = \"many\"\n"
    ));
    assert!(e.to_string().contains("line"), "{e}");
}

#[test]
fn env_overrides_win_and_are_named() {
    let vars = [
        ("COMITY_LISTEN", "0.0.0.0:7500"),
        ("COMITY_DATA_DIR", "/var/lib/comity"),
        ("COMITY_ADMIN_SOCKET", "run/c.sock"),
        ("COMITY_IDENTITY_KEY", "/run/secrets/node.key"),
        ("COMITY_NAME", "Attorney General of Arcadia"),
        ("COMITY_COUNTRY", "xa"),
        ("COMITY_MAX_MESSAGE_BYTES", "65536"),
        ("COMITY_METRICS_LISTEN", "127.0.0.1:9400"),
        ("COMITY_LOG_FORMAT", "json"),
    ];
    let c = parse_env(MINIMAL, &vars).unwrap();
    assert_eq!(c.node.listen.to_string(), "0.0.0.0:7500");
    assert_eq!(c.node.data_dir, Path::new("/var/lib/comity"));
    assert_eq!(c.node.admin_socket, Path::new("/etc/comity/run/c.sock"));
    assert_eq!(c.node.identity_key, Path::new("/run/secrets/node.key"));
    assert_eq!(c.node.name, "Attorney General of Arcadia");
    assert_eq!(c.node.country.as_str(), "XA");
    assert_eq!(c.limits.max_message_bytes, 65536);
    assert_eq!(c.node.metrics_listen.unwrap().port(), 9400);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.env_overrides().len(), vars.len());

    // Empty means unset.
    let c = parse_env(MINIMAL, &[("COMITY_LISTEN", "")]).unwrap();
    assert_eq!(c.node.listen.port(), 7400);

    // Required keys may come from the environment alone.
    let c = parse_env(
        "",
        &[
            ("COMITY_NAME", "N"),
            ("COMITY_COUNTRY", "BO"),
            ("COMITY_LISTEN", "[::]:7400"),
        ],
    )
    .unwrap();
    assert_eq!(c.node.country.as_str(), "BO");

    let e = parse_env(MINIMAL, &[("COMITY_LISTEN", "nowhere")]).unwrap_err();
    assert_eq!(e.key(), Some("node.listen (set by COMITY_LISTEN)"), "{e}");
    let e = parse_env(MINIMAL, &[("COMITY_MAX_MESSAGE_BYTES", "lots")]).unwrap_err();
    assert_eq!(e.key(), Some("COMITY_MAX_MESSAGE_BYTES"), "{e}");
    let e = parse_env(MINIMAL, &[("COMITY_MAX_MESSAGE_BYTES", "99999999")]).unwrap_err();
    assert_eq!(
        e.key(),
        Some("limits.max_message_bytes (set by COMITY_MAX_MESSAGE_BYTES)"),
        "{e}"
    );
    let e = parse_env(MINIMAL, &[("COMITY_LOG_FORMAT", "xml")]).unwrap_err();
    assert_eq!(e.key(), Some("COMITY_LOG_FORMAT"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_config_dir() {
    let text =
        format!("{MINIMAL}identity_key = \"../secrets/n.key\"\ndata_dir = \"/srv/comity\"\n");
    let c = Config::from_toml_str(&text, Path::new("/opt/node-a"), &no_env).unwrap();
    assert_eq!(
        c.node.identity_key,
        Path::new("/opt/node-a/../secrets/n.key")
    );
    assert_eq!(c.node.data_dir, Path::new("/srv/comity"));
    assert_eq!(c.node.admin_socket, Path::new("/opt/node-a/comity.sock"));
    assert_eq!(c.base_dir(), Path::new("/opt/node-a"));
}

#[test]
fn load_reads_a_file_relative_to_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("comity.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.node.data_dir, dir.path().join("data"));
    assert_eq!(c.base_dir(), dir.path());

    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("nope.toml"), "{e}");

    let big = dir.path().join("big.toml");
    let mut text = MINIMAL.to_string();
    text.push_str(&"# padding\n".repeat(110_000));
    std::fs::write(&big, text).unwrap();
    let e = Config::load(&big).unwrap_err();
    assert!(matches!(e, ConfigError::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("big.toml"), "{e}");

    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"[node]\nname = \"Minist\xe8re\"\n").unwrap();
    assert!(matches!(
        Config::load(&latin1).unwrap_err(),
        ConfigError::Syntax { .. }
    ));
}
