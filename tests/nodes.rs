//! Nodes over a user-written transport (the in-memory one), and a clean stop.

use std::time::{Duration, Instant};

use stt::node::{
    on_reactor, on_worker, ConnectError, ConnectOptions, HandlerError, Node, NodeConfig, NodeEvent,
    SendError,
};
use stt::transport::memory::MemoryNetwork;

const SHARED: &[u8] = b"nodes test network shared seed, 32+ b";

/// A node without its built-in UDP socket (custom transports or
/// WebSocket only).
fn no_udp(seed: &str, reactors: usize) -> NodeConfig {
    NodeConfig::websocket_only(format!("{seed:-<40}").as_bytes(), SHARED).with_reactors(reactors)
}

fn memory_node(seed: &str, reactors: usize) -> Node {
    Node::start(no_udp(seed, reactors)).unwrap()
}

fn next_message(node: &Node) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = node.events();
    while let Ok(e) = events.recv_deadline(deadline) {
        if let NodeEvent::Message(message) = e {
            return Some(message.payload);
        }
    }
    None
}

#[test]
fn sessions_over_a_custom_in_memory_transport() {
    let net = MemoryNetwork::new();
    let server = memory_node("mem-server", 2);
    let client = memory_node("mem-client", 2);
    let st = net.bind_any().unwrap();
    let server_addr = stt::transport::Transport::local_addr(&st);
    server.add_transport(Box::new(st)).unwrap();
    let via = client
        .add_transport(Box::new(net.bind_any().unwrap()))
        .unwrap();
    let session = client.connect(via, server_addr).unwrap();
    assert_eq!(session.info().transport, "memory");
    assert_eq!(session.peer_node(), server.node_id());
    session.send(b"over memory").unwrap();
    assert_eq!(next_message(&server).as_deref(), Some(&b"over memory"[..]));
    // A message larger than the memory transport's 1472-byte datagrams is
    // fragmented by the session like over UDP.
    let big = vec![0x42u8; 100_000];
    session.send(&big).unwrap();
    assert_eq!(next_message(&server), Some(big));
    let stats = session.stats().unwrap();
    assert_eq!(stats.messages_sent, 2);
}

#[test]
fn unknown_sessions_and_a_stopped_node_give_typed_errors() {
    let node = memory_node("errors", 1);
    let bogus = stt::frame::SessionId(12345);
    assert!(
        matches!(node.send(bogus, b"x"), Err(SendError::SessionClosed(id)) if id == bogus),
        "{:?}",
        node.send(bogus, b"x")
    );
    node.stop();
    node.stop(); // idempotent
    assert!(!node.is_running());
    assert!(matches!(
        node.send(bogus, b"x"),
        Err(SendError::SessionClosed(_) | SendError::Stopped)
    ));
}

fn udp_node(seed: &str, reactors: usize) -> Node {
    let udp = stt::transport::udp::UdpConfig::bound_to("127.0.0.1:0".parse().unwrap());
    Node::start(
        NodeConfig::new(format!("{seed:-<40}").as_bytes(), SHARED)
            .with_udp(udp)
            .with_reactors(reactors),
    )
    .unwrap()
}

#[test]
fn two_clients_on_different_transports_talk_to_one_server() {
    let server = udp_node("dual-server", 2);
    let ws_addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    assert_eq!(server.websocket_local_addr(), Some(ws_addr));
    let via_udp = udp_node("dual-udp-client", 1);
    let via_ws = udp_node("dual-ws-client", 1);
    let s1 = via_udp
        .connect_udp(server.udp_local_addr().unwrap())
        .unwrap();
    let s2 = via_ws
        .connect_websocket(&format!("ws://{ws_addr}/stt"))
        .unwrap();
    assert_eq!(s2.info().transport, "ws");
    assert_eq!(s2.peer_node(), server.node_id());
    s1.send(b"from udp").unwrap();
    s2.send(b"from ws").unwrap();
    let mut got = vec![
        next_message(&server).unwrap(),
        next_message(&server).unwrap(),
    ];
    got.sort();
    assert_eq!(got, vec![b"from udp".to_vec(), b"from ws".to_vec()]);
    // 5 MiB over WebSocket travels as one frame.
    let big: Vec<u8> = (0..5u32 << 20).map(|i| (i % 253) as u8).collect();
    s2.send(&big).unwrap();
    assert!(next_message(&server) == Some(big));
    let (traffic, conns) = server.websocket_stats().unwrap();
    assert_eq!(conns.connections_open, 1);
    assert!(traffic.packets_received >= 4, "{traffic:?}");
}

#[test]
fn websocket_urls_are_checked_before_dialling() {
    let node = udp_node("bad-urls", 1);
    for (url, hint) in [
        ("http://127.0.0.1:80/", "ws://127.0.0.1:80/"),
        ("ws://127.0.0.1/", "ws://127.0.0.1:80/"),
        ("tcp://127.0.0.1:9", "ws://host:port/"),
    ] {
        let e = node.connect_websocket(url).unwrap_err().to_string();
        assert!(e.contains(hint), "{url}: {e}");
    }
}

#[test]
fn callbacks_run_on_workers_and_handlers_take_their_types() {
    let server = udp_node("callbacks-server", 1);
    let client = udp_node("callbacks-client", 1);
    let session = client
        .connect_udp(server.udp_local_addr().unwrap())
        .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    // One handler per node: it takes its types by matching on them.
    server
        .set_handler(on_worker(move |message, _replies| {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            let who = match message.frame_type {
                stt::frame::FrameType::Application(0x90) => "0x90",
                _ => "on_frame",
            };
            let _ = tx.send((who, message.payload, thread));
        }))
        .unwrap();
    assert_eq!(
        server.set_handler(on_worker(|_, _| {})),
        Err(HandlerError::AlreadySet)
    );
    // stt's own types never reach a handler: they are refused as messages.
    assert!(
        matches!(
            session.send_typed(0, stt::frame::FrameType::Handshake, b"x"),
            Err(SendError::NotAMessageType(stt::frame::FrameType::Handshake))
        ),
        "stt's own types are refused"
    );
    session.send(b"plain").unwrap();
    session
        .send_typed(0, stt::frame::FrameType::Application(0x90), b"typed")
        .unwrap();
    session
        .send_typed(0, stt::frame::FrameType::Application(0x91), b"other type")
        .unwrap();
    let mut got: Vec<(&str, Vec<u8>, String)> = (0..3)
        .filter_map(|_| rx.recv_timeout(Duration::from_secs(10)).ok())
        .collect();
    got.sort();
    assert_eq!(got.len(), 3);
    assert_eq!((got[0].0, got[0].1.as_slice()), ("0x90", &b"typed"[..]));
    assert!(got[1..]
        .iter()
        .all(|(who, _, thread)| *who == "on_frame" && thread.starts_with("stt-worker")));
    // Session events still reach the channel.
    assert!(server
        .events()
        .try_iter()
        .any(|e| matches!(e, NodeEvent::SessionEstablished(_))));
}

#[test]
fn send_to_sessions_reaches_100_sessions_with_per_session_results() {
    let server = udp_node("fanout-server", 2);
    let addr = server.udp_local_addr().unwrap();
    let clients: Vec<Node> = (0..4)
        .map(|i| udp_node(&format!("fanout-client-{i}"), 1))
        .collect();
    for c in &clients {
        for _ in 0..25 {
            c.connect_udp(addr).unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.sessions().len() < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut targets = server.sessions();
    assert_eq!(targets.len(), 100);
    let ghost = stt::frame::SessionId(0xdead_beef);
    targets.push(ghost);
    let results = server.send_to_sessions(&targets, b"to everyone");
    assert_eq!(results.len(), 101);
    assert!(results[..100].iter().all(|(_, r)| r.is_ok()));
    assert!(
        matches!(results[100], (id, Err(SendError::SessionClosed(g))) if id == ghost && g == ghost),
        "{:?}",
        results[100]
    );
    for c in &clients {
        for _ in 0..25 {
            assert_eq!(next_message(c).as_deref(), Some(&b"to everyone"[..]));
        }
    }
    let all = server.send_to_all(b"again");
    assert_eq!(all.len(), 100);
    let stats = server.stats();
    assert_eq!(stats.sessions, 100);
    assert!(stats.accepting_connections && stats.server_mode && stats.running);
    let json = serde_json::to_value(&stats).unwrap();
    for field in [
        "node_id",
        "running",
        "server_mode",
        "accepting_connections",
        "udp",
        "websocket_connections",
    ] {
        assert!(json.get(field).is_some(), "{field}");
    }
}

#[test]
fn disabling_accept_refuses_new_sessions_but_keeps_old_ones() {
    let server = udp_node("accept-server", 1);
    let client = udp_node("accept-client", 1);
    let addr = server.udp_local_addr().unwrap();
    let kept = client.connect_udp(addr).unwrap();
    server.disable_accept_connections();
    assert!(!server.accepting_connections());
    let refused = {
        let mut config = NodeConfig::new(&[9u8; 40], SHARED)
            .with_udp(stt::transport::udp::UdpConfig::bound_to(
                "127.0.0.1:0".parse().unwrap(),
            ))
            .with_reactors(1);
        config.session.handshake_timeout = Duration::from_millis(500);
        config.session.initial_rto = Duration::from_millis(100);
        Node::start(config).unwrap().connect_udp(addr)
    };
    assert!(
        matches!(refused, Err(ConnectError::Handshake { .. })),
        "{refused:?}"
    );
    kept.send(b"old session works").unwrap();
    assert_eq!(
        next_message(&server).as_deref(),
        Some(&b"old session works"[..])
    );
    server.enable_accept_connections();
    assert!(client.connect_udp(addr).is_ok());
}

#[test]
fn stopping_a_websocket_server_closes_its_peers_sessions() {
    let server = Node::start(no_udp("ws-stop-server", 2)).unwrap();
    let addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let client = Node::start(no_udp("ws-stop-client", 1)).unwrap();
    let s = client.connect_websocket(&format!("ws://{addr}/")).unwrap();
    server.stop();
    let events = client.events();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closed = None;
    while let Ok(e) = events.recv_deadline(deadline) {
        if let NodeEvent::SessionClosed { session, reason } = e {
            closed = Some((session, reason));
            break;
        }
    }
    let (session, reason) = closed.unwrap_or_else(|| {
        panic!(
            "the client learns its session ended: client {:?} server {:?}",
            client.websocket_stats(),
            server.websocket_stats()
        )
    });
    assert_eq!(session, s.id());
    assert!(
        matches!(
            reason,
            stt::session::CloseReason::Peer {
                code: stt::frame::close_code::SHUTDOWN,
                ..
            }
        ),
        "{reason:?}"
    );
}

/// Receives messages numbered 0.. in their first 4 bytes, asserting their
/// order, until `n` or a minute; calls `after` with the count after each.
/// Returns how many arrived.
fn receive_numbered(events: &stt::Events, n: u32, mut after: impl FnMut(u32)) -> u32 {
    let mut next = 0u32;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < n && Instant::now() < deadline {
        if let Ok(NodeEvent::Message(message)) = events.recv_timeout(Duration::from_secs(1)) {
            assert_eq!(
                u32::from_be_bytes(message.payload[..4].try_into().unwrap()),
                next,
                "in order"
            );
            next += 1;
            after(next);
        }
    }
    next
}

#[test]
fn websocket_loses_nothing_when_the_receiver_is_slow() {
    let server = Node::start(no_udp("ws-slow-server", 1).with_queue_depth(64)).unwrap();
    let addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let client = Node::start(no_udp("ws-slow-client", 1)).unwrap();
    // A small write buffer, so that the client's reactor must hold messages
    // while the server is not reading.
    let small = stt::transport::ws::WsConfig {
        max_message_size: 1 << 20,
        write_buffer_limit: 1 << 20,
        ..Default::default()
    };
    let s = client
        .connect_websocket_with(
            &format!("ws://{addr}/"),
            &ConnectOptions::new().with_websocket(small),
        )
        .unwrap();
    const N: u32 = 400;
    let sender = std::thread::spawn(move || {
        let mut m = vec![0u8; 64 << 10];
        for i in 0..N {
            m[..4].copy_from_slice(&i.to_be_bytes());
            s.send(&m).unwrap();
        }
        client
    });
    // A slow application: the queue fills, reading pauses.
    let next = receive_numbered(&server.events(), N, |next| {
        if next % 20 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let client = sender.join().unwrap();
    assert_eq!(next, N, "every message arrived");
    let (traffic, _) = client.websocket_stats().unwrap();
    assert_eq!(traffic.packets_dropped, 0);
}

/// Waits for the next message on `node`, with the session it came on.
fn next_message_on(node: &Node) -> Option<(stt::frame::SessionId, Vec<u8>, std::net::SocketAddr)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = node.events();
    while let Ok(e) = events.recv_deadline(deadline) {
        if let NodeEvent::Message(m) = e {
            return Some((m.session, m.payload, m.peer_addr));
        }
    }
    None
}

/// Sends `message` on `session` until `server` reports it from an address
/// that `moved` accepts (the server follows a new path one round trip after
/// its first datagram: path validation). Returns that address and how many
/// messages it took.
fn send_until_moved(
    client: &Node,
    server: &Node,
    session: stt::frame::SessionId,
    message: &[u8],
    moved: impl Fn(std::net::SocketAddr) -> bool,
) -> (std::net::SocketAddr, u64) {
    for sent in 1..=100 {
        client.send(session, message).unwrap();
        let (id, m, at) = next_message_on(server).unwrap();
        assert_eq!((id, m.as_slice()), (session, message));
        if moved(at) {
            return (at, sent);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the server never followed the session to its new path");
}

#[test]
fn one_session_two_paths_udp_to_websocket_and_back_without_a_new_handshake() {
    let server = udp_node("two-paths-server", 2);
    let ws_addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let client = udp_node("two-paths-client", 2);
    let udp_addr = server.udp_local_addr().unwrap();
    let s = client.connect_udp(udp_addr).unwrap();
    s.send(b"over udp").unwrap();
    let (id, m, from_udp) = next_message_on(&server).unwrap();
    assert_eq!((id, m.as_slice()), (s.id(), &b"over udp"[..]));

    // Same session, now over WebSocket: no handshake, same id and keys.
    s.move_to_websocket(&format!("ws://{ws_addr}/")).unwrap();
    // The server follows once the connection has answered a path probe: a
    // round trip after the first message over it.
    let (from_ws, sent) = send_until_moved(&client, &server, s.id(), b"over websocket", |at| {
        at != from_udp
    });
    let mut received = 1 + sent;
    assert_ne!(from_ws, from_udp, "it came over the WebSocket connection");
    // The server answers along the new path too.
    server.send(s.id(), b"reply").unwrap();
    assert_eq!(
        next_message_on(&client).map(|x| x.1),
        Some(b"reply".to_vec())
    );
    // A large message now travels whole (no MTU on WebSocket).
    let big = vec![9u8; 3 << 20];
    s.send(&big).unwrap();
    let got = next_message_on(&server);
    assert!(
        got.as_ref().is_some_and(|x| x.1 == big),
        "{:?}",
        got.map(|x| (x.0, x.1.len(), x.2))
    );

    // And back to UDP.
    s.move_to_udp(udp_addr).unwrap();
    // The server moves the session back to UDP once that path has answered
    // a ping (path validation): a round trip after the first datagram.
    let (from, sent) =
        send_until_moved(&client, &server, s.id(), b"udp again", |at| at == from_udp);
    received += 1 + sent;
    assert_eq!(from, from_udp);
    // One session on each side all along: no new handshake happened.
    assert_eq!(server.session_count(), 1);
    assert_eq!(client.session_count(), 1);
    let established = server
        .events()
        .try_iter()
        .filter(|e| matches!(e, NodeEvent::SessionEstablished(_)))
        .count();
    assert!(established <= 1);
    assert_eq!(
        server.session_stats(s.id()).map(|st| st.messages_received),
        Some(received)
    );
}

#[test]
fn a_wrong_shared_seed_fails_the_handshake_and_the_server_keeps_nothing() {
    let server = udp_node("seed-server", 1);
    let mut config = NodeConfig::new(&[8u8; 40], b"another network's shared seed: 32+ b")
        .with_udp(stt::transport::udp::UdpConfig::bound_to(
            "127.0.0.1:0".parse().unwrap(),
        ))
        .with_reactors(1);
    config.session.handshake_timeout = Duration::from_millis(600);
    config.session.initial_rto = Duration::from_millis(100);
    let outsider = Node::start(config).unwrap();
    let err = outsider
        .connect_udp(server.udp_local_addr().unwrap())
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ConnectError::Handshake {
                reason: stt::session::CloseReason::HandshakeTimeout,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("shared_seed"),
        "the error names the likely cause: {err}"
    );
    assert_eq!(server.session_count(), 0, "no state for an outsider");
    let stats = server.udp_stats().unwrap();
    assert!(
        stats.packets_dropped >= 1,
        "its handshakes were counted as dropped"
    );
    assert_eq!(stats.packets_sent, 0, "and answered with silence");
}

/// Waits for the next message on `events`, with its session.
fn next_from(events: &stt::Events) -> Option<(stt::frame::SessionId, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(e) = events.recv_deadline(deadline) {
        if let NodeEvent::Message(m) = e {
            return Some((m.session, m.payload));
        }
    }
    None
}

#[test]
fn an_in_reactor_handler_answers_on_the_reactor_and_relays_across_reactors() {
    use stt::frame::{FrameType, SessionId};
    let server = udp_node("inline-server", 2);
    let ws_addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let (seen_tx, seen) = crossbeam_channel::unbounded();
    server
        .set_handler(on_reactor(move |message, replies| {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            let _ = seen_tx.send(thread);
            match message.payload.as_slice() {
                b"panic" => panic!("a handler bug"),
                b"refusals" => {
                    // Refused at once, with the errors `Node::send_typed` gives.
                    let not_a_message =
                        replies.send_typed(message.session, 0, FrameType::Handshake, b"x");
                    let too_large = replies.send(message.session, &vec![0; 17 << 20]);
                    let unknown = replies.send(SessionId(0xDEAD), b"x");
                    let verdict = format!(
                        "{} {} {}",
                        matches!(not_a_message, Err(SendError::NotAMessageType(_))),
                        matches!(too_large, Err(SendError::TooLarge { .. })),
                        matches!(unknown, Err(SendError::SessionClosed(SessionId(0xDEAD)))),
                    );
                    let _ = replies.send(message.session, verdict.as_bytes());
                }
                [b'>', rest @ ..] if rest.len() >= 8 => {
                    // Relay: the first 8 bytes name the session to pass the
                    // rest to.
                    let (to, data) = rest.split_at(8);
                    let to = SessionId(u64::from_be_bytes(to.try_into().unwrap()));
                    replies.send(to, data).unwrap();
                }
                _ => {
                    replies
                        .send_typed(
                            message.session,
                            message.stream_id,
                            message.frame_type,
                            &message.payload,
                        )
                        .unwrap();
                    replies.recycle(message.payload);
                }
            }
        }))
        .unwrap();
    assert_eq!(
        server.set_handler(on_reactor(|_, _| {})),
        Err(HandlerError::AlreadySet)
    );

    // Echoes over UDP: small, on another stream and type, and fragmented.
    let client = udp_node("inline-client", 1);
    let events = client.events();
    let s = client
        .connect_udp(server.udp_local_addr().unwrap())
        .unwrap()
        .id();
    for i in 0..50u32 {
        let msg: Vec<u8> = (0..(i * 997) % 30_000 + 1).map(|b| b as u8).collect();
        client.send(s, &msg).unwrap();
        assert_eq!(next_from(&events), Some((s, msg)), "echo {i}");
    }
    client
        .send_typed(s, 7, FrameType::Application(0x90), b"typed")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let typed = loop {
        match events.recv_deadline(deadline).unwrap() {
            NodeEvent::Message(m) => break (m.stream_id, m.frame_type, m.payload),
            _ => continue,
        }
    };
    assert_eq!(typed, (7, FrameType::Application(0x90), b"typed".to_vec()));
    client.send(s, b"refusals").unwrap();
    assert_eq!(next_from(&events), Some((s, b"true true true".to_vec())));
    // A panicking handler loses its message, not the reactor.
    client.send(s, b"panic").unwrap();
    client.send(s, b"after the panic").unwrap();
    assert_eq!(next_from(&events), Some((s, b"after the panic".to_vec())));
    // Every message ran on a reactor thread.
    let threads: Vec<String> = seen.try_iter().collect();
    assert!(threads.len() >= 53, "{}", threads.len());
    assert!(
        threads.iter().all(|t| t.starts_with("stt-reactor-")),
        "{threads:?}"
    );
    // Messages no longer reach the server's channel; session events do.
    assert!(server
        .events()
        .try_iter()
        .all(|e| !matches!(e, NodeEvent::Message(_))));

    // Relays between sessions held by different reactors: a WebSocket
    // session lives on the server's WebSocket reactor; UDP sessions are
    // spread over both by id, so open them until one is held elsewhere.
    let via_ws = udp_node("inline-ws-client", 1);
    let ws_events = via_ws.events();
    let w = via_ws
        .connect_websocket(&format!("ws://{ws_addr}/stt"))
        .unwrap()
        .id();
    let mut udp_clients = Vec::new();
    for i in 0..16 {
        let c = udp_node(&format!("inline-udp-{i}"), 1);
        let id = c
            .connect_udp(server.udp_local_addr().unwrap())
            .unwrap()
            .id();
        udp_clients.push((c, id));
    }
    let relay = |from: &Node, from_id: SessionId, to_id: SessionId, data: &[u8]| {
        let mut m = vec![b'>'];
        m.extend_from_slice(&to_id.0.to_be_bytes());
        m.extend_from_slice(data);
        from.send(from_id, &m).unwrap();
    };
    for (c, id) in &udp_clients {
        let events = c.events();
        relay(&via_ws, w, *id, b"ws to udp");
        assert_eq!(next_from(&events), Some((*id, b"ws to udp".to_vec())));
        relay(c, *id, w, b"udp to ws");
        assert_eq!(next_from(&ws_events), Some((w, b"udp to ws".to_vec())));
    }
    // Both of the server's reactors ran the handler (unless all 16 random
    // session ids fell on the WebSocket's reactor: odds 2^-16).
    let threads: std::collections::HashSet<String> = seen.try_iter().collect();
    assert_eq!(threads.len(), 2, "{threads:?}");
}

#[test]
fn recycled_buffers_carry_the_next_messages() {
    let server = udp_node("recycle-server", 1);
    let client = udp_node("recycle-client", 1);
    let s = client
        .connect_udp(server.udp_local_addr().unwrap())
        .unwrap()
        .id();
    let events = server.events();
    client.send(s, &[1u8; 900]).unwrap();
    let (_, first) = next_from(&events).unwrap();
    assert_eq!(first, vec![1u8; 900]);
    let allocation = first.as_ptr();
    server.recycle(first);
    // The next message is delivered in the buffer given back, holding that
    // message only. (The server sends nothing here, so nothing else takes
    // from or gives to its pool in between.)
    client.send(s, b"second").unwrap();
    let (_, second) = next_from(&events).unwrap();
    assert_eq!(second, b"second");
    assert_eq!(second.as_ptr(), allocation);
    // Buffers of any origin are taken, and delivery goes on.
    server.recycle(Vec::with_capacity(4 << 20));
    server.recycle(Vec::new());
    client.send(s, b"third").unwrap();
    assert_eq!(next_from(&events).unwrap().1, b"third");
}

#[test]
fn queued_messages_of_every_size_keep_their_order_over_websocket() {
    // Sends that queue up are coalesced when small and sealed in place when
    // too large to share a frame (16 KiB frames over WebSocket): sizes on
    // both sides of that line, interleaved on one session and stream, must
    // arrive whole and in order.
    let server = Node::start(no_udp("order-server", 1)).unwrap();
    let addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let client = Node::start(no_udp("order-client", 1)).unwrap();
    let s = client
        .connect_websocket(&format!("ws://{addr}/"))
        .unwrap()
        .id();
    let sizes = [10usize, 8_100, 8_200, 5, 30_000, 100, 8_150, 16_384, 7, 1];
    const N: usize = 3_000;
    let message = |i: usize| -> Vec<u8> {
        let mut m = vec![(i % 251) as u8; sizes[i % sizes.len()].max(4)];
        m[..4].copy_from_slice(&(i as u32).to_be_bytes());
        m
    };
    for i in 0..N {
        client.send(s, &message(i)).unwrap();
    }
    let events = server.events();
    for i in 0..N {
        let (_, got) = next_from(&events).unwrap_or_else(|| panic!("message {i} missing"));
        assert!(got == message(i), "message {i}: {} bytes", got.len());
        server.recycle(got);
    }
}

#[test]
fn an_in_reactor_handler_keeps_websocket_backpressure() {
    use stt::frame::FrameType;
    // The server answers from its reactor, one frame per reply (an
    // application type: never coalesced), to a client that sends far
    // faster than it reads. The server must stop reading the client rather
    // than hold replies without bound and drop them.
    let server = Node::start(no_udp("inline-bp-server", 1)).unwrap();
    let small = stt::transport::ws::WsConfig {
        max_message_size: 64 << 10,
        write_buffer_limit: 0,
        ..Default::default()
    };
    let addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), small)
        .unwrap();
    server
        .set_handler(on_reactor(|message, replies| {
            let _ = replies.send_typed(
                message.session,
                0,
                FrameType::Application(0x90),
                &message.payload,
            );
        }))
        .unwrap();
    let client = Node::start(no_udp("inline-bp-client", 1).with_queue_depth(16)).unwrap();
    let s = client
        .connect_websocket(&format!("ws://{addr}/"))
        .unwrap()
        .id();
    const N: u32 = 60_000;
    let client = std::sync::Arc::new(client);
    let sender = {
        let client = client.clone();
        std::thread::spawn(move || {
            let mut m = vec![0u8; 200];
            for i in 0..N {
                m[..4].copy_from_slice(&i.to_be_bytes());
                client.send(s, &m).unwrap();
            }
        })
    };
    // Not reading for a while: everything backs up.
    std::thread::sleep(Duration::from_millis(1500));
    let next = receive_numbered(&client.events(), N, |_| {});
    sender.join().unwrap();
    let (traffic, _) = server.websocket_stats().unwrap();
    assert_eq!(traffic.packets_dropped, 0, "{traffic:?}");
    assert_eq!(next, N, "every reply arrived");
}

#[test]
fn large_messages_queue_by_bytes_not_only_by_count() {
    // A server that never reads, a client that sends 16 KiB messages as fast
    // as it can: once every buffer on the way is full, `send` must wait with
    // tens of megabytes queued, not with its 16,384-command queue full
    // (256 MiB of such messages).
    let server = Node::start(no_udp("bytes-server", 1).with_queue_depth(16)).unwrap();
    let addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let client = std::sync::Arc::new(Node::start(no_udp("bytes-client", 1)).unwrap());
    let s = client
        .connect_websocket(&format!("ws://{addr}/"))
        .unwrap()
        .id();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = {
        let (client, sent) = (client.clone(), sent.clone());
        std::thread::spawn(move || {
            let m = vec![7u8; 16 << 10];
            for _ in 0..20_000 {
                if client.send(s, &m).is_err() {
                    return;
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    // Wait until sending stalls.
    let mut last = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = sent.load(std::sync::atomic::Ordering::Relaxed);
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let accepted = sent.load(std::sync::atomic::Ordering::Relaxed);
    // 64 MiB queued for the reactor, 16 MiB held behind the peer, plus
    // socket and WebSocket buffers: about 7,000 messages of 16 KiB.
    assert!(accepted < 12_000, "{accepted} messages accepted");
    client.stop();
    sender.join().unwrap();
    drop(server);
}

#[test]
fn two_nodes_flooding_each_other_over_websocket_both_finish() {
    // Each sends far more than the connection buffers, at the same time:
    // a reactor whose writes wait must keep reading, or both would wait on
    // each other for ever.
    // Small event queues, read late: both reactors first stop reading for
    // their applications, their writes wait, and they get throttled.
    let node = |seed: &str| {
        std::sync::Arc::new(Node::start(no_udp(seed, 1).with_queue_depth(64)).unwrap())
    };
    let a = node("flood-a");
    let addr = a
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let b = node("flood-b");
    let s_b = b.connect_websocket(&format!("ws://{addr}/")).unwrap().id();
    let established = a.events().recv_timeout(Duration::from_secs(10)).unwrap();
    let NodeEvent::SessionEstablished(info) = established else {
        panic!("{established:?}")
    };
    let s_a = info.id;
    const N: u32 = 3_000;
    let sent = std::sync::Arc::new([
        std::sync::atomic::AtomicU32::new(0),
        std::sync::atomic::AtomicU32::new(0),
    ]);
    let flood = |node: std::sync::Arc<Node>, session, side: usize| {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut m = vec![1u8; 32 << 10];
            for i in 0..N {
                m[..4].copy_from_slice(&i.to_be_bytes());
                if node.send(session, &m).is_err() {
                    return;
                }
                sent[side].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let senders = [flood(a.clone(), s_a, 0), flood(b.clone(), s_b, 1)];
    // Start reading only once both sides have sent enough to be throttled
    // (over 1,024 frames held), or after a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sent
        .iter()
        .any(|s| s.load(std::sync::atomic::Ordering::Relaxed) < 2_000)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (events_a, events_b) = (a.events(), b.events());
    let reader_b = std::thread::spawn(move || receive_numbered(&events_b, N, |_| {}));
    let got_a = receive_numbered(&events_a, N, |_| {});
    let got_b = reader_b.join().unwrap();
    // Before joining: a sender stuck for ever must fail the test, not hang it.
    assert_eq!((got_a, got_b), (N, N));
    for s in senders {
        s.join().unwrap();
    }
}
