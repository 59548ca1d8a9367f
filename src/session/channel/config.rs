//! Configuration of a session's channels ([`ChannelConfig`]): the delivery
//! mode of each channel, congestion control, pacing, buffers, windows,
//! acknowledgement timing and path MTU discovery; and [`SendPolicy`].

use std::time::Duration;

use crate::frame::chunk::Delivery;
use crate::session::recovery::cc::Congestion;
use crate::session::recovery::pmtu::PmtuConfig;

use super::INITIAL_CREDIT;

/// Channel 0 of the default configuration: reliable and ordered.
pub const RELIABLE_ORDERED: u8 = 0;
/// Channel 1 of the default configuration: unreliable.
pub const UNRELIABLE: u8 = 1;
/// Channel 2 of the default configuration: unreliable and sequenced.
pub const UNRELIABLE_SEQUENCED: u8 = 2;
/// Channel 3 of the default configuration: reliable and unordered.
pub const RELIABLE_UNORDERED: u8 = 3;

/// The channels a default configuration opens, by number: 0 reliable and
/// ordered, 1 unreliable, 2 unreliable and sequenced, 3 reliable and
/// unordered.
pub const DEFAULT_CHANNELS: [Delivery; 4] = [
    Delivery::ReliableOrdered,
    Delivery::Unreliable,
    Delivery::UnreliableSequenced,
    Delivery::ReliableUnordered,
];

/// What a send does when the session's send buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SendPolicy {
    /// Wait for room (acknowledgements free it), up to the send timeout.
    #[default]
    Wait,
    /// Return at once with an error (`WouldBlock`-style).
    Refuse,
    /// For unreliable channels: drop the oldest queued unreliable message
    /// (counted in the statistics) to make room. Reliable messages wait.
    ReplaceOldest,
}

/// Tunables of a session's channels. `Default` gives the values below;
/// each says why.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The delivery mode of each channel, by number; a send on a number
    /// beyond the list is refused. Default [`DEFAULT_CHANNELS`]. The
    /// receiver learns each channel's mode from the wire.
    pub channels: Vec<Delivery>,
    /// The congestion controller. Default CUBIC (RFC 9438).
    pub congestion: Congestion,
    /// Spread each window over the round trip instead of sending it in one
    /// burst. Default on: bursts overflow the queues of real links (and
    /// the kernel's receive buffer on loopback).
    pub pacing: bool,
    /// Bytes of messages held for sending at most (queued, and reliable
    /// ones not yet acknowledged); a message larger than this is taken
    /// when the buffer is empty. Default 4 MiB: more than a 1 Gbit/s path
    /// with a 20 ms round trip keeps in flight, while a full buffer at
    /// that rate is 32 ms of queueing, not seconds.
    pub send_buffer: usize,
    /// Flow-control window: reliable bytes this side holds for the
    /// application at most. Default 32 MiB; at least 17 MiB (one message of
    /// the largest size, and the credit every receiver starts with).
    pub recv_window: u64,
    /// Longest an acknowledgement is held back. Default 25 ms (QUIC's).
    pub max_ack_delay: Duration,
    /// Acknowledge at once every this many ack-eliciting packets. Default 2
    /// (RFC 9000 §13.2.2).
    pub ack_frequency: u32,
    /// Round trip assumed before any measurement, when the handshake did
    /// not give one. Default 333 ms (RFC 9002 §6.2.2).
    pub initial_rtt: Duration,
    /// Probe the path for larger datagrams (RFC 8899). Default on.
    pub pmtu_discovery: bool,
    /// Path MTU discovery limits; the upper bound is the session's
    /// datagram size.
    pub pmtu: PmtuConfig,
    /// Largest message. Default 16 MiB.
    pub max_message_size: usize,
    /// Bytes of incomplete unreliable messages held. Default 8 MiB.
    pub unreliable_reassembly_bytes: usize,
    /// Incomplete unreliable messages held. Default 64.
    pub unreliable_reassembly_messages: usize,
    /// How long an incomplete unreliable message is kept. Default 3 s.
    pub unreliable_reassembly_timeout: Duration,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            channels: DEFAULT_CHANNELS.to_vec(),
            congestion: Congestion::default(),
            pacing: true,
            send_buffer: 4 << 20,
            recv_window: 32 << 20,
            max_ack_delay: Duration::from_millis(25),
            ack_frequency: 2,
            initial_rtt: Duration::from_millis(333),
            pmtu_discovery: true,
            pmtu: PmtuConfig::default(),
            max_message_size: 16 << 20,
            unreliable_reassembly_bytes: 8 << 20,
            unreliable_reassembly_messages: 64,
            unreliable_reassembly_timeout: Duration::from_secs(3),
        }
    }
}

impl ChannelConfig {
    /// The delivery mode of `channel`, if it is configured.
    pub fn delivery(&self, channel: u8) -> Option<Delivery> {
        self.channels.get(channel as usize).copied()
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ChannelConfigError> {
        if self.channels.is_empty() || self.channels.len() > 256 {
            return Err(ChannelConfigError::Channels(self.channels.len()));
        }
        if self.recv_window < INITIAL_CREDIT {
            return Err(ChannelConfigError::Window(self.recv_window));
        }
        if self.send_buffer < 64 << 10 {
            return Err(ChannelConfigError::SendBuffer(self.send_buffer));
        }
        if self.max_message_size > 16 << 20 {
            return Err(ChannelConfigError::MessageSize(self.max_message_size));
        }
        if self.ack_frequency == 0 || self.max_ack_delay > Duration::from_secs(1) {
            return Err(ChannelConfigError::Acks);
        }
        if self.initial_rtt.is_zero() {
            return Err(ChannelConfigError::InitialRtt);
        }
        self.pmtu.validate().map_err(ChannelConfigError::Pmtu)?;
        Ok(())
    }
}

/// A channel configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelConfigError {
    /// Not 1 to 256 channels.
    #[error("{0} channels configured: use 1 to 256")]
    Channels(usize),
    /// A window below the initial credit.
    #[error("recv_window {0} is below the 17 MiB every receiver grants at first")]
    Window(u64),
    /// A send buffer below 64 KiB.
    #[error("send_buffer {0} is below 64 KiB")]
    SendBuffer(usize),
    /// Above 16 MiB.
    #[error("max_message_size {0} is above 16 MiB")]
    MessageSize(usize),
    /// Acknowledgement timing out of range.
    #[error("ack_frequency must be at least 1 and max_ack_delay at most 1 s")]
    Acks,
    /// A zero initial round trip.
    #[error("initial_rtt must be above zero")]
    InitialRtt,
    /// Path MTU discovery limits.
    #[error("path MTU discovery: {0}")]
    Pmtu(crate::session::recovery::pmtu::PmtuConfigError),
}
