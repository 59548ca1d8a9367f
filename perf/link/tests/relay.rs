//! The relay over real loopback sockets: delay, loss, rate, queue,
//! duplication and reordering as measured by a client and a server on
//! 127.0.0.1 (port 0 everywhere, so the tests run in parallel).

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stt_link::{ConfigError, DirectionStats, LinkConfig, LinkDirection, Relay};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    s.set_read_timeout(Some(ms(20))).expect("timeout");
    s
}

/// What a server received: arrival time, payload, source.
type Received = Vec<(Instant, Vec<u8>, SocketAddr)>;

/// A server on 127.0.0.1 that records every datagram (arrival time,
/// payload, source) and echoes it if `echo`; stops when dropped.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Received>>,
}

impl Server {
    fn start(echo: bool) -> Server {
        let s = socket();
        let addr = s.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 65_535];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    got.push((Instant::now(), buf[..n].to_vec(), from));
                    if echo {
                        let _ = s.send_to(&buf[..n], from);
                    }
                }
            }
            got
        });
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Received {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Waits until `done(stats)` or two seconds.
fn settle(relay: &Relay, done: impl Fn(&DirectionStats) -> bool) -> DirectionStats {
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let s = relay.stats().forward;
        if done(&s) || Instant::now() > end {
            return s;
        }
        std::thread::sleep(ms(5));
    }
}

/// Sends `n` datagrams of `size` bytes (the first 4 bytes numbered), in
/// bursts of `burst` with a 1 ms pause after each.
fn send_numbered(client: &UdpSocket, to: SocketAddr, n: u32, size: usize, burst: u32) {
    let mut payload = vec![0u8; size];
    for i in 0..n {
        payload[..4].copy_from_slice(&i.to_be_bytes());
        client.send_to(&payload, to).expect("send");
        if (i + 1) % burst == 0 {
            std::thread::sleep(ms(1));
        }
    }
}

#[test]
fn round_trip_adds_twice_the_delay() {
    let server = Server::start(true);
    let relay = Relay::start(
        LinkConfig::symmetric(LinkDirection {
            delay: ms(10),
            ..LinkDirection::default()
        }),
        server.addr,
    )
    .unwrap();
    let client = socket();
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut rtts = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0..40u32 {
        let t = Instant::now();
        client
            .send_to(&i.to_be_bytes(), relay.local_addr())
            .unwrap();
        let n = client.recv(&mut buf).expect("echo through the relay");
        assert_eq!(&buf[..n], &i.to_be_bytes());
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    assert!(rtts[0] >= ms(20), "shortest {:?}", rtts[0]);
    assert!(median <= ms(21), "median {median:?}");
    // The counter follows the send: the client may see the echo first.
    std::thread::sleep(ms(10));
    let stats = relay.stats();
    assert_eq!(
        (stats.forward.forwarded, stats.backward.forwarded),
        (40, 40)
    );
    assert_eq!(stats.clients, 1);
    drop(relay);
    assert_eq!(server.finish().len(), 40);
}

#[test]
fn loss_within_statistical_bounds() {
    let server = Server::start(false);
    let relay = Relay::start(
        LinkConfig {
            forward: LinkDirection {
                loss: 0.1,
                ..LinkDirection::default()
            },
            ..LinkConfig::default()
        },
        server.addr,
    )
    .unwrap();
    let client = socket();
    let n = 20_000;
    send_numbered(&client, relay.local_addr(), n, 64, 50);
    let s = settle(&relay, |s| s.forwarded + s.dropped_loss >= n as u64);
    assert_eq!(s.received, n as u64, "{s}");
    // 2,000 expected; 5 standard deviations (≈ 42 each) either side.
    assert!((1788..=2212).contains(&s.dropped_loss), "{s}");
    assert_eq!(s.forwarded + s.dropped_loss, n as u64, "{s}");
    assert_eq!(s.dropped_queue + s.dropped_overload + s.duplicated, 0);
    std::thread::sleep(ms(20));
    drop(relay);
    assert_eq!(server.finish().len() as u64, s.forwarded);
}

#[test]
fn rate_limit_holds_within_five_percent() {
    let server = Server::start(false);
    let rate = 100_000_000u64;
    let relay = Relay::start(
        LinkConfig {
            forward: LinkDirection {
                rate: Some(rate),
                queue: 256 << 10,
                ..LinkDirection::default()
            },
            ..LinkConfig::default()
        },
        server.addr,
    )
    .unwrap();
    let client = socket();
    // About 300 Mbit/s offered for 0.8 s (32 × 1200 B per millisecond), so
    // that the queue never runs dry even when this thread is descheduled.
    let end = Instant::now() + ms(800);
    let payload = [0u8; 1200];
    while Instant::now() < end {
        for _ in 0..32 {
            client.send_to(&payload, relay.local_addr()).unwrap();
        }
        std::thread::sleep(ms(1));
    }
    let s = settle(&relay, |s| {
        s.forwarded + s.dropped_queue + s.dropped_overload >= s.received
    });
    drop(relay);
    let got = server.finish();
    assert!(s.dropped_queue > 0, "the queue never overflowed: {s}");
    let (first, last) = (got[0].0, got[got.len() - 1].0);
    let bits = (got.len() - 1) as f64 * 1200.0 * 8.0;
    let measured = bits / (last - first).as_secs_f64();
    let ratio = measured / rate as f64;
    assert!(
        (0.95..=1.05).contains(&ratio),
        "{measured} bit/s ({ratio:.3}×), {s}"
    );
}

#[test]
fn queue_overflow_drops_are_counted() {
    let server = Server::start(false);
    let relay = Relay::start(
        LinkConfig {
            forward: LinkDirection {
                rate: Some(1_000_000), // 1000 bytes take 8 ms
                queue: 10_000,
                ..LinkDirection::default()
            },
            ..LinkConfig::default()
        },
        server.addr,
    )
    .unwrap();
    let client = socket();
    send_numbered(&client, relay.local_addr(), 100, 1000, 100);
    let s = settle(&relay, |s| s.forwarded + s.dropped_queue >= 100);
    assert_eq!(s.forwarded + s.dropped_queue, 100, "{s}");
    // The burst arrives in well under 8 ms: about ten fit.
    assert!((80..=90).contains(&s.dropped_queue), "{s}");
    drop(relay);
    assert_eq!(server.finish().len() as u64, s.forwarded);
}

#[test]
fn duplicates_are_counted_and_delivered() {
    let server = Server::start(false);
    let relay = Relay::start(
        LinkConfig {
            forward: LinkDirection {
                duplicate: 0.2,
                ..LinkDirection::default()
            },
            ..LinkConfig::default()
        },
        server.addr,
    )
    .unwrap();
    let client = socket();
    send_numbered(&client, relay.local_addr(), 2000, 100, 50);
    let s = settle(&relay, |s| s.forwarded - s.duplicated >= 2000);
    // 400 expected; 5 standard deviations (≈ 18 each) either side.
    assert!((310..=490).contains(&s.duplicated), "{s}");
    assert_eq!(s.forwarded, 2000 + s.duplicated, "{s}");
    std::thread::sleep(ms(20));
    drop(relay);
    assert_eq!(server.finish().len() as u64, s.forwarded);
}

/// Sends 2,000 numbered datagrams through a 5 ms ± 2 ms link and returns
/// how many arrived after a higher-numbered one, and the relay's counters.
fn inversions(reorder: f64) -> (usize, DirectionStats) {
    let server = Server::start(false);
    let relay = Relay::start(
        LinkConfig {
            forward: LinkDirection {
                delay: ms(5),
                jitter: ms(2),
                reorder,
                reorder_delay: ms(3),
                ..LinkDirection::default()
            },
            ..LinkConfig::default()
        },
        server.addr,
    )
    .unwrap();
    let client = socket();
    send_numbered(&client, relay.local_addr(), 2000, 64, 10);
    let s = settle(&relay, |s| s.forwarded >= 2000);
    drop(relay);
    let got = server.finish();
    assert_eq!(got.len(), 2000);
    let mut highest = 0u32;
    let mut late = 0;
    for (_, payload, _) in &got {
        let i = u32::from_be_bytes(payload[..4].try_into().unwrap());
        if i < highest {
            late += 1;
        }
        highest = highest.max(i);
    }
    (late, s)
}

#[test]
fn jitter_alone_never_reorders() {
    let (late, s) = inversions(0.0);
    assert_eq!((late, s.reordered), (0, 0), "{s}");
}

#[test]
fn reordering_happens_when_asked() {
    let (late, s) = inversions(0.05);
    // 100 expected to be held back; each is overtaken by the ~30 sent in
    // the 3 ms after it.
    assert!((50..=150).contains(&s.reordered), "{s}");
    assert!(late >= s.reordered as usize / 2, "{late} late, {s}");
}

#[test]
fn each_client_gets_its_own_upstream_address_and_its_replies() {
    let server = Server::start(true);
    let relay = Relay::start(LinkConfig::default(), server.addr).unwrap();
    let clients = [socket(), socket()];
    let mut buf = [0u8; 16];
    for round in 0..3u8 {
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8, round], relay.local_addr()).unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let (n, from) = c.recv_from(&mut buf).expect("reply");
            assert_eq!(
                (&buf[..n], from),
                (&[i as u8, round][..], relay.local_addr())
            );
        }
    }
    assert_eq!(relay.stats().clients, 2);
    drop(relay);
    let got = server.finish();
    let mut sources: Vec<SocketAddr> = got.iter().map(|g| g.2).collect();
    sources.sort();
    sources.dedup();
    assert_eq!(sources.len(), 2);
}

#[test]
fn client_limit_is_enforced() {
    let server = Server::start(false);
    let relay = Relay::start(
        LinkConfig {
            max_clients: 1,
            ..LinkConfig::default()
        },
        server.addr,
    )
    .unwrap();
    let (a, b) = (socket(), socket());
    a.send_to(b"a", relay.local_addr()).unwrap();
    std::thread::sleep(ms(20));
    b.send_to(b"b", relay.local_addr()).unwrap();
    let end = Instant::now() + Duration::from_secs(2);
    while relay.stats().refused_clients == 0 && Instant::now() < end {
        std::thread::sleep(ms(5));
    }
    let s = relay.stats();
    assert_eq!((s.clients, s.refused_clients), (1, 1));
}

#[test]
fn invalid_configuration_is_refused() {
    let server = socket();
    for bad in [
        LinkConfig::symmetric(LinkDirection {
            loss: 1.5,
            ..LinkDirection::default()
        }),
        LinkConfig::symmetric(LinkDirection {
            duplicate: f64::NAN,
            ..LinkDirection::default()
        }),
        LinkConfig::symmetric(LinkDirection {
            rate: Some(0),
            ..LinkDirection::default()
        }),
        LinkConfig {
            max_clients: 0,
            ..LinkConfig::default()
        },
    ] {
        let e = Relay::start(bad, server.local_addr().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.get_ref().unwrap().downcast_ref::<ConfigError>().is_some());
    }
}

#[test]
fn dropping_the_relay_stops_it_quickly() {
    let server = Server::start(true);
    let relay = Relay::start(
        LinkConfig::symmetric(LinkDirection {
            delay: ms(500),
            ..LinkDirection::default()
        }),
        server.addr,
    )
    .unwrap();
    let client = socket();
    client.send_to(b"x", relay.local_addr()).unwrap();
    std::thread::sleep(ms(10));
    let t = Instant::now();
    drop(relay);
    assert!(t.elapsed() < ms(200), "{:?}", t.elapsed());
    drop(server.finish());
}
