//! The receive side: a multishot `RecvMsg` over a ring of provided buffers.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::ptr;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::RecvMsgOut;
use io_uring::{cqueue, opcode, IoUring};

use super::{
    page_size, Cqe, OnDatagram, Region, UringUdp, BUF_GROUP, CONTROL_LEN, NAME_LEN,
    RECVMSG_OUT_LEN, SOCKET, UD_RECV,
};
use crate::transport::udp::mmsg::deliver_segments;
use crate::transport::udp::sys::from_sockaddr;
use crate::transport::TransportCounters;

impl UringUdp {
    /// Pushes the multishot receive and submits it.
    pub(super) fn arm_recv(&mut self) -> io::Result<()> {
        self.recv.publish();
        let sqe = opcode::RecvMsgMulti::new(SOCKET, &*self.recv.msghdr, BUF_GROUP)
            .build()
            .user_data(UD_RECV);
        // SAFETY: the entry points at `self.recv.msghdr` (boxed, alive until
        // `Drop` has seen this request's last completion) and selects
        // buffers from group 0, whose memory lives as long; the socket is
        // the ring's fixed file 0, held by the ring itself.
        unsafe { self.push_owned(&sqe)? };
        self.recv_armed = true;
        self.submit()
    }

    /// Handles one receive completion: delivers its datagrams (when there
    /// is somewhere to deliver them) and gives its buffer back.
    pub(super) fn complete_recv(&mut self, c: Cqe, on: Option<&mut OnDatagram<'_>>) -> usize {
        let bid = cqueue::buffer_select(c.flags).filter(|&b| b < self.recv.count);
        let mut n = 0;
        if c.result < 0 {
            match -c.result {
                // Out of buffers (re-armed; the datagrams wait in the socket)
                // or cancelled at drop: nothing was lost.
                libc::ENOBUFS | libc::ECANCELED => {}
                // Anything else, including the ICMP errors a UDP socket
                // reports for an earlier datagram: counted, re-armed.
                _ => TransportCounters::add(&self.counters.errors_receive, 1),
            }
        } else if let (Some(bid), Some(on)) = (bid, on) {
            n = self.deliver_buffer(bid, c.result as usize, on);
        }
        if let Some(bid) = bid {
            self.recv.recycle(bid);
        }
        n
    }

    /// Parses buffer `bid` (`len` bytes written by the kernel) and hands
    /// its datagrams to `on`.
    pub(super) fn deliver_buffer(
        &mut self,
        bid: u16,
        len: usize,
        on: &mut OnDatagram<'_>,
    ) -> usize {
        // SAFETY: the completion just reaped named `bid`: the kernel has
        // handed this buffer back and will not touch it until `recycle`
        // publishes it again, after this function returns. No other
        // reference to it exists.
        let buf = unsafe { self.recv.buffer_mut(bid) };
        let len = len.min(buf.len());
        let parsed = RecvMsgOut::parse(&buf[..len], &self.recv.msghdr)
            .ok()
            .map(|out| {
                let start = out.payload_data().as_ptr() as usize - buf.as_ptr() as usize;
                (
                    sockaddr_from_bytes(out.name_data()),
                    start..start + out.payload_data().len(),
                    out.is_payload_truncated()
                        || out.is_control_data_truncated()
                        || out.is_name_data_truncated(),
                    gro_segment(out.control_data()),
                )
            });
        match parsed {
            Some((Some(from), payload, false, segment)) => {
                deliver_segments(&self.counters, from, &mut buf[payload], segment, on)
            }
            _ => {
                TransportCounters::add(&self.counters.packets_dropped, 1);
                0
            }
        }
    }
}

/// Reads the source address the kernel wrote into a receive buffer.
pub(super) fn sockaddr_from_bytes(name: &[u8]) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = name.len().min(NAME_LEN);
    // SAFETY: copies `len` ≤ size_of::<sockaddr_storage>() bytes from a
    // live slice into the local storage; the regions do not overlap.
    unsafe {
        ptr::copy_nonoverlapping(
            name.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        )
    };
    from_sockaddr(&storage)
}

/// The segment size of a GRO run, from the control messages of a receive.
pub(super) fn gro_segment(control: &[u8]) -> Option<u16> {
    #[repr(C, align(8))]
    struct Aligned([u8; CONTROL_LEN]);
    if control.is_empty() {
        return None;
    }
    let len = control.len().min(CONTROL_LEN);
    let mut buf = Aligned([0; CONTROL_LEN]);
    buf.0[..len].copy_from_slice(&control[..len]);
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    hdr.msg_controllen = len as _;
    let mut segment = None;
    // SAFETY: msg_control points at `len` bytes of the local, 8-aligned
    // copy; the CMSG_* macros only walk within msg_controllen, and the data
    // is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let size = ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                segment = u16::try_from(size).ok();
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    segment
}

/// The receive side: provided buffers and the ring that lends them to the
/// kernel. See the [module docs](self) for who owns a buffer when.
pub(super) struct RecvRing {
    /// `count` `io_uring_buf` entries, page-aligned; entry 0's last field is
    /// the ring's tail.
    pub(super) entries: Region,
    /// `count` buffers of `size` bytes.
    pub(super) bufs: Region,
    pub(super) count: u16,
    pub(super) size: usize,
    /// The tail we publish next (buffers given back since).
    pub(super) tail: u16,
    /// The multishot receive's template: name and control room per buffer.
    pub(super) msghdr: Box<libc::msghdr>,
}

/// `struct io_uring_buf`.
#[repr(C)]
pub(super) struct BufEntry {
    pub(super) addr: u64,
    pub(super) len: u32,
    pub(super) bid: u16,
    /// In entry 0: the ring's tail.
    pub(super) resv: u16,
}

const _: () = assert!(mem::size_of::<BufEntry>() == 16);

impl RecvRing {
    /// Allocates `count` (a power of two) buffers with `payload` bytes of
    /// room after the header, name and control areas.
    pub(super) fn new(count: u16, payload: usize) -> io::Result<Self> {
        debug_assert!(count.is_power_of_two());
        let size = (RECVMSG_OUT_LEN + NAME_LEN + CONTROL_LEN + payload).next_multiple_of(64);
        let page = page_size();
        let entries = Region::zeroed(
            (usize::from(count) * mem::size_of::<BufEntry>()).next_multiple_of(page),
            page,
        )?;
        let bufs = Region::zeroed(usize::from(count) * size, page)?;
        // SAFETY: msghdr is plain old data; all-zero is valid (no iovec:
        // the kernel picks a provided buffer).
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { mem::zeroed() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        msghdr.msg_controllen = CONTROL_LEN as _;
        Ok(RecvRing {
            entries,
            bufs,
            count,
            size,
            tail: 0,
            msghdr,
        })
    }

    /// Registers the ring as buffer group 0 of `ring` and hands the kernel
    /// every buffer.
    pub(super) fn register(&mut self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: `entries` is a page-aligned, zeroed allocation of `count`
        // entries owned by `self`; `UringUdp` keeps it alive until the ring
        // has no request left (see `Drop`) and unregisters it before it is
        // freed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.ptr.as_ptr() as u64,
                self.count,
                BUF_GROUP,
                0,
            )?;
        }
        for bid in 0..self.count {
            self.recycle(bid);
        }
        self.publish();
        Ok(())
    }

    /// Buffer `bid`, whole.
    ///
    /// # Safety
    ///
    /// The kernel must have handed `bid` back (a completion named it) and it
    /// must not have been recycled since; no other reference to it may live.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn buffer_mut(&self, bid: u16) -> &mut [u8] {
        debug_assert!(bid < self.count);
        // SAFETY: `bid < count`, so the range lies within `bufs`; exclusive
        // access is the caller's promise.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.bufs.ptr.as_ptr().add(usize::from(bid) * self.size),
                self.size,
            )
        }
    }

    /// Writes buffer `bid` back into the ring (seen by the kernel at the
    /// next `publish`).
    pub(super) fn recycle(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.bufs.ptr.as_ptr() as u64 + (usize::from(bid) * self.size) as u64;
        // SAFETY: `index < count`, inside `entries`. The slot is past the
        // published tail, so the kernel does not read it until we publish;
        // we write its fields one by one through raw pointers and never
        // touch `resv` (the tail, in entry 0).
        unsafe {
            let e = self.entries.ptr.as_ptr().cast::<BufEntry>().add(index);
            ptr::addr_of_mut!((*e).addr).write(addr);
            ptr::addr_of_mut!((*e).len).write(self.size as u32);
            ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the recycled buffers to the kernel (a release store of the
    /// tail, which the kernel reads with acquire).
    pub(super) fn publish(&self) {
        // SAFETY: entry 0's `resv` is the ring tail, a u16 the kernel reads
        // concurrently; it is 2-aligned and only accessed atomically here.
        let tail = unsafe {
            let e = self.entries.ptr.as_ptr().cast::<BufEntry>();
            AtomicU16::from_ptr(ptr::addr_of_mut!((*e).resv))
        };
        tail.store(self.tail, Ordering::Release);
    }

    /// Never frees the memory (the kernel may still use it).
    pub(super) fn leak(&mut self) {
        self.entries.leaked = true;
        self.bufs.leaked = true;
        // SAFETY: plain old data; all-zero is valid.
        let spare = Box::new(unsafe { mem::zeroed::<libc::msghdr>() });
        Box::leak(mem::replace(&mut self.msghdr, spare));
    }
}
