//! Endpoints over a virtual network: no sockets, no sleeps, a clock that
//! jumps. This file is the network (`Net`, nodes, an output that keeps
//! everything); the tests are in the files beside it.

mod admission;
mod paths;
mod routing;
mod tokens;

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

impl Random for Counter {
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
    /// Peers reported authenticated on a reliable link.
    authenticated: Vec<SocketAddr>,
    /// The token client (id, data) of each message that had one.
    clients: Vec<(SessionId, u64, Vec<u8>)>,
    /// Sessions of other shards to close, replaced by their token's newest.
    replaced_elsewhere: Vec<(usize, SessionId)>,
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
                client,
                ..
            } => {
                if let Some(c) = client {
                    self.clients.push((id, c.client_id, c.data.clone()));
                }
                Seen::Message(id, peer, payload, path.peer)
            }
            Event::Closed { id, reason, .. } => Seen::Closed(id, reason),
            Event::Authenticated { path } => {
                self.authenticated.push(path.peer);
                return;
            }
            Event::Replaced { shard, id, .. } => {
                self.replaced_elsewhere.push((shard, id));
                return;
            }
        });
    }
}

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], n))
}

/// Limits of a test node.
#[derive(Clone, Copy)]
struct Limits {
    quotas: QuotaConfig,
    shards: usize,
    max_sessions: usize,
    max_pending: usize,
    cookie_threshold: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            quotas: QuotaConfig::default(),
            shards: 1,
            max_sessions: 1000,
            max_pending: 1000,
            cookie_threshold: 1000,
        }
    }
}

fn config(seed: u8, network: &[u8; 32], limits: Limits, start: Instant) -> Arc<EndpointConfig> {
    config_with(seed, network, limits, start, None)
}

fn config_with(
    seed: u8,
    network: &[u8; 32],
    limits: Limits,
    start: Instant,
    authorize: Option<Authorize>,
) -> Arc<EndpointConfig> {
    config_full(seed, Some(network), limits, start, authorize, None)
}

/// The wall clock of the virtual network: it starts at `WALL_START` and
/// runs with the virtual clock.
fn wall_clock(start: Instant) -> super::config::WallClock {
    Arc::new(move |now: Instant| *WALL_START + now.saturating_duration_since(start).as_secs())
}

/// The virtual network's wall clock at its start: the real clock, so that
/// message 1s (stamped by the real clock) are fresh.
static WALL_START: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(crate::crypto::handshake::unix_now);

/// A node's configuration: of network `network` (`None`: no shared seed,
/// a connect-token client), accepting `tokens`.
fn config_full(
    seed: u8,
    network: Option<&[u8; 32]>,
    limits: Limits,
    start: Instant,
    authorize: Option<Authorize>,
    tokens: Option<crate::token::TokenConfig>,
) -> Arc<EndpointConfig> {
    let network = network.map(|n| NetworkKey::from_seed(n).expect("network seed"));
    let msg1_check = Msg1Check::new(
        &network
            .clone()
            .unwrap_or_else(|| NetworkKey::from_client_key(&[seed; 32])),
    );
    let tokens = tokens.map(|t| crate::token::TokenGate::new(&t, network.as_ref()));
    Arc::new(EndpointConfig {
        identity: Identity::from_seed(&[seed; 32]).expect("node seed"),
        network,
        tokens,
        wall_clock: wall_clock(start),
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
        authorize,
        quotas: Quotas::new(limits.quotas),
    })
}

/// One node of the virtual network: an endpoint with one UDP-like link.
struct TestNode {
    ep: Endpoint,
    out: Collect,
    counters: Arc<TransportCounters>,
}

impl TestNode {
    fn new(config: Arc<EndpointConfig>, seed: u8) -> Self {
        let counters = TransportCounters::new(addr(1));
        let mut ep = Endpoint::new(0, config, Box::new(Counter(seed as u64)));
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
        self.add_with(network, limits, None)
    }

    /// [`add`](Self::add) with an authorisation hook.
    fn add_with(
        &mut self,
        network: &[u8; 32],
        limits: Limits,
        authorize: Option<Authorize>,
    ) -> usize {
        let seed = self.nodes.len() as u8 + 1;
        self.add_config(config_with(seed, network, limits, self.start, authorize))
    }

    /// Adds a node made with `config` (of seed: its index + 1).
    fn add_config(&mut self, config: Arc<EndpointConfig>) -> usize {
        let i = self.nodes.len();
        let a = addr(1000 + i as u16);
        self.nodes.push(TestNode::new(config, i as u8 + 1));
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
        self.connect_to(client, server, None)
    }

    /// Opens a session from `client` to `server` with connect token
    /// `token`.
    fn connect_token(
        &mut self,
        client: usize,
        server: usize,
        token: &crate::token::ConnectToken,
    ) -> SessionId {
        self.open(client, server, None, Some(token))
    }

    /// Opens a session from `client` to `server`, only with node `expect`.
    fn connect_to(&mut self, client: usize, server: usize, expect: Option<NodeId>) -> SessionId {
        self.open(client, server, expect, None)
    }

    /// Opens a session from `client` to `server`: only with node `expect`,
    /// with connect token `token`, when given.
    fn open(
        &mut self,
        client: usize,
        server: usize,
        expect: Option<NodeId>,
        token: Option<&crate::token::ConnectToken>,
    ) -> SessionId {
        let path = self.nodes[client]
            .ep
            .path(0, self.addr_of(server))
            .expect("link 0");
        let now = self.now;
        let node = &mut self.nodes[client];
        let id = node
            .ep
            .connect(now, path, expect, token, &mut node.out)
            .expect("connect");
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
