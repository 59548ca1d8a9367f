//! Routing in virtual time: sessions that open and carry messages, ids
//! that belong to their shard, forwarding to the owner, idle sessions that
//! let go of everything.

use super::*;

#[test]
fn a_session_opens_and_carries_messages_with_the_peer_node_id() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    net.send(client, id, b"hello");
    net.run(Duration::from_millis(50));
    let events = net.events(server);
    let client_id = net.nodes[client].ep.config().identity.node_id();
    assert_eq!(
        events,
        vec![Seen::Message(
            id,
            client_id,
            b"hello".to_vec(),
            net.addr_of(client)
        )]
    );
    assert_eq!(
        net.nodes[server].stats().sessions.load(Ordering::Relaxed),
        1
    );
    assert_eq!(net.nodes[server].stats().pending.load(Ordering::Relaxed), 0);
    assert_eq!(net.nodes[server].ep.config().directory.holder(id), Some(0));
}

#[test]
fn a_datagram_for_another_shard_is_forwarded_to_its_owner() {
    let start = Instant::now();
    let limits = Limits {
        shards: 2,
        ..Limits::default()
    };
    let counters = TransportCounters::new(addr(1));
    let mut ep = Endpoint::new(0, config(1, &NETWORK, limits, start), Box::new(Counter(1)));
    ep.add_link(Link {
        kind: "test",
        reliable: false,
        max_datagram: Some(1472),
        sharded: true,
        counters,
    });
    let mut out = Collect::default();
    // A session id owned by shard 1 (odd low byte).
    let mut header = [0u8; crate::frame::HEADER_LEN];
    crate::frame::Header {
        frame_type: FrameType::Data,
        flags: crate::frame::Flags::default(),
        session_id: SessionId(0x0101),
        stream_id: 0,
        packet_number: 5,
        payload_len: 16,
    }
    .encode(&mut header);
    let mut datagram = header.to_vec();
    datagram.extend_from_slice(&[0u8; 16]);
    let routed = ep.handle(start, 0, addr(9), &mut datagram, &mut out);
    assert!(
        matches!(
            routed,
            Routed::Forward {
                owner: 1,
                path: None
            }
        ),
        "{routed:?}"
    );
    // On its owner it is handled (here: dropped, no such session).
    let mut owner = Endpoint::new(1, config(2, &NETWORK, limits, start), Box::new(Counter(2)));
    let counters = TransportCounters::new(addr(2));
    owner.add_link(Link {
        kind: "test",
        reliable: false,
        max_datagram: Some(1472),
        sharded: true,
        counters: counters.clone(),
    });
    let routed = owner.handle(start, 0, addr(9), &mut datagram, &mut out);
    assert!(matches!(routed, Routed::Done));
    assert!(out.sent.is_empty());
    assert_eq!(counters.snapshot().packets_dropped, 1);
}

#[test]
fn session_ids_belong_to_the_shard_that_made_them() {
    let start = Instant::now();
    let limits = Limits {
        shards: 3,
        ..Limits::default()
    };
    for shard in 0..3 {
        let mut ep = Endpoint::new(
            shard,
            config(1, &NETWORK, limits, start),
            Box::new(Counter(9)),
        );
        for _ in 0..100 {
            let id = ep.new_session_id().expect("an id");
            assert_eq!(ep.config().directory.owner(id), shard);
        }
    }
}

#[test]
fn an_idle_session_closes_and_lets_go_of_everything() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    // The client vanishes.
    net.at.retain(|_, n| *n != client);
    net.down.push(client);
    net.run(Duration::from_secs(60));
    assert!(net
        .events(server)
        .iter()
        .any(|e| matches!(e, Seen::Closed(s, CloseReason::IdleTimeout) if *s == id)));
    assert_eq!(net.nodes[server].ep.len(), 0);
    assert_eq!(
        net.nodes[server].stats().sessions.load(Ordering::Relaxed),
        0
    );
    assert_eq!(net.nodes[server].ep.config().directory.holder(id), None);
}

#[test]
fn a_reliable_link_learns_which_peers_authenticated() {
    let mut net = Net::new();
    let server = net.add(&NETWORK, Limits::default());
    let client = net.add(&NETWORK, Limits::default());
    // Both links reliable (WebSocket connections).
    net.nodes[server].ep.links[0].reliable = true;
    net.nodes[client].ep.links[0].reliable = true;
    let id = net.connect(client, server);
    net.run(Duration::from_millis(200));
    let first = net.addr_of(client);
    assert_eq!(net.nodes[server].out.authenticated, vec![first]);
    // A peer that sends junk, or fails the handshake, is never reported.
    let outsider = net.add(&[9; 32], Limits::default());
    net.connect(outsider, server);
    net.run(Duration::from_secs(1));
    assert_eq!(net.nodes[server].out.authenticated.len(), 1);
    // The client moves; once validated, the new connection is reported too.
    let moved = addr(5558);
    net.rebind(client, moved);
    for _ in 0..2 {
        net.send(client, id, b"moved");
        net.run(Duration::from_millis(100));
    }
    assert_eq!(net.nodes[server].out.authenticated, vec![first, moved]);
}
