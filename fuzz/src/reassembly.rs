//! Target `reassembly`: fragments into two [`Reassembler`]s that share one
//! [`MemoryBudget`], with small limits so that every limit is reachable.
//!
//! Input layout: one byte picks the node budget, then a sequence of
//! operations, each an op byte and its arguments (see [`Op`]; the seed
//! generator writes them with [`encode`]). The whole input is also fed to
//! [`FragmentHeader::decode`] as one plaintext.
//!
//! Properties checked (any failure is a bug in `stt::stream`):
//!
//! - the budget's `used()` equals the sum of the reassemblers' `bytes_held()`
//!   after every step, and returns to 0 when both are dropped;
//! - `bytes_held() <= max_session_bytes`, `pending() <= max_pending_messages`,
//!   `used() <= limit()`; `pending() == 0` exactly when `bytes_held() == 0`;
//!   `poll_timeout()` is `Some` exactly when something is pending, and after
//!   `handle_timeout(now)` it is later than `now`;
//! - a refused fragment changes nothing (bytes held, pending count) and is
//!   counted in `stats().rejected`; a fragment whose chunk length disagrees
//!   with its header, or whose `total_len` exceeds `max_message_size`, is
//!   always refused;
//! - a delivered message has exactly its announced `total_len`, the stream id
//!   and inner type of its fragments, the bytes its fragments carried, and is
//!   delivered at most once per message id (extended to 64 bits across
//!   wraps of the 32-bit id, as the reassembler documents);
//! - `handle_timeout` expires exactly the partial messages whose first
//!   fragment is `timeout` old, and the partial messages are the ones a model
//!   of the documented behaviour expects;
//! - a decoded [`FragmentHeader`] re-encodes to its 15 input bytes, is valid,
//!   and its chunk lies inside the message (`index * chunk_len + len <=
//!   total_len`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use stt::stream::{
    fragments, FragmentHeader, MemoryBudget, Reassembled, Reassembler, ReassemblyConfig,
    ReassemblyError, FRAGMENT_HEADER_LEN,
};

use crate::input::{Input, Output};

/// The limits under test: small, so that the fuzzer reaches each of them.
pub fn config() -> ReassemblyConfig {
    ReassemblyConfig {
        max_message_size: 1 << 16,
        max_session_bytes: 1 << 18,
        timeout: Duration::from_secs(1),
        max_pending_messages: 16,
    }
}

/// Node budget for selector byte `b`: 128, 256, 384 or 512 KiB, so that it is
/// sometimes below the sum of the two session caps (512 KiB).
pub fn budget_limit(b: u8) -> usize {
    (1 << 17) * (1 + usize::from(b % 4))
}

/// Message id for selector byte `b`: mostly a small range (so that ids repeat
/// and fragments meet), sometimes beyond the completed-id window (3000 >
/// 1984) or at the top of the `u32` range.
pub fn message_id(b: u8) -> u32 {
    u32::from(b & 0x3f)
        + match b >> 6 {
            0 | 1 => 0,
            2 => 3000,
            _ => u32::MAX - 63,
        }
}

/// `total_len` for selector `v`: small, up to the 64 KiB limit, around the
/// limit, or huge.
pub fn total_len(v: u16) -> u32 {
    let low = u32::from(v & 0x3fff);
    match v >> 14 {
        0 => low,
        1 => low * 4,
        2 => (1 << 16) - 8 + (low & 0xf),
        _ => (u32::from(v) << 16) | u32::from(v),
    }
}

/// `chunk_len` for selector `c`: tiny (0 included), medium, MTU-sized, or
/// near `u16::MAX`.
pub fn chunk_len(c: u8) -> u16 {
    let low = u16::from(c & 0x3f);
    match c >> 6 {
        0 => low,
        1 => low * 64 + 64,
        2 => 1400 + low,
        _ => u16::MAX - low,
    }
}

/// Fragment index for selector `i` in a message of `count` fragments: mostly
/// valid, sometimes the last one, just past the end, or `u32::MAX`.
pub fn index(i: u8, count: u32) -> u32 {
    match i {
        0xff => u32::MAX,
        0xfe => count.saturating_sub(1),
        0xf0..=0xfd => count.wrapping_add(u32::from(i & 0xf)),
        _ => u32::from(i) % count.max(1),
    }
}

/// Inner type for selector bits.
pub fn inner_type(b: u8) -> u8 {
    [0x01, 0x80, 0xff, 0x02][usize::from(b & 3)]
}

/// Pattern positions cached in [`table`]: every offset of a message up to
/// the limit, plus the largest per-id shift.
const TABLE_LEN: usize = (1 << 16) + 256 + 256;

/// The pattern stream: position `i` holds [`pattern_at`]`(i)`.
fn pattern_at(i: usize) -> u8 {
    (i as u8) ^ ((i >> 8) as u8).wrapping_mul(7) ^ ((i >> 16) as u8).wrapping_mul(0x3b)
}

/// Message `id` reads the pattern stream from position `id % 251`, so that
/// bytes of one message landing in another (same offsets) are noticed.
fn shift(id: u32) -> usize {
    (id % 251) as usize
}

fn table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..TABLE_LEN).map(pattern_at).collect())
}

/// The byte at `offset` of message `id`, so that a delivered message can be
/// checked byte for byte.
pub fn pattern(id: u32, offset: usize) -> u8 {
    pattern_at(offset.wrapping_add(shift(id)))
}

/// Bytes `offset..offset + len` of message `id` (a copy of the cached
/// pattern where it reaches, byte by byte elsewhere).
pub fn pattern_bytes(id: u32, offset: u64, len: usize) -> Vec<u8> {
    let start = usize::try_from(offset)
        .ok()
        .and_then(|o| o.checked_add(shift(id)));
    match start.and_then(|s| table().get(s..s.checked_add(len)?)) {
        Some(cached) => cached.to_vec(),
        None => (0..len)
            .map(|j| pattern(id, (offset as usize).wrapping_add(j)))
            .collect(),
    }
}

/// Whether `payload` is message `id` from its start.
pub fn is_pattern(id: u32, payload: &[u8]) -> bool {
    match table().get(shift(id)..shift(id) + payload.len()) {
        Some(cached) => cached == payload,
        None => payload
            .iter()
            .enumerate()
            .all(|(p, &b)| b == pattern(id, p)),
    }
}

/// One operation of the input. `target` picks reassembler A (0) or B (1).
#[derive(Debug, Clone)]
pub enum Op {
    /// A fragment built from selectors. `flags`: bits 0-1 inner type, bit 2
    /// stream id (0 or 1), bits 3-4 == 3 means "chunk of `wrong_len` bytes
    /// instead of the right length". `advance` moves the clock by
    /// `advance * 4 ms` first.
    Fragment {
        /// A or B.
        target: u8,
        /// [`message_id`] selector.
        id: u8,
        /// [`total_len`] selector.
        len: u16,
        /// [`chunk_len`] selector.
        chunk: u8,
        /// [`index`] selector.
        index: u8,
        /// See the variant doc.
        flags: u8,
        /// Clock advance, in 4 ms steps.
        advance: u8,
        /// Chunk length when `flags` asks for a wrong one.
        wrong_len: u8,
    },
    /// Raw bytes to `insert_plaintext` (header included), on stream `stream`.
    Raw {
        /// A or B.
        target: u8,
        /// 0 or 1.
        stream: u8,
        /// The plaintext.
        bytes: Vec<u8>,
    },
    /// Move the clock by `millis` and run `handle_timeout`.
    Advance {
        /// A or B.
        target: u8,
        /// Milliseconds.
        millis: u16,
    },
    /// Drop the reassembler and start a new one on the same budget.
    Recreate {
        /// A or B.
        target: u8,
    },
    /// Every fragment of a message of `(len % 4096) + 1` bytes in chunks of
    /// `chunk_len(chunk).max(1)`, rotated by `order & 0x7f` and reversed
    /// when `order & 0x80`.
    Whole {
        /// A or B.
        target: u8,
        /// [`message_id`] selector.
        id: u8,
        /// Length selector.
        len: u16,
        /// [`chunk_len`] selector.
        chunk: u8,
        /// Order selector.
        order: u8,
        /// 0 or 1.
        stream: u8,
    },
}

/// Op kinds in bits 1-3 of the op byte.
const KIND_RAW: u8 = 4;
const KIND_ADVANCE: u8 = 5;
const KIND_RECREATE: u8 = 6;
const KIND_WHOLE: u8 = 7;

/// Encodes `budget` and `ops` as an input for [`run`].
pub fn encode(budget: u8, ops: &[Op]) -> Vec<u8> {
    let mut o = Output::new();
    o.u8(budget);
    for op in ops {
        match op {
            Op::Fragment {
                target,
                id,
                len,
                chunk,
                index,
                flags,
                advance,
                wrong_len,
            } => {
                o.u8(target & 1)
                    .u8(*id)
                    .u16(*len)
                    .u8(*chunk)
                    .u8(*index)
                    .u8(*flags)
                    .u8(*advance);
                if (flags >> 3) & 3 == 3 {
                    o.u8(*wrong_len);
                }
            }
            Op::Raw {
                target,
                stream,
                bytes,
            } => {
                o.u8((target & 1) | (KIND_RAW << 1) | ((stream & 1) << 4))
                    .short_bytes(bytes);
            }
            Op::Advance { target, millis } => {
                o.u8((target & 1) | (KIND_ADVANCE << 1)).u16(*millis);
            }
            Op::Recreate { target } => {
                o.u8((target & 1) | (KIND_RECREATE << 1));
            }
            Op::Whole {
                target,
                id,
                len,
                chunk,
                order,
                stream,
            } => {
                o.u8((target & 1) | (KIND_WHOLE << 1) | ((stream & 1) << 4))
                    .u8(*id)
                    .u16(*len)
                    .u8(*chunk)
                    .u8(*order);
            }
        }
    }
    o.finish()
}

/// What the harness knows about one reassembler: a model of its partial
/// messages and of its completed-id window, as documented in `stt::stream`.
///
/// Message ids are 32-bit and may wrap: the reassembler extends each to the
/// 64-bit id nearest to the highest one completed (or expired), so the same
/// 32-bit id may legitimately be delivered again after a wrap, but never the
/// same extended id.
struct Tracked {
    r: Reassembler,
    /// Extended ids delivered so far.
    delivered: HashSet<u64>,
    /// Highest extended id completed or expired.
    high: Option<u64>,
    /// Partial messages in creation order (= deadline order), with the time
    /// their first fragment arrived.
    pending: Vec<(u32, Instant)>,
    /// Message ids that received raw (not pattern) bytes: their content is
    /// not checked.
    tainted: HashSet<u32>,
}

impl Tracked {
    fn new(budget: &MemoryBudget) -> Self {
        Tracked {
            r: Reassembler::new(config(), Some(budget.clone())),
            delivered: HashSet::new(),
            high: None,
            pending: Vec::new(),
            tainted: HashSet::new(),
        }
    }

    /// `id` extended to the 64-bit id nearest to the highest completed one.
    fn extend(&self, id: u32) -> u64 {
        let Some(high) = self.high else {
            return u64::from(id);
        };
        const SPAN: u64 = 1 << 32;
        let candidate = (high & !(SPAN - 1)) | u64::from(id);
        [
            candidate.checked_sub(SPAN),
            Some(candidate),
            candidate.checked_add(SPAN),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|c| c.abs_diff(high))
        .unwrap_or(candidate)
    }

    /// Records `id` as completed or expired; returns its extended id.
    fn commit(&mut self, id: u32) -> u64 {
        let e = self.extend(id);
        self.high = Some(self.high.map_or(e, |h| h.max(e)));
        e
    }

    /// Runs the reassembler's timers and checks that exactly the partial
    /// messages whose deadline passed expired.
    fn handle_timeout(&mut self, now: Instant) {
        let expired_before = self.r.stats().expired;
        let n = self.r.handle_timeout(now);
        assert_eq!(self.r.stats().expired, expired_before + n as u64);
        let timeout = config().timeout;
        let (due, live): (Vec<_>, Vec<_>) = self
            .pending
            .iter()
            .partition(|(_, first)| *first + timeout <= now);
        assert_eq!(
            n,
            due.len(),
            "handle_timeout expired {n} messages, {} were due",
            due.len()
        );
        self.pending = live;
        for (id, _) in due {
            self.commit(id);
        }
        if let Some(next) = self.r.poll_timeout() {
            assert!(next > now, "handle_timeout left a due deadline");
        }
    }

    /// Inserts one fragment and checks the per-insert properties.
    fn insert(&mut self, now: Instant, stream: u32, header: &FragmentHeader, chunk: &[u8]) {
        let before = (self.r.bytes_held(), self.r.pending(), self.r.stats());
        let must_refuse = header.expected_chunk_len() != Some(chunk.len())
            || header.total_len as usize > config().max_message_size;
        let result = self.r.insert(now, stream, header, chunk);
        if must_refuse {
            assert!(
                result.is_err(),
                "accepted an invalid fragment {header:?} with a {}-byte chunk",
                chunk.len()
            );
        }
        self.check_result(now, before, result, Some((stream, header)));
    }

    fn insert_raw(&mut self, now: Instant, stream: u32, plaintext: &[u8]) {
        if let Ok((h, _)) = FragmentHeader::decode(plaintext) {
            self.tainted.insert(h.message_id);
        }
        let before = (self.r.bytes_held(), self.r.pending(), self.r.stats());
        let result = self.r.insert_plaintext(now, stream, plaintext);
        let header = FragmentHeader::decode(plaintext).ok().map(|(h, _)| h);
        self.check_result(now, before, result, header.as_ref().map(|h| (stream, h)));
    }

    fn check_result(
        &mut self,
        now: Instant,
        (held, pending, stats): (usize, usize, stt::stream::ReassemblyStats),
        result: Result<Option<Reassembled>, ReassemblyError>,
        fragment: Option<(u32, &FragmentHeader)>,
    ) {
        match result {
            Err(e) => {
                assert_eq!(
                    self.r.bytes_held(),
                    held,
                    "refused fragment ({e}) changed bytes_held"
                );
                assert_eq!(
                    self.r.pending(),
                    pending,
                    "refused fragment ({e}) changed pending"
                );
                assert_eq!(self.r.stats().rejected, stats.rejected + 1);
            }
            Ok(None) => {
                let (_, header) = fragment.expect("an accepted fragment has a header");
                if self.r.stats().duplicates > stats.duplicates {
                    assert_eq!(self.r.bytes_held(), held, "a duplicate changed bytes_held");
                    assert_eq!(self.r.pending(), pending, "a duplicate changed pending");
                } else if self.r.pending() == pending + 1 {
                    assert!(
                        self.pending.iter().all(|(id, _)| *id != header.message_id),
                        "message {} started twice",
                        header.message_id
                    );
                    self.pending.push((header.message_id, now));
                } else {
                    assert_eq!(self.r.pending(), pending, "pending moved by more than one");
                }
            }
            Ok(Some(m)) => {
                let (stream, header) = fragment.expect("a message came out of a fragment");
                assert_eq!(
                    m.payload.len(),
                    header.total_len as usize,
                    "delivered message {} has {} bytes, its fragments announced {}",
                    header.message_id,
                    m.payload.len(),
                    header.total_len
                );
                assert_eq!(m.stream_id, stream, "message delivered on another stream");
                assert_eq!(m.inner_type, header.inner_type, "inner type changed");
                if !self.tainted.contains(&header.message_id)
                    && !is_pattern(header.message_id, &m.payload)
                {
                    let bad = (0..m.payload.len())
                        .find(|&p| m.payload[p] != pattern(header.message_id, p));
                    panic!(
                        "message {} delivered with a wrong byte at offset {bad:?}",
                        header.message_id
                    );
                }
                let was_pending = self.pending.len();
                self.pending.retain(|(id, _)| *id != header.message_id);
                let expected = pending - (was_pending - self.pending.len());
                assert_eq!(self.r.pending(), expected, "pending count after delivery");
                let extended = self.commit(header.message_id);
                assert!(
                    self.delivered.insert(extended),
                    "message id {} (extended {extended}) delivered twice",
                    header.message_id
                );
                assert_eq!(self.r.stats().completed, stats.completed + 1);
            }
        }
    }
}

fn check_invariants(budget: &MemoryBudget, rs: &[Tracked; 2]) {
    let cfg = config();
    let held: usize = rs.iter().map(|t| t.r.bytes_held()).sum();
    assert_eq!(
        budget.used(),
        held,
        "node budget out of step with bytes_held"
    );
    assert!(
        budget.used() <= budget.limit(),
        "node budget over its limit"
    );
    for t in rs {
        let r = &t.r;
        assert!(
            r.bytes_held() <= cfg.max_session_bytes,
            "session cap exceeded"
        );
        assert!(r.pending() <= cfg.max_pending_messages, "too many pending");
        assert_eq!(
            r.pending() == 0,
            r.bytes_held() == 0,
            "pending {} but bytes_held {}",
            r.pending(),
            r.bytes_held()
        );
        assert_eq!(
            r.poll_timeout().is_some(),
            r.pending() > 0,
            "poll_timeout disagrees with pending ({})",
            r.pending()
        );
        assert_eq!(
            t.pending.len(),
            r.pending(),
            "pending messages out of step with the model"
        );
    }
}

/// Checks [`FragmentHeader::decode`] on raw bytes.
pub fn decode_check(data: &[u8]) {
    let Ok((h, chunk)) = FragmentHeader::decode(data) else {
        return;
    };
    assert_eq!(
        h.encode()[..],
        data[..FRAGMENT_HEADER_LEN],
        "header does not re-encode"
    );
    assert_eq!(chunk, &data[FRAGMENT_HEADER_LEN..]);
    assert!(
        h.validate().is_ok(),
        "decode accepted an invalid header {h:?}"
    );
    assert_eq!(h.expected_chunk_len(), Some(chunk.len()));
    assert!(h.index < h.fragment_count());
    let end = u64::from(h.index) * u64::from(h.chunk_len) + chunk.len() as u64;
    assert!(
        end <= u64::from(h.total_len),
        "fragment {h:?} of {} bytes ends at {end}, past the message",
        chunk.len()
    );
}

/// Runs the target on `data`.
pub fn run(data: &[u8]) {
    decode_check(data);
    let mut input = Input::new(data);
    let Some(b) = input.u8() else { return };
    let budget = MemoryBudget::new(budget_limit(b));
    let mut rs = [Tracked::new(&budget), Tracked::new(&budget)];
    let mut now = Instant::now();
    while let Some(op) = input.u8() {
        let t = usize::from(op & 1);
        let stream = u32::from((op >> 4) & 1);
        match (op >> 1) & 7 {
            KIND_RAW => {
                let Some(bytes) = input.short_bytes() else {
                    break;
                };
                rs[t].insert_raw(now, stream, bytes);
            }
            KIND_ADVANCE => {
                let Some(ms) = input.u16() else { break };
                now += Duration::from_millis(u64::from(ms));
                rs[t].handle_timeout(now);
            }
            KIND_RECREATE => {
                rs[t] = Tracked::new(&budget);
                assert_eq!(
                    budget.used(),
                    rs[1 - t].r.bytes_held(),
                    "dropping a reassembler did not return its bytes"
                );
            }
            KIND_WHOLE => {
                let (Some(id), Some(len), Some(chunk), Some(order)) =
                    (input.u8(), input.u16(), input.u8(), input.u8())
                else {
                    break;
                };
                let id = message_id(id);
                let len = usize::from(len % 4096) + 1;
                let payload = pattern_bytes(id, 0, len);
                let chunk = usize::from(chunk_len(chunk).max(1));
                let Ok(frags) = fragments(id, 0x01, &payload, chunk) else {
                    panic!("fragments refused a valid split");
                };
                let mut frags: Vec<_> = frags.collect();
                let n = frags.len();
                frags.rotate_left(usize::from(order & 0x7f) % n);
                if order & 0x80 != 0 {
                    frags.reverse();
                }
                for (h, c) in frags {
                    rs[t].insert(now, stream, &h, c);
                }
            }
            _ => {
                let (Some(id), Some(len), Some(chunk), Some(idx), Some(flags), Some(adv)) = (
                    input.u8(),
                    input.u16(),
                    input.u8(),
                    input.u8(),
                    input.u8(),
                    input.u8(),
                ) else {
                    break;
                };
                now += Duration::from_millis(4 * u64::from(adv));
                let mut header = FragmentHeader {
                    message_id: message_id(id),
                    total_len: total_len(len),
                    index: 0,
                    chunk_len: chunk_len(chunk),
                    inner_type: inner_type(flags),
                };
                header.index = index(idx, header.fragment_count());
                let offset = u64::from(header.index) * u64::from(header.chunk_len);
                let n = if (flags >> 3) & 3 == 3 {
                    let Some(w) = input.u8() else { break };
                    usize::from(w)
                } else {
                    header.expected_chunk_len().unwrap_or(0)
                };
                let bytes = pattern_bytes(header.message_id, offset, n);
                rs[t].insert(now, u32::from((flags >> 2) & 1), &header, &bytes);
            }
        }
        check_invariants(&budget, &rs);
    }
    drop(rs);
    assert_eq!(
        budget.used(),
        0,
        "budget not fully returned after dropping the reassemblers"
    );
}
