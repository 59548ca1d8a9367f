//! The io_uring backend: sends submitted as a batch of `SendMsg` entries in
//! one `io_uring_enter`, receives through one multishot `RecvMsg` over a ring
//! of provided buffers, and the ring's fd in the reactor's `mio::Poll`.
//!
//! ## Memory the kernel holds
//!
//! io_uring lets the kernel read and write user memory *after* the call that
//! submitted the request returns, until that request's completion (CQE) is
//! reaped. Everything such a request points at is therefore owned by
//! [`UringUdp`], allocated once at construction, never moved or reallocated,
//! and handed out under these rules:
//!
//! - **Receive buffers** ([`RecvRing`]): one allocation of `count` buffers and
//!   one page-aligned ring of `io_uring_buf` entries registered as buffer
//!   group 0. A buffer belongs to the kernel from the moment its entry is
//!   published (ring tail) until a CQE names its id; then it belongs to us
//!   until we write it back. Rust references are only ever made to buffers
//!   we own; the rest is reached through raw pointers only.
//! - **Receive header** (`RecvRing::msghdr`): a boxed `msghdr` template the
//!   multishot request points at; it lives as long as the ring.
//! - **Send slots** ([`SendSlots`]): a fixed `Box<[UnsafeCell<SendSlot>]>`
//!   (2 × `batch_size` slots). A slot holds the `msghdr`, `iovec`, address
//!   and `UDP_SEGMENT` control message of one `SendMsg`. A slot is in flight
//!   from the push of its `SendMsg` until its CQE; only free slots are ever
//!   written.
//! - **Send bytes**: when every queued entry gets a slot in one flush (the
//!   usual case), the send queue's whole buffer is *lent*: moved out of the
//!   queue (which starts a fresh one) into `SendSlots::lent`, where it is
//!   neither written, grown nor dropped until the last slot pointing into it
//!   completes. Otherwise (more entries than free slots) each slot copies
//!   its bytes into a buffer of its own, since the queue keeps growing and
//!   may reallocate.
//! - **Teardown**: `Drop` cancels every request (`ASYNC_CANCEL_ANY`), then
//!   waits for the last CQE of each (the counted `in_flight` reaches zero)
//!   before the ring, the socket and the memory are freed. Closing the ring
//!   fd alone is not enough: the kernel cancels outstanding requests
//!   asynchronously after `close` returns. If the wait fails or times out,
//!   the memory is leaked rather than freed.
//!
//! ## One ring, one loop, one thread
//!
//! Receive and send completions share the ring; the ring fd turns readable
//! when a CQE lands, so both wake the reactor. `flush` may have to reap the
//! ring to free send slots and then meets receive completions it cannot
//! deliver (it has no callback): it keeps them for the next `recv` and
//! submits a `Nop` whose completion makes the ring fd readable again, so the
//! edge-triggered poll does not lose the wake-up.
//!
//! The kernel runs a multishot receive's work on the thread that submitted
//! it. The transport is built by the thread that starts the node and driven
//! by a reactor thread, so the first `recv` on another thread cancels the
//! receive and arms it again from there.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use mio::unix::SourceFd;
use mio::Interest;
use socket2::{Domain, Protocol, Socket, Type};

use crate::transport::udp::mmsg::{check_send, deliver_segments, Entry, SendQueue};
use crate::transport::udp::sys::{from_sockaddr, to_sockaddr};
use crate::transport::udp::{UdpConfig, UdpSocketInfo};
use crate::transport::{Transport, TransportCounters, TransportError};

/// Provided receive buffers without GRO: one datagram each. 256 × ~1.6 KiB
/// (for the default 1472-byte packets) ≈ 420 KiB, and a burst of 256
/// datagrams between two `recv` calls before the kernel pauses the
/// multishot receive (`ENOBUFS`, re-armed at the next `recv`; the datagrams
/// wait in the socket buffer meanwhile).
const RECV_BUFFERS: u16 = 256;
/// With GRO a buffer must hold a whole coalesced run (up to 64 KiB), so there
/// are fewer of them: 64 × 64 KiB = 4 MiB per socket.
const RECV_BUFFERS_GRO: u16 = 64;
/// Payload room of one receive buffer with GRO.
const GRO_PAYLOAD: usize = 65_536;
/// Buffer group id of the receive buffers (one group per ring).
const BUF_GROUP: u16 = 0;
/// `struct io_uring_recvmsg_out` (four `u32`), at the start of every buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// Room for the source address in every buffer.
const NAME_LEN: usize = mem::size_of::<libc::sockaddr_storage>();
/// Room for control messages in every buffer: one `UDP_GRO` int needs
/// `CMSG_SPACE(4)` = 24 bytes on 64-bit Linux.
const CONTROL_LEN: usize = 32;
/// Send slots per batch of `batch_size` (one batch being submitted while the
/// previous one completes).
const SLOTS_PER_BATCH: usize = 2;
/// Completion rounds per `recv` call before yielding to the reactor.
const RECV_ROUNDS: usize = 16;
/// Re-arms of the multishot receive per `recv` call (each one may receive
/// at once what waited in the socket).
const ARMS_PER_RECV: usize = 4;
/// How long `Drop` waits for cancelled requests before leaking their memory.
const DROP_TIMEOUT: Duration = Duration::from_secs(2);

/// `user_data` of the multishot receive.
const UD_RECV: u64 = u64::MAX;
/// `user_data` of a `Nop` (a wake-up for the poll).
const UD_NOP: u64 = u64::MAX - 1;
/// `user_data` of the cancellation at drop.
const UD_CANCEL: u64 = u64::MAX - 2;
// Any other `user_data` is the index of a send slot.

/// The io_uring UDP backend: queued datagrams go out as a batch of `SendMsg`
/// entries in one `io_uring_enter`, datagrams come in through a multishot
/// `RecvMsg` into provided buffers, and the ring's fd is what the reactor
/// polls. Chosen by [`UdpBackend`](super::UdpBackend) where the kernel allows.
pub struct UringUdp {
    // Field order matters for drop: the ring goes first (after `Drop::drop`
    // has waited for every request), then the socket, then the memory.
    ring: IoUring,
    socket: Socket,
    local: SocketAddr,
    max: usize,
    gso: bool,
    send_queue_limit: usize,
    queue: SendQueue,
    counters: Arc<TransportCounters>,
    recv: RecvRing,
    sends: SendSlots,
    /// Receive completions reaped by `flush`, delivered by the next `recv`.
    stash: Vec<Cqe>,
    /// Scratch for reaping.
    cqes: Vec<Cqe>,
    /// Requests pushed whose last completion is not reaped yet.
    in_flight: usize,
    /// The multishot receive is pushed and has not ended.
    recv_armed: bool,
    /// The thread that pushed it (see [`thread_marker`]).
    armed_on: usize,
}

// SAFETY: the raw pointers inside (`RecvRing`, `SendSlot`) point only into
// memory this value owns; nothing is shared with another value or thread.
// The kernel does not care which thread submits or reaps on a ring set up
// without `SINGLE_ISSUER`/`DEFER_TASKRUN` (ours), so moving the whole
// transport to another thread is sound. It is not `Sync`.
unsafe impl Send for UringUdp {}

/// One completion, copied off the ring.
#[derive(Debug, Clone, Copy)]
struct Cqe {
    user_data: u64,
    result: i32,
    flags: u32,
}

/// The receive callback of [`Transport::recv`].
type OnDatagram<'a> = dyn FnMut(SocketAddr, &mut [u8]) + 'a;

/// Where `reap` puts receive completions.
enum Sink<'a> {
    /// Hand the datagrams over.
    Deliver(&'a mut OnDatagram<'a>),
    /// Keep them for the next `recv` (from `flush`).
    Stash,
    /// Give the buffers back unread (at drop).
    Discard,
}

impl UringUdp {
    /// Whether the kernel supports what this backend needs: probed once per
    /// process (a small ring, the opcodes, then a real multishot receive
    /// with a provided-buffer ring over loopback). Any failure (io_uring
    /// disabled by `kernel.io_uring_disabled`, seccomp, an old kernel) says
    /// no, and the caller falls back to the mio backend.
    pub(crate) fn supported() -> bool {
        static SUPPORTED: OnceLock<bool> = OnceLock::new();
        *SUPPORTED.get_or_init(|| probe().is_ok())
    }

    /// Wraps a bound UDP socket: sets up the ring, registers the receive
    /// buffers and arms the multishot receive.
    pub(crate) fn new(
        config: &UdpConfig,
        info: &UdpSocketInfo,
        socket: Socket,
    ) -> Result<Self, TransportError> {
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| {
                TransportError::io(
                    "reading the UDP socket's address",
                    io::Error::other("not an IP address"),
                )
            })?;
        let slots = (config.batch_size.max(1) * SLOTS_PER_BATCH).min(u16::MAX as usize);
        let (buffers, payload) = if info.gro {
            (RECV_BUFFERS_GRO, GRO_PAYLOAD)
        } else {
            (RECV_BUFFERS, config.max_packet_size + 1)
        };
        // Room in the submission queue for every slot plus the receive, a
        // wake-up and a cancel; room in the completion queue for a
        // completion per buffer and per slot, so that it never overflows
        // (an overflow would end the multishot receive).
        let sq = (slots + 8).next_power_of_two();
        let cq = (usize::from(buffers) + slots + 16)
            .next_power_of_two()
            .max(2 * sq);
        let ring = IoUring::builder()
            .setup_cqsize(cq as u32)
            .build(sq as u32)
            .map_err(|e| TransportError::io("setting up io_uring", e))?;
        let recv = RecvRing::new(buffers, payload)
            .map_err(|e| TransportError::io("allocating receive buffers", e))?;
        let mut t = UringUdp {
            ring,
            socket,
            local,
            max: config.max_packet_size,
            gso: info.gso,
            send_queue_limit: config.send_queue_limit,
            queue: SendQueue::default(),
            counters: TransportCounters::new(local),
            recv,
            sends: SendSlots::new(slots),
            stash: Vec::with_capacity(usize::from(buffers) + 1),
            cqes: Vec::with_capacity(cq),
            in_flight: 0,
            recv_armed: false,
            armed_on: 0,
        };
        t.recv
            .register(&t.ring)
            .map_err(|e| TransportError::io("registering io_uring receive buffers", e))?;
        t.arm_recv()
            .map_err(|e| TransportError::io("arming the io_uring receive", e))?;
        Ok(t)
    }

    /// Pushes the multishot receive and submits it.
    fn arm_recv(&mut self) -> io::Result<()> {
        self.recv.publish();
        let sqe =
            opcode::RecvMsgMulti::new(Fd(self.socket.as_raw_fd()), &*self.recv.msghdr, BUF_GROUP)
                .build()
                .user_data(UD_RECV);
        // SAFETY: the entry points at `self.recv.msghdr` (boxed, alive until
        // `Drop` has seen this request's last completion) and selects
        // buffers from group 0, whose memory lives as long; the socket fd
        // is owned by `self` and closed only after the ring.
        unsafe { self.push_owned(&sqe)? };
        self.recv_armed = true;
        self.armed_on = thread_marker();
        self.submit()
    }

    /// Moves the multishot receive to the calling thread if another one
    /// armed it. The kernel runs a request's deferred work (the receive
    /// itself, when a datagram wakes the socket) on the thread that
    /// submitted it, and cancels the request when that thread exits. The
    /// transport is built on the thread that starts the node and driven by
    /// a reactor thread: the first `recv` there cancels the receive, and
    /// `recv` re-arms it from the reactor.
    fn adopt_recv(&mut self) -> io::Result<()> {
        let here = thread_marker();
        if !self.recv_armed || self.armed_on == here {
            return Ok(());
        }
        self.armed_on = here; // cancel once
        let cancel = opcode::AsyncCancel::new(UD_RECV)
            .build()
            .user_data(UD_CANCEL);
        // SAFETY: a cancel request points at no memory.
        unsafe { self.push_owned(&cancel)? };
        self.submit()
    }

    /// Pushes an entry whose memory `self` owns for the ring's lifetime
    /// (or that points at nothing), submitting first if the queue is full.
    ///
    /// # Safety
    ///
    /// Everything `sqe` points at must stay valid and unmoved until its last
    /// completion is reaped.
    unsafe fn push_owned(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: forwarded to the caller.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.submit()?;
        }
        Err(io::Error::other("io_uring submission queue full"))
    }

    /// Submits what is queued. A busy kernel (`EBUSY`, `EAGAIN`) leaves the
    /// entries queued for the next submit.
    fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes every completion off the ring: send slots are counted and
    /// freed, receive completions go to `sink`. Returns the completions
    /// reaped and the datagrams delivered.
    fn reap(&mut self, sink: &mut Sink<'_>) -> (usize, usize) {
        let mut cqes = mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.ring.completion().map(|c| Cqe {
            user_data: c.user_data(),
            result: c.result(),
            flags: c.flags(),
        }));
        let mut delivered = 0;
        let mut requeued = 0;
        for &c in &cqes {
            match c.user_data {
                UD_RECV => {
                    if !cqueue::more(c.flags) {
                        // The multishot receive ended (no buffer left, an
                        // error, a cancel): `recv` re-arms it.
                        self.recv_armed = false;
                        self.in_flight = self.in_flight.saturating_sub(1);
                    }
                    match sink {
                        Sink::Deliver(on) => delivered += self.complete_recv(c, Some(&mut **on)),
                        Sink::Stash => self.stash.push(c),
                        Sink::Discard => {
                            self.complete_recv(c, None);
                        }
                    }
                }
                UD_NOP | UD_CANCEL => self.in_flight = self.in_flight.saturating_sub(1),
                slot => self.complete_send(slot, c.result, &mut requeued),
            }
        }
        let reaped = cqes.len();
        self.cqes = cqes;
        self.recv.publish();
        (reaped, delivered)
    }

    /// Handles one receive completion: delivers its datagrams (when there
    /// is somewhere to deliver them) and gives its buffer back.
    fn complete_recv(&mut self, c: Cqe, on: Option<&mut OnDatagram<'_>>) -> usize {
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
    fn deliver_buffer(&mut self, bid: u16, len: usize, on: &mut OnDatagram<'_>) -> usize {
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

    /// Handles the completion of send slot `slot`: counts it, retries what
    /// must be retried, frees the slot.
    fn complete_send(&mut self, slot: u64, result: i32, requeued: &mut usize) {
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

    /// Cancels every request and waits for their last completions. Returns
    /// whether nothing is in flight any more (and the memory may be freed).
    fn shutdown(&mut self) -> bool {
        if self.in_flight == 0 {
            return true;
        }
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(UD_CANCEL);
        // SAFETY: a cancel request points at no memory.
        let _ = unsafe { self.push_owned(&cancel) };
        let deadline = Instant::now() + DROP_TIMEOUT;
        let step = Timespec::from(Duration::from_millis(50));
        let args = SubmitArgs::new().timespec(&step);
        loop {
            self.reap(&mut Sink::Discard);
            if self.in_flight == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                    ) => {}
                Err(_) => return false,
            }
        }
    }
}

impl fmt::Debug for UringUdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringUdp")
            .field("local", &self.local)
            .field("max", &self.max)
            .field("gso", &self.gso)
            .field("recv_buffers", &self.recv.count)
            .field("recv_buffer_size", &self.recv.size)
            .field("send_slots", &self.sends.slots.len())
            .field("free_slots", &self.sends.free.len())
            .field("in_flight", &self.in_flight)
            .field("queued", &self.queue.datagrams)
            .finish_non_exhaustive()
    }
}

impl Transport for UringUdp {
    fn kind(&self) -> &'static str {
        "udp/io_uring"
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn max_datagram_size(&self) -> Option<usize> {
        Some(self.max)
    }

    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.ring.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        registry.deregister(&mut SourceFd(&self.ring.as_raw_fd()))
    }

    fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8])) -> io::Result<usize> {
        let mut total = 0;
        if !self.stash.is_empty() {
            let mut stash = mem::take(&mut self.stash);
            for c in stash.drain(..) {
                total += self.complete_recv(c, Some(&mut *on_datagram));
            }
            self.stash = stash;
        }
        if !self.ring.submission().is_empty() {
            self.submit()?; // left over from a busy kernel
        }
        self.adopt_recv()?;
        let mut arms = 0;
        for _ in 0..RECV_ROUNDS {
            let (reaped, delivered) = self.reap(&mut Sink::Deliver(&mut *on_datagram));
            total += delivered;
            if !self.recv_armed {
                // Every buffer is back (published by `reap`): re-arm. What
                // waited in the socket may complete during the submit.
                self.arm_recv()?;
                arms += 1;
                if arms < ARMS_PER_RECV {
                    continue;
                }
                // Completions of this last arm land after the poll last
                // reported the ring, so they wake it again.
                break;
            }
            if reaped == 0 {
                break;
            }
        }
        Ok(total)
    }

    fn send(&mut self, to: SocketAddr, datagram: &[u8]) -> Result<(), TransportError> {
        check_send(self.local, self.max, to, datagram.len())?;
        if self.queue.datagrams >= self.send_queue_limit {
            TransportCounters::add(&self.counters.packets_dropped, 1);
            return Err(TransportError::QueueFull(self.queue.datagrams));
        }
        self.queue.push(to, datagram, self.gso);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let leftover = !self.ring.submission().is_empty();
        if self.queue.is_empty() && !leftover {
            return Ok(());
        }
        let stashed = self.stash.len();
        if self.sends.free.len() < self.queue.pending().len() {
            self.reap(&mut Sink::Stash);
        }
        let fd = Fd(self.socket.as_raw_fd());
        let pending = self.queue.pending().len();
        let mut taken = 0;
        let mut pushed = 0;
        let mut sq = self.ring.submission();
        // When every pending entry gets a slot now (the usual case), the
        // queue's buffer itself is lent to the kernel and the queue starts
        // a fresh one: no copy. Otherwise each slot copies its bytes.
        let fits =
            pending > 0 && pending <= self.sends.free.len() && pending < sq.capacity() - sq.len();
        let lent = if fits {
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
                let msg = self.sends.fill(usize::from(slot), e, buf, lent);
                let sqe = opcode::SendMsg::new(fd, msg)
                    .build()
                    .user_data(u64::from(slot));
                // SAFETY: `msg` and everything it points at (address,
                // iovec, control message) live in send slot `slot`, and the
                // bytes in its own copy or in lent buffer `lent`. The slot
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
                // Not reached (room was checked): the unsent entries' bytes
                // are in the lent buffer; copy them back into the queue.
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
            compact(&mut self.queue);
        }
        if pushed > 0 || leftover {
            self.submit()?;
        }
        Ok(())
    }

    fn wants_write(&self) -> bool {
        !self.queue.is_empty()
    }

    fn counters(&self) -> &Arc<TransportCounters> {
        &self.counters
    }
}

impl Drop for UringUdp {
    fn drop(&mut self) {
        self.counters.set_stopped();
        if self.shutdown() {
            let _ = self.ring.submitter().unregister_buf_ring(BUF_GROUP);
        } else {
            // Requests may still be in flight: the kernel could write into
            // the receive buffers or read the send slots after we free
            // them. Leak them instead (this takes a kernel refusing to
            // cancel for seconds).
            self.recv.leak();
            mem::forget(mem::take(&mut self.sends.slots));
            mem::forget(mem::take(&mut self.sends.lent));
        }
        // The fields drop next: the ring (its fd closed, nothing left in
        // flight), the socket, then the memory.
    }
}

/// Drops sent datagrams from the front of `queue` once they outnumber the
/// pending ones. `SendQueue` reclaims its memory only when it empties, which
/// a queue topped up between flushes of a few slots' worth never does: its
/// buffer would grow without bound. Moving the pending rest to the front
/// when the sent prefix is at least as long keeps the cost amortised O(1) a
/// datagram.
fn compact(queue: &mut SendQueue) {
    let pending = queue.entries.len() - queue.head;
    if queue.head < 64 || queue.head < pending {
        return;
    }
    // Requeued entries sit at the front with their bytes at the end of the
    // buffer: cut at the lowest start still pending.
    let cut = queue.entries[queue.head..]
        .iter()
        .map(|e| e.start)
        .min()
        .unwrap_or(queue.buf.len());
    queue.buf.drain(..cut);
    queue.entries.drain(..queue.head);
    for e in &mut queue.entries {
        e.start -= cut;
    }
    queue.head = 0;
}

/// Puts a datagram (or GSO run) whose send must be retried back at the
/// front of `queue`, after the `requeued` ones already put back by this
/// reaping; `split` sends a GSO run as single datagrams.
fn requeue_front(
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

/// Reads the source address the kernel wrote into a receive buffer.
fn sockaddr_from_bytes(name: &[u8]) -> Option<SocketAddr> {
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
fn gro_segment(control: &[u8]) -> Option<u16> {
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
struct RecvRing {
    /// `count` `io_uring_buf` entries, page-aligned; entry 0's last field is
    /// the ring's tail.
    entries: Region,
    /// `count` buffers of `size` bytes.
    bufs: Region,
    count: u16,
    size: usize,
    /// The tail we publish next (buffers given back since).
    tail: u16,
    /// The multishot receive's template: name and control room per buffer.
    msghdr: Box<libc::msghdr>,
}

/// `struct io_uring_buf`.
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    /// In entry 0: the ring's tail.
    resv: u16,
}

const _: () = assert!(mem::size_of::<BufEntry>() == 16);

impl RecvRing {
    /// Allocates `count` (a power of two) buffers with `payload` bytes of
    /// room after the header, name and control areas.
    fn new(count: u16, payload: usize) -> io::Result<Self> {
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
    fn register(&mut self, ring: &IoUring) -> io::Result<()> {
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
    unsafe fn buffer_mut(&self, bid: u16) -> &mut [u8] {
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
    fn recycle(&mut self, bid: u16) {
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
    fn publish(&self) {
        // SAFETY: entry 0's `resv` is the ring tail, a u16 the kernel reads
        // concurrently; it is 2-aligned and only accessed atomically here.
        let tail = unsafe {
            let e = self.entries.ptr.as_ptr().cast::<BufEntry>();
            AtomicU16::from_ptr(ptr::addr_of_mut!((*e).resv))
        };
        tail.store(self.tail, Ordering::Release);
    }

    /// Never frees the memory (the kernel may still use it).
    fn leak(&mut self) {
        self.entries.leaked = true;
        self.bufs.leaked = true;
        // SAFETY: plain old data; all-zero is valid.
        let spare = Box::new(unsafe { mem::zeroed::<libc::msghdr>() });
        Box::leak(mem::replace(&mut self.msghdr, spare));
    }
}

/// One send in flight: the kernel reads all of it until the completion.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    control: [u64; CONTROL_LEN / 8],
    /// A copy of the datagram (or GSO run), when it is not lent.
    data: Vec<u8>,
    /// The lent queue buffer (`SendSlots::lent`) holding the bytes, at
    /// `start..start + len`.
    lent: Option<u16>,
    start: usize,
    len: usize,
    to: SocketAddr,
    segment: usize,
    count: u32,
}

impl SendSlot {
    /// The bytes this slot sends.
    fn bytes<'a>(&'a self, lent: &'a [Lent]) -> &'a [u8] {
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
struct Lent {
    buf: Vec<u8>,
    /// Slots in flight that point into `buf`.
    refs: u32,
}

/// The send slots and which are free. See the [module docs](self).
struct SendSlots {
    /// Never grown, shrunk or moved after construction.
    slots: Box<[UnsafeCell<SendSlot>]>,
    /// Indices of the free slots (capacity reserved for all).
    free: Vec<u16>,
    /// Lent queue buffers, one per slot at most (each holds a slot).
    lent: Box<[Lent]>,
    /// Indices of the unused `lent` entries.
    lent_free: Vec<u16>,
    /// An emptied lent buffer, kept to become the next queue buffer.
    spare: Vec<u8>,
}

impl SendSlots {
    fn new(count: usize) -> Self {
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
    fn lend(&mut self, buf: Vec<u8>) -> Result<u16, Vec<u8>> {
        let Some(i) = self.lent_free.pop() else {
            return Err(buf);
        };
        self.lent[usize::from(i)] = Lent { buf, refs: 0 };
        Ok(i)
    }

    /// Drops a slot's hold on lent buffer `i`; the last one frees it.
    fn release(&mut self, i: u16) {
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
    /// the reference), or copying them. Returns the message header to submit.
    fn fill(&self, slot: usize, e: &Entry, buf: &[u8], lent: Option<u16>) -> *const libc::msghdr {
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
        if e.count > 1 {
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
        }
        &s.hdr
    }
}

/// A zeroed heap allocation reached only through raw pointers, so that no
/// Rust reference covers memory the kernel may be using.
struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
    /// Never freed (the kernel may still use it).
    leaked: bool,
}

impl Region {
    fn zeroed(size: usize, align: usize) -> io::Result<Self> {
        let layout = Layout::from_size_align(size.max(1), align)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(Region {
            ptr,
            layout,
            leaked: false,
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: allocated in `zeroed` with this layout, freed once.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        }
    }
}

/// A number that tells the calling thread from every other live thread (the
/// address of a thread-local), cheaper than `thread::current().id()`.
fn thread_marker() -> usize {
    thread_local!(static MARKER: u8 = const { 0 });
    MARKER.with(|m| m as *const u8 as usize)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096)
}

/// The probe behind [`UringUdp::supported`].
fn probe() -> io::Result<()> {
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
            opcode::SendMsg::CODE,
            opcode::AsyncCancel::CODE,
            opcode::Nop::CODE,
        ] {
            if !p.is_supported(code) {
                return Err(unsupported("io_uring opcode missing"));
            }
        }
    }
    // Multishot receive into provided buffers is a kernel behaviour, not an
    // opcode: try it on a loopback socket sending to itself.
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
        // No loopback: the ring, buffer ring and receive were accepted.
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv6Addr, UdpSocket};

    use mio::{Events, Poll, Token};

    use super::*;
    use crate::transport::udp::bind_group;

    const MAX: usize = 1472;

    fn config(ip: IpAddr) -> UdpConfig {
        UdpConfig {
            bind_address: ip,
            receive_buffer_size: 4 << 20,
            send_buffer_size: 4 << 20,
            ..UdpConfig::default()
        }
    }

    fn open(config: &UdpConfig) -> UringUdp {
        let (mut sockets, info) = bind_group(config, 1).expect("bind");
        UringUdp::new(config, &info, sockets.pop().expect("one socket"))
            .expect("io_uring transport")
    }

    fn v4() -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    macro_rules! skip_unless_supported {
        () => {
            if !UringUdp::supported() {
                eprintln!("SKIPPED: io_uring is not available here");
                return;
            }
        };
    }

    fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Duration) {
        match poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("poll: {e}"),
        }
    }

    /// Datagram `i`: its index, then a filler; 4..=1472 bytes.
    fn payload(i: usize) -> Vec<u8> {
        let len = 4 + (i * 131) % (MAX - 3);
        let mut v = vec![(i % 251) as u8; len];
        v[..4].copy_from_slice(&(i as u32).to_le_bytes());
        v
    }

    /// `a` and `b` send `n` datagrams each to the other, at most `window`
    /// ahead of what arrived; checks contents, sources and counters.
    fn exchange(mut a: UringUdp, mut b: UringUdp, n: usize) {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        a.register(poll.registry(), Token(0)).unwrap();
        b.register(poll.registry(), Token(1)).unwrap();
        let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
        let window = 200;
        let (mut sent_a, mut sent_b) = (0, 0);
        let (mut got_a, mut got_b) = (HashSet::new(), HashSet::new());
        let check =
            |from: SocketAddr, want_from: SocketAddr, d: &[u8], got: &mut HashSet<usize>| {
                assert_eq!(from, want_from);
                let i = u32::from_le_bytes(d[..4].try_into().unwrap()) as usize;
                assert_eq!(d, &payload(i)[..], "datagram {i}");
                assert!(got.insert(i), "datagram {i} twice");
            };
        let deadline = Instant::now() + Duration::from_secs(20);
        while got_a.len() < n
            || got_b.len() < n
            || a.counters.snapshot().packets_sent < n as u64
            || b.counters.snapshot().packets_sent < n as u64
        {
            assert!(
                Instant::now() < deadline,
                "exchange stalled: a got {}, b got {}",
                got_a.len(),
                got_b.len()
            );
            while sent_a < n && sent_a < got_b.len() + window {
                a.send(b_addr, &payload(sent_a)).unwrap();
                sent_a += 1;
            }
            while sent_b < n && sent_b < got_a.len() + window {
                b.send(a_addr, &payload(sent_b)).unwrap();
                sent_b += 1;
            }
            a.flush().unwrap();
            b.flush().unwrap();
            poll_once(&mut poll, &mut events, Duration::from_millis(20));
            a.recv(&mut |from, d| check(from, b_addr, d, &mut got_a))
                .unwrap();
            b.recv(&mut |from, d| check(from, a_addr, d, &mut got_b))
                .unwrap();
        }
        let bytes: u64 = (0..n).map(|i| payload(i).len() as u64).sum();
        for (t, name) in [(&a, "a"), (&b, "b")] {
            let s = t.counters.snapshot();
            assert_eq!(
                (s.packets_sent, s.bytes_sent),
                (n as u64, bytes),
                "{name} sent"
            );
            assert_eq!(
                (s.packets_received, s.bytes_received),
                (n as u64, bytes),
                "{name} received"
            );
            assert_eq!(
                (s.packets_dropped, s.errors_send, s.errors_receive),
                (0, 0, 0),
                "{name} errors"
            );
        }
        assert!(!a.wants_write() && !b.wants_write());
        for t in [&a, &b] {
            assert_eq!(t.sends.free.len(), t.sends.slots.len(), "every slot back");
            assert_eq!(
                t.sends.lent_free.len(),
                t.sends.lent.len(),
                "every lent buffer back"
            );
        }
    }

    #[test]
    fn probe_answers() {
        // Either answer is fine; it must not hang or crash, and be cached.
        let first = UringUdp::supported();
        assert_eq!(UringUdp::supported(), first);
        eprintln!("io_uring supported: {first}");
    }

    #[test]
    fn exchange_1000_datagrams_both_ways() {
        skip_unless_supported!();
        let c = config(v4());
        let (a, b) = (open(&c), open(&c));
        assert_eq!(a.kind(), "udp/io_uring");
        assert_eq!(a.max_datagram_size(), Some(MAX));
        exchange(a, b, 1000);
    }

    #[test]
    fn exchange_without_gso_or_gro() {
        skip_unless_supported!();
        let c = UdpConfig {
            gso: false,
            gro: false,
            ..config(v4())
        };
        exchange(open(&c), open(&c), 500);
    }

    #[test]
    fn exchange_over_ipv6() {
        skip_unless_supported!();
        let c = config(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let Ok((mut s1, info1)) = bind_group(&c, 1) else {
            eprintln!("SKIPPED: ::1 is not available here");
            return;
        };
        let (mut s2, info2) = bind_group(&c, 1).unwrap();
        let a = UringUdp::new(&c, &info1, s1.pop().unwrap()).unwrap();
        let b = UringUdp::new(&c, &info2, s2.pop().unwrap()).unwrap();
        assert!(a.local_addr().is_ipv6());
        exchange(a, b, 300);
    }

    #[test]
    fn gso_run_arrives_as_separate_datagrams_in_order() {
        skip_unless_supported!();
        let mut t = open(&config(v4()));
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = rx.local_addr().unwrap();
        for i in 0..40u8 {
            t.send(to, &[i; 1000]).unwrap();
        }
        t.send(to, &[40; 300]).unwrap();
        if t.gso {
            assert_eq!(t.queue.pending().len(), 1, "one GSO run of 41");
        } else {
            eprintln!("GSO unavailable: the datagrams go singly");
        }
        t.flush().unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..41u8 {
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(from, t.local_addr());
            assert_eq!(n, if i < 40 { 1000 } else { 300 }, "datagram {i}");
            assert!(buf[..n].iter().all(|&b| b == i), "datagram {i} in order");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.counters.snapshot().packets_sent < 41 {
            assert!(Instant::now() < deadline, "send completion never reaped");
            t.recv(&mut |_, _| {}).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let s = t.counters.snapshot();
        assert_eq!(
            (s.packets_sent, s.bytes_sent, s.errors_send),
            (41, 40 * 1000 + 300, 0)
        );
    }

    #[test]
    fn gso_refused_by_the_kernel_resends_singles() {
        skip_unless_supported!();
        // The run's bytes in the slot's own copy, then in a lent buffer.
        for lend in [false, true] {
            let mut t = open(&config(v4()));
            if !t.gso {
                eprintln!("SKIPPED: GSO unavailable");
                return;
            }
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let to = rx.local_addr().unwrap();
            for i in 0..4u8 {
                t.send(to, &[i; 500]).unwrap();
            }
            t.send(to, &[4; 100]).unwrap();
            assert_eq!(t.queue.pending().len(), 1);
            // Fill a slot with the run as `flush` would, then complete it
            // as a route without segmentation offload does (EIO).
            let run = t.queue.pending()[0];
            let slot = t.sends.free.pop().unwrap();
            if lend {
                let i = t.sends.lend(mem::take(&mut t.queue.buf)).ok().unwrap();
                let buf = &t.sends.lent[usize::from(i)].buf;
                t.sends.fill(usize::from(slot), &run, buf, Some(i));
                t.sends.lent[usize::from(i)].refs = 1;
            } else {
                t.sends.fill(usize::from(slot), &run, &t.queue.buf, None);
            }
            t.queue.advance(1);
            t.in_flight += 1;
            t.complete_send(u64::from(slot), -libc::EIO, &mut 0);
            assert!(!t.gso, "GSO turned off");
            assert_eq!(t.queue.pending().len(), 5, "five singles back in front");
            assert_eq!(
                t.sends.lent_free.len(),
                t.sends.lent.len(),
                "lent buffer released"
            );
            assert_eq!(t.counters.snapshot().errors_send, 0);
            t.send(to, &[5; 500]).unwrap();
            t.flush().unwrap();
            let mut buf = [0u8; 2048];
            for i in 0..6u8 {
                let (n, _) = rx.recv_from(&mut buf).unwrap();
                assert_eq!(n, if i == 4 { 100 } else { 500 });
                assert!(buf[..n].iter().all(|&b| b == i), "datagram {i} in order");
            }
        }
    }

    #[test]
    fn burst_larger_than_the_slab_is_sent_eventually() {
        skip_unless_supported!();
        let c = UdpConfig {
            gso: false,
            send_queue_limit: 20_000,
            ..config(v4())
        };
        let mut t = open(&c);
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        t.register(poll.registry(), Token(0)).unwrap();
        // Nobody reads: the receiver's kernel drops what does not fit.
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sink.local_addr().unwrap();
        let n = 10_000u64;
        for i in 0..n {
            t.send(to, &[i as u8; 200]).unwrap();
        }
        t.flush().unwrap();
        assert!(t.wants_write(), "more entries than send slots");
        assert!(t.queue.datagrams < n as usize);
        let deadline = Instant::now() + Duration::from_secs(20);
        while t.wants_write() || t.counters.snapshot().packets_sent < n {
            assert!(
                Instant::now() < deadline,
                "burst stalled at {:?}",
                t.counters.snapshot()
            );
            poll_once(&mut poll, &mut events, Duration::from_millis(20));
            t.recv(&mut |_, _| {}).unwrap();
            t.flush().unwrap();
        }
        let s = t.counters.snapshot();
        assert_eq!((s.packets_sent, s.bytes_sent), (n, n * 200));
        assert_eq!((s.errors_send, s.packets_dropped), (0, 0));
    }

    #[test]
    fn send_queue_limit_refuses_and_counts() {
        skip_unless_supported!();
        let c = UdpConfig {
            send_queue_limit: 3,
            ..config(v4())
        };
        let mut t = open(&c);
        let to = t.local_addr();
        for _ in 0..3 {
            t.send(to, b"x").unwrap();
        }
        assert!(matches!(
            t.send(to, b"x"),
            Err(TransportError::QueueFull(3))
        ));
        assert_eq!(t.counters.snapshot().packets_dropped, 1);
    }

    #[test]
    fn oversize_and_wrong_family_are_refused() {
        skip_unless_supported!();
        let mut t = open(&config(v4()));
        let to = t.local_addr();
        assert!(matches!(
            t.send(to, &vec![0; MAX + 1]),
            Err(TransportError::TooLarge { len, max: MAX }) if len == MAX + 1
        ));
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        assert!(matches!(
            t.send(v6, b"x"),
            Err(TransportError::AddressFamily { .. })
        ));
        t.send(to, &vec![7; MAX]).unwrap();
    }

    #[test]
    fn more_datagrams_than_buffers_rearm_the_receive() {
        skip_unless_supported!();
        for gro in [false, true] {
            let c = UdpConfig {
                gro,
                ..config(v4())
            };
            let mut rx = open(&c);
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let n = 3 * usize::from(RECV_BUFFERS);
            // All of them wait in the socket before the first `recv`: the
            // multishot receive runs out of buffers and must be re-armed.
            for i in 0..n {
                tx.send_to(&payload(i)[..100.min(payload(i).len())], rx.local_addr())
                    .unwrap();
            }
            let mut poll = Poll::new().unwrap();
            let mut events = Events::with_capacity(16);
            rx.register(poll.registry(), Token(0)).unwrap();
            let mut got = 0;
            let deadline = Instant::now() + Duration::from_secs(10);
            while got < n {
                assert!(Instant::now() < deadline, "got {got} of {n} (gro {gro})");
                poll_once(&mut poll, &mut events, Duration::from_millis(20));
                rx.recv(&mut |from, _| {
                    assert_eq!(from, tx.local_addr().unwrap());
                    got += 1;
                })
                .unwrap();
            }
            let s = rx.counters.snapshot();
            assert_eq!(
                (s.packets_received, s.errors_receive, s.packets_dropped),
                (n as u64, 0, 0)
            );
        }
    }

    #[test]
    fn oversized_datagram_is_dropped_and_counted() {
        skip_unless_supported!();
        let c = UdpConfig {
            gro: false,
            max_packet_size: 512,
            ..config(v4())
        };
        let mut rx = open(&c);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[1; 4000], rx.local_addr()).unwrap();
        tx.send_to(&[2; 100], rx.local_addr()).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.is_empty() {
            assert!(Instant::now() < deadline);
            rx.recv(&mut |_, d| got.push(d.to_vec())).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got, vec![vec![2; 100]]);
        assert_eq!(rx.counters.snapshot().packets_dropped, 1);
    }

    #[test]
    fn receive_completions_reaped_by_flush_wake_the_poll() {
        skip_unless_supported!();
        let c = UdpConfig {
            gso: false,
            batch_size: 2, // 4 send slots
            ..config(v4())
        };
        let mut t = open(&c);
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        t.register(poll.registry(), Token(0)).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"hello", t.local_addr()).unwrap();
        // Wait until the receive completion is on the ring, then let a
        // flush (more entries than slots) reap it into the stash.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            poll_once(&mut poll, &mut events, Duration::from_millis(100));
            if !events.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "ring never readable");
        }
        for _ in 0..8 {
            t.send(peer.local_addr().unwrap(), b"out").unwrap();
        }
        t.flush().unwrap();
        t.flush().unwrap();
        assert!(
            !t.stash.is_empty(),
            "the flush reaped the receive completion"
        );
        // The poll must still report the ring readable.
        poll_once(&mut poll, &mut events, Duration::from_secs(2));
        assert!(!events.is_empty(), "poll slept on a stashed datagram");
        let mut got = Vec::new();
        t.recv(&mut |_, d| got.push(d.to_vec())).unwrap();
        assert_eq!(got, vec![b"hello".to_vec()]);
    }

    #[test]
    fn built_on_one_thread_driven_on_another() {
        skip_unless_supported!();
        // As a node does: the transport is built (and its receive armed) by
        // the thread that starts the node, then driven by a reactor thread.
        // Once with the builder gone (the kernel cancels its requests), once
        // with it alive but asleep (its task work would wait for it).
        for builder_lingers in [false, true] {
            let (tx, rx) = std::sync::mpsc::channel();
            let builder = std::thread::spawn(move || {
                let a = open(&config(v4()));
                let b = open(&config(v4()));
                tx.send((a, b)).unwrap();
                if builder_lingers {
                    std::thread::sleep(Duration::from_secs(2));
                }
            });
            let (a, b) = rx.recv().unwrap();
            let mut builder = Some(builder);
            if !builder_lingers {
                builder.take().unwrap().join().unwrap();
            }
            let started = Instant::now();
            // The first `recv` here moves the receive to this thread.
            let (mut a, mut b) = (a, b);
            while !(a.recv_armed && a.armed_on == thread_marker()) {
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "receive not adopted"
                );
                a.recv(&mut |_, _| {}).unwrap();
                b.recv(&mut |_, _| {}).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            exchange(a, b, 300);
            assert!(
                started.elapsed() < Duration::from_millis(1500),
                "the exchange waited for the builder thread"
            );
            if let Some(b) = builder {
                b.join().unwrap();
            }
        }
    }

    #[test]
    fn compact_keeps_the_pending_datagrams() {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut q = SendQueue::default();
        for i in 0..200u8 {
            q.push(to, &[i; 10], false);
        }
        q.advance(150);
        let mut requeued = 0;
        requeue_front(&mut q, &mut requeued, to, &[255; 7], 7, 1, false);
        compact(&mut q);
        assert_eq!(q.head, 0);
        assert_eq!(q.entries.len(), 51);
        assert!(q.buf.len() <= 50 * 10 + 7, "sent bytes dropped");
        let got: Vec<Vec<u8>> = q
            .pending()
            .iter()
            .map(|e| q.buf[e.start..e.start + e.len].to_vec())
            .collect();
        assert_eq!(got[0], vec![255; 7]);
        for (k, d) in got[1..].iter().enumerate() {
            assert_eq!(d, &vec![150 + k as u8; 10]);
        }
        q.push(to, &[1; 10], false);
        assert_eq!(q.pending().len(), 52);
        assert_eq!(q.advance(52), (52, 7 + 51 * 10));
    }

    #[test]
    fn requeue_front_splits_and_keeps_order() {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut q = SendQueue::default();
        q.push(to, &[9; 10], false);
        let mut requeued = 0;
        requeue_front(&mut q, &mut requeued, to, &[1; 250], 100, 3, true);
        requeue_front(&mut q, &mut requeued, to, &[2; 30], 30, 1, false);
        let p: Vec<(usize, u8)> = q
            .pending()
            .iter()
            .map(|e| (e.len, q.buf[e.start]))
            .collect();
        assert_eq!(p, vec![(100, 1), (100, 1), (50, 1), (30, 2), (10, 9)]);
        assert_eq!(q.datagrams, 5);
        assert_eq!(q.advance(5), (5, 290));
        assert!(q.is_empty());
    }

    #[test]
    fn drop_with_requests_in_flight() {
        skip_unless_supported!();
        for _ in 0..20 {
            let c = UdpConfig {
                batch_size: 8,
                send_queue_limit: 10_000,
                ..config(v4())
            };
            let mut t = open(&c);
            let counters = Arc::clone(t.counters());
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            // Receive completions pile up unreaped (more than the buffers)…
            for i in 0..300usize {
                peer.send_to(&payload(i), t.local_addr()).unwrap();
            }
            // …sends are in flight, and a flush stashed receives.
            for i in 0..1000usize {
                t.send(peer.local_addr().unwrap(), &payload(i)).unwrap();
            }
            t.flush().unwrap();
            t.flush().unwrap();
            drop(t);
            assert!(!counters.snapshot().running);
        }
    }

    /// Throughput: 1,000,000 × 1200-byte datagrams over loopback, io_uring
    /// vs mmsg, with and without GSO; sender and receiver on their own
    /// threads, CPU time from `/proc/thread-self/schedstat`. Run with
    /// `cargo test --release --lib uring::tests::throughput -- --ignored --nocapture`
    /// (`STT_BENCH=IoUring-false` etc. runs one case).
    #[test]
    #[ignore = "measurement, not a test"]
    fn throughput() {
        use crate::transport::udp::{open_backend, UdpBackend};
        skip_unless_supported!();
        const N: u64 = 1_000_000;
        fn thread_cpu() -> Duration {
            let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
            Duration::from_nanos(
                s.split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )
        }
        fn run(backend: UdpBackend, gso: bool) -> (f64, f64, u64, f64, f64) {
            let c = UdpConfig {
                backend,
                gso,
                ..config(v4())
            };
            let (mut rs, rinfo) = bind_group(&c, 1).unwrap();
            let mut rx = open_backend(&c, &rinfo, rs.pop().unwrap()).unwrap();
            let (mut ss, sinfo) = bind_group(&c, 1).unwrap();
            let mut tx = open_backend(&c, &sinfo, ss.pop().unwrap()).unwrap();
            let to = rx.local_addr();
            let receiver = std::thread::spawn(move || {
                let mut poll = Poll::new().unwrap();
                let mut events = Events::with_capacity(64);
                rx.register(poll.registry(), Token(0)).unwrap();
                let (mut got, mut first, mut last) = (0u64, None, Instant::now());
                let cpu0 = thread_cpu();
                loop {
                    poll_once(&mut poll, &mut events, Duration::from_millis(20));
                    let n = rx
                        .recv(&mut |_, d| {
                            debug_assert_eq!(d.len(), 1200);
                        })
                        .unwrap() as u64;
                    if n > 0 {
                        first.get_or_insert_with(Instant::now);
                        last = Instant::now();
                        got += n;
                    }
                    if got >= N || (first.is_some() && last.elapsed() > Duration::from_millis(500))
                    {
                        break;
                    }
                }
                let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(f64::NAN);
                (got, secs, (thread_cpu() - cpu0).as_secs_f64())
            });
            std::thread::sleep(Duration::from_millis(50));
            let mut poll = Poll::new().unwrap();
            let mut events = Events::with_capacity(64);
            tx.register(poll.registry(), Token(0)).unwrap();
            let buf = [0x5au8; 1200];
            let start = Instant::now();
            let cpu0 = thread_cpu();
            let mut queued = 0u64;
            let mut done = 0;
            // As the reactor: poll (without sleeping while there is
            // progress), receive (which reaps completions), queue, flush.
            while done < N {
                let timeout = if tx.wants_write() { 1 } else { 0 };
                poll_once(&mut poll, &mut events, Duration::from_millis(timeout));
                tx.recv(&mut |_, _| {}).unwrap();
                while queued < N {
                    match tx.send(to, &buf) {
                        Ok(()) => queued += 1,
                        Err(TransportError::QueueFull(_)) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                tx.flush().unwrap();
                let s = tx.counters().snapshot();
                done = s.packets_sent + s.errors_send;
            }
            let send_secs = start.elapsed().as_secs_f64();
            let send_cpu = (thread_cpu() - cpu0).as_secs_f64();
            let (got, recv_secs, recv_cpu) = receiver.join().unwrap();
            (
                N as f64 / send_secs,
                got as f64 / recv_secs,
                got,
                send_cpu,
                recv_cpu,
            )
        }
        let only = std::env::var("STT_BENCH").unwrap_or_default();
        for gso in [false, true] {
            for backend in [UdpBackend::IoUring, UdpBackend::Mio] {
                if !only.is_empty() && only != format!("{backend:?}-{gso}") {
                    continue;
                }
                let mut runs: Vec<_> = (0..3).map(|_| run(backend, gso)).collect();
                for r in &runs {
                    eprintln!(
                        "  {backend:?} gso={gso}: send {:.2} M/s ({:.2} s CPU), receive {:.2} M/s ({} of {N}, {:.2} s CPU)",
                        r.0 / 1e6,
                        r.3,
                        r.1 / 1e6,
                        r.2,
                        r.4
                    );
                }
                runs.sort_by(|a, b| a.0.total_cmp(&b.0));
                let median_send = runs[1].0;
                runs.sort_by(|a, b| a.1.total_cmp(&b.1));
                eprintln!(
                    "{backend:?} gso={gso}: median send {:.2} M datagrams/s, median receive {:.2} M datagrams/s",
                    median_send / 1e6,
                    runs[1].1 / 1e6
                );
            }
        }
    }
}
