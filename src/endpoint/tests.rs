//! Endpoints over a virtual network: no sockets, no sleeps, a clock that
//! jumps. Admission, cookies, the pending limit, path validation and
//! migration, with spoofed sources, floods, loss and copies.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::counters::TransportCounters;
use crate::crypto::{CookieKey, Identity, Msg1Check, NetworkKey};
use crate::frame::FrameType;
use crate::session::{CloseReason, SessionConfig, Transmits};
use crate::stream::MemoryBudget;

/// A deterministic id source.
struct Counter(u64);

impl IdSource for Counter {
    fn fill(&mut self, buf: &mut [u8]) -> bool {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (self.0 >> ((i % 8) * 8)) as u8;
        }
        true
    }
}

/// What an endpoint produced, owned.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Established(SessionId, NodeId),
    Message(SessionId, NodeId, Vec<u8>, SocketAddr),
    Closed(SessionId, CloseReason),
}

/// An [`Output`] that keeps everything.
#[derive(Default)]
struct Collect {
    sent: Vec<(SocketAddr, Vec<u8>)>,
    events: Vec<Seen>,
}

impl Output for Collect {
    fn transmit(&mut self, path: &Path, datagrams: &mut Transmits) {
        for d in datagrams.iter() {
            self.sent.push((path.peer, d.to_vec()));
        }
    }

    fn event(&mut self, event: Event<'_>) {
        self.events.push(match event {
            Event::Established { id, peer, .. } => Seen::Established(id, peer),
            Event::Message {
                id,
                peer,
                payload,
                path,
                ..
            } => Seen::Message(id, peer, payload, path.peer),
            Event::Closed { id, reason, .. } => Seen::Closed(id, reason),
        });
    }
}

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], n))
}

/// Limits of a test node.
#[derive(Clone, Copy)]
struct Limits {
    shards: usize,
    max_sessions: usize,
    max_pending: usize,
    cookie_threshold: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            shards: 1,
            max_sessions: 1000,
            max_pending: 1000,
            cookie_threshold: 1000,
        }
    }
}

fn config(seed: u8, network: &[u8; 32], limits: Limits, start: Instant) -> Arc<EndpointConfig> {
    let network = NetworkKey::from_seed(network).expect("network seed");
    let msg1_check = Msg1Check::new(&network);
    Arc::new(EndpointConfig {
        identity: Identity::from_seed(&[seed; 32]).expect("node seed"),
        network,
        session: SessionConfig::default(),
        accepting: AtomicBool::new(true),
        max_sessions_per_shard: limits.max_sessions,
        max_pending_per_shard: limits.max_pending,
        cookie_threshold_per_shard: limits.cookie_threshold,
        budget: MemoryBudget::new(1 << 24),
        cookie_key: CookieKey::from_secret(&[seed; 32]),
        msg1_check,
        started: start,
        directory: Directory::new(limits.shards),
        payloads: None,
        stats: EndpointStats::default(),
    })
}

/// One node of the virtual network: an endpoint with one UDP-like link.
struct TestNode {
    ep: Endpoint,
    out: Collect,
    counters: Arc<TransportCounters>,
}

impl TestNode {
    fn new(seed: u8, network: &[u8; 32], limits: Limits, start: Instant) -> Self {
        let counters = TransportCounters::new(addr(1));
        let mut ep = Endpoint::new(
            0,
            config(seed, network, limits, start),
            Box::new(Counter(seed as u64)),
        );
        ep.add_link(Link {
            kind: "test",
            reliable: false,
            max_datagram: Some(1472),
            sharded: true,
            counters: counters.clone(),
        });
        TestNode {
            ep,
            out: Collect::default(),
            counters,
        }
    }

    fn dropped(&self) -> u64 {
        self.counters.snapshot().packets_dropped
    }

    fn stats(&self) -> &EndpointStats {
        &self.ep.config().stats
    }
}

/// A datagram in flight.
struct Packet {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// Nodes over a virtual network with one-way `latency`, dropping a
/// `loss` share of datagrams by a fixed pseudo-random sequence.
struct Net {
    now: Instant,
    start: Instant,
    latency: Duration,
    loss: f64,
    rng: u64,
    nodes: Vec<TestNode>,
    /// Which node receives at each address.
    at: HashMap<SocketAddr, usize>,
    /// The address each node's datagrams come from.
    from: Vec<SocketAddr>,
    flight: BTreeMap<(Instant, u64), Packet>,
    seq: u64,
    /// Bytes delivered to addresses no node listens on.
    elsewhere: HashMap<SocketAddr, usize>,
    /// Nodes cut off: what they send is lost.
    down: Vec<usize>,
}

const NETWORK: [u8; 32] = [42; 32];

impl Net {
    fn new() -> Self {
        let now = Instant::now();
        Net {
            now,
            start: now,
            latency: Duration::from_millis(10),
            loss: 0.0,
            rng: 7,
            nodes: Vec::new(),
            at: HashMap::new(),
            from: Vec::new(),
            flight: BTreeMap::new(),
            seq: 0,
            elsewhere: HashMap::new(),
            down: Vec::new(),
        }
    }

    /// Adds a node of network `network`; returns its index.
    fn add(&mut self, network: &[u8; 32], limits: Limits) -> usize {
        let i = self.nodes.len();
        let a = addr(1000 + i as u16);
        self.nodes
            .push(TestNode::new(i as u8 + 1, network, limits, self.start));
        self.at.insert(a, i);
        self.from.push(a);
        i
    }

    fn addr_of(&self, node: usize) -> SocketAddr {
        self.from[node]
    }

    /// Node `node` now sends from (and receives at) `a` as well.
    fn rebind(&mut self, node: usize, a: SocketAddr) {
        self.at.insert(a, node);
        self.from[node] = a;
    }

    fn connect(&mut self, client: usize, server: usize) -> SessionId {
        let path = self.nodes[client]
            .ep
            .path(0, self.addr_of(server))
            .expect("link 0");
        let now = self.now;
        let node = &mut self.nodes[client];
        let id = node.ep.connect(now, path, &mut node.out).expect("connect");
        self.collect();
        id
    }

    fn chance(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 1_000_000) as f64 / 1_000_000.0
    }

    /// Moves what the nodes sent onto the wire.
    fn collect(&mut self) {
        for i in 0..self.nodes.len() {
            let sent = std::mem::take(&mut self.nodes[i].out.sent);
            if self.down.contains(&i) {
                continue;
            }
            for (to, bytes) in sent {
                if self.loss > 0.0 && self.chance() < self.loss {
                    continue;
                }
                self.inject(self.from[i], to, bytes);
            }
        }
    }

    /// Puts a datagram on the wire as if sent from `from` (any address).
    fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.inject_after(self.latency, from, to, bytes);
    }

    /// [`inject`](Self::inject), arriving after `delay`.
    fn inject_after(&mut self, delay: Duration, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.seq += 1;
        self.flight
            .insert((self.now + delay, self.seq), Packet { from, to, bytes });
    }

    /// Runs the network for `span` of virtual time.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            self.collect();
            let next_packet = self.flight.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .nodes
                .iter_mut()
                .filter_map(|n| n.ep.poll_timeout())
                .min();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            while let Some(entry) = self.flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let p = entry.remove();
                match self.at.get(&p.to) {
                    Some(&i) => {
                        let node = &mut self.nodes[i];
                        let mut bytes = p.bytes;
                        let routed = node.ep.handle(now, 0, p.from, &mut bytes, &mut node.out);
                        assert!(matches!(routed, Routed::Done), "{routed:?}");
                    }
                    None => *self.elsewhere.entry(p.to).or_default() += p.bytes.len(),
                }
            }
            for node in &mut self.nodes {
                if node.ep.poll_timeout().is_some_and(|t| t <= now) {
                    node.ep.handle_timeout(now, &mut node.out);
                }
            }
        }
        self.now = end;
    }

    fn events(&mut self, node: usize) -> Vec<Seen> {
        std::mem::take(&mut self.nodes[node].out.events)
    }

    fn send(&mut self, node: usize, id: SessionId, payload: &[u8]) {
        let now = self.now;
        let n = &mut self.nodes[node];
        n.ep.send(now, id, 0, FrameType::Data, payload, &mut n.out)
            .expect("send");
        self.collect();
    }

    /// A client of `server` whose session is established on both sides.
    fn established_pair(&mut self) -> (usize, usize, SessionId) {
        let server = self.add(&NETWORK, Limits::default());
        let client = self.add(&NETWORK, Limits::default());
        let id = self.connect(client, server);
        self.run(Duration::from_millis(200));
        assert!(
            self.events(client)
                .iter()
                .any(|e| matches!(e, Seen::Established(s, _) if *s == id)),
            "client established"
        );
        assert!(
            self.events(server)
                .iter()
                .any(|e| matches!(e, Seen::Established(s, _) if *s == id)),
            "server established"
        );
        (server, client, id)
    }
}

fn messages(events: &[Seen]) -> Vec<(Vec<u8>, SocketAddr)> {
    events
        .iter()
        .filter_map(|e| match e {
            Seen::Message(_, _, p, from) => Some((p.clone(), *from)),
            _ => None,
        })
        .collect()
}

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
fn a_session_follows_its_peer_to_a_new_address_once_validated() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    // NAT rebinding: the client's datagrams now come from another port.
    let moved = addr(5555);
    net.rebind(client, moved);
    net.send(client, id, b"from the new address");
    net.run(Duration::from_millis(100));
    // Delivered at once; the session stays on the old path until the new
    // one is validated.
    let got = messages(&net.events(server));
    assert_eq!(got, vec![(b"from the new address".to_vec(), addr(1001))]);
    // The probe's pong came back; the next datagram along the path moves
    // the session, and the server answers there.
    net.send(client, id, b"again");
    net.run(Duration::from_millis(100));
    let got = messages(&net.events(server));
    assert_eq!(got, vec![(b"again".to_vec(), moved)]);
    net.nodes[server].out.sent.clear();
    let now = net.now;
    let node = &mut net.nodes[server];
    node.ep
        .send(now, id, 0, FrameType::Data, b"to you", &mut node.out)
        .expect("send");
    assert_eq!(node.out.sent.len(), 1);
    assert_eq!(node.out.sent[0].0, moved);
}

#[test]
fn a_copied_datagram_from_a_forged_address_does_not_move_the_session() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    // An on-path attacker copies every datagram of the client and sends
    // the copy first, from a victim's address.
    let victim = addr(6666);
    let server_addr = net.addr_of(server);
    let mut copied = 0;
    for i in 0..20 {
        net.send(client, id, format!("message {i}").as_bytes());
        let original = net.flight.values().last().expect("in flight").bytes.clone();
        copied += original.len();
        net.inject_after(Duration::from_millis(1), victim, server_addr, original);
        net.run(Duration::from_millis(30));
    }
    // Every message arrived once, from the client's real address.
    let got = messages(&net.events(server));
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|(_, from)| *from == net.addr_of(client)));
    // The server still answers the client, not the victim.
    net.nodes[server].out.sent.clear();
    let now = net.now;
    let node = &mut net.nodes[server];
    node.ep
        .send(now, id, 0, FrameType::Data, b"reply", &mut node.out)
        .expect("send");
    assert_eq!(node.out.sent[0].0, net.from[client]);
    // The victim received probes only, within 3x what was sent in its name.
    let to_victim = net.elsewhere.get(&victim).copied().unwrap_or(0);
    assert!(to_victim > 0, "the forged path was probed");
    assert!(
        to_victim <= 3 * copied,
        "{to_victim} bytes to the victim, {copied} copied"
    );
}

#[test]
fn probes_of_a_forged_path_stay_within_three_times_what_came_along_it() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    let victim = addr(7777);
    let server_addr = net.addr_of(server);
    net.send(client, id, b"x");
    let copy = net.flight.values().last().expect("in flight").bytes.clone();
    net.run(Duration::from_millis(30));
    // The same copy, replayed 50 times from the victim's address: only the
    // first authenticates (the replay window drops the rest), so the
    // victim's budget is three times one datagram.
    for _ in 0..50 {
        net.inject(victim, server_addr, copy.clone());
    }
    net.run(Duration::from_secs(30));
    let to_victim = net.elsewhere.get(&victim).copied().unwrap_or(0);
    assert!(
        to_victim <= 3 * copy.len(),
        "{to_victim} > 3 x {}",
        copy.len()
    );
    assert!(net.nodes[server].dropped() >= 49);
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
