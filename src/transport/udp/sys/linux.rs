//! Linux: `sendmmsg`/`recvmmsg` with GSO (`UDP_SEGMENT`) and GRO (`UDP_GRO`)
//! control messages, and the `SO_ATTACH_REUSEPORT_CBPF` steering program.
//!
//! One of the modules allowed `unsafe` (with the portable fallback and the
//! io_uring backend). Every block says why it is sound. The structures handed
//! to the kernel (`mmsghdr`, `iovec`, addresses, control buffers) are rebuilt
//! for each call from vectors that outlive it, so no pointer outlives its
//! target.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use super::OutMsg;

/// Space for one control message carrying a `u16`/`i32` (GSO or GRO size).
const CMSG_SPACE: usize = 32;

/// Converts a socket address into a `sockaddr_storage` and its length.
pub(crate) fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in; we write one sockaddr_in at its start.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Reads a socket address the kernel wrote into `storage`.
pub(crate) fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends up to `msgs.len()` messages with one `sendmmsg`. Returns how many
/// the kernel took (the rest were not sent: retry them, or drop them if the
/// first one failed with a per-message error).
pub(crate) fn sendmmsg(socket: &impl AsFd, msgs: &[OutMsg<'_>]) -> io::Result<usize> {
    let fd = socket.as_fd().as_raw_fd();
    if msgs.is_empty() {
        return Ok(0);
    }
    let n = msgs.len();
    let mut addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
        msgs.iter().map(|m| to_sockaddr(&m.to)).collect();
    let mut iovecs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.data.as_ptr() as *mut libc::c_void,
            iov_len: m.data.len(),
        })
        .collect();
    let mut cmsgs = vec![[0u64; CMSG_SPACE / 8]; n];
    // SAFETY: mmsghdr is plain old data; all-zero is valid.
    let mut hdrs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { mem::zeroed() }).collect();
    for i in 0..n {
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = &mut addrs[i].0 as *mut _ as *mut libc::c_void;
        h.msg_namelen = addrs[i].1;
        h.msg_iov = &mut iovecs[i];
        h.msg_iovlen = 1;
        if let Some(seg) = msgs[i].segment_size {
            h.msg_control = cmsgs[i].as_mut_ptr() as *mut libc::c_void;
            // SAFETY: CMSG_SPACE(2) fits in the 32-byte, 8-aligned buffer.
            h.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
            // SAFETY: msg_control points at a buffer of msg_controllen bytes,
            // large enough for one header, so CMSG_FIRSTHDR is non-null and
            // the data area holds a u16.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
            }
        }
    }
    loop {
        // SAFETY: every pointer in `hdrs` points into `addrs`, `iovecs`,
        // `cmsgs` or the callers' data slices, all alive until this returns;
        // the lengths match the buffers.
        let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive slots for `recvmmsg`: one buffer, address and control area each.
pub(crate) struct RecvSlots {
    slot_size: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_SPACE / 8]>,
    lens: Vec<usize>,
    flags: Vec<libc::c_int>,
    gro: Vec<Option<u16>>,
}

/// One received datagram, or a GRO run of same-size datagrams.
pub(crate) struct Received<'a> {
    pub from: Option<SocketAddr>,
    pub data: &'a mut [u8],
    /// With GRO: `data` holds segments of this size (the last may be shorter).
    pub segment_size: Option<u16>,
    /// The datagram was larger than the slot and was cut.
    pub truncated: bool,
}

impl RecvSlots {
    pub(crate) fn new(count: usize, slot_size: usize) -> Self {
        let count = count.max(1);
        RecvSlots {
            slot_size,
            bufs: vec![0u8; count * slot_size],
            // SAFETY: sockaddr_storage is plain old data; zero is valid.
            addrs: (0..count).map(|_| unsafe { mem::zeroed() }).collect(),
            cmsgs: vec![[0u64; CMSG_SPACE / 8]; count],
            lens: vec![0; count],
            flags: vec![0; count],
            gro: vec![None; count],
        }
    }

    /// Receives up to the number of slots with one `recvmmsg`, without
    /// blocking. `Ok(0)` when nothing is waiting.
    pub(crate) fn recvmmsg(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        let fd = socket.as_fd().as_raw_fd();
        let n = self.addrs.len();
        let mut iovecs: Vec<libc::iovec> = self
            .bufs
            .chunks_mut(self.slot_size)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; zero is valid.
        let mut hdrs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { mem::zeroed() }).collect();
        for i in 0..n {
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = CMSG_SPACE as _;
        }
        let r = loop {
            // SAFETY: the headers point into `self.addrs`, `iovecs` (which
            // point into `self.bufs`) and `self.cmsgs`, all alive and sized
            // as declared for the duration of the call.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        };
        for (i, h) in hdrs.iter().enumerate().take(r) {
            self.lens[i] = h.msg_len as usize;
            self.flags[i] = h.msg_hdr.msg_flags;
            self.gro[i] = None;
            // SAFETY: the kernel filled msg_control/msg_controllen; the
            // CMSG_* macros walk only within that area.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                        let size =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                        self.gro[i] = u16::try_from(size).ok();
                    }
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
        }
        Ok(r)
    }

    /// Datagram `i` of the last [`recvmmsg`](Self::recvmmsg).
    pub(crate) fn get(&mut self, i: usize) -> Received<'_> {
        let start = i * self.slot_size;
        let len = self.lens[i].min(self.slot_size);
        Received {
            from: from_sockaddr(&self.addrs[i]),
            data: &mut self.bufs[start..start + len],
            segment_size: self.gro[i],
            truncated: self.flags[i] & libc::MSG_TRUNC != 0,
        }
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Turns on UDP generic receive offload: the kernel may hand several
/// datagrams from one peer as one buffer with a `UDP_GRO` control message.
pub(crate) fn enable_gro(socket: &impl AsFd) -> io::Result<()> {
    setsockopt_int(socket.as_fd().as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Sets the Don't Fragment bit on every datagram without letting the
/// kernel's path MTU cache refuse sends (`IP_PMTUDISC_PROBE`, and its IPv6
/// twin): the sessions' own path MTU discovery probes with real datagrams
/// and learns from their acknowledgement, and no datagram is ever split by
/// IP on the way.
pub(crate) fn set_dont_fragment(socket: &impl AsFd, ipv6: bool) -> io::Result<()> {
    let fd = socket.as_fd().as_raw_fd();
    if ipv6 {
        setsockopt_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        setsockopt_int(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    }
}

/// Whether the kernel supports UDP generic segmentation offload on this
/// socket (`UDP_SEGMENT` readable).
pub(crate) fn gso_supported(socket: &impl AsFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a live c_int and its size for the kernel to fill.
    let r = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &mut value as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    r == 0
}

/// Attaches a classic BPF program to a `SO_REUSEPORT` group that steers each
/// datagram to socket `session_id_low_byte % group_size`, so that every
/// datagram of a session reaches the reactor that owns it, whatever address
/// it comes from. The low byte of the session id is at payload offset 12
/// (header bytes 5..13, big-endian). Too-short datagrams make the program
/// fail its load and fall back to the kernel's hash.
pub(crate) fn attach_reuseport_steering(socket: &impl AsFd, group_size: u32) -> io::Result<()> {
    let mut program = [
        // A = payload[12]
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 12,
        },
        // A %= group_size
        libc::sock_filter {
            code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: group_size.max(1),
        },
        // return A
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: passes a live sock_fprog pointing at a live 3-instruction
    // program; the kernel copies it during the call.
    let r = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &fprog as *const _ as *const libc::c_void,
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dont_fragment_is_set_for_both_families() {
        let read = |fd: RawFd, level, name| {
            let mut value: libc::c_int = -1;
            let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a live c_int and its size for the kernel to fill.
            let r = unsafe {
                libc::getsockopt(
                    fd,
                    level,
                    name,
                    &mut value as *mut _ as *mut libc::c_void,
                    &mut len,
                )
            };
            assert_eq!(r, 0);
            value
        };
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_dont_fragment(&v4, false).unwrap();
        let got = read(v4.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER);
        assert_eq!(got, libc::IP_PMTUDISC_PROBE);
        if let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") {
            set_dont_fragment(&v6, true).unwrap();
            let got = read(v6.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER);
            assert_eq!(got, libc::IPV6_PMTUDISC_PROBE);
        }
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in [
            "127.0.0.1:4242".parse::<SocketAddr>().unwrap(),
            "[::1]:9".parse().unwrap(),
            "[fe80::1%3]:65535".parse().unwrap(),
        ] {
            let (s, _) = to_sockaddr(&a);
            assert_eq!(from_sockaddr(&s), Some(a));
        }
    }

    #[test]
    fn sendmmsg_and_recvmmsg_on_loopback() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + i as usize]).collect();
        let msgs: Vec<OutMsg<'_>> = payloads
            .iter()
            .map(|p| OutMsg {
                to,
                data: p,
                segment_size: None,
            })
            .collect();
        assert_eq!(sendmmsg(&a, &msgs).unwrap(), 5);
        let mut slots = RecvSlots::new(8, 2048);
        let mut got = 0;
        for _ in 0..1000 {
            let n = slots.recvmmsg(&b).unwrap();
            for i in 0..n {
                let r = slots.get(i);
                assert_eq!(r.from, Some(a.local_addr().unwrap()));
                assert_eq!(r.data, &payloads[got][..]);
                got += 1;
            }
            if got == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(got, 5);
    }
}
