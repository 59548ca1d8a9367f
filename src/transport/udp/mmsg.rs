//! The readiness backend: a non-blocking UDP socket in the reactor's
//! `mio::Poll`, with `sendmmsg`/`recvmmsg` batches and GSO/GRO (through
//! `sys`, whose portable fallback sends and receives one datagram per call).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::Interest;
use socket2::Socket;

use crate::transport::udp::sys::{self, OutMsg, RecvSlots};
use crate::transport::udp::{UdpConfig, UdpSocketInfo};
use crate::transport::{Transport, TransportCounters, TransportError};

/// Most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS`
/// is 64 on older kernels, 128 on newer ones).
pub(crate) const MAX_GSO_SEGMENTS: u32 = 64;
/// Most bytes one GSO send may carry (a UDP payload's limit, less headroom).
pub(crate) const MAX_GSO_BYTES: usize = 65_000;
/// Receive batches per `recv` call before yielding to the reactor.
const RECV_ROUNDS: usize = 16;
/// Sent entries at the front of a [`SendQueue`] below which
/// [`SendQueue::compact`] leaves them (moving a few bytes often buys
/// nothing).
const COMPACT_MIN: usize = 64;

/// A queued send: one datagram, or a GSO run of datagrams to one peer that
/// all have `segment` bytes except possibly the last.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub to: SocketAddr,
    pub start: usize,
    pub len: usize,
    pub segment: usize,
    pub count: u32,
    /// A shorter last segment was added: nothing more may join.
    pub closed: bool,
}

/// Datagrams waiting to be sent, back to back in one buffer, coalesced into
/// GSO runs where that is allowed. Shared by both backends.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    pub buf: Vec<u8>,
    pub entries: Vec<Entry>,
    /// Entries before `head` are sent.
    pub head: usize,
    /// Datagrams queued and not yet sent.
    pub datagrams: usize,
}

impl SendQueue {
    /// Queues a datagram; merges it into the last entry when `gso` allows.
    pub fn push(&mut self, to: SocketAddr, datagram: &[u8], gso: bool) {
        let len = datagram.len();
        let start = self.buf.len();
        self.buf.extend_from_slice(datagram);
        self.datagrams += 1;
        if gso && self.entries.len() > self.head {
            if let Some(last) = self.entries.last_mut() {
                if last.to == to
                    && !last.closed
                    && len <= last.segment
                    && last.count < MAX_GSO_SEGMENTS
                    && last.len + len <= MAX_GSO_BYTES
                    && last.start + last.len == start
                {
                    last.len += len;
                    last.count += 1;
                    last.closed = len < last.segment;
                    return;
                }
            }
        }
        self.entries.push(Entry {
            to,
            start,
            len,
            segment: len,
            count: 1,
            closed: false,
        });
    }

    /// The unsent entries.
    pub fn pending(&self) -> &[Entry] {
        &self.entries[self.head..]
    }

    /// Marks the next `n` entries sent (or dropped); returns their datagram
    /// and byte totals.
    pub fn advance(&mut self, n: usize) -> (u64, u64) {
        let (mut datagrams, mut bytes) = (0u64, 0u64);
        for e in &self.entries[self.head..self.head + n] {
            datagrams += u64::from(e.count);
            bytes += e.len as u64;
        }
        self.head += n;
        self.datagrams -= datagrams as usize;
        if self.head == self.entries.len() {
            self.buf.clear();
            self.entries.clear();
            self.head = 0;
        }
        (datagrams, bytes)
    }

    /// Replaces the GSO run at the head by its single datagrams (after the
    /// kernel refused GSO for it).
    pub fn split_head(&mut self) {
        let Some(&e) = self.entries.get(self.head) else {
            return;
        };
        if e.count <= 1 {
            return;
        }
        let mut singles = Vec::with_capacity(e.count as usize);
        let mut offset = e.start;
        let end = e.start + e.len;
        while offset < end {
            let len = e.segment.min(end - offset);
            singles.push(Entry {
                to: e.to,
                start: offset,
                len,
                segment: len,
                count: 1,
                closed: false,
            });
            offset += len;
        }
        self.entries.splice(self.head..=self.head, singles);
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.head == self.entries.len()
    }

    /// Drops sent datagrams from the front once they outnumber the pending
    /// ones. [`advance`](Self::advance) reclaims the memory only when the
    /// queue empties, which a queue topped up between partial flushes (the
    /// socket buffer full, `EAGAIN`, while callers keep queueing) never
    /// does: its buffer would grow without bound. Moving the pending rest to
    /// the front when the sent prefix is at least as long keeps the cost
    /// amortised O(1) a datagram. Call it after a flush.
    pub fn compact(&mut self) {
        let pending = self.entries.len() - self.head;
        if self.head < COMPACT_MIN || self.head < pending {
            return;
        }
        // Entries put back at the front (a retried send) may have their
        // bytes at the end of the buffer: cut at the lowest start pending.
        let cut = self.entries[self.head..]
            .iter()
            .map(|e| e.start)
            .min()
            .unwrap_or(self.buf.len());
        self.buf.drain(..cut);
        self.entries.drain(..self.head);
        for e in &mut self.entries {
            e.start -= cut;
        }
        self.head = 0;
    }
}

/// The readiness UDP backend. It drives a non-blocking socket with `sendmmsg`/`recvmmsg` batches and GSO/GRO.
#[derive(Debug)]
pub struct MmsgUdp {
    socket: mio::net::UdpSocket,
    local: SocketAddr,
    max: usize,
    batch: usize,
    gso: bool,
    send_queue_limit: usize,
    queue: SendQueue,
    slots: RecvSlotsDebug,
    counters: Arc<TransportCounters>,
}

/// `RecvSlots` holds raw kernel structures; this wrapper gives it a `Debug`.
struct RecvSlotsDebug(RecvSlots);

impl std::fmt::Debug for RecvSlotsDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecvSlots")
    }
}

impl MmsgUdp {
    /// Wraps a bound, non-blocking socket.
    pub(crate) fn new(
        config: &UdpConfig,
        info: &UdpSocketInfo,
        socket: Socket,
    ) -> Result<Self, TransportError> {
        socket
            .set_nonblocking(true)
            .map_err(|e| TransportError::io("making the UDP socket non-blocking", e))?;
        let std: std::net::UdpSocket = socket.into();
        let local = std
            .local_addr()
            .map_err(|e| TransportError::io("reading the UDP socket's address", e))?;
        // With GRO one receive may hold up to 64 KiB of coalesced datagrams.
        let slot = if info.gro {
            65_536
        } else {
            config.max_packet_size + 1
        };
        let slots = if info.gro {
            config.batch_size.min(16)
        } else {
            config.batch_size
        };
        Ok(MmsgUdp {
            socket: mio::net::UdpSocket::from_std(std),
            local,
            max: config.max_packet_size,
            batch: config.batch_size,
            gso: info.gso,
            send_queue_limit: config.send_queue_limit,
            queue: SendQueue::default(),
            slots: RecvSlotsDebug(RecvSlots::new(slots, slot)),
            counters: TransportCounters::new(local),
        })
    }
}

/// Hands one received buffer to `on_datagram`, split into its GRO
/// segments; counts it.
pub(crate) fn deliver_segments(
    counters: &TransportCounters,
    from: SocketAddr,
    data: &mut [u8],
    segment: Option<u16>,
    on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
) -> usize {
    let seg = match segment {
        Some(s) if s > 0 && (s as usize) < data.len() => s as usize,
        _ => data.len().max(1),
    };
    let mut n = 0;
    for d in data.chunks_mut(seg) {
        TransportCounters::add(&counters.packets_received, 1);
        TransportCounters::add(&counters.bytes_received, d.len() as u64);
        on_datagram(from, d);
        n += 1;
    }
    n
}

/// Errors a UDP socket reports for an earlier datagram's ICMP answer.
pub(crate) fn is_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
        )
    )
}

/// Checks a datagram against the socket before it is queued.
pub(crate) fn check_send(
    local: SocketAddr,
    max: usize,
    to: SocketAddr,
    len: usize,
) -> Result<(), TransportError> {
    if len > max {
        return Err(TransportError::TooLarge { len, max });
    }
    if to.is_ipv4() != local.is_ipv4() {
        return Err(TransportError::AddressFamily { to, local });
    }
    Ok(())
}

impl Transport for MmsgUdp {
    fn kind(&self) -> &'static str {
        "udp/mio"
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn max_datagram_size(&self) -> Option<usize> {
        Some(self.max)
    }

    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        registry.register(
            &mut self.socket,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        registry.deregister(&mut self.socket)
    }

    fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8])) -> io::Result<usize> {
        let mut total = 0;
        for _ in 0..RECV_ROUNDS {
            let n = match self.slots.0.recvmmsg(&self.socket) {
                Ok(n) => n,
                Err(e) if is_icmp_error(&e) => {
                    // An ICMP error queued on the socket (a peer's port
                    // closed, a host unreachable) surfaces on the next
                    // receive: count it and go on.
                    TransportCounters::add(&self.counters.errors_receive, 1);
                    continue;
                }
                Err(e) => {
                    TransportCounters::add(&self.counters.errors_receive, 1);
                    return Err(e);
                }
            };
            if n == 0 {
                break;
            }
            for i in 0..n {
                let r = self.slots.0.get(i);
                match (r.from, r.truncated) {
                    (Some(from), false) => {
                        total += deliver_segments(
                            &self.counters,
                            from,
                            r.data,
                            r.segment_size,
                            on_datagram,
                        );
                    }
                    _ => TransportCounters::add(&self.counters.packets_dropped, 1),
                }
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
        while !self.queue.is_empty() {
            let pending = self.queue.pending();
            let take = pending.len().min(self.batch);
            let msgs: Vec<OutMsg<'_>> = pending[..take]
                .iter()
                .map(|e| OutMsg {
                    to: e.to,
                    data: &self.queue.buf[e.start..e.start + e.len],
                    segment_size: (e.count > 1).then_some(e.segment as u16),
                })
                .collect();
            match sys::sendmmsg(&self.socket, &msgs) {
                Ok(0) => break,
                Ok(k) => {
                    let (datagrams, bytes) = self.queue.advance(k);
                    TransportCounters::add(&self.counters.packets_sent, datagrams);
                    TransportCounters::add(&self.counters.bytes_sent, bytes);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    let head = self.queue.pending()[0];
                    let gso_refused = head.count > 1
                        && matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL));
                    if gso_refused {
                        // The route cannot segment: send singles from now on.
                        self.gso = false;
                        self.queue.split_head();
                        continue;
                    }
                    let (datagrams, _) = self.queue.advance(1);
                    TransportCounters::add(&self.counters.errors_send, datagrams);
                }
            }
        }
        self.queue.compact();
        Ok(())
    }

    fn wants_write(&self) -> bool {
        !self.queue.is_empty()
    }

    fn counters(&self) -> &Arc<TransportCounters> {
        &self.counters
    }
}

impl Drop for MmsgUdp {
    fn drop(&mut self) {
        self.counters.set_stopped();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn send_queue_coalesces_gso_runs() {
        let mut q = SendQueue::default();
        for _ in 0..3 {
            q.push(addr(1), &[0u8; 100], true);
        }
        q.push(addr(1), &[0u8; 40], true); // shorter last segment
        q.push(addr(1), &[0u8; 100], true); // new run: the last one closed
        q.push(addr(2), &[0u8; 100], true); // another peer
        let p = q.pending();
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].count, p[0].len, p[0].segment), (4, 340, 100));
        assert_eq!(p[1].count, 1);
        assert_eq!(p[2].to, addr(2));
        q.split_head();
        assert_eq!(q.pending().len(), 6);
        assert_eq!(q.pending()[3].len, 40);
        assert_eq!(q.advance(6), (6, 540));
        assert!(q.is_empty());
        assert!(q.buf.is_empty(), "memory reused once everything is sent");
    }

    #[test]
    fn compact_drops_the_sent_prefix_and_keeps_the_rest() {
        let mut q = SendQueue::default();
        for i in 0..200u8 {
            q.push(addr(1), &[i; 10], false);
        }
        q.advance(100);
        q.compact();
        assert_eq!((q.head, q.entries.len(), q.buf.len()), (0, 100, 1000));
        q.compact(); // nothing sent since: nothing to do
        assert_eq!((q.head, q.buf.len()), (0, 1000));
        for (k, e) in q.pending().iter().enumerate() {
            assert_eq!(e.start, k * 10);
            assert_eq!(q.buf[e.start..e.start + e.len], [100 + k as u8; 10]);
        }
        assert_eq!(q.datagrams, 100);
        q.push(addr(1), &[7; 10], false);
        assert_eq!(q.advance(101), (101, 1010));
        assert!(q.is_empty());
    }

    #[test]
    fn compact_bounds_a_queue_that_never_empties() {
        // As `flush` against a socket that keeps returning EAGAIN after a
        // few datagrams, while callers keep queueing: the queue never
        // empties, so only `compact` gives its memory back.
        const BACKLOG: usize = 100;
        let mut q = SendQueue::default();
        let mut next = 0u32;
        let mut push = |q: &mut SendQueue| {
            q.push(addr(1), &next.to_le_bytes(), false);
            next += 1;
        };
        for _ in 0..BACKLOG {
            push(&mut q);
        }
        let mut high = 0;
        for _ in 0..10_000 {
            for _ in 0..8 {
                push(&mut q);
            }
            q.advance(8); // what the socket took before EAGAIN
            q.compact();
            assert_eq!(q.datagrams, BACKLOG);
            high = high.max(q.buf.len());
        }
        // Without `compact`: 80,100 datagrams' worth.
        assert!(high <= 4 * (2 * BACKLOG + 16), "buffer grew to {high}");
        // Still in order, nothing lost.
        let first = next - q.datagrams as u32;
        for (k, e) in q.pending().iter().enumerate() {
            let got = u32::from_le_bytes(q.buf[e.start..e.start + 4].try_into().unwrap());
            assert_eq!(got, first + k as u32);
        }
    }

    #[test]
    fn compact_keeps_gso_runs_whole() {
        let mut q = SendQueue::default();
        for _ in 0..70 {
            q.push(addr(1), &[1; 100], false);
        }
        for _ in 0..3 {
            q.push(addr(2), &[2; 100], true);
        }
        q.advance(70);
        q.compact();
        let p = q.pending();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].start, p[0].len, p[0].count), (0, 300, 3));
        q.push(addr(2), &[2; 100], true); // joins the run after the move
        assert_eq!(q.pending()[0].count, 4);
    }

    #[test]
    fn no_gso_keeps_singles() {
        let mut q = SendQueue::default();
        q.push(addr(1), &[0u8; 100], false);
        q.push(addr(1), &[0u8; 100], false);
        assert_eq!(q.pending().len(), 2);
    }
}
