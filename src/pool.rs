//! The node's buffer pool: message buffers recycled between the
//! application's threads and the reactors.
//!
//! `Node::send` copies a message into a pooled buffer with room in front for
//! the frame header and behind for the tag, so that a reactor can seal it
//! where it lies; the reactor gives the buffer back once sealed. Received
//! messages are delivered in pooled buffers too, and the application may
//! give those back (`Node::recycle`). A buffer allocated on one thread and
//! freed on another makes glibc's malloc take the owning arena's lock and,
//! for large buffers, trim the heap and fault fresh pages in again for the
//! next message; spare buffers wait in a bounded lock-free channel instead,
//! within a byte budget so that a burst of large messages cannot pin memory.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::session::{PayloadSource, DATA_OVERHEAD, SEND_HEADROOM};

/// A message on its way to a reactor, in a pooled buffer with room for the
/// frame header in front, so that the reactor can seal it where it lies.
#[derive(Debug)]
pub(crate) struct Payload(Vec<u8>);

impl Payload {
    /// The message.
    pub(crate) fn message(&self) -> &[u8] {
        // Every Payload is built by `BufferPool::copy_of`, with the room.
        self.0.get(SEND_HEADROOM..).unwrap_or_default()
    }

    /// The whole buffer, room included.
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.0
    }
}

/// Spare message buffers. See the [module docs](self).
pub(crate) struct BufferPool {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    /// Capacity of the buffers waiting, bytes.
    held: AtomicUsize,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("spare", &self.rx.len())
            .field("held", &self.held.load(Ordering::Relaxed))
            .finish()
    }
}

impl BufferPool {
    /// Spare buffers kept at most.
    const BUFFERS: usize = 4096;
    /// Bytes of spare buffers kept at most (their capacities).
    const BYTES: usize = 8 << 20;
    /// A buffer larger than this is not kept.
    const LARGEST: usize = 1 << 20;

    pub(crate) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(Self::BUFFERS);
        BufferPool {
            tx,
            rx,
            held: AtomicUsize::new(0),
        }
    }

    /// A buffer holding a copy of `payload` after room for the frame
    /// header, with room for the tag behind: a spare one if any.
    pub(crate) fn copy_of(&self, payload: &[u8]) -> Payload {
        let mut buf = self.spare();
        buf.reserve(DATA_OVERHEAD + payload.len());
        buf.resize(SEND_HEADROOM, 0);
        buf.extend_from_slice(payload);
        Payload(buf)
    }

    /// A spare buffer (cleared), or a new one.
    fn spare(&self) -> Vec<u8> {
        match self.rx.try_recv() {
            Ok(mut b) => {
                self.held.fetch_sub(b.capacity(), Ordering::Relaxed);
                b.clear();
                b
            }
            Err(_) => Vec::new(),
        }
    }

    /// Keeps a message's buffer for a later one.
    pub(crate) fn recycle(&self, payload: Payload) {
        self.give(payload.0);
    }

    /// Keeps `buf` for a later message, if it fits the budget.
    pub(crate) fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap > Self::LARGEST {
            return;
        }
        if self.held.fetch_add(cap, Ordering::Relaxed) + cap > Self::BYTES {
            self.held.fetch_sub(cap, Ordering::Relaxed);
            return;
        }
        if let Err(e) = self.tx.try_send(buf) {
            self.held.fetch_sub(cap, Ordering::Relaxed);
            drop(e);
        }
    }

    /// [`recycle`](Self::recycle) for each message.
    pub(crate) fn recycle_all(&self, payloads: Vec<Payload>) {
        for p in payloads {
            self.give(p.0);
        }
    }
}

impl PayloadSource for BufferPool {
    fn copy_out(&self, data: &[u8]) -> Vec<u8> {
        let mut buf = self.spare();
        buf.extend_from_slice(data);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_recycles_buffers_within_its_budget() {
        let pool = BufferPool::new();
        let a = pool.copy_of(&[1u8; 1000]);
        assert_eq!(a.message(), &[1u8; 1000][..]);
        // Room for the header in front, and for the tag behind.
        assert_eq!(a.0.len(), SEND_HEADROOM + 1000);
        assert!(a.0.capacity() >= DATA_OVERHEAD + 1000);
        let ptr = a.0.as_ptr();
        pool.recycle(a);
        // The same allocation comes back, holding the new message only.
        let b = pool.copy_of(&[2u8; 10]);
        assert_eq!(b.message(), &[2u8; 10][..]);
        assert_eq!(b.0.as_ptr(), ptr);
        assert_eq!(pool.held.load(Ordering::Relaxed), 0);
        // Too large to keep.
        pool.give(vec![0u8; BufferPool::LARGEST + 1]);
        assert_eq!(pool.rx.len(), 0);
        // The byte budget holds: 8 MiB of 1 MiB buffers, no more.
        for _ in 0..20 {
            pool.give(Vec::with_capacity(BufferPool::LARGEST));
        }
        assert_eq!(pool.rx.len(), BufferPool::BYTES / BufferPool::LARGEST);
        assert!(pool.held.load(Ordering::Relaxed) <= BufferPool::BYTES);
        while pool.rx.try_recv().is_ok() {}
    }
}
