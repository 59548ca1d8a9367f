//! The fragment header and the splitter: [`FragmentHeader`] (its wire form,
//! decoding and validation), [`FRAGMENT_HEADER_LEN`], [`fragment_count`], and
//! the [`Fragments`] iterator that [`fragments`] builds.

use std::iter::FusedIterator;
use std::slice::Chunks;

use super::ReassemblyError;

/// Length of the fragment header at the front of a STREAM frame's plaintext.
pub const FRAGMENT_HEADER_LEN: usize = 15;

/// Header of one fragment. See the [module docs](crate::stream) for the wire
/// layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Per-session id of the message, chosen by the sender.
    pub message_id: u32,
    /// Length of the whole message in bytes; never 0 in a valid header.
    pub total_len: u32,
    /// 0-based index of this fragment; below [`fragment_count`](Self::fragment_count).
    pub index: u32,
    /// Nominal fragment size `L`: every fragment but the last carries exactly
    /// this many bytes. Never 0 in a valid header.
    pub chunk_len: u16,
    /// Frame type of the reassembled message, carried through unchanged.
    pub inner_type: u8,
}

impl FragmentHeader {
    /// The 15-byte big-endian wire form of the header.
    pub fn encode(&self) -> [u8; FRAGMENT_HEADER_LEN] {
        let mut out = [0u8; FRAGMENT_HEADER_LEN];
        out[0..4].copy_from_slice(&self.message_id.to_be_bytes());
        out[4..8].copy_from_slice(&self.total_len.to_be_bytes());
        out[8..12].copy_from_slice(&self.index.to_be_bytes());
        out[12..14].copy_from_slice(&self.chunk_len.to_be_bytes());
        out[14] = self.inner_type;
        out
    }

    /// Parses the header off the front of `plaintext`; returns it and the
    /// chunk bytes after it.
    ///
    /// Validates that `total_len > 0`, `chunk_len > 0`, `index < count`, and
    /// that the chunk is exactly `chunk_len` bytes long, or exactly the
    /// remainder of the message for the last fragment. Does not judge
    /// `inner_type`: that is the session layer's vocabulary.
    pub fn decode(plaintext: &[u8]) -> Result<(FragmentHeader, &[u8]), ReassemblyError> {
        let Some((head, chunk)) = plaintext.split_first_chunk::<FRAGMENT_HEADER_LEN>() else {
            return Err(ReassemblyError::Truncated {
                len: plaintext.len(),
            });
        };
        let [m0, m1, m2, m3, t0, t1, t2, t3, i0, i1, i2, i3, c0, c1, inner_type] = *head;
        let header = FragmentHeader {
            message_id: u32::from_be_bytes([m0, m1, m2, m3]),
            total_len: u32::from_be_bytes([t0, t1, t2, t3]),
            index: u32::from_be_bytes([i0, i1, i2, i3]),
            chunk_len: u16::from_be_bytes([c0, c1]),
            inner_type,
        };
        header.validate_chunk(chunk.len())?;
        Ok((header, chunk))
    }

    /// Number of fragments of the message: `ceil(total_len / chunk_len)`.
    ///
    /// Returns 0 when `chunk_len` is 0 (such a header is invalid and describes
    /// no fragment).
    pub fn fragment_count(&self) -> u32 {
        match u32::from(self.chunk_len) {
            0 => 0,
            l => self.total_len.div_ceil(l),
        }
    }

    /// Checks the header fields alone: non-zero lengths and an index below
    /// the fragment count.
    pub fn validate(&self) -> Result<(), ReassemblyError> {
        if self.total_len == 0 {
            return Err(ReassemblyError::InvalidHeader {
                reason: "total_len is 0",
            });
        }
        if self.chunk_len == 0 {
            return Err(ReassemblyError::InvalidHeader {
                reason: "chunk_len is 0",
            });
        }
        let count = self.fragment_count();
        if self.index >= count {
            return Err(ReassemblyError::IndexOutOfRange {
                index: self.index,
                count,
            });
        }
        Ok(())
    }

    /// The number of chunk bytes this fragment must carry, or `None` if the
    /// header is invalid (see [`validate`](Self::validate)).
    pub fn expected_chunk_len(&self) -> Option<usize> {
        self.validate().ok()?;
        let count = self.fragment_count();
        let len = if self.index + 1 < count {
            // `index + 1` cannot overflow: index < count <= u32::MAX.
            u64::from(self.chunk_len)
        } else {
            // The last fragment: total_len - (count - 1) * L, in u64 so that
            // the product cannot overflow (u32 * u16 < 2^48). It lies in
            // 1..=L by definition of count = ceil(total_len / L).
            let before = u64::from(count - 1) * u64::from(self.chunk_len);
            u64::from(self.total_len).checked_sub(before)?
        };
        usize::try_from(len).ok()
    }

    /// Byte offset of this fragment's chunk in the message: `index * chunk_len`.
    pub(super) fn offset(&self) -> u64 {
        // u32 * u16 < 2^48: no overflow in u64.
        u64::from(self.index) * u64::from(self.chunk_len)
    }

    /// [`validate`](Self::validate) plus the chunk length check.
    pub(super) fn validate_chunk(&self, actual: usize) -> Result<(), ReassemblyError> {
        self.validate()?;
        match self.expected_chunk_len() {
            Some(expected) if expected == actual => Ok(()),
            Some(expected) => Err(ReassemblyError::ChunkLengthMismatch {
                index: self.index,
                expected,
                actual,
            }),
            // Unreachable after `validate` succeeded, except on a platform whose
            // usize cannot hold a u16; refuse rather than assume.
            None => Err(ReassemblyError::InvalidHeader {
                reason: "chunk length not representable",
            }),
        }
    }
}

/// Number of fragments for a message of `total_len` bytes with nominal chunk
/// size `chunk_len`: `ceil(total_len / chunk_len)`, or 0 when `chunk_len` is 0.
pub fn fragment_count(total_len: usize, chunk_len: usize) -> usize {
    match chunk_len {
        0 => 0,
        l => total_len.div_ceil(l),
    }
}

/// Iterator over the fragments of one message, in index order: each item is a
/// header and the chunk bytes that follow it on the wire.
///
/// Built by [`Fragments::new`] or [`fragments`], which check the preconditions
/// so that iteration itself cannot fail.
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    chunks: Chunks<'a, u8>,
    message_id: u32,
    inner_type: u8,
    total_len: u32,
    chunk_len: u16,
    next_index: u32,
}

impl<'a> Fragments<'a> {
    /// Prepares to split `payload` into chunks of `chunk_len` bytes (the last
    /// one shorter).
    ///
    /// Preconditions, refused with [`ReassemblyError::CannotSplit`]:
    /// `payload` is non-empty, at most `u32::MAX` bytes long, and
    /// `1 <= chunk_len <= u16::MAX`. The caller picks `chunk_len` so that
    /// header plus chunk fit in the plaintext of one frame.
    pub fn new(
        message_id: u32,
        inner_type: u8,
        payload: &'a [u8],
        chunk_len: usize,
    ) -> Result<Self, ReassemblyError> {
        if payload.is_empty() {
            return Err(ReassemblyError::CannotSplit {
                reason: "the payload is empty",
            });
        }
        let Ok(total_len) = u32::try_from(payload.len()) else {
            return Err(ReassemblyError::CannotSplit {
                reason: "the payload is longer than u32::MAX bytes",
            });
        };
        let chunk_len16 = match u16::try_from(chunk_len) {
            Ok(0) => {
                return Err(ReassemblyError::CannotSplit {
                    reason: "chunk_len is 0",
                })
            }
            Ok(l) => l,
            Err(_) => {
                return Err(ReassemblyError::CannotSplit {
                    reason: "chunk_len is larger than u16::MAX",
                })
            }
        };
        Ok(Self {
            chunks: payload.chunks(chunk_len),
            message_id,
            inner_type,
            total_len,
            chunk_len: chunk_len16,
            next_index: 0,
        })
    }
}

impl<'a> Iterator for Fragments<'a> {
    type Item = (FragmentHeader, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let chunk = self.chunks.next()?;
        let header = FragmentHeader {
            message_id: self.message_id,
            total_len: self.total_len,
            index: self.next_index,
            chunk_len: self.chunk_len,
            inner_type: self.inner_type,
        };
        // Cannot wrap: there are at most total_len <= u32::MAX chunks, so the
        // last index handed out is below u32::MAX.
        self.next_index = self.next_index.wrapping_add(1);
        Some((header, chunk))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Fragments<'_> {}

impl FusedIterator for Fragments<'_> {}

/// Splits `payload` into `(header, chunk)` pairs in index order.
///
/// Shorthand for [`Fragments::new`]; see there for the preconditions.
pub fn fragments(
    message_id: u32,
    inner_type: u8,
    payload: &[u8],
    chunk_len: usize,
) -> Result<Fragments<'_>, ReassemblyError> {
    Fragments::new(message_id, inner_type, payload, chunk_len)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::stream::test_util::{header, payload};

    #[test]
    fn encode_layout_is_big_endian() {
        let h = FragmentHeader {
            message_id: 0x0102_0304,
            total_len: 0x0506_0708,
            index: 0x090A_0B0C,
            chunk_len: 0x0D0E,
            inner_type: 0x80,
        };
        assert_eq!(
            h.encode(),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0x80]
        );
    }

    #[test]
    fn decode_refuses_bad_headers() {
        assert_eq!(
            FragmentHeader::decode(&[0u8; 14]),
            Err(ReassemblyError::Truncated { len: 14 })
        );
        let wire = |h: FragmentHeader, chunk: usize| {
            let mut v = h.encode().to_vec();
            v.resize(FRAGMENT_HEADER_LEN + chunk, 0xAA);
            v
        };
        assert!(matches!(
            FragmentHeader::decode(&wire(header(1, 0, 0, 10), 0)),
            Err(ReassemblyError::InvalidHeader { .. })
        ));
        assert!(matches!(
            FragmentHeader::decode(&wire(header(1, 10, 0, 0), 0)),
            Err(ReassemblyError::InvalidHeader { .. })
        ));
        assert_eq!(
            FragmentHeader::decode(&wire(header(1, 25, 3, 10), 5)),
            Err(ReassemblyError::IndexOutOfRange { index: 3, count: 3 })
        );
        // Middle fragment: exactly L bytes.
        assert_eq!(
            FragmentHeader::decode(&wire(header(1, 25, 1, 10), 9)),
            Err(ReassemblyError::ChunkLengthMismatch {
                index: 1,
                expected: 10,
                actual: 9
            })
        );
        // Last fragment: exactly the remainder.
        assert_eq!(
            FragmentHeader::decode(&wire(header(1, 25, 2, 10), 10)),
            Err(ReassemblyError::ChunkLengthMismatch {
                index: 2,
                expected: 5,
                actual: 10
            })
        );
        let last = wire(header(1, 25, 2, 10), 5);
        let (h, chunk) = FragmentHeader::decode(&last).unwrap();
        assert_eq!((h.index, chunk.len()), (2, 5));
        // A nominal chunk size above the message size is one short fragment.
        let short = wire(header(1, 3, 0, 1000), 3);
        let (h, chunk) = FragmentHeader::decode(&short).unwrap();
        assert_eq!((h.fragment_count(), chunk.len()), (1, 3));
    }

    #[test]
    fn fragment_count_edges() {
        assert_eq!(fragment_count(0, 10), 0);
        assert_eq!(fragment_count(1, 10), 1);
        assert_eq!(fragment_count(10, 10), 1);
        assert_eq!(fragment_count(11, 10), 2);
        assert_eq!(fragment_count(11, 0), 0);
        assert_eq!(header(0, u32::MAX, 0, 1).fragment_count(), u32::MAX);
        assert_eq!(header(0, 10, 0, 0).fragment_count(), 0);
    }

    #[test]
    fn splitter_refuses_bad_arguments() {
        let err = |r: Result<Fragments<'_>, ReassemblyError>| r.err();
        assert!(matches!(
            err(fragments(1, 1, &[], 100)),
            Some(ReassemblyError::CannotSplit { .. })
        ));
        assert!(matches!(
            err(fragments(1, 1, &[1, 2, 3], 0)),
            Some(ReassemblyError::CannotSplit { .. })
        ));
        assert!(matches!(
            err(fragments(1, 1, &[1, 2, 3], usize::from(u16::MAX) + 1)),
            Some(ReassemblyError::CannotSplit { .. })
        ));
        assert!(fragments(1, 1, &[1, 2, 3], usize::from(u16::MAX)).is_ok());
    }

    #[test]
    fn splitter_is_exact_size_and_decodable() {
        let msg = payload(2500, 1);
        let mut it = fragments(9, 0x80, &msg, 1000).unwrap();
        assert_eq!(it.len(), 3);
        it.next();
        assert_eq!(it.len(), 2);
        let mut joined = Vec::new();
        for (i, (h, chunk)) in fragments(9, 0x80, &msg, 1000).unwrap().enumerate() {
            assert_eq!(h, header_with(9, 2500, i as u32, 1000, 0x80));
            let mut wire = h.encode().to_vec();
            wire.extend_from_slice(chunk);
            let (back, c) = FragmentHeader::decode(&wire).unwrap();
            assert_eq!(back, h);
            joined.extend_from_slice(c);
        }
        assert_eq!(joined, msg);
    }

    fn header_with(
        message_id: u32,
        total_len: u32,
        index: u32,
        chunk_len: u16,
        inner_type: u8,
    ) -> FragmentHeader {
        FragmentHeader {
            inner_type,
            ..header(message_id, total_len, index, chunk_len)
        }
    }

    proptest! {
        #[test]
        fn header_round_trip(
            message_id in any::<u32>(),
            total_len in 1u32..=u32::MAX,
            chunk_len in 1u16..=u16::MAX,
            index_seed in any::<u32>(),
            inner_type in any::<u8>(),
        ) {
            let count = total_len.div_ceil(u32::from(chunk_len));
            let h = FragmentHeader {
                message_id,
                total_len,
                index: index_seed % count,
                chunk_len,
                inner_type,
            };
            let len = h.expected_chunk_len().unwrap();
            prop_assert!(len >= 1 && len <= usize::from(chunk_len));
            let mut wire = h.encode().to_vec();
            wire.resize(FRAGMENT_HEADER_LEN + len, 0x5A);
            let (back, chunk) = FragmentHeader::decode(&wire).unwrap();
            prop_assert_eq!(back, h);
            prop_assert_eq!(chunk.len(), len);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok((h, chunk)) = FragmentHeader::decode(&bytes) {
                prop_assert_eq!(&h.encode()[..], &bytes[..FRAGMENT_HEADER_LEN]);
                prop_assert_eq!(Some(chunk.len()), h.expected_chunk_len());
            }
        }
    }
}
