//! Opening sessions, and moving them between transports.
//!
//! Every `connect_*` returns once the handshake is complete on both sides:
//! the initiator counts a session established when the responder's first
//! sealed frame confirms it, which the responder sends only after it has
//! established (and listed) the session. So when `connect_*` returns, the
//! peer accepts messages on the session, and its
//! [`NodeEvent::SessionEstablished`](super::NodeEvent::SessionEstablished)
//! is on its way to its application.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::NodeId;
use crate::frame::SessionId;
use crate::reactor::{Command, Connect, Failure, Wait};
use crate::token::ConnectToken;
use crate::transport::ws::{WsConfig, WsUrl};

use super::error::{ConnectError, MoveError};
use super::event::SessionInfo;
use super::session::Session;
use super::ws::TransportId;
use super::Node;

/// How to open one session. [`Default`]: the node's connect timeout (the
/// session's handshake timeout and a second), and for WebSocket the
/// default [`WsConfig`].
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// How long to wait for the handshake's outcome.
    pub timeout: Option<Duration>,
    /// The WebSocket configuration of this one connection (its reconnect
    /// policy, timers, limits and TLS client).
    pub websocket: Option<WsConfig>,
    /// The only node the session may be opened with. Membership of the
    /// network is the only other authentication, so pin the peer whenever
    /// you know it: another node (a member impersonating the address) ends
    /// the handshake with [`ConnectError::WrongPeer`] before it learns this
    /// node's identity.
    pub peer: Option<NodeId>,
    /// Open the session with this connect token instead of the network key
    /// (the only way for a node without a shared seed,
    /// [`NodeConfig::token_client`](super::NodeConfig::token_client)).
    pub token: Option<Arc<ConnectToken>>,
}

impl ConnectOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits at most `timeout` for the handshake's outcome.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Opens the session only with node `peer` (see [`peer`](Self::peer)).
    pub fn with_peer(mut self, peer: NodeId) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Opens the session with connect token `token` (see
    /// [`token`](Self::token)).
    pub fn with_token(mut self, token: ConnectToken) -> Self {
        self.token = Some(Arc::new(token));
        self
    }

    /// Dials WebSocket with `config`.
    pub fn with_websocket(mut self, config: WsConfig) -> Self {
        self.websocket = Some(config);
        self
    }
}

/// Resolves `host:port` to its first address accepted by `keep`.
fn resolve(
    authority: &str,
    local: Option<SocketAddr>,
    keep: impl Fn(&SocketAddr) -> bool,
) -> Result<SocketAddr, ConnectError> {
    authority
        .to_socket_addrs()
        .map_err(|source| ConnectError::Resolve {
            authority: authority.to_owned(),
            source,
        })?
        .find(keep)
        .ok_or_else(|| ConnectError::NoAddress {
            authority: authority.to_owned(),
            local: local.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        })
}

impl Node {
    /// Opens a session over UDP to `addr` (a host name resolves; `localhost`
    /// works). Waits until the handshake completes on both sides (see the
    /// [`crate::node`] docs) or times out.
    pub fn connect_udp(&self, addr: impl ToSocketAddrs) -> Result<Session, ConnectError> {
        self.connect_udp_with(addr, &ConnectOptions::default())
    }

    /// [`connect_udp`](Self::connect_udp) with options.
    pub fn connect_udp_with(
        &self,
        addr: impl ToSocketAddrs,
        options: &ConnectOptions,
    ) -> Result<Session, ConnectError> {
        let local = self.udp_local_addr().ok_or(ConnectError::UdpDisabled)?;
        let peer = addr
            .to_socket_addrs()
            .map_err(|source| ConnectError::Resolve {
                authority: "the UDP address".to_owned(),
                source,
            })?
            .find(|a| a.is_ipv4() == local.is_ipv4())
            .ok_or(ConnectError::NoAddress {
                authority: "the UDP address".to_owned(),
                local,
            })?;
        let reactor = self.next_reactor();
        self.connect_on(reactor, TransportId::UDP.index, peer, None, options)
    }

    /// Opens a session over WebSocket to `url` (`ws://host:port/path` or
    /// `wss://…`; a host name resolves). The connection comes back after a
    /// drop by the default [`WsConfig`]'s reconnect policy. Waits until the
    /// handshake completes on both sides or times out.
    pub fn connect_websocket(&self, url: &str) -> Result<Session, ConnectError> {
        self.connect_websocket_with(url, &ConnectOptions::default())
    }

    /// [`connect_websocket`](Self::connect_websocket) with options: the
    /// connection's own [`WsConfig`], a timeout.
    pub fn connect_websocket_with(
        &self,
        url: &str,
        options: &ConnectOptions,
    ) -> Result<Session, ConnectError> {
        let parsed = WsUrl::parse(url)?;
        let peer = resolve(&parsed.authority(), None, |_| true)?;
        let transport = self.ws_client()?;
        let reactor = transport.reactor.unwrap_or(0);
        self.connect_on(
            reactor,
            transport.index,
            peer,
            Some(parsed.to_string()),
            options,
        )
    }

    /// Opens a session over `transport` (see
    /// [`add_transport`](Self::add_transport)) to `peer`. Waits until the
    /// handshake completes on both sides or times out.
    pub fn connect(
        &self,
        transport: TransportId,
        peer: SocketAddr,
    ) -> Result<Session, ConnectError> {
        let reactor = transport.reactor.unwrap_or_else(|| self.next_reactor());
        self.connect_on(
            reactor,
            transport.index,
            peer,
            None,
            &ConnectOptions::default(),
        )
    }

    fn next_reactor(&self) -> usize {
        self.inner.next_reactor.fetch_add(1, Ordering::Relaxed) % self.inner.reactors.len()
    }

    /// Runs a handshake on `reactor` over its transport `transport` (after
    /// opening `target` there, if any) and waits for the outcome.
    fn connect_on(
        &self,
        reactor: usize,
        transport: usize,
        peer: SocketAddr,
        target: Option<String>,
        options: &ConnectOptions,
    ) -> Result<Session, ConnectError> {
        if options.token.as_ref().is_some_and(|t| t.is_expired()) {
            return Err(ConnectError::TokenExpired);
        }
        let timeout = options.timeout.unwrap_or(self.inner.connect_timeout);
        let deadline = Instant::now() + timeout;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ws_options = options
            .websocket
            .clone()
            .map(|c| Box::new(c) as Box<dyn std::any::Any + Send>);
        let command = Command::Connect(Box::new(Connect {
            transport,
            peer,
            target,
            options: ws_options,
            expect: options.peer,
            token: options.token.clone(),
            reply: tx,
        }));
        self.inner
            .command(reactor, command, Wait::Until(Some(deadline)))
            .map_err(|e| match e {
                Failure::Full | Failure::TimedOut(_) => ConnectError::TimedOut(timeout),
                other => ConnectError::from_failure(other),
            })?;
        let opened = match rx.recv_deadline(deadline) {
            Ok(answer) => answer.map_err(ConnectError::from_failure)?,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                return Err(ConnectError::TimedOut(timeout))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err(ConnectError::Stopped)
            }
        };
        Ok(Session::new(self.clone(), SessionInfo::from(opened)))
    }

    /// Moves an established session onto a WebSocket connection to `url`,
    /// without a new handshake: the session id and keys stay, only the path
    /// changes. Use it on the side that dialled (the initiator) to fail over
    /// from UDP without losing the session;
    /// [`move_session_to_udp`](Self::move_session_to_udp) moves back.
    ///
    /// A ping goes along the new path at once. The responder follows once
    /// it has validated the path (its probe there answered: one round trip);
    /// until then it still sends along the old path, so its first replies
    /// may be lost if that path is dead. The call pins this side's path: it
    /// no longer follows the peer anywhere else. (The peer never follows a
    /// move made by the responder's application: only responders follow.)
    pub fn move_session_to_websocket(
        &self,
        session: SessionId,
        url: &str,
    ) -> Result<(), MoveError> {
        let parsed = WsUrl::parse(url).map_err(ConnectError::from)?;
        let addr = resolve(&parsed.authority(), None, |_| true)?;
        let transport = self.ws_client()?;
        let reactor = transport.reactor.unwrap_or(0);
        let target: Box<str> = parsed.to_string().into();
        let path = self
            .inner
            .call(reactor, |reply| Command::OpenPath {
                transport: transport.index,
                target,
                addr,
                reply,
            })
            .map_err(MoveError::from_failure)?;
        self.set_path(session, path)
    }

    /// Moves an established session onto UDP to `addr`, without a new
    /// handshake (see [`move_session_to_websocket`](Self::move_session_to_websocket)).
    pub fn move_session_to_udp(
        &self,
        session: SessionId,
        addr: SocketAddr,
    ) -> Result<(), MoveError> {
        if self.udp_local_addr().is_none() {
            return Err(ConnectError::UdpDisabled.into());
        }
        let holder = self
            .inner
            .shared
            .holder_of(session)
            .ok_or(MoveError::SessionClosed(session))?;
        let path = self
            .inner
            .call(holder, |reply| Command::OpenPath {
                transport: TransportId::UDP.index,
                target: "".into(),
                addr,
                reply,
            })
            .map_err(MoveError::from_failure)?;
        self.set_path(session, path)
    }

    fn set_path(&self, session: SessionId, path: crate::endpoint::Path) -> Result<(), MoveError> {
        let holder = self
            .inner
            .shared
            .holder_of(session)
            .ok_or(MoveError::SessionClosed(session))?;
        self.inner
            .call(holder, |reply| Command::SetPath {
                session,
                path: Box::new(path),
                reply,
            })
            .map_err(MoveError::from_failure)
    }
}
