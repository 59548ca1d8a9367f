//! Pings and path challenges: liveness, round-trip samples, the probes that
//! confirm a key update, and the PATH_CHALLENGE/PATH_RESPONSE exchange that
//! validates a new path.

use std::time::{Duration, Instant};

use super::*;

impl Session {
    /// Sends a ping now (it also refreshes the round-trip estimate).
    pub fn send_ping(&mut self, now: Instant) {
        if self.state != SessionState::Established {
            return;
        }
        let token = self.next_token(now);
        self.last_ping = now;
        if let Some((_, sent)) = &mut self.key_probe {
            *sent = now;
        }
        self.send_control(&Control::Ping { token }, now);
    }

    /// Seals a PATH_CHALLENGE carrying `data` (8 bytes the caller drew from
    /// a CSPRNG) for a path the caller wants to validate (the peer appeared
    /// at a new address), and hands it over instead of queueing it: the
    /// caller sends it along that path only, and counts the path validated
    /// once [`poll_path_response`](Self::poll_path_response) returns `data`.
    /// `None` unless established.
    pub fn path_challenge(&mut self, now: Instant, data: [u8; 8]) -> Option<Vec<u8>> {
        if self.state != SessionState::Established {
            return None;
        }
        let at = self.control.len();
        self.send_control(&Control::PathChallenge { data }, now);
        // The challenge is the first datagram queued by that call (a
        // key-update probe may follow it; that one stays for the current
        // path, and carries nothing of the challenge).
        self.control.remove(at)
    }

    /// Seals any control message (tests play hostile peers with it).
    #[cfg(test)]
    pub(crate) fn send_control_for_test(&mut self, control: &Control, now: Instant) {
        self.send_control(control, now);
    }

    /// The last ping token handed out (tests predict tokens with it).
    #[cfg(test)]
    pub(crate) fn last_token_for_test(&self) -> u64 {
        self.last_token
    }

    /// The next PATH_RESPONSE received (its bytes), oldest first; the last
    /// few are kept.
    pub fn poll_path_response(&mut self) -> Option<[u8; 8]> {
        self.path_responses.pop_front()
    }

    /// The token of the last pong received.
    pub fn last_pong(&self) -> Option<u64> {
        self.last_pong
    }

    /// A ping token: nanoseconds since the session began, strictly
    /// increasing even for pings sent at the same instant.
    pub(super) fn next_token(&mut self, now: Instant) -> u64 {
        let clock = now.saturating_duration_since(self.created).as_nanos() as u64;
        self.last_token = clock.max(self.last_token + 1);
        self.last_token
    }

    /// After anything was sealed: if it started a new key generation, send a
    /// ping under the new key; its pong will confirm the update.
    pub(crate) fn probe_key_update(&mut self, now: Instant) {
        let awaiting = self
            .keys
            .as_ref()
            .is_some_and(|k| k.send.awaiting_confirmation());
        if awaiting && self.key_probe.is_none() {
            self.ping_probing_keys(now);
        }
    }

    /// Sends a ping that probes the key update: its token, strictly above
    /// every earlier ping's, is the probe's, so only a pong to a ping sealed
    /// after the update confirms it (and the round trip is sampled from the
    /// ping's true send time).
    pub(super) fn ping_probing_keys(&mut self, now: Instant) {
        let token = self.next_token(now);
        self.key_probe = Some((token, now));
        self.last_ping = now;
        self.send_control(&Control::Ping { token }, now);
    }

    /// A pong arrived: a round-trip sample, and maybe the confirmation of a
    /// key update.
    pub(crate) fn on_pong(&mut self, token: u64, now: Instant) {
        self.last_pong = Some(token);
        let sent = self.created + Duration::from_nanos(token);
        if sent <= now {
            self.rtt.sample(now - sent);
        }
        if let Some((first, _)) = self.key_probe {
            if token >= first {
                self.key_probe = None;
                if let Some(k) = &mut self.keys {
                    k.send.confirm_update();
                }
            }
        }
    }

    /// Asks the peer to update its sending key, and updates ours.
    pub fn update_keys(&mut self, now: Instant) {
        if let Some(k) = &mut self.keys {
            k.send.request_update();
            self.send_control(&Control::KeyRotation, now);
        }
    }
}
