//! The endpoint (sans-IO): one shard of a node's session table, and
//! everything that decides what an incoming datagram means before a session
//! has it.
//!
//! An [`Endpoint`] owns the sessions of one shard (a reactor) and their
//! timers. It routes a datagram by session id (to a session here, to the
//! shard that owns or holds it, or to admission), admits new sessions (the
//! message-1 check, cookies under load, the pending-handshake limit, see
//! [`admission`]), and validates a new path before a session moves to it
//! (see [`path`]). It owns no socket and reads no clock: the caller passes
//! `now`, the link a datagram came on and its bytes, and an [`Output`] that
//! takes every datagram to send (one output path, data and control alike)
//! and every [`Event`]; [`poll_timeout`](Endpoint::poll_timeout) says when
//! to call [`handle_timeout`](Endpoint::handle_timeout).
//!
//! Its tests (`tests.rs`) drive several endpoints over a virtual clock with
//! spoofed sources, floods, loss and copies.

mod admission;
mod config;
mod directory;
mod path;
mod quota;
mod send;
#[cfg(test)]
mod tests;

pub(crate) use config::{Authorize, EndpointConfig, EndpointStats, Random};
pub(crate) use directory::{Directory, SendBudget};
pub(crate) use path::{Link, Path};
pub use quota::QuotaConfig;
pub(crate) use quota::Quotas;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::crypto::NodeId;
use crate::frame::{close_code, FrameType, Header, SessionId};
use crate::session::{
    CloseReason, Event as SessionEvent, Role, Session, SessionError, SessionStats, Transmits,
};
use crate::token::{ClientInfo, ConnectToken};
use path::PathProbe;

/// What an endpoint reports.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// A session completed its handshake.
    Established {
        id: SessionId,
        peer: NodeId,
        path: &'a Path,
        initiator: bool,
        /// The connect token's client, for a session a token opened here.
        client: Option<&'a Arc<ClientInfo>>,
    },
    /// A message arrived on an established session.
    Message {
        id: SessionId,
        peer: NodeId,
        stream_id: u32,
        frame_type: FrameType,
        payload: Vec<u8>,
        /// Reliable channel bytes it holds in the session's flow-control
        /// window: hand them back ([`Endpoint::release_credit`]) once the
        /// application has it; such a message must never be dropped.
        credit: u64,
        path: &'a Path,
        /// The connect token's client, for a session a token opened here.
        client: Option<&'a Arc<ClientInfo>>,
    },
    /// An authenticated session runs over `path` (established over it, or
    /// moved onto it once validated): its transport may trust the peer.
    Authenticated { path: &'a Path },
    /// Session `id` on shard `shard` (another one) must close if it still
    /// holds the ticket `salt`: a newer session of its connect token was
    /// established (`docs/PROTOCOL.md` 14.5).
    Replaced {
        shard: usize,
        id: SessionId,
        salt: [u8; 16],
    },
    /// A session ended (the last event of a session).
    Closed {
        id: SessionId,
        reason: CloseReason,
        path: &'a Path,
    },
}

/// An established session as [`Endpoint::describe`] sees it: its peer,
/// path, whether this side opened it, and its token client.
pub(crate) type Described<'a> = (NodeId, &'a Path, bool, Option<&'a Arc<ClientInfo>>);

/// Where an endpoint puts what it produces.
pub(crate) trait Output {
    /// Datagrams to send along `path`, in order. The endpoint clears
    /// `datagrams` afterwards; the output may take its buffer.
    fn transmit(&mut self, path: &Path, datagrams: &mut Transmits);
    /// Something for the application.
    fn event(&mut self, event: Event<'_>);
}

/// What became of a datagram given to [`Endpoint::handle`].
#[derive(Debug)]
pub(crate) enum Routed {
    /// Handled here (delivered, answered, or dropped and counted).
    Done,
    /// Belongs to shard `owner`: hand it the datagram, with the way back
    /// when `path` is set (the session lives there but arrived over a
    /// transport of this shard).
    Forward { owner: usize, path: Option<Path> },
}

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("session limit reached ({0} sessions on this shard)")]
    TooManySessions(usize),
    #[error("no randomness for a session id")]
    NoRandomness,
    #[error("this node has no shared seed: connect with a connect token")]
    NoCredential,
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Why an operation on a session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionRefused {
    #[error("no session {0} on this shard")]
    Unknown(SessionId),
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// One session and what the endpoint keeps beside it.
struct Entry {
    session: Session,
    path: Path,
    /// The earliest deadline this session has in the timer heap.
    timer: Option<Instant>,
    /// Listed in the directory (established, not closing).
    live: bool,
    /// An incoming handshake, counted in `pending` until it completes or
    /// ends.
    pending: bool,
    /// A new path being validated before the session moves to it.
    probe: Option<PathProbe>,
    /// The application chose the path (`set_path`): the session no longer
    /// follows the peer.
    pinned: bool,
    /// `Established` was reported: `Closed` will be too. A responder's
    /// session that never got that far ends unreported.
    announced: bool,
    /// What it holds of its peer's quotas.
    charge: Charge,
    /// The peer whose reassembly budget it draws from.
    budget_of: Option<NodeId>,
    /// What the application may have in flight to its channels' send
    /// buffer, once established.
    send_budget: Option<Arc<SendBudget>>,
    /// Bytes of `send_budget` the session's send buffer holds.
    charged: usize,
    /// The connect token's client, for a session a token opened here.
    client: Option<Arc<ClientInfo>>,
    /// The ticket (by salt) this session holds in the token gate.
    token: Option<[u8; 16]>,
}

/// What a session holds of its peer's quotas (see [`quota`]).
#[derive(Debug, Clone, Copy)]
enum Charge {
    /// Nothing: a session this node opened.
    None,
    /// An incoming handshake, from `addr`, over reliable `connection` if
    /// any.
    Pending {
        addr: SocketAddr,
        connection: Option<Connection>,
    },
    /// An incoming session of `peer` from `addr`.
    Session { addr: SocketAddr, peer: NodeId },
}

/// A reliable connection: shard, transport, peer address.
type Connection = (usize, usize, SocketAddr);

impl Entry {
    fn new(session: Session, path: Path) -> Self {
        Entry {
            session,
            path,
            timer: None,
            live: false,
            pending: false,
            probe: None,
            pinned: false,
            announced: false,
            charge: Charge::None,
            budget_of: None,
            send_budget: None,
            charged: 0,
            client: None,
            token: None,
        }
    }
}

/// One shard of a node's sessions. See the [module docs](self).
pub(crate) struct Endpoint {
    shard: usize,
    config: Arc<EndpointConfig>,
    links: Vec<Link>,
    sessions: HashMap<SessionId, Entry>,
    timers: BinaryHeap<Reverse<(Instant, SessionId)>>,
    /// Incoming handshakes on this shard waiting for message 3.
    pending: usize,
    /// Of those, how many each reliable connection carries.
    pending_by_connection: HashMap<Connection, usize>,
    /// Control datagrams on their way to the output.
    control: Transmits,
    /// Sealed data on its way to the output.
    data: Transmits,
    random: Box<dyn Random>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("shard", &self.shard)
            .field("sessions", &self.sessions.len())
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Shard `shard` of a node configured by `config`.
    pub(crate) fn new(shard: usize, config: Arc<EndpointConfig>, random: Box<dyn Random>) -> Self {
        Endpoint {
            shard,
            config,
            links: Vec::new(),
            sessions: HashMap::new(),
            timers: BinaryHeap::new(),
            pending: 0,
            pending_by_connection: HashMap::new(),
            control: Transmits::new(),
            data: Transmits::new(),
            random,
        }
    }

    /// Adds a transport of this shard; its index is the next one.
    pub(crate) fn add_link(&mut self, link: Link) -> usize {
        self.links.push(link);
        self.links.len() - 1
    }

    /// The path to `peer` over this shard's transport `link`.
    pub(crate) fn path(&self, link: usize, peer: SocketAddr) -> Option<Path> {
        Some(Path::new(self.shard, link, self.links.get(link)?, peer))
    }

    /// Whether session `id` is on this shard, in any state.
    pub(crate) fn has(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    #[cfg(test)]
    /// Sessions on this shard, in any state.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    #[cfg(test)]
    /// Incoming handshakes on this shard waiting for message 3.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    #[cfg(test)]
    /// The node-wide configuration.
    pub(crate) fn config(&self) -> &Arc<EndpointConfig> {
        &self.config
    }

    /// A fresh random session id owned by this shard and unused here.
    fn new_session_id(&mut self) -> Option<SessionId> {
        let count = self.config.directory.shards();
        for _ in 0..16 {
            let mut b = [0u8; 8];
            if !self.random.fill(&mut b) {
                return None;
            }
            let raw = u64::from_be_bytes(b);
            // Low byte = k * count + shard, with k uniform: byte % count == shard.
            let slots = (256 / count) as u64;
            let low = (raw & 0xFF) % slots * count as u64 + self.shard as u64;
            let id = SessionId((raw & !0xFF) | low);
            if !self.sessions.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// Opens a session to the peer at the end of `path` (only to node
    /// `expect`, when given): message 1 goes to the output at once.
    pub(crate) fn connect(
        &mut self,
        now: Instant,
        path: Path,
        expect: Option<NodeId>,
        token: Option<&ConnectToken>,
        out: &mut dyn Output,
    ) -> Result<SessionId, OpenError> {
        if self.sessions.len() >= self.config.max_sessions_per_shard {
            return Err(OpenError::TooManySessions(self.sessions.len()));
        }
        let id = self.new_session_id().ok_or(OpenError::NoRandomness)?;
        let mut config = self.config.session.clone();
        config.max_datagram_size = path.max_datagram;
        let budget = Some(self.config.budget.clone());
        let identity = &self.config.identity;
        let session = match (token, &self.config.network) {
            (Some(token), _) => {
                Session::connect_with_token(config, identity, token, id, now, budget)?
            }
            (None, Some(network)) => {
                Session::connect_with_budget(config, identity, network, id, now, budget)?
            }
            (None, None) => return Err(OpenError::NoCredential),
        };
        let mut session = session;
        if let Some(peer) = expect {
            session.expect_peer(peer);
        }
        self.insert(id, Entry::new(session, path));
        self.after_activity(id, now, out);
        Ok(id)
    }

    fn insert(&mut self, id: SessionId, mut entry: Entry) {
        if let Some(source) = &self.config.payloads {
            entry.session.set_payload_source(source.clone());
        }
        self.sessions.insert(id, entry);
        self.config.stats.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// A datagram that arrived from `from` on this shard's transport `link`.
    pub(crate) fn handle(
        &mut self,
        now: Instant,
        link: usize,
        from: SocketAddr,
        datagram: &mut [u8],
        out: &mut dyn Output,
    ) -> Routed {
        let Some(path) = self.path(link, from) else {
            return Routed::Done;
        };
        let Ok(header) = Header::decode(datagram) else {
            path.dropped();
            return Routed::Done;
        };
        let id = header.session_id;
        if !self.sessions.contains_key(&id) {
            let directory = &self.config.directory;
            let owner = directory.owner(id);
            if self.links[link].sharded && owner != self.shard {
                // A socket of the group that the steering program did not
                // pick for this session: its owner answers from its own
                // socket of the same group.
                return Routed::Forward { owner, path: None };
            }
            let holder = directory.holder(id).filter(|&s| s != self.shard);
            // A message 1, bare or wrapped in a cookie echo.
            let first_message = header.packet_number == 1
                && matches!(header.frame_type, FrameType::Handshake | FrameType::Auth);
            match holder {
                // An id already in use on this node: a replay, or a
                // collision. It must not shadow the live session there.
                Some(_) if first_message => {
                    path.dropped();
                    return Routed::Done;
                }
                // A session of another shard arriving over a transport of
                // this one (it moved here, e.g. from UDP to a WebSocket
                // connection): hand it over with the way back.
                Some(holder) => {
                    return Routed::Forward {
                        owner: holder,
                        path: Some(path),
                    }
                }
                None => {}
            }
        }
        self.handle_via(now, path, datagram, out);
        Routed::Done
    }

    /// A datagram that arrived along `path` (a transport of this shard, or
    /// of another that forwarded it).
    pub(crate) fn handle_via(
        &mut self,
        now: Instant,
        path: Path,
        datagram: &mut [u8],
        out: &mut dyn Output,
    ) {
        let Ok(header) = Header::decode(datagram) else {
            return path.dropped();
        };
        let id = header.session_id;
        let Some(entry) = self.sessions.get_mut(&id) else {
            return self.admit(now, header, path, datagram, out);
        };
        let len = datagram.len();
        let result = entry.session.handle_datagram(now, datagram);
        // A PATH_RESPONSE echoing a challenge sent along the probed path
        // validates that path, whichever path the response came back on
        // (RFC 9000 §8.2.2): only a receiver at the probed address saw the
        // challenge's random bytes.
        while let Some(data) = entry.session.poll_path_response() {
            if let Some(p) = entry.probe.as_mut() {
                p.answered |= p.challenges.contains(&data);
            }
        }
        match result {
            // The session id, not the address, finds the session: a
            // datagram that authenticated along a new path (a new address
            // after NAT rebinding, or another transport) means the peer
            // moved, once the path is validated (see `path`).
            //
            // Only the responder follows, and only while the application
            // has not chosen the path itself (`set_path`): the initiator is
            // the side whose address changes, and two sides that both
            // followed would chase each other's late datagrams.
            Ok(true)
                if !entry.path.same_route(&path)
                    && entry.session.is_established()
                    && entry.session.role() == Role::Responder
                    && !entry.pinned =>
            {
                self.follow(id, path, len, now, out);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::trace!(session = %id, from = %path.peer, error = %e, "datagram dropped");
                path.dropped();
            }
        }
        self.after_activity(id, now, out);
    }

    /// Closes session `id` with a CLOSE frame (`code`, `reason`).
    pub(crate) fn close(
        &mut self,
        now: Instant,
        id: SessionId,
        code: u16,
        reason: &str,
        out: &mut dyn Output,
    ) {
        if let Some(e) = self.sessions.get_mut(&id) {
            e.session.close(now, code, reason);
        }
        self.after_activity(id, now, out);
    }

    /// Closes every session (the node stops): CLOSE frames go to the output,
    /// the sessions are forgotten, and the counters and directory let go of
    /// them.
    pub(crate) fn close_all(&mut self, now: Instant, out: &mut dyn Output) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.close(now, id, close_code::SHUTDOWN, "node stopping", out);
        }
        let stats = &self.config.stats;
        stats
            .sessions
            .fetch_sub(self.sessions.len(), Ordering::Relaxed);
        stats
            .pending
            .fetch_sub(std::mem::take(&mut self.pending), Ordering::Relaxed);
        for (id, entry) in std::mem::take(&mut self.sessions) {
            release(
                &self.config,
                &mut self.pending_by_connection,
                &entry,
                self.shard,
            );
            self.config.directory.remove(self.shard, id);
        }
    }

    /// Established session `id`: its peer, current path and whether this
    /// side opened it.
    pub(crate) fn describe(&self, id: SessionId) -> Option<Described<'_>> {
        let e = self.sessions.get(&id).filter(|e| e.live)?;
        let initiator = e.session.role() == Role::Initiator;
        Some((e.session.peer()?, &e.path, initiator, e.client.as_ref()))
    }

    /// Closes every session of connect-token client `client_id` with code
    /// REVOKED; how many.
    pub(crate) fn close_client(
        &mut self,
        now: Instant,
        client_id: u64,
        out: &mut dyn Output,
    ) -> usize {
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.client.as_ref().is_some_and(|c| c.client_id == client_id))
            .map(|(id, _)| *id)
            .collect();
        for &id in &ids {
            self.close(now, id, close_code::REVOKED, "revoked", out);
        }
        ids.len()
    }

    /// Statistics of session `id`.
    pub(crate) fn session_stats(&self, id: SessionId) -> Option<SessionStats> {
        self.sessions.get(&id).map(|e| e.session.stats())
    }

    /// After anything touched a session: hand its datagrams and events to
    /// the output, re-arm its timer, and forget it once closed.
    fn after_activity(&mut self, id: SessionId, now: Instant, out: &mut dyn Output) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        self.control.clear();
        if entry.session.poll_transmits_at(now, &mut self.control) > 0 {
            out.transmit(&entry.path, &mut self.control);
            self.control.clear();
        }
        // What acknowledgements (or sending) freed of the send buffer goes
        // back to the application's senders.
        if let Some(budget) = &entry.send_budget {
            let held = entry.session.channel_send_held();
            if held < entry.charged {
                budget.release(entry.charged - held);
                entry.charged = held;
            }
        }
        let initiator = entry.session.role() == Role::Initiator;
        let mut closed = false;
        let mut replaced = None;
        while let Some((event, credit)) = entry.session.poll_event_with_credit() {
            match event {
                SessionEvent::Established { peer, .. } => {
                    let limit = entry.session.config().channels.send_buffer;
                    let budget = Arc::new(SendBudget::new(limit));
                    entry.send_budget = Some(budget.clone());
                    self.config.directory.insert(self.shard, id, budget);
                    entry.live = true;
                    entry.announced = true;
                    let quotas = &self.config.quotas;
                    if let Charge::Pending { addr, connection } = entry.charge {
                        release_pending(quotas, &mut self.pending_by_connection, addr, connection);
                        quotas.add_session(addr, peer);
                        entry.charge = Charge::Session { addr, peer };
                    }
                    // One live session per token on this node: the newest,
                    // once established (its peer proved the client key and
                    // completed the handshake), replaces the one before
                    // (docs/PROTOCOL.md 14.5).
                    if let (Some(salt), Some(gate)) = (entry.token, &self.config.tokens) {
                        replaced = gate
                            .claim(salt, self.shard, id)
                            .map(|(shard, old)| (shard, old, salt));
                    }
                    let budget = quotas.budget(peer, &self.config.budget);
                    if entry.session.set_reassembly_budget(budget) {
                        entry.budget_of = Some(peer);
                    } else {
                        quotas.release_budget(peer);
                    }
                    tracing::info!(
                        session = %id,
                        peer_node = ?peer,
                        peer_addr = %entry.path.peer,
                        transport = entry.path.kind,
                        initiator,
                        "session established"
                    );
                    out.event(Event::Established {
                        id,
                        peer,
                        path: &entry.path,
                        initiator,
                        client: entry.client.as_ref(),
                    });
                    if entry.path.reliable {
                        out.event(Event::Authenticated { path: &entry.path });
                    }
                }
                SessionEvent::Message {
                    stream_id,
                    frame_type,
                    payload,
                } => {
                    // Only established sessions deliver: the peer is known.
                    if let Some(peer) = entry.session.peer() {
                        out.event(Event::Message {
                            id,
                            peer,
                            stream_id,
                            frame_type,
                            payload,
                            credit,
                            path: &entry.path,
                            client: entry.client.as_ref(),
                        });
                    }
                }
                SessionEvent::PeerError { .. } => {}
                SessionEvent::Closed { reason } => {
                    tracing::info!(session = %id, peer_addr = %entry.path.peer, %reason, "session closed");
                    if let CloseReason::Refused { .. } = reason {
                        let refused = &self.config.stats.peers_refused;
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    if entry.announced || initiator {
                        out.event(Event::Closed {
                            id,
                            reason,
                            path: &entry.path,
                        });
                    }
                    closed = true;
                }
            }
        }
        if entry.pending && (closed || entry.session.is_established()) {
            entry.pending = false;
            self.pending -= 1;
            self.config.stats.pending.fetch_sub(1, Ordering::Relaxed);
        }
        if entry.live && !entry.session.is_established() {
            // Closing: no more sends are taken for it.
            self.config.directory.remove(self.shard, id);
            entry.live = false;
        }
        if closed {
            if let Some(entry) = self.sessions.remove(&id) {
                release(
                    &self.config,
                    &mut self.pending_by_connection,
                    &entry,
                    self.shard,
                );
            }
            self.config.stats.sessions.fetch_sub(1, Ordering::Relaxed);
            self.config.directory.remove(self.shard, id);
            self.replace(replaced, now, out);
            return;
        }
        if let Some(deadline) = entry.session.poll_timeout() {
            if entry.timer.is_none_or(|t| deadline < t || t <= now) {
                entry.timer = Some(deadline);
                self.timers.push(Reverse((deadline, id)));
            }
        }
        self.replace(replaced, now, out);
    }

    /// Closes the session a newer session of its token replaced: here, or
    /// through its own shard.
    fn replace(
        &mut self,
        replaced: Option<(usize, SessionId, [u8; 16])>,
        now: Instant,
        out: &mut dyn Output,
    ) {
        match replaced {
            Some((shard, old, salt)) if shard == self.shard => {
                self.close_replaced(now, old, salt, out)
            }
            Some((shard, id, salt)) => out.event(Event::Replaced { shard, id, salt }),
            None => {}
        }
    }

    /// Closes session `id` if it still holds ticket `salt`: a newer session
    /// of its connect token replaced it.
    pub(crate) fn close_replaced(
        &mut self,
        now: Instant,
        id: SessionId,
        salt: [u8; 16],
        out: &mut dyn Output,
    ) {
        if self
            .sessions
            .get(&id)
            .is_some_and(|e| e.token == Some(salt))
        {
            let reason = "replaced by a new session of its connect token";
            self.close(now, id, close_code::REPLACED, reason, out);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    /// May be early: a session whose deadline moved later is asked again.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop entries of sessions that are gone.
        while let Some(Reverse((_, id))) = self.timers.peek() {
            if self.sessions.contains_key(id) {
                break;
            }
            self.timers.pop();
        }
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Runs the timers that are due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut dyn Output) {
        // Every session's timer moves forward when handled; the bound only
        // guards the loop against a deadline that would not.
        let mut budget = self.sessions.len() * 2 + 16;
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now || budget == 0 {
                break;
            }
            budget -= 1;
            self.timers.pop();
            let Some(entry) = self.sessions.get_mut(&id) else {
                continue;
            };
            if entry.timer == Some(t) {
                entry.timer = None;
            }
            entry.session.handle_timeout(now);
            // An unanswered path probe is sent again (a lost probe must not
            // leave the session on a dead path until the peer's keepalive).
            if entry.probe.as_ref().is_some_and(|p| p.retry_due(now)) {
                self.probe(id, now, out);
            }
            self.after_activity(id, now, out);
        }
    }
}

/// Ends a pending handshake's charges.
fn release_pending(
    quotas: &quota::Quotas,
    by_connection: &mut HashMap<Connection, usize>,
    addr: SocketAddr,
    connection: Option<Connection>,
) {
    quotas.end_pending(addr);
    if let Some(c) = connection {
        if let Some(n) = by_connection.get_mut(&c) {
            *n -= 1;
            if *n == 0 {
                by_connection.remove(&c);
            }
        }
    }
}

/// Gives back what a session that ends holds of its peer's quotas.
fn release(
    config: &EndpointConfig,
    by_connection: &mut HashMap<Connection, usize>,
    entry: &Entry,
    shard: usize,
) {
    match entry.charge {
        Charge::None => {}
        Charge::Pending { addr, connection } => {
            release_pending(&config.quotas, by_connection, addr, connection)
        }
        Charge::Session { addr, peer } => config.quotas.end_session(addr, peer),
    }
    if let Some(peer) = entry.budget_of {
        config.quotas.release_budget(peer);
    }
    if let (Some(salt), Some(gate)) = (&entry.token, &config.tokens) {
        gate.release(salt, shard, entry.session.id());
    }
}
