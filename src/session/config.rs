//! Session configuration and its limits.

use std::time::Duration;

use crate::crypto::AeadPreference;
use crate::frame::{HEADER_LEN, MAX_PAYLOAD_LEN, TAG_LEN};
use crate::session::channel::{ChannelConfig, ChannelConfigError};
use crate::stream::{ReassemblyConfig, FRAGMENT_HEADER_LEN};

pub use crate::frame::{MAX_UDP_DATAGRAM_SIZE, MIN_DATAGRAM_SIZE};

/// Bytes a sealed DATA frame adds to its message.
pub const DATA_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Room a message buffer keeps in front of the message so that it can be
/// sealed where it lies (see `Session::send_in_place`).
pub const SEND_HEADROOM: usize = HEADER_LEN;
/// Bytes a sealed STREAM (fragment) frame adds to its chunk.
pub const FRAGMENT_OVERHEAD: usize = HEADER_LEN + TAG_LEN + FRAGMENT_HEADER_LEN;
/// Bytes a record adds inside a batch.
pub const BATCH_RECORD_OVERHEAD: usize = 4;
/// Most records one BATCH frame may carry. A sender starts a new frame at
/// this count; a receiver refuses (drops and counts) a frame with more,
/// delivering none of it: a 16 MiB WebSocket frame of empty records would
/// otherwise become four million events. 4 096 is more than a 16 KiB batch
/// of the smallest useful messages holds.
pub const MAX_BATCH_RECORDS: usize = 4096;

/// Tunables of a session. `Default` gives the values below; each says why.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Largest datagram the path carries, or `None` on a stream transport
    /// (WebSocket), where a message travels whole in one frame.
    ///
    /// Default `Some(1472)`: a 1500-byte Ethernet MTU less the IPv4 (20) and
    /// UDP (8) headers, so no datagram is ever fragmented by IP.
    pub max_datagram_size: Option<usize>,
    /// The AEAD to ask for. Default [`AeadPreference::Auto`]: AES-256-GCM with
    /// hardware AES on both sides, ChaCha20-Poly1305 otherwise.
    pub aead: AeadPreference,
    /// Send a ping when either direction has been quiet this long. Default
    /// 5 s: keeps NAT bindings (often 30 s for UDP) open with room to lose a
    /// few pings, and detects a dead peer well inside the idle timeout.
    pub keepalive_interval: Duration,
    /// Close when nothing authenticated arrived for this long. Default 30 s
    /// (six keepalive intervals).
    pub idle_timeout: Duration,
    /// Give up a handshake that has not completed after this long. Default
    /// 10 s: covers several lost messages at the largest backoff.
    pub handshake_timeout: Duration,
    /// First handshake retransmission timeout, doubled at each retry up to
    /// 2 s. Default 250 ms: above most internet round trips, short enough
    /// that one lost message costs little.
    pub initial_rto: Duration,
    /// How long a closing session stays to answer late frames with CLOSE.
    /// Default 1 s.
    pub close_linger: Duration,
    /// Reassembly limits for fragmented messages (also bounds
    /// [`max_message_size`](ReassemblyConfig::max_message_size) on send).
    pub reassembly: ReassemblyConfig,
    /// Packets per sending key before a key update, or `None` for the AEAD's
    /// own limit ([`Algorithm::update_interval`](crate::crypto::Algorithm::update_interval)).
    /// Clamped to that limit; a key whose update the peer has not confirmed
    /// seals at most twice this, then the session closes.
    pub key_update_interval: Option<u64>,
    /// Rekey with fresh Diffie-Hellman (both directions) this long after
    /// the handshake or the last rekey. Default 120 s (WireGuard's
    /// `REKEY_AFTER_TIME`): whoever steals the keys of a session and then
    /// only listens reads at most about two minutes of it. The initiator
    /// asks at this age; the responder asks only halfway between this and
    /// [`reject_after`](Self::reject_after), in case the initiator does not
    /// (both asking at once is resolved, but wastes a round trip).
    pub rekey_after: Duration,
    /// Close the session when no rekey completed for this long
    /// ([`CloseReason::RekeyTimeout`](crate::session::CloseReason::RekeyTimeout)).
    /// Default 180 s (WireGuard's `REJECT_AFTER_TIME`): a minute for a rekey
    /// to get through loss, its request repeated every probe interval.
    pub reject_after: Duration,
    /// The session's channels: delivery modes, congestion control, pacing,
    /// windows, path MTU discovery ([`ChannelConfig`]).
    pub channels: ChannelConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_datagram_size: Some(1472),
            aead: AeadPreference::Auto,
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            initial_rto: Duration::from_millis(250),
            close_linger: Duration::from_secs(1),
            reassembly: ReassemblyConfig::default(),
            key_update_interval: None,
            rekey_after: Duration::from_secs(120),
            reject_after: Duration::from_secs(180),
            channels: ChannelConfig::default(),
        }
    }
}

impl SessionConfig {
    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(size) = self.max_datagram_size {
            if !(MIN_DATAGRAM_SIZE..=MAX_UDP_DATAGRAM_SIZE).contains(&size) {
                return Err(ConfigError::DatagramSize(size));
            }
        }
        if self.keepalive_interval.is_zero() || self.idle_timeout <= self.keepalive_interval {
            return Err(ConfigError::Timers(
                "idle_timeout must be longer than a non-zero keepalive_interval",
            ));
        }
        if self.initial_rto.is_zero() || self.handshake_timeout <= self.initial_rto {
            return Err(ConfigError::Timers(
                "handshake_timeout must be longer than a non-zero initial_rto",
            ));
        }
        if self.reassembly.max_message_size == 0
            || self.reassembly.max_message_size > (MAX_PAYLOAD_LEN as usize - 64)
        {
            return Err(ConfigError::MessageSize(self.reassembly.max_message_size));
        }
        if self.rekey_after < Duration::from_secs(1) || self.reject_after <= self.rekey_after {
            return Err(ConfigError::Timers(
                "rekey_after must be at least 1 s, and reject_after longer than rekey_after",
            ));
        }
        self.channels.validate().map_err(ConfigError::Channels)?;
        if self.key_update_interval == Some(0) {
            return Err(ConfigError::Timers(
                "key_update_interval must be at least 1",
            ));
        }
        Ok(())
    }

    /// Largest message that travels in one DATA frame on this path.
    pub fn max_unfragmented(&self) -> usize {
        match self.max_datagram_size {
            Some(size) => size - DATA_OVERHEAD,
            None => self.reassembly.max_message_size,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_datagram_size` out of range.
    #[error("max_datagram_size {0} is out of range: use {MIN_DATAGRAM_SIZE}..={MAX_UDP_DATAGRAM_SIZE} (1472 for a 1500-byte Ethernet MTU, 8972 for jumbo frames)")]
    DatagramSize(usize),
    /// Inconsistent timers.
    #[error("invalid timers: {0}")]
    Timers(&'static str),
    /// `max_message_size` out of range.
    #[error("max_message_size {0} is out of range: use 1..=16 MiB")]
    MessageSize(usize),
    /// The channel configuration cannot work.
    #[error("channels: {0}")]
    Channels(#[from] ChannelConfigError),
}
