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
