//! A reusable batch of datagrams to send.

use crate::frame::HEADER_LEN;

/// Datagrams produced by a send, back to back in one buffer.
///
/// Reused across sends, it allocates only while it grows. Consecutive
/// datagrams of one size (the fragments of a large message) can go to the
/// kernel as one GSO segment run; [`Transmits::iter`] yields them one by one.
#[derive(Debug, Default, Clone)]
pub struct Transmits {
    pub(crate) buf: Vec<u8>,
    pub(crate) ends: Vec<usize>,
}

impl Transmits {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of datagrams.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no datagram.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Forgets every datagram, keeping the memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// The datagrams, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.ends.iter().enumerate().map(move |(i, &end)| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.buf[start..end]
        })
    }

    /// Datagram `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.buf[start..end])
    }

    /// Adds a datagram.
    pub fn push(&mut self, datagram: &[u8]) {
        self.buf.extend_from_slice(datagram);
        self.ends.push(self.buf.len());
    }

    /// Removes the datagrams pushed since the buffer held `count` of them
    /// (used to undo a send that failed half way).
    pub(crate) fn truncate(&mut self, count: usize) {
        self.ends.truncate(count);
        let len = self.ends.last().copied().unwrap_or(0);
        self.buf.truncate(len);
    }

    /// Starts a frame at the end of the buffer; returns its offset.
    pub(crate) fn begin_frame(&mut self) -> usize {
        let start = self.buf.len();
        self.buf.resize(start + HEADER_LEN, 0);
        start
    }

    pub(crate) fn end_datagram(&mut self) {
        self.ends.push(self.buf.len());
    }
}
