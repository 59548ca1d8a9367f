//! Sessions across a bad network: 10% loss, duplication, reordering and
//! 50 ms ± 20 ms delay, both ways.
//!
//! Two ways to make the bad network:
//!
//! - an impairing UDP relay on loopback (always runs): every datagram between
//!   client and server crosses it and suffers the faults above, drawn from a
//!   seeded generator;
//! - a network namespace the test creates with `tc netem` on its loopback
//!   (`ip netns`, root, and the kernel's `sch_netem`). It also carries
//!   WebSocket (TCP) through the faults. A kernel without netem gets 10%
//!   random loss from an nftables rule instead (loss only; the test says so);
//!   where neither can be made, the test says SKIPPING and why, and checks
//!   nothing else. `.ci/run` installs nftables.
//!
//! What must hold: UDP sessions stay up (keepalives cross the loss), every
//! fragmented message either arrives whole and intact or is counted as
//! expired — never delivered corrupt or partial — and reassembly memory
//! returns to zero; WebSocket delivers everything, in order.

use std::collections::BinaryHeap;
use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stt::frame::SessionId;

mod netns;
mod support;
use netns::Netns;
use stt::node::{Node, NodeConfig, NodeEvent};
use stt::session::SessionConfig;
use stt::stream::ReassemblyConfig;
use stt::transport::udp::UdpConfig;
use stt::transport::ws::WsConfig;
use support::Rng;

const SHARED: &[u8] = b"lossy network test shared seed, 32+ bytes";

/// Faults on each datagram, each way.
const LOSS: f64 = 0.10;
const DUPLICATE: f64 = 0.05;
const DELAY: Duration = Duration::from_millis(50);
const JITTER_MS: u64 = 20;

/// A datagram on its way: (due, sequence, destination, bytes), ordered by
/// due time.
type InFlight = (Instant, u64, SocketAddr, Vec<u8>);

/// The impairing relay: the client talks to it as if it were the server.
struct BadNetwork {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64, u64)>>,
}

impl BadNetwork {
    fn start(server: SocketAddr, seed: u64) -> BadNetwork {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut queue: BinaryHeap<std::cmp::Reverse<InFlight>> = BinaryHeap::new();
            let mut seq = 0u64;
            let mut client: Option<SocketAddr> = None;
            let (mut passed, mut lost, mut doubled) = (0u64, 0u64, 0u64);
            let mut buf = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                while queue.peek().is_some_and(|e| e.0 .0 <= now) {
                    let std::cmp::Reverse((_, _, to, bytes)) =
                        queue.pop().expect("peeked an entry");
                    let _ = socket.send_to(&bytes, to);
                }
                let wait = queue
                    .peek()
                    .map_or(Duration::from_millis(5), |e| {
                        e.0 .0.saturating_duration_since(now)
                    })
                    .clamp(Duration::from_micros(200), Duration::from_millis(5));
                socket.set_read_timeout(Some(wait)).unwrap();
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let to = if from == server {
                    match client {
                        Some(c) => c,
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    server
                };
                if rng.unit() < LOSS {
                    lost += 1;
                    continue;
                }
                let copies = if rng.unit() < DUPLICATE {
                    doubled += 1;
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    // Uniform in 50 ± 20 ms: datagrams overtake each other.
                    let jitter = rng.below(2 * JITTER_MS + 1);
                    let due = Instant::now() + DELAY - Duration::from_millis(JITTER_MS)
                        + Duration::from_millis(jitter);
                    seq += 1;
                    queue.push(std::cmp::Reverse((due, seq, to, buf[..n].to_vec())));
                }
                passed += 1;
            }
            (passed, lost, doubled)
        });
        BadNetwork {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; returns (datagrams passed, lost, duplicated).
    fn finish(mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for BadNetwork {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn session_config() -> SessionConfig {
    SessionConfig {
        // Several keepalives must cross the loss within the idle timeout.
        keepalive_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(3),
        reassembly: ReassemblyConfig {
            timeout: Duration::from_millis(800),
            ..ReassemblyConfig::default()
        },
        ..SessionConfig::default()
    }
}

fn node(seed: &str, bind: &str) -> Node {
    node_with(seed, bind, true)
}

/// A node of one reactor; `gso: false` sends every datagram on its own.
/// On loopback a GSO batch crosses the stack as one packet, so a fault
/// injected in the kernel (netem, nftables) would drop a message's
/// fragments all together — and a message none of whose fragments arrive
/// is one the receiver never learns of. Without GSO they are lost one by
/// one, as on a real network.
fn node_with(seed: &str, bind: &str, gso: bool) -> Node {
    Node::start(
        NodeConfig::new(format!("{seed:-<40}").as_bytes(), SHARED)
            .with_udp(UdpConfig {
                bind_address: bind.parse().unwrap(),
                gso,
                ..UdpConfig::default()
            })
            .with_reactors(1)
            .with_session(session_config()),
    )
    .unwrap()
}

/// A message that says which it is and whether it is intact: its index, its
/// length, then a pattern derived from the index.
fn message(i: u32, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&i.to_be_bytes());
    m.extend_from_slice(&(len as u32).to_be_bytes());
    m.extend((8..len).map(|j| (j as u32).wrapping_mul(31).wrapping_add(i) as u8));
    m
}

fn intact(m: &[u8]) -> bool {
    if m.len() < 8 {
        return false;
    }
    let i = u32::from_be_bytes(m[..4].try_into().unwrap());
    let len = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
    len == m.len() && message(i, len) == m
}

/// Fragmented and small messages from client to server across the bad
/// network, then an idle stretch; checks the promises listed in the module
/// docs. `server_addr` is where the client dials (the relay, or the server
/// inside the namespace).
fn udp_across(client: &Node, server: &Node, server_addr: SocketAddr) {
    let session = client.connect_udp(server_addr).unwrap();
    let id: SessionId = session.id();
    const BIG: u32 = 40;
    const SMALL: u32 = 200;
    // 12 KB: about nine fragments at the default MTU, so that a tenth lost
    // leaves roughly two in five whole.
    for i in 0..BIG {
        client.send(id, &message(i, 12_000)).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in BIG..BIG + SMALL {
        client.send(id, &message(i, 200)).unwrap();
    }
    // Idle for longer than the idle timeout: only keepalives cross.
    let events = server.events();
    let (mut whole, mut small, mut corrupt) = (0u32, 0u32, 0u32);
    let until = Instant::now() + Duration::from_secs(5);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(NodeEvent::Message(m)) => {
                let payload = m.payload;
                if !intact(&payload) {
                    corrupt += 1;
                } else if payload.len() == 12_000 {
                    whole += 1;
                } else {
                    small += 1;
                }
            }
            Ok(NodeEvent::SessionClosed { session, reason }) => {
                panic!("session {session} closed across the bad network: {reason}")
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let stats = server.session_stats(id).expect("the session is still up");
    let expired = stats.messages_expired;
    eprintln!(
        "{whole} of {BIG} fragmented messages whole, {expired} expired, \
         {small} of {SMALL} small ones; {stats:?}"
    );
    assert_eq!(corrupt, 0, "a message was delivered corrupt or partial");
    assert_eq!(
        u64::from(whole) + expired,
        u64::from(BIG),
        "every fragmented message arrives whole or is counted as expired"
    );
    assert!(whole > 0, "no fragmented message made it");
    // The network really lost fragments (a fault that did nothing would
    // make this test pass for nothing).
    assert!(expired > 0, "no fragmented message lost a fragment");
    assert!(small > SMALL / 2, "{small} of {SMALL} small messages");
    assert_eq!(
        server.stats().reassembly_bytes,
        0,
        "reassembly memory freed"
    );
    // Still up, both ways, after the idle stretch.
    assert_eq!(server.stats().sessions, 1);
    assert_eq!(client.stats().sessions, 1);
}

#[test]
fn udp_sessions_ride_out_loss_duplication_reordering_and_delay() {
    let server = node("lossy-server", "127.0.0.1");
    let client = node("lossy-client", "127.0.0.1");
    let bad = BadNetwork::start(server.udp_local_addr().unwrap(), 0x5eed);
    udp_across(&client, &server, bad.addr);
    let (passed, lost, doubled) = bad.finish();
    eprintln!("relay: {passed} datagrams passed, {lost} lost, {doubled} duplicated");
    assert!(lost > 0 && doubled > 0);
}

// ------------------------------------------------------------ namespaces ----

#[test]
fn udp_and_websocket_across_netem_in_a_namespace() {
    let netem = [
        "loss",
        "10%",
        "duplicate",
        "5%",
        "delay",
        "50ms",
        "20ms",
        "distribution",
        "normal",
    ];
    let ns = match Netns::create("lossy", Some(&netem)) {
        Ok(ns) => ns,
        Err(netem_error) => {
            // Kernels without sch_netem (this one among them) may still
            // drop at random with nftables: loss only, no delay, duplication
            // or reordering (the relay test above has those).
            let fallback = Netns::create("lossy", None).and_then(|ns| {
                ns.exec(&["nft", "add", "table", "inet", "stt"])?;
                ns.exec(&[
                    "nft",
                    "add chain inet stt input { type filter hook input priority 0; }",
                ])?;
                ns.exec(&["nft", "add rule inet stt input numgen random mod 10 0 drop"])?;
                Ok(ns)
            });
            match fallback {
                Ok(ns) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "NOTE: no netem here ({netem_error}); 10% loss from nftables instead, \
                         without delay, duplication or reordering"
                    );
                    ns
                }
                Err(why) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "SKIPPING the netns test: this machine can make neither netem \
                         ({netem_error}) nor an nftables drop rule ({why})"
                    );
                    return;
                }
            }
        }
    };
    let (server, client) = ns.enter(|| {
        (
            node_with("netns-server", "127.0.0.1", false),
            node_with("netns-client", "127.0.0.1", false),
        )
    });
    let addr = server.udp_local_addr().unwrap();
    udp_across(&client, &server, addr);

    // WebSocket: TCP repairs the loss; every message arrives, in order.
    let ws = ns.enter({
        let server = Arc::new(server);
        move || {
            let a = server
                .start_websocket_server("127.0.0.1:0".parse().unwrap(), WsConfig::default())
                .unwrap();
            (server, a)
        }
    });
    let (server, ws_addr) = ws;
    // Across 10% loss a TCP segment can be retransmitted, with backoff,
    // for longer than the session's 3 s idle timeout (seen once in a CI run
    // of session 3): such a connect fails as it should, and is tried again.
    let session = (1..=3)
        .find_map(
            |attempt| match client.connect_websocket(&format!("ws://{ws_addr}/")) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!(
                        "NOTE: WebSocket connect attempt {attempt} across the loss failed: {e}"
                    );
                    None
                }
            },
        )
        .expect("a WebSocket session across 10% loss within 3 attempts");
    const N: u32 = 2_000;
    for i in 0..N {
        session
            .send(&message(i, 300 + (i as usize % 2000)))
            .unwrap();
    }
    let events = server.events();
    let mut next = 0u32;
    let deadline = Instant::now() + Duration::from_secs(30);
    while next < N {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(NodeEvent::Message(m)) if m.payload.len() >= 8 => {
                let payload = m.payload;
                assert!(intact(&payload));
                let i = u32::from_be_bytes(payload[..4].try_into().unwrap());
                if payload.len() == 200 || payload.len() == 12_000 {
                    // Late UDP traffic of the first part.
                    continue;
                }
                assert_eq!(i, next, "WebSocket messages out of order");
                next += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("WebSocket delivered {next} of {N}: {e}"),
        }
    }
}
