//! The dialler: outgoing connections and their comeback.
//!
//! Each dialled peer keeps, across reconnections, its URL, the [`WsConfig`]
//! it was opened with (reconnect policy, queue bound, TLS client, and the
//! limits and timers its connections get), and the datagrams sent while it
//! is not connected. A dial is a non-blocking TCP connect (bounded by
//! `connect_timeout`), then TLS for `wss://`, then a client [`Conn`]. A
//! connection that fails or drops is re-dialled after the policy's backoff;
//! the jitter comes from a generator seeded once per transport from the
//! operating system's CSPRNG, so clients that lost one server spread out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::ServerName;

use super::conn::{later, Conn};
use super::stream::Stream;
use super::tls::{self, TlsStream};
use super::{WsConfig, WsConnectionStats, WsCounters, WsTransport, WsUrl};
use crate::transport::TransportCounters;

/// A peer this transport dials, kept across reconnections.
#[derive(Debug)]
pub(crate) struct Dialled {
    pub(crate) url: WsUrl,
    pub(crate) config: Arc<WsConfig>,
    /// Datagrams sent while not connected, in order.
    pub(crate) queue: VecDeque<Vec<u8>>,
    attempt: u32,
    retry_at: Option<Instant>,
    /// The policy gave up: sends are refused.
    pub(crate) failed: bool,
}

/// A TCP connect in progress.
#[derive(Debug)]
struct Connecting {
    peer: SocketAddr,
    tcp: TcpStream,
    started: Instant,
    deadline: Instant,
}

/// Jitter for reconnect delays: xorshift64*, seeded from the CSPRNG. The
/// jitter needs spread between clients, not secrecy.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn from_os() -> Self {
        let mut seed = [0u8; 8];
        let seed = match SystemRandom::new().fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            // No CSPRNG answer: std's per-process random hash keys instead.
            Err(_) => {
                use std::hash::{BuildHasher, Hasher};
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            }
        };
        Jitter(seed | 1)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The dialled peers and the TCP connects in progress. See the module docs.
#[derive(Debug)]
pub(crate) struct Dialler {
    pub(crate) peers: HashMap<SocketAddr, Dialled>,
    connecting: HashMap<Token, Connecting>,
    jitter: Jitter,
}

impl Dialler {
    pub(crate) fn new() -> Self {
        Dialler {
            peers: HashMap::new(),
            connecting: HashMap::new(),
            jitter: Jitter::from_os(),
        }
    }

    /// Records a dial of `url` at `addr` with `config`; `false` when `addr`
    /// is already dialled and has not given up (it keeps its connection
    /// and its configuration).
    pub(crate) fn add(&mut self, addr: SocketAddr, url: WsUrl, config: Arc<WsConfig>) -> bool {
        if self.peers.get(&addr).is_some_and(|d| !d.failed) {
            return false;
        }
        let dialled = Dialled {
            url,
            config,
            queue: VecDeque::new(),
            attempt: 0,
            retry_at: None,
            failed: false,
        };
        self.peers.insert(addr, dialled);
        true
    }

    /// Whether `token` is a TCP connect in progress.
    pub(crate) fn is_connecting(&self, token: Token) -> bool {
        self.connecting.contains_key(&token)
    }

    /// TCP connects in progress.
    pub(crate) fn connecting_len(&self) -> usize {
        self.connecting.len()
    }

    /// Statistics of the connects in progress, at `now`.
    pub(crate) fn connecting_stats(
        &self,
        now: Instant,
    ) -> impl Iterator<Item = WsConnectionStats> + '_ {
        self.connecting.values().map(move |c| WsConnectionStats {
            age_ms: now.saturating_duration_since(c.started).as_millis() as u64,
            ..WsConnectionStats::new(c.peer, true)
        })
    }

    /// A connection to `peer` opened: the backoff starts over, and the
    /// datagrams that waited are handed over to be written.
    pub(crate) fn opened(&mut self, peer: SocketAddr) -> VecDeque<Vec<u8>> {
        match self.peers.get_mut(&peer) {
            Some(d) => {
                d.attempt = 0;
                d.retry_at = None;
                std::mem::take(&mut d.queue)
            }
            None => VecDeque::new(),
        }
    }

    /// `peer`'s dial failed or its connection ended: the next attempt is
    /// scheduled by its policy, or, once the policy gives up, the datagrams
    /// that waited are dropped (and counted) and sends are refused.
    pub(crate) fn schedule_retry(
        &mut self,
        peer: SocketAddr,
        now: Instant,
        counters: &TransportCounters,
        ws: &WsCounters,
    ) {
        let unit = self.jitter.unit();
        let Some(d) = self.peers.get_mut(&peer) else {
            return;
        };
        d.attempt = d.attempt.saturating_add(1);
        match d.config.reconnect.delay(d.attempt, unit) {
            Some(delay) => {
                d.retry_at = Some(later(now, delay));
                WsCounters::inc(&ws.reconnects);
                tracing::info!(url = %d.url, attempt = d.attempt, ?delay, "WebSocket reconnecting");
            }
            None => {
                tracing::warn!(url = %d.url, attempts = d.attempt, dropped = d.queue.len(), "WebSocket reconnection gave up");
                d.failed = true;
                d.retry_at = None;
                TransportCounters::add(&counters.packets_dropped, d.queue.len() as u64);
                d.queue.clear();
            }
        }
    }

    /// The earliest retry or connect deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let retries = self.peers.values().filter_map(|d| d.retry_at);
        let connects = self.connecting.values().map(|c| c.deadline);
        retries.chain(connects).min()
    }

    /// Peers whose retry is due at `now`, their timers cleared.
    fn take_due(&mut self, now: Instant) -> Vec<SocketAddr> {
        let mut due = Vec::new();
        for (addr, d) in &mut self.peers {
            if d.retry_at.is_some_and(|t| now >= t) {
                d.retry_at = None;
                due.push(*addr);
            }
        }
        due
    }

    /// Connects past their `connect_timeout` at `now`, removed.
    fn take_expired(&mut self, now: Instant) -> Vec<(Token, SocketAddr)> {
        let expired: Vec<(Token, SocketAddr)> = self
            .connecting
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(t, c)| (*t, c.peer))
            .collect();
        for (t, _) in &expired {
            self.connecting.remove(t);
        }
        expired
    }
}

/// Why a connected socket could not start its TLS session.
#[derive(Debug, thiserror::Error)]
enum TlsStartError {
    #[error("`{0}` is not a valid TLS server name")]
    Name(String),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The stream a dial speaks over: TLS for `wss://`.
fn start_stream(url: &WsUrl, config: &WsConfig, tcp: TcpStream) -> Result<Stream, TlsStartError> {
    if !url.tls {
        return Ok(Stream::Plain(tcp));
    }
    let cfg = config
        .tls_client
        .clone()
        .unwrap_or_else(tls::client_config_webpki);
    let name = ServerName::try_from(url.host.clone())
        .map_err(|_| TlsStartError::Name(url.host.clone()))?;
    Ok(Stream::Tls(Box::new(TlsStream::client(cfg, name, tcp)?)))
}

impl WsTransport {
    /// Starts a TCP connect to dialled `peer`; a failure schedules a retry.
    pub(super) fn dial(&mut self, peer: SocketAddr, now: Instant) {
        let Some(connect_timeout) = self
            .dialler
            .peers
            .get(&peer)
            .map(|d| d.config.connect_timeout)
        else {
            return;
        };
        let mut tcp = match TcpStream::connect(peer) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "WebSocket dial failed");
                return self
                    .dialler
                    .schedule_retry(peer, now, &self.counters, &self.ws);
            }
        };
        let _ = tcp.set_nodelay(true);
        let token = self.token();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut tcp, token, interest)
            .is_err()
        {
            return self
                .dialler
                .schedule_retry(peer, now, &self.counters, &self.ws);
        }
        let connecting = Connecting {
            peer,
            tcp,
            started: now,
            deadline: later(now, connect_timeout),
        };
        self.dialler.connecting.insert(token, connecting);
    }

    /// A connect in progress had an event: once connected, the upgrade
    /// starts (a client [`Conn`], driven in this turn).
    pub(super) fn connect_ready(&mut self, token: Token, now: Instant) {
        let Some(c) = self.dialler.connecting.remove(&token) else {
            return;
        };
        if !matches!(c.tcp.take_error(), Ok(None)) {
            return self.dial_failed(c, now);
        }
        if c.tcp.peer_addr().is_err() {
            // Not connected yet.
            self.dialler.connecting.insert(token, c);
            return;
        }
        let Some(d) = self.dialler.peers.get(&c.peer) else {
            return self.dial_failed(c, now);
        };
        let (url, config) = (d.url.clone(), d.config.clone());
        let (peer, started) = (c.peer, c.started);
        let stream = match start_stream(&url, &config, c.tcp) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%url, error = %e, "WebSocket dial failed");
                return self
                    .dialler
                    .schedule_retry(peer, now, &self.counters, &self.ws);
            }
        };
        let counters = self.counters.clone();
        match Conn::dial(stream, peer, &url, config, counters, started, now) {
            Ok(conn) => self.insert(token, conn, None, now),
            Err(e) => {
                tracing::warn!(%url, error = %e, "WebSocket dial failed");
                self.dialler
                    .schedule_retry(peer, now, &self.counters, &self.ws);
            }
        }
    }

    fn dial_failed(&mut self, c: Connecting, now: Instant) {
        let _ = self.poll.registry().deregister(&mut { c.tcp });
        self.dialler
            .schedule_retry(c.peer, now, &self.counters, &self.ws);
    }

    /// Runs the dialler's timers: connects past `connect_timeout` fail,
    /// retries that are due dial again.
    pub(super) fn dial_timers(&mut self, now: Instant) {
        for (_, peer) in self.dialler.take_expired(now) {
            tracing::debug!(%peer, "WebSocket connect timed out");
            self.dialler
                .schedule_retry(peer, now, &self.counters, &self.ws);
        }
        for peer in self.dialler.take_due(now) {
            self.dial(peer, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::ws::ReconnectPolicy;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn url(port: u16) -> WsUrl {
        WsUrl::parse(&format!("ws://127.0.0.1:{port}/")).unwrap()
    }

    #[test]
    fn jitter_is_seeded_per_transport_and_stays_in_range() {
        let (mut a, mut b) = (Jitter::from_os(), Jitter::from_os());
        let xs: Vec<f64> = (0..64).map(|_| a.unit()).collect();
        let ys: Vec<f64> = (0..64).map(|_| b.unit()).collect();
        assert_ne!(xs, ys, "two transports draw different jitter");
        assert!(xs.iter().chain(&ys).all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn each_dial_retries_by_its_own_policy_and_a_second_open_keeps_the_first() {
        let (counters, ws) = (TransportCounters::new(peer(0)), WsCounters::default());
        let mut d = Dialler::new();
        let patient = Arc::new(WsConfig {
            reconnect: ReconnectPolicy {
                initial_delay: Duration::from_secs(1),
                jitter: 0.0,
                ..ReconnectPolicy::default()
            },
            ..WsConfig::default()
        });
        let never = Arc::new(WsConfig {
            reconnect: ReconnectPolicy::never(),
            ..WsConfig::default()
        });
        assert!(d.add(peer(1), url(1), patient));
        assert!(d.add(peer(2), url(2), never.clone()));
        assert!(!d.add(peer(1), url(1), never), "already dialled");
        d.peers
            .get_mut(&peer(2))
            .unwrap()
            .queue
            .push_back(vec![1, 2, 3]);
        let now = Instant::now();
        d.schedule_retry(peer(1), now, &counters, &ws);
        d.schedule_retry(peer(2), now, &counters, &ws);
        assert_eq!(d.poll_timeout(), Some(now + Duration::from_secs(1)));
        assert!(d.peers[&peer(2)].failed && d.peers[&peer(2)].queue.is_empty());
        assert_eq!(counters.snapshot().packets_dropped, 1);
        assert_eq!(ws.snapshot().reconnects, 1);
        assert!(d.take_due(now).is_empty());
        assert_eq!(d.take_due(now + Duration::from_secs(1)), vec![peer(1)]);
        // A failed dial may be opened again, afresh.
        assert!(d.add(peer(2), url(2), Arc::new(WsConfig::default())));
        assert!(!d.peers[&peer(2)].failed);
    }

    #[test]
    fn an_open_connection_resets_the_backoff_and_takes_the_queue() {
        let (counters, ws) = (TransportCounters::new(peer(0)), WsCounters::default());
        let mut d = Dialler::new();
        let config = Arc::new(WsConfig {
            reconnect: ReconnectPolicy {
                jitter: 0.0,
                ..ReconnectPolicy::default()
            },
            ..WsConfig::default()
        });
        d.add(peer(1), url(1), config);
        let now = Instant::now();
        for _ in 0..3 {
            d.schedule_retry(peer(1), now, &counters, &ws);
        }
        assert_eq!(d.poll_timeout(), Some(now + Duration::from_millis(400)));
        d.peers.get_mut(&peer(1)).unwrap().queue.push_back(vec![9]);
        assert_eq!(d.opened(peer(1)), VecDeque::from([vec![9]]));
        assert_eq!(d.poll_timeout(), None);
        d.schedule_retry(peer(1), now, &counters, &ws);
        assert_eq!(d.poll_timeout(), Some(now + Duration::from_millis(100)));
    }
}
