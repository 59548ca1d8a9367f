//! Wire format: the byte layout of a frame.
//!
//! Every frame starts with a fixed 29-byte header, followed by `payload_len`
//! bytes of payload. A datagram (or a WebSocket message) carries one or more
//! frames back to back. All integers are big-endian.
//!
//! ```text
//!  0      2   3    4     5            13        17              25         29
//! +------+---+----+-----+------------+---------+---------------+----------+----------...
//! | "ST" | v |type|flags| session id |stream id| packet number |payload len| payload
//! +------+---+----+-----+------------+---------+---------------+----------+----------...
//!   2 B   1B  1 B  1 B      8 B         4 B          8 B           4 B
//! ```
//!
//! For sealed frames (DATA, CONTROL, STREAM and the application types) the
//! payload is the AEAD ciphertext followed by its 16-byte tag, the whole header
//! is the associated data and the packet number is the nonce. A sealed UDP data
//! frame therefore costs [`HEADER_LEN`] + [`TAG_LEN`] = 45 bytes of overhead.
//! The full specification, with the payload of every frame type, is
//! `docs/PROTOCOL.md`.
//!
//! Decoding follows smoltcp's "parse, don't validate": [`Header::decode`] checks
//! every field once and returns a typed [`FrameError`]; it never panics and
//! never allocates. [`Frames`] walks the frames of a datagram without copying.

use std::fmt;

/// The two magic bytes every frame starts with (`ST`, as in the original STT).
pub const MAGIC: [u8; 2] = *b"ST";
/// The wire format version this crate speaks.
pub const VERSION: u8 = 1;
/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 29;
/// Length of the AEAD authentication tag that ends every sealed payload.
pub const TAG_LEN: usize = 16;
/// Largest payload a frame may declare (16 MiB plus room for a tag and a
/// fragment header): bounds what a receiver will ever be asked to buffer.
pub const MAX_PAYLOAD_LEN: u32 = (16 << 20) + 64;
/// Smallest datagram a path must carry: handshake message 1 must fit. Also
/// exported as `session::MIN_DATAGRAM_SIZE`.
pub const MIN_DATAGRAM_SIZE: usize = 256;
/// Largest UDP payload over IPv4 (65535 − 20 − 8). Also exported as
/// `session::MAX_UDP_DATAGRAM_SIZE`.
pub const MAX_UDP_DATAGRAM_SIZE: usize = 65_507;

/// The kind of a frame (byte 3 of the header).
///
/// The first five values are those of the original STT, so that its users
/// find the names they know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// `0x01`: a complete application message on `stream_id` (sealed).
    Data,
    /// `0x02`: a control message (sealed); its first plaintext byte is a
    /// [`ControlType`].
    Control,
    /// `0x03`: one fragment of a message larger than the path MTU (sealed);
    /// the plaintext starts with a [`FragmentHeader`](crate::stream::FragmentHeader).
    Stream,
    /// `0x04`: address validation (cookie) between a server under load and a
    /// client, sent in the clear. See `docs/PROTOCOL.md`.
    Auth,
    /// `0x05`: a Noise handshake message; `packet_number` holds its position
    /// in the handshake (1, 2 or 3).
    Handshake,
    /// `0x80..=0xFF`: an application-defined message (sealed), routed by the
    /// node to the handler registered for that type.
    Application(u8),
}

impl FrameType {
    /// Wire value of [`FrameType::Data`].
    pub const DATA: u8 = 0x01;
    /// Wire value of [`FrameType::Control`].
    pub const CONTROL: u8 = 0x02;
    /// Wire value of [`FrameType::Stream`].
    pub const STREAM: u8 = 0x03;
    /// Wire value of [`FrameType::Auth`].
    pub const AUTH: u8 = 0x04;
    /// Wire value of [`FrameType::Handshake`].
    pub const HANDSHAKE: u8 = 0x05;
    /// First wire value reserved for application-defined types.
    pub const APPLICATION_MIN: u8 = 0x80;

    /// The type for a wire byte, or `None` for an unassigned value
    /// (`0x00` and `0x06..=0x7F`).
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            Self::DATA => Self::Data,
            Self::CONTROL => Self::Control,
            Self::STREAM => Self::Stream,
            Self::AUTH => Self::Auth,
            Self::HANDSHAKE => Self::Handshake,
            0x80..=0xFF => Self::Application(value),
            _ => return None,
        })
    }

    /// The wire byte.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Data => Self::DATA,
            Self::Control => Self::CONTROL,
            Self::Stream => Self::STREAM,
            Self::Auth => Self::AUTH,
            Self::Handshake => Self::HANDSHAKE,
            Self::Application(v) => v,
        }
    }

    /// Whether frames of this type carry an AEAD-sealed payload.
    pub const fn is_sealed(self) -> bool {
        !matches!(self, Self::Auth | Self::Handshake)
    }

    /// Whether this type can carry an application message (DATA or an
    /// application type), i.e. may be the inner type of a fragmented message.
    pub const fn is_message(self) -> bool {
        matches!(self, Self::Data | Self::Application(_))
    }
}

/// Header flags (byte 4). Unassigned bits must be zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// Key phase of a sealed frame: flips each time the sender updates its
    /// key (see `docs/PROTOCOL.md`, "Key update").
    pub const KEY_PHASE: Flags = Flags(0x01);
    /// The sealed plaintext is a batch of length-prefixed messages rather than
    /// one message (DATA and application types only).
    pub const BATCH: Flags = Flags(0x02);
    /// Every bit this version assigns.
    pub const ALL: Flags = Flags(0x03);
    /// No flag set.
    pub const EMPTY: Flags = Flags(0);

    /// Flags from a wire byte, refusing unassigned bits.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !Self::ALL.0 != 0 {
            None
        } else {
            Some(Flags(bits))
        }
    }

    /// The wire byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the flags of `other` set (`on`) or cleared.
    #[must_use]
    pub const fn with(self, other: Flags, on: bool) -> Self {
        if on {
            Flags(self.0 | other.0)
        } else {
            Flags(self.0 & !other.0)
        }
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_set();
        if self.contains(Self::KEY_PHASE) {
            list.entry(&"KEY_PHASE");
        }
        if self.contains(Self::BATCH) {
            list.entry(&"BATCH");
        }
        list.finish()
    }
}

/// Identifies a session on both peers. Chosen at random by the initiator
/// (from a CSPRNG): it cannot be derived from anything an observer sees.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({:016x})", self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

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

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than the header or the declared payload needs.
    #[error("truncated frame: needed {needed} bytes, got {got}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The frame does not start with `ST`: not stt traffic.
    #[error("not an stt frame: magic {0:02x?} instead of \"ST\"")]
    BadMagic([u8; 2]),
    /// A version this implementation does not speak.
    #[error("unsupported wire version {0} (this build speaks version {VERSION})")]
    UnsupportedVersion(u8),
    /// An unassigned frame type.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// A flag bit this version does not assign.
    #[error("reserved flag bits set: 0x{0:02x}")]
    ReservedFlags(u8),
    /// Declared payload larger than [`MAX_PAYLOAD_LEN`].
    #[error("declared payload of {0} bytes exceeds the {MAX_PAYLOAD_LEN}-byte limit")]
    PayloadTooLarge(u32),
    /// A sealed frame too short to hold its tag.
    #[error("sealed frame payload of {0} bytes cannot hold the 16-byte tag")]
    MissingTag(u32),
    /// The BATCH flag on a frame type that carries no messages.
    #[error("BATCH flag on frame type 0x{0:02x}, which carries no messages")]
    BatchOnNonMessage(u8),
    /// A control payload that does not parse.
    #[error("malformed control message: {0}")]
    BadControl(&'static str),
    /// A batch payload that does not parse.
    #[error("malformed batch: {0}")]
    BadBatch(&'static str),
}

/// Subtype of a CONTROL frame: its first plaintext byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ControlType {
    /// Liveness probe; the peer answers with a pong echoing the token.
    Ping = 0x01,
    /// Answer to a ping.
    Pong = 0x02,
    /// Flow-control credit (advisory in this version).
    FlowCredit = 0x03,
    /// Asks the peer to update its sending key now.
    KeyRotation = 0x04,
    /// The sender closes the session.
    Close = 0x05,
    /// The sender reports an error without closing.
    Error = 0x06,
}

/// Longest reason text carried by a close or error message.
pub const MAX_REASON_LEN: usize = 1024;

/// A decoded control message (the plaintext of a CONTROL frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Liveness probe carrying an opaque token (the sender's clock, in practice).
    Ping {
        /// Echoed by the pong.
        token: u64,
    },
    /// Answer to [`Control::Ping`].
    Pong {
        /// The ping's token.
        token: u64,
    },
    /// Flow-control credit: how many more bytes the sender is ready to take.
    FlowCredit {
        /// Credit in bytes.
        bytes: u64,
    },
    /// Asks the peer to update its sending key (see `docs/PROTOCOL.md`).
    KeyRotation,
    /// Closes the session.
    Close {
        /// Machine-readable code (see [`close_code`]).
        code: u16,
        /// Human-readable reason, at most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
    /// Reports an error.
    Error {
        /// Machine-readable code.
        code: u16,
        /// Human-readable message, at most [`MAX_REASON_LEN`] bytes.
        message: String,
    },
}

/// Well-known close codes carried by [`Control::Close`].
pub mod close_code {
    /// The application closed the session.
    pub const NORMAL: u16 = 0;
    /// The node is shutting down.
    pub const SHUTDOWN: u16 = 1;
    /// The peer violated the protocol.
    pub const PROTOCOL_ERROR: u16 = 2;
    /// Nothing arrived within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 3;
    /// Too many packets failed authentication: the keys must be considered
    /// under attack.
    pub const INTEGRITY_LIMIT: u16 = 4;
    /// The packet number space is exhausted.
    pub const PACKET_NUMBERS_EXHAUSTED: u16 = 5;
}

impl Control {
    /// Appends the encoded control message (the plaintext) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Control::Ping { token } => {
                out.push(ControlType::Ping as u8);
                out.extend_from_slice(&token.to_be_bytes());
            }
            Control::Pong { token } => {
                out.push(ControlType::Pong as u8);
                out.extend_from_slice(&token.to_be_bytes());
            }
            Control::FlowCredit { bytes } => {
                out.push(ControlType::FlowCredit as u8);
                out.extend_from_slice(&bytes.to_be_bytes());
            }
            Control::KeyRotation => out.push(ControlType::KeyRotation as u8),
            Control::Close { code, reason: text }
            | Control::Error {
                code,
                message: text,
            } => {
                out.push(if matches!(self, Control::Close { .. }) {
                    ControlType::Close as u8
                } else {
                    ControlType::Error as u8
                });
                out.extend_from_slice(&code.to_be_bytes());
                let text = truncate_utf8(text, MAX_REASON_LEN);
                // MAX_REASON_LEN fits in a u16.
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
    }

    /// Parses a control plaintext. Trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let (&kind, body) = bytes.split_first().ok_or(FrameError::BadControl("empty"))?;
        let u64_body = || -> Result<u64, FrameError> {
            let b: [u8; 8] = body
                .try_into()
                .map_err(|_| FrameError::BadControl("expected an 8-byte body"))?;
            Ok(u64::from_be_bytes(b))
        };
        Ok(match kind {
            0x01 => Control::Ping { token: u64_body()? },
            0x02 => Control::Pong { token: u64_body()? },
            0x03 => Control::FlowCredit { bytes: u64_body()? },
            0x04 if body.is_empty() => Control::KeyRotation,
            0x04 => return Err(FrameError::BadControl("key rotation has no body")),
            0x05 | 0x06 => {
                if body.len() < 4 {
                    return Err(FrameError::BadControl("close/error shorter than 4 bytes"));
                }
                let code = u16::from_be_bytes([body[0], body[1]]);
                let len = u16::from_be_bytes([body[2], body[3]]) as usize;
                let text = &body[4..];
                if len != text.len() || len > MAX_REASON_LEN {
                    return Err(FrameError::BadControl("reason length mismatch"));
                }
                let text = std::str::from_utf8(text)
                    .map_err(|_| FrameError::BadControl("reason is not UTF-8"))?
                    .to_owned();
                if kind == 0x05 {
                    Control::Close { code, reason: text }
                } else {
                    Control::Error {
                        code,
                        message: text,
                    }
                }
            }
            _ => return Err(FrameError::BadControl("unknown control subtype")),
        })
    }
}

/// Appends one record of a BATCH plaintext: a 4-byte length, then the message.
pub fn write_batch_record(out: &mut Vec<u8>, message: &[u8]) {
    // Batches are bounded by MAX_PAYLOAD_LEN, far below u32::MAX.
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
}

/// Iterator over the messages of a BATCH plaintext.
#[derive(Debug, Clone)]
pub struct BatchRecords<'a> {
    rest: &'a [u8],
}

impl<'a> BatchRecords<'a> {
    /// Walks the records of `plaintext`.
    pub fn new(plaintext: &'a [u8]) -> Self {
        BatchRecords { rest: plaintext }
    }
}

impl<'a> Iterator for BatchRecords<'a> {
    type Item = Result<&'a [u8], FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, body)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(FrameError::BadBatch("record shorter than its length")));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if body.len() < len {
            self.rest = &[];
            return Some(Err(FrameError::BadBatch("record longer than the batch")));
        }
        let (record, rest) = body.split_at(len);
        self.rest = rest;
        Some(Ok(record))
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
    use super::*;
    use proptest::prelude::*;

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

        #[test]
        fn control_round_trip(token in any::<u64>(), code in any::<u16>(), reason in ".{0,300}") {
            for c in [
                Control::Ping { token },
                Control::Pong { token },
                Control::FlowCredit { bytes: token },
                Control::KeyRotation,
                Control::Close { code, reason: reason.clone() },
                Control::Error { code, message: reason.clone() },
            ] {
                let mut out = Vec::new();
                c.encode(&mut out);
                prop_assert_eq!(Control::decode(&out).unwrap(), c);
            }
        }

        #[test]
        fn batch_round_trip(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..20)) {
            let mut out = Vec::new();
            for m in &msgs {
                write_batch_record(&mut out, m);
            }
            let got: Vec<&[u8]> = BatchRecords::new(&out).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(got.len(), msgs.len());
            for (g, m) in got.iter().zip(&msgs) {
                prop_assert_eq!(*g, &m[..]);
            }
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
        b[3] = 0x06;
        assert_eq!(Header::decode(&b), Err(FrameError::UnknownType(0x06)));
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

    #[test]
    fn original_type_values_are_kept() {
        assert_eq!(FrameType::Data.to_u8(), 0x01);
        assert_eq!(FrameType::Control.to_u8(), 0x02);
        assert_eq!(FrameType::Stream.to_u8(), 0x03);
        assert_eq!(FrameType::Auth.to_u8(), 0x04);
        assert_eq!(FrameType::Handshake.to_u8(), 0x05);
        for v in 0..=255u8 {
            match FrameType::from_u8(v) {
                Some(t) => assert_eq!(t.to_u8(), v),
                None => assert!(v == 0 || (0x06..0x80).contains(&v)),
            }
        }
    }

    #[test]
    fn long_reasons_are_truncated_on_a_char_boundary() {
        let reason = "é".repeat(MAX_REASON_LEN);
        let mut out = Vec::new();
        Control::Close { code: 1, reason }.encode(&mut out);
        match Control::decode(&out).unwrap() {
            Control::Close { reason, .. } => {
                assert!(reason.len() <= MAX_REASON_LEN);
                assert!(reason.chars().all(|c| c == 'é'));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
