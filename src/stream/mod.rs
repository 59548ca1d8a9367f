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

mod budget;
mod error;
mod fragment;
mod reassembly;
#[cfg(test)]
mod test_util;

pub use budget::MemoryBudget;
pub use error::ReassemblyError;
pub use fragment::{fragment_count, fragments, FragmentHeader, Fragments, FRAGMENT_HEADER_LEN};
pub use reassembly::{Reassembled, Reassembler, ReassemblyConfig, ReassemblyStats};
