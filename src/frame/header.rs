//! The fixed header and the frames of a datagram: [`Header`] (encode,
//! decode), [`Frame`] (one frame borrowed from a datagram) and the [`Frames`]
//! iterator.

use super::{
    Flags, FrameError, FrameType, SessionId, HEADER_LEN, MAGIC, MAX_PAYLOAD_LEN, TAG_LEN, VERSION,
};

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Frame type.
    pub frame_type: FrameType,
    /// Flags.
    pub flags: Flags,
    /// Session the frame belongs to.
    pub session_id: SessionId,
    /// Stream within the session (0 for handshake, control and auth frames).
    pub stream_id: u32,
    /// Per-direction packet number: the AEAD nonce of a sealed frame, the
    /// message position of a handshake frame.
    pub packet_number: u64,
    /// Length of the payload that follows the header.
    pub payload_len: u32,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = VERSION;
        out[3] = self.frame_type.to_u8();
        out[4] = self.flags.bits();
        out[5..13].copy_from_slice(&self.session_id.0.to_be_bytes());
        out[13..17].copy_from_slice(&self.stream_id.to_be_bytes());
        out[17..25].copy_from_slice(&self.packet_number.to_be_bytes());
        out[25..29].copy_from_slice(&self.payload_len.to_be_bytes());
    }

    /// The encoded header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        self.encode(&mut out);
        out
    }

    /// Appends the encoded header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// Parses a header from the start of `bytes`. Does not check that the
    /// payload is present: [`Frame::decode`] does.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        };
        if h[0..2] != MAGIC {
            return Err(FrameError::BadMagic([h[0], h[1]]));
        }
        if h[2] != VERSION {
            return Err(FrameError::UnsupportedVersion(h[2]));
        }
        let frame_type = FrameType::from_u8(h[3]).ok_or(FrameError::UnknownType(h[3]))?;
        let flags = Flags::from_bits(h[4]).ok_or(FrameError::ReservedFlags(h[4]))?;
        let payload_len = be_u32(&h[25..29]);
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLarge(payload_len));
        }
        if frame_type.is_sealed() && (payload_len as usize) < TAG_LEN {
            return Err(FrameError::MissingTag(payload_len));
        }
        if flags.contains(Flags::BATCH) && !frame_type.is_message() {
            return Err(FrameError::BatchOnNonMessage(h[3]));
        }
        Ok(Header {
            frame_type,
            flags,
            session_id: SessionId(be_u64(&h[5..13])),
            stream_id: be_u32(&h[13..17]),
            packet_number: be_u64(&h[17..25]),
            payload_len,
        })
    }
}

/// A frame borrowed from a datagram: its header and payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The decoded header.
    pub header: Header,
    /// The encoded header bytes (the associated data of a sealed frame).
    pub header_bytes: &'a [u8; HEADER_LEN],
    /// The payload (ciphertext and tag for a sealed frame).
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Decodes the first frame of `bytes`; returns it and the bytes after it.
    pub fn decode(bytes: &'a [u8]) -> Result<(Frame<'a>, &'a [u8]), FrameError> {
        let header = Header::decode(bytes)?;
        let end = HEADER_LEN + header.payload_len as usize;
        if bytes.len() < end {
            return Err(FrameError::Truncated {
                needed: end,
                got: bytes.len(),
            });
        }
        let (header_bytes, rest) = bytes.split_at(HEADER_LEN);
        let (payload, rest) = rest.split_at(header.payload_len as usize);
        // `decode` succeeded, so `bytes` holds at least HEADER_LEN bytes.
        let header_bytes = header_bytes.try_into().map_err(|_| FrameError::Truncated {
            needed: HEADER_LEN,
            got: bytes.len(),
        })?;
        Ok((
            Frame {
                header,
                header_bytes,
                payload,
            },
            rest,
        ))
    }
}

/// Iterator over the frames of one datagram. Stops at the first error, which
/// it yields once.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Frames<'a> {
    /// Walks the frames of `datagram`.
    pub fn new(datagram: &'a [u8]) -> Self {
        Frames { rest: datagram }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match Frame::decode(self.rest) {
            Ok((frame, rest)) => {
                self.rest = rest;
                Some(Ok(frame))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::frame::{BatchRecords, Control};

    fn arb_type() -> impl Strategy<Value = FrameType> {
        prop_oneof![
            Just(FrameType::Data),
            Just(FrameType::Control),
            Just(FrameType::Stream),
            Just(FrameType::Auth),
            Just(FrameType::Handshake),
            (0x80u8..=0xFF).prop_map(FrameType::Application),
        ]
    }

    prop_compose! {
        fn arb_frame()(
            frame_type in arb_type(),
            phase in any::<bool>(),
            batch in any::<bool>(),
            session in any::<u64>(),
            stream_id in any::<u32>(),
            packet_number in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 16..300),
        ) -> (Header, Vec<u8>) {
            let flags = Flags::EMPTY
                .with(Flags::KEY_PHASE, phase)
                .with(Flags::BATCH, batch && frame_type.is_message());
            (Header {
                frame_type,
                flags,
                session_id: SessionId(session),
                stream_id,
                packet_number,
                payload_len: payload.len() as u32,
            }, payload)
        }
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(arb_frame(), 1..5)) {
            let mut datagram = Vec::new();
            for (h, p) in &frames {
                h.write(&mut datagram);
                datagram.extend_from_slice(p);
            }
            let decoded: Vec<_> = Frames::new(&datagram).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(decoded.len(), frames.len());
            for (d, (h, p)) in decoded.iter().zip(&frames) {
                prop_assert_eq!(&d.header, h);
                prop_assert_eq!(d.payload, &p[..]);
                prop_assert_eq!(&d.header_bytes[..], &h.to_bytes()[..]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for f in Frames::new(&bytes) {
                let _ = f;
            }
            let _ = Control::decode(&bytes);
            for r in BatchRecords::new(&bytes) {
                let _ = r;
            }
        }

        /// Bytes that start with a valid header prefix exercise the deeper
        /// checks instead of failing on the magic.
        #[test]
        fn mutated_headers_never_panic(
            (h, p) in arb_frame(),
            pos in 0usize..HEADER_LEN,
            byte in any::<u8>(),
            cut in 0usize..400,
        ) {
            let mut bytes = h.to_bytes().to_vec();
            bytes.extend_from_slice(&p);
            bytes[pos] = byte;
            bytes.truncate(cut);
            let _ = Frames::new(&bytes).count();
        }
    }

    #[test]
    fn header_is_29_bytes_and_overhead_is_45() {
        assert_eq!(HEADER_LEN, 29);
        const { assert!(HEADER_LEN <= 32) };
        assert_eq!(HEADER_LEN + TAG_LEN, 45);
    }

    #[test]
    fn typed_errors() {
        let h = Header {
            frame_type: FrameType::Data,
            flags: Flags::EMPTY,
            session_id: SessionId(1),
            stream_id: 0,
            packet_number: 0,
            payload_len: 16,
        };
        let good = h.to_bytes();
        assert!(matches!(
            Header::decode(&good[..10]),
            Err(FrameError::Truncated {
                needed: 29,
                got: 10
            })
        ));
        let mut b = good;
        b[0] = b'X';
        assert_eq!(Header::decode(&b), Err(FrameError::BadMagic([b'X', b'T'])));
        let mut b = good;
        b[2] = 9;
        assert_eq!(Header::decode(&b), Err(FrameError::UnsupportedVersion(9)));
        let mut b = good;
        b[3] = 0x07;
        assert_eq!(Header::decode(&b), Err(FrameError::UnknownType(0x07)));
        let mut b = good;
        b[4] = 0x80;
        assert_eq!(Header::decode(&b), Err(FrameError::ReservedFlags(0x80)));
        let mut b = good;
        b[25..29].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(Header::decode(&b), Err(FrameError::MissingTag(3)));
        let mut b = good;
        b[25..29].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Header::decode(&b),
            Err(FrameError::PayloadTooLarge(u32::MAX))
        );
        let mut b = good;
        b[3] = FrameType::CONTROL;
        b[4] = Flags::BATCH.bits();
        assert_eq!(Header::decode(&b), Err(FrameError::BatchOnNonMessage(2)));
        // Header fine, payload missing.
        assert!(matches!(
            Frame::decode(&good),
            Err(FrameError::Truncated {
                needed: 45,
                got: 29
            })
        ));
    }
}
