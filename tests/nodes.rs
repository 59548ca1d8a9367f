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
