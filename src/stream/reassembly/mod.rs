//! The [`Reassembler`] and the types it works with: its limits
//! ([`ReassemblyConfig`]), its output ([`Reassembled`]) and counters
//! ([`ReassemblyStats`]), and the private bookkeeping of partial messages and
//! of the deadline queue.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{FragmentHeader, MemoryBudget, ReassemblyError};
use crate::crypto::replay::ReplayWindow;

#[cfg(test)]
mod tests;

/// Bits per word of a partial message's received-fragments bitmap.
const BITMAP_WORD_BITS: u32 = u64::BITS;

/// Bytes per word of the received-fragments bitmap.
const BITMAP_WORD_BYTES: usize = std::mem::size_of::<u64>();

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
/// bounds. See the [module docs](crate::stream).
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

    /// Draws from `budget` from now on (a peer's share of the node's
    /// budget, once the peer is known). Refused, returning false, while
    /// bytes are held under the current one.
    pub fn set_budget(&mut self, budget: MemoryBudget) -> bool {
        if self.bytes_held() > 0 {
            return false;
        }
        self.node_budget = Some(budget);
        true
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
