//! The UDP transport and the reactors over real loopback sockets, for every
//! backend: sealed messages both ways, statistics, MTU limits, garbage,
//! `SO_REUSEPORT` across reactors, IPv6.
//!
//! Every test binds port 0 and runs in parallel with the others.

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stt::node::{Node, NodeConfig, NodeEvent};
use stt::transport::udp::{self, UdpBackend, UdpConfig};
use stt::transport::TransportError;

const SHARED: &[u8] = b"udp test network shared seed, 32 bytes+";
const WAIT: Duration = Duration::from_secs(10);

/// The backends this machine can run; io_uring is skipped visibly where the
/// kernel refuses it.
fn backends() -> Vec<UdpBackend> {
    let mut v = vec![UdpBackend::Mio];
    let probe = udp::bind(&UdpConfig {
        bind_address: "127.0.0.1".parse().unwrap(),
        backend: UdpBackend::IoUring,
        ..UdpConfig::default()
    });
    match probe {
        Ok(_) => v.push(UdpBackend::IoUring),
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPING the io_uring backend on this machine: {e}"
            );
        }
    }
    v
}

fn config(seed: &str, backend: UdpBackend, bind: &str, reactors: usize) -> NodeConfig {
    let udp = UdpConfig {
        bind_address: bind.parse().unwrap(),
        backend,
        receive_buffer_size: 1 << 20,
        send_buffer_size: 1 << 20,
        ..UdpConfig::default()
    };
    NodeConfig::new(format!("{seed:-<40}").as_bytes(), SHARED)
        .with_udp(udp)
        .with_reactors(reactors)
}

fn node(seed: &str, backend: UdpBackend, reactors: usize) -> Node {
    Node::start(config(seed, backend, "127.0.0.1", reactors)).unwrap()
}

/// Waits for `n` messages on `node`, returning their payloads in arrival order.
fn messages(node: &Node, n: usize) -> Vec<Vec<u8>> {
    let events = node.events();
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(NodeEvent::Message(m)) => got.push(m.payload),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

#[test]
fn binds_port_zero_and_reports_the_address_v4_and_v6() {
    for backend in backends() {
        let n = node("bind-v4", backend, 1);
        let addr = n.udp_local_addr().unwrap();
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        let info = n.udp_socket_info().unwrap();
        assert!(
            info.receive_buffer_size >= 1 << 20,
            "kernel granted {info:?}"
        );
        if UdpSocket::bind("[::1]:0").is_ok() {
            let n6 = Node::start(config("bind-v6", backend, "::1", 1)).unwrap();
            assert!(n6.udp_local_addr().unwrap().is_ipv6());
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPING IPv6: ::1 is not available here"
            );
        }
    }
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = config("in-use", UdpBackend::Mio, "127.0.0.1", 2);
    c.udp.as_mut().unwrap().bind_port = taken.local_addr().unwrap().port();
    let err = Node::start(c).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("already in use") && text.contains("port 0"),
        "{text}"
    );
}

#[test]
fn sealed_messages_both_ways_and_exact_statistics() {
    for backend in backends() {
        for bind in ["127.0.0.1", "::1"] {
            if bind == "::1" && UdpSocket::bind("[::1]:0").is_err() {
                continue;
            }
            let server = Node::start(config("stats-server", backend, bind, 1)).unwrap();
            let client = Node::start(config("stats-client", backend, bind, 1)).unwrap();
            let session = client
                .connect_udp(server.udp_local_addr().unwrap())
                .unwrap();
            assert_eq!(session.peer_node(), server.node_id());
            // Let the confirming ping settle, then measure deltas.
            std::thread::sleep(Duration::from_millis(100));
            let c0 = client.udp_stats().unwrap();
            let s0 = server.udp_stats().unwrap();
            const N: usize = 500;
            for i in 0..N {
                let mut m = vec![(i % 251) as u8; 1200];
                m[..4].copy_from_slice(&(i as u32).to_be_bytes());
                session.send(&m).unwrap();
            }
            let got = messages(&server, N);
            assert_eq!(
                got.len(),
                N,
                "{backend:?} {bind}: all 500 arrive on loopback"
            );
            // io_uring counts a send when its completion is reaped, which
            // may come after the receiver already has the datagram.
            let deadline = Instant::now() + WAIT;
            while client.udp_stats().unwrap().packets_sent - c0.packets_sent < N as u64
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let c1 = client.udp_stats().unwrap();
            let s1 = server.udp_stats().unwrap();
            assert_eq!(c1.packets_sent - c0.packets_sent, N as u64, "{backend:?}");
            assert_eq!(c1.bytes_sent - c0.bytes_sent, (N * (1200 + 45)) as u64);
            assert_eq!(s1.packets_received - s0.packets_received, N as u64);
            assert_eq!(
                s1.bytes_received - s0.bytes_received,
                (N * (1200 + 45)) as u64
            );
            assert_eq!(s1.packets_dropped, 0);
            assert_eq!((c1.errors_send, s1.errors_receive), (0, 0));
            // And back.
            let server_session = match server
                .events()
                .try_iter()
                .find(|e| matches!(e, NodeEvent::SessionEstablished(_)))
            {
                Some(NodeEvent::SessionEstablished(info)) => info.id,
                _ => session.id(),
            };
            server.send(server_session, b"pong").unwrap();
            assert_eq!(messages(&client, 1), vec![b"pong".to_vec()]);
            let json = serde_json::to_value(c1).unwrap();
            for field in [
                "running",
                "local_addr",
                "uptime",
                "bytes_sent",
                "bytes_received",
                "packets_sent",
                "packets_received",
                "packets_dropped",
                "errors_send",
                "errors_receive",
            ] {
                assert!(json.get(field).is_some(), "stats JSON lacks {field}");
            }
        }
    }
}

/// A relay between client and server that records every datagram's size.
struct Relay {
    addr: SocketAddr,
    sizes: Arc<Mutex<Vec<usize>>>,
    stop: Arc<AtomicBool>,
    back: Arc<Mutex<Arc<UdpSocket>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    fn new(server: SocketAddr) -> Relay {
        let front = big_socket();
        let back = Arc::new(Mutex::new(Arc::new(big_socket())));
        let addr = front.local_addr().unwrap();
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let f2 = front.try_clone().unwrap();
        let (s1, st1, c1, back1) = (sizes.clone(), stop.clone(), client.clone(), back.clone());
        let forward = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !st1.load(Ordering::Relaxed) {
                if let Ok((n, from)) = front.recv_from(&mut buf) {
                    *c1.lock().unwrap() = Some(from);
                    s1.lock().unwrap().push(n);
                    let out = back1.lock().unwrap().clone();
                    let _ = out.send_to(&buf[..n], server);
                }
            }
        });
        let (s2, st2, back2) = (sizes.clone(), stop.clone(), back.clone());
        let backward = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !st2.load(Ordering::Relaxed) {
                let sock = back2.lock().unwrap().clone();
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    s2.lock().unwrap().push(n);
                    if let Some(c) = *client.lock().unwrap() {
                        let _ = f2.send_to(&buf[..n], c);
                    }
                }
            }
        });
        Relay {
            addr,
            sizes,
            stop,
            back,
            threads: vec![forward, backward],
        }
    }

    /// As a NAT that forgets its mapping: traffic to the server leaves from
    /// a new port from now on.
    fn rebind(&self) -> SocketAddr {
        let fresh = Arc::new(big_socket());
        let addr = fresh.local_addr().unwrap();
        *self.back.lock().unwrap() = fresh;
        addr
    }
}

/// A loopback socket with 4 MiB buffers and a short read timeout, so that a
/// test relay never drops a burst.
fn big_socket() -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_recv_buffer_size(4 << 20).unwrap();
    s.set_send_buffer_size(4 << 20).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn every_datagram_respects_the_mtu_512_1472_8972() {
    for backend in backends() {
        for mtu in [512usize, 1472, 8972] {
            let with_mtu = |seed: &str| {
                let mut c = config(seed, backend, "127.0.0.1", 1);
                c.udp.as_mut().unwrap().max_packet_size = mtu;
                Node::start(c).unwrap()
            };
            let server = with_mtu("mtu-server");
            let client = with_mtu("mtu-client");
            let relay = Relay::new(server.udp_local_addr().unwrap());
            let session = client.connect_udp(relay.addr).unwrap();
            let big: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
            session.send(&big).unwrap();
            session.send(&vec![7u8; mtu - 45]).unwrap();
            let got = messages(&server, 2);
            assert_eq!(
                got.len(),
                2,
                "{backend:?} mtu {mtu}: client {:?} server {:?} relay saw {}",
                client.udp_stats(),
                server.udp_stats(),
                relay.sizes.lock().unwrap().len()
            );
            assert!(got[0] == big);
            let sizes = relay.sizes.lock().unwrap().clone();
            assert!(
                sizes.iter().all(|&s| s <= mtu),
                "{backend:?} mtu {mtu}: {:?}",
                sizes.iter().max()
            );
            assert!(sizes.contains(&mtu), "full datagrams fill the MTU exactly");
        }
    }
}

#[test]
fn oversize_datagram_is_refused_by_the_transport() {
    for backend in backends() {
        let (mut t, _) = udp::bind(&UdpConfig {
            bind_address: "127.0.0.1".parse().unwrap(),
            backend,
            ..UdpConfig::default()
        })
        .unwrap();
        let to = t.local_addr();
        assert!(matches!(
            t.send(to, &[0u8; 1473]),
            Err(TransportError::TooLarge {
                len: 1473,
                max: 1472
            })
        ));
        assert!(t.send(to, &[0u8; 1472]).is_ok());
    }
}

#[test]
fn garbage_is_counted_as_dropped_and_harms_no_session() {
    for backend in backends() {
        let server = node("garbage-server", backend, 1);
        let client = node("garbage-client", backend, 1);
        let addr = server.udp_local_addr().unwrap();
        let session = client.connect_udp(addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let before = server.udp_stats().unwrap().packets_dropped;
        let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut x: u32 = 12345;
        const N: u64 = 300;
        for i in 0..N {
            let mut d = vec![0u8; 1 + (i as usize * 7) % 1400];
            for b in &mut d {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            if i % 3 == 0 && d.len() > 29 {
                // Looks like a frame of the live session: must fail to open.
                d[..2].copy_from_slice(b"ST");
                d[2] = 1;
                d[3] = 1;
                d[4] = 0;
                d[5..13].copy_from_slice(&session.id().0.to_be_bytes());
                let len = (d.len() - 29) as u32;
                d[25..29].copy_from_slice(&len.to_be_bytes());
            }
            junk.send_to(&d, addr).unwrap();
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let deadline = Instant::now() + WAIT;
        while server.udp_stats().unwrap().packets_dropped - before < N && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            server.udp_stats().unwrap().packets_dropped - before,
            N,
            "{backend:?}"
        );
        session.send(b"still here").unwrap();
        assert_eq!(messages(&server, 1), vec![b"still here".to_vec()]);
    }
}

#[test]
fn reuseport_reactors_deliver_every_flow() {
    for backend in backends() {
        let server = node("reuseport-server", backend, 4);
        let info = server.udp_socket_info().unwrap();
        assert_eq!(info.sockets, 4);
        let addr = server.udp_local_addr().unwrap();
        let clients: Vec<Node> = (0..6)
            .map(|i| node(&format!("rp-client-{i}"), backend, 2))
            .collect();
        let mut sessions = Vec::new();
        for c in &clients {
            for _ in 0..3 {
                sessions.push(c.connect_udp(addr).unwrap());
            }
        }
        const PER: usize = 40;
        for s in &sessions {
            for i in 0..PER {
                s.send(format!("{}:{i}", s.id()).as_bytes()).unwrap();
            }
        }
        let got = messages(&server, sessions.len() * PER);
        assert_eq!(got.len(), sessions.len() * PER, "{backend:?}");
        let per_reactor = server.udp_stats_per_reactor();
        let busy = per_reactor
            .iter()
            .filter(|s| s.packets_received > 0)
            .count();
        assert!(busy >= 2, "flows spread over reactors: {per_reactor:?}");
        if info.steering {
            // With steering no datagram needed forwarding between reactors:
            // each reactor received exactly its own sessions' traffic.
            assert_eq!(server.udp_stats().unwrap().packets_dropped, 0);
        }
    }
}

#[test]
fn a_session_survives_nat_rebinding() {
    for backend in backends() {
        let server = node("nat-server", backend, 2);
        let client = node("nat-client", backend, 1);
        let relay = Relay::new(server.udp_local_addr().unwrap());
        let session = client.connect_udp(relay.addr).unwrap();
        session.send(b"before").unwrap();
        let events = server.events();
        let first_from = loop {
            match events.recv_timeout(WAIT).unwrap() {
                NodeEvent::Message(m) => break m.peer_addr,
                _ => continue,
            }
        };
        let new_port = relay.rebind();
        assert_ne!(first_from, new_port);
        // The server moves the session once the new address has answered
        // a ping sent there (path validation): one round trip after the
        // first datagram from it. Messages from it are delivered meanwhile.
        let mut peer = first_from;
        for _ in 0..100 {
            session.send(b"after").unwrap();
            let payload = loop {
                match events.recv_timeout(WAIT).unwrap() {
                    NodeEvent::Message(m) => {
                        assert_eq!(m.session, session.id(), "the same session");
                        peer = m.peer_addr;
                        break m.payload;
                    }
                    _ => continue,
                }
            };
            assert_eq!(payload, b"after", "{backend:?}");
            if peer == new_port {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(peer, new_port, "{backend:?}");
        // Replies follow the new address.
        server.send(session.id(), b"reply").unwrap();
        assert_eq!(messages(&client, 1), vec![b"reply".to_vec()], "{backend:?}");
        assert_eq!(server.session_count(), 1);
    }
}

#[test]
fn a_five_mib_message_over_udp_at_mtu_1472() {
    for backend in backends() {
        // The whole message leaves as one burst of 3,715 datagrams: the
        // receiver's socket buffer must hold it (UDP has no flow control).
        let big_buffers = |seed: &str| {
            let mut c = config(seed, backend, "127.0.0.1", 1);
            let udp = c.udp.as_mut().unwrap();
            udp.receive_buffer_size = 4 << 20;
            udp.send_buffer_size = 4 << 20;
            Node::start(c).unwrap()
        };
        let server = big_buffers("five-mib-server");
        let client = big_buffers("five-mib-client");
        let granted = server.udp_socket_info().unwrap().receive_buffer_size;
        if granted < 6 << 20 {
            let _ = writeln!(std::io::stderr(),"SKIPPING: the kernel grants only {granted} bytes of socket buffer (net.core.rmem_max); a 5 MiB burst cannot fit");
            return;
        }
        let session = client
            .connect_udp(server.udp_local_addr().unwrap())
            .unwrap();
        let big: Vec<u8> = (0..5u32 << 20).map(|i| (i * 13 % 251) as u8).collect();
        session.send(&big).unwrap();
        let got = messages(&server, 1);
        assert_eq!(got.len(), 1, "{backend:?}: {:?}", server.udp_stats());
        assert!(got[0] == big, "{backend:?}: intact");
    }
}
