//! Byte bounds of the hand-off to the application: a node whose application
//! does not read holds at most `NodeConfig::queue_bytes` of messages in its
//! channel; over UDP the rest is dropped and counted, over WebSocket it
//! waits (the reactor stops reading) and arrives in order once drained.

use std::time::{Duration, Instant};

use stt::{Events, Node, NodeConfig, NodeEvent, UdpConfig};

const SHARED: &[u8] = b"limits test network shared seed, 32+ bytes";
const MESSAGE: usize = 16 * 1024;
const QUEUE_BYTES: usize = 16 * MESSAGE;

fn config(name: &str) -> NodeConfig {
    NodeConfig::new(format!("{name:-<40}").as_bytes(), SHARED)
        .with_udp(UdpConfig::bound_to("127.0.0.1:0".parse().unwrap()))
        .with_reactors(1)
}

fn waiting_messages(events: &Events) -> usize {
    events.len()
}

fn message(i: u32) -> Vec<u8> {
    let mut m = vec![(i % 251) as u8; MESSAGE];
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

#[test]
fn udp_messages_beyond_the_byte_bound_are_dropped_and_counted() {
    let mut cfg = config("limits udp server");
    cfg.queue_bytes = QUEUE_BYTES;
    let server = Node::start(cfg).unwrap();
    let client = Node::start(config("limits udp client")).unwrap();
    let session = client
        .connect_udp(server.udp_local_addr().unwrap())
        .unwrap();
    let events = server.events();
    // The session event first.
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(5)),
        Ok(NodeEvent::SessionEstablished(_))
    ));
    for i in 0..64 {
        session.send(&message(i)).unwrap();
        // Paced, so that the kernel's buffers drop nothing.
        std::thread::sleep(Duration::from_millis(2));
    }
    let dropped = || server.udp_stats().unwrap().packets_dropped;
    // Until nothing more arrives for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (usize::MAX, u64::MAX);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = (waiting_messages(&events), dropped());
        if now == last {
            break;
        }
        last = now;
    }
    let waiting = waiting_messages(&events);
    assert!(waiting <= QUEUE_BYTES / MESSAGE, "{waiting} messages held");
    assert!(
        waiting >= 8,
        "the bound, not something else, stopped them: {waiting}"
    );
    assert!(dropped() > 0, "what did not fit was counted");
    // Taken, they free their bytes: the next messages fit again.
    for _ in 0..waiting {
        assert!(matches!(events.try_recv(), Ok(NodeEvent::Message(_))));
    }
    for i in 0..8 {
        session.send(&message(1000 + i)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut got = 0;
    while let Ok(NodeEvent::Message(m)) = events.recv_timeout(Duration::from_secs(5)) {
        assert_eq!(m.payload, message(1000 + got));
        got += 1;
        if got == 8 {
            break;
        }
    }
    assert_eq!(got, 8);
}

#[test]
fn websocket_messages_beyond_the_byte_bound_wait_and_arrive_in_order() {
    let mut cfg =
        NodeConfig::websocket_only(format!("{:-<40}", "limits ws server").as_bytes(), SHARED)
            .with_reactors(1);
    cfg.queue_bytes = QUEUE_BYTES;
    let server = Node::start(cfg).unwrap();
    let addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let client = Node::start(
        NodeConfig::websocket_only(format!("{:-<40}", "limits ws client").as_bytes(), SHARED)
            .with_reactors(1),
    )
    .unwrap();
    let session = client.connect_websocket(&format!("ws://{addr}/")).unwrap();
    let events = server.events();
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(5)),
        Ok(NodeEvent::SessionEstablished(_))
    ));
    const N: u32 = 200;
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            session.send(&message(i)).unwrap();
        }
        session
    });
    std::thread::sleep(Duration::from_millis(500));
    let waiting = waiting_messages(&events);
    assert!(waiting <= QUEUE_BYTES / MESSAGE, "{waiting} messages held");
    // Everything arrives, in order, once read.
    for i in 0..N {
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(NodeEvent::Message(m)) => assert_eq!(m.payload, message(i), "message {i}"),
            other => panic!("message {i}: {other:?}"),
        }
    }
    let _session = sender.join().unwrap();
    assert_eq!(server.stats().websocket.unwrap().packets_dropped, 0);
}

#[test]
fn a_message_of_the_largest_size_crosses_websocket_whole() {
    let server = Node::start(
        NodeConfig::websocket_only(format!("{:-<40}", "limits big server").as_bytes(), SHARED)
            .with_reactors(1),
    )
    .unwrap();
    let addr = server
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    let client = Node::start(
        NodeConfig::websocket_only(format!("{:-<40}", "limits big client").as_bytes(), SHARED)
            .with_reactors(1),
    )
    .unwrap();
    let session = client.connect_websocket(&format!("ws://{addr}/")).unwrap();
    let events = server.events();
    // The session's own limit: every message it accepts must fit the
    // transport, sealed whole in one frame.
    let largest = vec![0x5au8; 16 << 20];
    session.send(&largest).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match events.recv_deadline(deadline) {
            Ok(NodeEvent::Message(m)) => {
                assert_eq!(m.payload.len(), largest.len());
                assert!(m.payload == largest);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("the largest message did not arrive: {e:?}"),
        }
    }
}
