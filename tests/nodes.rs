//! Nodes over a user-written transport (the in-memory one), and a clean stop.

use std::time::{Duration, Instant};

use stt::node::{Node, NodeConfig, NodeError, NodeEvent};
use stt::transport::memory::MemoryNetwork;

const SHARED: &[u8] = b"nodes test network shared seed, 32+ b";

fn memory_node(seed: &str, reactors: usize) -> Node {
    Node::start(
        NodeConfig {
            udp: None,
            ..NodeConfig::new(format!("{seed:-<40}").as_bytes(), SHARED)
        }
        .with_reactors(reactors),
    )
    .unwrap()
}

fn next_message(node: &Node) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = node.events();
    while let Ok(e) = events.recv_deadline(deadline) {
        if let NodeEvent::Message { payload, .. } = e {
            return Some(payload);
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
    assert_eq!(session.transport, "memory");
    assert_eq!(session.peer_node, server.node_id());
    client.send(session.id, b"over memory").unwrap();
    assert_eq!(next_message(&server).as_deref(), Some(&b"over memory"[..]));
    // A message larger than the memory transport's 1472-byte datagrams is
    // fragmented by the session like over UDP.
    let big = vec![0x42u8; 100_000];
    client.send(session.id, &big).unwrap();
    assert_eq!(next_message(&server), Some(big));
    let stats = client.session_stats(session.id).unwrap();
    assert_eq!(stats.messages_sent, 2);
}

#[test]
fn unknown_sessions_and_a_stopped_node_give_typed_errors() {
    let node = memory_node("errors", 1);
    let bogus = stt::frame::SessionId(12345);
    assert_eq!(
        node.send(bogus, b"x"),
        Err(NodeError::UnknownSession(bogus))
    );
    node.stop();
    node.stop(); // idempotent
    assert!(!node.is_running());
    assert!(matches!(
        node.send(bogus, b"x"),
        Err(NodeError::UnknownSession(_) | NodeError::Stopped)
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
    assert_eq!(s2.transport, "ws");
    assert_eq!(s2.peer_node, server.node_id());
    via_udp.send(s1.id, b"from udp").unwrap();
    via_ws.send(s2.id, b"from ws").unwrap();
    let mut got = vec![
        next_message(&server).unwrap(),
        next_message(&server).unwrap(),
    ];
    got.sort();
    assert_eq!(got, vec![b"from udp".to_vec(), b"from ws".to_vec()]);
    // 5 MiB over WebSocket travels as one frame.
    let big: Vec<u8> = (0..5u32 << 20).map(|i| (i % 253) as u8).collect();
    via_ws.send(s2.id, &big).unwrap();
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
