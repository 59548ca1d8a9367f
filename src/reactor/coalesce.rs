//! Coalescing: consecutive sends to one session and stream share sealed
//! frames.
//!
//! The messages that queued while the reactor was busy are sealed together
//! (one seal, one datagram or WebSocket message, for many small messages)
//! up to the path's datagram size, or [`COALESCE_LIMIT`] on a stream
//! transport. Nothing waits for company: only what is already queued is
//! coalesced. A message too large to share a frame with one of its size
//! goes alone, sealed where it lies. In-reactor handlers' answers coalesce
//! the same way, right after the handler returns.

use std::time::Instant;

use crate::endpoint::Endpoint;
use crate::frame::{FrameType, SessionId};
use crate::pool::Payload;

use super::command::{Command, Failure};
use super::deliver::InlineSend;
use super::Reactor;

/// Largest coalesced frame on a stream transport (WebSocket): TLS-record
/// sized, so one seal covers many small messages without delaying any.
pub(crate) const COALESCE_LIMIT: usize = 16 * 1024;

/// Sends being gathered for one session and stream, in order.
pub(crate) type Coalescing = Option<(SessionId, u32, Vec<Payload>)>;

impl Reactor {
    /// Sends a coalescing batch, if any.
    pub(super) fn send_batch(&mut self, batch: &mut Coalescing, now: Instant) {
        if let Some((session, stream_id, messages)) = batch.take() {
            self.send_coalesced(session, stream_id, messages, now);
        }
    }

    /// Adds a plain DATA send to the batch, sending the batch first when it
    /// is for another session or stream.
    pub(super) fn coalesce(
        &mut self,
        batch: &mut Coalescing,
        session: SessionId,
        stream_id: u32,
        payload: Payload,
        now: Instant,
    ) {
        let limit = self.endpoint.batch_limit(session, COALESCE_LIMIT);
        if !Endpoint::shares_frame(payload.message().len(), limit) {
            self.send_batch(batch, now);
            let _ = self.send_payload(session, stream_id, FrameType::Data, payload, now);
            return;
        }
        match batch {
            Some((s, st, list)) if *s == session && *st == stream_id => list.push(payload),
            _ => {
                self.send_batch(batch, now);
                *batch = Some((session, stream_id, vec![payload]));
            }
        }
    }

    /// Sends queued messages of one session and stream, coalesced, and
    /// gives their buffers back.
    fn send_coalesced(
        &mut self,
        id: SessionId,
        stream_id: u32,
        mut messages: Vec<Payload>,
        now: Instant,
    ) {
        if messages.len() == 1 {
            if let Some(only) = messages.pop() {
                let _ = self.send_payload(id, stream_id, FrameType::Data, only, now);
            }
            return;
        }
        let refs: Vec<&[u8]> = messages.iter().map(Payload::message).collect();
        let (sealed, _) = self
            .with_endpoint(|ep, out| ep.send_batch(now, id, stream_id, &refs, COALESCE_LIMIT, out));
        drop(refs);
        self.app.shared.pool.recycle_all(messages);
        if let Err(e) = sealed {
            tracing::debug!(session = %id, error = %e, "coalesced send refused");
        }
    }

    /// Seals one message lying in a pooled buffer (where it lies when it
    /// goes as one frame); the buffer then goes back to the pool.
    pub(super) fn send_payload(
        &mut self,
        id: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: Payload,
        now: Instant,
    ) -> Result<(), Failure> {
        let mut buf = payload.into_buffer();
        let (sealed, refused) = self.with_endpoint(|ep, out| {
            ep.send_in_place(now, id, stream_id, frame_type, &mut buf, out)
        });
        self.app.shared.pool.give(buf);
        sealed?;
        match refused {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Seals and queues what in-reactor handlers sent this turn: plain sends
    /// to one session coalesce as the application's do; a session held by
    /// another reactor is handed to it.
    pub(super) fn run_inline(&mut self, now: Instant) {
        if self.app.inline_sends.is_empty() {
            return;
        }
        let mut sends = std::mem::take(&mut self.app.inline_sends);
        self.io.answering = true;
        let mut batch: Coalescing = None;
        for send in sends.drain(..) {
            let InlineSend {
                session,
                stream_id,
                frame_type,
                payload,
            } = send;
            if self.endpoint.has(session) {
                if frame_type == FrameType::Data {
                    self.coalesce(&mut batch, session, stream_id, payload, now);
                    continue;
                }
                self.send_batch(&mut batch, now);
                if let Err(e) = self.send_payload(session, stream_id, frame_type, payload, now) {
                    tracing::debug!(session = %session, error = %e, "in-reactor send refused");
                }
                continue;
            }
            self.send_batch(&mut batch, now);
            match self.app.shared.holder_of(session) {
                Some(r) if r != self.index => {
                    let cmd = Command::Send {
                        session,
                        stream_id,
                        frame_type,
                        payload,
                        reply: None,
                    };
                    if !self.peers.hand(r, cmd) {
                        tracing::debug!(session = %session, "in-reactor send dropped: its reactor is stuck");
                    }
                }
                _ => {
                    tracing::debug!(session = %session, "in-reactor send to a session that closed");
                    self.app.shared.pool.recycle(payload);
                }
            }
        }
        self.send_batch(&mut batch, now);
        self.io.answering = false;
        // Keep the allocation.
        sends.append(&mut self.app.inline_sends);
        self.app.inline_sends = sends;
    }
}
