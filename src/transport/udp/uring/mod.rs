//! The io_uring backend: sends submitted as a batch of `Send`/`SendMsg`
//! entries in one `io_uring_enter`, receives through one multishot `RecvMsg`
//! over a ring of provided buffers, and an eventfd the ring signals in the
//! reactor's `mio::Poll`.
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
//!   (4 × `batch_size` slots). A slot holds the destination address of a
//!   `Send`, or the `msghdr`, `iovec`, address and `UDP_SEGMENT` control
//!   message of a `SendMsg` (a GSO run). A slot is in flight from the push
//!   of its entry until its CQE; only free slots are ever written.
//! - **Send bytes**: when at least half the queued entries get a slot in a
//!   flush round (the usual case: all of them), the send queue's whole
//!   buffer is *lent*: moved out of the queue (which starts a fresh one,
//!   into which the entries left over are copied) into `SendSlots::lent`,
//!   where it is neither written, grown nor dropped until the last slot
//!   pointing into it completes. Otherwise each slot copies its bytes into a
//!   buffer of its own, since the queue keeps growing and may reallocate.
//! - **Teardown**: `Drop` cancels every request (`ASYNC_CANCEL_ANY`), then
//!   waits for the last CQE of each (the counted `in_flight` reaches zero)
//!   before the ring, the socket and the memory are freed. Closing the ring
//!   fd alone is not enough: the kernel cancels outstanding requests
//!   asynchronously after `close` returns. If the wait fails or times out,
//!   the memory is leaked rather than freed.
//!
//! ## One ring, one loop, one thread
//!
//! The ring is set up with `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG`:
//! the kernel's work for a request (the receive a datagram wakes, a send
//! that waited for room) waits on the ring until its one thread enters it
//! with `GETEVENTS`, instead of interrupting that thread per datagram. That
//! binds the ring to one thread: it is created disabled (`R_DISABLED`, on
//! the thread that starts the node) and enabled by the first thread that
//! drives it, the reactor's ([`Transport::register`] runs there); any other
//! thread is refused with an error. In exchange, no datagram interrupts the
//! reactor's thread: its work is done in batches when the loop enters the
//! ring.
//!
//! With deferred work the ring's fd does *not* turn readable while work
//! waits, only once completions are posted (Linux 6.18, see the tests), so the
//! reactor would sleep on a datagram. The reactor polls an eventfd
//! registered with the ring instead: the kernel signals it both when
//! deferred work is queued on an empty list and when completions are
//! posted. `recv` runs the waiting work (one `GETEVENTS` per call, which
//! receives what the socket holds) and delivers the completions; work
//! queued after that signals again. Should work be left waiting with
//! nothing delivered, `recv` submits a `Nop`, whose completion signals.
//!
//! Receive and send completions share the ring. `flush` may have to reap
//! the ring to free send slots and then meets receive completions it cannot
//! deliver (it has no callback): it keeps them for the next `recv` and
//! submits a `Nop` whose completion signals the eventfd again, so the
//! edge-triggered poll does not lose the wake-up.

#![allow(unsafe_code)]

mod probe;
mod recv;
mod send;
#[cfg(test)]
mod tests;

use std::alloc::{self, Layout};
use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fixed, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use mio::unix::SourceFd;
use mio::Interest;
use socket2::Socket;

use self::probe::probe;
use self::recv::RecvRing;
use self::send::SendSlots;
use crate::transport::udp::mmsg::{check_send, SendQueue};
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
/// Send slots per `batch_size`: 4 × 64 by default, as many datagrams as a
/// reactor turn queues at most (256 commands), so that one flush usually
/// takes the whole queue and lends its buffer without a copy.
const SLOTS_PER_BATCH: usize = 4;
/// Submit rounds per `flush` (each as many entries as there are free
/// slots) before the rest waits for the next.
const FLUSH_ROUNDS: usize = 8;
/// Re-arms of the multishot receive per `recv` call (each one may receive
/// at once what waited in the socket).
const ARMS_PER_RECV: usize = 4;
/// How long `Drop` waits for cancelled requests before leaking their memory.
const DROP_TIMEOUT: Duration = Duration::from_secs(2);

/// The socket, registered as fixed file 0 (no file reference taken per
/// request).
const SOCKET: Fixed = Fixed(0);

/// `user_data` of the multishot receive.
const UD_RECV: u64 = u64::MAX;
/// `user_data` of a `Nop` (a wake-up for the poll).
const UD_NOP: u64 = u64::MAX - 1;
/// `user_data` of the cancellation at drop.
const UD_CANCEL: u64 = u64::MAX - 2;
// Any other `user_data` is the index of a send slot.

/// The io_uring UDP backend: queued datagrams go out as a batch of `Send`
/// (or, for GSO runs, `SendMsg`) entries in one `io_uring_enter`, datagrams
/// come in through a multishot `RecvMsg` into provided buffers, and an
/// eventfd the ring signals is what the reactor polls. Chosen by
/// [`UdpBackend`](super::UdpBackend) where the kernel allows.
///
/// The ring is bound to the first thread that drives it (registers,
/// receives or flushes): the kernel defers its work for the ring to that
/// thread (`SINGLE_ISSUER | DEFER_TASKRUN`), and refuses every other one,
/// so the transport must be driven where it was first used.
pub struct UringUdp {
    // Field order matters for drop: the ring goes first (after `Drop::drop`
    // has waited for every request), then the socket and the eventfd, then
    // the memory.
    ring: IoUring,
    /// Registered with the ring as fixed file 0 ([`SOCKET`]).
    socket: Socket,
    /// The eventfd the ring signals when completions land *or deferred work
    /// waits*: what the reactor polls.
    wake: OwnedFd,
    /// The thread that enabled the ring and alone may enter it (see
    /// [`thread_marker`]); 0 until then.
    owner: usize,
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
}

// SAFETY: the raw pointers inside (`RecvRing`, `SendSlot`) point only into
// memory this value owns; nothing is shared with another value or thread.
// Moving the transport to another thread is sound: before the ring is
// enabled nothing was submitted, and after, the kernel refuses (`EEXIST`)
// every thread but the one that enabled it (which `start` checks first),
// so requests are only ever submitted and their memory only written by that
// thread; memory is never freed while the kernel may use it (see `Drop`).
// It is not `Sync`.
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

    /// Wraps a bound UDP socket: sets up the ring (disabled) and registers
    /// the socket, the eventfd and the receive buffers. The first thread to
    /// drive the transport enables the ring and arms the receive.
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
            .setup_r_disabled()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .build(sq as u32)
            .map_err(|e| TransportError::io("setting up io_uring", e))?;
        ring.submitter()
            .register_files(&[socket.as_raw_fd()])
            .map_err(|e| TransportError::io("registering the socket with io_uring", e))?;
        let wake = register_eventfd(&ring)
            .map_err(|e| TransportError::io("registering the io_uring eventfd", e))?;
        let recv = RecvRing::new(buffers, payload)
            .map_err(|e| TransportError::io("allocating receive buffers", e))?;
        let mut t = UringUdp {
            ring,
            socket,
            wake,
            owner: 0,
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
        };
        t.recv
            .register(&t.ring)
            .map_err(|e| TransportError::io("registering io_uring receive buffers", e))?;
        Ok(t)
    }

    /// Binds the ring to the calling thread on first use: enables it and
    /// arms the receive. Every method that enters the ring calls it first;
    /// another thread afterwards gets an error (the kernel would refuse it
    /// with `EEXIST`).
    fn start(&mut self) -> io::Result<()> {
        let here = thread_marker();
        if self.owner == here {
            return Ok(());
        }
        if self.owner != 0 {
            return Err(io::Error::other(
                "the io_uring transport is driven by a thread other than the one it started on",
            ));
        }
        self.ring.submitter().register_enable_rings()?;
        self.owner = here;
        self.arm_recv()
    }

    /// Whether work the kernel deferred waits for `GETEVENTS` (a submit
    /// runs it, see [`submit`](Self::submit)), or completions wait to be
    /// reaped.
    fn work_waits(&mut self) -> bool {
        self.ring.submission().taskrun() || !self.ring.completion().is_empty()
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

    /// Makes the polled fd readable again: a `Nop` whose completion lands
    /// after the poll last reported it.
    fn nudge(&mut self) -> io::Result<()> {
        let nop = opcode::Nop::new().build().user_data(UD_NOP);
        // SAFETY: a `Nop` points at no memory.
        unsafe { self.push_owned(&nop)? };
        self.submit()
    }

    /// Submits what is queued, and runs the work the kernel deferred when
    /// the ring says some waits (`IORING_SQ_TASKRUN`: `submit` then enters
    /// with `GETEVENTS`). A busy kernel (`EBUSY`, `EAGAIN`) leaves the
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
            .field("fd", &self.socket.as_raw_fd())
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
        // The reactor registers on the thread that drives the transport:
        // the ring is bound to it here.
        self.start()?;
        registry.register(
            &mut SourceFd(&self.wake.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        registry.deregister(&mut SourceFd(&self.wake.as_raw_fd()))
    }

    fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8])) -> io::Result<usize> {
        self.start()?;
        let mut total = 0;
        if !self.stash.is_empty() {
            let mut stash = mem::take(&mut self.stash);
            for c in stash.drain(..) {
                total += self.complete_recv(c, Some(&mut *on_datagram));
            }
            self.stash = stash;
        }
        if !self.ring.submission().is_empty() || self.ring.submission().taskrun() {
            // Deferred work (the receive the datagrams woke), or entries
            // left over from a busy kernel: the submit runs it, posting its
            // completions. Once per call: what arrives meanwhile signals the
            // eventfd again, and a later call takes it in a larger batch.
            self.submit()?;
        }
        for _ in 0..ARMS_PER_RECV {
            total += self.reap(&mut Sink::Deliver(&mut *on_datagram)).1;
            if self.recv_armed {
                break;
            }
            // The multishot receive ended (out of buffers): every buffer is
            // back (published by `reap`), re-arm. What waited in the socket
            // completes during the submit, and is reaped next round or, after
            // the last, signals the eventfd.
            self.arm_recv()?;
        }
        if total == 0 && self.work_waits() {
            // Work left with nothing delivered (the kernel runs a bounded
            // batch per enter and then only raises `IORING_SQ_TASKRUN`):
            // the reactor will wait for the next signal, which must come.
            self.nudge()?;
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
        if self.queue.is_empty() && self.ring.submission().is_empty() {
            return Ok(());
        }
        self.start()?;
        self.flush_sends()
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

/// Creates an eventfd and registers it with `ring`: the kernel signals it
/// when completions are posted and when deferred work is queued.
fn register_eventfd(ring: &IoUring) -> io::Result<OwnedFd> {
    // SAFETY: eventfd has no memory arguments; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ring.submitter().register_eventfd(fd.as_raw_fd())?;
    Ok(fd)
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
