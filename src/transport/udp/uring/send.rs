//! The send side: `SendMsg` entries from fixed slots, the queue's buffer lent
//! to the kernel when a flush takes it whole.

use std::cell::UnsafeCell;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr};
use std::ptr;

use io_uring::{opcode, squeue};

use super::{Sink, UringUdp, CONTROL_LEN, FLUSH_ROUNDS, SOCKET, UD_NOP};
use crate::transport::udp::mmsg::{Entry, SendQueue};
use crate::transport::udp::sys::to_sockaddr;
use crate::transport::TransportCounters;

impl UringUdp {
    /// Handles the completion of send slot `slot`: counts it, retries what
    /// must be retried, frees the slot.
    pub(super) fn complete_send(&mut self, slot: u64, result: i32, requeued: &mut usize) {
        let Some(cell) = self.sends.slots.get(slot as usize) else {
            debug_assert!(false, "completion for unknown send slot {slot}");
            return;
        };
        // SAFETY: this is the slot's completion: the kernel is done reading
        // it and no queued entry points at it until it is filled again.
        let s = unsafe { &mut *cell.get() };
        let count = u64::from(s.count);
        if result >= 0 {
            TransportCounters::add(&self.counters.packets_sent, count);
            TransportCounters::add(&self.counters.bytes_sent, s.len as u64);
        } else {
            let errno = -result;
            // The route cannot segment: send singles from now on, as the
            // mmsg backend does.
            let split = matches!(errno, libc::EIO | libc::EINVAL) && s.count > 1;
            if split || errno == libc::EAGAIN {
                // (No room now, `EAGAIN`: the kernel normally waits for
                // room itself.) Send it again, first.
                self.gso &= !split;
                let bytes = s.bytes(&self.sends.lent);
                requeue_front(
                    &mut self.queue,
                    requeued,
                    s.to,
                    bytes,
                    s.segment,
                    s.count,
                    split,
                );
            } else if errno == libc::ECANCELED {
                TransportCounters::add(&self.counters.packets_dropped, count);
            } else {
                TransportCounters::add(&self.counters.errors_send, count);
            }
        }
        if let Some(i) = s.lent.take() {
            self.sends.release(i);
        }
        self.sends.free.push(slot as u16);
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Submits the queued datagrams as `Send`/`SendMsg` entries (see
    /// [`Transport::flush`](crate::transport::Transport::flush)), in rounds
    /// while more wait than there are free slots: the kernel completes a
    /// UDP send that finds room in the socket buffer during the submit, so
    /// reaping frees the slots for the next round. A round that frees none
    /// (every send waits for room) ends the flush; the rest stays queued.
    pub(super) fn flush_sends(&mut self) -> io::Result<()> {
        for _ in 0..FLUSH_ROUNDS {
            let taken = self.flush_round()?;
            if taken == 0 || self.queue.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// One round of [`flush_sends`](Self::flush_sends): pushes what fits in
    /// the free slots and submits; returns the entries taken.
    fn flush_round(&mut self) -> io::Result<usize> {
        let leftover = !self.ring.submission().is_empty();
        if self.queue.is_empty() && !leftover {
            return Ok(0);
        }
        let stashed = self.stash.len();
        if self.sends.free.len() < self.queue.pending().len() {
            self.reap(&mut Sink::Stash);
        }
        let pending = self.queue.pending().len();
        let mut taken = 0;
        let mut pushed = 0;
        let mut sq = self.ring.submission();
        // The queue's buffer itself is lent to the kernel, and the queue
        // starts a fresh one, when at least half the pending entries get a
        // slot now (the usual case: all of them): no copy for those, and
        // the rest, if any, is copied back into the fresh buffer. Otherwise
        // each slot copies its bytes.
        let room = self
            .sends
            .free
            .len()
            .min((sq.capacity() - sq.len()).saturating_sub(1));
        let lend = pending > 0 && room > 0 && 2 * room >= pending;
        let lent = if lend {
            let spare = mem::take(&mut self.sends.spare);
            match self.sends.lend(mem::replace(&mut self.queue.buf, spare)) {
                Ok(i) => Some(i),
                Err(buf) => {
                    self.sends.spare = mem::replace(&mut self.queue.buf, buf);
                    None
                }
            }
        } else {
            None
        };
        {
            let buf: &[u8] = match lent {
                Some(i) => &self.sends.lent[usize::from(i)].buf,
                None => &self.queue.buf,
            };
            for e in self.queue.pending() {
                if sq.is_full() {
                    break;
                }
                let Some(slot) = self.sends.free.pop() else {
                    break;
                };
                let sqe = self
                    .sends
                    .fill(usize::from(slot), e, buf, lent)
                    .user_data(u64::from(slot));
                // SAFETY: everything the entry points at (address, message
                // header, iovec, control message) lives in send slot
                // `slot`, and the bytes in its own copy or in lent buffer
                // `lent`. The slot
                // stays allocated, unmoved and unwritten until the
                // completion carrying this `user_data` is reaped
                // (`complete_send`), and a lent buffer is not touched until
                // its last slot's completion (`SendSlots::release`); `Drop`
                // waits for every completion before freeing either.
                if unsafe { sq.push(&sqe) }.is_err() {
                    self.sends.free.push(slot);
                    break;
                }
                taken += 1;
            }
        }
        pushed += taken;
        if self.stash.len() > stashed {
            // Receive completions were reaped here and wait for `recv`: a
            // completion posted after this keeps the edge-triggered poll
            // from sleeping on them.
            let nop = opcode::Nop::new().build().user_data(UD_NOP);
            // SAFETY: a `Nop` points at no memory.
            if unsafe { sq.push(&nop) }.is_ok() {
                pushed += 1;
            }
        }
        drop(sq);
        self.in_flight += pushed;
        if let Some(i) = lent {
            self.sends.lent[usize::from(i)].refs = taken as u32;
            if taken < pending {
                // The unsent entries' bytes are in the lent buffer: copy
                // them back into the queue.
                let rest: Vec<Entry> = self.queue.pending()[taken..].to_vec();
                self.queue.advance(pending);
                let lent_buf = &self.sends.lent[usize::from(i)].buf;
                for e in rest {
                    let start = self.queue.buf.len();
                    self.queue
                        .buf
                        .extend_from_slice(&lent_buf[e.start..e.start + e.len]);
                    self.queue.entries.push(Entry { start, ..e });
                    self.queue.datagrams += e.count as usize;
                }
                if taken == 0 {
                    self.sends.lent[usize::from(i)].refs = 1;
                    self.sends.release(i);
                }
            } else {
                self.queue.advance(taken);
            }
        } else {
            self.queue.advance(taken);
            self.queue.compact();
        }
        if pushed > 0 || leftover {
            self.submit()?;
        }
        Ok(taken)
    }
}

/// Puts a datagram (or GSO run) whose send must be retried back at the
/// front of `queue`, after the `requeued` ones already put back by this
/// reaping; `split` sends a GSO run as single datagrams.
pub(super) fn requeue_front(
    queue: &mut SendQueue,
    requeued: &mut usize,
    to: SocketAddr,
    data: &[u8],
    segment: usize,
    count: u32,
    split: bool,
) {
    let base = queue.buf.len();
    queue.buf.extend_from_slice(data);
    let segment = segment.max(1);
    let mut entries = Vec::new();
    if split && count > 1 {
        let mut offset = 0;
        while offset < data.len() {
            let len = segment.min(data.len() - offset);
            entries.push(Entry {
                to,
                start: base + offset,
                len,
                segment: len,
                count: 1,
                closed: true,
            });
            offset += len;
        }
    } else {
        entries.push(Entry {
            to,
            start: base,
            len: data.len(),
            segment,
            count,
            closed: true,
        });
    }
    let at = queue.head + *requeued;
    *requeued += entries.len();
    queue.datagrams += entries.iter().map(|e| e.count as usize).sum::<usize>();
    queue.entries.splice(at..at, entries);
}

/// One send in flight: the kernel reads all of it until the completion.
pub(super) struct SendSlot {
    pub(super) hdr: libc::msghdr,
    pub(super) iov: libc::iovec,
    pub(super) addr: libc::sockaddr_storage,
    pub(super) control: [u64; CONTROL_LEN / 8],
    /// A copy of the datagram (or GSO run), when it is not lent.
    pub(super) data: Vec<u8>,
    /// The lent queue buffer (`SendSlots::lent`) holding the bytes, at
    /// `start..start + len`.
    pub(super) lent: Option<u16>,
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) to: SocketAddr,
    pub(super) segment: usize,
    pub(super) count: u32,
}

impl SendSlot {
    /// The bytes this slot sends.
    pub(super) fn bytes<'a>(&'a self, lent: &'a [Lent]) -> &'a [u8] {
        match self.lent {
            Some(i) => &lent[usize::from(i)].buf[self.start..self.start + self.len],
            None => &self.data,
        }
    }
}

/// A send queue buffer lent to the kernel whole: the slots of one flush
/// point into it. It is not touched (so its heap memory neither moves nor
/// changes) until the last of them completes.
#[derive(Default)]
pub(super) struct Lent {
    pub(super) buf: Vec<u8>,
    /// Slots in flight that point into `buf`.
    pub(super) refs: u32,
}

/// The send slots and which are free. See the [module docs](self).
pub(super) struct SendSlots {
    /// Never grown, shrunk or moved after construction.
    pub(super) slots: Box<[UnsafeCell<SendSlot>]>,
    /// Indices of the free slots (capacity reserved for all).
    pub(super) free: Vec<u16>,
    /// Lent queue buffers, one per slot at most (each holds a slot).
    pub(super) lent: Box<[Lent]>,
    /// Indices of the unused `lent` entries.
    pub(super) lent_free: Vec<u16>,
    /// An emptied lent buffer, kept to become the next queue buffer.
    pub(super) spare: Vec<u8>,
}

impl SendSlots {
    pub(super) fn new(count: usize) -> Self {
        let slots = (0..count)
            .map(|_| {
                UnsafeCell::new(SendSlot {
                    // SAFETY: plain old data; all-zero is valid.
                    hdr: unsafe { mem::zeroed() },
                    iov: libc::iovec {
                        iov_base: ptr::null_mut(),
                        iov_len: 0,
                    },
                    // SAFETY: plain old data; all-zero is valid.
                    addr: unsafe { mem::zeroed() },
                    control: [0; CONTROL_LEN / 8],
                    data: Vec::new(),
                    lent: None,
                    start: 0,
                    len: 0,
                    to: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                    segment: 0,
                    count: 0,
                })
            })
            .collect();
        SendSlots {
            slots,
            free: (0..count as u16).rev().collect(),
            lent: (0..count).map(|_| Lent::default()).collect(),
            lent_free: (0..count as u16).rev().collect(),
            spare: Vec::new(),
        }
    }

    /// Lends `buf` (the whole send queue buffer) to the slots about to be
    /// filled; returns its index, or gives it back if none is free.
    pub(super) fn lend(&mut self, buf: Vec<u8>) -> Result<u16, Vec<u8>> {
        let Some(i) = self.lent_free.pop() else {
            return Err(buf);
        };
        self.lent[usize::from(i)] = Lent { buf, refs: 0 };
        Ok(i)
    }

    /// Drops a slot's hold on lent buffer `i`; the last one frees it.
    pub(super) fn release(&mut self, i: u16) {
        let l = &mut self.lent[usize::from(i)];
        l.refs = l.refs.saturating_sub(1);
        if l.refs == 0 {
            let mut buf = mem::take(&mut l.buf);
            buf.clear();
            if buf.capacity() > self.spare.capacity() {
                self.spare = buf;
            }
            self.lent_free.push(i);
        }
    }

    /// Fills free slot `slot` for entry `e`, whose bytes are `buf[e.start..]`:
    /// pointing into `buf` when it is lent buffer `lent` (the caller counts
    /// the reference), or copying them. Returns the entry to submit: a
    /// `Send` with a destination address for one datagram (cheaper: the
    /// kernel copies no message header), a `SendMsg` with a `UDP_SEGMENT`
    /// control message for a GSO run.
    pub(super) fn fill(
        &self,
        slot: usize,
        e: &Entry,
        buf: &[u8],
        lent: Option<u16>,
    ) -> squeue::Entry {
        // SAFETY: `slot` was just taken from the free list: no queued or
        // in-flight entry points at it, so we have the only access.
        let s = unsafe { &mut *self.slots[slot].get() };
        let data = &buf[e.start..e.start + e.len];
        s.lent = lent;
        s.start = e.start;
        s.len = e.len;
        let base = match lent {
            Some(_) => data.as_ptr(),
            None => {
                s.data.clear();
                s.data.extend_from_slice(data);
                s.data.as_ptr()
            }
        };
        s.to = e.to;
        s.segment = e.segment;
        s.count = e.count;
        let (addr, addr_len) = to_sockaddr(&e.to);
        s.addr = addr;
        if e.count <= 1 {
            return opcode::Send::new(SOCKET, base, e.len as u32)
                .dest_addr((&s.addr as *const libc::sockaddr_storage).cast())
                .dest_addr_len(addr_len)
                .build();
        }
        s.iov = libc::iovec {
            iov_base: base.cast_mut().cast(),
            iov_len: e.len,
        };
        // SAFETY: plain old data; all-zero is valid.
        s.hdr = unsafe { mem::zeroed() };
        s.hdr.msg_name = (&mut s.addr as *mut libc::sockaddr_storage).cast();
        s.hdr.msg_namelen = addr_len;
        s.hdr.msg_iov = &mut s.iov;
        s.hdr.msg_iovlen = 1;
        s.hdr.msg_control = s.control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure computation.
        s.hdr.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
        // SAFETY: msg_control points at the slot's 32-byte, 8-aligned
        // control area, larger than CMSG_SPACE(2), so CMSG_FIRSTHDR is
        // non-null and its data area holds a u16.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&s.hdr);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
            ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, e.segment as u16);
        }
        opcode::SendMsg::new(SOCKET, &s.hdr).build()
    }
}
