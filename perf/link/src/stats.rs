//! Counters of a running relay, per direction.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// One direction's counters, as read by [`Relay::stats`](crate::Relay::stats).
///
/// Once the relay is idle: `received = forwarded − duplicated +
/// dropped_loss + dropped_queue + dropped_overload + send_errors`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectionStats {
    /// Datagrams the relay read in this direction.
    pub received: u64,
    /// Datagrams it sent on (duplicate copies included).
    pub forwarded: u64,
    /// Bytes it sent on (duplicate copies included).
    pub forwarded_bytes: u64,
    /// Lost by the emulated loss ([`LinkDirection::loss`](crate::LinkDirection::loss)
    /// or burst loss).
    pub dropped_loss: u64,
    /// Dropped at the tail of the full queue of a rate-limited link.
    pub dropped_queue: u64,
    /// Dropped because the relay itself was over its bounds (in-flight
    /// bytes, or its hand-off queue to the scheduling thread): not part of
    /// the emulated link; non-zero means the relay could not keep up.
    pub dropped_overload: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Datagrams held back by the reorder delay.
    pub reordered: u64,
    /// Sends that failed (for instance the far end's port closed).
    pub send_errors: u64,
}

impl fmt::Display for DirectionStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {}, forwarded {} ({} B), lost {}, queue drops {}, overload drops {}, \
             duplicated {}, reordered {}, send errors {}",
            self.received,
            self.forwarded,
            self.forwarded_bytes,
            self.dropped_loss,
            self.dropped_queue,
            self.dropped_overload,
            self.duplicated,
            self.reordered,
            self.send_errors
        )
    }
}

/// Both directions and the clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Client → upstream.
    pub forward: DirectionStats,
    /// Upstream → client.
    pub backward: DirectionStats,
    /// Client addresses served (each with its own upstream socket).
    pub clients: u64,
    /// Datagrams from clients over [`LinkConfig::max_clients`](crate::LinkConfig::max_clients), dropped.
    pub refused_clients: u64,
}

impl fmt::Display for RelayStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "forward:  {}", self.forward)?;
        writeln!(f, "backward: {}", self.backward)?;
        write!(
            f,
            "clients: {} (datagrams from clients over the limit: {})",
            self.clients, self.refused_clients
        )
    }
}

/// The live counters behind [`DirectionStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
    pub forwarded_bytes: AtomicU64,
    pub dropped_loss: AtomicU64,
    pub dropped_queue: AtomicU64,
    pub dropped_overload: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
    pub send_errors: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            received: get(&self.received),
            forwarded: get(&self.forwarded),
            forwarded_bytes: get(&self.forwarded_bytes),
            dropped_loss: get(&self.dropped_loss),
            dropped_queue: get(&self.dropped_queue),
            dropped_overload: get(&self.dropped_overload),
            duplicated: get(&self.duplicated),
            reordered: get(&self.reordered),
            send_errors: get(&self.send_errors),
        }
    }
}
