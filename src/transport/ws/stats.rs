//! What the WebSocket transport counts: the shared connection counters
//! ([`WsCounters`], read from any thread without locks), their copy
//! ([`WsStats`]), and the traffic of one connection
//! ([`WsConnectionStats`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Connection counters of a WebSocket transport, beside its
/// [`TransportCounters`](crate::transport::TransportCounters).
#[derive(Debug, Default)]
pub struct WsCounters {
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted (upgrade completed) since start.
    pub connections_accepted: AtomicU64,
    /// Connections dialled successfully (including reconnections).
    pub connections_dialled: AtomicU64,
    /// Connections closed since start.
    pub connections_closed: AtomicU64,
    /// Connections refused (over a cap, an HTTP error to a bad upgrade) or
    /// failed before opening.
    pub connections_refused: AtomicU64,
    /// Of those, refused by `max_connections_per_ip`.
    pub refused_per_ip: AtomicU64,
    /// Accepted connections closed because no authenticated session ran
    /// over them within `auth_timeout`.
    pub closed_unauthenticated: AtomicU64,
    /// Reconnection attempts.
    pub reconnects: AtomicU64,
    /// Plain HTTP requests answered by `WsConfig::http` (those connections
    /// count neither as accepted nor as refused).
    pub http_requests: AtomicU64,
}

impl WsCounters {
    /// A copy of the counters.
    pub fn snapshot(&self) -> WsStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WsStats {
            connections_open: g(&self.connections_open),
            connections_accepted: g(&self.connections_accepted),
            connections_dialled: g(&self.connections_dialled),
            connections_closed: g(&self.connections_closed),
            connections_refused: g(&self.connections_refused),
            refused_per_ip: g(&self.refused_per_ip),
            closed_unauthenticated: g(&self.closed_unauthenticated),
            reconnects: g(&self.reconnects),
            http_requests: g(&self.http_requests),
        }
    }

    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(c: &AtomicU64) {
        c.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A copy of [`WsCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WsStats {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections dialled successfully since start.
    pub connections_dialled: u64,
    /// Connections closed since start.
    pub connections_closed: u64,
    /// Connections refused or failed before opening.
    pub connections_refused: u64,
    /// Of those, refused by `max_connections_per_ip`.
    pub refused_per_ip: u64,
    /// Accepted connections closed for want of an authenticated session
    /// within `auth_timeout`.
    pub closed_unauthenticated: u64,
    /// Reconnection attempts.
    pub reconnects: u64,
    /// Plain HTTP requests answered by `WsConfig::http`.
    pub http_requests: u64,
}

impl WsStats {
    /// Adds another transport's counters to these.
    pub fn add(&mut self, other: &WsStats) {
        self.connections_open += other.connections_open;
        self.connections_accepted += other.connections_accepted;
        self.connections_dialled += other.connections_dialled;
        self.connections_closed += other.connections_closed;
        self.connections_refused += other.connections_refused;
        self.refused_per_ip += other.refused_per_ip;
        self.closed_unauthenticated += other.closed_unauthenticated;
        self.reconnects += other.reconnects;
        self.http_requests += other.http_requests;
    }
}

/// Traffic of one WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WsConnectionStats {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Whether this side dialled it.
    pub dialled: bool,
    /// Whether the upgrade completed.
    pub open: bool,
    /// Whether it is trusted: an authenticated session runs over it, or
    /// this side dialled it.
    pub authenticated: bool,
    /// Milliseconds since the TCP connection began.
    pub age_ms: u64,
    /// Binary messages sent.
    pub messages_sent: u64,
    /// Binary messages received.
    pub messages_received: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
}

impl WsConnectionStats {
    pub(crate) fn new(peer: SocketAddr, dialled: bool) -> Self {
        WsConnectionStats {
            peer,
            dialled,
            open: false,
            authenticated: dialled,
            age_ms: 0,
            messages_sent: 0,
            messages_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_copies_and_stats_add_up() {
        let c = WsCounters::default();
        WsCounters::inc(&c.connections_open);
        WsCounters::inc(&c.connections_open);
        WsCounters::dec(&c.connections_open);
        WsCounters::inc(&c.reconnects);
        let mut total = c.snapshot();
        assert_eq!((total.connections_open, total.reconnects), (1, 1));
        total.add(&c.snapshot());
        assert_eq!((total.connections_open, total.reconnects), (2, 2));
    }
}
