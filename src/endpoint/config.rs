//! What every shard of a node shares (settings, the directory, counters),
//! and where its randomness comes from.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

use crate::crypto::{CookieKey, Identity, Msg1Check, NetworkKey, NodeId};
use crate::session::{PayloadSource, SessionConfig};
use crate::stream::MemoryBudget;
use crate::token::{ClientInfo, TokenGate};

use super::quota::Quotas;
use super::Directory;

/// Settings and counters shared by every shard of a node.
pub(crate) struct EndpointConfig {
    /// This node's identity.
    pub identity: Identity,
    /// The network's key; `None` on a node without a shared seed (a
    /// connect-token client), which opens sessions only with tokens.
    pub network: Option<NetworkKey>,
    /// The connect tokens this node accepts, if any.
    pub tokens: Option<TokenGate>,
    /// Every session's configuration (each path sets its datagram size).
    pub session: SessionConfig,
    /// Incoming handshakes are accepted.
    pub accepting: AtomicBool,
    /// Most sessions one shard holds.
    pub max_sessions_per_shard: usize,
    /// Most pending incoming handshakes one shard keeps.
    pub max_pending_per_shard: usize,
    /// Pending incoming handshakes on one shard above which a message 1
    /// over an unvalidated transport gets a cookie challenge.
    pub cookie_threshold_per_shard: usize,
    /// Reassembly memory of every session together.
    pub budget: MemoryBudget,
    /// The secret of stateless address-validation cookies.
    pub cookie_key: CookieKey,
    /// The stateless check a message 1 passes before anything else.
    pub msg1_check: Msg1Check,
    /// The origin of cookie epochs.
    pub started: Instant,
    /// The wall clock at a moment (seconds since the Unix epoch): the
    /// system's in a node, the virtual one in tests. Tokens and message-1
    /// timestamps are checked against it.
    pub wall_clock: WallClock,
    /// Which shard holds each established session.
    pub directory: Directory,
    /// Where delivered messages' buffers come from.
    pub payloads: Option<Arc<dyn PayloadSource>>,
    /// Counters of every shard together.
    pub stats: EndpointStats,
    /// Asked, when an initiator's node id is known (message 3), whether it
    /// may have the session; `None` admits every member.
    pub authorize: Option<Authorize>,
    /// What one peer or address may hold.
    pub quotas: Quotas,
}

/// An accept-side authorisation: the initiator's node id and address in,
/// whether it may have the session out.
/// Seconds since the Unix epoch at a monotonic moment.
pub(crate) type WallClock = Arc<dyn Fn(Instant) -> u64 + Send + Sync>;

/// A token session's client is shown too.
pub(crate) type Authorize =
    Arc<dyn Fn(NodeId, SocketAddr, Option<&Arc<ClientInfo>>) -> bool + Send + Sync>;

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("node_id", &self.identity.node_id())
            .field("max_sessions_per_shard", &self.max_sessions_per_shard)
            .field("max_pending_per_shard", &self.max_pending_per_shard)
            .field(
                "cookie_threshold_per_shard",
                &self.cookie_threshold_per_shard,
            )
            .finish_non_exhaustive()
    }
}

/// Counters of a node's endpoints.
#[derive(Debug, Default)]
pub(crate) struct EndpointStats {
    /// Sessions open, in any state.
    pub sessions: AtomicUsize,
    /// Incoming handshakes waiting for their message 3.
    pub pending: AtomicUsize,
    /// Cookie challenges sent.
    pub cookie_challenges: AtomicU64,
    /// Message 1s and cookie echoes refused (bad cookie, pending limit).
    pub handshakes_refused: AtomicU64,
    /// Initiators the authorisation refused.
    pub peers_refused: AtomicU64,
}

/// Where an endpoint's randomness comes from: session ids and path
/// challenges. The system's CSPRNG in a node; a seeded one in tests.
pub(crate) trait Random: Send {
    /// Fills `buf` with random bytes; false if none could be had.
    fn fill(&mut self, buf: &mut [u8]) -> bool;
}

impl Random for ring::rand::SystemRandom {
    fn fill(&mut self, buf: &mut [u8]) -> bool {
        ring::rand::SecureRandom::fill(self, buf).is_ok()
    }
}
