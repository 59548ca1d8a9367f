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

    /// Moves every datagram of `other` to the end of this one, leaving
    /// `other` empty (its buffer is taken when this one is empty).
    pub fn append(&mut self, other: &mut Transmits) {
        if self.is_empty() {
            std::mem::swap(self, other);
            other.clear();
            return;
        }
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        other.clear();
    }

    /// Takes datagram `i` out, keeping the others in order.
    pub(crate) fn remove(&mut self, i: usize) -> Option<Vec<u8>> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let datagram: Vec<u8> = self.buf.drain(start..end).collect();
        self.ends.remove(i);
        for e in &mut self.ends[i..] {
            *e -= end - start;
        }
        Some(datagram)
    }

    /// Takes the first datagram out.
    pub(crate) fn remove_first(&mut self) -> Option<Vec<u8>> {
        self.remove(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn of(datagrams: &[&[u8]]) -> Transmits {
        let mut t = Transmits::new();
        for d in datagrams {
            t.push(d);
        }
        t
    }

    fn all(t: &Transmits) -> Vec<Vec<u8>> {
        t.iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn append_moves_every_datagram_in_order() {
        let mut a = of(&[b"ab", b"c"]);
        let mut b = of(&[b"def", b"", b"g"]);
        a.append(&mut b);
        assert_eq!(
            all(&a),
            vec![
                b"ab".to_vec(),
                b"c".to_vec(),
                b"def".to_vec(),
                vec![],
                b"g".to_vec()
            ]
        );
        assert!(b.is_empty());
        // Into an empty one: the buffer moves.
        let mut empty = Transmits::new();
        let ptr = a.buf.as_ptr();
        empty.append(&mut a);
        assert_eq!(empty.buf.as_ptr(), ptr);
        assert_eq!(empty.len(), 5);
        assert!(a.is_empty() && a.bytes() == 0);
    }

    #[test]
    fn remove_keeps_the_others_in_order() {
        let mut t = of(&[b"one", b"two", b"three"]);
        assert_eq!(t.remove(1), Some(b"two".to_vec()));
        assert_eq!(all(&t), vec![b"one".to_vec(), b"three".to_vec()]);
        assert_eq!(t.remove_first(), Some(b"one".to_vec()));
        assert_eq!(all(&t), vec![b"three".to_vec()]);
        assert_eq!(t.remove(1), None);
        assert_eq!(t.remove_first(), Some(b"three".to_vec()));
        assert_eq!(t.remove_first(), None);
        assert_eq!(t.bytes(), 0);
    }
}
