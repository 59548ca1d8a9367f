//! Admission: what becomes of a datagram for no session of this shard.
//!
//! Only a message 1 (bare, or wrapped in a cookie echo) can open a session.
//! Whatever the load, it must first pass a stateless check: a member's
//! under the network's PSK ([`Msg1Check`](crate::crypto::Msg1Check)), a
//! connect token's at the token gate (its ticket opened, its Noise message
//! checked under the client key, the token's validity; an authentic token
//! that is not valid here gets a small authenticated refusal). Neither
//! costs a Diffie-Hellman, so an outsider costs little and gets silence.
//! Then:
//!
//! - not accepting, or the shard's session table full: dropped;
//! - the shard's pending-handshake limit reached: refused and counted;
//! - over an unvalidated transport (UDP) with more pending handshakes than
//!   the cookie threshold: a stateless cookie challenge (authenticated, less
//!   than half the size of the message 1), and no state until the sender
//!   echoes the cookie from the same address (`docs/PROTOCOL.md`, 10.4);
//! - a message 1 whose timestamp is stale, or whose ephemeral key already
//!   made state on this node
//!   ([`Msg1Check::admit_fresh_at`](crate::crypto::Msg1Check::admit_fresh_at)):
//!   refused and counted (`docs/PROTOCOL.md`, 5.5);
//! - otherwise a responder session is made and counted as pending until its
//!   message 3 arrives or it ends.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::crypto::cookie::{self, ChallengeKey, CookieError};
use crate::crypto::handshake::MSG1_LEN;
use crate::frame::{FrameType, Header, SessionId, HEADER_LEN};
use crate::session::Session;
use crate::token::{GateResult, TokenAdmission};

use super::{Charge, Endpoint, Entry, Output, Path};

impl Endpoint {
    /// A datagram for no session here: a message 1, a cookie echo, or
    /// something to drop. No state is kept for anything but a message 1 that
    /// authenticates, and under load only for one whose sender proved it
    /// receives at its address.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        header: Header,
        path: Path,
        datagram: &[u8],
        out: &mut dyn Output,
    ) {
        let msg1 = match (header.frame_type, header.packet_number) {
            (FrameType::Handshake, 1) => datagram,
            (FrameType::Auth, cookie::ECHO_PN) => {
                let epoch = self.cookie_epoch(now);
                match self.config.cookie_key.open_echo(epoch, path.peer, datagram) {
                    Ok(msg1) => msg1,
                    Err(CookieError::Invalid) => {
                        // A cookie that expired, or was made for the address
                        // the client had before its NAT moved it: a fresh
                        // challenge, so that it can try again — for a genuine
                        // message 1 only, and only when there is room.
                        if let Ok((_, _, inner)) = cookie::parse_echo(datagram) {
                            let unix = (self.config.wall_clock)(now);
                            let mac = match self.authenticate(inner, unix) {
                                Auth::Member => {
                                    Some(self.config.msg1_check.challenge_key().clone())
                                }
                                Auth::Token(t) => Some(ChallengeKey::new(&t.psk)),
                                Auth::Not | Auth::Refuse(..) => None,
                            };
                            if let Some(mac) = mac.filter(|_| self.has_room()) {
                                self.challenge(&path, header.session_id, inner, &mac, now, out);
                            }
                        }
                        tracing::debug!(from = %path.peer, "cookie echo with a stale cookie");
                        return self.refused(&path);
                    }
                    Err(e) => {
                        tracing::debug!(from = %path.peer, error = %e, "cookie echo refused");
                        return self.refused(&path);
                    }
                }
            }
            _ => return path.dropped(),
        };
        let unix = (self.config.wall_clock)(now);
        let token = match self.authenticate(msg1, unix) {
            Auth::Not => return path.dropped(),
            Auth::Member => None,
            Auth::Token(admission) => Some(admission),
            Auth::Refuse(reason, psk) => {
                if self.config.accepting.load(Ordering::Relaxed) {
                    self.refuse_token(&path, header.session_id, reason, &psk, msg1, out);
                }
                return self.refused(&path);
            }
        };
        let config = &self.config;
        if !config.accepting.load(Ordering::Relaxed)
            || self.sessions.len() >= config.max_sessions_per_shard
        {
            return path.dropped();
        }
        if self.pending >= config.max_pending_per_shard {
            tracing::debug!(from = %path.peer, pending = self.pending, "pending handshake limit reached");
            return self.refused(&path);
        }
        let validated = header.frame_type == FrameType::Auth;
        // Reliable transports (a WebSocket connection, after TCP's own
        // handshake) have already proven the address.
        if !validated && !path.reliable && self.pending >= config.cookie_threshold_per_shard {
            let mac = match &token {
                Some(t) => ChallengeKey::new(&t.psk),
                None => config.msg1_check.challenge_key().clone(),
            };
            return self.challenge(&path, header.session_id, msg1, &mac, now, out);
        }
        // Quotas: one connection, one address.
        let connection = path
            .reliable
            .then_some((path.via, path.transport, path.peer));
        if let Some(c) = connection {
            let carried = self.pending_by_connection.get(&c).copied().unwrap_or(0);
            if carried >= config.quotas.limits.pending_per_connection {
                config.quotas.refused.fetch_add(1, Ordering::Relaxed);
                return self.refused(&path);
            }
        }
        if !config.quotas.start_pending(path.peer) {
            tracing::debug!(from = %path.peer, "pending handshakes per address quota reached");
            return self.refused(&path);
        }
        // State at most once per message 1, and only while its timestamp is
        // fresh (docs/PROTOCOL.md 5.5): a captured one cannot refill the
        // table. Last of the checks, so that what the quotas refuse does
        // not fill the replay cache either.
        let fresh = match &token {
            Some(t) => config.msg1_check.admit_checked(&t.msg1, now, unix),
            None => config
                .msg1_check
                .admit_fresh_at(msg1, now, unix)
                .map(|_| ()),
        };
        if let Err(e) = fresh {
            tracing::debug!(from = %path.peer, error = %e, "message 1 refused");
            config.quotas.end_pending(path.peer);
            return self.refused(&path);
        }
        let mut session_config = config.session.clone();
        session_config.max_datagram_size = path.max_datagram;
        let psk = match (&token, &config.network) {
            (Some(t), _) => &t.psk,
            (None, Some(network)) => network,
            // Unreachable: without a network key no member message 1
            // authenticates.
            (None, None) => return path.dropped(),
        };
        match Session::accept_with_budget(
            session_config,
            &config.identity,
            psk,
            msg1,
            now,
            Some(config.budget.clone()),
        ) {
            Ok(mut session) => {
                let id = session.id();
                let client = token.as_ref().map(|t| t.client.clone());
                let (gate, addr, who) = (self.config.clone(), path.peer, client.clone());
                session.check_peer(Box::new(move |node| {
                    gate.authorize
                        .as_ref()
                        .is_none_or(|allow| allow(node, addr, who.as_ref()))
                        && gate.quotas.peer_has_room(node)
                }));
                let mut entry = Entry::new(session, path);
                entry.client = client;
                entry.token = token.as_ref().map(|t| t.salt);
                entry.charge = Charge::Pending { addr, connection };
                if let Some(c) = connection {
                    *self.pending_by_connection.entry(c).or_default() += 1;
                }
                entry.pending = true;
                self.pending += 1;
                self.config.stats.pending.fetch_add(1, Ordering::Relaxed);
                self.insert(id, entry);
                self.after_activity(id, now, out);
            }
            Err(e) => {
                tracing::debug!(from = %path.peer, error = %e, "handshake refused");
                config.quotas.end_pending(path.peer);
                path.dropped();
            }
        }
    }

    /// Room for one more incoming handshake on this shard.
    fn has_room(&self) -> bool {
        self.config.accepting.load(Ordering::Relaxed)
            && self.sessions.len() < self.config.max_sessions_per_shard
            && self.pending < self.config.max_pending_per_shard
    }

    /// Counts a message 1 or echo refused, and drops it.
    fn refused(&self, path: &Path) {
        self.config
            .stats
            .handshakes_refused
            .fetch_add(1, Ordering::Relaxed);
        path.dropped();
    }

    /// What a message-1 datagram is: a member's (the right length, and
    /// authenticated under the network's PSK), a connect token's (through
    /// the token gate), or nothing to answer.
    fn authenticate(&self, datagram: &[u8], unix_secs: u64) -> Auth {
        if datagram.len() == HEADER_LEN + MSG1_LEN {
            let (header, noise) = datagram.split_at(HEADER_LEN);
            return if self.config.network.is_some() && self.config.msg1_check.verify(header, noise)
            {
                Auth::Member
            } else {
                Auth::Not
            };
        }
        match self
            .config
            .tokens
            .as_ref()
            .map(|g| g.check(datagram, unix_secs))
        {
            None | Some(GateResult::Silent) => Auth::Not,
            Some(GateResult::Refuse(reason, psk)) => Auth::Refuse(reason, psk),
            Some(GateResult::Admit(a)) => Auth::Token(Box::new(a)),
        }
    }

    /// Answers an authentic token message 1 that is not valid here with a
    /// refusal (docs/PROTOCOL.md 14.6): 46 bytes, less than it received.
    fn refuse_token(
        &mut self,
        path: &Path,
        session: SessionId,
        reason: crate::token::TokenRefusal,
        psk: &crate::crypto::NetworkKey,
        msg1: &[u8],
        out: &mut dyn Output,
    ) {
        tracing::debug!(from = %path.peer, %reason, "connect token refused");
        let refusal = cookie::refusal(session, reason.to_u8(), &ChallengeKey::new(psk), msg1);
        self.control.clear();
        self.control.push(&refusal);
        out.transmit(path, &mut self.control);
        self.control.clear();
    }

    /// Sends a cookie challenge for `session` (answering `msg1`, which it
    /// authenticates) to the source of `path`.
    fn challenge(
        &mut self,
        path: &Path,
        session: SessionId,
        msg1: &[u8],
        mac: &ChallengeKey,
        now: Instant,
        out: &mut dyn Output,
    ) {
        let epoch = self.cookie_epoch(now);
        let challenge = self
            .config
            .cookie_key
            .challenge(epoch, session, path.peer, mac, msg1);
        self.config
            .stats
            .cookie_challenges
            .fetch_add(1, Ordering::Relaxed);
        self.control.clear();
        self.control.push(&challenge);
        out.transmit(path, &mut self.control);
        self.control.clear();
    }

    fn cookie_epoch(&self, now: Instant) -> u64 {
        cookie::epoch_of(now.saturating_duration_since(self.config.started))
    }
}

/// What [`Endpoint::authenticate`] made of a message 1.
enum Auth {
    /// Nothing to answer: dropped in silence.
    Not,
    /// A member's.
    Member,
    /// A connect token's, admitted by the gate.
    Token(Box<TokenAdmission>),
    /// A connect token's, authentic but not valid here.
    Refuse(crate::token::TokenRefusal, crate::crypto::NetworkKey),
}
