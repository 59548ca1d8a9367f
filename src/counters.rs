//! Traffic counters of a transport: plain atomics, shared between the
//! reactor that updates them (and the endpoint, which counts what it drops)
//! and whoever reads a snapshot. Knows nothing of sockets; re-exported as
//! `transport::{TransportCounters, TransportStats}`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lock-free traffic counters of a transport, shared between the reactor
/// that updates them and whoever reads [`TransportCounters::snapshot`].
#[derive(Debug)]
pub struct TransportCounters {
    started: Instant,
    running: AtomicBool,
    local_addr: SocketAddr,
    /// Bytes put on the wire.
    pub bytes_sent: AtomicU64,
    /// Bytes taken off the wire.
    pub bytes_received: AtomicU64,
    /// Datagrams put on the wire.
    pub packets_sent: AtomicU64,
    /// Datagrams taken off the wire.
    pub packets_received: AtomicU64,
    /// Datagrams dropped: undecodable, unauthenticated, replayed, refused by
    /// state, a full worker queue, or a full send queue.
    pub packets_dropped: AtomicU64,
    /// Failed sends.
    pub errors_send: AtomicU64,
    /// Failed receives.
    pub errors_receive: AtomicU64,
}

impl TransportCounters {
    /// Fresh counters for a transport bound to `local_addr`, marked running.
    pub fn new(local_addr: SocketAddr) -> Arc<Self> {
        Arc::new(TransportCounters {
            started: Instant::now(),
            running: AtomicBool::new(true),
            local_addr,
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            packets_received: AtomicU64::new(0),
            packets_dropped: AtomicU64::new(0),
            errors_send: AtomicU64::new(0),
            errors_receive: AtomicU64::new(0),
        })
    }

    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Marks the transport stopped.
    pub fn set_stopped(&self) {
        self.running.store(false, Ordering::Relaxed);
    }

    /// A consistent-enough copy of the counters (each read is atomic; the
    /// set is not one snapshot, which statistics do not need).
    pub fn snapshot(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            running: self.running.load(Ordering::Relaxed),
            local_addr: self.local_addr,
            uptime: self.started.elapsed().as_secs_f64(),
            bytes_sent: get(&self.bytes_sent),
            bytes_received: get(&self.bytes_received),
            packets_sent: get(&self.packets_sent),
            packets_received: get(&self.packets_received),
            packets_dropped: get(&self.packets_dropped),
            errors_send: get(&self.errors_send),
            errors_receive: get(&self.errors_receive),
        }
    }
}

/// Statistics of a transport: the fields users of the original STT know.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TransportStats {
    /// Whether the transport is running.
    pub running: bool,
    /// The address it is bound to.
    pub local_addr: SocketAddr,
    /// Seconds since it started.
    pub uptime: f64,
    /// Bytes put on the wire.
    pub bytes_sent: u64,
    /// Bytes taken off the wire.
    pub bytes_received: u64,
    /// Datagrams put on the wire.
    pub packets_sent: u64,
    /// Datagrams taken off the wire.
    pub packets_received: u64,
    /// Datagrams dropped (bad, unauthenticated, replayed, or no room).
    pub packets_dropped: u64,
    /// Failed sends.
    pub errors_send: u64,
    /// Failed receives.
    pub errors_receive: u64,
}

impl TransportStats {
    /// Sums the statistics of several transports sharing one address (the
    /// per-reactor sockets of one UDP transport).
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a TransportStats>) -> Option<TransportStats> {
        let mut it = parts.into_iter();
        let mut total = *it.next()?;
        for p in it {
            total.running |= p.running;
            total.uptime = total.uptime.max(p.uptime);
            total.bytes_sent += p.bytes_sent;
            total.bytes_received += p.bytes_received;
            total.packets_sent += p.packets_sent;
            total.packets_received += p.packets_received;
            total.packets_dropped += p.packets_dropped;
            total.errors_send += p.errors_send;
            total.errors_receive += p.errors_receive;
        }
        Some(total)
    }

    /// Uptime as a `Duration`.
    pub fn uptime(&self) -> Duration {
        Duration::from_secs_f64(self.uptime)
    }
}
