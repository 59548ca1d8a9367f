//! How a node is configured, and why it may refuse to start.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::crypto::{NodeId, SeedError};
pub use crate::endpoint::QuotaConfig;
use crate::session::{ConfigError, SessionConfig};
use crate::token::{ClientInfo, TokenConfig};
use crate::transport::udp::{UdpConfig, UdpConfigError};
use crate::transport::TransportError;

/// Everything a node needs to start. [`NodeConfig::new`] gives the defaults
/// below; each says why. The builders ([`websocket_only`](Self::websocket_only),
/// [`client`](Self::client), the `with_*` setters) cover the common shapes.
#[derive(Clone)]
pub struct NodeConfig {
    /// This node's secret identity seed (at least 32 bytes). Empty: a
    /// fresh random identity at every start (a connect-token client's).
    pub node_seed: Zeroizing<Vec<u8>>,
    /// The network's shared secret (at least 32 bytes, the same on every
    /// node of the network). Empty on a connect-token client
    /// ([`token_client`](Self::token_client)): it holds no network key and
    /// opens sessions only with tokens.
    pub shared_seed: Zeroizing<Vec<u8>>,
    /// The connect tokens this node accepts from clients (see
    /// [`crate::token`]); `None` (the default) accepts members only.
    pub tokens: Option<TokenConfig>,
    /// The UDP transport; `None` runs no UDP socket (a WebSocket-only node).
    pub udp: Option<UdpConfig>,
    /// Reactor threads. Default: one per available core.
    pub reactors: usize,
    /// Worker threads that run a worker [`Handler`](super::Handler)
    /// (started when it is set). Default: one per available core.
    pub workers: usize,
    /// Capacity of the channel that hands received messages to the
    /// application. Default 65,536: about 80 MB of 1200-byte messages, a
    /// quarter of a second at 256k messages/s.
    pub queue_depth: usize,
    /// Bytes of messages the hand-off channels (to the application and to
    /// the workers) may hold together, beside `queue_depth`. Default
    /// 128 MiB: large messages fill memory long before the count does.
    pub queue_bytes: usize,
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
    /// How long [`Node::send`](super::Node::send) and the other sends that
    /// wait for room in a full queue wait before they give up with
    /// [`SendError::QueueFull`](super::SendError::QueueFull). Default 30 s:
    /// far beyond any burst a healthy peer absorbs, short enough that a
    /// sender stuck behind a peer that reads nothing finds out.
    pub send_timeout: Duration,
    /// What one peer (node id), one address and one connection may hold:
    /// incoming sessions, pending handshakes, reassembly bytes. See
    /// [`QuotaConfig`] for the defaults.
    pub quotas: QuotaConfig,
    /// Asked, once an initiator's node id is known (its handshake message
    /// 3) and before the session is established, whether it may have the
    /// session; refused, it gets a CLOSE instead (its connect fails with
    /// [`ConnectError::Refused`](super::ConnectError::Refused)), and this
    /// node's application never sees it. `None` (the default) admits every
    /// member of the network.
    pub authorize: Option<Authorizer>,
    /// How long a call that waits for a reactor's answer (statistics,
    /// confirmed sends, adding a transport, moving a session) waits before
    /// it gives up. Default 5 s: a reactor answers within a loop turn, so
    /// only a stopped or wedged node takes this long.
    pub call_timeout: Duration,
}

impl NodeConfig {
    /// Defaults with these seeds and UDP on `0.0.0.0:0`.
    pub fn new(node_seed: &[u8], shared_seed: &[u8]) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        NodeConfig {
            node_seed: Zeroizing::new(node_seed.to_vec()),
            shared_seed: Zeroizing::new(shared_seed.to_vec()),
            udp: Some(UdpConfig::default()),
            reactors: cores,
            workers: cores,
            queue_depth: 65_536,
            queue_bytes: 128 << 20,
            session: SessionConfig::default(),
            server_mode: true,
            max_sessions: 100_000,
            reassembly_budget: 256 << 20,
            cookie_threshold: 256,
            max_pending_handshakes: 4096,
            send_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(5),
            authorize: None,
            quotas: QuotaConfig::default(),
            tokens: None,
        }
    }

    /// Defaults for a connect-token client: no seed at all (a fresh random
    /// identity, no network key), no incoming handshakes. It opens sessions
    /// only with a token ([`ConnectOptions::with_token`](super::ConnectOptions::with_token)),
    /// and only with the servers its tokens name.
    pub fn token_client() -> Self {
        Self::new(&[], &[]).with_server_mode(false)
    }

    /// Accepts connect tokens (see [`TokenConfig`]).
    pub fn with_tokens(mut self, tokens: TokenConfig) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Defaults without a UDP socket: the node speaks WebSocket only
    /// (start a server with
    /// [`Node::start_websocket_server`](super::Node::start_websocket_server),
    /// or dial with [`Node::connect_websocket`](super::Node::connect_websocket)).
    pub fn websocket_only(node_seed: &[u8], shared_seed: &[u8]) -> Self {
        Self::new(node_seed, shared_seed).without_udp()
    }

    /// Defaults for a node that only dials: it accepts no incoming
    /// handshake.
    pub fn client(node_seed: &[u8], shared_seed: &[u8]) -> Self {
        Self::new(node_seed, shared_seed).with_server_mode(false)
    }

    /// Sets the UDP configuration.
    pub fn with_udp(mut self, udp: UdpConfig) -> Self {
        self.udp = Some(udp);
        self
    }

    /// Runs no UDP socket.
    pub fn without_udp(mut self) -> Self {
        self.udp = None;
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

    /// Sets the capacity of the channel to the application.
    pub fn with_queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }

    /// Admits only the initiators `allow` accepts (see
    /// [`authorize`](Self::authorize)).
    pub fn with_authorizer(
        mut self,
        allow: impl Fn(&PeerCandidate) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Some(Arc::new(allow));
        self
    }

    /// Sets the per-peer quotas.
    pub fn with_quotas(mut self, quotas: QuotaConfig) -> Self {
        self.quotas = quotas;
        self
    }

    /// Sets how long sends wait for room (see
    /// [`send_timeout`](Self::send_timeout)).
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }
}

/// An initiator asking for a session, as the authorisation hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCandidate {
    /// Its authenticated node id.
    pub node_id: NodeId,
    /// The address its handshake came from.
    pub addr: SocketAddr,
    /// Who it is, when a connect token opened the session: its client id
    /// and the token's application data.
    pub client: Option<Arc<ClientInfo>>,
}

/// An accept-side authorisation hook (see [`NodeConfig::authorize`]).
pub type Authorizer = Arc<dyn Fn(&PeerCandidate) -> bool + Send + Sync>;

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("udp", &self.udp)
            .field("reactors", &self.reactors)
            .field("queue_depth", &self.queue_depth)
            .field("queue_bytes", &self.queue_bytes)
            .field("session", &self.session)
            .field("server_mode", &self.server_mode)
            .field("max_sessions", &self.max_sessions)
            .field("send_timeout", &self.send_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("authorize", &self.authorize.is_some())
            .field("tokens", &self.tokens)
            .field("quotas", &self.quotas)
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
