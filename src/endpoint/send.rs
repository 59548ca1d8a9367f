//! Sealing the application's messages: one in place, a copy, or a batch of
//! small ones sharing frames; sealed datagrams go to the output along the
//! session's path.

use std::time::Instant;

use crate::counters::TransportCounters;
use crate::frame::{FrameType, SessionId, MAX_PAYLOAD_LEN};
use crate::session::channel::{ChannelStats, SendPolicy};
use crate::session::{Session, SessionError, Transmits, BATCH_RECORD_OVERHEAD, DATA_OVERHEAD};

use super::{Endpoint, Output, SessionRefused};

impl Endpoint {
    /// The largest frame a batch of small messages to `id` may fill: the
    /// path's datagram size, or `stream_limit` on a stream transport.
    pub(crate) fn batch_limit(&self, id: SessionId, stream_limit: usize) -> usize {
        self.sessions
            .get(&id)
            .and_then(|e| e.path.max_datagram)
            .unwrap_or(stream_limit)
            .min(MAX_PAYLOAD_LEN as usize)
    }

    /// Whether a message of `len` bytes can share a frame of `limit` bytes
    /// with another of its size (if not, batching would send it alone).
    pub(crate) fn shares_frame(len: usize, limit: usize) -> bool {
        DATA_OVERHEAD + 2 * (BATCH_RECORD_OVERHEAD + len) <= limit
    }

    /// Seals a message lying in `buf` after the header room the session
    /// needs ([`crate::session::SEND_HEADROOM`]), where it lies when it goes
    /// as one frame; `buf` then holds another buffer to reuse.
    pub(crate) fn send_in_place(
        &mut self,
        now: Instant,
        id: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        buf: &mut Vec<u8>,
        out: &mut dyn Output,
    ) -> Result<(), SessionRefused> {
        self.seal_with(now, id, out, |session, data| {
            session.send_in_place(now, frame_type, stream_id, buf, data)
        })
    }

    /// Seals a message (a copy of `payload`).
    pub(crate) fn send(
        &mut self,
        now: Instant,
        id: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
        out: &mut dyn Output,
    ) -> Result<(), SessionRefused> {
        self.seal_with(now, id, out, |session, data| {
            session.send_typed(now, frame_type, stream_id, payload, data)
        })
    }

    /// Seals DATA messages in order, as few frames of up to `limit` bytes
    /// as they fit.
    pub(crate) fn send_batch(
        &mut self,
        now: Instant,
        id: SessionId,
        stream_id: u32,
        messages: &[&[u8]],
        limit: usize,
        out: &mut dyn Output,
    ) -> Result<(), SessionRefused> {
        self.seal_with(now, id, out, |session, data| {
            session.send_batch(now, stream_id, messages, limit, data)
        })
    }

    /// Queues a message on channel `channel` of session `id` without
    /// building packets yet ([`flush_session`](Self::flush_session) does);
    /// false when it was refused (counted, its reservation returned).
    pub(crate) fn queue_channel(
        &mut self,
        now: Instant,
        id: SessionId,
        channel: u8,
        frame_type: FrameType,
        payload: Vec<u8>,
        policy: SendPolicy,
    ) -> bool {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return false;
        };
        let len = payload.len();
        match entry
            .session
            .send_channel(now, channel, frame_type, payload, policy)
        {
            Ok(()) => {
                entry.charged += len;
                true
            }
            Err(_) => {
                if let Some(b) = &entry.send_budget {
                    b.release(len);
                }
                TransportCounters::add(&entry.path.counters.errors_send, 1);
                false
            }
        }
    }

    /// Sends what session `id` has due (packets, events), as after any
    /// activity.
    pub(crate) fn flush_session(&mut self, id: SessionId, now: Instant, out: &mut dyn Output) {
        self.after_activity(id, now, out);
    }

    /// The application took messages of session `id` holding `credit`
    /// reliable bytes: they leave its flow-control window (which may send
    /// the peer more credit).
    pub(crate) fn release_credit(
        &mut self,
        now: Instant,
        id: SessionId,
        credit: u64,
        out: &mut dyn Output,
    ) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        entry.session.release_credit(credit);
        self.after_activity(id, now, out);
    }

    /// Channel statistics of session `id`.
    pub(crate) fn channel_stats(&self, id: SessionId, now: Instant) -> Option<ChannelStats> {
        self.sessions.get(&id)?.session.channel_stats(now)
    }

    /// Runs `seal` on session `id` with the endpoint's data buffer, then
    /// hands the sealed data to the output and what the send provoked; a
    /// refusal counts in the path's `errors_send`.
    fn seal_with(
        &mut self,
        now: Instant,
        id: SessionId,
        out: &mut dyn Output,
        seal: impl FnOnce(&mut Session, &mut Transmits) -> Result<usize, SessionError>,
    ) -> Result<(), SessionRefused> {
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionRefused::Unknown(id))?;
        self.data.clear();
        let sealed = seal(&mut entry.session, &mut self.data).map(|_| ());
        if sealed.is_err() {
            TransportCounters::add(&entry.path.counters.errors_send, 1);
        } else if !self.data.is_empty() {
            out.transmit(&entry.path, &mut self.data);
        }
        self.data.clear();
        self.after_activity(id, now, out);
        sealed.map_err(SessionRefused::from)
    }
}
