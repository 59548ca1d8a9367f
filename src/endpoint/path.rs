//! Paths, and the validation of a new one before a session moves to it.
//!
//! A [`Path`] is where a session's datagrams go: a transport (a link) of
//! some shard and the peer's address on it. When an authenticated datagram
//! of an established session arrives along another path, the responder
//! does not move at once: a copy of a genuine datagram sent first from
//! another (possibly forged) address, or over the copier's own WebSocket
//! connection, authenticates too, and a member of the network can send its
//! own session's datagrams from a forged source. So the new path gets a
//! PATH_CHALLENGE (a [`PathProbe`]) carrying 64 fresh bits from the CSPRNG,
//! sent along that path only; the session moves once a PATH_RESPONSE echoes
//! an outstanding challenge of that path (from wherever it comes: only a
//! receiver at the probed address saw the bytes) and a newest datagram
//! arrives along the path. Nothing else carries challenge data, so no
//! event the peer provokes reveals it elsewhere. Until then only challenges
//! go to the new path, within three times the bytes that arrived along it
//! (no amplifier for a forged address).

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::counters::TransportCounters;
use crate::frame::SessionId;

use super::{Endpoint, Output, SessionRefused};

/// What the endpoint knows of one of its shard's transports.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    /// A short name for logs (`"udp/io_uring"`, `"ws"`).
    pub kind: &'static str,
    /// Reliable and ordered (a WebSocket connection): the address is proven
    /// by the transport's own handshake.
    pub reliable: bool,
    /// Largest datagram, or `None` for a stream transport.
    pub max_datagram: Option<usize>,
    /// One of a group spread over every shard (the UDP socket group), whose
    /// sessions are owned by session id; otherwise the link lives on this
    /// shard alone and so do its sessions.
    pub sharded: bool,
    /// The transport's counters, where drops are counted.
    pub counters: Arc<TransportCounters>,
}

/// Where a session's datagrams go: a transport on this shard or on another
/// (a WebSocket connection lives on the shard that accepted or dialled it),
/// and the peer's address on it.
#[derive(Clone, Debug)]
pub(crate) struct Path {
    /// The shard the transport lives on.
    pub via: usize,
    /// The transport's index on that shard.
    pub transport: usize,
    /// The peer's address on that transport.
    pub peer: SocketAddr,
    /// See [`Link::kind`].
    pub kind: &'static str,
    /// See [`Link::reliable`].
    pub reliable: bool,
    /// See [`Link::max_datagram`].
    pub max_datagram: Option<usize>,
    /// The transport's counters.
    pub counters: Arc<TransportCounters>,
}

impl Path {
    /// The path to `peer` over `link`, transport `transport` of shard `via`.
    pub(crate) fn new(via: usize, transport: usize, link: &Link, peer: SocketAddr) -> Self {
        Path {
            via,
            transport,
            peer,
            kind: link.kind,
            reliable: link.reliable,
            max_datagram: link.max_datagram,
            counters: link.counters.clone(),
        }
    }

    /// Whether two paths lead to the same place the same way.
    pub(crate) fn same_route(&self, other: &Path) -> bool {
        self.peer == other.peer && self.via == other.via && self.transport == other.transport
    }

    /// Counts a datagram dropped on this path.
    pub(crate) fn dropped(&self) {
        TransportCounters::add(&self.counters.packets_dropped, 1);
    }
}

/// Probes sent along one path on the timer alone, unanswered, before it
/// waits for another datagram along the path.
pub(crate) const PROBE_RETRIES: u32 = 3;
/// Challenges remembered per probed path.
pub(crate) const PROBE_CHALLENGES: usize = 8;
/// A path probe never sends more than this many times what arrived along
/// the path.
pub(crate) const PROBE_AMPLIFICATION: usize = 3;

/// Challenges sent along a path the peer appeared on; a response echoing
/// one of them validates the path.
#[derive(Debug)]
pub(crate) struct PathProbe {
    pub path: Path,
    /// The challenges sent along it, latest last: a response to any of them
    /// validates the path (a slow path answers an earlier one).
    pub challenges: VecDeque<[u8; 8]>,
    /// When a probe may be sent again if none was answered.
    pub due: Instant,
    /// Probes sent along it so far.
    pub sent: u32,
    /// Bytes of authenticated datagrams that came along it.
    pub bytes_in: usize,
    /// Bytes of probes sent along it.
    pub bytes_out: usize,
    /// A pong to one of its pings came back.
    pub answered: bool,
}

impl PathProbe {
    /// A probe of `path`, which `bytes_in` authenticated bytes came along.
    pub(crate) fn new(path: Path, bytes_in: usize, now: Instant) -> Self {
        PathProbe {
            path,
            challenges: VecDeque::new(),
            due: now,
            sent: 0,
            bytes_in,
            bytes_out: 0,
            answered: false,
        }
    }

    /// Whether a probe of `len` bytes stays within the amplification budget.
    pub(crate) fn may_send(&self, len: usize) -> bool {
        self.bytes_out + len <= PROBE_AMPLIFICATION * self.bytes_in
    }

    /// Records a challenge `data` sent, `len` bytes, next due at `due`.
    pub(crate) fn sent(&mut self, data: [u8; 8], len: usize, due: Instant) {
        self.due = due;
        self.sent += 1;
        self.bytes_out += len;
        if self.challenges.len() == PROBE_CHALLENGES {
            self.challenges.pop_front();
        }
        self.challenges.push_back(data);
    }

    /// Whether the timer may send another probe at `now`.
    pub(crate) fn retry_due(&self, now: Instant) -> bool {
        !self.answered && now >= self.due && self.sent <= PROBE_RETRIES
    }
}

impl Endpoint {
    /// An authenticated newest datagram of session `id` came along `path`,
    /// not its current one: move there if the path is validated, or probe
    /// it.
    pub(super) fn follow(
        &mut self,
        id: SessionId,
        path: Path,
        len: usize,
        now: Instant,
        out: &mut dyn Output,
    ) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let answered = entry
            .probe
            .as_ref()
            .is_some_and(|p| p.answered && p.path.same_route(&path));
        if answered {
            tracing::info!(
                session = %id,
                from = %entry.path.peer,
                to = %path.peer,
                transport = path.kind,
                "session path changed"
            );
            let _ = entry.session.change_path(now, path.max_datagram);
            entry.path = path;
            entry.probe = None;
            if entry.path.reliable {
                out.event(super::Event::Authenticated { path: &entry.path });
            }
            return;
        }
        // Credit the path with what came along it (a new path starts
        // afresh), then probe if one is due.
        match entry.probe.as_mut() {
            Some(p) if p.path.same_route(&path) => p.bytes_in += len,
            _ => entry.probe = Some(PathProbe::new(path, len, now)),
        }
        if entry.probe.as_ref().is_some_and(|p| now >= p.due) {
            self.probe(id, now, out);
        }
    }

    /// Sends a path challenge for session `id` along its probed path: the
    /// only thing sent on an unvalidated path; at most one per datagram
    /// that arrived along it, plus a few on the timer.
    pub(super) fn probe(&mut self, id: SessionId, now: Instant, out: &mut dyn Output) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(p) = entry.probe.as_mut() else {
            return;
        };
        // A challenge is a fixed size: check the budget before sealing one.
        let challenge_len = crate::frame::HEADER_LEN + 9 + crate::frame::TAG_LEN;
        if !p.may_send(challenge_len) {
            return;
        }
        let mut data = [0u8; 8];
        if !self.random.fill(&mut data) {
            return;
        }
        let Some(datagram) = entry.session.path_challenge(now, data) else {
            return;
        };
        tracing::debug!(session = %id, to = %p.path.peer, sent = p.sent, "validating a new path");
        // Backs off like the handshake, from the session's own estimate of
        // the round trip (at least initial_rto), doubling per probe.
        let initial = entry.session.config().initial_rto;
        let rto = entry
            .session
            .rtt()
            .smoothed
            .map_or(initial, |s| (s * 2).max(initial));
        let due = now + rto * (1 << p.sent.min(6));
        p.sent(data, datagram.len(), due);
        self.control.clear();
        self.control.push(&datagram);
        out.transmit(&p.path, &mut self.control);
        self.control.clear();
        self.timers.push(Reverse((due, id)));
    }

    /// Moves session `id` to `path` (the application asked), and pings along
    /// it at once so that the peer learns the new path. The session then
    /// stays on it, whatever path the peer's datagrams take.
    pub(crate) fn set_path(
        &mut self,
        now: Instant,
        id: SessionId,
        path: Path,
        out: &mut dyn Output,
    ) -> Result<(), SessionRefused> {
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionRefused::Unknown(id))?;
        entry
            .session
            .change_path(now, path.max_datagram)
            .map_err(SessionRefused::Session)?;
        tracing::info!(session = %id, to = %path.peer, transport = path.kind, "session moved");
        entry.path = path;
        entry.probe = None;
        entry.pinned = true;
        entry.session.send_ping(now);
        self.after_activity(id, now, out);
        Ok(())
    }
}
