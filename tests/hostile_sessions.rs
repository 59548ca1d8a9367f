//! Hostile input at a running node's established sessions, over real
//! loopback sockets: garbage and replay floods, a copied datagram raced from
//! another address, and the resource limits of `NodeConfig`.
//!
//! The default run uses volumes that fit CI's time; `STT_SOAK=1` raises the
//! floods to the full 1,000,000 garbage datagrams and 100,000 replays (run
//! with `--release`: `STT_SOAK=1 cargo test --release --test 'hostile_*' -- --nocapture`).
//!
//! Every test binds port 0 and runs in parallel with the others; the flood
//! test that measures resident memory runs in a process of its own.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stt::session::SessionConfig;
use stt::{ConnectError, Node, NodeConfig, NodeEvent, SendError};

mod support;
use support::hostile::{
    config, connected, isolated, next_message, rss, soak, wait_for, StopOnDrop,
};

// ---------------------------------------------- garbage and replay floods ----

/// A UDP relay between one client and a server that records what the client
/// sends while `recording` is set: captured datagrams to replay.
struct Recorder {
    socket: Arc<UdpSocket>,
    recording: Arc<AtomicBool>,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    fn start(server: SocketAddr) -> Recorder {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let recording = Arc::new(AtomicBool::new(false));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, recording, captured, stop) = (
                socket.clone(),
                recording.clone(),
                captured.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut client = None;
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if from == server {
                        if let Some(c) = client {
                            let _ = socket.send_to(&buf[..n], c);
                        }
                    } else {
                        client = Some(from);
                        if recording.load(Ordering::Relaxed) {
                            captured.lock().unwrap().push(buf[..n].to_vec());
                        }
                        let _ = socket.send_to(&buf[..n], server);
                    }
                }
            })
        };
        Recorder {
            socket,
            recording,
            captured,
            stop,
            thread: Some(thread),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Stops recording; returns what was captured.
    fn captured(&self) -> Vec<Vec<u8>> {
        self.recording.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.captured.lock().unwrap())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `datagrams` to `to` from `from`, paced so that the server's socket
/// buffer never overflows (a datagram the kernel drops would reach no
/// counter): every `chunk`, waits until the server has read what was sent.
fn paced_send(
    server: &Node,
    from: &UdpSocket,
    to: SocketAddr,
    datagrams: impl Iterator<Item = Vec<u8>>,
) -> u64 {
    let start = server.udp_stats().unwrap().packets_received;
    let mut sent = 0u64;
    for d in datagrams {
        from.send_to(&d, to).unwrap();
        sent += 1;
        if sent % 2_000 == 0 {
            wait_for(server, "the server to read the flood", |s| {
                s.udp.as_ref().unwrap().packets_received - start + 500 >= sent
            });
        }
    }
    wait_for(server, "the server to read the flood", |s| {
        s.udp.as_ref().unwrap().packets_received - start >= sent
    });
    sent
}

#[test]
fn garbage_and_replay_floods_keep_no_state_and_harm_no_session() {
    if isolated("garbage_and_replay_floods_keep_no_state_and_harm_no_session") {
        return;
    }
    let (garbage_n, replay_n) = if soak() {
        (1_000_000u64, 100_000u64)
    } else {
        (100_000, 10_000)
    };
    let server = Node::start(config("garbage-flood-server")).unwrap();
    let client = Node::start(config("garbage-flood-client")).unwrap();
    let addr = server.udp_local_addr().unwrap();
    let relay = Recorder::start(addr);
    let session = client.connect_udp(relay.addr()).unwrap();
    // Capture a stretch of genuine traffic: messages, fragments, pings.
    relay.recording.store(true, Ordering::Relaxed);
    for i in 0..200u32 {
        let size = if i % 50 == 0 { 4_000 } else { 100 };
        client.send(session.id(), &vec![i as u8; size]).unwrap();
    }
    for _ in 0..200 {
        next_message(&server);
    }
    let captured = relay.captured();
    let relay_socket = relay.socket.clone();
    assert!(captured.len() >= 20, "captured {}", captured.len());

    // Let the allocator settle on what an idle pair of nodes uses.
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = rss();
    let before = server.stats();
    let dropped_before = before.udp.as_ref().unwrap().packets_dropped;

    // Garbage: random bytes, a third dressed as frames of the live session
    // (they reach the AEAD and fail it), a third as handshake message 1s.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x1234_5678;
    let id = session.id().0.to_be_bytes();
    let garbage = (0..garbage_n).map(|i| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 1 + (x % 1400) as usize;
        let mut d: Vec<u8> = (0..len)
            .map(|j| (x >> (j % 8 * 8)) as u8 ^ j as u8)
            .collect();
        if len > 29 && i % 3 != 0 {
            d[..3].copy_from_slice(b"ST\x01");
            d[3] = if i % 3 == 1 { 1 } else { 5 };
            d[4] = 0;
            if i % 3 == 1 {
                d[5..13].copy_from_slice(&id);
            } else {
                d[21..29 - 4].copy_from_slice(&1u64.to_be_bytes()[4..]);
            }
            d[25..29].copy_from_slice(&((len - 29) as u32).to_be_bytes());
        }
        d
    });
    let mut sent = paced_send(&server, &junk, addr, garbage);
    // Replays: the captured datagrams again, from the session's own address
    // (the relay) and from a stranger's.
    let replays = (0..replay_n).map(|i| captured[i as usize % captured.len()].clone());
    let half = replays.clone().take(replay_n as usize / 2);
    sent += paced_send(&server, &relay_socket, addr, half);
    sent += paced_send(&server, &junk, addr, replays.skip(replay_n as usize / 2));

    let after = server.stats();
    let rss_after = rss();
    let dropped = after.udp.as_ref().unwrap().packets_dropped - dropped_before;
    eprintln!(
        "{garbage_n} garbage + {replay_n} replayed datagrams: {dropped} dropped; \
         RSS {} KiB before, {} KiB after",
        rss_before / 1024,
        rss_after / 1024
    );
    assert_eq!(dropped, sent, "every datagram is counted as dropped");
    assert_eq!(after.sessions, 1, "no new state: {after:#?}");
    assert_eq!(after.handshakes_pending, 0);
    assert_eq!(after.reassembly_bytes, 0);
    assert!(
        rss_after < rss_before + (32 << 20),
        "memory grew from {rss_before} to {rss_after}"
    );
    // The honest session carries on, both ways.
    for i in 0..100u32 {
        client.send(session.id(), &i.to_be_bytes()).unwrap();
    }
    for i in 0..100u32 {
        assert_eq!(next_message(&server), i.to_be_bytes());
    }
    server.send(session.id(), b"and back").unwrap();
    assert_eq!(next_message(&client), b"and back");
    assert_eq!(server.stats().sessions, 1);
}

// ------------------------------------------------------- path validation ----

#[test]
fn a_copied_datagram_from_another_address_does_not_move_the_session() {
    let server = Node::start(config("path-server")).unwrap();
    let client = Node::start(config("path-client")).unwrap();
    let server_addr = server.udp_local_addr().unwrap();
    // An on-path attacker: it relays the client's traffic, and sends a copy
    // of every client datagram first from another address — its own, or
    // one it wants to flood. The copy is genuine, so it authenticates.
    let relay = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    let other = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    relay
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    other.set_nonblocking(true).unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_panic = StopOnDrop(stop.clone());
    let copying = Arc::new(AtomicBool::new(false));
    let thread = {
        let (relay, other, stop, copying) =
            (relay.clone(), other.clone(), stop.clone(), copying.clone());
        std::thread::spawn(move || {
            let (mut copies_out, mut bytes_out, mut bytes_in) = (0u64, 0u64, 0u64);
            let mut client = None;
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                while let Ok(n) = other.recv(&mut buf) {
                    bytes_in += n as u64;
                }
                let Ok((n, from)) = relay.recv_from(&mut buf) else {
                    continue;
                };
                if from == server_addr {
                    if let Some(c) = client {
                        let _ = relay.send_to(&buf[..n], c);
                    }
                    continue;
                }
                client = Some(from);
                if copying.load(Ordering::Relaxed) {
                    let _ = other.send_to(&buf[..n], server_addr);
                    copies_out += 1;
                    bytes_out += n as u64;
                    // Let the copy win the race.
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = relay.send_to(&buf[..n], server_addr);
            }
            (copies_out, bytes_out, bytes_in)
        })
    };
    let session = client.connect_udp(relay_addr).unwrap();
    client.send(session.id(), b"before").unwrap();
    assert_eq!(next_message(&server), b"before");
    copying.store(true, Ordering::Relaxed);
    for i in 0..50u32 {
        client.send(session.id(), &i.to_be_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let events = server.events();
    let mut got = 0;
    while let Ok(e) = events.recv_timeout(Duration::from_millis(500)) {
        if let NodeEvent::Message(m) = e {
            assert_eq!(m.peer_addr, relay_addr, "the session moved to the copier");
            got += 1;
        }
    }
    assert_eq!(got, 50, "the copies carry genuine messages");
    // The server still answers along the genuine path.
    for i in 0..10u32 {
        server.send(session.id(), &i.to_be_bytes()).unwrap();
    }
    for i in 0..10u32 {
        assert_eq!(next_message(&client), i.to_be_bytes());
    }
    stop.store(true, Ordering::Relaxed);
    let (copies, bytes_out, bytes_in) = thread.join().unwrap();
    eprintln!("{copies} copies ({bytes_out} bytes) from another address; {bytes_in} bytes came back there");
    assert!(copies >= 50);
    // Only path probes (small pings, at most one per initial_rto) went to
    // the unvalidated address: far less than it sent.
    assert!(
        bytes_in * 3 <= bytes_out,
        "{bytes_in} bytes back for {bytes_out}"
    );
}

// ------------------------------------------------------- resource limits ----

#[test]
fn max_sessions_is_a_hard_limit_on_both_sides() {
    let server = Node::start(NodeConfig {
        max_sessions: 3,
        ..config("limit-sessions-server")
    })
    .unwrap();
    let addr = server.udp_local_addr().unwrap();
    let quick = SessionConfig {
        handshake_timeout: Duration::from_millis(600),
        ..SessionConfig::default()
    };
    let clients: Vec<Node> = (0..4)
        .map(|i| {
            Node::start(config(&format!("limit-sessions-client-{i}")).with_session(quick.clone()))
                .unwrap()
        })
        .collect();
    for c in &clients[..3] {
        c.connect_udp(addr).unwrap();
    }
    // The fourth gets no answer: the server keeps no state for it.
    let refused = clients[3].connect_udp(addr);
    assert!(
        matches!(refused, Err(ConnectError::Handshake { .. })),
        "{refused:?}"
    );
    assert_eq!(server.stats().sessions, 3);
    // A node's own dialling respects its limit, with a typed error.
    let small = Node::start(NodeConfig {
        max_sessions: 1,
        ..config("limit-sessions-dialler")
    })
    .unwrap();
    let other = Node::start(config("limit-sessions-other")).unwrap();
    small.connect_udp(other.udp_local_addr().unwrap()).unwrap();
    let err = small
        .connect_udp(other.udp_local_addr().unwrap())
        .unwrap_err();
    assert!(matches!(err, ConnectError::TooManySessions(1)), "{err:?}");
    assert!(err.to_string().contains("raise max_sessions"), "{err}");
}

#[test]
fn the_node_reassembly_budget_refuses_what_does_not_fit_and_keeps_serving() {
    let (server, client, session) = connected(
        NodeConfig {
            reassembly_budget: 256 << 10,
            ..config("limit-budget-server")
        },
        config("limit-budget-client"),
    );
    // Larger than the whole node's budget: never held, never delivered.
    client.send(session.id(), &vec![7u8; 1 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.stats().reassembly_bytes <= 256 << 10);
    // What fits still passes, whole.
    client.send(session.id(), &vec![8u8; 100 << 10]).unwrap();
    assert_eq!(next_message(&server), vec![8u8; 100 << 10]);
    let stats = server.session_stats(session.id()).unwrap();
    assert!(stats.frames_dropped > 0, "{stats:?}");
    assert_eq!(server.stats().reassembly_bytes, 0);
}

#[test]
fn a_full_receive_queue_drops_and_counts_udp_messages_then_recovers() {
    let (server, client, session) = connected(
        NodeConfig {
            queue_depth: 64,
            ..config("limit-queue-server")
        },
        config("limit-queue-client"),
    );
    let events = server.events();
    // Nobody reads the events meanwhile.
    let dropped_before = server.udp_stats().unwrap().packets_dropped;
    for i in 0..2_000u32 {
        client.send(session.id(), &i.to_be_bytes()).unwrap();
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let stats = wait_for(&server, "the overflow to be counted", |s| {
        s.udp.as_ref().unwrap().packets_dropped > dropped_before
    });
    assert!(events.len() <= 64, "{} queued", events.len());
    eprintln!("queue of 64: {} queued, {stats:#?}", events.len());
    // Drain; the next messages arrive.
    while events.try_recv().is_ok() {}
    std::thread::sleep(Duration::from_millis(100));
    while events.try_recv().is_ok() {}
    client.send(session.id(), b"after the overflow").unwrap();
    assert_eq!(next_message(&server), b"after the overflow");
}

#[test]
fn messages_over_the_size_limit_are_refused_with_a_typed_error() {
    let session = SessionConfig {
        reassembly: stt::stream::ReassemblyConfig {
            max_message_size: 64 << 10,
            ..Default::default()
        },
        ..SessionConfig::default()
    };
    let (server, client, s) = connected(
        config("limit-size-server").with_session(session.clone()),
        config("limit-size-client").with_session(session),
    );
    let err = client.send(s.id(), &vec![0u8; (64 << 10) + 1]).unwrap_err();
    assert!(
        matches!(err, SendError::TooLarge { len, max } if len == (64 << 10) + 1 && max == 64 << 10),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("exceeds max_message_size"),
        "{err}"
    );
    client.send(s.id(), &vec![1u8; 64 << 10]).unwrap();
    assert_eq!(next_message(&server), vec![1u8; 64 << 10]);
}
