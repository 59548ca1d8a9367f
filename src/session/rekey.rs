//! The rekey with fresh Diffie-Hellman, the session's side: state machine
//! and timers. The key schedule is [`crate::crypto::rekey`]; the protocol is
//! `docs/PROTOCOL.md` §6.8.
//!
//! ```text
//!             requester                                  answerer
//! Idle --timer/rekey()--> Requested                       Idle
//!   (hold own updates)       |--- RekeyRequest(seq, e_q) --->|  mix; next keys of both
//!                            |                               |  directions rekeyed; hold
//!                            |<-- RekeyResponse(seq, e_a) ---|  own updates -> Responded
//!  mix; next keys rekeyed;   |                               |
//!  switch own sending key -> Switched                        |
//!                            |--- Ping (rekeyed key) ------->|  peer switched: switch own
//!                            |                               |  sending key -> Idle (done)
//!                            |<-- Ping (rekeyed key) --------|
//!  peer switched -> Idle (done)
//! ```
//!
//! - **Why the answerer waits.** Its response carries the public key the
//!   requester needs to derive the new keys, so it is sealed under the old
//!   key; frames under the new key before the requester has read it would
//!   fail. The answerer switches once it opens a frame of the requester's
//!   rekeyed generation: proof that the response arrived.
//! - **Held updates.** From its request (requester) or its answer
//!   (answerer) until its own switch, a side makes no key update at all (by
//!   volume, by request, by time): the next generation of each direction must
//!   be the rekeyed one, and come only when the peer can open it. Both
//!   switches also confirm any update still unconfirmed (the peer opened the
//!   request or the response, sealed under the current key).
//! - **Loss.** The requester repeats its request (same `seq`, same key)
//!   every probe interval; the answerer repeats its stored response to a
//!   repeated request; the switch is a key-update probe, repeated until
//!   answered (`probe_key_update`). Nothing else is repeated, and every
//!   repetition stops at the hard lifetime.
//! - **Both at once.** Both sides may ask (the responder only halfway
//!   between `rekey_after` and `reject_after`, or through [`Session::rekey`]);
//!   two requests with the same `seq` resolve in favour of the session's
//!   initiator: it ignores the responder's, and the responder drops its own
//!   and answers the initiator's.
//! - **Hard lifetime.** When no rekey completed for `reject_after` (from the
//!   handshake or the last completed rekey), the session sends CLOSE
//!   (`REKEY_TIMEOUT`) and ends with [`CloseReason::RekeyTimeout`].

use std::time::{Duration, Instant};

use crate::crypto::rekey::{mix, Ephemeral};
use crate::frame::{close_code, Control};
use crate::session::{CloseReason, Role, Session, SessionError, SessionState};

/// Where a session's rekey stands.
pub(crate) enum Rekey {
    /// No rekey in flight.
    Idle,
    /// This side asked (request `seq`, key `ephemeral`) and waits for the
    /// answer, repeating the request at `resend_at`.
    Requested {
        seq: u64,
        ephemeral: Ephemeral,
        resend_at: Instant,
    },
    /// This side answered request `seq` (keys `request` and `response`) and
    /// waits for the peer's first frame of receive generation
    /// `until_generation`, its rekeyed one.
    Responded {
        seq: u64,
        request: [u8; 32],
        response: [u8; 32],
        until_generation: u64,
    },
    /// This side read the answer and switched its sending key; it waits for
    /// the peer's first frame of receive generation `until_generation`.
    Switched { until_generation: u64 },
}

impl Session {
    /// Starts a rekey with fresh Diffie-Hellman now (it also runs on its own
    /// every [`rekey_after`](crate::session::SessionConfig::rekey_after)).
    /// Returns whether one started: not while another is in flight, nor
    /// unless established.
    pub fn rekey(&mut self, now: Instant) -> bool {
        if self.state != SessionState::Established
            || self.keys.is_none()
            || !matches!(self.rekey, Rekey::Idle)
        {
            return false;
        }
        self.start_rekey(now);
        matches!(self.rekey, Rekey::Requested { .. })
    }

    /// Whether a rekey is in flight.
    pub fn rekey_in_flight(&self) -> bool {
        !matches!(self.rekey, Rekey::Idle)
    }

    fn start_rekey(&mut self, now: Instant) {
        let Some(ephemeral) = Ephemeral::generate() else {
            self.rekey_failed(now);
            return;
        };
        let seq = self.rekey_seq + 1;
        let public = *ephemeral.public();
        if let Some(k) = &mut self.keys {
            k.send.set_held(true);
        }
        self.rekey = Rekey::Requested {
            seq,
            ephemeral,
            resend_at: now + self.probe_interval(),
        };
        self.send_control(
            &Control::RekeyRequest {
                seq,
                ephemeral: public,
            },
            now,
        );
    }

    /// A RekeyRequest arrived (authenticated).
    pub(crate) fn on_rekey_request(
        &mut self,
        seq: u64,
        peer: &[u8; 32],
        now: Instant,
    ) -> Result<(), SessionError> {
        match &self.rekey {
            // Our response was lost: the same one again (no new key, no DH).
            Rekey::Responded {
                seq: s,
                request,
                response,
                ..
            } if *s == seq => {
                if request == peer {
                    let response = *response;
                    self.send_control(
                        &Control::RekeyResponse {
                            seq,
                            ephemeral: response,
                        },
                        now,
                    );
                }
                return Ok(());
            }
            // Both asked at once: the initiator's request wins. The
            // initiator ignores the responder's; the responder drops its own
            // and answers.
            Rekey::Requested { seq: s, .. } if *s == seq => {
                if self.role == Role::Initiator {
                    return Ok(());
                }
            }
            Rekey::Idle if seq == self.rekey_seq + 1 => {}
            // A late copy of a finished rekey's request, or out of turn.
            _ => return Ok(()),
        }
        let Some(ephemeral) = Ephemeral::generate() else {
            self.rekey_failed(now);
            return Ok(());
        };
        let Some(dh) = ephemeral.agree(peer) else {
            return Err(SessionError::Malformed(
                "rekey request with a low-order key",
            ));
        };
        let role = self.role;
        let Some(k) = &mut self.keys else {
            return Ok(());
        };
        let m = mix(&k.ck, self.id.0, seq, peer, ephemeral.public(), &dh);
        let (ours, theirs) = match role {
            Role::Initiator => (&m.i2r, &m.r2i),
            Role::Responder => (&m.r2i, &m.i2r),
        };
        k.recv.rekey_next(theirs);
        k.send.rekey_next(ours);
        k.send.set_held(true);
        k.ck = m.ck.clone();
        let until_generation = k.recv.current_generation() + 1;
        let response = *ephemeral.public();
        self.rekey_seq = seq;
        self.rekey = Rekey::Responded {
            seq,
            request: *peer,
            response,
            until_generation,
        };
        self.send_control(
            &Control::RekeyResponse {
                seq,
                ephemeral: response,
            },
            now,
        );
        Ok(())
    }

    /// A RekeyResponse arrived (authenticated).
    pub(crate) fn on_rekey_response(
        &mut self,
        seq: u64,
        peer: &[u8; 32],
        now: Instant,
    ) -> Result<(), SessionError> {
        let Rekey::Requested {
            seq: asked,
            ephemeral,
            ..
        } = &self.rekey
        else {
            // A late copy: the rekey it answered is done.
            return Ok(());
        };
        if *asked != seq {
            return Ok(());
        }
        let Some(dh) = ephemeral.agree(peer) else {
            return Err(SessionError::Malformed(
                "rekey response with a low-order key",
            ));
        };
        let Some(k) = &mut self.keys else {
            return Ok(());
        };
        let m = mix(&k.ck, self.id.0, seq, ephemeral.public(), peer, &dh);
        let (ours, theirs) = match self.role {
            Role::Initiator => (&m.i2r, &m.r2i),
            Role::Responder => (&m.r2i, &m.i2r),
        };
        k.recv.rekey_next(theirs);
        k.send.rekey_next(ours);
        k.ck = m.ck.clone();
        // Switch now: the peer can open the rekeyed key (it derived it when
        // it answered), and it opened our request, sealed under our current
        // key, which confirms any update still unconfirmed.
        k.send.set_held(false);
        k.send.confirm_update();
        k.send.request_update();
        let until_generation = k.recv.current_generation() + 1;
        self.rekey_seq = seq;
        self.rekey = Rekey::Switched { until_generation };
        self.key_probe = None;
        // The first frame under the rekeyed key: a probe whose pong
        // confirms it, repeated until then.
        self.ping_probing_keys(now);
        Ok(())
    }

    /// The peer's sending key moved to receive generation `generation`.
    pub(crate) fn on_peer_generation(&mut self, generation: u64, now: Instant) {
        if self.state != SessionState::Established {
            return;
        }
        match self.rekey {
            // The requester switched: it read our response. Our turn; the
            // requester opened our response, sealed under our current key.
            Rekey::Responded {
                until_generation, ..
            } if generation >= until_generation => {
                if let Some(k) = &mut self.keys {
                    k.send.set_held(false);
                    k.send.confirm_update();
                    k.send.request_update();
                }
                self.key_probe = None;
                self.rekey_done(now);
                self.ping_probing_keys(now);
            }
            Rekey::Switched { until_generation } if generation >= until_generation => {
                self.rekey_done(now)
            }
            _ => {}
        }
    }

    fn rekey_done(&mut self, now: Instant) {
        self.rekey = Rekey::Idle;
        self.last_rekey = now;
        self.stats.rekeys += 1;
    }

    /// No fresh ephemeral key could be drawn (the system CSPRNG failed):
    /// the session cannot renew its keys, and ends.
    fn rekey_failed(&mut self, now: Instant) {
        self.send_close_frame(close_code::REKEY_TIMEOUT, "rekey failed", now);
        self.terminate(CloseReason::RekeyTimeout);
    }

    /// How long after the last rekey this side asks for the next: the
    /// initiator at `rekey_after`, the responder halfway to `reject_after`.
    fn rekey_age(&self) -> Duration {
        let (after, reject) = (self.config.rekey_after, self.config.reject_after);
        match self.role {
            Role::Initiator => after,
            Role::Responder => after + (reject - after) / 2,
        }
    }

    /// The next rekey deadline: start, repetition or hard lifetime.
    pub(crate) fn rekey_timeout(&self) -> Instant {
        let hard = self.last_rekey + self.config.reject_after;
        match &self.rekey {
            Rekey::Idle => hard.min(self.last_rekey + self.rekey_age()),
            Rekey::Requested { resend_at, .. } => hard.min(*resend_at),
            Rekey::Responded { .. } | Rekey::Switched { .. } => hard,
        }
    }

    /// Runs the rekey's timers. May close the session.
    pub(crate) fn rekey_timers(&mut self, now: Instant) {
        if self.keys.is_none() || self.state != SessionState::Established {
            return;
        }
        if now >= self.last_rekey + self.config.reject_after {
            self.send_close_frame(close_code::REKEY_TIMEOUT, "rekey timeout", now);
            self.terminate(CloseReason::RekeyTimeout);
            return;
        }
        let start_at = self.last_rekey + self.rekey_age();
        let interval = self.probe_interval();
        let repeat = match &mut self.rekey {
            Rekey::Idle => None,
            Rekey::Requested {
                seq,
                ephemeral,
                resend_at,
            } if now >= *resend_at => {
                *resend_at = now + interval;
                Some(Control::RekeyRequest {
                    seq: *seq,
                    ephemeral: *ephemeral.public(),
                })
            }
            _ => return,
        };
        match repeat {
            Some(request) => self.send_control(&request, now),
            None if now >= start_at => self.start_rekey(now),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::crypto::CryptoError;
    use crate::frame::{HEADER_LEN, TAG_LEN};
    use crate::session::{Event, SessionConfig, Transmits};

    /// A sealed RekeyRequest datagram: header, 41 bytes, tag.
    const REQUEST_LEN: usize = HEADER_LEN + 41 + TAG_LEN;

    fn pair(config: SessionConfig) -> (Session, Session, Instant) {
        let (mut client, mut server, now) = crate::session::established_pair_for_test(config);
        exchange(&mut client, &mut server, now);
        (client, server, now)
    }

    fn datagrams(s: &mut Session) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    /// Feeds datagrams; every one must be accepted.
    fn feed(to: &mut Session, datagrams: Vec<Vec<u8>>, now: Instant) {
        for mut d in datagrams {
            to.handle_datagram(now, &mut d).expect("an honest datagram");
        }
    }

    /// Moves every datagram each way until both are quiet.
    fn exchange(a: &mut Session, b: &mut Session, now: Instant) {
        for _ in 0..16 {
            let (from_a, from_b) = (datagrams(a), datagrams(b));
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            feed(b, from_a, now);
            feed(a, from_b, now);
        }
        panic!("the sessions never went quiet");
    }

    fn messages(s: &mut Session) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| s.poll_event())
            .filter_map(|e| match e {
                Event::Message { payload, .. } => Some(payload),
                _ => None,
            })
            .collect()
    }

    /// A message each way arrives.
    fn flows(a: &mut Session, b: &mut Session, now: Instant) {
        fn one_way(from: &mut Session, to: &mut Session, now: Instant) {
            let mut out = Transmits::new();
            from.send(now, 1, b"after", &mut out).unwrap();
            feed(to, out.iter().map(<[u8]>::to_vec).collect(), now);
            assert_eq!(messages(to), vec![b"after".to_vec()]);
        }
        one_way(a, b, now);
        one_way(b, a, now);
    }

    fn idle(s: &Session) -> bool {
        matches!(s.rekey, Rekey::Idle)
    }

    fn keys(s: &Session) -> &crate::session::Keys {
        s.keys.as_ref().expect("established")
    }

    #[test]
    fn a_rekey_puts_fresh_dh_into_the_next_generation_of_both_directions() {
        let (mut c, mut s, now) = pair(SessionConfig::default());
        for round in 1..=3u64 {
            // What the ratchet alone would give next, each direction.
            let c_ratchet = keys(&c).send.next_secret_for_test();
            let s_ratchet = keys(&s).send.next_secret_for_test();
            assert!(c.rekey(now));
            assert!(!c.rekey(now), "one rekey at a time");
            exchange(&mut c, &mut s, now);
            assert!(idle(&c) && idle(&s));
            assert_eq!((c.stats().rekeys, s.stats().rekeys), (round, round));
            let (kc, ks) = (keys(&c), keys(&s));
            assert_eq!(kc.send.generation(), round);
            assert_eq!(ks.send.generation(), round);
            assert_eq!(kc.send.secret_for_test(), ks.recv.secret_for_test());
            assert_eq!(ks.send.secret_for_test(), kc.recv.secret_for_test());
            assert_ne!(kc.send.secret_for_test(), c_ratchet, "not the ratchet's");
            assert_ne!(ks.send.secret_for_test(), s_ratchet, "not the ratchet's");
            assert_eq!(*kc.ck, *ks.ck, "one chaining key");
            flows(&mut c, &mut s, now);
        }
    }

    #[test]
    fn simultaneous_requests_resolve_in_favour_of_the_initiator() {
        let (mut c, mut s, now) = pair(SessionConfig::default());
        assert!(c.rekey(now));
        assert!(s.rekey(now));
        let (from_c, from_s) = (datagrams(&mut c), datagrams(&mut s));
        // The requests cross.
        feed(&mut c, from_s, now);
        assert!(
            matches!(c.rekey, Rekey::Requested { .. }),
            "the initiator ignores the responder's request"
        );
        feed(&mut s, from_c, now);
        assert!(
            matches!(s.rekey, Rekey::Responded { .. }),
            "the responder drops its own request and answers"
        );
        exchange(&mut c, &mut s, now);
        assert!(idle(&c) && idle(&s));
        assert_eq!((c.stats().rekeys, s.stats().rekeys), (1, 1));
        assert_eq!(c.rekey_seq, 1);
        assert_eq!(
            keys(&c).send.secret_for_test(),
            keys(&s).recv.secret_for_test()
        );
        assert_eq!(
            keys(&s).send.secret_for_test(),
            keys(&c).recv.secret_for_test()
        );
        flows(&mut c, &mut s, now);
        // The other way round (the responder's request first) too.
        assert!(s.rekey(now));
        assert!(c.rekey(now));
        let (from_c, from_s) = (datagrams(&mut c), datagrams(&mut s));
        feed(&mut s, from_c, now);
        feed(&mut c, from_s, now);
        exchange(&mut c, &mut s, now);
        assert_eq!((c.stats().rekeys, s.stats().rekeys), (2, 2));
        flows(&mut c, &mut s, now);
    }

    #[test]
    fn lost_requests_and_responses_are_repeated_and_late_copies_ignored() {
        let (mut c, mut s, now) = pair(SessionConfig::default());
        assert!(c.rekey(now));
        let lost_request = datagrams(&mut c);
        assert_eq!(lost_request.len(), 1);
        let t1 = now + Duration::from_millis(300);
        c.handle_timeout(t1);
        let repeated = datagrams(&mut c);
        assert!(repeated.iter().any(|d| d.len() == REQUEST_LEN), "repeated");
        feed(&mut s, repeated, t1);
        let lost_response = datagrams(&mut s);
        assert!(matches!(s.rekey, Rekey::Responded { .. }));
        let t2 = t1 + Duration::from_millis(300);
        c.handle_timeout(t2);
        feed(&mut s, datagrams(&mut c), t2);
        let response = datagrams(&mut s);
        assert_eq!(response.len(), 1, "the stored response again");
        assert_eq!(
            response[0][HEADER_LEN..].len(),
            lost_response[0][HEADER_LEN..].len()
        );
        feed(&mut c, response, t2);
        exchange(&mut c, &mut s, t2);
        assert!(idle(&c) && idle(&s));
        let secrets = keys(&c).send.secret_for_test();
        assert_eq!(secrets, keys(&s).recv.secret_for_test());
        // Late copies of the first request and response change nothing.
        feed(&mut s, lost_request, t2);
        feed(&mut c, lost_response, t2);
        assert!(datagrams(&mut s).is_empty());
        assert!(idle(&c) && idle(&s));
        assert_eq!(keys(&c).send.secret_for_test(), secrets);
        assert_eq!((c.stats().rekeys, s.stats().rekeys), (1, 1));
        flows(&mut c, &mut s, t2);
    }

    #[test]
    fn updates_by_volume_wait_while_a_rekey_is_in_flight() {
        let config = SessionConfig {
            key_update_interval: Some(2),
            ..SessionConfig::default()
        };
        let (mut c, mut s, now) = pair(config);
        let (gc, gs) = (keys(&c).send.generation(), keys(&s).send.generation());
        assert!(c.rekey(now));
        let request = datagrams(&mut c);
        let mut out = Transmits::new();
        for i in 0..10u8 {
            c.send(now, 1, &[i], &mut out).unwrap();
        }
        assert_eq!(keys(&c).send.generation(), gc, "held while requested");
        feed(&mut s, request, now);
        feed(&mut s, out.iter().map(<[u8]>::to_vec).collect(), now);
        assert_eq!(messages(&mut s).len(), 10);
        out.clear();
        for i in 0..10u8 {
            s.send(now, 1, &[i], &mut out).unwrap();
        }
        assert_eq!(keys(&s).send.generation(), gs, "held while responded");
        let response = datagrams(&mut s);
        feed(&mut c, out.iter().map(<[u8]>::to_vec).collect(), now);
        assert_eq!(messages(&mut c).len(), 10);
        feed(&mut c, response, now);
        assert_eq!(
            keys(&c).send.generation(),
            gc + 1,
            "one update: the rekeyed one"
        );
        exchange(&mut c, &mut s, now);
        assert!(idle(&c) && idle(&s));
        assert_eq!(
            keys(&c).send.secret_for_test(),
            keys(&s).recv.secret_for_test()
        );
        flows(&mut c, &mut s, now);
    }

    #[test]
    fn old_keys_are_gone_once_the_previous_key_lifetime_passed() {
        let (mut c, mut s, now) = pair(SessionConfig::default());
        let mut out = Transmits::new();
        c.send(now, 1, b"early 1", &mut out).unwrap();
        c.send(now, 1, b"early 2", &mut out).unwrap();
        let held: Vec<Vec<u8>> = out.iter().map(<[u8]>::to_vec).collect();
        assert!(c.rekey(now));
        exchange(&mut c, &mut s, now);
        assert_eq!(s.stats().rekeys, 1);
        // Reordered across the rekey, within the previous key's lifetime:
        // still opens.
        feed(&mut s, vec![held[0].clone()], now);
        assert_eq!(messages(&mut s), vec![b"early 1".to_vec()]);
        let later = now + s.previous_key_lifetime() + Duration::from_millis(1);
        s.handle_timeout(later);
        assert!(!keys(&s).recv.has_previous());
        assert_eq!(
            s.handle_datagram(later, &mut held[1].clone()),
            Err(SessionError::Crypto(CryptoError::Authentication)),
            "sealed under the pre-rekey key: refused"
        );
        assert!(messages(&mut s).is_empty());
    }

    #[test]
    fn a_peer_that_never_answers_gets_the_session_closed_at_the_hard_lifetime() {
        // The server answers pings but never sees a rekey request.
        let (mut c, mut s, start) = pair(SessionConfig::default());
        let mut now = start;
        let mut requests = 0;
        while c.state() == SessionState::Established && now < start + Duration::from_secs(200) {
            now += Duration::from_millis(100);
            for x in [&mut c, &mut s] {
                if x.poll_timeout().is_some_and(|t| t <= now) {
                    x.handle_timeout(now);
                }
            }
            for _ in 0..4 {
                let from_c: Vec<Vec<u8>> = datagrams(&mut c)
                    .into_iter()
                    .filter(|d| {
                        let request = d.len() == REQUEST_LEN;
                        requests += usize::from(request);
                        !request
                    })
                    .collect();
                for mut d in from_c {
                    let _ = s.handle_datagram(now, &mut d);
                }
                for mut d in datagrams(&mut s) {
                    let _ = c.handle_datagram(now, &mut d);
                }
            }
        }
        assert_eq!(c.close_reason(), Some(&CloseReason::RekeyTimeout));
        let age = now - start;
        assert!(
            age >= Duration::from_secs(180) && age < Duration::from_millis(180_200),
            "closed after {age:?}"
        );
        // Repeated every probe interval from 120 s on, not more.
        assert!((100..=300).contains(&requests), "{requests} requests");
        // The server learnt it with a CLOSE, or timed out the same way.
        assert!(matches!(
            s.close_reason(),
            Some(CloseReason::Peer {
                code: close_code::REKEY_TIMEOUT,
                ..
            }) | Some(CloseReason::RekeyTimeout)
        ));
    }

    #[test]
    fn the_timer_rekeys_every_rekey_after_and_the_session_lives_on() {
        let config = SessionConfig {
            rekey_after: Duration::from_secs(2),
            reject_after: Duration::from_secs(4),
            ..SessionConfig::default()
        };
        let (mut c, mut s, start) = pair(config);
        let mut now = start;
        while now < start + Duration::from_secs(21) {
            now += Duration::from_millis(50);
            for x in [&mut c, &mut s] {
                if x.poll_timeout().is_some_and(|t| t <= now) {
                    x.handle_timeout(now);
                }
            }
            exchange(&mut c, &mut s, now);
        }
        assert!(c.is_established() && s.is_established());
        // One every 2 s, started by the initiator.
        assert_eq!(c.stats().rekeys, 10);
        assert_eq!(s.stats().rekeys, 10);
        flows(&mut c, &mut s, now);
    }
}
