//! Peer addresses: `host:port` where host may be a DNS name, so that a peer
//! can move without every other node editing its config.

use std::net::{Ipv4Addr, Ipv6Addr};

/// What to tell an operator whose peer address was refused.
pub(crate) const ADDRESS_FIX: &str =
    "write it as HOST:PORT, e.g. \"comity.justice.example:7400\", \"192.0.2.10:7400\" or \"[2001:db8::1]:7400\"";

/// Why a string is not a `host:port` peer address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address is {0} characters long, more than any host name")]
    TooLong(usize),
    #[error("{0:?} has no port (expected HOST:PORT)")]
    MissingPort(String),
    #[error("{0:?} is not a port number between 1 and 65535")]
    BadPort(String),
    #[error("the host is empty")]
    EmptyHost,
    #[error("{0:?} is an IPv6 address without brackets (write [ADDR]:PORT)")]
    UnbracketedIpv6(String),
    #[error("{0:?} is not a valid IPv6 address")]
    BadIpv6(String),
    #[error("{0:?} is not a valid host name or IPv4 address")]
    BadHost(String),
    #[error("{0:?} is a URL, not HOST:PORT")]
    Url(String),
}

/// Splits and checks `host:port`. The host is an IPv4 address, a bracketed
/// IPv6 address or a DNS name (letters, digits, `-` and `_`, dot-separated
/// labels of at most 63 characters); the port is 1–65535.
///
/// The string as written is what the node resolves (e.g. with
/// `tokio::net::lookup_host`), so nothing here touches the network.
pub fn parse_host_port(s: &str) -> Result<(&str, u16), AddressError> {
    use crate::error::excerpt;
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if s.len() > 261 {
        return Err(AddressError::TooLong(s.len()));
    }
    if s.contains("://") {
        return Err(AddressError::Url(excerpt(s)));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(AddressError::MissingPort(excerpt(s)));
    };
    if host.ends_with(':') || (host.contains(':') && !host.starts_with('[')) {
        return Err(AddressError::UnbracketedIpv6(excerpt(s)));
    }
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let port = match port.parse::<u16>() {
        Ok(p) if port_ok && p != 0 => p,
        _ => return Err(AddressError::BadPort(excerpt(port))),
    };
    if host.is_empty() {
        return Err(AddressError::EmptyHost);
    }
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok((host, port)),
            _ => Err(AddressError::BadIpv6(excerpt(host))),
        };
    }
    if host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host) {
        Ok((host, port))
    } else {
        Err(AddressError::BadHost(excerpt(host)))
    }
}

fn is_dns_name(host: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let last_is_numeric = host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    // An all-numeric last label is a mistyped IPv4 address, not a name.
    host.len() <= 253 && host.split('.').all(label_ok) && !last_is_numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_addresses() {
        assert_eq!(parse_host_port("localhost:7400"), Ok(("localhost", 7400)));
        assert_eq!(
            parse_host_port("comity.justice.example:1"),
            Ok(("comity.justice.example", 1))
        );
        assert_eq!(parse_host_port("node_b:7401"), Ok(("node_b", 7401)));
        assert_eq!(parse_host_port("192.0.2.1:7400"), Ok(("192.0.2.1", 7400)));
        assert_eq!(parse_host_port("[::1]:7400"), Ok(("[::1]", 7400)));
    }

    #[test]
    fn refuses_bad_shapes() {
        let bad = [
            "",
            "localhost",
            "localhost:",
            "localhost:0",
            "localhost:65536",
            "localhost:+80",
            ":7400",
            "::1:7400",
            "[::1:7400",
            "[zz]:7400",
            "300.1.1.1:7400",
            "-bad.example:7400",
            "has space:7400",
            "a..b:7400",
            "http://x:7400",
        ];
        for s in bad {
            assert!(parse_host_port(s).is_err(), "{s:?} accepted");
        }
    }
}
