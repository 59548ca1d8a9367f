//! Admission in virtual time: handshakes through loss, outsiders, cookies
//! under load, echoes from forged addresses, the pending limit, a node that
//! stops accepting.

use super::*;
use crate::endpoint::QuotaConfig;

#[test]
fn a_handshake_completes_through_thirty_percent_loss() {
    let mut net = Net::new();
    net.loss = 0.3;
    let server = net.add(&NETWORK, Limits::default());
    let mut established = 0;
    for _ in 0..10 {
        let client = net.add(&NETWORK, Limits::default());
        let id = net.connect(client, server);
        net.run(Duration::from_secs(8));
        if net
            .events(client)
            .iter()
            .any(|e| matches!(e, Seen::Established(s, _) if *s == id))
        {
            established += 1;
        }
    }
    // Message 1 is retransmitted with backoff for the handshake timeout;
    // all but the unluckiest complete.
    assert!(established >= 8, "{established} of 10");
}

#[test]
fn outsiders_get_silence_and_no_state() {
    let mut net = Net::new();
    let server = net.add(&NETWORK, Limits::default());
    let outsider = net.add(&[9; 32], Limits::default());
    net.connect(outsider, server);
    // Junk of every length, too.
    for len in [0usize, 1, 20, 21, 100, 1200] {
        let from = net.addr_of(outsider);
        let to = net.addr_of(server);
        net.inject(from, to, vec![0xA5; len]);
    }
    net.run(Duration::from_secs(1));
    assert_eq!(net.nodes[server].ep.len(), 0);
    assert!(net.nodes[server].out.sent.is_empty());
    assert!(net.events(outsider).is_empty());
    // Message 1 and its retransmissions, and the junk: all counted.
    assert!(
        net.nodes[server].dropped() >= 7,
        "{}",
        net.nodes[server].dropped()
    );
}

#[test]
fn under_load_a_cookie_is_asked_and_echoed_from_the_same_address() {
    let mut net = Net::new();
    let server = net.add(
        &NETWORK,
        Limits {
            cookie_threshold: 0,
            ..Limits::default()
        },
    );
    let client = net.add(&NETWORK, Limits::default());
    let id = net.connect(client, server);
    net.run(Duration::from_millis(300));
    assert!(net
        .events(server)
        .iter()
        .any(|e| matches!(e, Seen::Established(s, _) if *s == id)));
    let stats = net.nodes[server].stats();
    assert_eq!(stats.cookie_challenges.load(Ordering::Relaxed), 1);
    assert_eq!(stats.handshakes_refused.load(Ordering::Relaxed), 0);
}

#[test]
fn a_cookie_echo_from_another_address_is_refused() {
    let mut net = Net::new();
    let server = net.add(
        &NETWORK,
        Limits {
            cookie_threshold: 0,
            ..Limits::default()
        },
    );
    let client = net.add(&NETWORK, Limits::default());
    net.connect(client, server);
    // Message 1 reaches the server; its challenge reaches the client.
    net.run(Duration::from_millis(25));
    assert_eq!(
        net.nodes[server]
            .stats()
            .cookie_challenges
            .load(Ordering::Relaxed),
        1
    );
    // The client's echo is captured and replayed from a forged address
    // before the genuine one lands.
    let echo = net.flight.values().last().expect("an echo").bytes.clone();
    let forged = addr(4444);
    let server_addr = net.addr_of(server);
    net.inject_after(Duration::from_millis(1), forged, server_addr, echo);
    net.run(Duration::from_millis(3));
    let stats = net.nodes[server].stats();
    assert_eq!(stats.handshakes_refused.load(Ordering::Relaxed), 1);
    // The forged source got nothing but a fresh challenge at most (bounded
    // by what it sent); no session was made for it.
    assert_eq!(net.nodes[server].ep.len(), 0);
    net.run(Duration::from_millis(300));
    assert_eq!(
        net.nodes[server].ep.len(),
        1,
        "the genuine echo still works"
    );
}

#[test]
fn the_pending_limit_refuses_handshakes_beyond_it() {
    let mut net = Net::new();
    let server = net.add(
        &NETWORK,
        Limits {
            max_pending: 3,
            ..Limits::default()
        },
    );
    // Clients whose message 3 never arrives: their message 2 is lost.
    let clients: Vec<usize> = (0..6)
        .map(|_| net.add(&NETWORK, Limits::default()))
        .collect();
    for &c in &clients {
        net.connect(c, server);
    }
    // Deliver the message 1s only.
    net.run(Duration::from_millis(11));
    net.flight.clear();
    for c in &clients {
        net.nodes[*c].out.sent.clear();
    }
    let stats = net.nodes[server].stats();
    assert_eq!(net.nodes[server].ep.pending(), 3);
    assert_eq!(stats.pending.load(Ordering::Relaxed), 3);
    assert_eq!(stats.handshakes_refused.load(Ordering::Relaxed), 3);
    // The pending handshakes time out and free their places.
    net.nodes[server].out.sent.clear();
    net.at.clear();
    net.run(Duration::from_secs(20));
    assert_eq!(net.nodes[server].ep.pending(), 0);
    assert_eq!(net.nodes[server].ep.len(), 0);
    assert_eq!(net.nodes[server].stats().pending.load(Ordering::Relaxed), 0);
    assert_eq!(
        net.nodes[server].stats().sessions.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn a_refused_node_stops_accepting_but_keeps_its_sessions() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    net.nodes[server]
        .ep
        .config()
        .accepting
        .store(false, Ordering::Relaxed);
    let late = net.add(&NETWORK, Limits::default());
    net.connect(late, server);
    net.send(client, id, b"still here");
    net.run(Duration::from_millis(500));
    assert_eq!(net.nodes[server].ep.len(), 1);
    assert_eq!(messages(&net.events(server)).len(), 1);
    assert!(!net
        .events(late)
        .iter()
        .any(|e| matches!(e, Seen::Established(..))));
}

fn node_id(net: &Net, node: usize) -> NodeId {
    net.nodes[node].ep.config().identity.node_id()
}

#[test]
fn a_pinned_connect_to_another_node_ends_before_message_3() {
    let mut net = Net::new();
    let server = net.add(&NETWORK, Limits::default());
    let client = net.add(&NETWORK, Limits::default());
    let someone_else = Identity::from_seed(&[0xEE; 32]).expect("seed").node_id();
    let id = net.connect_to(client, server, Some(someone_else));
    net.run(Duration::from_secs(1));
    let got = node_id(&net, server);
    assert_eq!(
        net.events(client),
        vec![Seen::Closed(
            id,
            CloseReason::UnexpectedPeer {
                expected: someone_else,
                got
            }
        )]
    );
    // No message 3: the server never learnt the client's identity, and
    // reports nothing.
    assert!(net.events(server).is_empty());
    assert_eq!(net.nodes[server].ep.pending(), 1);
    // Pinned to the right node, it opens.
    let id = net.connect_to(client, server, Some(got));
    net.run(Duration::from_secs(1));
    assert!(net
        .events(client)
        .iter()
        .any(|e| matches!(e, Seen::Established(s, p) if *s == id && *p == got)));
}

#[test]
fn the_authorisation_hook_refuses_before_establishment() {
    use std::sync::Mutex;
    let mut net = Net::new();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let banned = Identity::from_seed(&[2; 32]).expect("seed").node_id();
    let log = asked.clone();
    let hook: Authorize = Arc::new(move |node, addr, _| {
        log.lock().expect("lock").push((node, addr));
        node != banned
    });
    let server = net.add_with(&NETWORK, Limits::default(), Some(hook));
    // Node seeds are index + 1: node 1 has seed [2; 32], the banned one.
    let refused = net.add(&NETWORK, Limits::default());
    assert_eq!(node_id(&net, refused), banned);
    let id = net.connect(refused, server);
    net.run(Duration::from_secs(1));
    // The client learns it was refused, and is never established.
    let events = net.events(refused);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        &events[0],
        Seen::Closed(s, CloseReason::Peer { code, .. }) if *s == id && *code == crate::frame::close_code::REFUSED
    ));
    // The server's application never hears of it; the refusal is counted.
    assert!(net.events(server).is_empty());
    assert_eq!(net.nodes[server].ep.len(), 0);
    assert_eq!(
        net.nodes[server]
            .stats()
            .peers_refused
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(
        asked.lock().expect("lock").as_slice(),
        &[(banned, net.addr_of(refused))]
    );
    // Another member is let in.
    let welcome = net.add(&NETWORK, Limits::default());
    let id = net.connect(welcome, server);
    net.run(Duration::from_secs(1));
    assert!(net
        .events(server)
        .iter()
        .any(|e| matches!(e, Seen::Established(s, _) if *s == id)));
}

#[test]
fn one_address_cannot_take_every_pending_handshake() {
    let mut net = Net::new();
    let server = net.add(
        &NETWORK,
        Limits {
            quotas: QuotaConfig {
                pending_per_address: 3,
                ..QuotaConfig::default()
            },
            ..Limits::default()
        },
    );
    // Five clients behind one address (ports differ), whose message 3 never
    // comes: three pending, two refused.
    let clients: Vec<usize> = (0..5)
        .map(|_| net.add(&NETWORK, Limits::default()))
        .collect();
    for (i, &c) in clients.iter().enumerate() {
        net.rebind(c, SocketAddr::from(([127, 0, 0, 9], 2000 + i as u16)));
        net.connect(c, server);
    }
    net.run(Duration::from_millis(11));
    net.flight.clear();
    for c in &clients {
        net.nodes[*c].out.sent.clear();
    }
    assert_eq!(net.nodes[server].ep.pending(), 3);
    assert_eq!(
        net.nodes[server]
            .ep
            .config()
            .quotas
            .refused
            .load(Ordering::Relaxed),
        2
    );
    // Another address still gets in.
    let other = net.add(&NETWORK, Limits::default());
    let id = net.connect(other, server);
    net.run(Duration::from_millis(200));
    assert!(net
        .events(server)
        .iter()
        .any(|e| matches!(e, Seen::Established(s, _) if *s == id)));
    // The stuck handshakes time out and their charges are given back.
    net.at.retain(|_, n| !clients.contains(n));
    net.run(Duration::from_secs(20));
    assert_eq!(net.nodes[server].ep.pending(), 0);
    let c = clients[0];
    net.at.insert(net.addr_of(c), c);
    let id = net.connect(c, server);
    net.run(Duration::from_millis(200));
    assert!(
        net.events(server)
            .iter()
            .any(|e| matches!(e, Seen::Established(s, _) if *s == id)),
        "the address has room again"
    );
}

#[test]
fn one_member_cannot_fill_the_session_table() {
    let mut net = Net::new();
    let server = net.add(
        &NETWORK,
        Limits {
            quotas: QuotaConfig {
                sessions_per_peer: 2,
                ..QuotaConfig::default()
            },
            ..Limits::default()
        },
    );
    let member = net.add(&NETWORK, Limits::default());
    let ids: Vec<SessionId> = (0..4).map(|_| net.connect(member, server)).collect();
    net.run(Duration::from_secs(1));
    let events = net.events(member);
    let opened = events
        .iter()
        .filter(|e| matches!(e, Seen::Established(..)))
        .count();
    let refused = events
        .iter()
        .filter(|e| matches!(e, Seen::Closed(_, CloseReason::Peer { code, .. }) if *code == crate::frame::close_code::REFUSED))
        .count();
    assert_eq!((opened, refused), (2, 2), "{events:?}");
    assert_eq!(net.nodes[server].ep.len(), 2);
    assert_eq!(
        net.nodes[server]
            .ep
            .config()
            .quotas
            .refused
            .load(Ordering::Relaxed),
        2
    );
    // Closing one makes room for another.
    let open = ids
        .iter()
        .copied()
        .find(|id| net.nodes[member].ep.has(*id))
        .expect("an open session");
    let now = net.now;
    let n = &mut net.nodes[member];
    n.ep.close(now, open, 0, "done", &mut n.out);
    net.run(Duration::from_secs(5));
    let again = net.connect(member, server);
    net.run(Duration::from_secs(1));
    assert!(net
        .events(member)
        .iter()
        .any(|e| matches!(e, Seen::Established(s, _) if *s == again)));
}

#[test]
fn a_reliable_connection_carries_few_pending_handshakes() {
    let mut net = Net::new();
    let server = net.add(
        &NETWORK,
        Limits {
            quotas: QuotaConfig {
                pending_per_connection: 2,
                ..QuotaConfig::default()
            },
            ..Limits::default()
        },
    );
    // The server's link is reliable (a WebSocket connection): no cookies,
    // so only the per-connection bound stops one connection's message 1s.
    net.nodes[server].ep.links[0].reliable = true;
    let client = net.add(&NETWORK, Limits::default());
    for _ in 0..5 {
        net.connect(client, server);
    }
    net.run(Duration::from_millis(11));
    assert_eq!(net.nodes[server].ep.pending(), 2);
    assert_eq!(
        net.nodes[server]
            .ep
            .config()
            .quotas
            .refused
            .load(Ordering::Relaxed),
        3
    );
}

#[test]
fn a_captured_message_1_makes_state_once_per_node() {
    let mut net = Net::new();
    let server = net.add(&NETWORK, Limits::default());
    let client = net.add(&NETWORK, Limits::default());
    // Capture the client's message 1; none of its datagrams arrive.
    net.down = vec![client];
    let path = net.nodes[client]
        .ep
        .path(0, net.addr_of(server))
        .expect("link 0");
    let now = net.now;
    let node = &mut net.nodes[client];
    node.ep
        .connect(now, path, None, None, &mut node.out)
        .expect("connect");
    let msg1 = node.out.sent[0].1.clone();
    net.collect();
    let to = net.addr_of(server);
    // Replayed once: a pending handshake, until the handshake timeout.
    net.inject(addr(900), to, msg1.clone());
    net.run(Duration::from_secs(12));
    assert_eq!(net.nodes[server].ep.len(), 0);
    let refused = |net: &Net| {
        net.nodes[server]
            .stats()
            .handshakes_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = refused(&net);
    // Replayed again, from anywhere: refused and counted, no state, no answer.
    net.nodes[server].out.sent.clear();
    for i in 0..5 {
        net.inject(addr(901 + i), to, msg1.clone());
    }
    net.run(Duration::from_millis(100));
    assert_eq!(net.nodes[server].ep.len(), 0);
    assert_eq!(refused(&net), before + 5);
}
