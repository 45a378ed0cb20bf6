//! Binding the node's UDP port. At start a port in use is an error at once
//! (another node has it). After the store was reopened in the same process
//! the port was ours a moment ago: the old endpoint's socket is released
//! when its last connection and driver let go of it, which can take longer
//! than the shutdown's wait for idle, so the bind is retried for a while.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tracing::{info, warn};

use super::endpoint::EndpointError;

/// How long a bind waits for a port still in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindPatience {
    /// At start: a port in use belongs to someone else.
    None,
    /// After a reopen: retried with backoff for up to this long.
    UpTo(Duration),
}

impl BindPatience {
    /// What a reopened node waits for its own port.
    pub const AFTER_REOPEN: BindPatience = BindPatience::UpTo(Duration::from_secs(30));
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// The pauses between attempts, doubling from 100 ms to at most 2 s, that
/// add up to no more than `patience`.
pub fn retry_delays(patience: Duration) -> impl Iterator<Item = Duration> {
    let mut spent = Duration::ZERO;
    let mut next = FIRST_RETRY;
    std::iter::from_fn(move || {
        let left = patience.saturating_sub(spent);
        if left.is_zero() {
            return None;
        }
        let d = next.min(left);
        spent += d;
        next = (next * 2).min(MAX_RETRY);
        Some(d)
    })
}

/// Binds `listen`, retrying while it is in use as `patience` allows.
pub async fn bind_udp(
    listen: SocketAddr,
    patience: BindPatience,
) -> Result<UdpSocket, EndpointError> {
    let bind = |source| EndpointError::Bind { listen, source };
    let patience = match patience {
        BindPatience::None => return UdpSocket::bind(listen).map_err(bind),
        BindPatience::UpTo(p) => p,
    };
    let mut waited = Duration::ZERO;
    let mut delays = retry_delays(patience);
    loop {
        match UdpSocket::bind(listen) {
            Ok(s) => {
                if !waited.is_zero() {
                    info!(%listen, ?waited, "the port is free again");
                }
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => match delays.next() {
                Some(d) => {
                    if waited.is_zero() {
                        warn!(%listen, ?patience, "the port is still in use after the reopen; retrying");
                    }
                    tokio::time::sleep(d).await;
                    waited += d;
                }
                None => return Err(EndpointError::StillInUse { listen, waited }),
            },
            Err(e) => return Err(bind(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delays_double_up_to_two_seconds_and_stay_within_the_patience() {
        let d: Vec<Duration> = retry_delays(Duration::from_secs(30)).collect();
        assert_eq!(d[0], Duration::from_millis(100));
        assert_eq!(d[1], Duration::from_millis(200));
        assert!(d.iter().all(|x| *x <= MAX_RETRY));
        assert_eq!(d.iter().sum::<Duration>(), Duration::from_secs(30));
        assert_eq!(retry_delays(Duration::ZERO).count(), 0);
    }

    #[tokio::test]
    async fn a_port_released_a_second_later_is_bound_after_a_reopen() {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            drop(held);
        });
        let start = std::time::Instant::now();
        let s = bind_udp(addr, BindPatience::AFTER_REOPEN).await.unwrap();
        assert_eq!(s.local_addr().unwrap(), addr);
        assert!(start.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn a_port_never_released_fails_after_the_patience_with_the_wait_named() {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let start = std::time::Instant::now();
        let e = bind_udp(addr, BindPatience::UpTo(Duration::from_millis(500)))
            .await
            .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(500));
        assert!(
            matches!(e, EndpointError::StillInUse { waited, .. } if waited == Duration::from_millis(500)),
            "{e:?}"
        );
        assert!(e.to_string().contains("still in use"), "{e}");
        // At start, no waiting: someone else has the port.
        let start = std::time::Instant::now();
        let e = bind_udp(addr, BindPatience::None).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(100));
        assert!(matches!(e, EndpointError::Bind { .. }), "{e:?}");
        drop(held);
    }
}
