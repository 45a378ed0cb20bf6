//! A UDP relay between one QUIC client and one server on 127.0.0.1 that
//! loses, duplicates and reorders datagrams at the rates given, both ways:
//! a bad network path in a test.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::{Rng, SeedableRng};

/// What the relay does to each datagram, independently, each way.
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    /// Dropped.
    pub loss: f64,
    /// Sent twice.
    pub duplicate: f64,
    /// Held back and sent after the next one.
    pub reorder: f64,
}

/// Counts of what the relay did.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
}

/// Running until dropped.
pub struct Relay {
    pub port: u16,
    pub stats: Arc<RelayStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Listens on a free port of 127.0.0.1 and relays to `server`.
    pub fn start(server: SocketAddr, impairment: Impairment, seed: u64) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let port = front.local_addr().unwrap().port();
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RelayStats::default());
        let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        let up = {
            let (client, stop, stats) = (client.clone(), stop.clone(), stats.clone());
            std::thread::spawn(move || {
                let mut way = Way::new(impairment, seed, stats);
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().unwrap() = Some(from);
                    way.pass(&buf[..n], |d| {
                        let _ = back.send(d);
                    });
                }
            })
        };
        let down = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::spawn(move || {
                let mut way = Way::new(impairment, seed.wrapping_add(1), stats);
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = back2.recv(&mut buf) else {
                        continue;
                    };
                    let Some(to) = *client.lock().unwrap() else {
                        continue;
                    };
                    way.pass(&buf[..n], |d| {
                        let _ = front2.send_to(d, to);
                    });
                }
            })
        };
        Relay {
            port,
            stats,
            stop,
            threads: vec![up, down],
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One direction's impairments, with the datagram held back for reordering.
struct Way {
    impairment: Impairment,
    rng: rand::rngs::StdRng,
    held: Option<Vec<u8>>,
    stats: Arc<RelayStats>,
}

impl Way {
    fn new(impairment: Impairment, seed: u64, stats: Arc<RelayStats>) -> Way {
        Way {
            impairment,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            held: None,
            stats,
        }
    }

    fn pass(&mut self, datagram: &[u8], mut send: impl FnMut(&[u8])) {
        let i = self.impairment;
        if self.rng.random_bool(i.loss) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.held.is_none() && self.rng.random_bool(i.reorder) {
            self.stats.reordered.fetch_add(1, Ordering::Relaxed);
            self.held = Some(datagram.to_vec());
            return;
        }
        send(datagram);
        if self.rng.random_bool(i.duplicate) {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            send(datagram);
        }
        if let Some(earlier) = self.held.take() {
            send(&earlier);
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
    }
}
