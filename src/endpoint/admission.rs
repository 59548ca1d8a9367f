//! Admission: what becomes of a datagram for no session of this shard.
//!
//! Only a message 1 (bare, or wrapped in a cookie echo) can open a session.
//! Whatever the load, it must first pass the network's stateless PSK check
//! ([`Msg1Check`](crate::crypto::Msg1Check): no Diffie-Hellman, so an
//! outsider costs little and gets silence). Then:
//!
//! - not accepting, or the shard's session table full: dropped;
//! - the shard's pending-handshake limit reached: refused and counted;
//! - over an unvalidated transport (UDP) with more pending handshakes than
//!   the cookie threshold: a stateless cookie challenge (authenticated, less
//!   than half the size of the message 1), and no state until the sender
//!   echoes the cookie from the same address (`docs/PROTOCOL.md`, 10.4);
//! - a message 1 whose timestamp is stale, or whose ephemeral key already
//!   made state on this node
//!   ([`Msg1Check::admit_fresh`](crate::crypto::Msg1Check::admit_fresh)):
//!   refused and counted (`docs/PROTOCOL.md`, 5.5);
//! - otherwise a responder session is made and counted as pending until its
//!   message 3 arrives or it ends.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::crypto::cookie::{self, CookieError};
use crate::crypto::handshake::MSG1_LEN;
use crate::frame::{FrameType, Header, SessionId, HEADER_LEN};
use crate::session::Session;

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
                            if self.has_room() && self.genuine_msg1(inner) {
                                self.challenge(&path, header.session_id, inner, now, out);
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
        if !self.genuine_msg1(msg1) {
            return path.dropped();
        }
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
            return self.challenge(&path, header.session_id, msg1, now, out);
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
        if let Err(e) = config.msg1_check.admit_fresh(msg1, now) {
            tracing::debug!(from = %path.peer, error = %e, "message 1 refused");
            config.quotas.end_pending(path.peer);
            return self.refused(&path);
        }
        let mut session_config = config.session.clone();
        session_config.max_datagram_size = path.max_datagram;
        match Session::accept_with_budget(
            session_config,
            &config.identity,
            &config.network,
            msg1,
            now,
            Some(config.budget.clone()),
        ) {
            Ok(mut session) => {
                let id = session.id();
                let (gate, addr) = (self.config.clone(), path.peer);
                session.check_peer(Box::new(move |node| {
                    gate.authorize
                        .as_ref()
                        .is_none_or(|allow| allow(node, addr))
                        && gate.quotas.peer_has_room(node)
                }));
                let mut entry = Entry::new(session, path);
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

    /// Whether `datagram` is a message 1 of this network: the right length,
    /// and authenticated under the network's PSK.
    fn genuine_msg1(&self, datagram: &[u8]) -> bool {
        datagram.len() == HEADER_LEN + MSG1_LEN
            && self
                .config
                .msg1_check
                .verify(&datagram[..HEADER_LEN], &datagram[HEADER_LEN..])
    }

    /// Sends a cookie challenge for `session` (answering `msg1`, which it
    /// authenticates) to the source of `path`.
    fn challenge(
        &mut self,
        path: &Path,
        session: SessionId,
        msg1: &[u8],
        now: Instant,
        out: &mut dyn Output,
    ) {
        let epoch = self.cookie_epoch(now);
        let mac = self.config.msg1_check.challenge_key();
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
