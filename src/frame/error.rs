//! [`FrameError`]: why bytes are not a valid frame, control message or batch.

use super::{MAX_PAYLOAD_LEN, VERSION};

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
    /// A CHANNEL frame's chunk that does not parse.
    #[error("malformed channel chunk: {0}")]
    BadChunk(&'static str),
}
