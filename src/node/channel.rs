//! Sending on channels: a message queued for its session's channel with a
//! delivery mode, under the session's congestion control and pacing,
//! waiting for room in its send buffer, refused, or replacing the oldest
//! queued unreliable message, as the [`SendPolicy`] says; and the
//! channels' statistics.

use std::time::{Duration, Instant};

use crate::frame::{FrameType, SessionId};
use crate::reactor::{Command, Wait};
use crate::session::channel::{ChannelStats, SendPolicy};

use super::error::SendError;
use super::{Core, Node};

impl Core {
    /// Reserves room for `len` bytes in session `session`'s send budget as
    /// `policy` says, then queues the message for its reactor.
    pub(crate) fn send_channel(
        &self,
        session: SessionId,
        channel: u8,
        frame_type: FrameType,
        payload: &[u8],
        policy: SendPolicy,
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.shared
            .check_message(frame_type, payload.len())
            .map_err(SendError::from_failure)?;
        let channels = &self.shared.endpoint.session.channels;
        let Some(delivery) = channels.delivery(channel) else {
            return Err(SendError::UnknownChannel(channel));
        };
        let (reactor, budget) = self
            .shared
            .endpoint
            .directory
            .lookup(session)
            .ok_or(SendError::SessionClosed(session))?;
        let len = payload.len();
        let replaces = policy == SendPolicy::ReplaceOldest && !delivery.is_reliable();
        if replaces {
            budget.force(len);
        } else if !budget.try_reserve(len) {
            if policy == SendPolicy::Refuse {
                return Err(SendError::QueueFull);
            }
            let deadline = Instant::now() + timeout;
            let gone = || self.shared.holder_of(session).is_none();
            if !budget.reserve_until(len, deadline, gone) {
                return Err(if gone() {
                    SendError::SessionClosed(session)
                } else {
                    SendError::QueueFull
                });
            }
        }
        let command = Command::SendChannel {
            session,
            channel,
            frame_type,
            payload: payload.to_vec(),
            policy,
        };
        let wait = match policy {
            SendPolicy::Refuse => Wait::Never,
            _ => Wait::For(timeout),
        };
        self.command(reactor, command, wait).map_err(|e| {
            budget.release(len);
            SendError::from_failure(e)
        })
    }

    /// [`Node::channel_stats`].
    pub(crate) fn channel_stats(&self, session: SessionId) -> Option<ChannelStats> {
        let reactor = self.shared.holder_of(session)?;
        self.ask(reactor, |reply| Command::ChannelStats { session, reply })
    }
}

impl Node {
    /// Sends `payload` as a DATA message on channel `channel` of session
    /// `session`, delivered as the channel's mode says
    /// ([`SessionConfig::channels`](crate::session::SessionConfig::channels);
    /// by default 0 reliable-ordered, 1 unreliable, 2
    /// unreliable-sequenced, 3 reliable-unordered). It goes when the
    /// session's congestion window, pacing and the peer's flow-control
    /// credit allow; when the session's send buffer is full this waits for
    /// room, up to the node's send timeout ([`SendError::QueueFull`] then).
    pub fn send_channel(
        &self,
        session: SessionId,
        channel: u8,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.inner.send_channel(
            session,
            channel,
            FrameType::Data,
            payload,
            SendPolicy::Wait,
            self.inner.send_timeout,
        )
    }

    /// [`send_channel`](Self::send_channel) with a message type (DATA or
    /// 0x80–0xFF) and a [`SendPolicy`]: wait for room, be refused at once
    /// ([`SendError::QueueFull`]), or (unreliable channels) replace the
    /// oldest queued unreliable message, which is counted in
    /// [`ChannelStats::unreliable_replaced`].
    pub fn send_channel_with(
        &self,
        session: SessionId,
        channel: u8,
        frame_type: FrameType,
        payload: &[u8],
        policy: SendPolicy,
    ) -> Result<(), SendError> {
        self.inner.send_channel(
            session,
            channel,
            frame_type,
            payload,
            policy,
            self.inner.send_timeout,
        )
    }

    /// Statistics of a session's channels: round trip, loss, congestion
    /// window, rates, send queue; `None` when the session is unknown.
    pub fn channel_stats(&self, session: SessionId) -> Option<ChannelStats> {
        self.inner.channel_stats(session)
    }
}

impl super::Session {
    /// Sends `payload` on channel `channel` (see [`Node::send_channel`]).
    pub fn send_channel(&self, channel: u8, payload: &[u8]) -> Result<(), SendError> {
        self.node().send_channel(self.id(), channel, payload)
    }

    /// Sends with a message type and a [`SendPolicy`] (see
    /// [`Node::send_channel_with`]).
    pub fn send_channel_with(
        &self,
        channel: u8,
        frame_type: FrameType,
        payload: &[u8],
        policy: SendPolicy,
    ) -> Result<(), SendError> {
        self.node()
            .send_channel_with(self.id(), channel, frame_type, payload, policy)
    }

    /// Statistics of its channels (see [`Node::channel_stats`]).
    pub fn channel_stats(&self) -> Option<ChannelStats> {
        self.node().channel_stats(self.id())
    }
}
