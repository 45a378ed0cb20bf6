//! The admin socket cannot be held by a stuck or hostile local client:
//! connections beyond the limit are answered 503 and closed at once, a
//! request head that does not arrive in time is dropped, and the API
//! answers again as soon as they are gone.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use comity_node::admin::{HEADER_TIMEOUT, MAX_CONNECTIONS};
use comity_tests::TestNode;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");

/// What the server sends before it closes, or `None` if it says nothing
/// within `wait`.
fn answer_within(s: &mut UnixStream, wait: Duration) -> Option<String> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(e)
            if buf.is_empty()
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
        {
            None
        }
        Err(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
    }
}

#[test]
fn stalled_and_excess_admin_connections_are_dropped() {
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    a.start();
    // Every allowed connection taken by a request head that never ends.
    let mut stalled: Vec<UnixStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut s = UnixStream::connect(a.socket()).unwrap();
            s.write_all(b"GET /v1/node HTTP/1.1\r\nHost: comity\r\n")
                .unwrap();
            s
        })
        .collect();
    // Until the node has taken every one of them (it answers nothing
    // while they hold the slots: a request on a fresh connection waits).
    std::thread::sleep(Duration::from_millis(1000));
    let started = Instant::now();

    // One more is refused at once, with a reason.
    let mut excess = UnixStream::connect(a.socket()).unwrap();
    // "At once" on a loaded machine: well within the head timeout.
    let refused = answer_within(&mut excess, Duration::from_secs(4))
        .expect("a connection beyond the limit is answered at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");

    // The stalled ones are closed once their heads are overdue.
    for s in &mut stalled {
        let wait = (HEADER_TIMEOUT + Duration::from_secs(10)).saturating_sub(started.elapsed());
        assert!(
            answer_within(s, wait).is_some(),
            "a stalled request head still holds its connection after {:?}",
            started.elapsed()
        );
    }
    println!(
        "{MAX_CONNECTIONS} stalled connections closed {:.1} s after the last was opened",
        started.elapsed().as_secs_f64()
    );
    // And the API answers again.
    assert_eq!(a.get("/v1/node")["country"], "AR");
}
