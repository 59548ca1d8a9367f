//! Per-peer quotas: what one member (node id) or one address may hold of a
//! node, so that it cannot take what the node-wide limits leave for
//! everyone.
//!
//! - incoming sessions per node id and per IP address;
//! - pending incoming handshakes per IP address (the node id of an
//!   initiator is only known at message 3), and per reliable connection (a
//!   WebSocket connection carries many message 1s for one TCP handshake);
//! - reassembly bytes per node id: each peer's sessions draw from a share
//!   of the node's reassembly budget.
//!
//! Only sessions peers open are charged; the node's own connects are its
//! application's choice. The counts change only when a handshake starts,
//! completes or ends, so a lock on one map is cheap enough.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::crypto::NodeId;
use crate::stream::MemoryBudget;

/// The limits. `Default` gives the values below; each says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Incoming sessions one node id may hold. Default 1,024: far beyond
    /// what one peer of a server needs, a hundredth of the default session
    /// table.
    pub sessions_per_peer: usize,
    /// Incoming sessions (established or pending) from one IP address.
    /// Default 1,024 (many clients may share one NAT address).
    pub sessions_per_address: usize,
    /// Pending incoming handshakes from one IP address. Default 64: a
    /// legitimate address has a handful at once; a sixty-fourth of the
    /// default pending limit.
    pub pending_per_address: usize,
    /// Pending incoming handshakes over one reliable connection (a
    /// WebSocket connection). Default 8.
    pub pending_per_connection: usize,
    /// Reassembly bytes all sessions of one node id may hold. Default
    /// 33 MiB, what one session may hold: two maximum-size (16 MiB)
    /// messages in flight with their fragment bitmaps, however many
    /// sessions the peer spreads them over.
    pub reassembly_per_peer: usize,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            sessions_per_peer: 1024,
            sessions_per_address: 1024,
            pending_per_address: 64,
            pending_per_connection: 8,
            reassembly_per_peer: 33 << 20,
        }
    }
}

#[derive(Debug, Default)]
struct AddressUse {
    sessions: usize,
    pending: usize,
}

#[derive(Debug)]
struct PeerUse {
    /// Incoming sessions, counted against the quota.
    sessions: usize,
    /// Sessions (either way) drawing from `budget`.
    users: usize,
    budget: MemoryBudget,
}

#[derive(Debug, Default)]
struct Usage {
    addresses: HashMap<IpAddr, AddressUse>,
    peers: HashMap<NodeId, PeerUse>,
}

impl Usage {
    fn tidy_address(&mut self, ip: IpAddr) {
        if self
            .addresses
            .get(&ip)
            .is_some_and(|a| a.pending == 0 && a.sessions == 0)
        {
            self.addresses.remove(&ip);
        }
    }

    fn tidy_peer(&mut self, peer: NodeId) {
        if self
            .peers
            .get(&peer)
            .is_some_and(|p| p.sessions == 0 && p.users == 0)
        {
            self.peers.remove(&peer);
        }
    }
}

/// What every shard of a node counts against the [`QuotaConfig`].
#[derive(Debug)]
pub(crate) struct Quotas {
    pub limits: QuotaConfig,
    usage: Mutex<Usage>,
    /// Handshakes refused by a quota.
    pub refused: AtomicU64,
}

impl Quotas {
    pub(crate) fn new(limits: QuotaConfig) -> Self {
        Quotas {
            limits,
            usage: Mutex::new(Usage::default()),
            refused: AtomicU64::new(0),
        }
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        // Plain counters: a panic elsewhere cannot leave them half-made.
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refuse(&self) -> bool {
        self.refused.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// A handshake from `addr` starts: charged as pending if the address
    /// has room.
    pub(crate) fn start_pending(&self, addr: SocketAddr) -> bool {
        let mut usage = self.usage();
        let a = usage.addresses.entry(addr.ip()).or_default();
        if a.pending >= self.limits.pending_per_address
            || a.sessions + a.pending >= self.limits.sessions_per_address
        {
            usage.tidy_address(addr.ip());
            return self.refuse();
        }
        a.pending += 1;
        true
    }

    /// A pending handshake from `addr` ended (completed or not).
    pub(crate) fn end_pending(&self, addr: SocketAddr) {
        let mut usage = self.usage();
        if let Some(a) = usage.addresses.get_mut(&addr.ip()) {
            a.pending = a.pending.saturating_sub(1);
        }
        usage.tidy_address(addr.ip());
    }

    /// Whether node `peer` may open one more session (counted as refused if
    /// not). Sessions of one peer completing at once on several shards may
    /// pass together: the bound holds within the number of shards.
    pub(crate) fn peer_has_room(&self, peer: NodeId) -> bool {
        let full = self
            .usage()
            .peers
            .get(&peer)
            .is_some_and(|p| p.sessions >= self.limits.sessions_per_peer);
        if full {
            return self.refuse();
        }
        true
    }

    /// An incoming session of `peer` from `addr` is established.
    pub(crate) fn add_session(&self, addr: SocketAddr, peer: NodeId) {
        let mut usage = self.usage();
        usage.addresses.entry(addr.ip()).or_default().sessions += 1;
        usage
            .peers
            .entry(peer)
            .or_insert_with(|| PeerUse {
                sessions: 0,
                users: 0,
                budget: MemoryBudget::new(0),
            })
            .sessions += 1;
    }

    /// An incoming session of `peer` from `addr` ended.
    pub(crate) fn end_session(&self, addr: SocketAddr, peer: NodeId) {
        let mut usage = self.usage();
        if let Some(a) = usage.addresses.get_mut(&addr.ip()) {
            a.sessions = a.sessions.saturating_sub(1);
        }
        if let Some(p) = usage.peers.get_mut(&peer) {
            p.sessions = p.sessions.saturating_sub(1);
        }
        usage.tidy_address(addr.ip());
        usage.tidy_peer(peer);
    }

    /// The reassembly budget a session of `peer` draws from: the peer's
    /// share of `node`'s. Give it back with [`release_budget`](Self::release_budget).
    pub(crate) fn budget(&self, peer: NodeId, node: &MemoryBudget) -> MemoryBudget {
        let mut usage = self.usage();
        let p = usage.peers.entry(peer).or_insert_with(|| PeerUse {
            sessions: 0,
            users: 0,
            budget: MemoryBudget::new(0),
        });
        if p.users == 0 && p.budget.used() == 0 {
            p.budget = node.child(self.limits.reassembly_per_peer);
        }
        p.users += 1;
        p.budget.clone()
    }

    /// A session of `peer` no longer draws from the peer's budget.
    pub(crate) fn release_budget(&self, peer: NodeId) {
        let mut usage = self.usage();
        if let Some(p) = usage.peers.get_mut(&peer) {
            p.users = p.users.saturating_sub(1);
        }
        usage.tidy_peer(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn pending_and_sessions_are_bounded_per_address_and_peer() {
        let q = Quotas::new(QuotaConfig {
            sessions_per_peer: 2,
            sessions_per_address: 3,
            pending_per_address: 2,
            ..QuotaConfig::default()
        });
        let peer = NodeId([1; 32]);
        // Two pending from one address (any port), not a third.
        assert!(q.start_pending(at(1)));
        assert!(q.start_pending(at(2)));
        assert!(!q.start_pending(at(3)));
        // Both complete as the same peer.
        for port in [1, 2] {
            assert!(q.peer_has_room(peer));
            q.end_pending(at(port));
            q.add_session(at(port), peer);
        }
        // A third session of that peer is refused, from anywhere.
        assert!(!q.peer_has_room(peer));
        // The address holds two sessions: one more pending fits, then the
        // address is full (3).
        assert!(q.start_pending(at(4)));
        assert!(!q.start_pending(at(5)));
        q.end_pending(at(4));
        q.end_session(at(1), peer);
        assert!(q.peer_has_room(peer));
        assert!(q.start_pending(at(6)));
        assert_eq!(q.refused.load(Ordering::Relaxed), 3);
        // Everything released: nothing is kept.
        q.end_pending(at(6));
        q.end_session(at(2), peer);
        let usage = q.usage();
        assert!(usage.addresses.is_empty() && usage.peers.is_empty());
    }

    #[test]
    fn a_peer_s_sessions_share_one_reassembly_budget() {
        let q = Quotas::new(QuotaConfig {
            reassembly_per_peer: 100,
            ..QuotaConfig::default()
        });
        let node = MemoryBudget::new(1000);
        let peer = NodeId([1; 32]);
        let (a, b) = (q.budget(peer, &node), q.budget(peer, &node));
        assert!(a.try_reserve(70));
        assert!(!b.try_reserve(31), "the peer's share is spent");
        let other = q.budget(NodeId([2; 32]), &node);
        assert!(other.try_reserve(100), "another peer has its own");
        assert_eq!(node.used(), 170);
        a.release(70);
        other.release(100);
        for p in [peer, peer, NodeId([2; 32])] {
            q.release_budget(p);
        }
        assert!(q.usage().peers.is_empty());
    }
}
