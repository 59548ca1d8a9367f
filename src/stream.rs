//! Fragmentation and reassembly of messages larger than one datagram.
//!
//! This is the stream layer. It is sans-IO: it owns no socket and reads no
//! clock; time arrives as `now: Instant` arguments, so every behaviour here is
//! deterministic and testable with a virtual clock.
//!
//! A message that does not fit in one datagram is split by [`fragments`] into
//! numbered pieces. Each piece travels as the sealed plaintext of one STREAM
//! frame; the session layer does the framing and the encryption. At the
//! receiver, [`FragmentHeader::decode`] parses the plaintext and a
//! [`Reassembler`] puts the pieces back together, in any order, ignoring
//! duplicates.
//!
//! # Wire layout
//!
//! The plaintext of a STREAM frame is a 15-byte header ([`FRAGMENT_HEADER_LEN`])
//! followed by the chunk bytes. All integers are big-endian.
//!
//! ```text
//! offset  field       type  meaning
//!  0      message_id  u32   per-session counter chosen by the sender, one per fragmented message
//!  4      total_len   u32   length of the whole message in bytes (> 0)
//!  8      index       u32   fragment index, 0-based, < count
//! 12      chunk_len   u16   nominal fragment size L (> 0)
//! 14      inner_type  u8    frame type of the reassembled message (0x01 DATA or 0x80..=0xFF)
//! 15      chunk       ...   the fragment's bytes
//! ```
//!
//! With `count = ceil(total_len / L)`, every fragment but the last carries
//! exactly `L` bytes, at offset `index * L` of the message; the last carries
//! the remainder `total_len - (count - 1) * L`. A header whose chunk length
//! disagrees with its index is refused, so a fragment can never write outside
//! its slot of the message buffer.
//!
//! # Memory bounds
//!
//! A fragment header announces a `total_len` of up to 4 GiB, and an attacker
//! (or a broken peer) can send the first fragment of many messages and never
//! the rest. So a [`Reassembler`] allocates a message's buffer only after it
//! reserved those bytes, and refuses with a typed error when it cannot:
//!
//! - [`ReassemblyConfig::max_message_size`] bounds one message;
//! - [`ReassemblyConfig::max_session_bytes`] bounds the partial messages of one
//!   session (one reassembler);
//! - [`ReassemblyConfig::max_pending_messages`] bounds their number, which
//!   bounds the bookkeeping that does not scale with bytes;
//! - an optional [`MemoryBudget`], shared by every reassembler of a node, bounds
//!   the sum over all sessions, so many sessions cannot each fill their own cap.
//!
//! A reservation is released when the message completes (the buffer is handed
//! over to the caller), when it expires, and when the reassembler is dropped.
//! A message of a single fragment completes at once and reserves nothing: its
//! allocation is the size of the bytes that actually arrived.
//!
//! Ids of completed messages go into a replay window (the one that guards
//! packet numbers): a late duplicate of a delivered message is refused as
//! [`ReassemblyError::Stale`] instead of starting a new partial message that
//! could only expire.
//!
//! # Expiry
//!
//! A message's deadline is the time its first fragment arrived plus
//! [`ReassemblyConfig::timeout`]. The deadlines are kept in a queue in creation
//! order, which is also deadline order since the timeout is fixed and `now`
//! does not go backwards: the earliest one is at the front, so
//! [`Reassembler::poll_timeout`] and [`Reassembler::handle_timeout`] cost O(1)
//! per expired message. Entries of messages that completed stay in the queue
//! and are skipped lazily (and compacted when they pile up). An expired
//! message is dropped whole and counted in [`ReassemblyStats::expired`]; a
//! partial message is never delivered.
//!
//! Call [`Reassembler::handle_timeout`] when the instant returned by
//! [`Reassembler::poll_timeout`] is reached.

use std::collections::{HashMap, VecDeque};
use std::iter::FusedIterator;
use std::slice::Chunks;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::replay::ReplayWindow;

/// Length of the fragment header at the front of a STREAM frame's plaintext.
pub const FRAGMENT_HEADER_LEN: usize = 15;

/// Bits per word of a partial message's received-fragments bitmap.
const BITMAP_WORD_BITS: u32 = u64::BITS;

/// Bytes per word of the received-fragments bitmap.
const BITMAP_WORD_BYTES: usize = std::mem::size_of::<u64>();

/// Header of one fragment. See the [module docs](self) for the wire layout.
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
    fn offset(&self) -> u64 {
        // u32 * u16 < 2^48: no overflow in u64.
        u64::from(self.index) * u64::from(self.chunk_len)
    }

    /// [`validate`](Self::validate) plus the chunk length check.
    fn validate_chunk(&self, actual: usize) -> Result<(), ReassemblyError> {
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

/// Limits of one [`Reassembler`].
///
/// Raising a limit lets larger or more interleaved messages through, at the
/// cost of memory that a peer can make the receiver hold until the timeout.
#[derive(Debug, Clone)]
pub struct ReassemblyConfig {
    /// Largest message accepted, in bytes: a fragment announcing a larger
    /// `total_len` is refused before anything is reserved.
    pub max_message_size: usize,
    /// Bytes of partially received messages (buffers plus bitmaps) one
    /// reassembler may hold at once.
    pub max_session_bytes: usize,
    /// How long after its first fragment a message may stay incomplete before
    /// it is dropped and counted as expired.
    pub timeout: Duration,
    /// Most partially received messages held at once.
    pub max_pending_messages: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            // 16 MiB: the largest single message applications send, and the
            // same frame bound as tungstenite's default. One header must not
            // be able to make a node reserve more than this.
            max_message_size: 16 * 1024 * 1024,
            // 32 MiB + 1 MiB: two maximum-size messages in flight at once
            // (each also reserves its fragment bitmap, a few KiB at any
            // sensible MTU), so a sender can start the next large message
            // while the previous one is still being completed, yet one
            // session cannot pin more.
            max_session_bytes: 33 * 1024 * 1024,
            // 5 s: many round trips even on a slow path (RTTs of hundreds of
            // ms). This layer does not retransmit, so a message still missing
            // a fragment after this long is lost; holding it longer only pins
            // memory that a flood of first fragments could exhaust.
            timeout: Duration::from_secs(5),
            // 256: far more interleaved messages than a sender pipelines, and
            // it bounds the per-message bookkeeping (map entry, bitmap,
            // deadline) that the byte caps do not see.
            max_pending_messages: 256,
        }
    }
}

/// A byte budget shared by all reassemblers of a node, so that many sessions
/// cannot each fill their own cap.
///
/// Lock-free (an atomic counter and a fixed limit). Cloning shares the budget.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    used: AtomicUsize,
    limit: usize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                used: AtomicUsize::new(0),
                limit,
            }),
        }
    }

    /// Reserves `n` bytes if that keeps the total within the limit; returns
    /// whether it did. All or nothing.
    pub fn try_reserve(&self, n: usize) -> bool {
        let limit = self.inner.limit;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Returns `n` bytes previously reserved with
    /// [`try_reserve`](Self::try_reserve). Releasing more than is used
    /// saturates at 0 (a caller bug, but not a reason to panic).
    pub fn release(&self, n: usize) {
        // The closure always returns Some, so the update cannot fail.
        let _ = self
            .inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// Bytes currently reserved.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// The limit this budget was created with.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }
}

/// A message put back together.
#[derive(Debug)]
pub struct Reassembled {
    /// The stream the fragments arrived on.
    pub stream_id: u32,
    /// Frame type of the message, from its fragment headers.
    pub inner_type: u8,
    /// The whole message.
    pub payload: Vec<u8>,
}

/// Counters of a [`Reassembler`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Messages delivered whole.
    pub completed: u64,
    /// Messages dropped because their deadline passed before they completed.
    pub expired: u64,
    /// Fragments ignored because the same fragment of a pending message had
    /// already arrived.
    pub duplicates: u64,
    /// Fragments refused with an error.
    pub rejected: u64,
}

/// Why a fragment was refused or a message could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReassemblyError {
    /// The plaintext is shorter than a fragment header.
    #[error(
        "fragment of {len} bytes is shorter than the {FRAGMENT_HEADER_LEN}-byte fragment header; \
         drop it (corrupt or not a STREAM frame)"
    )]
    Truncated {
        /// Length of the plaintext received.
        len: usize,
    },
    /// A header field has an impossible value.
    #[error("invalid fragment header: {reason}; drop the fragment (the sender is broken)")]
    InvalidHeader {
        /// Which field is wrong.
        reason: &'static str,
    },
    /// The fragment index is not below the fragment count.
    #[error(
        "fragment index {index} is out of range for a message of {count} fragments; \
         drop the fragment (the sender is broken)"
    )]
    IndexOutOfRange {
        /// The index in the header.
        index: u32,
        /// The fragment count implied by `total_len` and `chunk_len`.
        count: u32,
    },
    /// The chunk length disagrees with the header.
    #[error(
        "fragment {index} carries {actual} bytes but its header implies {expected}; \
         drop the fragment (the sender is broken)"
    )]
    ChunkLengthMismatch {
        /// The index in the header.
        index: u32,
        /// The length implied by `total_len`, `chunk_len` and `index`.
        expected: usize,
        /// The length that arrived.
        actual: usize,
    },
    /// The message is larger than the configured maximum.
    #[error(
        "message of {len} bytes exceeds the maximum of {max}; \
         raise ReassemblyConfig::max_message_size if such messages are expected"
    )]
    MessageTooLarge {
        /// `total_len` announced by the header.
        len: u64,
        /// [`ReassemblyConfig::max_message_size`].
        max: usize,
    },
    /// Starting the message would exceed the session's byte cap.
    #[error(
        "starting a message needs {needed} bytes but this session already holds {held} of \
         {max}; wait for pending messages to complete or expire, or raise \
         ReassemblyConfig::max_session_bytes"
    )]
    SessionMemoryLimit {
        /// Bytes the new message would reserve.
        needed: usize,
        /// Bytes already held by the session.
        held: usize,
        /// [`ReassemblyConfig::max_session_bytes`].
        max: usize,
    },
    /// Starting the message would exceed the node's shared budget.
    #[error(
        "starting a message needs {needed} bytes but the node budget has {used} of {limit} in \
         use; wait for other sessions' messages to complete or expire, or raise the \
         MemoryBudget limit"
    )]
    NodeMemoryLimit {
        /// Bytes the new message would reserve.
        needed: usize,
        /// Bytes of the budget in use when it was refused.
        used: usize,
        /// The budget's limit.
        limit: usize,
    },
    /// Too many messages are partially received already.
    #[error(
        "{max} messages are already partially received; wait for them to complete or expire, \
         or raise ReassemblyConfig::max_pending_messages"
    )]
    TooManyPending {
        /// [`ReassemblyConfig::max_pending_messages`].
        max: usize,
    },
    /// The fragment disagrees with the first fragment seen of the same
    /// message.
    #[error(
        "fragment of message {message_id} disagrees with its first fragment on {field}; \
         drop it (the sender reused a message id or is broken)"
    )]
    Inconsistent {
        /// The message id.
        message_id: u32,
        /// Which field differs: `total_len`, `chunk_len`, `inner_type` or
        /// `stream_id`.
        field: &'static str,
    },
    /// The message was already delivered, or its id is older than the window
    /// of completed ids.
    #[error(
        "fragment of message {message_id}, which was already delivered or is too old to tell; \
         drop it (late duplicate)"
    )]
    Stale {
        /// The message id.
        message_id: u32,
    },
    /// [`Fragments::new`] was called with arguments that break its
    /// preconditions.
    #[error("cannot split the message: {reason}")]
    CannotSplit {
        /// Which precondition failed.
        reason: &'static str,
    },
}

/// A partially received message.
#[derive(Debug)]
struct Partial {
    stream_id: u32,
    total_len: u32,
    chunk_len: u16,
    inner_type: u8,
    /// Fragments in the message.
    count: u32,
    /// Distinct fragments received so far.
    received: u32,
    /// Bit `i` set when fragment `i` arrived.
    bitmap: Vec<u64>,
    /// The message, filled in at `index * chunk_len` as fragments arrive.
    buf: Vec<u8>,
    /// Bytes reserved for this message (buffer plus bitmap).
    reserved: usize,
    /// Matches the message's entry in the deadline queue.
    generation: u64,
}

/// An entry of the deadline queue.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    /// When the message expires; `None` when the timeout is too large for an
    /// `Instant` to represent, i.e. never.
    at: Option<Instant>,
    message_id: u32,
    /// Tells this entry from one of an earlier message with the same id.
    generation: u64,
}

/// Puts fragmented messages of one session back together, within memory
/// bounds. See the [module docs](self).
///
/// Feed it with [`insert`](Self::insert) (or
/// [`insert_plaintext`](Self::insert_plaintext)) as fragments arrive, and call
/// [`handle_timeout`](Self::handle_timeout) when the instant returned by
/// [`poll_timeout`](Self::poll_timeout) is reached. `now` must not go
/// backwards between calls.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    node_budget: Option<MemoryBudget>,
    pending: HashMap<u32, Partial>,
    /// Deadlines in creation order, hence in deadline order. May hold entries
    /// of messages no longer pending; those are skipped.
    deadlines: VecDeque<Deadline>,
    /// Ids of completed messages.
    completed_ids: ReplayWindow,
    next_generation: u64,
    bytes_held: usize,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// A reassembler with the given limits, drawing also from `node_budget`
    /// when one is given.
    pub fn new(config: ReassemblyConfig, node_budget: Option<MemoryBudget>) -> Self {
        Self {
            config,
            node_budget,
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            completed_ids: ReplayWindow::new(),
            next_generation: 0,
            bytes_held: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// Decodes a STREAM frame's plaintext with [`FragmentHeader::decode`] and
    /// feeds it to [`insert`](Self::insert). Decode errors count as rejected.
    pub fn insert_plaintext(
        &mut self,
        now: Instant,
        stream_id: u32,
        plaintext: &[u8],
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        match FragmentHeader::decode(plaintext) {
            Ok((header, chunk)) => self.insert(now, stream_id, &header, chunk),
            Err(e) => {
                self.stats.rejected += 1;
                Err(e)
            }
        }
    }

    /// Feeds one decoded fragment that arrived on `stream_id`.
    ///
    /// Returns `Ok(Some(message))` when it completed a message, `Ok(None)`
    /// when it was stored or was a harmless duplicate (counted in
    /// [`ReassemblyStats::duplicates`]), and an error for anything refused
    /// (counted in [`ReassemblyStats::rejected`]); a refused fragment changes
    /// nothing else.
    pub fn insert(
        &mut self,
        now: Instant,
        stream_id: u32,
        header: &FragmentHeader,
        chunk: &[u8],
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        let result = self.insert_inner(now, stream_id, header, chunk);
        if result.is_err() {
            self.stats.rejected += 1;
        }
        result
    }

    fn insert_inner(
        &mut self,
        now: Instant,
        stream_id: u32,
        header: &FragmentHeader,
        chunk: &[u8],
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        // The header may not come from `decode`: check it against the chunk.
        header.validate_chunk(chunk.len())?;
        let too_large = ReassemblyError::MessageTooLarge {
            len: u64::from(header.total_len),
            max: self.config.max_message_size,
        };
        let total_len = match usize::try_from(header.total_len) {
            Ok(len) if len <= self.config.max_message_size => len,
            _ => return Err(too_large),
        };

        // A fragment of a pending message is always accepted, even if the
        // window of completed ids has moved past its id.
        if self.pending.contains_key(&header.message_id) {
            return self.add_fragment(stream_id, header, chunk);
        }

        let id = self.extend_id(header.message_id);
        if self.completed_ids.check(id).is_err() {
            return Err(ReassemblyError::Stale {
                message_id: header.message_id,
            });
        }

        if header.fragment_count() == 1 {
            // The whole message is this chunk, whose length was checked
            // against total_len: the allocation is the size of what arrived,
            // so it needs no reservation.
            self.completed_ids.commit(id);
            self.stats.completed += 1;
            return Ok(Some(Reassembled {
                stream_id,
                inner_type: header.inner_type,
                payload: chunk.to_vec(),
            }));
        }

        self.start(now, stream_id, header, total_len)?;
        self.add_fragment(stream_id, header, chunk)
    }

    /// Reserves memory for a new partial message of `total_len` bytes and
    /// registers it, empty, with its deadline. Allocates nothing before the
    /// reservation succeeded; holds nothing if it fails.
    fn start(
        &mut self,
        now: Instant,
        stream_id: u32,
        header: &FragmentHeader,
        total_len: usize,
    ) -> Result<(), ReassemblyError> {
        if self.pending.len() >= self.config.max_pending_messages {
            return Err(ReassemblyError::TooManyPending {
                max: self.config.max_pending_messages,
            });
        }
        let count = header.fragment_count();
        let session_limit = |needed| ReassemblyError::SessionMemoryLimit {
            needed,
            held: self.bytes_held,
            max: self.config.max_session_bytes,
        };
        // count <= total_len <= max_message_size, so this does not overflow on
        // any platform that could hold the message; refuse if it would.
        let Some(words) = usize::try_from(count.div_ceil(BITMAP_WORD_BITS)).ok() else {
            return Err(session_limit(usize::MAX));
        };
        let Some(needed) = words
            .checked_mul(BITMAP_WORD_BYTES)
            .and_then(|bitmap| bitmap.checked_add(total_len))
        else {
            return Err(session_limit(usize::MAX));
        };
        match self.bytes_held.checked_add(needed) {
            Some(total) if total <= self.config.max_session_bytes => {}
            _ => return Err(session_limit(needed)),
        }
        if let Some(budget) = &self.node_budget {
            if !budget.try_reserve(needed) {
                return Err(ReassemblyError::NodeMemoryLimit {
                    needed,
                    used: budget.used(),
                    limit: budget.limit(),
                });
            }
        }
        // Cannot overflow: checked against max_session_bytes above.
        self.bytes_held += needed;

        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        self.pending.insert(
            header.message_id,
            Partial {
                stream_id,
                total_len: header.total_len,
                chunk_len: header.chunk_len,
                inner_type: header.inner_type,
                count,
                received: 0,
                bitmap: vec![0u64; words],
                buf: vec![0u8; total_len],
                reserved: needed,
                generation,
            },
        );
        self.deadlines.push_back(Deadline {
            // None only for a timeout too large to represent: never expires.
            at: now.checked_add(self.config.timeout),
            message_id: header.message_id,
            generation,
        });
        self.compact_deadlines();
        Ok(())
    }

    /// Stores a fragment of a pending message; completes the message when it
    /// was the last one missing.
    fn add_fragment(
        &mut self,
        stream_id: u32,
        header: &FragmentHeader,
        chunk: &[u8],
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        let message_id = header.message_id;
        let Some(partial) = self.pending.get_mut(&message_id) else {
            // Callers check that the message is pending; refuse rather than
            // panic should that ever change.
            return Err(ReassemblyError::Stale { message_id });
        };
        partial.check_consistent(stream_id, header)?;

        // The header was validated and agrees with the partial message on
        // total_len and chunk_len, so index < count and the chunk fits at
        // index * chunk_len. The lookups below still refuse rather than panic.
        let out_of_range = ReassemblyError::IndexOutOfRange {
            index: header.index,
            count: partial.count,
        };
        let word_index = usize::try_from(header.index / BITMAP_WORD_BITS).ok();
        let bit = 1u64 << (header.index % BITMAP_WORD_BITS);
        let Some(word) = word_index.and_then(|w| partial.bitmap.get_mut(w)) else {
            return Err(out_of_range);
        };
        if *word & bit != 0 {
            self.stats.duplicates += 1;
            return Ok(None);
        }
        let dst = usize::try_from(header.offset())
            .ok()
            .and_then(|start| Some(start..start.checked_add(chunk.len())?))
            .and_then(|range| partial.buf.get_mut(range));
        let Some(dst) = dst else {
            return Err(out_of_range);
        };
        dst.copy_from_slice(chunk);
        *word |= bit;
        partial.received += 1;
        if partial.received < partial.count {
            return Ok(None);
        }

        // Every index below count is set: the message is complete.
        let Some(partial) = self.pending.remove(&message_id) else {
            // It was found above and nothing removed it since.
            return Ok(None);
        };
        self.release(partial.reserved);
        let id = self.extend_id(message_id);
        self.completed_ids.commit(id);
        self.stats.completed += 1;
        self.prune_deadlines();
        Ok(Some(Reassembled {
            stream_id: partial.stream_id,
            inner_type: partial.inner_type,
            payload: partial.buf,
        }))
    }

    /// Extends a 32-bit message id to the 64-bit id nearest to the highest
    /// one completed, so that the sender's counter may wrap (after 2^32
    /// fragmented messages) without its new ids looking ancient.
    fn extend_id(&self, id: u32) -> u64 {
        let Some(high) = self.completed_ids.highest() else {
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

    /// Drops every message whose deadline is at or before `now`; returns how
    /// many expired (also counted in [`ReassemblyStats::expired`]).
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&front) = self.deadlines.front() {
            if !is_live(&self.pending, &front) {
                self.deadlines.pop_front();
                continue;
            }
            match front.at {
                Some(at) if at <= now => {}
                _ => break,
            }
            self.deadlines.pop_front();
            if let Some(partial) = self.pending.remove(&front.message_id) {
                self.release(partial.reserved);
                // A sender never reuses a message id, so a late fragment of
                // an expired message is stale: refuse it rather than start a
                // partial that could only expire again.
                let id = self.extend_id(front.message_id);
                self.completed_ids.commit(id);
                expired += 1;
            }
        }
        self.stats.expired += expired as u64;
        expired
    }

    /// Earliest deadline of a pending message, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // The front is kept live by `prune_deadlines`, so this looks at one
        // entry in practice.
        self.deadlines
            .iter()
            .find(|d| is_live(&self.pending, d))
            .and_then(|d| d.at)
    }

    /// Bytes reserved for pending messages (buffers plus bitmaps).
    pub fn bytes_held(&self) -> usize {
        self.bytes_held
    }

    /// Number of partially received messages.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Counters since creation.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// The limits this reassembler was created with.
    pub fn config(&self) -> &ReassemblyConfig {
        &self.config
    }

    /// Returns `n` reserved bytes to the session cap and the node budget.
    fn release(&mut self, n: usize) {
        self.bytes_held = self.bytes_held.saturating_sub(n);
        if let Some(budget) = &self.node_budget {
            budget.release(n);
        }
    }

    /// Pops deadline entries of messages no longer pending off the front, so
    /// that the front is the earliest live deadline.
    fn prune_deadlines(&mut self) {
        while let Some(front) = self.deadlines.front() {
            if is_live(&self.pending, front) {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// Drops dead entries from the whole queue when they outnumber the live
    /// ones, so that the queue stays O(pending) (amortised O(1) per insert).
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() > 2 * self.pending.len() + 32 {
            let pending = &self.pending;
            self.deadlines.retain(|d| is_live(pending, d));
        }
    }
}

impl Drop for Reassembler {
    fn drop(&mut self) {
        let held = self.bytes_held;
        self.release(held);
    }
}

impl Partial {
    /// Checks that a fragment agrees with the first fragment of the message.
    fn check_consistent(
        &self,
        stream_id: u32,
        header: &FragmentHeader,
    ) -> Result<(), ReassemblyError> {
        let field = if stream_id != self.stream_id {
            "stream_id"
        } else if header.total_len != self.total_len {
            "total_len"
        } else if header.chunk_len != self.chunk_len {
            "chunk_len"
        } else if header.inner_type != self.inner_type {
            "inner_type"
        } else {
            return Ok(());
        };
        Err(ReassemblyError::Inconsistent {
            message_id: header.message_id,
            field,
        })
    }
}

/// Whether a deadline entry belongs to a message still pending (and not to an
/// earlier message with the same id).
fn is_live(pending: &HashMap<u32, Partial>, deadline: &Deadline) -> bool {
    pending
        .get(&deadline.message_id)
        .is_some_and(|p| p.generation == deadline.generation)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    const MIB: usize = 1024 * 1024;

    /// SplitMix64: a tiny deterministic generator for payloads and shuffles,
    /// seeded by proptest so that failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                items.swap(i, self.below(i + 1));
            }
        }
    }

    /// Pseudo-random bytes, eight at a time so that multi-MiB payloads stay
    /// cheap in a debug build.
    fn payload(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng(seed);
        let mut out = vec![0u8; len];
        for word in out.chunks_mut(8) {
            let bytes = rng.next().to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
        out
    }

    /// Message sizes from 1 byte to 16 MiB, with small and multi-MiB sizes
    /// both likely, and a chunk size to go with each: at least 1 KiB above
    /// 1 MiB so that a debug build stays fast.
    fn size_and_chunk() -> impl Strategy<Value = (usize, usize)> {
        prop_oneof![
            (1usize..=4096, 64usize..=9000),
            (4096usize..=MIB, 64usize..=9000),
            (MIB..=16 * MIB, 1024usize..=9000),
        ]
    }

    fn config() -> ReassemblyConfig {
        ReassemblyConfig::default()
    }

    fn header(message_id: u32, total_len: u32, index: u32, chunk_len: u16) -> FragmentHeader {
        FragmentHeader {
            message_id,
            total_len,
            index,
            chunk_len,
            inner_type: 0x01,
        }
    }

    /// Inserts every fragment of `msg` in order on stream 1; returns what the last one
    /// produced.
    fn insert_all(
        r: &mut Reassembler,
        now: Instant,
        message_id: u32,
        msg: &[u8],
        chunk_len: usize,
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        let mut last = Ok(None);
        for (h, chunk) in fragments(message_id, 0x01, msg, chunk_len).unwrap() {
            last = r.insert(now, 1, &h, chunk);
        }
        last
    }

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

    #[test]
    fn out_of_order_and_duplicates() {
        let now = Instant::now();
        let msg = payload(3000, 2);
        let mut frags: Vec<_> = fragments(4, 0x81, &msg, 1000).unwrap().collect();
        frags.reverse();
        let mut r = Reassembler::new(config(), None);
        assert!(r.insert(now, 3, &frags[0].0, frags[0].1).unwrap().is_none());
        assert!(r.insert(now, 3, &frags[0].0, frags[0].1).unwrap().is_none());
        assert!(r.insert(now, 3, &frags[1].0, frags[1].1).unwrap().is_none());
        let done = r.insert(now, 3, &frags[2].0, frags[2].1).unwrap().unwrap();
        assert_eq!(
            (done.stream_id, done.inner_type, &done.payload),
            (3, 0x81, &msg)
        );
        assert_eq!(
            r.stats(),
            ReassemblyStats {
                completed: 1,
                duplicates: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            (r.pending(), r.bytes_held(), r.poll_timeout()),
            (0, 0, None)
        );
    }

    #[test]
    fn single_fragment_completes_at_once() {
        let budget = MemoryBudget::new(0);
        let mut r = Reassembler::new(config(), Some(budget.clone()));
        let mut wire = header(1, 5, 0, 1000).encode().to_vec();
        wire.extend_from_slice(b"hello");
        let done = r
            .insert_plaintext(Instant::now(), 2, &wire)
            .unwrap()
            .unwrap();
        assert_eq!(done.payload, b"hello");
        assert_eq!((r.pending(), r.bytes_held(), budget.used()), (0, 0, 0));
        assert_eq!(r.stats().completed, 1);
    }

    #[test]
    fn chunk_must_match_header() {
        let mut r = Reassembler::new(config(), None);
        let h = header(1, 3000, 0, 1000);
        assert_eq!(
            r.insert(Instant::now(), 1, &h, &[0u8; 999]).unwrap_err(),
            ReassemblyError::ChunkLengthMismatch {
                index: 0,
                expected: 1000,
                actual: 999
            }
        );
        assert_eq!(
            r.insert_plaintext(Instant::now(), 1, &[1, 2]).unwrap_err(),
            ReassemblyError::Truncated { len: 2 }
        );
        assert_eq!((r.stats().rejected, r.pending(), r.bytes_held()), (2, 0, 0));
    }

    #[test]
    fn message_larger_than_max_is_refused() {
        let cfg = ReassemblyConfig {
            max_message_size: 1000,
            ..config()
        };
        let mut r = Reassembler::new(cfg, None);
        let h = header(1, 1001, 0, 500);
        assert_eq!(
            r.insert(Instant::now(), 1, &h, &[0u8; 500]).unwrap_err(),
            ReassemblyError::MessageTooLarge {
                len: 1001,
                max: 1000
            }
        );
        // Also when it would fit in one fragment.
        let h = header(2, 1001, 0, 2000);
        assert!(matches!(
            r.insert(Instant::now(), 1, &h, &[0u8; 1001]),
            Err(ReassemblyError::MessageTooLarge { .. })
        ));
        assert_eq!((r.stats().rejected, r.pending(), r.bytes_held()), (2, 0, 0));
        // Exactly the maximum is fine.
        let msg = payload(1000, 3);
        assert_eq!(
            insert_all(&mut r, Instant::now(), 3, &msg, 300)
                .unwrap()
                .unwrap()
                .payload,
            msg
        );
    }

    #[test]
    fn session_cap_is_enforced() {
        let cfg = ReassemblyConfig {
            max_session_bytes: 10_000,
            ..config()
        };
        let now = Instant::now();
        let mut r = Reassembler::new(cfg, None);
        let a = payload(6000, 4);
        let b = payload(6000, 5);
        let (ha, ca) = fragments(1, 1, &a, 1000).unwrap().next().unwrap();
        let (hb, cb) = fragments(2, 1, &b, 1000).unwrap().next().unwrap();
        assert!(r.insert(now, 1, &ha, ca).unwrap().is_none());
        // 6000 bytes of buffer plus one bitmap word.
        assert_eq!(r.bytes_held(), 6008);
        assert_eq!(
            r.insert(now, 1, &hb, cb).unwrap_err(),
            ReassemblyError::SessionMemoryLimit {
                needed: 6008,
                held: 6008,
                max: 10_000
            }
        );
        assert_eq!((r.pending(), r.bytes_held()), (1, 6008));
        assert!(insert_all(&mut r, now, 1, &a, 1000).unwrap().is_some());
        assert_eq!(r.bytes_held(), 0);
        assert_eq!(
            insert_all(&mut r, now, 2, &b, 1000)
                .unwrap()
                .unwrap()
                .payload,
            b
        );
    }

    #[test]
    fn node_budget_is_shared_and_released() {
        let budget = MemoryBudget::new(10_000);
        let now = Instant::now();
        let timeout = config().timeout;
        let mut r1 = Reassembler::new(config(), Some(budget.clone()));
        let mut r2 = Reassembler::new(config(), Some(budget.clone()));
        let msg = payload(6000, 6);
        let first = |id| fragments(id, 1, &msg, 1000).unwrap().next().unwrap();

        // r1 holds 6008: r2 cannot start a message of the same size.
        let (h, c) = first(1);
        assert!(r1.insert(now, 1, &h, c).unwrap().is_none());
        assert_eq!(budget.used(), 6008);
        let (h, c) = first(1);
        assert_eq!(
            r2.insert(now, 1, &h, c).unwrap_err(),
            ReassemblyError::NodeMemoryLimit {
                needed: 6008,
                used: 6008,
                limit: 10_000
            }
        );
        assert_eq!((r2.pending(), r2.bytes_held()), (0, 0));

        // Freed by completion.
        assert!(insert_all(&mut r1, now, 1, &msg, 1000).unwrap().is_some());
        assert_eq!(budget.used(), 0);
        let (h, c) = first(1);
        assert!(r2.insert(now, 1, &h, c).unwrap().is_none());
        assert_eq!(budget.used(), 6008);

        // Freed by expiry.
        assert_eq!(r2.handle_timeout(now + timeout), 1);
        assert_eq!(budget.used(), 0);

        // Freed by drop.
        let (h, c) = first(2);
        assert!(r1.insert(now, 1, &h, c).unwrap().is_none());
        assert_eq!(budget.used(), 6008);
        drop(r1);
        assert_eq!(budget.used(), 0);
        assert!(r2.insert(now, 1, &h, c).unwrap().is_none());
        assert_eq!(budget.used(), 6008);
    }

    #[test]
    fn memory_budget_is_all_or_nothing() {
        let b = MemoryBudget::new(100);
        assert!(b.try_reserve(60));
        assert!(!b.try_reserve(41));
        assert!(!b.try_reserve(usize::MAX));
        assert!(b.try_reserve(40));
        assert_eq!((b.used(), b.limit()), (100, 100));
        b.release(150);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn max_pending_is_enforced() {
        let cfg = ReassemblyConfig {
            max_pending_messages: 2,
            ..config()
        };
        let now = Instant::now();
        let mut r = Reassembler::new(cfg, None);
        let msg = payload(2000, 7);
        for id in 0..2 {
            let (h, c) = fragments(id, 1, &msg, 1000).unwrap().next().unwrap();
            assert!(r.insert(now, 1, &h, c).unwrap().is_none());
        }
        let (h, c) = fragments(2, 1, &msg, 1000).unwrap().next().unwrap();
        assert_eq!(
            r.insert(now, 1, &h, c).unwrap_err(),
            ReassemblyError::TooManyPending { max: 2 }
        );
        // Single-fragment messages need no pending slot.
        assert!(insert_all(&mut r, now, 3, &msg, 5000).unwrap().is_some());
        // Completing one frees a slot.
        assert!(insert_all(&mut r, now, 0, &msg, 1000).unwrap().is_some());
        assert!(r.insert(now, 1, &h, c).unwrap().is_none());
        assert_eq!(r.pending(), 2);
    }

    #[test]
    fn inconsistent_fragments_are_refused() {
        let now = Instant::now();
        let mut r = Reassembler::new(config(), None);
        let msg = payload(3000, 8);
        let frags: Vec<_> = fragments(5, 0x01, &msg, 1000).unwrap().collect();
        assert!(r.insert(now, 1, &frags[0].0, frags[0].1).unwrap().is_none());
        let h = frags[1].0;
        let c = frags[1].1;
        let cases = [
            (2, h, c, "stream_id"),
            (
                1,
                FragmentHeader {
                    total_len: 3500,
                    ..h
                },
                c,
                "total_len",
            ),
            (
                1,
                FragmentHeader {
                    chunk_len: 500,
                    index: 1,
                    ..h
                },
                &c[..500],
                "chunk_len",
            ),
            (
                1,
                FragmentHeader {
                    inner_type: 0x80,
                    ..h
                },
                c,
                "inner_type",
            ),
        ];
        for (stream, bad, chunk, field) in cases {
            assert_eq!(
                r.insert(now, stream, &bad, chunk).unwrap_err(),
                ReassemblyError::Inconsistent {
                    message_id: 5,
                    field
                }
            );
        }
        assert_eq!(r.stats().rejected, 4);
        // The message is unharmed and completes with the right fragments.
        assert!(r.insert(now, 1, &frags[1].0, frags[1].1).unwrap().is_none());
        let done = r.insert(now, 1, &frags[2].0, frags[2].1).unwrap().unwrap();
        assert_eq!(done.payload, msg);
    }

    #[test]
    fn late_duplicate_of_completed_message_is_stale() {
        let now = Instant::now();
        let mut r = Reassembler::new(config(), None);
        let msg = payload(3000, 9);
        assert!(insert_all(&mut r, now, 10, &msg, 1000).unwrap().is_some());
        for (h, c) in fragments(10, 1, &msg, 1000).unwrap() {
            assert_eq!(
                r.insert(now, 7, &h, c).unwrap_err(),
                ReassemblyError::Stale { message_id: 10 }
            );
        }
        assert_eq!((r.pending(), r.bytes_held()), (0, 0));
        assert_eq!(r.poll_timeout(), None);
        // Same for a single-fragment message.
        assert!(insert_all(&mut r, now, 11, &msg, 5000).unwrap().is_some());
        assert!(matches!(
            insert_all(&mut r, now, 11, &msg, 5000),
            Err(ReassemblyError::Stale { message_id: 11 })
        ));
        // An id far below the newest completed one is too old to tell.
        assert!(insert_all(&mut r, now, 100_000, &msg, 5000)
            .unwrap()
            .is_some());
        assert!(matches!(
            insert_all(&mut r, now, 12, &msg, 1000),
            Err(ReassemblyError::Stale { message_id: 12 })
        ));
        assert_eq!(r.stats().completed, 3);
        assert_eq!(r.stats().rejected, 3 + 1 + 3);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn pending_message_survives_window_moving_on() {
        let now = Instant::now();
        let mut r = Reassembler::new(config(), None);
        let msg = payload(3000, 10);
        let frags: Vec<_> = fragments(0, 1, &msg, 1000).unwrap().collect();
        assert!(r.insert(now, 1, &frags[0].0, frags[0].1).unwrap().is_none());
        for id in 1..5000 {
            assert!(insert_all(&mut r, now, id, b"x", 100).unwrap().is_some());
        }
        assert!(r.insert(now, 1, &frags[1].0, frags[1].1).unwrap().is_none());
        let done = r.insert(now, 1, &frags[2].0, frags[2].1).unwrap().unwrap();
        assert_eq!(done.payload, msg);
    }

    #[test]
    fn expiry_follows_first_fragment_time() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut r = Reassembler::new(config(), None);
        let msg = payload(3000, 11);
        let first = |id| fragments(id, 1, &msg, 1000).unwrap().next().unwrap();
        let (h, c) = first(1);
        r.insert(t0, 1, &h, c).unwrap();
        let (h, c) = first(2);
        r.insert(t0 + Duration::from_secs(1), 1, &h, c).unwrap();
        let (h, c) = first(3);
        r.insert(t0 + Duration::from_secs(2), 1, &h, c).unwrap();
        assert_eq!(r.poll_timeout(), Some(t0 + timeout));
        // Completing the oldest moves the deadline to the next one.
        assert!(
            insert_all(&mut r, t0 + Duration::from_secs(3), 1, &msg, 1000)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + Duration::from_secs(1) + timeout)
        );
        // A later fragment does not extend the deadline.
        let (h, c) = fragments(2, 1, &msg, 1000).unwrap().nth(1).unwrap();
        r.insert(t0 + Duration::from_secs(4), 1, &h, c).unwrap();
        assert_eq!(r.handle_timeout(t0 + Duration::from_millis(5999)), 0);
        assert_eq!(r.handle_timeout(t0 + Duration::from_secs(6)), 1);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(7)));
        assert_eq!(r.handle_timeout(t0 + Duration::from_secs(60)), 1);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!((r.pending(), r.bytes_held(), r.stats().expired), (0, 0, 2));
        // A late fragment of an expired message is stale: it must not start
        // a partial message that could only expire again.
        let t1 = t0 + Duration::from_secs(100);
        let (h, c) = fragments(2, 1, &msg, 1000).unwrap().nth(2).unwrap();
        assert_eq!(
            r.insert(t1, 1, &h, c).unwrap_err(),
            ReassemblyError::Stale { message_id: 2 }
        );
        assert_eq!((r.pending(), r.bytes_held()), (0, 0));
        // A new message gets a fresh deadline.
        let (h, c) = first(4);
        assert!(r.insert(t1, 1, &h, c).unwrap().is_none());
        assert_eq!(r.poll_timeout(), Some(t1 + timeout));
    }

    #[test]
    fn message_ids_may_wrap() {
        let now = Instant::now();
        let mut r = Reassembler::new(config(), None);
        let msg = payload(3000, 13);
        for id in [u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2] {
            let mut last = None;
            for (h, c) in fragments(id, 1, &msg, 1000).unwrap() {
                last = r.insert(now, 1, &h, c).unwrap();
            }
            assert!(last.is_some(), "id {id} completes after the wrap");
            // And its late duplicate is stale, not a new message.
            let (h, c) = fragments(id, 1, &msg, 1000).unwrap().next().unwrap();
            assert!(matches!(
                r.insert(now, 1, &h, c),
                Err(ReassemblyError::Stale { .. })
            ));
        }
    }

    #[test]
    fn huge_timeout_never_expires() {
        let cfg = ReassemblyConfig {
            timeout: Duration::MAX,
            ..config()
        };
        let now = Instant::now();
        let mut r = Reassembler::new(cfg, None);
        let msg = payload(3000, 12);
        let (h, c) = fragments(1, 1, &msg, 1000).unwrap().next().unwrap();
        assert!(r.insert(now, 1, &h, c).unwrap().is_none());
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.handle_timeout(now + Duration::from_secs(1 << 30)), 0);
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn deadline_queue_stays_bounded() {
        let now = Instant::now();
        let mut r = Reassembler::new(config(), None);
        let msg = payload(2000, 13);
        // One message stays pending at the front while many complete behind it.
        let (h, c) = fragments(0, 1, &msg, 1000).unwrap().next().unwrap();
        r.insert(now, 1, &h, c).unwrap();
        for id in 1..1000 {
            assert!(insert_all(&mut r, now, id, &msg, 1000).unwrap().is_some());
        }
        assert!(r.deadlines.len() <= 2 * r.pending() + 33);
        assert_eq!(r.poll_timeout(), Some(now + config().timeout));
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = ReassemblyError::SessionMemoryLimit {
            needed: 1,
            held: 2,
            max: 3,
        };
        assert!(e.to_string().contains("max_session_bytes"));
        let e = ReassemblyError::MessageTooLarge { len: 2, max: 1 };
        assert!(e.to_string().contains("max_message_size"));
        let e = ReassemblyError::TooManyPending { max: 1 };
        assert!(e.to_string().contains("max_pending_messages"));
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

        /// Headers with small fields, so that decoding often succeeds, fed
        /// straight to a reassembler with tight limits: never a panic, and
        /// the accounting stays consistent.
        #[test]
        fn arbitrary_fragments_never_panic(
            frags in proptest::collection::vec(
                (0u32..4, 0u32..64, 0u32..8, 0u16..20, 0u8..2, 0usize..40, 0u32..3),
                0..64,
            ),
        ) {
            let budget = MemoryBudget::new(150);
            let cfg = ReassemblyConfig {
                max_message_size: 60,
                max_session_bytes: 100,
                timeout: Duration::from_millis(10),
                max_pending_messages: 3,
            };
            let mut r = Reassembler::new(cfg, Some(budget.clone()));
            let t0 = Instant::now();
            let mut ok = 0u64;
            for (step, (id, total, index, chunk_len, ty, len, stream)) in
                frags.iter().copied().enumerate()
            {
                let h = FragmentHeader {
                    message_id: id,
                    total_len: total,
                    index,
                    chunk_len,
                    inner_type: ty,
                };
                let mut wire = h.encode().to_vec();
                wire.resize(FRAGMENT_HEADER_LEN + len, 1);
                let now = t0 + Duration::from_millis(step as u64);
                if let Ok(Some(m)) = r.insert_plaintext(now, stream, &wire) {
                    prop_assert_eq!(m.payload.len(), total as usize);
                }
                ok += 1;
                r.handle_timeout(now);
                prop_assert!(r.bytes_held() <= 100);
                prop_assert_eq!(budget.used(), r.bytes_held());
            }
            let s = r.stats();
            prop_assert!(s.rejected + s.duplicates <= ok);
            r.handle_timeout(t0 + Duration::from_secs(1));
            prop_assert_eq!((r.pending(), r.bytes_held(), budget.used()), (0, 0, 0));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn fragmentation_round_trip(
            (size, chunk_len) in size_and_chunk(),
            seed in any::<u64>(),
        ) {
            let msg = payload(size, seed);
            let mut rng = Rng(seed ^ 0xD1B5_4A32_D192_ED03);
            let mut frags: Vec<_> = fragments(42, 0x80, &msg, chunk_len).unwrap().collect();
            prop_assert_eq!(frags.len(), fragment_count(size, chunk_len));
            // Duplicate about one fragment in eight, then shuffle.
            let dups = frags.len() / 8 + 1;
            for _ in 0..dups {
                let i = rng.below(frags.len());
                frags.push(frags[i]);
            }
            rng.shuffle(&mut frags);

            let now = Instant::now();
            let mut r = Reassembler::new(ReassemblyConfig::default(), None);
            let mut delivered = None;
            for (h, chunk) in &frags {
                let mut wire = h.encode().to_vec();
                wire.extend_from_slice(chunk);
                let (h, chunk) = FragmentHeader::decode(&wire).unwrap();
                match r.insert(now, 3, &h, chunk) {
                    Ok(Some(m)) => {
                        prop_assert!(delivered.is_none(), "delivered twice");
                        delivered = Some(m);
                    }
                    Ok(None) => {}
                    // Duplicates after completion are refused as stale.
                    Err(e) => {
                        prop_assert!(delivered.is_some());
                        prop_assert_eq!(e, ReassemblyError::Stale { message_id: 42 });
                    }
                }
            }
            let m = delivered.unwrap();
            prop_assert_eq!((m.stream_id, m.inner_type), (3, 0x80));
            prop_assert!(m.payload == msg, "payload differs");
            prop_assert_eq!((r.pending(), r.bytes_held()), (0, 0));
            let s = r.stats();
            prop_assert_eq!(s.completed, 1);
            prop_assert_eq!(s.duplicates + s.rejected, dups as u64);
        }

        #[test]
        fn missing_fragment_is_never_delivered(
            (size, chunk_len) in size_and_chunk(),
            seed in any::<u64>(),
        ) {
            // At least two fragments, so that one can go missing.
            let size = size.max(chunk_len + 1);
            let msg = payload(size, seed);
            let mut rng = Rng(seed);
            let mut frags: Vec<_> = fragments(7, 0x01, &msg, chunk_len).unwrap().collect();
            let lost = rng.below(frags.len());
            frags.swap_remove(lost);
            if frags.len() > 1 {
                let i = rng.below(frags.len());
                frags.push(frags[i]);
            }
            rng.shuffle(&mut frags);

            let budget = MemoryBudget::new(64 * MIB);
            let t0 = Instant::now();
            let timeout = Duration::from_secs(5);
            let mut r = Reassembler::new(ReassemblyConfig::default(), Some(budget.clone()));
            for (step, (h, chunk)) in frags.iter().enumerate() {
                let now = t0 + Duration::from_micros(step as u64);
                prop_assert!(r.insert(now, 1, h, chunk).unwrap().is_none());
            }
            prop_assert_eq!(r.pending(), 1);
            prop_assert!(r.bytes_held() >= size);
            prop_assert_eq!(budget.used(), r.bytes_held());
            prop_assert_eq!(r.poll_timeout(), Some(t0 + timeout));
            prop_assert_eq!(r.handle_timeout(t0 + timeout - Duration::from_nanos(1)), 0);
            prop_assert_eq!(r.handle_timeout(t0 + timeout), 1);
            prop_assert_eq!((r.pending(), r.bytes_held(), budget.used()), (0, 0, 0));
            prop_assert_eq!(r.stats().expired, 1);
            prop_assert_eq!(r.stats().completed, 0);
            prop_assert_eq!(r.poll_timeout(), None);
        }
    }
}
