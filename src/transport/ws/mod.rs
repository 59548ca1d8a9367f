//! The WebSocket transport: `ws://` and `wss://`, server and client, driven
//! by `mio` readiness with `tungstenite`'s protocol over non-blocking streams.
//!
//! A [`WsTransport`] carries stt datagrams as binary WebSocket messages, one
//! datagram per message, so there is no MTU: a message travels whole. It can
//! listen (server mode), dial (`open` with a URL), or both. Peers are named by
//! their socket address: a server's connection by the client's address, a
//! dialled connection by the server's. Several sessions may share one
//! connection (the session id tells them apart).
//!
//! ## One thread, many connections
//!
//! Every socket sits in the transport's own `mio::Poll`, whose fd sits in the
//! reactor's poll: one thread waits on everything. Each connection is a
//! `Conn` (`conn.rs`): a state machine — upgrade (`upgrade.rs` on the
//! server side, tungstenite's resumable `MidHandshake` on the client side),
//! open, closing — over any `Read + Write`, resumed once per `recv` whenever
//! its socket had an event, and again on the next `recv` while it has more
//! to read than one turn takes. `WouldBlock` is the normal case, never an
//! error. Dials (`dial.rs`) and the listener (`listen.rs`) make
//! connections; this file glues them to the [`Transport`] trait.
//!
//! An idle connection costs nothing per turn: `recv` drives only the
//! connections that had an event (or more to read), `flush` only those
//! written to since the last flush (or still blocked), and timers sit in a
//! heap (`poll_timeout` peeks at it, `handle_timeout` pops what is due).
//! Heap entries are never updated in place: a connection whose deadline
//! moved later is found early, looked at once and put back.
//!
//! ## Safety limits (all in [`WsConfig`])
//!
//! - an upgrade that does not complete within `handshake_timeout` is closed
//!   (slow-loris protection); a malformed one gets an HTTP error (400, 403
//!   for an `Origin` outside `allowed_origins`, 426 for a wrong version, 431
//!   for an over-long head) before it is closed;
//! - a request that is not an upgrade gets that 400 too, unless
//!   [`WsConfig::http`] holds an [`HttpHandler`] (e.g. [`StaticFiles`]):
//!   then `GET` and `HEAD` are answered by it (`http.rs`), other methods get
//!   405, and the connection closes after the response;
//! - an accepted connection is *unauthenticated* until the engine calls
//!   [`Transport::peer_authenticated`] for it: until then its messages may
//!   be no larger than `max_message_size_unauthenticated`, and it is closed
//!   (code 1008) `auth_timeout` after its upgrade. Dialled connections are
//!   trusted;
//! - a message over `max_message_size` closes that connection with code 1009;
//!   a text message closes it with 1003 (stt speaks binary only);
//! - past `max_connections` accepted connections (node-wide when the
//!   transports of a server share a [`WsAdmission`]) or
//!   `max_connections_per_ip` from one address, new connections get an HTTP
//!   503 and are closed;
//! - an open connection keeps a `read_buffer_size` read buffer (8 KiB by
//!   default), and no write buffer while it has nothing to send;
//! - a peer silent for `dead_after` (pings are sent every `ping_interval`) is
//!   closed;
//! - each connection's write buffer is bounded (`write_buffer_limit`): a
//!   slow reader makes `send` report [`TransportError::QueueFull`].
//!
//! ## Reconnection
//!
//! A dialled connection that fails or drops is re-dialled by its
//! [`ReconnectPolicy`] (exponential backoff with jitter, bounded retries).
//! Datagrams sent meanwhile wait in a bounded queue and go out once the
//! connection is back; when the queue is full, or the policy gives up, `send`
//! returns an error: nothing is lost silently. A dial made with
//! [`Transport::open_with`] and a [`WsConfig`] keeps that configuration for
//! its connection and its reconnections.

mod admission;
mod config;
mod conn;
mod dial;
mod http;
mod lent;
mod listen;
mod static_files;
mod stats;
mod stream;
pub mod tls;
mod upgrade;
pub mod url;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Bytes;

pub use admission::WsAdmission;
pub use config::{ReconnectPolicy, WsConfig, WsConfigError};
pub use http::{HttpHandler, HttpRequest, HttpResponse};
pub use listen::bind_listener_group;
pub use static_files::{StaticFiles, StaticFilesError};
pub use stats::{WsConnectionStats, WsCounters, WsStats};
pub use tls::TlsError;
pub use url::{UrlError, WsUrl};

use crate::transport::{Transport, TransportCounters, TransportError};
use admission::{Refusal, Ticket};
use conn::{Conn, End, WriteError};
use dial::Dialler;
use lent::Spares;
use stream::Stream;

const LISTENER: Token = Token(0);

/// A connection and its place in the transport's lists.
struct Slot {
    conn: Conn<Stream>,
    /// In `ready`: an event was seen, or the last drive stopped with more
    /// to read; driven in the next `recv`.
    readable: bool,
    /// In `dirty`: written to (or read from: pongs and closes are written
    /// by reads) since the last flush, or still blocked.
    dirty: bool,
    /// The timer entry that counts: when, and its generation (older
    /// entries in the heap are skipped).
    timer: (Instant, u64),
    /// An accepted connection's place in the admission counts.
    _ticket: Option<Ticket>,
}

/// A timer entry: when, which connection, which generation.
type TimerEntry = Reverse<(Instant, Token, u64)>;

/// The WebSocket transport. See the [module docs](self).
pub struct WsTransport {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: Arc<WsConfig>,
    conns: HashMap<Token, Slot>,
    by_peer: HashMap<SocketAddr, Token>,
    dialler: Dialler,
    next_token: usize,
    /// The connections to drive in the next `recv`.
    ready: Vec<Token>,
    /// The connections to flush.
    dirty: Vec<Token>,
    /// Every connection's next deadline (and stale entries).
    timers: BinaryHeap<TimerEntry>,
    next_generation: u64,
    admission: Arc<WsAdmission>,
    counters: Arc<TransportCounters>,
    ws: Arc<WsCounters>,
    spares: Spares,
    /// Connections looked at by `flush`, `poll_timeout` and
    /// `handle_timeout`, for the tests that check idle ones cost nothing.
    #[cfg(test)]
    visits: std::cell::Cell<usize>,
}

impl std::fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTransport")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.connections())
            .field("tls_server", &self.config.tls_server.is_some())
            .finish_non_exhaustive()
    }
}

fn config_error(e: WsConfigError) -> TransportError {
    TransportError::io(
        "checking the WebSocket configuration",
        io::Error::new(io::ErrorKind::InvalidInput, e),
    )
}

fn not_connected(to: impl std::fmt::Display, why: &'static str) -> TransportError {
    TransportError::io(
        format!("sending to {to}"),
        io::Error::new(io::ErrorKind::NotConnected, why),
    )
}

impl WsTransport {
    /// A transport that listens on `addr` (port 0: any free port) and can
    /// also dial.
    pub fn bind(addr: SocketAddr, config: WsConfig) -> Result<Self, TransportError> {
        config.validate().map_err(config_error)?;
        Self::from_listener(Some(listen::bind(addr)?), config)
    }

    /// A transport that only dials.
    pub fn client(config: WsConfig) -> Result<Self, TransportError> {
        Self::from_listener(None, config)
    }

    /// A transport over an already bound, non-blocking listener (e.g. one
    /// socket of a `SO_REUSEPORT` group), or none. Refuses a `config` that
    /// [`WsConfig::validate`] refuses. Its connection caps count its own
    /// connections; see [`from_listener_shared`](Self::from_listener_shared).
    pub fn from_listener(
        listener: Option<TcpListener>,
        config: WsConfig,
    ) -> Result<Self, TransportError> {
        Self::from_listener_shared(listener, config, WsAdmission::new())
    }

    /// [`from_listener`](Self::from_listener) for one of several transports
    /// of one server (one per reactor): `max_connections` and
    /// `max_connections_per_ip` count the accepted connections of every
    /// transport given the same `admission`.
    pub fn from_listener_shared(
        mut listener: Option<TcpListener>,
        config: WsConfig,
        admission: Arc<WsAdmission>,
    ) -> Result<Self, TransportError> {
        config.validate().map_err(config_error)?;
        let poll = Poll::new().map_err(|e| TransportError::io("creating a poll", e))?;
        let local_addr = match &mut listener {
            Some(l) => {
                poll.registry()
                    .register(l, LISTENER, Interest::READABLE)
                    .map_err(|e| TransportError::io("registering the listener", e))?;
                l.local_addr()
                    .map_err(|e| TransportError::io("reading the listener's address", e))?
            }
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        Ok(WsTransport {
            poll,
            events: Events::with_capacity(1024),
            listener,
            local_addr,
            config: Arc::new(config),
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            dialler: Dialler::new(),
            next_token: 0,
            ready: Vec::new(),
            dirty: Vec::new(),
            timers: BinaryHeap::new(),
            next_generation: 0,
            admission,
            counters: TransportCounters::new(local_addr),
            ws: Arc::new(WsCounters::default()),
            spares: Spares::default(),
            #[cfg(test)]
            visits: std::cell::Cell::new(0),
        })
    }

    /// The connection counters (shared; read them from any thread).
    pub fn ws_counters(&self) -> Arc<WsCounters> {
        self.ws.clone()
    }

    /// Connections held now, including dials still connecting.
    pub fn connections(&self) -> usize {
        self.conns.len() + self.dialler.connecting_len()
    }

    /// Per-connection statistics, including dials still connecting.
    pub fn connection_stats(&self) -> Vec<WsConnectionStats> {
        let now = Instant::now();
        let conns = self.conns.values().map(|s| s.conn.stats(now));
        conns.chain(self.dialler.connecting_stats(now)).collect()
    }

    /// A token no connection or connect holds.
    fn token(&mut self) -> Token {
        loop {
            self.next_token = self.next_token.wrapping_add(1).max(1);
            let t = Token(self.next_token);
            if !self.conns.contains_key(&t) && !self.dialler.is_connecting(t) {
                return t;
            }
        }
    }

    /// Adds a connection, to be driven in the next `recv`.
    fn insert(&mut self, token: Token, conn: Conn<Stream>, ticket: Option<Ticket>, now: Instant) {
        let peer = conn.peer();
        let slot = Slot {
            conn,
            readable: true,
            dirty: false,
            timer: (now, 0),
            _ticket: ticket,
        };
        self.conns.insert(token, slot);
        self.by_peer.insert(peer, token);
        self.ready.push(token);
        self.schedule(token, true);
    }

    /// Puts `token`'s deadline in the timer heap if it is earlier than the
    /// one there (or `always`).
    fn schedule(&mut self, token: Token, always: bool) {
        let Some(slot) = self.conns.get_mut(&token) else {
            return;
        };
        let at = slot.conn.poll_timeout();
        if always || at < slot.timer.0 {
            self.next_generation += 1;
            slot.timer = (at, self.next_generation);
            self.timers.push(Reverse((at, token, self.next_generation)));
        }
    }

    /// Marks `token` to be flushed.
    fn mark_dirty(&mut self, token: Token) {
        if let Some(slot) = self.conns.get_mut(&token) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    /// Drives connection `token` once: upgrade progress, then its messages.
    fn drive(
        &mut self,
        token: Token,
        now: Instant,
        on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> usize {
        let Some(slot) = self.conns.get_mut(&token) else {
            return 0;
        };
        slot.readable = false;
        let peer = slot.conn.peer();
        let d = slot
            .conn
            .drive(now, &mut |message| on_datagram(peer, message));
        if d.more {
            slot.readable = true;
            self.ready.push(token);
        }
        if d.opened {
            self.opened(token, now);
        }
        if let Some(end) = d.ended {
            self.ended(token, end, now);
            return d.delivered;
        }
        // Reads may have queued pongs; the upgrade's state moved its timer.
        self.mark_dirty(token);
        self.schedule(token, false);
        d.delivered
    }

    /// Counts a connection whose upgrade completed; a dialled one gets the
    /// datagrams that waited for it.
    fn opened(&mut self, token: Token, now: Instant) {
        let Some(slot) = self.conns.get_mut(&token) else {
            return;
        };
        WsCounters::inc(&self.ws.connections_open);
        if !slot.conn.dialled() {
            WsCounters::inc(&self.ws.connections_accepted);
            return;
        }
        WsCounters::inc(&self.ws.connections_dialled);
        let peer = slot.conn.peer();
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(token);
        }
        for datagram in self.dialler.opened(peer) {
            // All of them, into tungstenite's buffer (up to
            // `write_buffer_limit`) even once the socket is full: they were
            // accepted, and nothing else holds them.
            if let Err(e) = slot.conn.write(Bytes::from(datagram), now) {
                TransportCounters::add(&self.counters.packets_dropped, 1);
                tracing::warn!(%peer, error = %e, "queued message lost on reconnect");
            }
        }
    }

    /// A connection ended: it is removed, and a dialled one is re-dialled by
    /// its policy.
    fn ended(&mut self, token: Token, end: End, now: Instant) {
        let Some(slot) = self.conns.get(&token) else {
            return;
        };
        let (peer, dialled) = (slot.conn.peer(), slot.conn.dialled());
        match &end {
            End::Refused(_) | End::Rejected(_) => WsCounters::inc(&self.ws.connections_refused),
            End::HandshakeTimeout if !dialled => WsCounters::inc(&self.ws.connections_refused),
            End::Unauthenticated => WsCounters::inc(&self.ws.closed_unauthenticated),
            End::Served { .. } => WsCounters::inc(&self.ws.http_requests),
            _ => {}
        }
        if dialled {
            tracing::warn!(%peer, error = %end, "WebSocket connection ended");
        } else {
            tracing::debug!(%peer, error = %end, "WebSocket connection ended");
        }
        self.remove(token);
        if dialled {
            self.dialler
                .schedule_retry(peer, now, &self.counters, &self.ws);
        }
    }

    /// Removes a connection and shuts its socket down.
    fn remove(&mut self, token: Token) {
        let Some(Slot { mut conn, .. }) = self.conns.remove(&token) else {
            return;
        };
        if self.by_peer.get(&conn.peer()) == Some(&token) {
            self.by_peer.remove(&conn.peer());
        }
        if conn.was_open() {
            WsCounters::dec(&self.ws.connections_open);
            WsCounters::inc(&self.ws.connections_closed);
            let _ = conn.flush();
        }
        if let Some(stream) = conn.stream() {
            let _ = stream.tcp().shutdown(std::net::Shutdown::Both);
        }
    }

    /// The largest message for `to`: its dial's limit, or this transport's.
    fn max_message_size(&self, to: SocketAddr) -> usize {
        match self.dialler.peers.get(&to) {
            Some(d) => d.config.max_message_size,
            None => self.config.max_message_size,
        }
    }

    /// Writes `payload` on `to`'s open connection, unless it is blocked.
    /// A refusal gives back the payload, when it can.
    fn write_open(
        &mut self,
        to: SocketAddr,
        payload: impl FnOnce(&Spares) -> Bytes,
    ) -> Option<Result<(), (TransportError, Option<Bytes>)>> {
        let spares = self.spares.clone();
        let token = *self.by_peer.get(&to)?;
        let slot = self.conns.get_mut(&token)?;
        if !slot.conn.is_open() {
            return None;
        }
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(token);
        }
        let conn = &mut slot.conn;
        // Refused before the payload is made: nothing to give back.
        if !conn.ready_to_write() {
            return Some(Err((TransportError::QueueFull(1), None)));
        }
        let result = conn.write(payload(&spares), Instant::now());
        Some(result.map_err(|e| match e {
            // Not sent, not dropped: the caller keeps it and tries again
            // once the peer has read (the reactor holds it in order).
            WriteError::Full(back) => (TransportError::QueueFull(1), Some(back)),
            WriteError::NotOpen(back) => (not_connected(to, "not open"), Some(back)),
            WriteError::Failed(e) => match *e {
                tungstenite::Error::Io(e) => (TransportError::io("sending", e), None),
                e => (TransportError::io("sending", io::Error::other(e)), None),
            },
        }))
    }

    /// Opens a dial of `target` at `addr` with `config`.
    fn dial_url(
        &mut self,
        target: &str,
        addr: SocketAddr,
        config: Arc<WsConfig>,
    ) -> Result<SocketAddr, TransportError> {
        let url = WsUrl::parse(target).map_err(|e| {
            TransportError::io(
                "parsing the URL",
                io::Error::new(io::ErrorKind::InvalidInput, e),
            )
        })?;
        if self.dialler.add(addr, url, config) {
            self.dial(addr, Instant::now());
        }
        Ok(addr)
    }
}

impl Transport for WsTransport {
    fn kind(&self) -> &'static str {
        if self.config.tls_server.is_some() {
            "wss"
        } else {
            "ws"
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn max_datagram_size(&self) -> Option<usize> {
        None
    }

    fn is_reliable(&self) -> bool {
        true
    }

    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.poll.as_raw_fd();
        registry.register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.poll.as_raw_fd();
        registry.deregister(&mut mio::unix::SourceFd(&fd))
    }

    fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8])) -> io::Result<usize> {
        let now = Instant::now();
        if let Err(e) = self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let mut accept = false;
        let mut connected = Vec::new();
        for ev in self.events.iter() {
            let token = ev.token();
            if token == LISTENER {
                accept = true;
            } else if let Some(slot) = self.conns.get_mut(&token) {
                if !slot.readable {
                    slot.readable = true;
                    self.ready.push(token);
                }
            } else {
                connected.push(token);
            }
        }
        // Connects that completed become connections, readable now.
        for token in connected {
            self.connect_ready(token, now);
        }
        if accept {
            self.accept_all(now);
        }
        // Those driven now; those with more to read go back to `ready`.
        let ready = std::mem::take(&mut self.ready);
        let mut n = 0;
        for &token in &ready {
            n += self.drive(token, now, on_datagram);
        }
        Ok(n)
    }

    fn send(&mut self, to: SocketAddr, datagram: &[u8]) -> Result<(), TransportError> {
        let max = self.max_message_size(to);
        if datagram.len() > max {
            return Err(TransportError::TooLarge {
                len: datagram.len(),
                max,
            });
        }
        if let Some(result) = self.write_open(to, |_| Bytes::copy_from_slice(datagram)) {
            return result.map_err(|(e, _)| e);
        }
        // A dialled peer not (yet, or no longer) connected: queue.
        let Some(d) = self.dialler.peers.get_mut(&to) else {
            return Err(not_connected(to, "no WebSocket connection to this peer"));
        };
        if d.failed {
            return Err(not_connected(
                &d.url,
                "reconnection gave up (see ReconnectPolicy)",
            ));
        }
        if d.queue.len() >= d.config.reconnect_queue {
            TransportCounters::add(&self.counters.packets_dropped, 1);
            return Err(TransportError::QueueFull(d.queue.len()));
        }
        d.queue.push_back(datagram.to_vec());
        Ok(())
    }

    fn send_owned(&mut self, to: SocketAddr, datagram: &mut Vec<u8>) -> Result<(), TransportError> {
        if datagram.len() <= self.max_message_size(to) {
            if let Some(result) = self.write_open(to, |spares| spares.lend(datagram)) {
                return result.map_err(|(e, back)| {
                    if let Some(back) = back {
                        datagram.clear();
                        datagram.extend_from_slice(&back);
                    }
                    e
                });
            }
        }
        self.send(to, datagram)
    }

    fn flush(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let dirty = std::mem::take(&mut self.dirty);
        for token in dirty {
            let Some(slot) = self.conns.get_mut(&token) else {
                continue;
            };
            #[cfg(test)]
            self.visits.set(self.visits.get() + 1);
            match slot.conn.flush() {
                // Still blocked: try again next turn.
                Ok(()) if slot.conn.is_blocked() => self.dirty.push(token),
                Ok(()) => slot.dirty = false,
                Err(end) => self.ended(token, end, now),
            }
        }
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.timers.peek().map(|Reverse((at, _, _))| *at);
        conns.into_iter().chain(self.dialler.poll_timeout()).min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        let mut again = Vec::new();
        while let Some(&Reverse((at, token, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.conns.get_mut(&token) else {
                continue;
            };
            if slot.timer.1 != generation {
                continue;
            }
            #[cfg(test)]
            self.visits.set(self.visits.get() + 1);
            match slot.conn.handle_timeout(now) {
                Ok(()) => {
                    // A ping may be queued; the next deadline goes in
                    // (after this loop: it is never due again at `now`).
                    self.mark_dirty(token);
                    again.push(token);
                }
                Err(end) => self.ended(token, end, now),
            }
        }
        for token in again {
            self.schedule(token, true);
        }
        self.dial_timers(now);
    }

    fn peer_authenticated(&mut self, peer: SocketAddr) {
        let Some(slot) = self.by_peer.get(&peer).and_then(|t| self.conns.get_mut(t)) else {
            return;
        };
        if slot.conn.authenticate() {
            tracing::debug!(%peer, "WebSocket connection authenticated");
        }
    }

    fn open(&mut self, target: &str, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        let config = self.config.clone();
        self.dial_url(target, addr, config)
    }

    /// `open` with a [`WsConfig`] for this dial: its connection and its
    /// reconnections use it (all but the fields of accepted connections:
    /// `tls_server`, the connection caps, `auth_timeout`,
    /// `max_message_size_unauthenticated` and `allowed_origins`).
    /// Options of another type are refused. An `addr` already dialled keeps
    /// its connection and its configuration.
    fn open_with(
        &mut self,
        target: &str,
        addr: SocketAddr,
        options: Option<&(dyn std::any::Any + Send)>,
    ) -> Result<SocketAddr, TransportError> {
        let Some(options) = options else {
            return self.open(target, addr);
        };
        let config = options
            .downcast_ref::<WsConfig>()
            .ok_or_else(|| config_error(WsConfigError::NotWsConfig))?;
        config.validate().map_err(config_error)?;
        self.dial_url(target, addr, Arc::new(config.clone()))
    }

    fn counters(&self) -> &Arc<TransportCounters> {
        &self.counters
    }
}

impl Drop for WsTransport {
    fn drop(&mut self) {
        self.counters.set_stopped();
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            if let Some(slot) = self.conns.get_mut(&token) {
                slot.conn.close(CloseCode::Away, "transport stopping");
            }
            self.remove(token);
        }
    }
}

#[cfg(test)]
mod tests;
