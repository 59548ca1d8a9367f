//! [`WsTransport`] over loopback: per-dial options, one drive per ready
//! connection.

use std::sync::mpsc;

use super::*;
use conn::READS_PER_TURN;

/// An address nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/stt")
}

#[test]
fn open_with_gives_each_dial_its_own_limits_and_queue() {
    let mut t = WsTransport::client(WsConfig::default()).unwrap();
    let (small, plain) = (closed_port(), closed_port());
    let config = WsConfig {
        max_message_size: 1024,
        reconnect_queue: 2,
        ..WsConfig::default()
    };
    let options: &(dyn std::any::Any + Send) = &config;
    assert_eq!(
        t.open_with(&url(small), small, Some(options)).unwrap(),
        small
    );
    assert_eq!(t.open_with(&url(plain), plain, None).unwrap(), plain);
    let too_large = t.send(small, &[0; 1025]);
    assert!(
        matches!(too_large, Err(TransportError::TooLarge { max: 1024, .. })),
        "{too_large:?}"
    );
    t.send(plain, &[0; 1025]).unwrap();
    t.send(small, b"one").unwrap();
    t.send(small, b"two").unwrap();
    assert!(matches!(
        t.send(small, b"three"),
        Err(TransportError::QueueFull(2))
    ));
    for _ in 0..3 {
        t.send(plain, b"more").unwrap();
    }
}

#[test]
fn open_with_refuses_foreign_or_invalid_options() {
    let mut t = WsTransport::client(WsConfig::default()).unwrap();
    let addr = closed_port();
    let foreign: &(dyn std::any::Any + Send) = &42u32;
    let e = t.open_with(&url(addr), addr, Some(foreign)).unwrap_err();
    assert!(e.to_string().contains("must be a WsConfig"), "{e}");
    let bad = WsConfig {
        max_message_size: 0,
        ..WsConfig::default()
    };
    let e = t.open_with(&url(addr), addr, Some(&bad)).unwrap_err();
    assert!(e.to_string().contains("max_message_size"), "{e}");
    // Neither left a dial behind.
    assert!(t.send(addr, b"x").is_err());
}

#[test]
fn a_dial_follows_its_own_reconnect_policy() {
    let mut t = WsTransport::client(WsConfig::default()).unwrap();
    let (quitter, patient) = (closed_port(), closed_port());
    let never = WsConfig {
        reconnect: ReconnectPolicy::never(),
        ..WsConfig::default()
    };
    t.open_with(&url(quitter), quitter, Some(&never)).unwrap();
    t.open(&url(patient), patient).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let gave_up = loop {
        let _ = t.recv(&mut |_, _| {});
        t.handle_timeout(Instant::now());
        match t.send(quitter, b"x") {
            Err(e) if e.to_string().contains("gave up") => break true,
            _ if Instant::now() > deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    assert!(gave_up, "the dial with ReconnectPolicy::never gave up");
    assert!(
        t.send(patient, b"x").is_ok(),
        "the other dial still retries"
    );
    assert!(t.ws_counters().snapshot().reconnects >= 1);
}

#[test]
fn one_recv_drives_each_ready_connection_once() {
    let mut server =
        WsTransport::bind("127.0.0.1:0".parse().unwrap(), WsConfig::default()).unwrap();
    let addr = server.local_addr();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    const N: usize = 2 * READS_PER_TURN + 88;
    let client = std::thread::spawn(move || {
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let (mut ws, _) = tungstenite::client(url(addr), tcp).unwrap();
        go_rx.recv().unwrap();
        for i in 0..N as u32 {
            ws.write(tungstenite::Message::Binary(
                i.to_be_bytes().to_vec().into(),
            ))
            .unwrap();
        }
        ws.flush().unwrap();
        sent_tx.send(()).unwrap();
        // Open until the test is done.
        let _ = go_rx.recv();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.ws_counters().snapshot().connections_open == 0 {
        assert!(Instant::now() < deadline, "the upgrade never completed");
        server.recv(&mut |_, _| {}).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    // The engine authenticates the connection once a session runs over it.
    let peer = server.connection_stats()[0].peer;
    server.peer_authenticated(peer);
    go_tx.send(()).unwrap();
    sent_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut turns = Vec::new();
    let mut order = Vec::new();
    while order.len() < N {
        assert!(Instant::now() < deadline, "messages missing");
        let n = server
            .recv(&mut |_, m| order.push(u32::from_be_bytes(m[..4].try_into().unwrap())))
            .unwrap();
        turns.push(n);
    }
    assert_eq!(turns, vec![READS_PER_TURN, READS_PER_TURN, 88]);
    assert_eq!(order, (0..N as u32).collect::<Vec<_>>());
    drop(go_tx);
    client.join().unwrap();
}

/// Drives `t` until `done` says so (or panics after 10 s).
fn pump(t: &mut WsTransport, what: &str, mut done: impl FnMut(&mut WsTransport) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(t) {
        assert!(Instant::now() < deadline, "{what}");
        let _ = t.recv(&mut |_, _| {});
        let _ = t.flush();
        if t.poll_timeout().is_some_and(|d| d <= Instant::now()) {
            t.handle_timeout(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A raw TCP connection to `addr` from `from` (any loopback address).
fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> std::net::TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(from, 0).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    let tcp: std::net::TcpStream = s.into();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp
}

const UPGRADE: &[u8] =
    b"GET /stt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Sends an upgrade request on `tcp` and returns the answer's status line.
fn upgrade_status(tcp: &mut std::net::TcpStream) -> String {
    use std::io::{Read, Write};
    tcp.write_all(UPGRADE).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn the_connection_cap_holds_across_transports_sharing_one_admission() {
    let admission = WsAdmission::new();
    let config = WsConfig {
        max_connections: 2,
        ..WsConfig::default()
    };
    let bind = || Some(listen::bind("127.0.0.1:0".parse().unwrap()).unwrap());
    let mut a =
        WsTransport::from_listener_shared(bind(), config.clone(), admission.clone()).unwrap();
    let mut b = WsTransport::from_listener_shared(bind(), config, admission.clone()).unwrap();
    let local: std::net::IpAddr = [127, 0, 0, 1].into();
    let (addr_a, addr_b) = (a.local_addr(), b.local_addr());
    let _one = connect_from(local, addr_a);
    let _two = connect_from(local, addr_b);
    pump(&mut a, "a accepts", |t| t.connections() == 1);
    pump(&mut b, "b accepts", |t| t.connections() == 1);
    assert_eq!(admission.connections(), 2);
    // The third, to `a` (which holds only one): refused for the node.
    let mut three = connect_from(local, addr_a);
    let reader = std::thread::spawn(move || upgrade_status(&mut three));
    pump(&mut a, "a refuses", |t| {
        t.ws_counters().snapshot().connections_refused == 1
    });
    assert_eq!(reader.join().unwrap(), "HTTP/1.1 503 Service Unavailable");
    assert_eq!(a.connections(), 1);
    // A place comes back when a connection goes.
    drop(_two);
    pump(&mut b, "b sees the close", |t| t.connections() == 0);
    assert_eq!(admission.connections(), 1);
}

#[test]
fn one_address_holds_at_most_max_connections_per_ip() {
    let config = WsConfig {
        max_connections_per_ip: 2,
        ..WsConfig::default()
    };
    let mut t = WsTransport::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let addr = t.local_addr();
    let (one, other): (std::net::IpAddr, std::net::IpAddr) =
        ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
    let _a = connect_from(one, addr);
    let _b = connect_from(one, addr);
    pump(&mut t, "two accepted", |t| t.connections() == 2);
    let mut third = connect_from(one, addr);
    let reader = std::thread::spawn(move || upgrade_status(&mut third));
    pump(&mut t, "the third refused", |t| {
        t.ws_counters().snapshot().refused_per_ip == 1
    });
    assert_eq!(reader.join().unwrap(), "HTTP/1.1 503 Service Unavailable");
    // Another address still gets in, and upgrades.
    let mut elsewhere = connect_from(other, addr);
    let reader = std::thread::spawn(move || (upgrade_status(&mut elsewhere), elsewhere));
    pump(&mut t, "the other address upgraded", |t| {
        t.ws_counters().snapshot().connections_accepted == 1
    });
    let (status, _elsewhere) = reader.join().unwrap();
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(t.connections(), 3);
}

#[test]
fn idle_connections_cost_nothing_per_turn() {
    const N: usize = 200;
    let config = WsConfig {
        max_connections_per_ip: N,
        ..WsConfig::default()
    };
    let mut t = WsTransport::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let addr = t.local_addr();
    let local: std::net::IpAddr = [127, 0, 0, 1].into();
    let mut clients = Vec::new();
    for _ in 0..N {
        let mut tcp = connect_from(local, addr);
        std::io::Write::write_all(&mut tcp, UPGRADE).unwrap();
        clients.push(tcp);
    }
    pump(&mut t, "all upgraded", |t| {
        t.ws_counters().snapshot().connections_accepted == N as u64
    });
    // Let the last events (writability after the 101) be handled.
    for _ in 0..10 {
        let _ = t.recv(&mut |_, _| {});
        let _ = t.flush();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Turns go by; nothing happens on the connections.
    t.visits.set(0);
    for _ in 0..100 {
        let _ = t.recv(&mut |_, _| {});
        let _ = t.flush();
        let next = t.poll_timeout();
        assert!(next.is_some_and(|d| d > Instant::now() + Duration::from_secs(5)));
        t.handle_timeout(Instant::now());
    }
    assert_eq!(t.visits.get(), 0, "idle connections were looked at");
    // Their timers still run: at the auth deadline each is looked at once.
    t.handle_timeout(Instant::now() + Duration::from_secs(11));
    assert_eq!(t.visits.get(), N);
    assert_eq!(t.ws_counters().snapshot().closed_unauthenticated, N as u64);
}
