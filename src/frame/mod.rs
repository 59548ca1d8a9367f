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

mod batch;
pub mod chunk;
mod control;
mod error;
mod fields;
mod header;

pub use batch::{write_batch_record, BatchRecords};
pub use chunk::{Chunk, Chunks, Delivery, MsgChunk};
pub use control::{close_code, Control, ControlType, MAX_REASON_LEN};
pub use error::FrameError;
pub use fields::{Flags, FrameType, SessionId};
pub use header::{Frame, Frames, Header};

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
