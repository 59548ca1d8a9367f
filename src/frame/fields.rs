//! The typed fields of a frame header: [`FrameType`] (byte 3), [`Flags`]
//! (byte 4) and [`SessionId`] (bytes 5..13).

use std::fmt;

/// The kind of a frame (byte 3 of the header).
///
/// The first five values are those of the original STT, so that its users
/// find the names they know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// `0x01`: a complete application message on `stream_id` (sealed).
    Data,
    /// `0x02`: a control message (sealed); its first plaintext byte is a
    /// [`ControlType`](super::ControlType).
    Control,
    /// `0x03`: one fragment of a message larger than the path MTU (sealed);
    /// the plaintext starts with a fragment header (`stream::FragmentHeader`).
    Stream,
    /// `0x04`: address validation (cookie) between a server under load and a
    /// client, sent in the clear. See `docs/PROTOCOL.md`.
    Auth,
    /// `0x05`: a Noise handshake message; `packet_number` holds its position
    /// in the handshake (1, 2 or 3).
    Handshake,
    /// `0x06`: a channel packet (sealed): acknowledgements, messages of
    /// channels with a delivery mode, flow-control credit (the
    /// [`Chunk`](super::Chunk)s of `frame::chunk`).
    Channel,
    /// `0x80..=0xFF`: an application-defined message (sealed), delivered as
    /// DATA is, with its type for the application to dispatch on.
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
    /// Wire value of [`FrameType::Channel`].
    pub const CHANNEL: u8 = 0x06;
    /// First wire value reserved for application-defined types.
    pub const APPLICATION_MIN: u8 = 0x80;

    /// The type for a wire byte, or `None` for an unassigned value
    /// (`0x00` and `0x07..=0x7F`).
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            Self::DATA => Self::Data,
            Self::CONTROL => Self::Control,
            Self::STREAM => Self::Stream,
            Self::AUTH => Self::Auth,
            Self::HANDSHAKE => Self::Handshake,
            Self::CHANNEL => Self::Channel,
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
            Self::Channel => Self::CHANNEL,
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

#[cfg(test)]
mod tests {
    use super::*;

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
                None => assert!(v == 0 || (0x07..0x80).contains(&v)),
            }
        }
    }
}
