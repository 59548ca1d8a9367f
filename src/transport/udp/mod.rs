//! The UDP transport: configuration, socket set-up, and two I/O backends.
//!
//! Each reactor owns one UDP socket; all of them are bound to the same
//! address with `SO_REUSEPORT`, so the kernel spreads datagrams across
//! cores. A classic BPF program attached to the group steers every datagram
//! by the low byte of its session id, so a session's datagrams always reach
//! the reactor that owns it — even when the peer's address changes (NAT
//! rebinding). Where the program cannot be attached, reactors forward
//! misrouted datagrams to their owner instead: slower, still correct.
//!
//! Backends (chosen by [`UdpBackend`]; `Auto` takes mio; io_uring is probed
//! when asked for and refused cleanly where the kernel lacks it):
//!
//! - **io_uring** (`uring`, Linux only): sends queued as `SendMsg` entries
//!   and submitted in one `io_uring_enter` per loop turn; receives through
//!   multishot `RecvMsg` with a provided-buffer ring; the ring's fd sits in
//!   the reactor's poll.
//! - **mmsg** (the `mio` backend): a non-blocking socket in the reactor's
//!   poll, `sendmmsg`/`recvmmsg` batches.
//!
//! Both use GSO (`UDP_SEGMENT`) for runs of equal-size datagrams to one peer
//! (the fragments of a large message) and GRO (`UDP_GRO`) on receive where the
//! kernel has them.
//!
//! # Platforms
//!
//! Everything specific to one operating system sits behind one boundary:
//! the `sys` module (system calls, socket options, the steering program) and
//! the `uring` module, both `#[cfg(target_os = "linux")]`. Elsewhere `sys`
//! is a portable fallback (one `sendto`/`recvfrom` per datagram, no GSO, GRO
//! or steering), the mio backend runs on it unchanged, and
//! [`UdpBackend::IoUring`] fails to start with `Unsupported`.

mod mmsg;
pub(crate) mod sys;
#[cfg(target_os = "linux")]
mod uring;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

pub use mmsg::MmsgUdp;
#[cfg(target_os = "linux")]
pub use uring::UringUdp;

use crate::frame::{MAX_UDP_DATAGRAM_SIZE, MIN_DATAGRAM_SIZE};
use crate::transport::{Transport, TransportError};

/// Which UDP I/O backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum UdpBackend {
    /// The default: `mio`, which runs on every kernel and lets a transport
    /// be driven from any thread. (The two backends side by side:
    /// `perf/RESULTS.md`.)
    #[default]
    Auto,
    /// io_uring; starting fails if the kernel refuses it.
    IoUring,
    /// Readiness with `sendmmsg`/`recvmmsg` (mio).
    Mio,
}

/// UDP transport configuration. The first five fields are those users of
/// the original STT know.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Address to bind. Default `0.0.0.0` (all IPv4 interfaces); use `::`
    /// or `::1` for IPv6 (IPv6-only sockets).
    pub bind_address: IpAddr,
    /// Port to bind; 0 lets the system choose a free one (read it back from
    /// the node's `udp_local_addr()`).
    pub bind_port: u16,
    /// Largest datagram sent or accepted. Default 1472 = 1500 (Ethernet MTU)
    /// − 20 (IPv4) − 8 (UDP): never fragmented by IP. Use 8972 for jumbo
    /// frames, 512 for restrictive paths; 1452 for IPv6 on Ethernet.
    pub max_packet_size: usize,
    /// `SO_RCVBUF` asked for, per socket. Default 64 KiB as in the original
    /// STT; raise it (e.g. 4 MiB) for bursts at high rates. The kernel
    /// doubles it and caps it at `net.core.rmem_max`: what it granted is
    /// reported.
    pub receive_buffer_size: usize,
    /// `SO_SNDBUF` asked for, per socket. Default 64 KiB.
    pub send_buffer_size: usize,
    /// I/O backend. Default [`UdpBackend::Auto`].
    pub backend: UdpBackend,
    /// Datagrams per `sendmmsg`/`recvmmsg`, and receive buffers per socket.
    /// Default 64: amortises the system call over a burst without holding
    /// much memory (64 × 64 KiB with GRO).
    pub batch_size: usize,
    /// Use GSO for runs of equal-size datagrams to one peer. Default true.
    pub gso: bool,
    /// Use GRO on receive. Default true.
    pub gro: bool,
    /// Datagrams queued while the socket buffer is full before further sends
    /// are dropped and counted. Default 4096.
    pub send_queue_limit: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            bind_port: 0,
            max_packet_size: 1472,
            receive_buffer_size: 64 * 1024,
            send_buffer_size: 64 * 1024,
            backend: UdpBackend::Auto,
            batch_size: 64,
            gso: true,
            gro: true,
            send_queue_limit: 4096,
        }
    }
}

impl UdpConfig {
    /// A configuration bound to `addr`, other fields default.
    pub fn bound_to(addr: SocketAddr) -> Self {
        UdpConfig {
            bind_address: addr.ip(),
            bind_port: addr.port(),
            ..UdpConfig::default()
        }
    }

    /// The address to bind.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind_address, self.bind_port)
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), UdpConfigError> {
        if !(MIN_DATAGRAM_SIZE..=MAX_UDP_DATAGRAM_SIZE).contains(&self.max_packet_size) {
            return Err(UdpConfigError::MaxPacketSize(self.max_packet_size));
        }
        if self.batch_size == 0 || self.batch_size > 1024 {
            return Err(UdpConfigError::BatchSize(self.batch_size));
        }
        if self.send_queue_limit == 0 {
            return Err(UdpConfigError::SendQueue);
        }
        Ok(())
    }
}

/// A UDP configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UdpConfigError {
    /// `max_packet_size` out of range.
    #[error("max_packet_size {0} is out of range: use {MIN_DATAGRAM_SIZE}..={MAX_UDP_DATAGRAM_SIZE} (1472 for Ethernet, 8972 for jumbo frames, 512 for restrictive paths)")]
    MaxPacketSize(usize),
    /// `batch_size` out of range.
    #[error("batch_size {0} is out of range: use 1..=1024 (default 64)")]
    BatchSize(usize),
    /// `send_queue_limit` is zero.
    #[error("send_queue_limit must be at least 1")]
    SendQueue,
}

/// What the kernel granted when the sockets were set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct UdpSocketInfo {
    /// The bound address (with the port the system chose for port 0).
    pub local_addr: SocketAddr,
    /// `SO_RCVBUF` as the kernel reports it (it doubles what is asked, for
    /// bookkeeping, up to `net.core.rmem_max`).
    pub receive_buffer_size: usize,
    /// `SO_SNDBUF` as the kernel reports it.
    pub send_buffer_size: usize,
    /// GSO available.
    pub gso: bool,
    /// GRO enabled.
    pub gro: bool,
    /// Sockets in the `SO_REUSEPORT` group.
    pub sockets: usize,
    /// The session-id steering program is attached.
    pub steering: bool,
}

/// Binds one UDP socket as configured and wraps it in the configured
/// backend: a standalone transport, for use without a node (tests, custom
/// engines). Nodes bind one socket per reactor instead.
pub fn bind(config: &UdpConfig) -> Result<(Box<dyn Transport>, UdpSocketInfo), TransportError> {
    config.validate().map_err(|e| {
        TransportError::io(
            "invalid UDP config",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        )
    })?;
    let (mut sockets, info) = bind_group(config, 1)?;
    let socket = sockets
        .pop()
        .ok_or_else(|| TransportError::io("binding", std::io::Error::other("no socket")))?;
    Ok((open_backend(config, &info, socket)?, info))
}

/// Binds `count` sockets to the configured address, one per reactor.
///
/// With more than one, they form a `SO_REUSEPORT` group. A probe bind
/// without `SO_REUSEPORT` first makes sure the port is not shared with some
/// other process's group (which would silently split traffic), and picks
/// the port when 0 is asked.
pub(crate) fn bind_group(
    config: &UdpConfig,
    count: usize,
) -> Result<(Vec<Socket>, UdpSocketInfo), TransportError> {
    let count = count.max(1);
    let mut addr = config.bind_addr();
    let domain = Domain::for_address(addr);
    let map_bind_err = |addr: SocketAddr, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            TransportError::AddrInUse { addr }
        } else {
            TransportError::io(format!("binding UDP socket to {addr}"), e)
        }
    };
    if count > 1 {
        let probe =
            new_socket(domain, addr).map_err(|e| TransportError::io("creating UDP socket", e))?;
        probe
            .bind(&addr.into())
            .map_err(|e| map_bind_err(addr, e))?;
        let bound = probe
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| {
                TransportError::io(
                    "reading the bound address",
                    std::io::Error::other("not an IP address"),
                )
            })?;
        addr.set_port(bound.port());
        drop(probe);
    }
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let s =
            new_socket(domain, addr).map_err(|e| TransportError::io("creating UDP socket", e))?;
        if count > 1 {
            s.set_reuse_port(true)
                .map_err(|e| TransportError::io("setting SO_REUSEPORT", e))?;
        }
        // Best effort: the kernel caps both at its sysctl maximum, and what
        // it granted is read back and reported.
        let _ = s.set_recv_buffer_size(config.receive_buffer_size);
        let _ = s.set_send_buffer_size(config.send_buffer_size);
        // Best effort too: without it, path MTU probes may be fragmented
        // by IP and prove nothing (the session then stays at its base
        // size only if probes are lost).
        let _ = sys::set_dont_fragment(&s, addr.is_ipv6());
        s.bind(&addr.into()).map_err(|e| map_bind_err(addr, e))?;
        if addr.port() == 0 {
            if let Some(bound) = s.local_addr().ok().and_then(|a| a.as_socket()) {
                addr.set_port(bound.port());
            }
        }
        sockets.push(s);
    }
    let first = &sockets[0];
    let local_addr = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    let mut gro = false;
    if config.gro {
        gro = sockets.iter().all(|s| sys::enable_gro(s).is_ok());
    }
    let steering = count > 1 && sys::attach_reuseport_steering(first, count as u32).is_ok();
    let info = UdpSocketInfo {
        local_addr,
        receive_buffer_size: first.recv_buffer_size().unwrap_or(0),
        send_buffer_size: first.send_buffer_size().unwrap_or(0),
        gso: config.gso && sys::gso_supported(first),
        gro,
        sockets: count,
        steering,
    };
    Ok((sockets, info))
}

fn new_socket(domain: Domain, addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(
        domain,
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

/// Wraps a bound socket in the configured backend.
///
/// `Auto` picks the mio backend: it needs no kernel feature beyond
/// `sendmmsg`/`recvmmsg` (and none on the portable path), and a transport
/// built on it may move between threads, where an io_uring transport is
/// bound to the thread that drives it. io_uring stays one
/// `UdpBackend::IoUring` away, tested by the same suite; `stt-perf udp`
/// compares the two (`perf/RESULTS.md`).
pub(crate) fn open_backend(
    config: &UdpConfig,
    info: &UdpSocketInfo,
    socket: Socket,
) -> Result<Box<dyn Transport>, TransportError> {
    match config.backend {
        UdpBackend::Mio | UdpBackend::Auto => Ok(Box::new(MmsgUdp::new(config, info, socket)?)),
        #[cfg(not(target_os = "linux"))]
        UdpBackend::IoUring => Err(TransportError::io(
            "io_uring backend",
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "io_uring exists on Linux only: use UdpBackend::Auto or Mio",
            ),
        )),
        #[cfg(target_os = "linux")]
        UdpBackend::IoUring => {
            if !UringUdp::supported() {
                return Err(TransportError::io(
                    "io_uring backend",
                    std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "io_uring is not available here (kernel before 6.1, kernel.io_uring_disabled, or a seccomp filter): use UdpBackend::Auto or Mio",
                    ),
                ));
            }
            Ok(Box::new(UringUdp::new(config, info, socket)?))
        }
    }
}
