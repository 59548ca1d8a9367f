//! The node: what applications use.
//!
//! A [`Node`] has an identity (its `node_seed`) and a network membership (the
//! `shared_seed`). It runs one reactor thread per core; each owns a UDP socket
//! of a `SO_REUSEPORT` group and a shard of the sessions. The application
//! talks to the reactors through command queues, and receives what arrives
//! through a bounded channel ([`Node::events`]) that any number of its own
//! worker threads may drain: a slow consumer never stalls I/O; when the
//! channel is full, UDP messages are dropped and counted in `packets_dropped`.
//!
//! ```no_run
//! use stt::node::{Node, NodeConfig, NodeEvent};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Node::start(NodeConfig::new(b"server node seed: 32 bytes or more", b"network shared seed, 32+ bytes!!"))?;
//! let addr = server.udp_local_addr().expect("UDP is on");
//!
//! let client = Node::start(NodeConfig::new(b"client node seed: 32 bytes or more", b"network shared seed, 32+ bytes!!"))?;
//! let session = client.connect_udp(addr)?;
//! client.send(session.id, b"hello")?;
//! if let Ok(NodeEvent::Message { payload, .. }) = server.events().recv() {
//!     println!("{}", String::from_utf8_lossy(&payload));
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;
use zeroize::Zeroizing;

use crate::crypto::{Identity, NetworkKey, NodeId, SeedError};
use crate::frame::{close_code, FrameType, SessionId};
use crate::reactor::{Command, Dispatch, Reactor, ReactorHandle, Shared};
pub use crate::reactor::{NodeError, NodeEvent, Replies, SessionInfo};
use crate::session::{ConfigError, SessionConfig, SessionStats};
use crate::stream::MemoryBudget;
use crate::transport::udp::{self, UdpConfig, UdpConfigError, UdpSocketInfo};
use crate::transport::ws::{self, WsConfig, WsCounters, WsStats, WsTransport, WsUrl};
use crate::transport::{TransportCounters, TransportError, TransportStats};

/// Everything a node needs to start. `NodeConfig::new` gives the defaults
/// below; each says why.
#[derive(Clone)]
pub struct NodeConfig {
    /// This node's secret identity seed (at least 32 bytes).
    pub node_seed: Zeroizing<Vec<u8>>,
    /// The network's shared secret (at least 32 bytes, the same on every
    /// node of the network).
    pub shared_seed: Zeroizing<Vec<u8>>,
    /// The UDP transport; `None` runs no UDP socket.
    pub udp: Option<UdpConfig>,
    /// Reactor threads. Default: one per available core.
    pub reactors: usize,
    /// Worker threads that run `on_frame` callbacks and handlers (started
    /// when the first one is registered). Default: one per available core.
    pub workers: usize,
    /// Capacity of the channel that hands received messages to the
    /// application. Default 65,536: about 80 MB of 1200-byte messages, a
    /// quarter of a second at 256k messages/s.
    pub queue_depth: usize,
    /// Session tunables (timers, reassembly, AEAD).
    pub session: SessionConfig,
    /// Accept incoming handshakes (server mode). Default true; a client-only
    /// node sets false and only dials.
    pub server_mode: bool,
    /// Most sessions the node holds. Default 100,000.
    pub max_sessions: usize,
    /// Bytes all sessions together may hold in partial fragmented messages.
    /// Default 256 MiB.
    pub reassembly_budget: usize,
    /// Pending incoming handshakes (message 1 answered, message 3 not yet
    /// in) above which a message 1 is answered with a stateless cookie
    /// challenge instead of state: the sender must prove it receives at its
    /// address first (`docs/PROTOCOL.md`, section 10.4). Default 256; 0 asks
    /// every peer for a cookie.
    pub cookie_threshold: usize,
    /// Most pending incoming handshakes the node keeps, cookie or not;
    /// message 1s beyond are dropped and counted. Default 4,096 (each costs
    /// about 2 KiB until it completes or its handshake times out).
    pub max_pending_handshakes: usize,
}

impl NodeConfig {
    /// Defaults with these seeds and UDP on `0.0.0.0:0`.
    pub fn new(node_seed: &[u8], shared_seed: &[u8]) -> Self {
        NodeConfig {
            node_seed: Zeroizing::new(node_seed.to_vec()),
            shared_seed: Zeroizing::new(shared_seed.to_vec()),
            udp: Some(UdpConfig::default()),
            reactors: std::thread::available_parallelism().map_or(1, |n| n.get()),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue_depth: 65_536,
            session: SessionConfig::default(),
            server_mode: true,
            max_sessions: 100_000,
            reassembly_budget: 256 << 20,
            cookie_threshold: 256,
            max_pending_handshakes: 4096,
        }
    }

    /// Sets the UDP configuration.
    pub fn with_udp(mut self, udp: UdpConfig) -> Self {
        self.udp = Some(udp);
        self
    }

    /// Sets the number of reactor threads.
    pub fn with_reactors(mut self, reactors: usize) -> Self {
        self.reactors = reactors;
        self
    }

    /// Sets server mode (accepting incoming handshakes).
    pub fn with_server_mode(mut self, on: bool) -> Self {
        self.server_mode = on;
        self
    }

    /// Sets the session configuration.
    pub fn with_session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("udp", &self.udp)
            .field("reactors", &self.reactors)
            .field("queue_depth", &self.queue_depth)
            .field("session", &self.session)
            .field("server_mode", &self.server_mode)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A seed is unusable.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// The session configuration cannot work.
    #[error("session config: {0}")]
    Session(#[from] ConfigError),
    /// The UDP configuration cannot work.
    #[error("udp config: {0}")]
    Udp(#[from] UdpConfigError),
    /// The transport could not be set up (e.g. the address is in use).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Other settings out of range.
    #[error("invalid node config: {0}")]
    Invalid(&'static str),
    /// A thread or poll could not be created.
    #[error("starting the reactors: {0}")]
    Io(#[from] std::io::Error),
}

/// Names a transport of a node, for [`Node::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportId {
    /// The reactor it lives on, or `None` for the UDP group (on all).
    reactor: Option<usize>,
    index: usize,
}

impl TransportId {
    /// The node's UDP transport (one socket per reactor).
    pub const UDP: TransportId = TransportId {
        reactor: None,
        index: 0,
    };
}

/// The node's WebSocket transports.
#[derive(Debug, Default)]
struct WsState {
    servers: Vec<(TransportId, Arc<WsCounters>)>,
    server_addr: Option<SocketAddr>,
    client: Option<TransportId>,
    client_counters: Option<Arc<WsCounters>>,
}

/// A running node. See the [module docs](self).
pub struct Node {
    node_id: NodeId,
    shared: Arc<Shared>,
    reactors: Vec<ReactorHandle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    events: Receiver<NodeEvent>,
    udp: Option<(UdpSocketInfo, Vec<Arc<TransportCounters>>)>,
    next_reactor: AtomicUsize,
    running: AtomicBool,
    server_mode: bool,
    connect_timeout: Duration,
    ws: Mutex<WsState>,
    work: Receiver<NodeEvent>,
    callbacks: Arc<RwLock<Callbacks>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    worker_count: usize,
}

/// A message as a callback sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The session it arrived on.
    pub session: SessionId,
    /// The stream it was sent on.
    pub stream_id: u32,
    /// DATA or an application type (0x80–0xFF).
    pub frame_type: FrameType,
    /// The message.
    pub payload: Vec<u8>,
}

/// A callback for received messages: the message and the peer's address.
pub type FrameCallback = Arc<dyn Fn(Frame, SocketAddr) + Send + Sync>;

#[derive(Default)]
struct Callbacks {
    on_frame: Option<FrameCallback>,
    handlers: HashMap<u8, FrameCallback>,
}

/// A node's state and counters at one moment (see [`Node::stats`]).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct NodeStats {
    /// The node id, hex.
    pub node_id: String,
    /// Whether the node runs.
    pub running: bool,
    /// Started in server mode.
    pub server_mode: bool,
    /// Accepting incoming handshakes now.
    pub accepting_connections: bool,
    /// Sessions open (any state).
    pub sessions: usize,
    /// UDP traffic, summed over the reactors.
    pub udp: Option<TransportStats>,
    /// WebSocket traffic, summed over the node's WebSocket transports.
    pub websocket: Option<TransportStats>,
    /// WebSocket connection counters (open, accepted, dialled, closed…).
    pub websocket_connections: Option<WsStats>,
    /// Reassembly memory held by all sessions, bytes.
    pub reassembly_bytes: usize,
    /// Incoming handshakes waiting for their message 3.
    pub handshakes_pending: usize,
    /// Cookie challenges sent (message 1s answered statelessly, under
    /// load).
    pub cookie_challenges: u64,
    /// Message 1s and cookie echoes refused: bad or expired cookie, or the
    /// pending-handshake limit reached.
    pub handshakes_refused: u64,
}

impl Node {
    /// Starts a node: derives its keys, binds its sockets, starts its
    /// reactors.
    pub fn start(config: NodeConfig) -> Result<Node, StartError> {
        let identity = Identity::from_seed(&config.node_seed)?;
        let network = NetworkKey::from_seed(&config.shared_seed)?;
        config.session.validate()?;
        if config.reactors == 0 || config.reactors > 256 {
            return Err(StartError::Invalid("reactors must be 1..=256"));
        }
        if config.queue_depth == 0 {
            return Err(StartError::Invalid("queue_depth must be at least 1"));
        }
        let count = config.reactors;
        let mut session = config.session.clone();
        let mut per_reactor: Vec<Vec<Box<dyn crate::transport::Transport>>> =
            (0..count).map(|_| Vec::new()).collect();
        let mut udp_state = None;
        if let Some(udp_config) = &config.udp {
            udp_config.validate()?;
            session.max_datagram_size = Some(udp_config.max_packet_size);
            let (sockets, info) = udp::bind_group(udp_config, count)?;
            let mut counters = Vec::with_capacity(count);
            for (i, socket) in sockets.into_iter().enumerate() {
                let t = udp::open_backend(udp_config, &info, socket)?;
                counters.push(t.counters().clone());
                per_reactor[i].push(t);
            }
            udp_state = Some((info, counters));
        }
        let (events_tx, events) = crossbeam_channel::bounded(config.queue_depth);
        let (work_tx, work) = crossbeam_channel::bounded(config.queue_depth);
        let cookie_key = crate::crypto::CookieKey::generate(&ring::rand::SystemRandom::new())
            .map_err(|_| StartError::Invalid("no randomness for the cookie secret"))?;
        let msg1_check = crate::crypto::Msg1Check::new(&network);
        let shared = Arc::new(Shared {
            node_id: identity.node_id(),
            identity,
            network,
            session_config: session.clone(),
            accepting: AtomicBool::new(config.server_mode),
            max_sessions_per_reactor: config.max_sessions.div_ceil(count).max(1),
            budget: MemoryBudget::new(config.reassembly_budget),
            events: events_tx,
            work: work_tx,
            dispatch: Dispatch::default(),
            stopping: AtomicBool::new(false),
            sessions: AtomicUsize::new(0),
            live: (0..count).map(|_| RwLock::new(HashSet::new())).collect(),
            cookie_key,
            msg1_check,
            started: std::time::Instant::now(),
            cookie_threshold_per_reactor: config.cookie_threshold.div_ceil(count),
            max_pending_per_reactor: config.max_pending_handshakes.div_ceil(count).max(1),
            pending: AtomicUsize::new(0),
            cookie_challenges: AtomicU64::new(0),
            handshakes_refused: AtomicU64::new(0),
            pool: Arc::new(crate::reactor::BufferPool::new()),
            inline: std::sync::OnceLock::new(),
        });
        // Each reactor is built on its own thread, so that its transports
        // register (and an io_uring backend submits its first requests) on
        // the thread that will drive them. The threads report their handles,
        // then wait for everyone's before they run.
        let mut threads = Vec::with_capacity(count);
        let mut ready = Vec::with_capacity(count);
        let mut go = Vec::with_capacity(count);
        for (i, transports) in per_reactor.into_iter().enumerate() {
            let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
            let (go_tx, go_rx) = crossbeam_channel::bounded::<Vec<ReactorHandle>>(1);
            let shared = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("stt-reactor-{i}"))
                .spawn(move || match Reactor::new(i, count, shared, transports) {
                    Ok((mut reactor, handle)) => {
                        let _ = ready_tx.send(Ok(handle));
                        if let Ok(peers) = go_rx.recv() {
                            reactor.set_peers(peers);
                            reactor.run();
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                })?;
            threads.push(t);
            ready.push(ready_rx);
            go.push(go_tx);
        }
        let mut handles = Vec::with_capacity(count);
        let mut failure = None;
        for r in ready {
            match r.recv() {
                Ok(Ok(h)) => handles.push(h),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => {
                    failure = Some(std::io::Error::other(
                        "a reactor thread died while starting",
                    ))
                }
            }
        }
        if let Some(e) = failure {
            // Dropping the go senders lets every started thread exit.
            drop(go);
            for t in threads {
                let _ = t.join();
            }
            return Err(e.into());
        }
        for g in &go {
            let _ = g.send(handles.clone());
        }
        tracing::info!(
            node_id = %shared.node_id,
            udp = ?udp_state.as_ref().map(|(info, _)| info.local_addr),
            reactors = count,
            server_mode = config.server_mode,
            "node started"
        );
        Ok(Node {
            node_id: shared.node_id,
            shared,
            reactors: handles,
            threads: Mutex::new(threads),
            events,
            udp: udp_state,
            next_reactor: AtomicUsize::new(0),
            running: AtomicBool::new(true),
            server_mode: config.server_mode,
            connect_timeout: session.handshake_timeout + Duration::from_secs(1),
            ws: Mutex::new(WsState::default()),
            work,
            callbacks: Arc::new(RwLock::new(Callbacks::default())),
            workers: Mutex::new(Vec::new()),
            worker_count: config.workers.max(1),
        })
    }

    /// This node's id (SHA-256 of its static public key).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Whether the node is running.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Whether the node was started in server mode.
    pub fn server_mode(&self) -> bool {
        self.server_mode
    }

    /// The UDP address the node is bound to (with the port the system chose
    /// for port 0).
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().map(|(info, _)| info.local_addr)
    }

    /// What the kernel granted for the UDP sockets.
    pub fn udp_socket_info(&self) -> Option<UdpSocketInfo> {
        self.udp.as_ref().map(|(info, _)| *info)
    }

    /// UDP statistics, summed over the reactors' sockets.
    pub fn udp_stats(&self) -> Option<TransportStats> {
        let (_, counters) = self.udp.as_ref()?;
        let parts: Vec<TransportStats> = counters.iter().map(|c| c.snapshot()).collect();
        TransportStats::sum(&parts)
    }

    /// UDP statistics of each reactor's socket.
    pub fn udp_stats_per_reactor(&self) -> Vec<TransportStats> {
        self.udp
            .as_ref()
            .map(|(_, c)| c.iter().map(|c| c.snapshot()).collect())
            .unwrap_or_default()
    }

    /// Sessions currently open (in any state).
    pub fn session_count(&self) -> usize {
        self.shared.sessions.load(Ordering::Relaxed)
    }

    /// Starts accepting incoming handshakes.
    pub fn enable_accept_connections(&self) {
        self.shared.accepting.store(true, Ordering::Relaxed);
    }

    /// Stops accepting incoming handshakes; open sessions continue.
    pub fn disable_accept_connections(&self) {
        self.shared.accepting.store(false, Ordering::Relaxed);
    }

    /// Whether incoming handshakes are accepted.
    pub fn accepting_connections(&self) -> bool {
        self.shared.accepting.load(Ordering::Relaxed)
    }

    /// The channel of what arrives: sessions established and closed,
    /// messages. Bounded; every clone drains the same queue.
    pub fn events(&self) -> Receiver<NodeEvent> {
        self.events.clone()
    }

    /// Plugs a transport of the application's own into the node (see
    /// [`Transport`](crate::transport::Transport)); it runs on one reactor,
    /// which owns the sessions opened over it. Returns its id for
    /// [`connect`](Self::connect).
    pub fn add_transport(
        &self,
        transport: Box<dyn crate::transport::Transport>,
    ) -> Result<TransportId, NodeError> {
        let reactor = self.next_reactor.fetch_add(1, Ordering::Relaxed) % self.reactors.len();
        self.add_transport_to(reactor, transport)
    }

    fn add_transport_to(
        &self,
        reactor: usize,
        transport: Box<dyn crate::transport::Transport>,
    ) -> Result<TransportId, NodeError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.command(
            reactor,
            Command::AddTransport {
                transport,
                reply: tx,
            },
        )?;
        let index = rx.recv().map_err(|_| NodeError::Stopped)??;
        Ok(TransportId {
            reactor: Some(reactor),
            index,
        })
    }

    /// Opens a session over `transport` to `peer`. Blocks until the
    /// handshake completes or times out.
    pub fn connect(
        &self,
        transport: TransportId,
        peer: SocketAddr,
    ) -> Result<SessionInfo, NodeError> {
        let reactor = match transport.reactor {
            Some(r) => r,
            None => self.next_reactor.fetch_add(1, Ordering::Relaxed) % self.reactors.len(),
        };
        self.connect_on(reactor, transport.index, peer, None)
    }

    /// Starts accepting WebSocket connections on `addr` (port 0: any free
    /// port), `ws://`, or `wss://` when `config.tls_server` is set. Works on
    /// a running node. Each reactor gets a listener of a `SO_REUSEPORT`
    /// group, so the kernel spreads connections across cores. Returns the
    /// bound address.
    pub fn start_websocket_server(
        &self,
        addr: SocketAddr,
        config: WsConfig,
    ) -> Result<SocketAddr, NodeError> {
        let listeners = ws::bind_listener_group(addr, self.reactors.len())
            .map_err(|e| NodeError::Transport(e.to_string()))?;
        let bound = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .ok_or_else(|| NodeError::Transport("no listener bound".into()))?;
        for (reactor, listener) in listeners.into_iter().enumerate() {
            let t = WsTransport::from_listener(Some(listener), config.clone())
                .map_err(|e| NodeError::Transport(e.to_string()))?;
            let ws_counters = t.ws_counters();
            let id = self.add_transport_to(reactor, Box::new(t))?;
            self.ws_lock().servers.push((id, ws_counters));
        }
        self.ws_lock().server_addr = Some(bound);
        tracing::info!(addr = %bound, tls = config.tls_server.is_some(), "WebSocket server started");
        Ok(bound)
    }

    /// The address the WebSocket server listens on, once started.
    pub fn websocket_local_addr(&self) -> Option<SocketAddr> {
        self.ws_lock().server_addr
    }

    /// Opens a session over WebSocket to `url` (`ws://host:port/path` or
    /// `wss://…`; a host name resolves). Dialled connections come back by
    /// `config`'s reconnect policy. Blocks until the handshake completes or
    /// times out.
    pub fn connect_websocket(&self, url: &str) -> Result<SessionInfo, NodeError> {
        self.connect_websocket_with(url, WsConfig::default())
    }

    /// [`connect_websocket`](Self::connect_websocket) with a WebSocket
    /// configuration for the node's dialling transport (used when it is
    /// created: the first WebSocket dial of the node).
    pub fn connect_websocket_with(
        &self,
        url: &str,
        config: WsConfig,
    ) -> Result<SessionInfo, NodeError> {
        let parsed = WsUrl::parse(url).map_err(|e| NodeError::Transport(e.to_string()))?;
        let peer = parsed
            .authority()
            .to_socket_addrs()
            .map_err(|e| NodeError::Transport(format!("resolving {}: {e}", parsed.authority())))?
            .next()
            .ok_or_else(|| {
                NodeError::Transport(format!("{} resolves to no address", parsed.authority()))
            })?;
        let transport = self.ws_client(config)?;
        let reactor = transport.reactor.unwrap_or(0);
        self.connect_on(reactor, transport.index, peer, Some(parsed.to_string()))
    }

    /// Runs a handshake on `reactor` over its transport `transport` (after
    /// opening `target` there, if any) and waits for the outcome.
    fn connect_on(
        &self,
        reactor: usize,
        transport: usize,
        peer: SocketAddr,
        target: Option<String>,
    ) -> Result<SessionInfo, NodeError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.command(
            reactor,
            Command::Connect {
                transport,
                peer,
                target,
                reply: tx,
            },
        )?;
        rx.recv_timeout(self.connect_timeout).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => NodeError::Transport(format!(
                "no answer from the node's reactor within {:?} (overloaded?)",
                self.connect_timeout
            )),
            crossbeam_channel::RecvTimeoutError::Disconnected => NodeError::Stopped,
        })?
    }

    /// The node's dialling WebSocket transport, made on first use.
    fn ws_client(&self, config: WsConfig) -> Result<TransportId, NodeError> {
        if let Some(id) = self.ws_lock().client {
            return Ok(id);
        }
        let t = WsTransport::client(config).map_err(|e| NodeError::Transport(e.to_string()))?;
        let counters = t.ws_counters();
        let id = self.add_transport(Box::new(t))?;
        let mut ws = self.ws_lock();
        ws.client = Some(id);
        ws.client_counters = Some(counters);
        Ok(id)
    }

    /// Moves an established session onto a WebSocket connection to `url`,
    /// without a new handshake: the session id and keys stay, only the path
    /// changes. Use it on the side that dialled (the initiator) to fail over
    /// from UDP without losing the session; [`move_session_to_udp`] moves
    /// back.
    ///
    /// A ping goes along the new path at once. The responder follows once
    /// it has validated the path (its probe there answered: one round trip);
    /// until then it still sends along the old path, so its first replies
    /// may be lost if that path is dead. The call pins this side's path: it
    /// no longer follows the peer anywhere else. (The peer never follows a
    /// move made by the responder's application: only responders follow.)
    ///
    /// [`move_session_to_udp`]: Self::move_session_to_udp
    pub fn move_session_to_websocket(
        &self,
        session: SessionId,
        url: &str,
    ) -> Result<(), NodeError> {
        let parsed = WsUrl::parse(url).map_err(|e| NodeError::Transport(e.to_string()))?;
        let addr = resolve(&parsed.authority())?;
        let transport = self.ws_client(WsConfig::default())?;
        let path = self.open_path(transport, &parsed.to_string(), addr)?;
        self.set_path(session, path)
    }

    /// Moves an established session onto UDP to `addr`, without a new
    /// handshake (see [`move_session_to_websocket`](Self::move_session_to_websocket)).
    pub fn move_session_to_udp(
        &self,
        session: SessionId,
        addr: SocketAddr,
    ) -> Result<(), NodeError> {
        if self.udp.is_none() {
            return Err(NodeError::Transport(
                "UDP is not enabled on this node".into(),
            ));
        }
        let holder = self
            .shared
            .holder_of(session)
            .ok_or(NodeError::UnknownSession(session))?;
        let path = self.open_path(
            TransportId {
                reactor: Some(holder),
                index: TransportId::UDP.index,
            },
            "",
            addr,
        )?;
        self.set_path(session, path)
    }

    fn open_path(
        &self,
        transport: TransportId,
        target: &str,
        addr: SocketAddr,
    ) -> Result<crate::reactor::Path, NodeError> {
        let reactor = transport.reactor.unwrap_or(0);
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.command(
            reactor,
            Command::OpenPath {
                transport: transport.index,
                target: target.to_owned(),
                addr,
                reply: tx,
            },
        )?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| NodeError::Stopped)?
    }

    fn set_path(&self, session: SessionId, path: crate::reactor::Path) -> Result<(), NodeError> {
        let holder = self
            .shared
            .holder_of(session)
            .ok_or(NodeError::UnknownSession(session))?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.command(
            holder,
            Command::SetPath {
                session,
                path: Box::new(path),
                reply: tx,
            },
        )?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| NodeError::Stopped)?
    }

    /// WebSocket statistics: the transports' traffic (summed over the
    /// server's per-reactor transports and the dialling one) and their
    /// connection counters.
    pub fn websocket_stats(&self) -> Option<(TransportStats, WsStats)> {
        let (ids, counters): (Vec<TransportId>, Vec<Arc<WsCounters>>) = {
            let ws = self.ws_lock();
            let mut ids: Vec<TransportId> = ws.servers.iter().map(|(id, _)| *id).collect();
            let mut counters: Vec<Arc<WsCounters>> =
                ws.servers.iter().map(|(_, c)| c.clone()).collect();
            if let (Some(id), Some(c)) = (ws.client, &ws.client_counters) {
                ids.push(id);
                counters.push(c.clone());
            }
            (ids, counters)
        };
        let traffic: Vec<TransportStats> = ids
            .iter()
            .filter_map(|id| self.transport_stats(*id))
            .collect();
        let total = TransportStats::sum(&traffic)?;
        let mut conns = WsStats::default();
        for c in counters {
            conns.add(&c.snapshot());
        }
        Some((total, conns))
    }

    /// Traffic statistics of one transport.
    pub fn transport_stats(&self, transport: TransportId) -> Option<TransportStats> {
        match transport.reactor {
            None => self.udp_stats(),
            Some(r) => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                self.command(
                    r,
                    Command::TransportStats {
                        transport: transport.index,
                        reply: tx,
                    },
                )
                .ok()?;
                rx.recv_timeout(Duration::from_secs(5)).ok().flatten()
            }
        }
    }

    fn ws_lock(&self) -> std::sync::MutexGuard<'_, WsState> {
        // Only ever holds plain ids and counters: a panic elsewhere cannot
        // leave it inconsistent.
        self.ws.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session over UDP to `addr` (a host name resolves; `localhost`
    /// works). Blocks until the handshake completes or times out.
    pub fn connect_udp(&self, addr: impl ToSocketAddrs) -> Result<SessionInfo, NodeError> {
        let local = self.udp_local_addr().ok_or(NodeError::Transport(
            "UDP is not enabled on this node".into(),
        ))?;
        let peer = addr
            .to_socket_addrs()
            .map_err(|e| NodeError::Transport(format!("resolving the address: {e}")))?
            .find(|a| a.is_ipv4() == local.is_ipv4())
            .ok_or_else(|| {
                NodeError::Transport(format!(
                    "the address resolves to no {} address, which the UDP socket bound to {local} needs",
                    if local.is_ipv4() { "IPv4" } else { "IPv6" }
                ))
            })?;
        self.connect(TransportId::UDP, peer)
    }

    /// Runs `callback` on a worker thread for every message that has no
    /// handler of its own (see [`register_handler`](Self::register_handler)).
    /// Messages then no longer reach [`events`](Self::events), which keeps
    /// the session events. A slow callback slows no reactor: the workers'
    /// queue is bounded, and when it is full UDP messages are dropped and
    /// counted, WebSocket reading pauses.
    pub fn on_frame(&self, callback: impl Fn(Frame, SocketAddr) + Send + Sync + 'static) {
        self.callbacks_lock().on_frame = Some(Arc::new(callback));
        self.start_workers();
        self.shared.dispatch.on_frame.store(true, Ordering::Relaxed);
    }

    /// Runs `handler` on the reactor thread that received each message, for
    /// every message (DATA and application types alike): the fastest way to
    /// answer. What the handler sends through its [`Replies`] is sealed by
    /// that reactor as soon as the handler returns and leaves with the same
    /// turn's datagrams, so an echo or a request-response crosses no thread
    /// at all on its way back: in `perf/RESULTS.md`, a UDP round trip
    /// between two nodes answering this way takes 1.18× (p50) and 1.28×
    /// (p99) the time of two blocking sockets echoing, against 1.62× and
    /// 1.79× with the applications on threads of their own.
    ///
    /// Messages then reach neither [`events`](Self::events) (which keeps the
    /// session events), nor [`on_frame`](Self::on_frame), nor handlers
    /// registered by type.
    ///
    /// The handler holds up every session of its reactor while it runs: it
    /// must not block, sleep or wait on a lock another thread holds for
    /// long. Do not call this node's methods that wait on a reactor from it
    /// (`send*`, `connect*`, `close_session`, `move_session_*`,
    /// `session_stats`, `transport_stats`): the reactor they wait on may be
    /// the one running the handler. Send with `replies`; hand slow work to a
    /// thread of your own. A handler that captures the node keeps it alive
    /// (the node holds the handler): capture a `std::sync::Weak`. A handler
    /// that panics loses that message only; the panic is logged and the
    /// reactor carries on (unless panics abort).
    ///
    /// Order: a handler's sends leave in the order it made them, and before
    /// anything that reactor takes afterwards. They are not ordered with
    /// sends made meanwhile by other threads through [`send`](Self::send):
    /// a `send` that returned just before the handler ran may still be
    /// queued behind it.
    ///
    /// Backpressure: while too many of the handler's answers wait for
    /// reliable peers that read too slowly (1,024 frames or 64 MiB), the
    /// reactor stops reading every transport, so the handler is not given
    /// more to answer; UDP datagrams that arrive meanwhile wait in the
    /// socket's buffer, and beyond it are dropped by the kernel. Two nodes
    /// that both answer from their reactors, and flood each other with
    /// requests over one WebSocket connection faster than either reads, can
    /// each stop reading while waiting for the other: bound such traffic in
    /// the application (a window of requests in flight), as request-response
    /// protocols do.
    ///
    /// Set once per node; a second call is refused.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use stt::node::{Node, NodeConfig};
    /// # let node = Node::start(NodeConfig::new(&[7; 32], &[9; 32]))?;
    /// // An echo server that never leaves its reactor threads.
    /// node.on_frame_inline(|frame, _peer, replies| {
    ///     let _ = replies.send(frame.session, &frame.payload);
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn on_frame_inline(
        &self,
        handler: impl Fn(Frame, SocketAddr, &mut Replies<'_>) + Send + Sync + 'static,
    ) -> Result<(), NodeError> {
        self.shared
            .inline
            .set(crate::reactor::InlineHandler(Arc::new(handler)))
            .map_err(|_| NodeError::HandlerAlreadySet)
    }

    /// Routes messages of the application-defined type `frame_type`
    /// (0x80–0xFF) to `handler`, on a worker thread.
    pub fn register_handler(
        &self,
        frame_type: u8,
        handler: impl Fn(Frame, SocketAddr) + Send + Sync + 'static,
    ) -> Result<(), NodeError> {
        if frame_type < FrameType::APPLICATION_MIN {
            return Err(NodeError::Transport(format!(
                "frame type 0x{frame_type:02x} is stt's own: handlers take application types 0x80..=0xFF"
            )));
        }
        self.callbacks_lock()
            .handlers
            .insert(frame_type, Arc::new(handler));
        self.start_workers();
        self.shared.dispatch.set_handler(frame_type);
        Ok(())
    }

    fn callbacks_lock(&self) -> std::sync::RwLockWriteGuard<'_, Callbacks> {
        // Holds only callbacks: a panic elsewhere cannot leave it half-made.
        self.callbacks.write().unwrap_or_else(|e| e.into_inner())
    }

    fn start_workers(&self) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if !workers.is_empty() || !self.is_running() {
            return;
        }
        for i in 0..self.worker_count {
            let work = self.work.clone();
            let callbacks = self.callbacks.clone();
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("stt-worker-{i}"))
                .spawn(move || worker(work, callbacks, shared));
            if let Ok(t) = spawned {
                workers.push(t);
            }
        }
    }

    /// Sends one message to many sessions: sealed once per session, the
    /// datagrams of each reactor leaving in one batch. Returns each session's
    /// result, in the order given.
    pub fn send_to_sessions(
        &self,
        sessions: &[SessionId],
        payload: &[u8],
    ) -> Vec<(SessionId, Result<(), NodeError>)> {
        let max = self.shared.session_config.reassembly.max_message_size;
        if payload.len() > max {
            let e = NodeError::Session(crate::session::SessionError::MessageTooLarge {
                len: payload.len(),
                max,
            });
            return sessions.iter().map(|s| (*s, Err(e.clone()))).collect();
        }
        let payload: Arc<[u8]> = Arc::from(payload);
        let mut results: HashMap<SessionId, Result<(), NodeError>> =
            HashMap::with_capacity(sessions.len());
        let mut per_reactor: Vec<Vec<SessionId>> = vec![Vec::new(); self.reactors.len()];
        for &s in sessions {
            match self.shared.holder_of(s) {
                Some(r) => per_reactor[r].push(s),
                None => {
                    results.insert(s, Err(NodeError::UnknownSession(s)));
                }
            }
        }
        let mut pending = Vec::new();
        for (r, ids) in per_reactor.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let (tx, rx) = crossbeam_channel::bounded(1);
            let command = Command::SendMany {
                sessions: ids.clone(),
                stream_id: 0,
                frame_type: FrameType::Data,
                payload: payload.clone(),
                reply: tx,
            };
            match self.command(r, command) {
                Ok(()) => pending.push((ids, rx)),
                Err(e) => {
                    for id in ids {
                        results.insert(id, Err(e.clone()));
                    }
                }
            }
        }
        for (ids, rx) in pending {
            match rx.recv() {
                Ok(list) => results.extend(list),
                Err(_) => {
                    for id in ids {
                        results.insert(id, Err(NodeError::Stopped));
                    }
                }
            }
        }
        sessions
            .iter()
            .map(|s| {
                (
                    *s,
                    results
                        .get(s)
                        .cloned()
                        .unwrap_or(Err(NodeError::UnknownSession(*s))),
                )
            })
            .collect()
    }

    /// Sends one message to every established session.
    pub fn send_to_all(&self, payload: &[u8]) -> Vec<(SessionId, Result<(), NodeError>)> {
        let all = self.sessions();
        self.send_to_sessions(&all, payload)
    }

    /// The established sessions.
    pub fn sessions(&self) -> Vec<SessionId> {
        let mut all = Vec::new();
        for set in &self.shared.live {
            if let Ok(set) = set.read() {
                all.extend(set.iter().copied());
            }
        }
        all
    }

    /// The node's state and counters.
    pub fn stats(&self) -> NodeStats {
        let ws = self.websocket_stats();
        NodeStats {
            node_id: self.node_id.to_hex(),
            running: self.is_running(),
            server_mode: self.server_mode,
            accepting_connections: self.accepting_connections(),
            sessions: self.session_count(),
            udp: self.udp_stats(),
            websocket: ws.map(|(t, _)| t),
            websocket_connections: ws.map(|(_, c)| c),
            reassembly_bytes: self.shared.budget.used(),
            handshakes_pending: self.shared.pending.load(Ordering::Relaxed),
            cookie_challenges: self.shared.cookie_challenges.load(Ordering::Relaxed),
            handshakes_refused: self.shared.handshakes_refused.load(Ordering::Relaxed),
        }
    }

    /// Sends over `primary`, or over `fallback` when `primary` cannot take
    /// the message (its session closed — e.g. UDP is blocked and it timed
    /// out — or its transport refused). Returns the session that took it.
    ///
    /// The usual pairing: a UDP session for speed and a WebSocket session to
    /// the same peer for when UDP does not get through.
    pub fn send_with_failover(
        &self,
        primary: SessionId,
        fallback: SessionId,
        payload: &[u8],
    ) -> Result<SessionId, NodeError> {
        match self.send(primary, payload) {
            Ok(()) => Ok(primary),
            Err(NodeError::UnknownSession(_) | NodeError::Transport(_) | NodeError::Session(_)) => {
                self.send(fallback, payload).map(|()| fallback)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends `payload` as a DATA message on stream 0.
    pub fn send(&self, session: SessionId, payload: &[u8]) -> Result<(), NodeError> {
        self.send_on(session, 0, payload)
    }

    /// Sends `payload` as a DATA message on `stream_id`.
    ///
    /// Returns once the message is queued for the session's reactor: an
    /// unknown session or a message over `max_message_size` is refused here;
    /// what happens on the wire is counted in the statistics.
    ///
    /// Backpressure: while the reactor's queue is full (16,384 messages, or
    /// 64 MiB of messages of 1 KiB and more), this waits for room. The
    /// reactor stops taking messages while a WebSocket peer reads too
    /// slowly, so a sender to a slow peer waits here rather than filling
    /// memory. Do not wait here on the thread that drains
    /// [`events`](Self::events) when the peer's application may do the
    /// same (an echo that sends from its receiving loop, against a peer
    /// that floods it): each side would wait for the other to read. Receive
    /// on a thread of its own, or bound the requests in flight.
    pub fn send_on(
        &self,
        session: SessionId,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), NodeError> {
        self.send_typed(session, stream_id, FrameType::Data, payload)
    }

    /// Sends a message of an application type (0x80–0xFF) or DATA.
    pub fn send_typed(
        &self,
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
    ) -> Result<(), NodeError> {
        self.shared.check_message(frame_type, payload.len())?;
        self.send_command(session, stream_id, frame_type, payload, None)
    }

    fn send_command(
        &self,
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
        reply: Option<crossbeam_channel::Sender<Result<(), NodeError>>>,
    ) -> Result<(), NodeError> {
        let owner = self
            .shared
            .holder_of(session)
            .ok_or(NodeError::UnknownSession(session))?;
        self.command(
            owner,
            Command::Send {
                session,
                stream_id,
                frame_type,
                payload: self.shared.pool.copy_of(payload),
                reply,
            },
        )
    }

    /// Gives a received message's buffer back, for a later message to be
    /// delivered in (or sent from): optional, and worth it for large
    /// messages at high rates.
    ///
    /// A message's buffer is allocated on a reactor thread and, without
    /// this, freed on the application's. With glibc's malloc, freeing
    /// 64 KiB and larger buffers returns the heap's top to the kernel again
    /// and again, and every later message then faults in and zeroes fresh
    /// pages. Measured side by side with the `perf/` harness (a 64 KiB
    /// WebSocket stream, 4 alternating runs each): 14.7 k messages/s
    /// without, 23.2 k with (1.57×). The same effect without code: run with
    /// `MALLOC_TRIM_THRESHOLD_` set high (e.g. `268435456`), or with
    /// jemalloc or mimalloc.
    ///
    /// Given back, buffers wait in the node's pool: up to 8 MiB of them,
    /// none over 1 MiB (the rest are freed). Messages that fit one frame are
    /// delivered in them; a message reassembled from fragments is not. A
    /// delivered message's buffer may then have more capacity than its
    /// length: `shrink_to_fit` one you keep for long.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use stt::node::{Node, NodeConfig, NodeEvent};
    /// # let node = Node::start(NodeConfig::new(&[7; 32], &[9; 32]))?;
    /// for event in node.events() {
    ///     if let NodeEvent::Message { payload, .. } = event {
    ///         // ... use the payload ...
    ///         node.recycle(payload);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn recycle(&self, payload: Vec<u8>) {
        self.shared.pool.give(payload);
    }

    /// Like [`send_on`](Self::send_on), but waits for the reactor to have
    /// sealed and queued the message, and returns its verdict.
    pub fn send_confirmed(
        &self,
        session: SessionId,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), NodeError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send_command(session, stream_id, FrameType::Data, payload, Some(tx))?;
        rx.recv().map_err(|_| NodeError::Stopped)?
    }

    /// Closes a session with a CLOSE frame.
    pub fn close_session(&self, session: SessionId) -> Result<(), NodeError> {
        let owner = self
            .shared
            .holder_of(session)
            .ok_or(NodeError::UnknownSession(session))?;
        self.command(
            owner,
            Command::Close {
                session,
                code: close_code::NORMAL,
                reason: "closed by application".into(),
            },
        )
    }

    /// Statistics of one session, or `None` if it is gone.
    pub fn session_stats(&self, session: SessionId) -> Option<SessionStats> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.command(
            self.shared.holder_of(session)?,
            Command::SessionStats { session, reply: tx },
        )
        .ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok().flatten()
    }

    /// Stops the node: closes every session with a CLOSE frame, sends what is
    /// queued, and joins every thread. Idempotent.
    pub fn stop(&self) {
        self.running.store(false, Ordering::Relaxed);
        self.shared.stopping.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        if threads.is_empty() {
            return;
        }
        for r in &self.reactors {
            r.stop();
        }
        let me = std::thread::current().id();
        for t in threads {
            // Stopped from an in-reactor handler: that reactor finishes by
            // itself once the handler returns (joining it would wait on
            // ourselves).
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // Workers see `running` false within their poll interval.
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            // A callback that stops the node runs on a worker: that one
            // finishes by itself once the callback returns.
            if w.thread().id() != me {
                let _ = w.join();
            }
        }
    }

    fn command(&self, reactor: usize, command: Command) -> Result<(), NodeError> {
        if !self.is_running() {
            return Err(NodeError::Stopped);
        }
        self.reactors
            .get(reactor)
            .ok_or_else(|| NodeError::Transport("no such transport on this node".into()))?
            .send(command)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.node_id)
            .field("udp", &self.udp_local_addr())
            .field("reactors", &self.reactors.len())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

/// A worker thread: runs callbacks for the messages the reactors route to
/// it; what no callback takes (a callback removed meanwhile) goes on to the
/// application's channel.
fn worker(work: Receiver<NodeEvent>, callbacks: Arc<RwLock<Callbacks>>, shared: Arc<Shared>) {
    loop {
        let event = match work.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => e,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let NodeEvent::Message {
            session,
            stream_id,
            frame_type,
            payload,
            peer,
        } = event
        else {
            let _ = shared.events.send(event);
            continue;
        };
        let callback = {
            let cbs = callbacks.read().unwrap_or_else(|e| e.into_inner());
            let by_type = match frame_type {
                FrameType::Application(t) => cbs.handlers.get(&t).cloned(),
                _ => None,
            };
            by_type.or_else(|| cbs.on_frame.clone())
        };
        let frame = Frame {
            session,
            stream_id,
            frame_type,
            payload,
        };
        match callback {
            Some(f) => {
                // A panicking callback must not take the worker down with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(frame, peer)));
            }
            None => {
                let _ = shared.events.send(NodeEvent::Message {
                    session: frame.session,
                    stream_id: frame.stream_id,
                    frame_type: frame.frame_type,
                    payload: frame.payload,
                    peer,
                });
            }
        }
    }
}

/// Resolves `host:port` to its first address.
fn resolve(authority: &str) -> Result<SocketAddr, NodeError> {
    authority
        .to_socket_addrs()
        .map_err(|e| NodeError::Transport(format!("resolving {authority}: {e}")))?
        .next()
        .ok_or_else(|| NodeError::Transport(format!("{authority} resolves to no address")))
}
