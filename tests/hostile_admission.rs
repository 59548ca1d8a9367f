//! Hostile input at a running node's handshake admission, over real
//! loopback sockets: address validation by stateless cookies, the
//! pending-handshake limit, and handshake floods from addresses that never
//! answer (sockets on loopback, and forged sources from a raw socket in a
//! network namespace of the test's own).
//!
//! The default run uses volumes that fit CI's time; `STT_SOAK=1` raises the
//! flood to 200,000 message 1s (run with `--release`:
//! `STT_SOAK=1 cargo test --release --test 'hostile_*' -- --nocapture`).
//!
//! Every test binds port 0 and runs in parallel with the others; the flood
//! test that measures resident memory runs in a process of its own.

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stt::crypto::{Identity, NetworkKey};
use stt::frame::SessionId;
use stt::session::{Session, SessionConfig};
use stt::{Node, NodeConfig};

mod netns;
mod support;
use netns::Netns;
use support::hostile::{
    config, connected, deliver_until_seen, flood_burst, flood_volume, genuine_msg1s, isolated,
    next_message, rss, spoofed_packet, wait_for, StopOnDrop, SHARED, WAIT,
};

// ------------------------------------------- cookies and handshake floods ----

#[test]
fn every_peer_proves_its_address_when_cookies_are_always_on() {
    let (server, client, session) = connected(
        NodeConfig {
            cookie_threshold: 0,
            ..config("cookie-always-server")
        },
        config("cookie-always-client"),
    );
    client.send(session.id(), b"after the cookie").unwrap();
    assert_eq!(next_message(&server), b"after the cookie");
    let s = wait_for(&server, "the handshake to complete", |s| {
        s.handshakes_pending == 0 && s.sessions == 1
    });
    // One, or more if message 1 was sent again before the challenge landed.
    assert!(s.cookie_challenges >= 1, "{s:#?}");
    assert_eq!(s.handshakes_refused, 0, "{s:#?}");
    let first = s.cookie_challenges;
    // A second client, too.
    let other = Node::start(config("cookie-always-other")).unwrap();
    let second = other.connect_udp(server.udp_local_addr().unwrap()).unwrap();
    other.send(second.id(), b"me too").unwrap();
    assert_eq!(next_message(&server), b"me too");
    assert!(server.stats().cookie_challenges > first);
}

/// Sockets that send message 1s and never answer a challenge: what a flood
/// from spoofed addresses looks like to the server (they cannot receive).
/// Counts what they sent and what came back to them.
struct Flood {
    stop: Arc<AtomicBool>,
    reading: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    sent_bytes: Arc<AtomicU64>,
    back_bytes: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(target: SocketAddr, msg1s: Vec<Vec<u8>>, sockets: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let reading = Arc::new(AtomicBool::new(true));
        let sent = Arc::new(AtomicU64::new(0));
        let sent_bytes = Arc::new(AtomicU64::new(0));
        let back_bytes = Arc::new(AtomicU64::new(0));
        let socks: Vec<Arc<UdpSocket>> = (0..sockets)
            .map(|_| Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap()))
            .collect();
        let mut threads = Vec::new();
        {
            let (stop, sent, sent_bytes, socks) = (
                stop.clone(),
                sent.clone(),
                sent_bytes.clone(),
                socks.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let m = &msg1s[i % msg1s.len()];
                    if socks[i % socks.len()].send_to(m, target).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                        sent_bytes.fetch_add(m.len() as u64, Ordering::Relaxed);
                    }
                    i += 1;
                    if i % flood_burst() == 0 {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
            }));
        }
        {
            let (reading, back_bytes) = (reading.clone(), back_bytes.clone());
            for s in &socks {
                s.set_nonblocking(true).unwrap();
            }
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while reading.load(Ordering::Relaxed) {
                    for s in &socks {
                        while let Ok(n) = s.recv(&mut buf) {
                            back_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        Flood {
            stop,
            reading,
            sent,
            sent_bytes,
            back_bytes,
            threads,
        }
    }

    /// Stops sending, lets the answers in flight land, stops reading;
    /// returns (datagrams sent, bytes sent, bytes back).
    fn stop(mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let sender = self.threads.remove(0);
        sender.join().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        self.reading.store(false, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            t.join().unwrap();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.sent_bytes.load(Ordering::Relaxed),
            self.back_bytes.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Flood {
    /// A test that panics mid-flood must not leave its flooders running.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.reading.store(false, Ordering::Relaxed);
    }
}

#[test]
fn a_handshake_flood_from_addresses_that_never_answer_leaves_honest_clients_connecting() {
    if isolated(
        "a_handshake_flood_from_addresses_that_never_answer_leaves_honest_clients_connecting",
    ) {
        return;
    }
    const THRESHOLD: usize = 16;
    const MAX_PENDING: usize = 64;
    let server = Node::start(NodeConfig {
        cookie_threshold: THRESHOLD,
        max_pending_handshakes: MAX_PENDING,
        session: SessionConfig {
            handshake_timeout: Duration::from_secs(1),
            ..SessionConfig::default()
        },
        ..config("flood-server")
    })
    .unwrap();
    let addr = server.udp_local_addr().unwrap();
    let msg1s = genuine_msg1s(2_000);
    // The honest nodes exist before the measurement: a node's own channels
    // take a few MiB.
    let honest: Vec<Node> = (0..5)
        .map(|i| Node::start(config(&format!("flood-honest-{i}"))).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let rss_before = rss();
    let flood = Flood::start(addr, msg1s, 64);
    // The table fills to the cookie threshold, then every message 1 gets a
    // challenge that nobody answers.
    wait_for(&server, "the flood to reach the cookie threshold", |s| {
        s.cookie_challenges > flood_volume()
    });
    let mut most_pending = 0;
    for client in &honest {
        let session = client.connect_udp(addr).unwrap();
        deliver_until_seen(client, &server, session.id(), b"honest");
        most_pending = most_pending.max(server.stats().handshakes_pending);
    }
    let (sent, sent_bytes, back_bytes) = flood.stop();
    let s = server.stats();
    let rss_after = rss();
    eprintln!(
        "flood: {sent} message 1s ({sent_bytes} bytes), {back_bytes} bytes back; \
         pending at most {most_pending}; RSS {} KiB before, {} KiB after; {s:#?}",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after < rss_before + (32 << 20),
        "memory grew from {rss_before} to {rss_after}"
    );
    assert!(most_pending <= THRESHOLD + 5, "{most_pending} pending");
    assert!(
        back_bytes <= sent_bytes,
        "amplification: {back_bytes} bytes back for {sent_bytes}"
    );
    // Challenges are a third of a message 1.
    assert!(back_bytes * 2 < sent_bytes, "{back_bytes} of {sent_bytes}");
    // The flood's half-open handshakes time out; the honest sessions stay.
    let s = wait_for(&server, "the flood's handshakes to time out", |s| {
        s.handshakes_pending == 0
    });
    assert_eq!(s.sessions, 5, "{s:#?}");
}

/// A server with these cookie and pending-handshake limits, whose pending
/// handshakes outlive the test (30 s).
fn pending_limited(seed: &str, cookie_threshold: usize, max_pending: usize) -> Node {
    Node::start(NodeConfig {
        cookie_threshold,
        max_pending_handshakes: max_pending,
        session: SessionConfig {
            handshake_timeout: Duration::from_secs(30),
            ..SessionConfig::default()
        },
        ..config(seed)
    })
    .unwrap()
}

#[test]
fn the_pending_handshake_limit_holds_even_for_validated_addresses() {
    // Cookies off (threshold above the limit): only the limit protects.
    const MAX_PENDING: usize = 8;
    let server = pending_limited("pending-limit-server", 1_000, MAX_PENDING);
    let addr = server.udp_local_addr().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg1s = genuine_msg1s(50);
    for m in &msg1s {
        sock.send_to(m, addr).unwrap();
    }
    let s = wait_for(&server, "the limit to refuse", |s| {
        s.handshakes_refused == (50 - MAX_PENDING) as u64
    });
    assert_eq!(s.handshakes_pending, MAX_PENDING, "{s:#?}");
    assert_eq!(s.sessions, MAX_PENDING, "{s:#?}");
    // Exactly one message 2 per accepted message 1 came back.
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut answers = 0;
    while sock.recv(&mut buf).is_ok() {
        answers += 1;
    }
    assert_eq!(answers, MAX_PENDING);
}

// ------------------------------------------- spoofed sources (namespace) ----

#[test]
fn a_flood_from_spoofed_source_addresses_leaves_honest_clients_connecting() {
    const THRESHOLD: usize = 16;
    let ns = match Netns::create("spoof", None) {
        Ok(ns) => ns,
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPING the spoofed-source flood: this machine cannot make a network namespace ({why})"
            );
            return;
        }
    };
    // The server, a raw socket and the honest clients, all in the namespace,
    // whose only interface is its loopback: answers to the forged sources
    // have nowhere to go.
    let (server, raw, honest) = ns.enter(|| {
        let server = Node::start(NodeConfig {
            cookie_threshold: THRESHOLD,
            max_pending_handshakes: 64,
            session: SessionConfig {
                handshake_timeout: Duration::from_secs(1),
                ..SessionConfig::default()
            },
            ..config("spoof-server")
        })
        .unwrap();
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        );
        let honest: Vec<Node> = (0..5)
            .map(|i| Node::start(config(&format!("spoof-honest-{i}"))).unwrap())
            .collect();
        (server, raw, honest)
    });
    let raw = match raw {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPING the spoofed-source flood: no raw socket here ({e})"
            );
            return;
        }
    };
    let std::net::SocketAddr::V4(target) = server.udp_local_addr().unwrap() else {
        unreachable!("the server binds 127.0.0.1")
    };
    let msg1s = genuine_msg1s(2_000);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_panic = StopOnDrop(stop.clone());
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            let mut x: u32 = 0x0a00_0001;
            while !stop.load(Ordering::Relaxed) {
                // A different forged source every time, all over 10.0.0.0/8.
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let src = std::net::SocketAddrV4::new(
                    std::net::Ipv4Addr::from(0x0a00_0000 | (x >> 8)),
                    1024 + (x & 0x7fff) as u16,
                );
                let m = &msg1s[sent as usize % msg1s.len()];
                let packet = spoofed_packet(src, target, m);
                if raw
                    .send_to(&packet, &std::net::SocketAddr::V4(target).into())
                    .is_ok()
                {
                    sent += 1;
                }
                if sent % flood_burst() as u64 == 0 {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            sent
        })
    };
    wait_for(
        &server,
        "the spoofed flood to reach the cookie threshold",
        |s| s.cookie_challenges > flood_volume(),
    );
    let mut most_pending = 0;
    for c in &honest {
        let session = c.connect_udp(server.udp_local_addr().unwrap()).unwrap();
        deliver_until_seen(c, &server, session.id(), b"honest");
        most_pending = most_pending.max(server.stats().handshakes_pending);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    let s = server.stats();
    eprintln!("spoofed flood: {sent} message 1s from forged 10/8 sources; pending at most {most_pending}; {s:#?}");
    assert!(most_pending <= THRESHOLD + 5, "{most_pending} pending");
    let s = wait_for(&server, "the forged handshakes to time out", |s| {
        s.handshakes_pending == 0
    });
    assert_eq!(s.sessions, honest.len(), "{s:#?}");
}

// ----------------------------------------------------- cookies, in detail ----

#[test]
fn non_members_get_silence_even_when_cookies_are_on() {
    let server = Node::start(NodeConfig {
        cookie_threshold: 0,
        ..config("cookie-silence-server")
    })
    .unwrap();
    let addr = server.udp_local_addr().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // A genuine message 1 of another network.
    let outsider = {
        let identity = Identity::from_seed(&[3u8; 32]).unwrap();
        let network = NetworkKey::from_seed(b"another network's shared seed, 32+ bytes").unwrap();
        let mut s = Session::connect(
            SessionConfig::default(),
            &identity,
            &network,
            SessionId(0xabcd_0011),
            Instant::now(),
        )
        .unwrap();
        s.poll_transmit().unwrap()
    };
    // A message 1 of this network with one bit changed, and a cut one.
    let mut bent = genuine_msg1s(1).remove(0);
    let cut = bent[..bent.len() - 1].to_vec();
    bent[60] ^= 4;
    let before = server.udp_stats().unwrap().packets_dropped;
    for d in [&outsider, &bent, &cut] {
        sock.send_to(d, addr).unwrap();
        let mut buf = [0u8; 2048];
        assert!(sock.recv(&mut buf).is_err(), "a non-member got an answer");
    }
    let s = server.stats();
    assert_eq!(s.cookie_challenges, 0, "{s:#?}");
    assert_eq!(s.udp.unwrap().packets_dropped - before, 3);
    // A member gets its challenge.
    sock.send_to(&genuine_msg1s(1)[0], addr).unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).expect("a challenge for a member");
    assert_eq!(n, stt::crypto::cookie::CHALLENGE_LEN);
}

#[test]
fn a_stale_cookie_gets_a_fresh_challenge_and_the_handshake_completes() {
    let server = Node::start(NodeConfig {
        cookie_threshold: 0,
        ..config("cookie-stale-server")
    })
    .unwrap();
    let addr = server.udp_local_addr().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let identity = Identity::from_seed(&[4u8; 32]).unwrap();
    let network = NetworkKey::from_seed(SHARED).unwrap();
    let id = SessionId(0x0123_4567_89ab_cd11);
    let mut client = Session::connect(
        SessionConfig::default(),
        &identity,
        &network,
        id,
        Instant::now(),
    )
    .unwrap();
    let msg1 = client.poll_transmit().unwrap();
    let mut buf = [0u8; 2048];
    // An echo whose cookie the server never made (as after a NAT rebinding,
    // or once it expired): refused, and answered with a fresh challenge.
    let stale = stt::crypto::cookie::echo(id, &[0x55; 16], &msg1);
    sock.send_to(&stale, addr).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(n, stt::crypto::cookie::CHALLENGE_LEN);
    assert_eq!(server.stats().handshakes_refused, 1);
    // The client takes the challenge and echoes it; the handshake goes on.
    let mut challenge = buf[..n].to_vec();
    assert!(!client
        .handle_datagram(Instant::now(), &mut challenge)
        .unwrap());
    let echo = client.poll_transmit().expect("the echo, at once");
    assert_eq!(echo.len(), stt::crypto::cookie::ECHO_OVERHEAD + msg1.len());
    sock.send_to(&echo, addr).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    let mut msg2 = buf[..n].to_vec();
    assert!(client.handle_datagram(Instant::now(), &mut msg2).unwrap());
    assert!(client.is_established());
    while let Some(d) = client.poll_transmit() {
        sock.send_to(&d, addr).unwrap();
    }
    wait_for(&server, "the server's side to complete", |s| {
        s.sessions == 1 && s.handshakes_pending == 0
    });
}

#[test]
fn the_pending_limit_also_refuses_valid_cookie_echoes() {
    const MAX_PENDING: usize = 4;
    let server = pending_limited("cookie-limit-server", 0, MAX_PENDING);
    let addr = server.udp_local_addr().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let identity = Identity::from_seed(&[5u8; 32]).unwrap();
    let network = NetworkKey::from_seed(SHARED).unwrap();
    let mut buf = [0u8; 2048];
    let mut echoes = Vec::new();
    for i in 0..10u64 {
        let id = SessionId(0x00c0_0c1e_0000_0011 | i << 8);
        let mut s = Session::connect(
            SessionConfig::default(),
            &identity,
            &network,
            id,
            Instant::now(),
        )
        .unwrap();
        sock.send_to(&s.poll_transmit().unwrap(), addr).unwrap();
        let n = sock.recv(&mut buf).expect("a challenge");
        assert_eq!(n, stt::crypto::cookie::CHALLENGE_LEN);
        s.handle_datagram(Instant::now(), &mut buf[..n]).unwrap();
        echoes.push(s.poll_transmit().expect("the echo"));
    }
    for e in &echoes {
        sock.send_to(e, addr).unwrap();
    }
    let mut answers = 0;
    while sock.recv(&mut buf).is_ok() {
        answers += 1;
    }
    let s = server.stats();
    assert_eq!(answers, MAX_PENDING, "{s:#?}");
    assert_eq!(s.handshakes_pending, MAX_PENDING);
    assert_eq!(s.handshakes_refused, (10 - MAX_PENDING) as u64);
}
