//! The session's side of its channels: queueing channel messages, sealing
//! the packets [`Channels`] builds into CHANNEL frames, opening them,
//! handing delivered messages out as events, timers and path changes.

use std::time::Instant;

use crate::frame::{close_code, Flags, FrameType, Header};
use crate::session::channel::{ChannelStats, Channels, PacketError, SendPolicy, SendRefused};
use crate::session::{CloseReason, Event, Session, SessionError, SessionState, Transmits};

/// Channel packets sealed per call to [`Session::poll_transmits`] at most:
/// one GSO batch, so that one busy session does not hold its reactor.
pub const MAX_PACKETS_PER_POLL: usize = 64;

impl Session {
    /// Queues a message on `channel` (its delivery mode comes from
    /// [`SessionConfig::channels`](crate::session::SessionConfig::channels)),
    /// sent by [`poll_transmits`](Self::poll_transmits) as congestion
    /// control, pacing and the peer's credit allow. `frame_type` is DATA or
    /// an application type. With [`SendPolicy::Wait`] or
    /// [`SendPolicy::Refuse`] a full send buffer refuses the message
    /// ([`SessionError::SendBufferFull`]); the caller waits for room
    /// ([`has_room`](Self::has_room)) or gives up.
    pub fn send_channel(
        &mut self,
        now: Instant,
        channel: u8,
        frame_type: FrameType,
        payload: Vec<u8>,
        policy: SendPolicy,
    ) -> Result<(), SessionError> {
        if !frame_type.is_message() {
            return Err(SessionError::NotAMessageType(frame_type));
        }
        let state = self.state;
        let Some(channels) = self.channels.as_mut() else {
            return Err(SessionError::NotEstablished(state));
        };
        if state != SessionState::Established {
            return Err(SessionError::NotEstablished(state));
        }
        channels
            .send(now, channel, frame_type.to_u8(), payload, policy)
            .map_err(|e| match e {
                SendRefused::Full => SessionError::SendBufferFull,
                SendRefused::UnknownChannel(c) => SessionError::UnknownChannel(c),
                SendRefused::TooLarge { len, max } => SessionError::MessageTooLarge { len, max },
            })?;
        self.stats.messages_sent += 1;
        Ok(())
    }

    /// Whether a channel message of `len` bytes would be queued now.
    pub fn has_room(&self, len: usize) -> bool {
        self.channels.as_ref().is_some_and(|c| c.has_room(len))
    }

    /// Statistics of the session's channels, once established.
    pub fn channel_stats(&self, now: Instant) -> Option<ChannelStats> {
        self.channels.as_ref().map(|c| c.stats(now))
    }

    /// Bytes the channels' send buffer holds (queued, or sent and not yet
    /// acknowledged).
    pub fn channel_send_held(&self) -> usize {
        self.channels.as_ref().map_or(0, |c| c.send_held())
    }

    /// Whether channel messages are queued or unacknowledged.
    pub fn channels_busy(&self) -> bool {
        self.channels.as_ref().is_some_and(|c| c.unfinished() > 0)
    }

    /// Seals the channel packets due now into `out`, at most
    /// [`MAX_PACKETS_PER_POLL`]; returns how many.
    pub(super) fn poll_channel_packets(&mut self, now: Instant, out: &mut Transmits) -> usize {
        self.poll_channel_packets_limited(now, out, MAX_PACKETS_PER_POLL)
    }

    /// [`poll_channel_packets`](Self::poll_channel_packets), at most `max`.
    pub(super) fn poll_channel_packets_limited(
        &mut self,
        now: Instant,
        out: &mut Transmits,
        max: usize,
    ) -> usize {
        // An initiator waits for the responder's confirmation: before it,
        // the responder may not have the keys to open a channel packet.
        if self.state != SessionState::Established || self.unconfirmed_msg3.is_some() {
            return 0;
        }
        let mut n = 0;
        while n < max {
            let (Some(channels), Some(keys)) = (self.channels.as_mut(), self.keys.as_mut()) else {
                break;
            };
            let pn = keys.send.next_packet_number();
            let start = out.begin_frame();
            if channels.poll_packet(now, pn, &mut out.buf).is_none() {
                out.buf.truncate(start);
                break;
            }
            let header = Header {
                frame_type: FrameType::Channel,
                flags: Flags::EMPTY,
                session_id: self.id,
                stream_id: 0,
                packet_number: 0,
                payload_len: 0,
            };
            let sealed = keys.send.seal(&mut out.buf, start, header);
            if let Err(e) = sealed {
                out.buf.truncate(start);
                self.after_seal_failure(e);
                break;
            }
            out.end_datagram();
            let len = out.buf.len() - start;
            self.sent(len, now);
            n += 1;
        }
        if n > 0 {
            self.probe_key_update(now);
        }
        n
    }

    /// Takes an opened CHANNEL frame.
    pub(super) fn on_channel_frame(
        &mut self,
        now: Instant,
        pn: u64,
        plaintext: &[u8],
    ) -> Result<(), SessionError> {
        let max_sent = self
            .keys
            .as_ref()
            .and_then(|k| k.send.next_packet_number().checked_sub(1));
        let Some(channels) = self.channels.as_mut() else {
            return Err(SessionError::Unexpected {
                frame_type: FrameType::Channel,
                state: self.state,
            });
        };
        let result = channels.on_packet(now, pn, plaintext, max_sent);
        while let Some(d) = channels.poll_delivered() {
            let frame_type = FrameType::from_u8(d.msg_type).unwrap_or(FrameType::Data);
            self.stats.messages_received += 1;
            self.events.push_back((
                Event::Message {
                    stream_id: u32::from(d.channel),
                    frame_type,
                    payload: d.payload,
                },
                d.credit,
            ));
        }
        match result {
            Ok(()) => Ok(()),
            Err(PacketError::Frame(e)) => Err(e.into()),
            // An authenticated peer broke a channel rule: nothing it sends
            // on this session can be trusted to follow them any more.
            Err(e) => {
                let reason = e.to_string();
                self.send_close_frame(close_code::PROTOCOL_ERROR, &reason, now);
                self.terminate(CloseReason::Local {
                    code: close_code::PROTOCOL_ERROR,
                    reason,
                });
                Err(SessionError::Malformed("channel protocol violation"))
            }
        }
    }

    /// Starts the channels once the session is established.
    pub(super) fn start_channels(&mut self, now: Instant) {
        let rtt = self.rtt.smoothed;
        self.channels = Some(Channels::new(
            self.config.channels.clone(),
            now,
            self.config.max_datagram_size,
            rtt,
            self.budget.clone(),
        ));
    }

    /// The session moved to a path whose datagrams hold `size` bytes
    /// (`None`: a stream path): its channels send everything unacknowledged
    /// again there.
    pub fn change_path(&mut self, now: Instant, size: Option<usize>) -> Result<(), SessionError> {
        self.set_max_datagram_size(size)?;
        if let Some(c) = self.channels.as_mut() {
            c.on_path_change(now, size);
        }
        Ok(())
    }
}
