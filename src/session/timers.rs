//! A session's timers: when it must next be woken, and what is due then
//! (handshake retransmission and timeout, keepalive and idle timeout, key
//! probes, key and rekey lifetimes, reassembly expiry).

use std::time::{Duration, Instant};

use super::*;

impl Session {
    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            SessionState::Closed => None,
            SessionState::Closing => self.close_deadline,
            SessionState::Handshaking => Some(
                self.retransmit_at
                    .map_or(self.handshake_deadline, |r| r.min(self.handshake_deadline)),
            ),
            SessionState::Established => {
                let mut t = (self.last_recv + self.config.idle_timeout).min(self.keepalive_at());
                if let Some(r) = self.retransmit_at {
                    t = t.min(r);
                }
                if let Some(r) = self.reassembler.poll_timeout() {
                    t = t.min(r);
                }
                if let Some((_, sent)) = self.key_probe {
                    t = t.min(sent + self.probe_interval());
                }
                if let Some(until) = self.previous_key_until {
                    t = t.min(until);
                }
                t = t.min(self.rekey_timeout());
                if let Some(c) = self.channels.as_ref().and_then(|c| c.poll_timeout()) {
                    t = t.min(c);
                }
                Some(t)
            }
        }
    }

    /// How long to wait for a pong before pinging again: twice the smoothed
    /// round trip, at least the initial retransmission timeout.
    pub(super) fn probe_interval(&self) -> Duration {
        self.rtt.smoothed.map_or(self.config.initial_rto, |r| {
            (r * 2).max(self.config.initial_rto)
        })
    }

    pub(super) fn keepalive_at(&self) -> Instant {
        self.last_ping.max(self.last_send.min(self.last_recv)) + self.config.keepalive_interval
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            SessionState::Closed => {}
            SessionState::Closing => {
                if self.close_deadline.is_some_and(|d| now >= d) {
                    self.finish_close();
                }
            }
            SessionState::Handshaking => {
                if now >= self.handshake_deadline {
                    self.terminate(CloseReason::HandshakeTimeout);
                    return;
                }
                if self.retransmit_at.is_some_and(|r| now >= r) {
                    if let Some(Pending::Initiator { msg1, cookie, .. }) = &self.pending {
                        let msg1 = match cookie {
                            Some(c) => crate::crypto::cookie::echo(self.id, c, msg1),
                            None => msg1.clone(),
                        };
                        self.stats.retransmits += 1;
                        self.queue(&msg1, now);
                        self.backoff(now);
                    } else {
                        self.retransmit_at = None;
                    }
                }
            }
            SessionState::Established => {
                if now >= self.last_recv + self.config.idle_timeout {
                    self.send_close_frame(close_code::IDLE_TIMEOUT, "idle timeout", now);
                    self.terminate(CloseReason::IdleTimeout);
                    return;
                }
                if self.retransmit_at.is_some_and(|r| now >= r) {
                    match self.unconfirmed_msg3.clone() {
                        Some(m3) if now < self.handshake_deadline => {
                            self.stats.retransmits += 1;
                            self.queue(&m3, now);
                            self.backoff(now);
                        }
                        _ => self.retransmit_at = None,
                    }
                }
                if let Some(c) = self.channels.as_mut() {
                    if c.poll_timeout().is_some_and(|t| now >= t) {
                        c.handle_timeout(now);
                    }
                }
                let expired = self.reassembler.handle_timeout(now);
                let _ = expired; // counted by the reassembler's stats
                self.key_timers(now);
                if self.state != SessionState::Established {
                    return;
                }
                let probe_due = self
                    .key_probe
                    .is_some_and(|(_, sent)| now >= sent + self.probe_interval());
                if probe_due || now >= self.keepalive_at() {
                    self.send_ping(now);
                }
            }
        }
    }

    /// Key lifetimes by time: drops the previous receive key a few round
    /// trips after the peer's update, and runs the rekey's timers (start,
    /// repeat, hard lifetime: the `rekey` module). May close the session.
    pub(super) fn key_timers(&mut self, now: Instant) {
        if self.previous_key_until.is_some_and(|t| now >= t) {
            self.previous_key_until = None;
            if let Some(k) = &mut self.keys {
                k.recv.discard_previous();
            }
        }
        self.rekey_timers(now);
    }

    /// How long the previous receive key is kept after the peer's update:
    /// three probe intervals (each at least twice the smoothed round trip),
    /// enough for any honest frame reordered across the update.
    pub(crate) fn previous_key_lifetime(&self) -> Duration {
        self.probe_interval() * 3
    }

    pub(super) fn backoff(&mut self, now: Instant) {
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.retransmit_at = Some(now + self.rto);
    }
}
