//! Congestion control: the [`Controller`] trait a session's sender consults,
//! the [`Congestion`] choice in the configuration, and the controllers
//! (NewReno, CUBIC, and a model-based one).

use std::fmt;
use std::time::Instant;

use super::rtt::RttEstimator;

mod bbr;
mod cubic;
mod newreno;

/// What a congestion controller learns from the sender, and the window it
/// gives back. Sans-IO: every call carries the time.
pub trait Controller: Send + fmt::Debug {
    /// A packet of `bytes` left at `now`; `in_flight` counts it.
    fn on_sent(&mut self, now: Instant, bytes: usize, in_flight: usize);

    /// A packet of `bytes` sent at `sent` was acknowledged at `now`.
    /// `app_limited` says the sender had nothing more to send when it left
    /// (the window was not the limit, so it must not grow on it).
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: usize,
        app_limited: bool,
        rtt: &RttEstimator,
    );

    /// Packets were declared lost: the newest of them was sent at `sent`,
    /// `lost_bytes` in all. `persistent` is RFC 9002 §7.6 persistent
    /// congestion (collapse to the minimum window).
    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent: bool,
        lost_bytes: usize,
    );

    /// The datagram size changed (path MTU discovery).
    fn on_mtu_update(&mut self, max_datagram_size: usize);

    /// Bytes the sender may have in flight.
    fn window(&self) -> usize;

    /// The controller's own pacing rate in bytes per second, when it has a
    /// model of the path (otherwise the pacer spreads the window over the
    /// smoothed round trip).
    fn pacing_rate(&self) -> Option<u64> {
        None
    }

    /// A delivery-rate sample, taken once per acknowledgement that
    /// acknowledged new data. Controllers without a model ignore it.
    fn on_rate_sample(&mut self, _now: Instant, _sample: &RateSample) {}

    /// The controller's name in statistics.
    fn name(&self) -> &'static str;
}

/// One delivery-rate sample (after draft-cheng-iccrg-delivery-rate-estimation):
/// how fast the path delivered data over the interval that ends with an
/// acknowledgement. Model-based controllers steer by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSample {
    /// Bytes delivered over the interval, per second.
    pub delivery_rate: u64,
    /// The round trip of the packet whose acknowledgement ends the interval.
    pub rtt: std::time::Duration,
    /// Whether the sender was application-limited when that packet left (the
    /// sample then only bounds the path's rate from below).
    pub app_limited: bool,
    /// Bytes delivered over the whole session so far.
    pub delivered: u64,
}
