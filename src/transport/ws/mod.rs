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
//! reactor's poll: one thread waits on everything. Each connection is a small
//! state machine — TCP connect, TLS, HTTP upgrade (tungstenite's resumable
//! `MidHandshake`), open, closing — resumed whenever its socket is ready.
//! `WouldBlock` is the normal case, never an error.
//!
//! ## Safety limits (all in [`WsConfig`])
//!
//! - an upgrade that does not complete within `handshake_timeout` is closed
//!   (slow-loris protection);
//! - a message over `max_message_size` closes that connection with code 1009;
//!   a text message closes it with 1003 (stt speaks binary only);
//! - past `max_connections`, new connections get an HTTP 503 and are closed;
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
//! returns an error: nothing is lost silently.

pub mod tls;
pub mod url;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::{ClientConfig, ServerConfig};
use tungstenite::handshake::server::NoCallback;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{ClientHandshake, Message, ServerHandshake, WebSocket};

pub use tls::TlsError;
pub use url::{UrlError, WsUrl};

use crate::transport::{Transport, TransportCounters, TransportError};
use tls::TlsStream;

const LISTENER: Token = Token(0);
/// Messages read from one connection per `recv` before others get a turn.
const READS_PER_TURN: usize = 256;

/// WebSocket transport configuration. `Default` gives the values below.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message accepted (and sent). Default 16 MiB, the largest stt
    /// message; larger ones close the connection with code 1009.
    pub max_message_size: usize,
    /// Send a WebSocket ping after this long without traffic. Default 10 s.
    pub ping_interval: Duration,
    /// Close a connection silent for this long. Default 30 s.
    pub dead_after: Duration,
    /// Close an upgrade (or a TLS handshake) not done in this long.
    /// Default 10 s: generous for a real client, fatal for slow-loris.
    pub handshake_timeout: Duration,
    /// Give up a dial not connected in this long. Default 10 s.
    pub connect_timeout: Duration,
    /// Connections held at once; beyond, new ones get HTTP 503. Default
    /// 10,000.
    pub max_connections: usize,
    /// Bytes queued for one connection before `send` reports backpressure.
    /// Default 8 MiB; never below `max_message_size` + 64 KiB, nor below
    /// the 128 KiB at which a connection starts writing.
    pub write_buffer_limit: usize,
    /// How dialled connections come back after a failure.
    pub reconnect: ReconnectPolicy,
    /// Datagrams held per dialled peer while (re)connecting. Default 1024.
    pub reconnect_queue: usize,
    /// TLS for accepted connections (`wss://` server); `None`: plain `ws://`.
    pub tls_server: Option<Arc<ServerConfig>>,
    /// TLS for dialled `wss://` URLs; `None`: the webpki roots.
    pub tls_client: Option<Arc<ClientConfig>>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_size: 16 << 20,
            ping_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            write_buffer_limit: 8 << 20,
            reconnect: ReconnectPolicy::default(),
            reconnect_queue: 1024,
            tls_server: None,
            tls_client: None,
        }
    }
}

impl WsConfig {
    fn tungstenite(&self) -> WebSocketConfig {
        let base = WebSocketConfig::default();
        // tungstenite panics unless its write buffer's limit is above the
        // size at which it starts writing: small limits are raised to that.
        let limit = self
            .write_buffer_limit
            .max(self.max_message_size.saturating_add(64 * 1024))
            .max(base.write_buffer_size.saturating_add(1));
        base.max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
            .max_write_buffer_size(limit)
    }
}

/// How a dialled connection is re-dialled after it fails or drops:
/// exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// First delay. Default 100 ms.
    pub initial_delay: Duration,
    /// Largest delay. Default 5 s.
    pub max_delay: Duration,
    /// Growth per attempt. Default 2.
    pub multiplier: f64,
    /// Random spread, as a fraction of the delay (0.2: ±20 %). Default 0.2:
    /// clients that lost one server do not all come back at once.
    pub jitter: f64,
    /// Attempts before giving up; `None` retries forever. Default 10.
    pub max_retries: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.2,
            max_retries: Some(10),
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect.
    pub fn never() -> Self {
        ReconnectPolicy {
            max_retries: Some(0),
            ..ReconnectPolicy::default()
        }
    }

    /// The delay before attempt `attempt` (1-based); `unit` in [0, 1) picks
    /// the jitter. `None` once the retries are used up.
    pub fn delay(&self, attempt: u32, unit: f64) -> Option<Duration> {
        if self.max_retries.is_some_and(|m| attempt > m) {
            return None;
        }
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let base = (self.initial_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        let spread = self.jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
        Some(Duration::from_secs_f64((base * (1.0 + spread)).max(0.0)))
    }
}

/// Connection counters of a WebSocket transport, beside its
/// [`TransportCounters`].
#[derive(Debug, Default)]
pub struct WsCounters {
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted (upgrade completed) since start.
    pub connections_accepted: AtomicU64,
    /// Connections dialled successfully (including reconnections).
    pub connections_dialled: AtomicU64,
    /// Connections closed since start.
    pub connections_closed: AtomicU64,
    /// Connections refused (over the cap) or failed before opening.
    pub connections_refused: AtomicU64,
    /// Reconnection attempts.
    pub reconnects: AtomicU64,
}

/// A copy of [`WsCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WsStats {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections dialled successfully since start.
    pub connections_dialled: u64,
    /// Connections closed since start.
    pub connections_closed: u64,
    /// Connections refused or failed before opening.
    pub connections_refused: u64,
    /// Reconnection attempts.
    pub reconnects: u64,
}

impl WsStats {
    /// Adds another transport's counters to these.
    pub fn add(&mut self, other: &WsStats) {
        self.connections_open += other.connections_open;
        self.connections_accepted += other.connections_accepted;
        self.connections_dialled += other.connections_dialled;
        self.connections_closed += other.connections_closed;
        self.connections_refused += other.connections_refused;
        self.reconnects += other.reconnects;
    }
}

impl WsConnectionStats {
    fn new(peer: SocketAddr, dialled: bool) -> Self {
        WsConnectionStats {
            peer,
            dialled,
            open: false,
            age_ms: 0,
            messages_sent: 0,
            messages_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }
}

impl WsCounters {
    /// A copy of the counters.
    pub fn snapshot(&self) -> WsStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WsStats {
            connections_open: g(&self.connections_open),
            connections_accepted: g(&self.connections_accepted),
            connections_dialled: g(&self.connections_dialled),
            connections_closed: g(&self.connections_closed),
            connections_refused: g(&self.connections_refused),
            reconnects: g(&self.reconnects),
        }
    }

    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Binds `count` TCP listeners to `addr` in a `SO_REUSEPORT` group (one per
/// reactor: the kernel spreads incoming connections over them). As for UDP,
/// a probe bind without `SO_REUSEPORT` first refuses a port some other group
/// holds, and picks the port when 0 is asked.
pub fn bind_listener_group(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<TcpListener>, TransportError> {
    let new = || {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.nonblocking().cloexec(),
            Some(socket2::Protocol::TCP),
        )
        .map_err(|e| TransportError::io("creating a TCP listener", e))?;
        if addr.is_ipv6() {
            let _ = s.set_only_v6(true);
        }
        let _ = s.set_reuse_address(true);
        Ok::<_, TransportError>(s)
    };
    let in_use = |at: SocketAddr, e: io::Error| {
        if e.kind() == io::ErrorKind::AddrInUse {
            TransportError::AddrInUse { addr: at }
        } else {
            TransportError::io(format!("binding the WebSocket listener to {at}"), e)
        }
    };
    let mut at = addr;
    let probe = new()?;
    probe.bind(&at.into()).map_err(|e| in_use(at, e))?;
    if let Some(bound) = probe.local_addr().ok().and_then(|a| a.as_socket()) {
        at.set_port(bound.port());
    }
    drop(probe);
    let mut out = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        let s = new()?;
        s.set_reuse_port(true)
            .map_err(|e| TransportError::io("setting SO_REUSEPORT", e))?;
        s.bind(&at.into()).map_err(|e| in_use(at, e))?;
        s.listen(1024)
            .map_err(|e| TransportError::io("listening", e))?;
        out.push(TcpListener::from_std(s.into()));
    }
    Ok(out)
}

/// A TCP stream, with or without TLS.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.io,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

enum State {
    /// Dialling: waiting for the TCP connect to complete.
    Connecting(Stream),
    Accepting(MidHandshake<ServerHandshake<Stream, NoCallback>>),
    Upgrading(MidHandshake<ClientHandshake<Stream>>),
    Open(Box<WebSocket<Stream>>),
    /// Placeholder while a state is being advanced.
    Gone,
}

struct Conn {
    peer: SocketAddr,
    state: State,
    dialled: bool,
    /// Readiness seen and not yet drained.
    readable: bool,
    last_recv: Instant,
    last_send: Instant,
    /// Until open: when the connect or upgrade must be done.
    deadline: Option<Instant>,
    /// The URL a dialled connection was opened with (for the Host header).
    url: Option<WsUrl>,
    opened: Instant,
    /// The socket took less than tungstenite had to write: what remains
    /// waits in tungstenite's buffer. No more is handed to it until that is
    /// written, so that the buffer stays small — tungstenite moves what
    /// remains to the buffer's front after every partial write, and with
    /// megabytes waiting that copying took a fifth of a sending reactor's
    /// time. Messages meanwhile wait in the reactor, in order.
    blocked: bool,
    stats: WsConnectionStats,
}

/// Traffic of one WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WsConnectionStats {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Whether this side dialled it.
    pub dialled: bool,
    /// Whether the upgrade completed.
    pub open: bool,
    /// Milliseconds since the TCP connection began.
    pub age_ms: u64,
    /// Binary messages sent.
    pub messages_sent: u64,
    /// Binary messages received.
    pub messages_received: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
}

/// A peer this transport dials, kept across reconnections.
struct Dialled {
    url: WsUrl,
    addr: SocketAddr,
    token: Option<Token>,
    queue: VecDeque<Vec<u8>>,
    attempt: u32,
    retry_at: Option<Instant>,
    failed: bool,
}

/// The WebSocket transport. See the [module docs](self).
pub struct WsTransport {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: WsConfig,
    ws_config: WebSocketConfig,
    conns: HashMap<Token, Conn>,
    by_peer: HashMap<SocketAddr, Token>,
    dialled: HashMap<SocketAddr, Dialled>,
    next_token: usize,
    counters: Arc<TransportCounters>,
    ws: Arc<WsCounters>,
    rng: u64,
    /// Buffers lent to tungstenite with the messages sent by `send_owned`
    /// come back here once it has framed them (see [`Lent`]).
    spares: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

/// A message's buffer lent to tungstenite (which takes `Bytes`): when
/// tungstenite drops it, having copied it into its write buffer, the buffer
/// goes back to its transport's spares instead of the allocator. The
/// reactor's transmit buffer and these trade places message by message, so
/// a stream of large messages is framed without a copy or an allocation.
struct Lent {
    buf: Vec<u8>,
    home: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Lent {
    /// Spare buffers kept at most, and the largest kept.
    const SPARES: usize = 16;
    const LARGEST: usize = 1 << 20;
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() > Lent::LARGEST {
            return;
        }
        // Only this transport's reactor thread takes the lock.
        let mut spares = self.home.lock().unwrap_or_else(|e| e.into_inner());
        if spares.len() < Lent::SPARES {
            spares.push(buf);
        }
    }
}

impl std::fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTransport")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.conns.len())
            .field("tls_server", &self.config.tls_server.is_some())
            .finish_non_exhaustive()
    }
}

impl WsTransport {
    /// A transport that listens on `addr` (port 0: any free port) and can
    /// also dial.
    pub fn bind(addr: SocketAddr, config: WsConfig) -> Result<Self, TransportError> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.nonblocking().cloexec(),
            Some(socket2::Protocol::TCP),
        )
        .map_err(|e| TransportError::io("creating the TCP listener", e))?;
        let _ = socket.set_reuse_address(true);
        if addr.is_ipv6() {
            let _ = socket.set_only_v6(true);
        }
        socket.bind(&addr.into()).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                TransportError::AddrInUse { addr }
            } else {
                TransportError::io(format!("binding the WebSocket listener to {addr}"), e)
            }
        })?;
        socket
            .listen(1024)
            .map_err(|e| TransportError::io("listening", e))?;
        Self::from_listener(Some(TcpListener::from_std(socket.into())), config)
    }

    /// A transport that only dials.
    pub fn client(config: WsConfig) -> Result<Self, TransportError> {
        Self::from_listener(None, config)
    }

    /// A transport over an already bound, non-blocking listener (e.g. one
    /// socket of a `SO_REUSEPORT` group), or none.
    pub fn from_listener(
        mut listener: Option<TcpListener>,
        config: WsConfig,
    ) -> Result<Self, TransportError> {
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
        let seed = Instant::now().elapsed().as_nanos() as u64
            ^ (local_addr.port() as u64) << 32
            ^ 0x9E37_79B9_7F4A_7C15;
        Ok(WsTransport {
            poll,
            events: Events::with_capacity(1024),
            listener,
            local_addr,
            ws_config: config.tungstenite(),
            config,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            dialled: HashMap::new(),
            next_token: 1,
            counters: TransportCounters::new(local_addr),
            ws: Arc::new(WsCounters::default()),
            rng: seed | 1,
            spares: Arc::default(),
        })
    }

    /// The connection counters (shared; read them from any thread).
    pub fn ws_counters(&self) -> Arc<WsCounters> {
        self.ws.clone()
    }

    /// Connections held now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Per-connection statistics.
    pub fn connection_stats(&self) -> Vec<WsConnectionStats> {
        self.conns
            .values()
            .map(|c| WsConnectionStats {
                open: matches!(c.state, State::Open(_)),
                age_ms: c.opened.elapsed().as_millis() as u64,
                ..c.stats
            })
            .collect()
    }

    fn unit_random(&mut self) -> f64 {
        // xorshift64*: jitter needs spread, not secrecy.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn token(&mut self) -> Token {
        loop {
            self.next_token = self.next_token.wrapping_add(1).max(1);
            let t = Token(self.next_token);
            if !self.conns.contains_key(&t) {
                return t;
            }
        }
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (mut tcp, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    TransportCounters::add(&self.counters.errors_receive, 1);
                    return;
                }
            };
            let _ = tcp.set_nodelay(true);
            if self.conns.len() >= self.config.max_connections {
                // A clear refusal, then close: best effort on a fresh socket.
                let _ = tcp.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 26\r\nConnection: close\r\n\r\nconnection limit reached\r\n",
                );
                WsCounters::inc(&self.ws.connections_refused);
                tracing::warn!(%peer, limit = self.config.max_connections, "WebSocket connection refused: limit reached");
                continue;
            }
            let token = self.token();
            if self
                .poll
                .registry()
                .register(&mut tcp, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            let stream = match &self.config.tls_server {
                Some(cfg) => match TlsStream::server(cfg.clone(), tcp) {
                    Ok(t) => Stream::Tls(Box::new(t)),
                    Err(_) => continue,
                },
                None => Stream::Plain(tcp),
            };
            let conn = Conn {
                peer,
                state: State::Gone,
                dialled: false,
                readable: true,
                last_recv: now,
                last_send: now,
                deadline: Some(now + self.config.handshake_timeout),
                url: None,
                opened: now,
                blocked: false,
                stats: WsConnectionStats::new(peer, false),
            };
            self.conns.insert(token, conn);
            self.by_peer.insert(peer, token);
            let start =
                tungstenite::accept_hdr_with_config(stream, NoCallback, Some(self.ws_config));
            self.after_server_handshake(token, start, now);
        }
    }

    fn after_server_handshake(
        &mut self,
        token: Token,
        result: Result<WebSocket<Stream>, HandshakeError<ServerHandshake<Stream, NoCallback>>>,
        now: Instant,
    ) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        match result {
            Ok(ws) => {
                conn.state = State::Open(Box::new(ws));
                conn.deadline = None;
                conn.last_recv = now;
                WsCounters::inc(&self.ws.connections_accepted);
                self.ws.connections_open.fetch_add(1, Ordering::Relaxed);
            }
            Err(HandshakeError::Interrupted(mid)) => conn.state = State::Accepting(mid),
            Err(HandshakeError::Failure(e)) => {
                tracing::debug!(peer = %conn.peer, error = %e, "WebSocket upgrade refused");
                WsCounters::inc(&self.ws.connections_refused);
                self.remove(token, now);
            }
        }
    }

    fn after_client_handshake(
        &mut self,
        token: Token,
        result: Result<
            (WebSocket<Stream>, tungstenite::handshake::client::Response),
            HandshakeError<ClientHandshake<Stream>>,
        >,
        now: Instant,
    ) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        match result {
            Ok((ws, _)) => {
                conn.state = State::Open(Box::new(ws));
                conn.deadline = None;
                conn.last_recv = now;
                WsCounters::inc(&self.ws.connections_dialled);
                self.ws.connections_open.fetch_add(1, Ordering::Relaxed);
                let peer = conn.peer;
                if let Some(d) = self.dialled.get_mut(&peer) {
                    d.attempt = 0;
                    d.retry_at = None;
                    let queued: Vec<Vec<u8>> = d.queue.drain(..).collect();
                    for datagram in queued {
                        // All of them, into tungstenite's buffer (up to
                        // `write_buffer_limit`) even once the socket is
                        // full: they were accepted, and nothing else holds
                        // them.
                        let message = Message::Binary(datagram.into());
                        if let Err((e, _)) = self.write_message(token, message) {
                            TransportCounters::add(&self.counters.packets_dropped, 1);
                            tracing::warn!(peer = %peer, error = %e, "queued message lost on reconnect");
                        }
                    }
                }
            }
            Err(HandshakeError::Interrupted(mid)) => conn.state = State::Upgrading(mid),
            Err(HandshakeError::Failure(e)) => {
                tracing::warn!(peer = %conn.peer, error = %e, "WebSocket dial failed");
                // Refused by the server, or its certificate by us: the
                // policy decides whether to try again.
                WsCounters::inc(&self.ws.connections_refused);
                self.connection_failed(token, now);
            }
        }
    }

    /// Dials `d`'s URL again (or for the first time).
    fn dial(&mut self, peer: SocketAddr, now: Instant) {
        let Some(d) = self.dialled.get_mut(&peer) else {
            return;
        };
        d.retry_at = None;
        let url = d.url.clone();
        let addr = d.addr;
        let mut tcp = match TcpStream::connect(addr) {
            Ok(t) => t,
            Err(_) => {
                self.schedule_retry(peer, now);
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        let token = self.token();
        if self
            .poll
            .registry()
            .register(&mut tcp, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            self.schedule_retry(peer, now);
            return;
        }
        if let Some(d) = self.dialled.get_mut(&peer) {
            d.token = Some(token);
        }
        self.conns.insert(
            token,
            Conn {
                peer,
                state: State::Connecting(Stream::Plain(tcp)),
                dialled: true,
                readable: false,
                last_recv: now,
                last_send: now,
                deadline: Some(now + self.config.connect_timeout),
                url: Some(url),
                opened: now,
                blocked: false,
                stats: WsConnectionStats::new(peer, true),
            },
        );
        self.by_peer.insert(peer, token);
    }

    fn schedule_retry(&mut self, peer: SocketAddr, now: Instant) {
        let unit = self.unit_random();
        let Some(d) = self.dialled.get_mut(&peer) else {
            return;
        };
        d.token = None;
        d.attempt += 1;
        match self.config.reconnect.delay(d.attempt, unit) {
            Some(delay) => {
                d.retry_at = Some(now + delay);
                WsCounters::inc(&self.ws.reconnects);
                tracing::info!(url = %d.url, attempt = d.attempt, ?delay, "WebSocket reconnecting");
            }
            None => {
                tracing::warn!(url = %d.url, attempts = d.attempt, dropped = d.queue.len(), "WebSocket reconnection gave up");
                // The policy gave up: what waited is lost, and said so.
                d.failed = true;
                TransportCounters::add(&self.counters.packets_dropped, d.queue.len() as u64);
                d.queue.clear();
            }
        }
    }

    /// Advances one connection as far as it goes now; delivers messages.
    fn drive(
        &mut self,
        token: Token,
        now: Instant,
        on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> usize {
        let Some(conn) = self.conns.get_mut(&token) else {
            return 0;
        };
        let state = std::mem::replace(&mut conn.state, State::Gone);
        match state {
            State::Connecting(stream) => {
                let tcp = stream.tcp();
                match tcp.take_error() {
                    Ok(None) => {}
                    _ => {
                        self.connection_failed(token, now);
                        return 0;
                    }
                }
                if tcp.peer_addr().is_err() {
                    // Not connected yet.
                    if let Some(c) = self.conns.get_mut(&token) {
                        c.state = State::Connecting(stream);
                    }
                    return 0;
                }
                let url = conn.url.clone();
                let Some(url) = url else {
                    self.remove(token, now);
                    return 0;
                };
                let stream = match (url.tls, stream) {
                    (true, Stream::Plain(tcp)) => {
                        let cfg = self
                            .config
                            .tls_client
                            .clone()
                            .unwrap_or_else(tls::client_config_webpki);
                        let name = match rustls::pki_types::ServerName::try_from(url.host.clone()) {
                            Ok(n) => n,
                            Err(_) => {
                                self.connection_failed(token, now);
                                return 0;
                            }
                        };
                        match TlsStream::client(cfg, name, tcp) {
                            Ok(t) => Stream::Tls(Box::new(t)),
                            Err(_) => {
                                self.connection_failed(token, now);
                                return 0;
                            }
                        }
                    }
                    (_, s) => s,
                };
                if let Some(c) = self.conns.get_mut(&token) {
                    c.deadline = Some(now + self.config.handshake_timeout);
                }
                let request = format!("{}", url);
                let result = tungstenite::client::client_with_config(
                    request.as_str(),
                    stream,
                    Some(self.ws_config),
                );
                self.after_client_handshake(token, result, now);
                self.drive_open(token, now, on_datagram)
            }
            State::Accepting(mid) => {
                let result = mid.handshake();
                self.after_server_handshake(token, result, now);
                self.drive_open(token, now, on_datagram)
            }
            State::Upgrading(mid) => {
                let result = mid.handshake();
                self.after_client_handshake(token, result, now);
                self.drive_open(token, now, on_datagram)
            }
            State::Open(ws) => {
                conn.state = State::Open(ws);
                self.drive_open(token, now, on_datagram)
            }
            State::Gone => {
                self.remove(token, now);
                0
            }
        }
    }

    /// Reads what an open connection has, up to [`READS_PER_TURN`].
    fn drive_open(
        &mut self,
        token: Token,
        now: Instant,
        on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> usize {
        let mut delivered = 0;
        let mut close: Option<(CloseCode, &'static str)> = None;
        let mut dead = false;
        {
            let Some(conn) = self.conns.get_mut(&token) else {
                return 0;
            };
            let State::Open(ws) = &mut conn.state else {
                return 0;
            };
            let peer = conn.peer;
            let mut drained = false;
            for _ in 0..READS_PER_TURN {
                match ws.read() {
                    Ok(Message::Binary(bytes)) => {
                        conn.last_recv = now;
                        conn.stats.messages_received += 1;
                        conn.stats.bytes_received += bytes.len() as u64;
                        TransportCounters::add(&self.counters.packets_received, 1);
                        TransportCounters::add(&self.counters.bytes_received, bytes.len() as u64);
                        let mut datagram: Vec<u8> = bytes.into();
                        on_datagram(peer, &mut datagram);
                        delivered += 1;
                    }
                    Ok(Message::Text(_)) => {
                        TransportCounters::add(&self.counters.packets_dropped, 1);
                        close = Some((CloseCode::Unsupported, "stt speaks binary messages only"));
                        break;
                    }
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
                        conn.last_recv = now
                    }
                    Ok(Message::Close(_)) => conn.last_recv = now,
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(tungstenite::Error::Capacity(_)) => {
                        TransportCounters::add(&self.counters.packets_dropped, 1);
                        close = Some((CloseCode::Size, "message larger than max_message_size"));
                        break;
                    }
                    Err(tungstenite::Error::Protocol(_)) | Err(tungstenite::Error::Utf8(_)) => {
                        TransportCounters::add(&self.counters.errors_receive, 1);
                        close = Some((CloseCode::Protocol, "protocol error"));
                        break;
                    }
                    Err(_) => {
                        dead = true;
                        break;
                    }
                }
            }
            conn.readable = !drained && !dead && close.is_none();
            if let Some((code, reason)) = close {
                tracing::debug!(%peer, ?code, reason, "closing WebSocket connection");
                let _ = ws.close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }));
                let _ = ws.flush();
                dead = true;
            }
        }
        if dead {
            self.connection_failed(token, now);
        }
        delivered
    }

    /// A connection ended: a dialled one is re-dialled by the policy.
    fn connection_failed(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        let (peer, dialled) = (conn.peer, conn.dialled);
        self.remove(token, now);
        if dialled && self.dialled.contains_key(&peer) {
            self.schedule_retry(peer, now);
        }
    }

    fn remove(&mut self, token: Token, _now: Instant) {
        if let Some(mut conn) = self.conns.remove(&token) {
            if self.by_peer.get(&conn.peer) == Some(&token) {
                self.by_peer.remove(&conn.peer);
            }
            if let State::Open(ws) = &mut conn.state {
                self.ws.connections_open.fetch_sub(1, Ordering::Relaxed);
                WsCounters::inc(&self.ws.connections_closed);
                let _ = ws.flush();
            }
            let tcp = match &mut conn.state {
                State::Connecting(s) => Some(s.tcp()),
                State::Open(ws) => Some(ws.get_ref().tcp()),
                State::Accepting(mid) => Some(mid.get_ref().get_ref().tcp()),
                State::Upgrading(mid) => Some(mid.get_ref().get_ref().tcp()),
                State::Gone => None,
            };
            if let Some(tcp) = tcp {
                let _ = tcp.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Queues one binary message on an open connection.
    fn write_to(&mut self, token: Token, datagram: &[u8]) -> Result<(), TransportError> {
        self.ready_to_write(token)?;
        let message = Message::Binary(datagram.to_vec().into());
        self.write_message(token, message).map_err(|(e, _)| e)
    }

    /// Refuses with `QueueFull` while the connection is `blocked` and its
    /// socket still cannot take what tungstenite holds.
    fn ready_to_write(&mut self, token: Token) -> Result<(), TransportError> {
        let Some(conn) = self.conns.get_mut(&token) else {
            return Ok(());
        };
        let State::Open(ws) = &mut conn.state else {
            return Ok(());
        };
        if conn.blocked {
            match ws.flush() {
                Ok(()) => conn.blocked = false,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(TransportError::QueueFull(1));
                }
                // The write reports the connection's failure.
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// The open connection to `to`, if any.
    fn open_token(&self, to: SocketAddr) -> Option<Token> {
        let token = *self.by_peer.get(&to)?;
        let open = matches!(
            self.conns.get(&token).map(|c| &c.state),
            Some(State::Open(_))
        );
        open.then_some(token)
    }

    /// Writes `datagram`'s buffer itself, lent to tungstenite; the buffer
    /// left in its place is a spare (see [`Lent`]). Refused, `datagram`
    /// holds the message again.
    fn write_owned(&mut self, token: Token, datagram: &mut Vec<u8>) -> Result<(), TransportError> {
        // Refused before the buffer is lent: nothing to copy back.
        self.ready_to_write(token)?;
        let spare = {
            let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
            spares.pop().unwrap_or_default()
        };
        let buf = std::mem::replace(datagram, spare);
        let lent = Lent {
            buf,
            home: self.spares.clone(),
        };
        let message = Message::Binary(tungstenite::Bytes::from_owner(lent));
        self.write_message(token, message).map_err(|(e, back)| {
            if let Some(back) = back {
                datagram.clear();
                datagram.extend_from_slice(&back);
            }
            e
        })
    }

    /// Writes one message, whatever [`ready_to_write`](Self::ready_to_write)
    /// would say (callers that wait for a blocked connection ask it first);
    /// a refusal gives back what tungstenite returned of it, for the caller
    /// to keep.
    fn write_message(
        &mut self,
        token: Token,
        message: Message,
    ) -> Result<(), (TransportError, Option<tungstenite::Bytes>)> {
        fn payload(message: Message) -> Option<tungstenite::Bytes> {
            match message {
                Message::Binary(b) => Some(b),
                Message::Frame(f) => Some(f.into_payload()),
                _ => None,
            }
        }
        let len = message.len();
        let not_connected = || TransportError::io("sending", io::ErrorKind::NotConnected.into());
        let Some(conn) = self.conns.get_mut(&token) else {
            return Err((not_connected(), payload(message)));
        };
        let State::Open(ws) = &mut conn.state else {
            return Err((not_connected(), payload(message)));
        };
        match ws.write(message) {
            Ok(()) => {}
            // Taken: it waits in tungstenite's buffer.
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.blocked = true;
            }
            // Not sent, not dropped: the caller keeps it and tries again
            // once the peer has read (the reactor holds it in order).
            Err(tungstenite::Error::WriteBufferFull(back)) => {
                return Err((TransportError::QueueFull(1), payload(back)));
            }
            Err(e) => {
                TransportCounters::add(&self.counters.errors_send, 1);
                return Err((
                    TransportError::io("sending", io::Error::other(e.to_string())),
                    None,
                ));
            }
        }
        conn.last_send = Instant::now();
        conn.stats.messages_sent += 1;
        conn.stats.bytes_sent += len as u64;
        TransportCounters::add(&self.counters.packets_sent, 1);
        TransportCounters::add(&self.counters.bytes_sent, len as u64);
        Ok(())
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
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        if let Err(e) = self.poll.poll(&mut events, Some(Duration::ZERO)) {
            self.events = events;
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let mut touched: Vec<Token> = Vec::new();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                touched.push(LISTENER);
            } else if let Some(c) = self.conns.get_mut(&ev.token()) {
                c.readable = true;
                touched.push(ev.token());
            }
        }
        self.events = events;
        if touched.contains(&LISTENER) {
            self.accept_all(now);
        }
        let mut n = 0;
        let ready: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.readable)
            .map(|(t, _)| *t)
            .collect();
        for token in ready
            .into_iter()
            .chain(touched.into_iter().filter(|t| *t != LISTENER))
        {
            n += self.drive(token, now, on_datagram);
        }
        Ok(n)
    }

    fn send(&mut self, to: SocketAddr, datagram: &[u8]) -> Result<(), TransportError> {
        if datagram.len() > self.config.max_message_size {
            return Err(TransportError::TooLarge {
                len: datagram.len(),
                max: self.config.max_message_size,
            });
        }
        if let Some(token) = self.open_token(to) {
            return self.write_to(token, datagram);
        }
        // A dialled peer not (yet, or no longer) connected: queue.
        if let Some(d) = self.dialled.get_mut(&to) {
            if d.failed {
                return Err(TransportError::io(
                    format!("sending to {}", d.url),
                    io::Error::new(
                        io::ErrorKind::NotConnected,
                        "reconnection gave up (see ReconnectPolicy)",
                    ),
                ));
            }
            if d.queue.len() >= self.config.reconnect_queue {
                TransportCounters::add(&self.counters.packets_dropped, 1);
                return Err(TransportError::QueueFull(d.queue.len()));
            }
            d.queue.push_back(datagram.to_vec());
            return Ok(());
        }
        Err(TransportError::io(
            format!("sending to {to}"),
            io::Error::new(
                io::ErrorKind::NotConnected,
                "no WebSocket connection to this peer",
            ),
        ))
    }

    fn send_owned(&mut self, to: SocketAddr, datagram: &mut Vec<u8>) -> Result<(), TransportError> {
        if datagram.len() <= self.config.max_message_size {
            if let Some(token) = self.open_token(to) {
                return self.write_owned(token, datagram);
            }
        }
        self.send(to, datagram)
    }

    fn flush(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let mut failed = Vec::new();
        for (token, conn) in self.conns.iter_mut() {
            if let State::Open(ws) = &mut conn.state {
                match ws.flush() {
                    Ok(()) => conn.blocked = false,
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        conn.blocked = true;
                    }
                    Err(_) => failed.push(*token),
                }
            }
        }
        for t in failed {
            self.connection_failed(t, now);
        }
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().map(|c| match c.deadline {
            Some(d) => d,
            None => (c.last_recv + self.config.dead_after)
                .min(c.last_recv.max(c.last_send) + self.config.ping_interval),
        });
        let retries = self.dialled.values().filter_map(|d| d.retry_at);
        conns.chain(retries).min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (token, conn) in self.conns.iter_mut() {
            match conn.deadline {
                Some(d) if now >= d => expired.push(*token),
                Some(_) => {}
                None => {
                    if now >= conn.last_recv + self.config.dead_after {
                        expired.push(*token);
                    } else if now >= conn.last_recv.max(conn.last_send) + self.config.ping_interval
                    {
                        if let State::Open(ws) = &mut conn.state {
                            let _ = ws.write(Message::Ping(Vec::new().into()));
                            let _ = ws.flush();
                            conn.last_send = now;
                        }
                    }
                }
            }
        }
        for token in expired {
            if let Some(c) = self.conns.get(&token) {
                if c.deadline.is_some() && !c.dialled {
                    WsCounters::inc(&self.ws.connections_refused);
                }
            }
            self.connection_failed(token, now);
        }
        let due: Vec<SocketAddr> = self
            .dialled
            .iter()
            .filter(|(_, d)| d.retry_at.is_some_and(|t| now >= t))
            .map(|(a, _)| *a)
            .collect();
        for peer in due {
            self.dial(peer, now);
        }
    }

    fn open(&mut self, target: &str, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        let url = WsUrl::parse(target).map_err(|e| {
            TransportError::io(
                "parsing the URL",
                io::Error::new(io::ErrorKind::InvalidInput, e),
            )
        })?;
        if url.tls && self.config.tls_client.is_none() {
            // Resolved lazily to the webpki roots when dialling.
        }
        if self.dialled.contains_key(&addr) && !self.dialled[&addr].failed {
            return Ok(addr);
        }
        self.dialled.insert(
            addr,
            Dialled {
                url,
                addr,
                token: None,
                queue: VecDeque::new(),
                attempt: 0,
                retry_at: None,
                failed: false,
            },
        );
        self.dial(addr, Instant::now());
        Ok(addr)
    }

    fn counters(&self) -> &Arc<TransportCounters> {
        &self.counters
    }
}

impl Drop for WsTransport {
    fn drop(&mut self) {
        self.counters.set_stopped();
        let now = Instant::now();
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            if let Some(Conn {
                state: State::Open(ws),
                ..
            }) = self.conns.get_mut(&t)
            {
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "transport stopping".into(),
                }));
                let _ = ws.flush();
            }
            self.remove(t, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_limits_make_a_config_tungstenite_accepts() {
        for (max_message_size, write_buffer_limit) in
            [(1, 0), (64 << 10, 0), (0, 1), (1 << 20, 8 << 20)]
        {
            let c = WsConfig {
                max_message_size,
                write_buffer_limit,
                ..WsConfig::default()
            }
            .tungstenite();
            // tungstenite asserts this when a connection is made.
            assert!(c.max_write_buffer_size > c.write_buffer_size, "{c:?}");
            assert!(c.max_write_buffer_size >= write_buffer_limit);
        }
    }
}
