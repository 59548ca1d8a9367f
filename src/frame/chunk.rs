//! The plaintext of a CHANNEL frame: a sequence of [`Chunk`]s (ACK, MSG,
//! FLOW_CREDIT, PING, PADDING), their variable-length integers, encoding
//! and decoding.
//!
//! ```text
//! ACK          0x01 largest:v delay_us:v range_count:v first_range:v (gap:v len:v)*
//! MSG          0x02 flags:u8 channel:u8 type:u8 seq:v [total:v offset:v] len:v bytes
//! FLOW_CREDIT  0x03 max_data:v
//! PING         0x04
//! PADDING      0x00 ... (every byte to the end is zero)
//! ```
//!
//! `v` is a QUIC variable-length integer (RFC 9000 §16): the two top bits of
//! the first byte give its length (1, 2, 4 or 8 bytes), big-endian.

use super::FrameError;

/// Largest value a variable-length integer holds (2^62 − 1).
pub const VARINT_MAX: u64 = (1 << 62) - 1;
/// Ranges an ACK chunk may carry beyond the first.
pub const MAX_ACK_RANGES: usize = 64;

/// Chunk type bytes.
pub mod chunk_type {
    /// Zero padding to the end of the packet.
    pub const PADDING: u8 = 0x00;
    /// Acknowledged packet numbers.
    pub const ACK: u8 = 0x01;
    /// A message or a fragment of one.
    pub const MSG: u8 = 0x02;
    /// Flow-control credit (the same number as the CONTROL subtype).
    pub const FLOW_CREDIT: u8 = 0x03;
    /// Asks for an acknowledgement; carries nothing.
    pub const PING: u8 = 0x04;
}

/// How a channel delivers its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Delivery {
    /// Each message arrives at most once, in any order, or not at all.
    #[default]
    Unreliable,
    /// Like [`Unreliable`](Self::Unreliable), but a message older than one
    /// already delivered on the channel is dropped: the channel never goes
    /// backwards.
    UnreliableSequenced,
    /// Every message arrives exactly once, in any order.
    ReliableUnordered,
    /// Every message arrives exactly once, in the order sent.
    ReliableOrdered,
}

impl Delivery {
    /// The two bits on the wire.
    pub const fn to_bits(self) -> u8 {
        match self {
            Self::Unreliable => 0,
            Self::UnreliableSequenced => 1,
            Self::ReliableUnordered => 2,
            Self::ReliableOrdered => 3,
        }
    }

    /// The mode for two wire bits (only the low two bits are read).
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => Self::Unreliable,
            1 => Self::UnreliableSequenced,
            2 => Self::ReliableUnordered,
            _ => Self::ReliableOrdered,
        }
    }

    /// Name in statistics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unreliable => "unreliable",
            Self::UnreliableSequenced => "unreliable-sequenced",
            Self::ReliableUnordered => "reliable-unordered",
            Self::ReliableOrdered => "reliable-ordered",
        }
    }

    /// Whether the channel retransmits what is lost.
    pub const fn is_reliable(self) -> bool {
        matches!(self, Self::ReliableUnordered | Self::ReliableOrdered)
    }
}

/// MSG flag: the chunk is a fragment (carries total length and offset).
const MSG_FRAGMENT: u8 = 0x04;
/// MSG flag bits this version assigns (delivery mode and fragment).
const MSG_FLAGS: u8 = 0x07;

/// One part of a message on a channel: the whole message, or the bytes at
/// `offset` of a message of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgChunk<'a> {
    /// The channel's delivery mode.
    pub delivery: Delivery,
    /// Channel number.
    pub channel: u8,
    /// Message type: DATA (`0x01`) or an application type (`0x80..=0xFF`).
    pub msg_type: u8,
    /// The message's sequence number on its channel.
    pub seq: u64,
    /// For a fragment: the message's length and this part's offset.
    pub fragment: Option<(u64, u64)>,
    /// The bytes.
    pub data: &'a [u8],
}

impl MsgChunk<'_> {
    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        3 + 1
            + varint_len(self.seq)
            + self
                .fragment
                .map_or(0, |(t, o)| varint_len(t) + varint_len(o))
            + varint_len(self.data.len() as u64)
            + self.data.len()
    }

    /// Bytes of a MSG chunk besides its data, at most (for sizing parts).
    pub const MAX_OVERHEAD: usize = 4 + 8 * 4;
}

/// One acknowledged range, `smallest..=largest`.
pub type AckRange = (u64, u64);

/// A decoded chunk borrowed from a packet's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Zero bytes to the end of the packet.
    Padding(usize),
    /// Acknowledged packet numbers, newest range first.
    Ack(AckChunk<'a>),
    /// A message or a fragment.
    Msg(MsgChunk<'a>),
    /// The receiver accepts reliable message bytes up to `max_data` in all.
    FlowCredit {
        /// Cumulative limit.
        max_data: u64,
    },
    /// Asks for an acknowledgement.
    Ping,
}

/// An ACK chunk: its fixed fields and its ranges, decoded lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckChunk<'a> {
    /// Largest packet number acknowledged.
    pub largest: u64,
    /// How long the receiver held the acknowledgement back, in µs.
    pub delay_us: u64,
    /// The ranges below the first: `range_count` (gap, len) pairs.
    range_count: u64,
    first_range: u64,
    rest: &'a [u8],
}

impl<'a> AckChunk<'a> {
    /// The acknowledged ranges, largest first. Each range was checked when
    /// the chunk was decoded.
    pub fn ranges(&self) -> AckRanges<'a> {
        AckRanges {
            next_largest: Some(self.largest),
            first: Some(self.first_range),
            left: self.range_count,
            rest: self.rest,
        }
    }
}

/// Iterator over an ACK chunk's ranges, largest first.
#[derive(Debug, Clone)]
pub struct AckRanges<'a> {
    next_largest: Option<u64>,
    first: Option<u64>,
    left: u64,
    rest: &'a [u8],
}

impl Iterator for AckRanges<'_> {
    type Item = AckRange;

    fn next(&mut self) -> Option<AckRange> {
        let largest = self.next_largest?;
        let len = match self.first.take() {
            Some(len) => len,
            None => {
                if self.left == 0 {
                    return None;
                }
                self.left -= 1;
                let gap = read_varint(&mut self.rest).ok()?;
                let len = read_varint(&mut self.rest).ok()?;
                // Checked at decode: largest - gap - 2 - len >= 0.
                let largest = largest.checked_sub(gap + 2)?;
                self.next_largest = Some(largest);
                return self.emit(largest, len);
            }
        };
        self.emit(largest, len)
    }
}

impl AckRanges<'_> {
    fn emit(&mut self, largest: u64, len: u64) -> Option<AckRange> {
        let smallest = largest.checked_sub(len)?;
        self.next_largest = Some(smallest);
        Some((smallest, largest))
    }
}

/// Walks the chunks of a CHANNEL frame's plaintext.
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    rest: &'a [u8],
}

impl<'a> Chunks<'a> {
    /// The chunks of `plaintext`.
    pub fn new(plaintext: &'a [u8]) -> Self {
        Self { rest: plaintext }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<Chunk<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = decode_chunk(&mut self.rest);
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

fn decode_chunk<'a>(buf: &mut &'a [u8]) -> Result<Chunk<'a>, FrameError> {
    let bad = FrameError::BadChunk;
    let (&kind, rest) = buf.split_first().ok_or(bad("empty"))?;
    *buf = rest;
    match kind {
        chunk_type::PADDING => {
            if buf.iter().any(|&b| b != 0) {
                return Err(bad("padding with non-zero bytes"));
            }
            let n = buf.len() + 1;
            *buf = &[];
            Ok(Chunk::Padding(n))
        }
        chunk_type::ACK => {
            let largest = read_varint(buf)?;
            let delay_us = read_varint(buf)?;
            let range_count = read_varint(buf)?;
            let first_range = read_varint(buf)?;
            if range_count > MAX_ACK_RANGES as u64 {
                return Err(bad("too many ACK ranges"));
            }
            let mut smallest = largest
                .checked_sub(first_range)
                .ok_or(bad("ACK range below zero"))?;
            let start = *buf;
            for _ in 0..range_count {
                let gap = read_varint(buf)?;
                let len = read_varint(buf)?;
                smallest = smallest
                    .checked_sub(gap)
                    .and_then(|s| s.checked_sub(2))
                    .and_then(|s| s.checked_sub(len))
                    .ok_or(bad("ACK range below zero"))?;
            }
            let used = start.len() - buf.len();
            Ok(Chunk::Ack(AckChunk {
                largest,
                delay_us,
                range_count,
                first_range,
                rest: &start[..used],
            }))
        }
        chunk_type::MSG => {
            let (head, rest) = buf.split_first_chunk::<3>().ok_or(bad("short MSG"))?;
            *buf = rest;
            let [flags, channel, msg_type] = *head;
            if flags & !MSG_FLAGS != 0 {
                return Err(bad("reserved MSG flags"));
            }
            if !(msg_type == 0x01 || msg_type >= 0x80) {
                return Err(bad("MSG type is neither DATA nor an application type"));
            }
            let seq = read_varint(buf)?;
            let fragment = if flags & MSG_FRAGMENT != 0 {
                let total = read_varint(buf)?;
                let offset = read_varint(buf)?;
                Some((total, offset))
            } else {
                None
            };
            let len = read_varint(buf)?;
            let len = usize::try_from(len).map_err(|_| bad("MSG length"))?;
            if len > buf.len() {
                return Err(bad("MSG longer than the packet"));
            }
            if let Some((total, offset)) = fragment {
                if offset.checked_add(len as u64).is_none_or(|end| end > total) {
                    return Err(bad("fragment beyond its message"));
                }
            }
            let (data, rest) = buf.split_at(len);
            *buf = rest;
            Ok(Chunk::Msg(MsgChunk {
                delivery: Delivery::from_bits(flags),
                channel,
                msg_type,
                seq,
                fragment,
                data,
            }))
        }
        chunk_type::FLOW_CREDIT => Ok(Chunk::FlowCredit {
            max_data: read_varint(buf)?,
        }),
        chunk_type::PING => Ok(Chunk::Ping),
        _ => Err(bad("unknown chunk type")),
    }
}

/// Appends a MSG chunk.
pub fn write_msg(out: &mut Vec<u8>, msg: &MsgChunk<'_>) {
    let mut flags = msg.delivery.to_bits();
    if msg.fragment.is_some() {
        flags |= MSG_FRAGMENT;
    }
    out.extend_from_slice(&[chunk_type::MSG, flags, msg.channel, msg.msg_type]);
    write_varint(out, msg.seq);
    if let Some((total, offset)) = msg.fragment {
        write_varint(out, total);
        write_varint(out, offset);
    }
    write_varint(out, msg.data.len() as u64);
    out.extend_from_slice(msg.data);
}

/// Appends an ACK chunk for `ranges` (disjoint, largest first, at most
/// [`MAX_ACK_RANGES`] + 1 of them are written) held back for `delay_us`.
/// Writes nothing for no range.
pub fn write_ack(out: &mut Vec<u8>, delay_us: u64, ranges: impl IntoIterator<Item = AckRange>) {
    let mut ranges = ranges.into_iter().take(MAX_ACK_RANGES + 1);
    let Some((first_lo, first_hi)) = ranges.next() else {
        return;
    };
    let start = out.len();
    out.push(chunk_type::ACK);
    write_varint(out, first_hi);
    write_varint(out, delay_us.min(VARINT_MAX));
    // The count is patched once known: reserve its largest encoding.
    let count_at = out.len();
    out.extend_from_slice(&[0x40, 0]);
    write_varint(out, first_hi - first_lo);
    let mut count = 0u64;
    let mut prev_lo = first_lo;
    for (lo, hi) in ranges {
        // Ranges must be disjoint and separated by at least one number.
        if hi + 2 > prev_lo || lo > hi {
            break;
        }
        write_varint(out, prev_lo - hi - 2);
        write_varint(out, hi - lo);
        prev_lo = lo;
        count += 1;
    }
    // At most MAX_ACK_RANGES (64): fits a two-byte varint.
    out[count_at] = 0x40 | (count >> 8) as u8;
    out[count_at + 1] = count as u8;
    debug_assert!(out.len() > start);
}

/// Appends a FLOW_CREDIT chunk.
pub fn write_flow_credit(out: &mut Vec<u8>, max_data: u64) {
    out.push(chunk_type::FLOW_CREDIT);
    write_varint(out, max_data.min(VARINT_MAX));
}

/// Appends a PING chunk.
pub fn write_ping(out: &mut Vec<u8>) {
    out.push(chunk_type::PING);
}

/// Pads `out` with zeros up to `len` bytes (a PADDING chunk), if shorter.
pub fn write_padding(out: &mut Vec<u8>, len: usize) {
    if out.len() < len {
        out.resize(len, 0);
    }
}

/// Encoded length of a variable-length integer.
pub const fn varint_len(v: u64) -> usize {
    if v < 1 << 6 {
        1
    } else if v < 1 << 14 {
        2
    } else if v < 1 << 30 {
        4
    } else {
        8
    }
}

/// Appends a variable-length integer (values above [`VARINT_MAX`] are
/// written as `VARINT_MAX`).
pub fn write_varint(out: &mut Vec<u8>, v: u64) {
    let v = v.min(VARINT_MAX);
    match varint_len(v) {
        1 => out.push(v as u8),
        2 => out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
        4 => out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

/// Reads a variable-length integer from the front of `buf`.
pub fn read_varint(buf: &mut &[u8]) -> Result<u64, FrameError> {
    let first = *buf.first().ok_or(FrameError::BadChunk("short integer"))?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return Err(FrameError::BadChunk("short integer"));
    }
    let mut v = u64::from(first & 0x3f);
    for &b in &buf[1..len] {
        v = (v << 8) | u64::from(b);
    }
    *buf = &buf[len..];
    Ok(v)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
