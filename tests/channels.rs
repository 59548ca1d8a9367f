//! Channels over real loopback UDP (both backends): reliable-ordered
//! messages all arrive once and in order, large ones too; unreliable
//! messages sent as fast as the API allows mostly arrive, and every loss
//! is counted; the statistics report the path.
//!
//! Every test binds port 0 and runs in parallel with the others.

use std::time::{Duration, Instant};

use stt::channel::{RELIABLE_ORDERED, UNRELIABLE};
use stt::node::{Node, NodeConfig, NodeEvent};
use stt::transport::udp::{UdpBackend, UdpConfig};

const SHARED: &[u8] = b"channels test network shared seed, 32+";
const WAIT: Duration = Duration::from_secs(30);

fn node(seed: &str, backend: UdpBackend) -> Node {
    let udp = UdpConfig {
        bind_address: "127.0.0.1".parse().unwrap(),
        backend,
        ..UdpConfig::default()
    };
    let config = NodeConfig::new(format!("{seed:-<40}").as_bytes(), SHARED)
        .with_udp(udp)
        .with_reactors(1);
    Node::start(config).unwrap()
}

fn backends() -> Vec<UdpBackend> {
    vec![UdpBackend::Mio, UdpBackend::IoUring]
}

/// Payloads of the next `n` messages on `channel`, in arrival order.
fn receive(node: &Node, channel: u32, n: usize, wait: Duration) -> Vec<Vec<u8>> {
    let events = node.events();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    while got.len() < n {
        match events.recv_deadline(deadline) {
            Ok(NodeEvent::Message(m)) if m.stream_id == channel => got.push(m.payload),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

#[test]
fn reliable_ordered_messages_arrive_once_and_in_order() {
    for backend in backends() {
        let server = node("reliable-server", backend);
        let client = node("reliable-client", backend);
        let session = client
            .connect_udp(server.udp_local_addr().unwrap())
            .unwrap();
        const N: u32 = 20_000;
        let sender = std::thread::spawn(move || {
            for i in 0..N {
                let mut m = vec![0u8; 1000];
                m[..4].copy_from_slice(&i.to_be_bytes());
                session.send_channel(RELIABLE_ORDERED, &m).unwrap();
            }
            // A large one last: fragmented, retransmitted part by part.
            session
                .send_channel(RELIABLE_ORDERED, &vec![7u8; 3 << 20])
                .unwrap();
            session
        });
        let got = receive(&server, u32::from(RELIABLE_ORDERED), N as usize + 1, WAIT);
        let session = sender.join().unwrap();
        assert_eq!(got.len(), N as usize + 1, "{backend:?}");
        for (i, m) in got[..N as usize].iter().enumerate() {
            assert_eq!(
                m[..4],
                (i as u32).to_be_bytes(),
                "{backend:?}: out of order"
            );
        }
        assert_eq!(got[N as usize], vec![7u8; 3 << 20]);
        let stats = session.channel_stats().unwrap();
        assert!(stats.rtt > Duration::ZERO && stats.rtt < Duration::from_millis(100));
        assert!(stats.packets_sent > 0 && stats.congestion_window > 0);
        assert_eq!(stats.congestion_controller, "cubic");
    }
}

#[test]
fn unreliable_messages_at_full_speed_are_paced_not_dropped() {
    for backend in backends() {
        let server = node("unreliable-server", backend);
        let client = node("unreliable-client", backend);
        let session = client
            .connect_udp(server.udp_local_addr().unwrap())
            .unwrap();
        const N: usize = 50_000;
        let sender = std::thread::spawn(move || {
            for _ in 0..N {
                session.send_channel(UNRELIABLE, &[1u8; 1200]).unwrap();
            }
            session
        });
        let got = receive(&server, u32::from(UNRELIABLE), N, Duration::from_secs(10));
        let session = sender.join().unwrap();
        let stats = session.channel_stats().unwrap();
        let delivered = got.len() as f64 / N as f64;
        println!("{stats:?}\n{:?}", client.session_stats(session.id()));
        let dropped_by_server = server.stats().udp.map_or(0, |u| u.packets_dropped);
        println!(
            "{backend:?}: {} of {N} delivered ({:.2}%), {} counted lost by the sender, {} dropped by the server, loss rate {:.3}%",
            got.len(),
            delivered * 100.0,
            stats.unreliable_lost,
            dropped_by_server,
            stats.loss_rate * 100.0
        );
        assert!(
            delivered >= 0.95,
            "{backend:?}: {:.2}% delivered",
            delivered * 100.0
        );
        // Nothing vanishes uncounted: what did not arrive was declared lost
        // by the sender or dropped (and counted) by the receiver.
        let missing = (N - got.len()) as u64;
        assert!(
            stats.unreliable_lost + dropped_by_server >= missing,
            "{missing} missing, {} + {dropped_by_server} counted",
            stats.unreliable_lost
        );
    }
}

/// A session moved from UDP to WebSocket and back in the middle of a
/// reliable stream: every message arrives exactly once and in order
/// (what was unacknowledged is sent again on the new path; copies that
/// both paths deliver are dropped).
#[test]
fn failover_keeps_the_reliable_channels_promises() {
    let server = node("failover-server", UdpBackend::Mio);
    let ws = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let udp_addr = server.udp_local_addr().unwrap();
    let client = node("failover-client", UdpBackend::Mio);
    let session = client.connect_udp(udp_addr).unwrap();
    const N: u32 = 30_000;
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            let mut m = vec![0u8; 600];
            m[..4].copy_from_slice(&i.to_be_bytes());
            session.send_channel(RELIABLE_ORDERED, &m).unwrap();
            if i == N / 3 {
                session.move_to_websocket(&format!("ws://{ws}/")).unwrap();
            }
            if i == 2 * N / 3 {
                session.move_to_udp(udp_addr).unwrap();
            }
        }
        session
    });
    let got = receive(&server, u32::from(RELIABLE_ORDERED), N as usize, WAIT);
    let session = sender.join().unwrap();
    assert_eq!(got.len(), N as usize);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m[..4], (i as u32).to_be_bytes(), "message {i}");
    }
    // Nothing more (a duplicate) arrives afterwards.
    let extra = receive(
        &server,
        u32::from(RELIABLE_ORDERED),
        1,
        Duration::from_millis(300),
    );
    assert!(extra.is_empty(), "a duplicate arrived");
    let stats = session.channel_stats().unwrap();
    println!("after two moves: {stats:?}");
}

/// A receiving application that does not read: its node holds what it
/// can, the sender's window and send buffer fill, and `send_channel_with`
/// (Refuse) says so; nothing reliable is dropped, and once the application
/// reads, everything arrives in order.
#[test]
fn a_slow_application_slows_the_sender_and_loses_nothing() {
    let server_config = {
        let udp = UdpConfig {
            bind_address: "127.0.0.1".parse().unwrap(),
            ..UdpConfig::default()
        };
        let mut c = NodeConfig::new(format!("{:-<40}", "slow-app-server").as_bytes(), SHARED)
            .with_udp(udp)
            .with_reactors(1);
        // Little room at the hand-off, so the window fills quickly.
        c.queue_bytes = 1 << 20;
        c
    };
    let server = Node::start(server_config).unwrap();
    let client = node("slow-app-client", UdpBackend::Mio);
    let session = client
        .connect_udp(server.udp_local_addr().unwrap())
        .unwrap();
    let events = server.events();
    let mut sent = 0u32;
    let mut refused = false;
    let mut blocked_since: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut m = vec![0u8; 16 << 10];
        m[..4].copy_from_slice(&sent.to_be_bytes());
        let r = session.send_channel_with(
            RELIABLE_ORDERED,
            stt::FrameType::Data,
            &m,
            stt::SendPolicy::Refuse,
        );
        match r {
            Ok(()) => {
                sent += 1;
                blocked_since = None;
            }
            // Full for a moment (the network is slower than this loop) or
            // for good (the receiver stopped taking): a second decides.
            Err(stt::SendError::QueueFull) => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    refused = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        refused,
        "the sender never felt the slow receiver ({sent} sent)"
    );
    // Past the credit granted at first (17 MiB), the receiver's flow
    // control held the sender back.
    let bytes = sent as usize * (16 << 10);
    assert!(
        bytes > 17 << 20,
        "{sent} messages before the sender stopped"
    );
    assert!(
        bytes < 64 << 20,
        "{sent} messages: nothing held the sender back"
    );
    // Now the application reads.
    let mut got = 0u32;
    let end = Instant::now() + WAIT;
    while got < sent {
        match events.recv_deadline(end) {
            Ok(NodeEvent::Message(m)) => {
                assert_eq!(m.payload[..4], got.to_be_bytes(), "out of order");
                got += 1;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(got, sent);
    let dropped = server.stats().udp.map_or(0, |u| u.packets_dropped);
    assert_eq!(dropped, 0, "reliable messages dropped at the hand-off");
}
