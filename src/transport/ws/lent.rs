//! Buffers lent to tungstenite with the messages `send_owned` hands over,
//! and their way back to the transport.
//!
//! tungstenite takes a message as `Bytes`. A [`Lent`] buffer wrapped in
//! `Bytes` goes back to its transport's [`Spares`] when tungstenite drops
//! it, having copied it into its write buffer, instead of to the allocator.
//! The reactor's transmit buffer and these trade places message by message,
//! so a stream of large messages is framed without a copy or an allocation.

use std::sync::{Arc, Mutex};

use tungstenite::Bytes;

/// The spare buffers of one transport. Only its reactor thread takes the
/// lock, so it is never contended.
#[derive(Debug, Default, Clone)]
pub(crate) struct Spares(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spares {
    /// Spare buffers kept at most.
    const KEPT: usize = 16;
    /// The largest capacity kept.
    const LARGEST: usize = 1 << 20;

    /// Lends `buf` to tungstenite: `buf` becomes a spare (empty, any
    /// capacity) and its contents a `Bytes` that comes home when dropped.
    pub(crate) fn lend(&self, buf: &mut Vec<u8>) -> Bytes {
        let spare = self.lock().pop().unwrap_or_default();
        let lent = Lent {
            buf: std::mem::replace(buf, spare),
            home: self.clone(),
        };
        Bytes::from_owner(lent)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A message's buffer while tungstenite holds it.
struct Lent {
    buf: Vec<u8>,
    home: Spares,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() > Spares::LARGEST {
            return;
        }
        buf.clear();
        let mut spares = self.home.lock();
        if spares.len() < Spares::KEPT {
            spares.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_buffer_comes_back_as_a_spare() {
        let spares = Spares::default();
        let mut buf = b"message".to_vec();
        let capacity = buf.capacity();
        let bytes = spares.lend(&mut buf);
        assert!(buf.is_empty());
        assert_eq!(&bytes[..], b"message");
        assert_eq!(spares.len(), 0);
        drop(bytes);
        assert_eq!(spares.len(), 1);
        let mut next = Vec::new();
        let _ = spares.lend(&mut next);
        assert!(
            next.is_empty() && next.capacity() == capacity,
            "the spare is reused"
        );
    }

    #[test]
    fn huge_buffers_go_to_the_allocator() {
        let spares = Spares::default();
        let mut buf = vec![0u8; Spares::LARGEST + 1];
        drop(spares.lend(&mut buf));
        assert_eq!(spares.len(), 0);
    }
}
