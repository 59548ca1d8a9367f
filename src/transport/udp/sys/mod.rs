//! The operating-system boundary of the UDP transport.
//!
//! Everything above this module (the configuration, socket set-up and the
//! mio backend in `mmsg`) is portable; everything specific to one system sits
//! below it, chosen here once with `cfg`. Each implementation provides:
//!
//! - [`OutMsg`] batches sent by `sendmmsg(socket, msgs)`, which returns how
//!   many messages were taken (an error only when the first one failed;
//!   `EIO`/`EINVAL` for a message with `segment_size` means "no GSO here");
//! - `RecvSlots::new(count, slot_size)`, whose `recvmmsg(socket)` receives up
//!   to `count` datagrams without blocking (`Ok(0)` when none waits) and whose
//!   `get(i)` yields a `Received` (source, bytes, GRO segment size, and
//!   whether the datagram was cut to the slot);
//! - `enable_gro`, `gso_supported` and `attach_reuseport_steering`, which
//!   fail or answer `false` where the system lacks the feature; socket set-up
//!   then reports it in `UdpSocketInfo` and goes on without it.
//!
//! Implementations:
//!
//! - `linux` (`target_os = "linux"`): `sendmmsg`/`recvmmsg` with GSO
//!   (`UDP_SEGMENT`) and GRO (`UDP_GRO`), and the `SO_REUSEPORT` steering
//!   program. The io_uring backend (`super::uring`) is Linux-only too, and
//!   uses this module's socket-address conversions.
//! - `portable` (every other Unix): one `sendto`/`recvfrom` per datagram
//!   through socket2, no GSO, no GRO, no steering (reactors forward misrouted
//!   datagrams instead). On Linux it is compiled for its tests only, so that
//!   the fallback is exercised here too.

use std::net::SocketAddr;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

// Built on Linux for its own tests; its items are used there by them alone.
#[cfg(any(not(target_os = "linux"), test))]
#[cfg_attr(all(target_os = "linux", test), allow(dead_code))]
mod portable;
#[cfg(not(target_os = "linux"))]
pub(crate) use portable::*;

/// A datagram (or a GSO run of equal-size datagrams) to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutMsg<'a> {
    pub to: SocketAddr,
    pub data: &'a [u8],
    /// With GSO: the kernel splits `data` into segments of this size.
    pub segment_size: Option<u16>,
}
