//! The receive path: datagrams in, handshake progress, opened frames,
//! control messages and delivered messages out.

use std::time::Instant;

use crate::crypto::rekey::initial_chaining_key;
use crate::crypto::HandshakeOutcome;
use crate::crypto::{RecvKeys, SendKeys};
use crate::frame::{
    close_code, BatchRecords, Control, Flags, FrameError, FrameType, Header, HEADER_LEN,
};
use crate::session::{
    handshake_header, CloseReason, Event, Keys, PeerGate, Pending, Role, Session, SessionError,
    SessionState, MAX_BATCH_RECORDS,
};
use crate::stream::FragmentHeader;

impl Session {
    /// Feeds a received datagram. The datagram is decrypted in place.
    ///
    /// Every frame in it is processed in order; the first bad frame stops the
    /// datagram and its error is returned (count it as dropped). Frames before
    /// it stay processed.
    ///
    /// Returns `Ok(true)` when the datagram proved to come from the peer and
    /// is its newest: a sealed frame with the highest packet number so far
    /// opened, or a handshake message verified. Only such a datagram may move
    /// the session to a new path (NAT rebinding, another transport): a late
    /// but genuine datagram from the old path must not move it back.
    /// `Ok(false)` means it was harmless but proves nothing new (a duplicate
    /// handshake message, which anyone could have replayed, or an older
    /// packet).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &mut [u8],
    ) -> Result<bool, SessionError> {
        let total = datagram.len();
        let mut rest = datagram;
        let mut used = false;
        let mut authenticated = false;
        let result = loop {
            if rest.is_empty() {
                break Ok(authenticated);
            }
            let header = match Header::decode(rest) {
                Ok(h) => h,
                Err(e) => break Err(e.into()),
            };
            let end = HEADER_LEN + header.payload_len as usize;
            if rest.len() < end {
                break Err(FrameError::Truncated {
                    needed: end,
                    got: rest.len(),
                }
                .into());
            }
            let (frame, tail) = std::mem::take(&mut rest).split_at_mut(end);
            rest = tail;
            if header.session_id != self.id {
                break Err(SessionError::WrongSession {
                    expected: self.id,
                    got: header.session_id,
                });
            }
            let (head, payload) = frame.split_at_mut(HEADER_LEN);
            let head: &[u8; HEADER_LEN] = match (&*head).try_into() {
                Ok(h) => h,
                Err(_) => break Err(SessionError::Malformed("header")),
            };
            match self.handle_frame(now, &header, head, payload) {
                Ok(proof) => {
                    used = true;
                    authenticated |= proof;
                    self.stats.frames_received += 1;
                }
                Err(e) => break Err(e),
            }
        };
        if used {
            self.stats.bytes_received += total as u64;
        }
        if result.is_err() {
            self.stats.frames_dropped += 1;
        }
        result
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        header: &Header,
        header_bytes: &[u8; HEADER_LEN],
        payload: &mut [u8],
    ) -> Result<bool, SessionError> {
        match header.frame_type {
            FrameType::Handshake => self.handle_handshake(now, header, header_bytes, payload),
            FrameType::Auth => self.handle_auth(now, header, header_bytes, payload),
            _ => self
                .handle_sealed(now, header, header_bytes, payload)
                .map(|()| std::mem::take(&mut self.sealed_newest)),
        }
    }

    /// Address validation (see [`crate::crypto::cookie`]): a cookie
    /// challenge to the initiator, or a repeated cookie echo to the
    /// responder. Neither proves anything about the peer.
    fn handle_auth(
        &mut self,
        now: Instant,
        header: &Header,
        header_bytes: &[u8; HEADER_LEN],
        payload: &[u8],
    ) -> Result<bool, SessionError> {
        use crate::crypto::cookie;
        let unexpected = SessionError::Unexpected {
            frame_type: FrameType::Auth,
            state: self.state,
        };
        match &mut self.pending {
            // The responder is under load and wants proof of our address:
            // message 1 again, wrapped with its cookie, at once.
            Some(Pending::Initiator {
                handshake,
                msg1,
                cookie: held,
                ..
            }) => {
                // Only a member that saw our message 1 can make us echo it.
                let key = handshake.challenge_key();
                if header.packet_number == cookie::REFUSAL_PN {
                    // Only a server that read our token's ticket can refuse
                    // it (docs/PROTOCOL.md 14.6).
                    let reason = cookie::parse_refusal(header, header_bytes, payload, &key, msg1)
                        .map(crate::token::TokenRefusal::from_u8)
                        .ok_or(unexpected)?;
                    self.terminate(CloseReason::TokenRefused(reason));
                    return Ok(false);
                }
                let fresh = cookie::parse_challenge(header, header_bytes, payload, &key, msg1)
                    .ok_or(unexpected)?;
                if *held == Some(fresh) {
                    // A duplicate challenge: the retransmission timer
                    // repeats the echo; answering every copy at once would
                    // let a forger make us send more than it does.
                    return Ok(false);
                }
                *held = Some(fresh);
                let echo = cookie::echo(self.id, &fresh, msg1);
                self.stats.retransmits += 1;
                self.queue(&echo, now);
                Ok(false)
            }
            // Responder: the echo that created this session, again (our
            // message 2 was lost). Answered like a repeated message 1.
            Some(Pending::Responder { msg1, msg2, .. }) => {
                let mut whole = header_bytes.to_vec();
                whole.extend_from_slice(payload);
                match cookie::parse_echo(&whole) {
                    Ok((_, _, inner)) if inner == &msg1[..] => {
                        let again = msg2.clone();
                        self.stats.retransmits += 1;
                        self.queue(&again, now);
                        Ok(false)
                    }
                    _ => Err(unexpected),
                }
            }
            None => Err(unexpected),
        }
    }

    fn handle_handshake(
        &mut self,
        now: Instant,
        header: &Header,
        header_bytes: &[u8; HEADER_LEN],
        msg: &[u8],
    ) -> Result<bool, SessionError> {
        let unexpected = SessionError::Unexpected {
            frame_type: FrameType::Handshake,
            state: self.state,
        };
        if header.flags != Flags::EMPTY || header.stream_id != 0 {
            return Err(SessionError::Malformed(
                "handshake frames carry no flags and stream 0",
            ));
        }
        let same_frame = |copy: &[u8]| {
            copy.len() == HEADER_LEN + msg.len()
                && copy[..HEADER_LEN] == header_bytes[..]
                && copy[HEADER_LEN..] == *msg
        };
        match (header.packet_number, &mut self.pending) {
            // Responder: a duplicate message 1 (its message 2 was lost).
            // Anyone can replay message 1, so this proves nothing; the answer
            // is message 2 again, no larger than what provoked it.
            (1, Some(Pending::Responder { msg1, msg2, .. })) => {
                if !same_frame(msg1) {
                    return Err(unexpected);
                }
                let again = msg2.clone();
                self.stats.retransmits += 1;
                self.queue(&again, now);
                Ok(false)
            }
            // Initiator: message 2.
            (
                2,
                Some(Pending::Initiator {
                    handshake,
                    first_sent,
                    ..
                }),
            ) => {
                handshake.refill(now);
                let (msg3, outcome) = match handshake.finish_initiator(msg) {
                    Ok(r) => r,
                    // Authentic, but a protocol this build cannot follow:
                    // waiting longer cannot help.
                    Err(e @ crate::crypto::HandshakeError::UnknownAlgorithm(_)) => {
                        self.terminate(CloseReason::HandshakeFailed(e.to_string()));
                        return Err(e.into());
                    }
                    Err(e) => return Err(e.into()),
                };
                // Karn: a retransmitted message 1 makes the sample ambiguous.
                if self.stats.retransmits == 0 {
                    self.rtt.sample(now.saturating_duration_since(*first_sent));
                }
                // Pinned to one peer: another one learns nothing more (no
                // message 3, so not even this side's identity).
                if let PeerGate::Expect(expected) = &self.gate {
                    if *expected != outcome.peer {
                        let (expected, got) = (*expected, outcome.peer);
                        self.terminate(CloseReason::UnexpectedPeer { expected, got });
                        return Ok(false);
                    }
                }
                let mut datagram = Vec::with_capacity(HEADER_LEN + msg3.len());
                handshake_header(self.id, 3, msg3.len()).write(&mut datagram);
                datagram.extend_from_slice(&msg3);
                self.queue(&datagram, now);
                self.unconfirmed_msg3 = Some(datagram);
                self.rto = self.config.initial_rto;
                self.retransmit_at = Some(now + self.rto);
                self.establish(outcome, now);
                Ok(true)
            }
            // Responder: message 3.
            (
                3,
                Some(Pending::Responder {
                    handshake, sent, ..
                }),
            ) => {
                handshake.refill(now);
                let outcome = handshake.finish_responder(msg)?;
                if self.stats.retransmits == 0 {
                    self.rtt.sample(now.saturating_duration_since(*sent));
                }
                let mut copy = header_bytes.to_vec();
                copy.extend_from_slice(msg);
                self.msg3_seen = Some(copy);
                let refused = match &self.gate {
                    PeerGate::Check(allow) => !allow(outcome.peer),
                    _ => false,
                };
                let peer = outcome.peer;
                self.establish(outcome, now);
                if refused {
                    // Keys are there to seal the refusal; the application
                    // never learns of the session.
                    self.events.clear();
                    self.send_close_frame(close_code::REFUSED, "refused", now);
                    self.terminate(CloseReason::Refused { peer });
                    return Ok(false);
                }
                // Confirms the handshake to the initiator.
                self.send_ping(now);
                Ok(true)
            }
            // Responder, established: the very message 3 again means our
            // confirmation was lost. Repeat it (a ping is smaller than
            // message 3), at most once per retransmission interval.
            (3, None) if self.msg3_seen.as_deref().is_some_and(same_frame) => {
                if self.state == SessionState::Established
                    && now >= self.last_ping + self.config.initial_rto
                {
                    self.send_ping(now);
                }
                Ok(false)
            }
            // Initiator, established: a late duplicate message 2. Harmless,
            // and no sign of life (anyone could replay it).
            (2, None) if self.role == Role::Initiator => Ok(false),
            _ => Err(unexpected),
        }
    }

    fn establish(&mut self, outcome: HandshakeOutcome, now: Instant) {
        let mut send = SendKeys::new(outcome.algorithm, &outcome.send_secret);
        if let Some(n) = self.config.key_update_interval {
            send.set_update_interval(n);
        }
        let recv = RecvKeys::new(outcome.algorithm, &outcome.recv_secret);
        let ck = match self.role {
            Role::Initiator => initial_chaining_key(&outcome.send_secret, &outcome.recv_secret),
            Role::Responder => initial_chaining_key(&outcome.recv_secret, &outcome.send_secret),
        };
        self.keys = Some(Keys { send, recv, ck });
        self.last_rekey = now;
        self.pending = None;
        self.peer = Some(outcome.peer);
        self.state = SessionState::Established;
        self.start_channels(now);
        self.last_recv = now;
        self.last_ping = now;
        if self.role == Role::Responder {
            self.retransmit_at = None;
            self.events.push_back((
                Event::Established {
                    peer: outcome.peer,
                    algorithm: outcome.algorithm,
                },
                0,
            ));
        }
        // The initiator reports `Established` once the responder confirms
        // (its first sealed frame): by then both sides hold the keys, so
        // nothing sent after the event can meet a responder still waiting
        // for message 3.
    }

    fn handle_sealed(
        &mut self,
        now: Instant,
        header: &Header,
        header_bytes: &[u8; HEADER_LEN],
        payload: &mut [u8],
    ) -> Result<(), SessionError> {
        let Some(keys) = &mut self.keys else {
            return Err(SessionError::Unexpected {
                frame_type: header.frame_type,
                state: self.state,
            });
        };
        if matches!(self.state, SessionState::Closed) {
            return Err(SessionError::Unexpected {
                frame_type: header.frame_type,
                state: self.state,
            });
        }
        let newest = keys.recv.highest().is_none_or(|h| header.packet_number > h);
        let generation = keys.recv.current_generation();
        let opened = keys.recv.open(header, header_bytes, payload);
        let plaintext = match opened {
            Ok(p) => p,
            Err(e) => {
                if keys.recv.integrity_limit_reached() {
                    self.send_close_frame(close_code::INTEGRITY_LIMIT, "integrity limit", now);
                    self.terminate(CloseReason::IntegrityLimit);
                }
                return Err(e.into());
            }
        };
        let advanced = keys.recv.current_generation();
        if advanced != generation {
            // The peer updated its key: the old one goes a few round trips
            // from now. A rekey waiting for that learns of it first (before
            // the frame's own control message, which may start the next).
            self.previous_key_until = Some(now + self.previous_key_lifetime());
            self.on_peer_generation(advanced, now);
        }
        self.last_recv = now;
        self.sealed_newest = newest;
        // A CLOSE as the responder's first frame refuses the handshake: the
        // session never counts as established.
        let confirmed = self.unconfirmed_msg3.take().is_some()
            && !(header.frame_type == FrameType::Control
                && matches!(Control::decode(plaintext), Ok(Control::Close { .. })));
        if confirmed {
            self.retransmit_at = None;
            if let (Some(peer), Some(k)) = (self.peer, &self.keys) {
                self.events.push_back((
                    Event::Established {
                        peer,
                        algorithm: k.send.algorithm(),
                    },
                    0,
                ));
            }
        }
        if self.state == SessionState::Closing {
            // Only a CLOSE matters now; anything else is answered with CLOSE.
            if let (FrameType::Control, Ok(Control::Close { .. })) =
                (header.frame_type, Control::decode(plaintext))
            {
                self.finish_close();
            } else if self.close_frame_allowance > 0 {
                self.close_frame_allowance -= 1;
                if let Some(CloseReason::Local { code, .. }) = self.close_reason {
                    self.send_close_frame(code, "", now);
                }
            }
            return Ok(());
        }
        match header.frame_type {
            FrameType::Control => self.handle_control(now, plaintext),
            FrameType::Channel => self.on_channel_frame(now, header.packet_number, plaintext),
            FrameType::Stream => {
                let (fragment, chunk) = FragmentHeader::decode(plaintext)?;
                if FrameType::from_u8(fragment.inner_type).is_none_or(|t| !t.is_message()) {
                    return Err(SessionError::Malformed("fragment of a non-message type"));
                }
                if let Some(done) =
                    self.reassembler
                        .insert(now, header.stream_id, &fragment, chunk)?
                {
                    // inner_type checked above.
                    let frame_type = FrameType::from_u8(done.inner_type).unwrap_or(FrameType::Data);
                    self.deliver(done.stream_id, frame_type, done.payload);
                }
                Ok(())
            }
            t if header.flags.contains(Flags::BATCH) => {
                // Parse and check all records before delivering any: a
                // malformed batch delivers nothing.
                let max = self.config.reassembly.max_message_size;
                // At most MAX_BATCH_RECORDS of them: one record more and
                // the frame is refused whole.
                let records: Vec<&[u8]> = BatchRecords::new(plaintext)
                    .take(MAX_BATCH_RECORDS + 1)
                    .collect::<Result<_, _>>()?;
                if records.len() > MAX_BATCH_RECORDS {
                    return Err(FrameError::BadBatch("more records than MAX_BATCH_RECORDS").into());
                }
                if let Some(r) = records.iter().find(|r| r.len() > max) {
                    return Err(SessionError::MessageTooLarge { len: r.len(), max });
                }
                for r in records {
                    let payload = self.payload_of(r);
                    self.deliver(header.stream_id, t, payload);
                }
                Ok(())
            }
            _ if plaintext.len() > self.config.reassembly.max_message_size => {
                Err(SessionError::MessageTooLarge {
                    len: plaintext.len(),
                    max: self.config.reassembly.max_message_size,
                })
            }
            t => {
                let payload = self.payload_of(plaintext);
                self.deliver(header.stream_id, t, payload);
                Ok(())
            }
        }
    }

    fn deliver(&mut self, stream_id: u32, frame_type: FrameType, payload: Vec<u8>) {
        self.stats.messages_received += 1;
        self.events.push_back((
            Event::Message {
                stream_id,
                frame_type,
                payload,
            },
            0,
        ));
    }

    fn handle_control(&mut self, now: Instant, plaintext: &[u8]) -> Result<(), SessionError> {
        match Control::decode(plaintext)? {
            Control::Ping { token } => self.send_control(&Control::Pong { token }, now),
            Control::Pong { token } => self.on_pong(token, now),
            // Advisory in this version: the node's flow control reads
            // transport backpressure instead.
            Control::FlowCredit { .. } => {}
            Control::KeyRotation => {
                if let Some(k) = &mut self.keys {
                    k.send.request_update();
                }
            }
            Control::Close { code, reason } => self.terminate(CloseReason::Peer { code, reason }),
            Control::Error { code, message } => self
                .events
                .push_back((Event::PeerError { code, message }, 0)),
            // Answered along the session's path (the caller's choice); the
            // bytes prove that this side received the challenge.
            Control::PathChallenge { data } => {
                self.send_control(&Control::PathResponse { data }, now)
            }
            Control::PathResponse { data } => {
                if self.path_responses.len() == super::MAX_PATH_RESPONSES {
                    self.path_responses.pop_front();
                }
                self.path_responses.push_back(data);
            }
            Control::RekeyRequest { seq, ephemeral } => {
                return self.on_rekey_request(seq, &ephemeral, now)
            }
            Control::RekeyResponse { seq, ephemeral } => {
                return self.on_rekey_response(seq, &ephemeral, now)
            }
        }
        Ok(())
    }
}
