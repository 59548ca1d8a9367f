//! The portable fallback: one `sendto`/`recvfrom` per datagram through
//! socket2, for systems without `sendmmsg`/`recvmmsg`, GSO, GRO or the
//! Linux steering program. Slower per datagram, same behaviour.
//!
//! Allowed `unsafe` for one cast (see `as_uninit`).
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use socket2::SockRef;

use super::OutMsg;

/// Sends `msgs` one `sendto` each. Returns how many were sent; an error
/// only when the first one fails. A GSO run (`segment_size`) is refused with
/// `EINVAL`, as a kernel without GSO does, so the caller sends singles.
pub(crate) fn sendmmsg(socket: &impl AsFd, msgs: &[OutMsg<'_>]) -> io::Result<usize> {
    let socket = SockRef::from(socket);
    for (i, m) in msgs.iter().enumerate() {
        let result = if m.segment_size.is_some() {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        } else {
            send_one(&socket, m)
        };
        if let Err(e) = result {
            return if i == 0 { Err(e) } else { Ok(i) };
        }
    }
    Ok(msgs.len())
}

fn send_one(socket: &SockRef<'_>, m: &OutMsg<'_>) -> io::Result<usize> {
    loop {
        match socket.send_to(m.data, &m.to.into()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Receive slots: one buffer each, one byte longer than the slot so that a
/// datagram larger than the slot is seen as cut.
pub(crate) struct RecvSlots {
    slot_size: usize,
    bufs: Vec<u8>,
    got: Vec<(usize, Option<SocketAddr>)>,
}

/// One received datagram.
pub(crate) struct Received<'a> {
    pub from: Option<SocketAddr>,
    pub data: &'a mut [u8],
    /// Always `None` here (no GRO).
    pub segment_size: Option<u16>,
    /// The datagram was larger than the slot and was cut.
    pub truncated: bool,
}

impl RecvSlots {
    pub(crate) fn new(count: usize, slot_size: usize) -> Self {
        let count = count.max(1);
        RecvSlots {
            slot_size,
            bufs: vec![0u8; count * (slot_size + 1)],
            got: Vec::with_capacity(count),
        }
    }

    /// Receives up to the number of slots, one `recvfrom` each, without
    /// blocking (the socket is non-blocking). `Ok(0)` when nothing is
    /// waiting; an error only when the first receive fails.
    pub(crate) fn recvmmsg(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        let socket = SockRef::from(socket);
        self.got.clear();
        for buf in self.bufs.chunks_mut(self.slot_size + 1) {
            let received = loop {
                match socket.recv_from(as_uninit(buf)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            match received {
                Ok((n, from)) => self.got.push((n, from.as_socket())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if self.got.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(self.got.len())
    }

    /// Datagram `i` of the last [`recvmmsg`](Self::recvmmsg).
    pub(crate) fn get(&mut self, i: usize) -> Received<'_> {
        let (n, from) = self.got[i];
        let start = i * (self.slot_size + 1);
        let len = n.min(self.slot_size);
        Received {
            from,
            data: &mut self.bufs[start..start + len],
            segment_size: None,
            truncated: n > self.slot_size,
        }
    }
}

/// `buf` as the `MaybeUninit` slice socket2's receive functions take.
fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the bytes are
    // initialised; socket2 only writes initialised bytes into the slice, so
    // nothing uninitialised is ever read back through `buf`.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// Don't Fragment is not set on this system: path MTU discovery then only
/// finds what the local stack sends without error.
pub(crate) fn set_dont_fragment(_socket: &impl AsFd, _ipv6: bool) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// No GRO here.
pub(crate) fn enable_gro(_socket: &impl AsFd) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// No GSO here.
pub(crate) fn gso_supported(_socket: &impl AsFd) -> bool {
    false
}

/// No steering program here: reactors forward misrouted datagrams.
pub(crate) fn attach_reuseport_steering(_socket: &impl AsFd, _group_size: u32) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_and_receive_on_loopback() {
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
                assert!(!r.truncated);
                got += 1;
            }
            if got == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(got, 5);
    }

    #[test]
    fn a_datagram_larger_than_the_slot_is_cut_and_marked() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        a.send_to(&[7u8; 300], b.local_addr().unwrap()).unwrap();
        let mut slots = RecvSlots::new(2, 200);
        for _ in 0..1000 {
            if slots.recvmmsg(&b).unwrap() == 1 {
                let r = slots.get(0);
                assert!(r.truncated);
                assert_eq!(r.data.len(), 200);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("the datagram never arrived");
    }

    #[test]
    fn a_gso_run_is_refused_so_the_caller_sends_singles() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let run = [0u8; 200];
        let msgs = [OutMsg {
            to: a.local_addr().unwrap(),
            data: &run,
            segment_size: Some(100),
        }];
        let e = sendmmsg(&a, &msgs).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert!(!gso_supported(&a));
        assert!(enable_gro(&a).is_err());
    }
}
