//! A reactor's transports, and the held queues that give a slow reliable
//! peer backpressure instead of loss.
//!
//! A reliable transport (WebSocket) that cannot take a datagram now (the
//! peer reads slowly, its socket is full) gets it later, in order: it waits
//! in a per-peer held queue, so other peers of the same transport are not
//! held up. While too much waits in all ([`HELD_LIMIT`] datagrams or
//! [`HELD_BYTES_LIMIT`] bytes), the reactor takes no more commands, so
//! `Node::send` waits: backpressure reaches the application. A peer with
//! [`PEER_HELD_LIMIT`] datagrams waiting is not reading at all: what is
//! beyond is dropped, counted and logged, except an in-reactor handler's
//! answers, which are always held (reading pauses while too many wait).
//!
//! Datagrams produced while a transport is being read (answers to what
//! arrived) cannot go to the transports at once: they wait in the
//! [`Outbox`] until the turn's flush.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::endpoint::Path;
use crate::session::Transmits;
use crate::transport::{Transport, TransportCounters, TransportError};

/// Datagrams held for slow reliable transports before the reactor stops
/// taking commands.
pub(crate) const HELD_LIMIT: usize = 1024;

/// Bytes of such datagrams beyond which it stops too (1,024 large messages
/// could be a gigabyte).
pub(crate) const HELD_BYTES_LIMIT: usize = 64 << 20;

/// Datagrams held for one slow reliable peer before further ones are
/// dropped (counted and logged): a peer this far behind is not reading.
pub(crate) const PEER_HELD_LIMIT: usize = 8192;

/// Datagrams waiting for one slow reliable peer, each with whether an
/// in-reactor handler sent it.
type HeldQueue = VecDeque<(Vec<u8>, bool)>;

/// What waits in the held queues; `answers` and `answer_bytes` count the
/// part in-reactor handlers sent.
#[derive(Debug, Default)]
pub(crate) struct HeldCount {
    frames: usize,
    bytes: usize,
    answers: usize,
    answer_bytes: usize,
}

impl HeldCount {
    /// Too much waits: the reactor takes no more sends.
    pub(crate) fn throttles(&self) -> bool {
        self.frames > HELD_LIMIT || self.bytes > HELD_BYTES_LIMIT
    }

    /// Too many in-reactor handlers' answers wait: the reactor reads
    /// nothing more for them to answer.
    pub(crate) fn stops_answering(&self) -> bool {
        self.answers > HELD_LIMIT || self.answer_bytes > HELD_BYTES_LIMIT
    }
}

/// One transport of a reactor.
#[derive(Debug)]
pub(crate) struct Slot {
    pub transport: Box<dyn Transport>,
    /// Readiness was reported and not yet drained.
    pub ready: bool,
    pub reliable: bool,
    pub kind: &'static str,
    pub counters: Arc<TransportCounters>,
}

impl Slot {
    pub(crate) fn new(transport: Box<dyn Transport>) -> Self {
        Slot {
            reliable: transport.is_reliable(),
            kind: transport.kind(),
            counters: transport.counters().clone(),
            transport,
            ready: true,
        }
    }
}

/// Datagrams waiting for the turn's flush, back to back in one buffer.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    buf: Vec<u8>,
    /// (shard, transport, peer, end of the datagram in `buf`).
    items: Vec<(usize, usize, SocketAddr, usize)>,
    /// Peers found authenticated while transports were being read: (shard,
    /// transport, peer).
    pub authenticated: Vec<(usize, usize, SocketAddr)>,
    /// Sessions of other shards replaced by a new session of their connect
    /// token: (shard, session, the ticket's salt).
    pub replaced: Vec<(usize, crate::frame::SessionId, [u8; 16])>,
}

impl Outbox {
    /// Queues `datagrams` for `path`.
    pub(crate) fn push(&mut self, path: &Path, datagrams: &Transmits) {
        for d in datagrams.iter() {
            self.buf.extend_from_slice(d);
            self.items
                .push((path.via, path.transport, path.peer, self.buf.len()));
        }
    }

    /// Calls `f(shard, transport, peer, datagram)` for each, in order, and
    /// empties the outbox.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(usize, usize, SocketAddr, &[u8])) {
        let mut start = 0;
        for &(via, transport, peer, end) in &self.items {
            f(via, transport, peer, &self.buf[start..end]);
            start = end;
        }
        self.items.clear();
        self.buf.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty() && self.authenticated.is_empty() && self.replaced.is_empty()
    }
}

/// A reactor's transports and held queues.
#[derive(Debug, Default)]
pub(crate) struct Io {
    pub slots: Vec<Slot>,
    /// Per reliable transport and peer: datagrams the transport could not
    /// take yet, in order.
    held: HashMap<(usize, SocketAddr), HeldQueue>,
    pub held_total: HeldCount,
    /// Sending what in-reactor handlers sent (see [`Io::hold`]).
    pub answering: bool,
}

fn no_transport() -> TransportError {
    TransportError::io("sending", io::ErrorKind::NotFound.into())
}

impl Io {
    /// Counts a failed send on transport `ti`.
    pub(crate) fn send_failed(&self, ti: usize) {
        if let Some(s) = self.slots.get(ti) {
            TransportCounters::add(&s.counters.errors_send, 1);
        }
    }

    /// Hands `datagrams` to transport `ti` for `to`: one whole message for a
    /// reliable transport goes as its buffer (the WebSocket transport frames
    /// it without a copy), another coming back in its place.
    pub(crate) fn send_all(
        &mut self,
        ti: usize,
        to: SocketAddr,
        datagrams: &mut Transmits,
    ) -> Result<(), TransportError> {
        let reliable = self.slots.get(ti).is_some_and(|s| s.reliable);
        if reliable && datagrams.len() == 1 {
            return self.send_owned(ti, to, &mut datagrams.buf);
        }
        for d in datagrams.iter() {
            self.send(ti, to, d)?;
        }
        Ok(())
    }

    /// Hands a datagram to transport `ti`; a reliable transport that cannot
    /// take it now gets it later, in order (see the [module docs](self)).
    pub(crate) fn send(
        &mut self,
        ti: usize,
        to: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), TransportError> {
        let slot = self.slots.get_mut(ti).ok_or_else(no_transport)?;
        if !slot.reliable {
            return slot.transport.send(to, datagram);
        }
        if self.held.contains_key(&(ti, to)) {
            // Behind what waits for this peer already: in order.
            return self.hold(ti, to, datagram.to_vec());
        }
        match slot.transport.send(to, datagram) {
            Err(TransportError::QueueFull(_)) => self.hold(ti, to, datagram.to_vec()),
            other => other,
        }
    }

    /// [`send`](Self::send) for a reliable transport that may take the
    /// datagram's buffer ([`Transport::send_owned`]).
    fn send_owned(
        &mut self,
        ti: usize,
        to: SocketAddr,
        datagram: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        if self.held.contains_key(&(ti, to)) {
            return self.hold(ti, to, std::mem::take(datagram));
        }
        let slot = self.slots.get_mut(ti).ok_or_else(no_transport)?;
        match slot.transport.send_owned(to, datagram) {
            // Refused, the transport gave the datagram back: hold it.
            Err(TransportError::QueueFull(_)) => self.hold(ti, to, std::mem::take(datagram)),
            other => other,
        }
    }

    /// Queues a datagram behind a slow peer's others (see the
    /// [module docs](self) for the bounds).
    fn hold(&mut self, ti: usize, to: SocketAddr, datagram: Vec<u8>) -> Result<(), TransportError> {
        let answering = self.answering;
        let queue = self.held.entry((ti, to)).or_default();
        if queue.len() >= PEER_HELD_LIMIT && !answering {
            TransportCounters::add(&self.slots[ti].counters.packets_dropped, 1);
            tracing::warn!(peer = %to, held = queue.len(), "peer is not reading: datagram dropped");
            return Err(TransportError::QueueFull(queue.len()));
        }
        let total = &mut self.held_total;
        total.frames += 1;
        total.bytes += datagram.len();
        if answering {
            total.answers += 1;
            total.answer_bytes += datagram.len();
        }
        queue.push_back((datagram, answering));
        Ok(())
    }

    /// Offers held datagrams to their transports again, in order per peer.
    pub(crate) fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let keys: Vec<(usize, SocketAddr)> = self.held.keys().copied().collect();
        let mut flushed = vec![false; self.slots.len()];
        for (ti, to) in keys {
            let Some(slot) = self.slots.get_mut(ti) else {
                continue;
            };
            if !flushed[ti] {
                let _ = slot.transport.flush();
                flushed[ti] = true;
            }
            let Some(queue) = self.held.get_mut(&(ti, to)) else {
                continue;
            };
            while let Some((mut d, answer)) = queue.pop_front() {
                let len = d.len();
                match slot.transport.send_owned(to, &mut d) {
                    Err(TransportError::QueueFull(_)) => {
                        // Given back: first again next time.
                        queue.push_front((d, answer));
                        break;
                    }
                    Ok(()) => {}
                    Err(_) => TransportCounters::add(&slot.counters.errors_send, 1),
                }
                let total = &mut self.held_total;
                total.frames -= 1;
                total.bytes -= len;
                if answer {
                    total.answers -= 1;
                    total.answer_bytes -= len;
                }
            }
            if queue.is_empty() {
                self.held.remove(&(ti, to));
            }
        }
    }

    /// Tells transport `ti` that `peer` is authenticated.
    pub(crate) fn authenticated(&mut self, ti: usize, peer: SocketAddr) {
        if let Some(s) = self.slots.get_mut(ti) {
            s.transport.peer_authenticated(peer);
        }
    }

    /// Flushes every transport.
    pub(crate) fn flush(&mut self) {
        for s in &mut self.slots {
            if s.transport.flush().is_err() {
                TransportCounters::add(&s.counters.errors_send, 1);
            }
        }
    }
}
