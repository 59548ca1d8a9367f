//! Pacing: spreads a congestion window over the round trip, in bursts no larger than a GSO batch.
//! (Temporary local stand-in until the pacer branch is merged.)

use std::time::{Duration, Instant};

/// Token-bucket pacer.
#[derive(Debug)]
pub struct Pacer {
    tokens: u64,
    capacity: u64,
    last: Instant,
    mds: usize,
    rate: u64,
}

impl Pacer {
    /// A pacer.
    pub fn new(now: Instant, max_datagram_size: usize) -> Self {
        Self {
            tokens: 10 * max_datagram_size as u64,
            capacity: 10 * max_datagram_size as u64,
            last: now,
            mds: max_datagram_size,
            rate: 0,
        }
    }
    /// Earliest time a packet may leave.
    pub fn delay(
        &mut self,
        now: Instant,
        bytes: usize,
        window: usize,
        smoothed_rtt: Duration,
        rate: Option<u64>,
    ) -> Option<Instant> {
        let rtt = smoothed_rtt.as_nanos() as u64;
        let rate = rate.unwrap_or_else(|| {
            if rtt == 0 {
                u64::MAX
            } else {
                (window as u128 * 5 / 4 * 1_000_000_000 / rtt as u128) as u64
            }
        });
        self.rate = rate;
        if rate == u64::MAX {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.last).as_nanos() as u64;
        self.tokens = (self.tokens + (elapsed as u128 * rate as u128 / 1_000_000_000) as u64)
            .min(self.capacity);
        self.last = now;
        if self.tokens >= bytes as u64 {
            return None;
        }
        let need = bytes as u64 - self.tokens;
        Some(
            now + Duration::from_nanos(
                (need as u128 * 1_000_000_000 / rate.max(1) as u128) as u64 + 1,
            ),
        )
    }
    /// Spend.
    pub fn on_sent(&mut self, bytes: usize) {
        self.tokens = self.tokens.saturating_sub(bytes as u64);
    }
    /// New MTU.
    pub fn on_mtu_update(&mut self, mds: usize) {
        self.mds = mds;
        self.capacity = 10 * mds as u64;
    }
    /// Rate.
    pub fn rate(&self) -> u64 {
        self.rate
    }
}
