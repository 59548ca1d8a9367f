//! Whether this kernel can run the io_uring backend.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use io_uring::{opcode, IoUring};
use socket2::{Domain, Protocol, Socket, Type};

use super::UringUdp;
use crate::transport::udp::{UdpConfig, UdpSocketInfo};
use crate::transport::Transport;

/// The probe behind [`UringUdp::supported`].
pub(super) fn probe() -> io::Result<()> {
    let unsupported = |what: &str| io::Error::new(io::ErrorKind::Unsupported, what.to_string());
    {
        let ring = IoUring::new(8)?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err(unsupported("io_uring without EXT_ARG/NODROP"));
        }
        let mut p = io_uring::Probe::new();
        ring.submitter().register_probe(&mut p)?;
        for code in [
            opcode::RecvMsg::CODE,
            opcode::Send::CODE,
            opcode::SendMsg::CODE,
            opcode::AsyncCancel::CODE,
            opcode::Nop::CODE,
        ] {
            if !p.is_supported(code) {
                return Err(unsupported("io_uring opcode missing"));
            }
        }
    }
    // Multishot receive into provided buffers, `Send` with a destination
    // address (Linux 6.0) and a `SINGLE_ISSUER | DEFER_TASKRUN` ring (6.1)
    // are kernel behaviour, not opcodes: try them on a loopback socket
    // sending to itself.
    let socket = Socket::new(
        Domain::IPV4,
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    let bound = socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .is_ok();
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let config = UdpConfig {
        batch_size: 4,
        ..UdpConfig::default()
    };
    let info = UdpSocketInfo {
        local_addr: local,
        receive_buffer_size: 0,
        send_buffer_size: 0,
        gso: false,
        gro: false,
        sockets: 1,
        steering: false,
    };
    let mut t = UringUdp::new(&config, &info, socket).map_err(io::Error::from)?;
    if !bound {
        // No loopback: enough that the ring, its registrations and the
        // receive are accepted.
        t.recv(&mut |_, _| {})?;
        return Ok(());
    }
    const PING: &[u8] = b"stt io_uring probe";
    t.send(local, PING).map_err(io::Error::from)?;
    t.flush()?;
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut got = false;
    while Instant::now() < deadline {
        t.recv(&mut |from, d| got |= from == local && d == PING)?;
        let c = t.counters.snapshot();
        if c.errors_receive > 0 || c.errors_send > 0 {
            return Err(unsupported("io_uring multishot receive failed"));
        }
        if got && c.packets_sent == 1 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(unsupported("io_uring multishot receive did not complete"))
}
