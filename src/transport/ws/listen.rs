//! Listening: binding the TCP listener (alone, or as one of a
//! `SO_REUSEPORT` group with one socket per reactor), and accepting — the
//! connection caps (node-wide and per address, counted in the
//! [`WsAdmission`](super::WsAdmission) the server's transports share) with
//! their HTTP 503, TLS for `wss://`, and a server [`Conn`] per accepted
//! socket.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpListener;
use mio::Interest;

use super::conn::Conn;
use super::stream::Stream;
use super::tls::TlsStream;
use super::{Refusal, WsCounters, WsTransport};
use crate::transport::{TransportCounters, TransportError};

/// What a client past `max_connections` reads before the socket closes.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 26\r\nConnection: close\r\n\r\nconnection limit reached\r\n";

/// What a client past `max_connections_per_ip` reads.
const REFUSAL_PER_IP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 39\r\nConnection: close\r\n\r\nconnection limit reached for this address\r\n";

/// A non-blocking TCP socket for `addr`, `SO_REUSEADDR` set (and
/// `IPV6_V6ONLY` for IPv6), not yet bound.
fn new_socket(addr: SocketAddr) -> Result<socket2::Socket, TransportError> {
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
    Ok(s)
}

fn bind_error(at: SocketAddr, e: io::Error) -> TransportError {
    if e.kind() == io::ErrorKind::AddrInUse {
        TransportError::AddrInUse { addr: at }
    } else {
        TransportError::io(format!("binding the WebSocket listener to {at}"), e)
    }
}

/// One listening socket on `addr` (port 0: any free port).
pub(super) fn bind(addr: SocketAddr) -> Result<TcpListener, TransportError> {
    let s = new_socket(addr)?;
    s.bind(&addr.into()).map_err(|e| bind_error(addr, e))?;
    s.listen(1024)
        .map_err(|e| TransportError::io("listening", e))?;
    Ok(TcpListener::from_std(s.into()))
}

/// Binds `count` TCP listeners to `addr` in a `SO_REUSEPORT` group (one per
/// reactor: the kernel spreads incoming connections over them). As for UDP,
/// a probe bind without `SO_REUSEPORT` first refuses a port some other group
/// holds, and picks the port when 0 is asked.
pub fn bind_listener_group(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<TcpListener>, TransportError> {
    let mut at = addr;
    let probe = new_socket(at)?;
    probe.bind(&at.into()).map_err(|e| bind_error(at, e))?;
    if let Some(bound) = probe.local_addr().ok().and_then(|a| a.as_socket()) {
        at.set_port(bound.port());
    }
    drop(probe);
    let mut out = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        let s = new_socket(at)?;
        s.set_reuse_port(true)
            .map_err(|e| TransportError::io("setting SO_REUSEPORT", e))?;
        s.bind(&at.into()).map_err(|e| bind_error(at, e))?;
        s.listen(1024)
            .map_err(|e| TransportError::io("listening", e))?;
        out.push(TcpListener::from_std(s.into()));
    }
    Ok(out)
}

impl WsTransport {
    /// Accepts every waiting connection. Each becomes a server [`Conn`],
    /// driven in this turn; past `max_connections` (over the transports
    /// sharing this one's admission) or `max_connections_per_ip` a
    /// connection gets an HTTP 503 and is closed.
    pub(super) fn accept_all(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (mut tcp, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    TransportCounters::add(&self.counters.errors_receive, 1);
                    return;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (max, per_ip) = (
                self.config.max_connections,
                self.config.max_connections_per_ip,
            );
            let ticket = match self.admission.admit(peer.ip(), max, per_ip) {
                Ok(t) => t,
                Err(refusal) => {
                    // A clear refusal, then close: best effort on a fresh
                    // socket (the request is not read: 503 needs none).
                    WsCounters::inc(&self.ws.connections_refused);
                    if refusal == Refusal::PerIp {
                        let _ = tcp.write(REFUSAL_PER_IP);
                        WsCounters::inc(&self.ws.refused_per_ip);
                        tracing::warn!(%peer, limit = per_ip, "WebSocket connection refused: per-address limit reached");
                    } else {
                        let _ = tcp.write(REFUSAL);
                        tracing::warn!(%peer, limit = max, "WebSocket connection refused: limit reached");
                    }
                    continue;
                }
            };
            let token = self.token();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut tcp, token, interest)
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
            let (config, counters) = (self.config.clone(), self.counters.clone());
            let conn = Conn::accept(stream, peer, config, counters, now);
            self.insert(token, conn, Some(ticket), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_a_taken_port_is_refused() {
        let group = bind_listener_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = group
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert!(
            ports[0] != 0 && ports.iter().all(|p| *p == ports[0]),
            "{ports:?}"
        );
        let taken = SocketAddr::from(([127, 0, 0, 1], ports[0]));
        assert!(matches!(
            bind_listener_group(taken, 1),
            Err(TransportError::AddrInUse { .. })
        ));
        assert!(matches!(bind(taken), Err(TransportError::AddrInUse { .. })));
    }
}
