//! A node's state and counters at one moment.

use std::sync::atomic::Ordering;

use crate::transport::ws::WsStats;
use crate::transport::TransportStats;

use super::Node;

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
    /// Initiators the authorisation hook or a per-peer quota refused.
    pub peers_refused: u64,
    /// Handshakes refused by a quota (per address, per connection, per
    /// node id).
    pub quota_refused: u64,
    /// Sessions opened here by connect tokens (a reconnect counts again).
    pub tokens_admitted: u64,
    /// Authentic connect tokens refused (expired, not yet valid, wrong
    /// audience, revoked); tokens that are not genuine are among
    /// `handshakes_refused`'s silent drops, not here.
    pub tokens_refused: u64,
}

impl Node {
    /// The node's state and counters.
    pub fn stats(&self) -> NodeStats {
        let ws = self.websocket_stats();
        let endpoint = &self.inner.shared.endpoint;
        NodeStats {
            node_id: self.node_id().to_hex(),
            running: self.is_running(),
            server_mode: self.server_mode(),
            accepting_connections: self.accepting_connections(),
            sessions: self.session_count(),
            udp: self.udp_stats(),
            websocket: ws.map(|(t, _)| t),
            websocket_connections: ws.map(|(_, c)| c),
            reassembly_bytes: endpoint.budget.used(),
            handshakes_pending: endpoint.stats.pending.load(Ordering::Relaxed),
            cookie_challenges: endpoint.stats.cookie_challenges.load(Ordering::Relaxed),
            handshakes_refused: endpoint.stats.handshakes_refused.load(Ordering::Relaxed),
            peers_refused: endpoint.stats.peers_refused.load(Ordering::Relaxed),
            quota_refused: endpoint.quotas.refused.load(Ordering::Relaxed),
            tokens_admitted: endpoint
                .tokens
                .as_ref()
                .map_or(0, |g| g.admitted.load(Ordering::Relaxed)),
            tokens_refused: endpoint
                .tokens
                .as_ref()
                .map_or(0, |g| g.refused.load(Ordering::Relaxed)),
        }
    }
}
