//! `Node::stop` joins every thread it started. Alone in its own test binary,
//! so that no other test's threads are counted.

use std::time::Duration;

use stt::node::{Node, NodeConfig, NodeEvent};
use stt::transport::udp::UdpConfig;

fn stt_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|t| t.ok())
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|name| name.starts_with("stt-"))
                .count()
        })
        .unwrap_or(0)
}

fn names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .collect()
}

#[test]
fn stop_closes_sessions_and_leaves_no_thread() {
    const SHARED: &[u8] = b"stop test network shared seed, 32+ bytes";
    let udp = UdpConfig::bound_to("127.0.0.1:0".parse().unwrap());
    let server = Node::start(
        NodeConfig::new(b"stop test server node seed, 32 bytes+", SHARED)
            .with_udp(udp.clone())
            .with_reactors(3),
    )
    .unwrap();
    let client = Node::start(
        NodeConfig::new(b"stop test client node seed, 32 bytes+", SHARED)
            .with_udp(udp)
            .with_reactors(2),
    )
    .unwrap();
    // A thread names itself once it runs: allow it a moment to start.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stt_threads() < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(stt_threads(), 5, "{:?}", names());
    let session = client
        .connect_udp(server.udp_local_addr().unwrap())
        .unwrap();
    client.stop();
    assert_eq!(stt_threads(), 3, "the client's reactors are joined");
    // The server hears the CLOSE frame the stopping client sent.
    let events = server.events();
    let closed = std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(5)).ok())
        .find(|e| matches!(e, NodeEvent::SessionClosed { .. }));
    assert!(
        closed.is_some(),
        "session {} closed on the server too",
        session.id()
    );
    assert_eq!(server.session_count(), 0);
    drop(server);
    assert_eq!(stt_threads(), 0, "dropping a node stops it");
}
