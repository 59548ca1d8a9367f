//! Target `channel_pair`: two [`Channels`] (sides A and B, default
//! configuration, a 1472-byte datagram path) in virtual time, with the
//! packets between them in the fuzzer's hands, and arbitrary plaintexts
//! injected into either side's [`Channels::on_packet`].
//!
//! Input layout: a sequence of operations, each an op byte and its
//! arguments (see [`Op`]; the seed generator writes them with [`encode`]):
//! messages queued, packets polled onto the wire, delivered, dropped or
//! reordered, clock advances and timers, the application taking messages,
//! path changes, and injected plaintexts (raw bytes, or a MSG or ACK built
//! from selectors) with `max_sent` = 2^62 − 1.
//!
//! Properties checked:
//!
//! - nothing panics, whatever is injected;
//! - every packet a side writes is `poll_packet`'s size less 45 bytes long,
//!   decodes into chunks without error, and is no larger than its path
//!   allows (at least 1200 bytes: see `docs/PROTOCOL.md`, Open point 13);
//! - while nothing was injected (both sides honest), every packet relayed is
//!   taken without error, and every message delivered is one the other side
//!   sent on that channel, with its type and bytes, at most once; a
//!   reliable-ordered channel delivers in the order sent, an
//!   unreliable-sequenced one in increasing order; and at the end of the
//!   input, once the wire is made lossless and the timers run, every
//!   reliable message sent has arrived.
//!
//! After a side refuses a packet as a violation (a session would close), the
//! run ends.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use stt::frame::chunk::{write_ack, write_msg, Chunks, Delivery, MsgChunk, VARINT_MAX};
use stt::session::channel::{ChannelConfig, Channels, PacketError, SendPolicy, SendRefused};

use crate::input::{Input, Output};

/// The datagram size both sides start with.
pub const DATAGRAM: usize = 1472;
/// Frame overhead: header and tag.
const OVERHEAD: usize = 45;
/// Packets one flush polls at most.
const FLUSH: usize = 64;
/// Steps of the final drain at most.
const DRAIN_STEPS: usize = 20_000;

/// Payload length for selector `s`: a few bytes, several packets, about a
/// stream path's packet, or just above one; at least 8 (the header).
pub fn payload_len(s: u8) -> usize {
    let low = usize::from(s & 0x3f);
    8 + match s >> 6 {
        0 => low,
        1 => low * 40,
        2 => 1400 + low * 1000,
        _ => 65_536 + low * 100,
    }
}

/// Path datagram size for selector `s`: a stream path, the default, the
/// base, a jumbo path, or one below the base.
pub fn path_size(s: u8) -> Option<usize> {
    [None, Some(DATAGRAM), Some(1200), Some(8972), Some(512)][usize::from(s % 5)]
}

/// The byte at `i` of message `index` on `channel`.
fn pattern(channel: u8, index: u32, i: usize) -> u8 {
    (i as u8)
        .wrapping_mul(31)
        .wrapping_add(index as u8)
        .wrapping_add(channel.wrapping_mul(7))
}

/// The payload of message `index` on `channel`: channel, index, a pattern.
fn payload(channel: u8, index: u32, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|i| pattern(channel, index, i)).collect();
    p[0] = channel;
    p[1..5].copy_from_slice(&index.to_be_bytes());
    p
}

/// One step of the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Side `side` queues a message on `channel` (0–3 are configured, 4 is
    /// not), of [`payload_len`]`(len)` bytes, DATA or `0x80` by `app`, with
    /// policy `policy % 3` (wait, refuse, replace the oldest).
    Send {
        /// 0 (A) or 1 (B).
        side: u8,
        /// Channel.
        channel: u8,
        /// [`payload_len`] selector.
        len: u8,
        /// Application type rather than DATA.
        app: bool,
        /// Send policy selector.
        policy: u8,
    },
    /// Side `side` writes the packets due now onto its wire.
    Flush {
        /// 0 (A) or 1 (B).
        side: u8,
    },
    /// The first `count` packets on the wire from `side`: bit `i` of `mask`
    /// says deliver (0) or `action` (1) for the `i`-th.
    Wire {
        /// The sender, 0 (A) or 1 (B).
        side: u8,
        /// Packets looked at (at most 7).
        count: u8,
        /// Which of them get `action`.
        mask: u8,
        /// 0 drop, 1 move to the back of the wire (reordering).
        action: u8,
    },
    /// The clock moves `ms` milliseconds (0: to the next timer), and both
    /// sides run the timers due.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// The application of `side` takes what arrived.
    Take {
        /// 0 (A) or 1 (B).
        side: u8,
    },
    /// Side `side` moves to the path of [`path_size`]`(size)`.
    Path {
        /// 0 (A) or 1 (B).
        side: u8,
        /// Selector.
        size: u8,
    },
    /// Raw plaintext into side `side`, as packet number `pn`.
    Raw {
        /// 0 (A) or 1 (B).
        side: u8,
        /// Packet number (a used one is skipped, as the replay window would).
        pn: u16,
        /// The plaintext.
        bytes: Vec<u8>,
    },
    /// A MSG built from selectors into side `side`: mode `flags & 3`,
    /// fragment if `flags & 4`, type `0x80` if `flags & 8`; channel `channel
    /// % 8`; total `total * 16`, or above 16 MiB when `total >= 0x8000`;
    /// `len` pattern bytes at `offset`.
    Msg {
        /// 0 (A) or 1 (B).
        side: u8,
        /// Packet number.
        pn: u16,
        /// See the variant doc.
        flags: u8,
        /// Channel selector.
        channel: u8,
        /// Sequence number.
        seq: u16,
        /// Total selector.
        total: u16,
        /// Offset.
        offset: u32,
        /// Data length.
        len: u8,
    },
    /// An ACK into side `side`: `largest` below the side's next packet
    /// number by `back`, then ranges of the lengths and gaps in `ranges`.
    Ack {
        /// 0 (A) or 1 (B).
        side: u8,
        /// Packet number.
        pn: u16,
        /// How far below the side's next packet number `largest` is.
        back: u8,
        /// Delay, µs.
        delay: u16,
        /// (len, gap) pairs.
        ranges: Vec<(u8, u8)>,
    },
}

const OP_SEND: u8 = 0;
const OP_FLUSH: u8 = 1;
const OP_WIRE: u8 = 2;
const OP_ADVANCE: u8 = 3;
const OP_TAKE: u8 = 4;
const OP_PATH: u8 = 5;
const OP_RAW: u8 = 6;
const OP_MSG: u8 = 7;
const OP_ACK: u8 = 8;
const OPS: u8 = 9;

/// Writes `ops` in the layout [`run`] reads.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut o = Output::new();
    for op in ops {
        match op {
            Op::Send {
                side,
                channel,
                len,
                app,
                policy,
            } => {
                o.u8(OP_SEND)
                    .u8((side & 1) | (u8::from(*app) << 1) | ((policy % 3) << 2))
                    .u8(*channel)
                    .u8(*len);
            }
            Op::Flush { side } => {
                o.u8(OP_FLUSH).u8(*side);
            }
            Op::Wire {
                side,
                count,
                mask,
                action,
            } => {
                o.u8(OP_WIRE)
                    .u8((side & 1) | ((count & 7) << 1) | ((action & 1) << 4))
                    .u8(*mask);
            }
            Op::Advance { ms } => {
                o.u8(OP_ADVANCE).u16(*ms);
            }
            Op::Take { side } => {
                o.u8(OP_TAKE).u8(*side);
            }
            Op::Path { side, size } => {
                o.u8(OP_PATH).u8(*side).u8(*size);
            }
            Op::Raw { side, pn, bytes } => {
                o.u8(OP_RAW).u8(*side).u16(*pn).long_bytes(bytes);
            }
            Op::Msg {
                side,
                pn,
                flags,
                channel,
                seq,
                total,
                offset,
                len,
            } => {
                o.u8(OP_MSG)
                    .u8(*side)
                    .u16(*pn)
                    .u8(*flags)
                    .u8(*channel)
                    .u16(*seq)
                    .u16(*total)
                    .u32(*offset)
                    .u8(*len);
            }
            Op::Ack {
                side,
                pn,
                back,
                delay,
                ranges,
            } => {
                o.u8(OP_ACK).u8(*side).u16(*pn).u8(*back).u16(*delay);
                o.u8(u8::try_from(ranges.len()).expect("at most 255 ranges"));
                for &(len, gap) in ranges {
                    o.u8(len).u8(gap);
                }
            }
        }
    }
    o.finish()
}

/// What one side sent and received.
struct Side {
    ch: Channels,
    next_pn: u64,
    /// Packet numbers taken from the other side (the replay window's job).
    seen: HashSet<u64>,
    /// Packets on the wire towards the other side.
    wire: VecDeque<(u64, Vec<u8>)>,
    /// Current path's datagram size.
    path: Option<usize>,
    /// Messages queued, per channel: (type, length).
    sent: [Vec<(u8, usize)>; 4],
    /// Indexes delivered from the other side, per channel.
    got: [HashSet<u32>; 4],
    /// The last index delivered from the other side, per channel.
    last: [Option<u32>; 4],
    /// Something was injected into this side.
    tainted: bool,
}

impl Side {
    fn new(now: Instant) -> Self {
        Side {
            ch: Channels::new(ChannelConfig::default(), now, Some(DATAGRAM), None, None),
            next_pn: 0,
            seen: HashSet::new(),
            wire: VecDeque::new(),
            path: Some(DATAGRAM),
            sent: Default::default(),
            got: Default::default(),
            last: [None; 4],
            tainted: false,
        }
    }
}

struct Pair {
    sides: [Side; 2],
    now: Instant,
}

/// Why a run stops early.
struct Closed;

impl Pair {
    fn honest(&self) -> bool {
        !self.sides[0].tainted && !self.sides[1].tainted
    }

    fn send(&mut self, s: usize, channel: u8, len: usize, app: bool, policy: u8) {
        let msg_type = if app { 0x80 } else { 0x01 };
        let policy = [
            SendPolicy::Wait,
            SendPolicy::Refuse,
            SendPolicy::ReplaceOldest,
        ][usize::from(policy % 3)];
        let side = &mut self.sides[s];
        let index = side
            .sent
            .get(usize::from(channel))
            .map_or(0, |v| v.len() as u32);
        let p = payload(channel, index, len);
        match side.ch.send(self.now, channel, msg_type, p, policy) {
            Ok(()) => {
                assert!(
                    channel < 4,
                    "a send on unconfigured channel {channel} was taken"
                );
                side.sent[usize::from(channel)].push((msg_type, len));
            }
            Err(SendRefused::UnknownChannel(c)) => assert_eq!((c, channel >= 4), (channel, true)),
            Err(_) => {}
        }
    }

    fn flush(&mut self, s: usize) {
        let side = &mut self.sides[s];
        let mut out = Vec::new();
        for _ in 0..FLUSH {
            out.clear();
            let Some(size) = side.ch.poll_packet(self.now, side.next_pn, &mut out) else {
                break;
            };
            assert_eq!(size, out.len() + OVERHEAD, "poll_packet's size");
            let limit = side.path.map_or(65_536 + OVERHEAD, |p| p.max(1200));
            assert!(
                size <= limit,
                "a {size}-byte packet on a {:?} path",
                side.path
            );
            for c in Chunks::new(&out) {
                if let Err(e) = c {
                    panic!("side {s} wrote a malformed packet ({e}): {out:02x?}");
                }
            }
            side.wire.push_back((side.next_pn, out.clone()));
            side.next_pn += 1;
        }
    }

    /// Packet `pn` with `bytes` into side `to`.
    fn deliver(&mut self, to: usize, pn: u64, bytes: &[u8], injected: bool) -> Result<(), Closed> {
        let side = &mut self.sides[to];
        if !side.seen.insert(pn) {
            return Ok(());
        }
        side.tainted |= injected;
        let max_sent = if injected {
            Some(VARINT_MAX)
        } else {
            side.next_pn.checked_sub(1)
        };
        let honest = !self.sides[0].tainted && !self.sides[1].tainted;
        let side = &mut self.sides[to];
        match side.ch.on_packet(self.now, pn, bytes, max_sent) {
            Ok(()) => Ok(()),
            Err(e) => {
                assert!(
                    !honest,
                    "side {to} refused honest packet {pn} ({e}): {bytes:02x?}"
                );
                match e {
                    PacketError::Frame(_) => Ok(()),
                    _ => Err(Closed),
                }
            }
        }
    }

    fn wire(&mut self, s: usize, count: u8, mask: u8, action: u8) -> Result<(), Closed> {
        for i in 0..count {
            let Some((pn, bytes)) = self.sides[s].wire.pop_front() else {
                break;
            };
            if mask >> i & 1 == 0 {
                self.deliver(1 - s, pn, &bytes, false)?;
            } else if action & 1 == 1 {
                self.sides[s].wire.push_back((pn, bytes));
            }
        }
        Ok(())
    }

    fn advance(&mut self, ms: u16) {
        let next = self.sides.iter().filter_map(|s| s.ch.poll_timeout()).min();
        self.now = match (ms, next) {
            (0, Some(t)) => self.now.max(t),
            _ => self.now + Duration::from_millis(u64::from(ms)),
        };
        self.timers();
    }

    fn timers(&mut self) {
        for side in &mut self.sides {
            if side.ch.poll_timeout().is_some_and(|t| t <= self.now) {
                side.ch.handle_timeout(self.now);
            }
        }
    }

    /// The application of side `s` takes what arrived from the other side.
    fn take(&mut self, s: usize) {
        let honest = self.honest();
        let (a, b) = self.sides.split_at_mut(1);
        let (me, peer) = if s == 0 {
            (&mut a[0], &b[0])
        } else {
            (&mut b[0], &a[0])
        };
        while let Some(d) = me.ch.poll_delivered() {
            me.ch.release(d.credit);
            if !honest {
                continue;
            }
            let c = usize::from(d.channel);
            assert!(c < 4, "delivered on channel {c}, never sent on");
            assert!(d.payload.len() >= 5, "a {}-byte message", d.payload.len());
            let index = u32::from_be_bytes(d.payload[1..5].try_into().expect("4 bytes"));
            let Some(&(msg_type, len)) = peer.sent[c].get(index as usize) else {
                panic!("message {index} on channel {c} was never sent");
            };
            assert_eq!((d.payload[0], d.msg_type), (d.channel, msg_type));
            assert_eq!(d.payload, payload(d.channel, index, len), "message bytes");
            assert!(
                me.got[c].insert(index),
                "message {index} on channel {c} twice"
            );
            match c {
                0 => assert_eq!(index, me.last[c].map_or(0, |l| l + 1), "out of order"),
                2 => assert!(me.last[c].is_none_or(|l| index > l), "sequenced went back"),
                _ => {}
            }
            me.last[c] = Some(index);
            let reliable = [0, 3].contains(&c);
            assert_eq!(d.credit, if reliable { len as u64 } else { 0 }, "credit");
        }
    }

    fn path(&mut self, s: usize, size: Option<usize>) {
        self.sides[s].ch.on_path_change(self.now, size);
        self.sides[s].path = size;
    }

    /// Lossless wire and timers until both sides are done; then every
    /// reliable message sent has arrived.
    fn drain(&mut self) -> Result<(), Closed> {
        for _ in 0..DRAIN_STEPS {
            for s in 0..2 {
                self.flush(s);
            }
            let mut moved = false;
            for s in 0..2 {
                while let Some((pn, bytes)) = self.sides[s].wire.pop_front() {
                    self.deliver(1 - s, pn, &bytes, false)?;
                    moved = true;
                }
                self.take(1 - s);
            }
            let done = self.sides.iter().all(|s| s.ch.unfinished() == 0);
            if done && !moved {
                break;
            }
            if !moved {
                let Some(t) = self.sides.iter().filter_map(|s| s.ch.poll_timeout()).min() else {
                    break;
                };
                self.now = self.now.max(t);
                self.timers();
            }
        }
        for s in 0..2 {
            let (me, peer) = (&self.sides[s], &self.sides[1 - s]);
            for c in [0usize, 3] {
                for index in 0..me.sent[c].len() as u32 {
                    assert!(
                        peer.got[c].contains(&index),
                        "reliable message {index} on channel {c} from side {s} never arrived"
                    );
                }
            }
        }
        Ok(())
    }
}

/// Runs the operations of `data`.
pub fn run(data: &[u8]) {
    let now = Instant::now();
    let mut pair = Pair {
        sides: [Side::new(now), Side::new(now)],
        now,
    };
    if steps(&mut pair, &mut Input::new(data)).is_ok() && pair.honest() {
        let _ = pair.drain();
    }
}

fn steps(pair: &mut Pair, input: &mut Input<'_>) -> Result<(), Closed> {
    while let Some(op) = input.u8() {
        match op % OPS {
            OP_SEND => {
                let (Some(b), Some(channel), Some(len)) = (input.u8(), input.u8(), input.u8())
                else {
                    break;
                };
                let s = usize::from(b & 1);
                pair.send(s, channel % 5, payload_len(len), b & 2 != 0, b >> 2);
            }
            OP_FLUSH => {
                let Some(b) = input.u8() else { break };
                pair.flush(usize::from(b & 1));
            }
            OP_WIRE => {
                let (Some(b), Some(mask)) = (input.u8(), input.u8()) else {
                    break;
                };
                pair.wire(usize::from(b & 1), (b >> 1) & 7, mask, b >> 4)?;
            }
            OP_ADVANCE => {
                let Some(ms) = input.u16() else { break };
                pair.advance(ms);
            }
            OP_TAKE => {
                let Some(b) = input.u8() else { break };
                pair.take(usize::from(b & 1));
            }
            OP_PATH => {
                let (Some(b), Some(size)) = (input.u8(), input.u8()) else {
                    break;
                };
                pair.path(usize::from(b & 1), path_size(size));
            }
            OP_RAW => {
                let (Some(b), Some(pn), Some(bytes)) =
                    (input.u8(), input.u16(), input.long_bytes())
                else {
                    break;
                };
                pair.deliver(usize::from(b & 1), u64::from(pn), bytes, true)?;
            }
            OP_MSG => {
                let (Some(b), Some(pn), Some(flags), Some(channel), Some(seq)) =
                    (input.u8(), input.u16(), input.u8(), input.u8(), input.u16())
                else {
                    break;
                };
                let (Some(total), Some(offset), Some(len)) = (input.u16(), input.u32(), input.u8())
                else {
                    break;
                };
                let total = if total >= 0x8000 {
                    (16 << 20) + u64::from(total & 0xff)
                } else {
                    u64::from(total) * 16
                };
                let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(13)).collect();
                let m = MsgChunk {
                    delivery: Delivery::from_bits(flags),
                    channel: channel % 8,
                    msg_type: if flags & 8 != 0 { 0x80 } else { 0x01 },
                    seq: u64::from(seq),
                    fragment: (flags & 4 != 0).then_some((total, u64::from(offset))),
                    data: &data,
                };
                let mut bytes = Vec::new();
                write_msg(&mut bytes, &m);
                pair.deliver(usize::from(b & 1), u64::from(pn), &bytes, true)?;
            }
            OP_ACK => {
                let (Some(b), Some(pn), Some(back), Some(delay), Some(n)) =
                    (input.u8(), input.u16(), input.u8(), input.u16(), input.u8())
                else {
                    break;
                };
                let s = usize::from(b & 1);
                let Some(mut hi) = pair.sides[s].next_pn.checked_sub(1 + u64::from(back)) else {
                    continue;
                };
                let mut ranges = Vec::new();
                for _ in 0..n {
                    let (Some(len), Some(gap)) = (input.u8(), input.u8()) else {
                        break;
                    };
                    let Some(lo) = hi.checked_sub(u64::from(len)) else {
                        break;
                    };
                    ranges.push((lo, hi));
                    let Some(next) = lo.checked_sub(u64::from(gap) + 2) else {
                        break;
                    };
                    hi = next;
                }
                let mut bytes = Vec::new();
                write_ack(&mut bytes, u64::from(delay), ranges);
                pair.deliver(s, u64::from(pn), &bytes, true)?;
            }
            _ => unreachable!("op % OPS"),
        }
    }
    Ok(())
}
