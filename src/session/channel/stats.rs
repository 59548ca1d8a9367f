//! [`ChannelStats`]: what a session's channels report for an application
//! to adapt by (round trip, loss, window, rates, queueing).

use std::time::{Duration, Instant};

use super::Channels;

/// Statistics of a session's channels, in the names of the transport
/// chapter where it has them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ChannelStats {
    /// Smoothed round trip.
    pub rtt: Duration,
    /// Round-trip variation.
    pub rtt_variance: Duration,
    /// Smallest round trip seen.
    pub min_rtt: Duration,
    /// Latest round-trip sample.
    pub latest_rtt: Duration,
    /// Channel packets sent.
    pub packets_sent: u64,
    /// Channel packets declared lost.
    pub packets_lost: u64,
    /// `packets_lost / packets_sent` (0 before any packet).
    pub loss_rate: f64,
    /// Congestion window in bytes.
    pub congestion_window: usize,
    /// The controller's name.
    pub congestion_controller: &'static str,
    /// Congestion events (window reductions).
    pub congestion_events: u64,
    /// Probe timeouts.
    pub probe_timeouts: u64,
    /// Bytes in flight.
    pub bytes_in_flight: usize,
    /// Pacing rate, bytes per second.
    pub pacing_rate: u64,
    /// Latest delivery-rate sample (bandwidth estimate), bytes per second.
    pub delivery_rate: u64,
    /// Datagram size packets are built for (path MTU discovery's result).
    pub datagram_size: usize,
    /// Bytes held in the send buffer (queued, or sent and unacknowledged).
    pub send_buffered: usize,
    /// How long the oldest queued message has waited.
    pub send_queue_wait: Duration,
    /// Mean wait of messages in the send queue before their first byte left.
    pub send_queue_wait_mean: Duration,
    /// Longest such wait.
    pub send_queue_wait_max: Duration,
    /// Reliable byte ranges sent again.
    pub retransmits: u64,
    /// Unreliable messages a lost packet carried (lost on the way).
    pub unreliable_lost: u64,
    /// Unreliable messages dropped from the send queue to make room.
    pub unreliable_replaced: u64,
    /// Sequenced messages dropped on arrival, a newer one being delivered.
    pub stale_dropped: u64,
    /// Incomplete unreliable messages dropped on arrival (timeout, limits).
    pub unreliable_incomplete: u64,
    /// Duplicate parts of reliable messages received (and dropped).
    pub duplicates: u64,
    /// Reliable data waits for the peer's flow-control credit.
    pub flow_blocked: bool,
    /// Reliable bytes held for the application.
    pub recv_buffered: u64,
}

impl ChannelStats {
    pub(super) fn collect(c: &Channels, now: Instant) -> Self {
        let rtt = c.recovery.rtt();
        let r = c.recovery.stats();
        let o = c.out.stats();
        let i = c.inc.stats();
        ChannelStats {
            rtt: rtt.smoothed(),
            rtt_variance: rtt.variance(),
            min_rtt: rtt.min(),
            latest_rtt: rtt.latest(),
            packets_sent: r.packets_sent,
            packets_lost: r.packets_lost,
            loss_rate: if r.packets_sent == 0 {
                0.0
            } else {
                r.packets_lost as f64 / r.packets_sent as f64
            },
            congestion_window: c.recovery.window(),
            congestion_controller: c.recovery.controller().name(),
            congestion_events: r.congestion_events,
            probe_timeouts: r.probe_timeouts,
            bytes_in_flight: c.recovery.in_flight(),
            pacing_rate: c.pacer.rate(),
            delivery_rate: c.recovery.delivery_rate(),
            datagram_size: c.pmtu.current(),
            send_buffered: c.out.held(),
            send_queue_wait: c.out.oldest_wait(now),
            send_queue_wait_mean: if o.queue_wait_count == 0 {
                Duration::ZERO
            } else {
                o.queue_wait_total / o.queue_wait_count.min(u64::from(u32::MAX)) as u32
            },
            send_queue_wait_max: o.queue_wait_max,
            retransmits: o.retransmitted_ranges,
            unreliable_lost: o.unreliable_lost,
            unreliable_replaced: o.unreliable_replaced,
            stale_dropped: i.stale,
            unreliable_incomplete: i.unreliable_incomplete,
            duplicates: i.duplicates,
            flow_blocked: c.out.credit_blocked(),
            recv_buffered: c.inc.held(),
        }
    }
}
