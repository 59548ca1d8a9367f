//! Transports: they move opaque bytes and know nothing of frames.
//!
//! Frames are sealed before a transport sees them; a transport only carries
//! datagrams between socket addresses. The [`Transport`] trait is what the
//! reactor drives, and what a user implements to plug in a transport of their
//! own (see [`memory::MemoryTransport`] and `examples/custom_transport.rs`).
//!
//! ## The contract
//!
//! A transport lives on one reactor thread and is driven by readiness:
//!
//! 1. [`register`](Transport::register) puts its event source (a socket, an
//!    io_uring completion fd, a pipe) into the reactor's `mio::Poll` under one
//!    token. A transport with many descriptors can register a `mio::Poll` of
//!    its own, whose fd turns readable when any of them does.
//! 2. When that token fires — and on every loop turn, since edge-triggered
//!    readiness must be drained — the reactor calls [`recv`](Transport::recv),
//!    which hands over every datagram available now, without blocking. The
//!    bytes are lent mutably so that the reactor can decrypt them in place.
//! 3. [`send`](Transport::send) queues a datagram; [`flush`](Transport::flush)
//!    puts every queued datagram on the wire, in one system call where the
//!    backend can batch (`sendmmsg`, one `io_uring_enter`). The reactor
//!    flushes once per loop turn, so a burst costs one syscall.
//!
//! Every transport counts its traffic in a shared [`TransportCounters`], read
//! without locks by any thread.

pub mod memory;
pub mod rate_limit;
pub mod udp;
pub mod ws;

/// The `mio` the [`Transport`] trait is written against, re-exported so that a
/// custom transport uses the very same version.
pub use mio;

pub use crate::counters::{TransportCounters, TransportStats};

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// A transport that moves datagrams between socket addresses.
///
/// See the [module docs](self) for how the reactor drives it.
pub trait Transport: Send + fmt::Debug {
    /// A short name for logs and statistics, e.g. `"udp/io_uring"`.
    fn kind(&self) -> &'static str;

    /// The address this transport receives on.
    fn local_addr(&self) -> SocketAddr;

    /// Largest datagram it carries, or `None` for a stream transport where a
    /// message of any size travels whole.
    fn max_datagram_size(&self) -> Option<usize>;

    /// Registers the transport's event source in the reactor's poll.
    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()>;

    /// Removes it again.
    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()>;

    /// Hands every datagram available now to `on_datagram(from, bytes)`,
    /// without blocking; returns how many. Receive errors that concern one
    /// datagram are counted in `errors_receive` and skipped; an `Err` means
    /// the transport itself failed.
    fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8])) -> io::Result<usize>;

    /// Queues `datagram` for `to`. Refuses a datagram larger than
    /// [`max_datagram_size`](Self::max_datagram_size).
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) -> Result<(), TransportError>;

    /// [`send`](Self::send) for a datagram the transport may keep instead of
    /// copying: it may take the buffer, leaving another in its place (empty;
    /// any capacity). When it refuses the datagram with
    /// [`TransportError::QueueFull`], `datagram` holds it again. The default
    /// copies, as `send` does; a transport that hands whole buffers to its
    /// writer (the WebSocket one) overrides it.
    fn send_owned(&mut self, to: SocketAddr, datagram: &mut Vec<u8>) -> Result<(), TransportError> {
        self.send(to, datagram)
    }

    /// Sends everything queued. Datagrams the kernel cannot take now (its
    /// buffer is full) stay queued up to the transport's bound and
    /// [`wants_write`](Self::wants_write) says so; beyond the bound they are
    /// dropped and counted in `packets_dropped`.
    fn flush(&mut self) -> io::Result<()>;

    /// Whether datagrams wait for the socket to become writable.
    fn wants_write(&self) -> bool {
        false
    }

    /// The transport's next deadline (keepalive, handshake or reconnect
    /// timers of a connection-oriented transport); the reactor wakes for it
    /// and calls [`handle_timeout`](Self::handle_timeout). Default: none.
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        None
    }

    /// Runs the transport's timers that are due at `now`. Default: nothing.
    fn handle_timeout(&mut self, now: std::time::Instant) {
        let _ = now;
    }

    /// Opens a connection to `target` (a transport-specific address such as
    /// a `ws://` URL), already resolved to `addr`, and returns the address
    /// under which the peer is reached with [`send`](Self::send).
    /// Datagrams sent before the connection is up are queued. Datagram
    /// transports have nothing to open and return `addr`.
    fn open(&mut self, target: &str, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        let _ = target;
        Ok(addr)
    }

    /// [`open`](Self::open) with transport-specific options for this one
    /// connection (a WebSocket dial takes a `WsConfig`); transports without
    /// options ignore them.
    fn open_with(
        &mut self,
        target: &str,
        addr: SocketAddr,
        options: Option<&(dyn std::any::Any + Send)>,
    ) -> Result<SocketAddr, TransportError> {
        let _ = options;
        self.open(target, addr)
    }

    /// A datagram from `peer` opened or carried an authenticated session:
    /// the connection is trusted from now on. The reactor calls it when a
    /// session is established over (or validated onto) a path of this
    /// transport, after the `recv` that delivered that datagram and before
    /// the next one. A connection-oriented transport lifts its limits for
    /// unauthenticated connections (the WebSocket one: `auth_timeout` and
    /// `max_message_size_unauthenticated`). Default: nothing.
    fn peer_authenticated(&mut self, peer: SocketAddr) {
        let _ = peer;
    }

    /// Whether the transport delivers reliably and in order (a stream
    /// transport): the reactor then stops reading it, rather than dropping,
    /// when the application falls behind. Default: false.
    fn is_reliable(&self) -> bool {
        false
    }

    /// The transport's counters.
    fn counters(&self) -> &Arc<TransportCounters>;
}

/// A boxed transport is a transport: every method, provided ones included,
/// goes to the box's content (a method left to its default here would
/// silently skip the content's own).
impl<T: Transport + ?Sized> Transport for Box<T> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn local_addr(&self) -> SocketAddr {
        (**self).local_addr()
    }
    fn max_datagram_size(&self) -> Option<usize> {
        (**self).max_datagram_size()
    }
    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        (**self).register(registry, token)
    }
    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        (**self).deregister(registry)
    }
    fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8])) -> io::Result<usize> {
        (**self).recv(on_datagram)
    }
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) -> Result<(), TransportError> {
        (**self).send(to, datagram)
    }
    fn send_owned(&mut self, to: SocketAddr, datagram: &mut Vec<u8>) -> Result<(), TransportError> {
        (**self).send_owned(to, datagram)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
    fn wants_write(&self) -> bool {
        (**self).wants_write()
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        (**self).poll_timeout()
    }
    fn handle_timeout(&mut self, now: std::time::Instant) {
        (**self).handle_timeout(now)
    }
    fn open(&mut self, target: &str, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        (**self).open(target, addr)
    }
    fn open_with(
        &mut self,
        target: &str,
        addr: SocketAddr,
        options: Option<&(dyn std::any::Any + Send)>,
    ) -> Result<SocketAddr, TransportError> {
        (**self).open_with(target, addr, options)
    }
    fn peer_authenticated(&mut self, peer: SocketAddr) {
        (**self).peer_authenticated(peer)
    }
    fn is_reliable(&self) -> bool {
        (**self).is_reliable()
    }
    fn counters(&self) -> &Arc<TransportCounters> {
        (**self).counters()
    }
}

/// Why a datagram was not queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The datagram exceeds the transport's `max_datagram_size`.
    /// Fragmenting is the stream layer's job: send through a session.
    #[error("datagram of {len} bytes exceeds max_packet_size ({max} bytes): send messages through a session, which fragments them")]
    TooLarge {
        /// Datagram length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The destination's address family does not match the socket's.
    #[error("cannot send to {to} from a socket bound to {local}: address families differ")]
    AddressFamily {
        /// Destination.
        to: SocketAddr,
        /// Local address.
        local: SocketAddr,
    },
    /// The transport's send queue is full.
    #[error("send queue full ({0} datagrams): the peer or the network is slower than the sender")]
    QueueFull(usize),
    /// The local address is in use.
    #[error("address {addr} is already in use: pick another port, or port 0 to let the system choose a free one")]
    AddrInUse {
        /// The address.
        addr: SocketAddr,
    },
    /// Any other I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl TransportError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        TransportError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<TransportError> for io::Error {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Io { source, .. } => source,
            TransportError::AddrInUse { .. } => io::Error::new(io::ErrorKind::AddrInUse, e),
            TransportError::QueueFull(_) => io::Error::new(io::ErrorKind::WouldBlock, e),
            other => io::Error::new(io::ErrorKind::InvalidInput, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records the provided methods called on it.
    #[derive(Debug)]
    struct Probe {
        seen: Arc<Mutex<Vec<String>>>,
        counters: Arc<TransportCounters>,
    }

    impl Transport for Probe {
        fn kind(&self) -> &'static str {
            "probe"
        }
        fn local_addr(&self) -> SocketAddr {
            self.counters.snapshot().local_addr
        }
        fn max_datagram_size(&self) -> Option<usize> {
            None
        }
        fn register(&mut self, _: &mio::Registry, _: mio::Token) -> io::Result<()> {
            Ok(())
        }
        fn deregister(&mut self, _: &mio::Registry) -> io::Result<()> {
            Ok(())
        }
        fn recv(&mut self, _: &mut dyn FnMut(SocketAddr, &mut [u8])) -> io::Result<usize> {
            Ok(0)
        }
        fn send(&mut self, _: SocketAddr, _: &[u8]) -> Result<(), TransportError> {
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn open_with(
            &mut self,
            _: &str,
            addr: SocketAddr,
            options: Option<&(dyn std::any::Any + Send)>,
        ) -> Result<SocketAddr, TransportError> {
            let n = options.and_then(|o| o.downcast_ref::<u32>()).copied();
            self.seen.lock().unwrap().push(format!("open_with {n:?}"));
            Ok(addr)
        }
        fn peer_authenticated(&mut self, peer: SocketAddr) {
            self.seen
                .lock()
                .unwrap()
                .push(format!("authenticated {peer}"));
        }
        fn counters(&self) -> &Arc<TransportCounters> {
            &self.counters
        }
    }

    #[test]
    fn boxed_and_rate_limited_transports_pass_every_provided_method_on() {
        let at: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probe = || Probe {
            seen: seen.clone(),
            counters: TransportCounters::new(at),
        };
        let boxed: Box<dyn Transport> = Box::new(probe());
        let limited: Box<dyn Transport> =
            Box::new(rate_limit::RateLimited::new(probe(), 1 << 20, 1 << 20, 16));
        for mut t in [boxed, limited] {
            t.peer_authenticated(at);
            t.open_with("x", at, Some(&7u32)).unwrap();
        }
        let want = ["authenticated 127.0.0.1:9", "open_with Some(7)"];
        let got = seen.lock().unwrap().clone();
        assert_eq!(got, [want, want].concat());
    }
}
