//! [`ReassemblyError`]: why a fragment was refused or a message could not be
//! split.

use super::FRAGMENT_HEADER_LEN;

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
        /// [`ReassemblyConfig::max_message_size`](super::ReassemblyConfig::max_message_size).
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
        /// [`ReassemblyConfig::max_session_bytes`](super::ReassemblyConfig::max_session_bytes).
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
        /// [`ReassemblyConfig::max_pending_messages`](super::ReassemblyConfig::max_pending_messages).
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
    /// [`Fragments::new`](super::Fragments::new) was called with arguments
    /// that break its preconditions.
    #[error("cannot split the message: {reason}")]
    CannotSplit {
        /// Which precondition failed.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
