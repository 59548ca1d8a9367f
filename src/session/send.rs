//! The send paths: single messages, fragmented messages, batches.

use std::time::Instant;

use crate::crypto::CryptoError;
use crate::frame::{write_batch_record, Flags, FrameType, Header, MAX_PAYLOAD_LEN, TAG_LEN};
use crate::session::{
    CloseReason, Keys, Session, SessionError, SessionState, Transmits, BATCH_RECORD_OVERHEAD,
    DATA_OVERHEAD, FRAGMENT_OVERHEAD, MIN_DATAGRAM_SIZE,
};
use crate::stream;

impl Session {
    /// Sends one application message of type DATA on `stream_id`, sealed
    /// into `out` (fragmented when it does not fit the path's datagram).
    /// Returns how many datagrams were added.
    pub fn send(
        &mut self,
        now: Instant,
        stream_id: u32,
        payload: &[u8],
        out: &mut Transmits,
    ) -> Result<usize, SessionError> {
        self.send_typed(now, FrameType::Data, stream_id, payload, out)
    }

    /// [`send`](Self::send) with an explicit message type: DATA or an
    /// application type (0x80–0xFF).
    pub fn send_typed(
        &mut self,
        now: Instant,
        frame_type: FrameType,
        stream_id: u32,
        payload: &[u8],
        out: &mut Transmits,
    ) -> Result<usize, SessionError> {
        if !frame_type.is_message() {
            return Err(SessionError::NotAMessageType(frame_type));
        }
        let max = self.config.reassembly.max_message_size;
        if payload.len() > max {
            return Err(SessionError::MessageTooLarge {
                len: payload.len(),
                max,
            });
        }
        let before = out.len();
        let result = self.send_inner(frame_type, stream_id, payload, out);
        self.after_send(now, before, out, result, 1)
    }

    fn send_inner(
        &mut self,
        frame_type: FrameType,
        stream_id: u32,
        payload: &[u8],
        out: &mut Transmits,
    ) -> Result<(), SessionError> {
        let mut header = Header {
            frame_type,
            flags: Flags::EMPTY,
            session_id: self.id,
            stream_id,
            packet_number: 0,
            payload_len: 0,
        };
        self.established_keys()?;
        let datagram_size = self.config.max_datagram_size;
        let single = match datagram_size {
            None => true,
            Some(size) => payload.len() + DATA_OVERHEAD <= size,
        };
        if single {
            let start = out.begin_frame();
            out.buf.extend_from_slice(payload);
            return self.seal_frame(out, start, header);
        }
        // Validated: max_datagram_size >= MIN_DATAGRAM_SIZE > FRAGMENT_OVERHEAD.
        let chunk = datagram_size.map_or(0, |s| s - FRAGMENT_OVERHEAD);
        let message_id = self.next_message_id;
        header.frame_type = FrameType::Stream;
        for (fragment, bytes) in stream::fragments(message_id, frame_type.to_u8(), payload, chunk)?
        {
            let start = out.begin_frame();
            out.buf.extend_from_slice(&fragment.encode());
            out.buf.extend_from_slice(bytes);
            self.seal_frame(out, start, header)?;
        }
        self.next_message_id = message_id.wrapping_add(1);
        Ok(())
    }

    /// Sends several small messages of type DATA on `stream_id`, coalesced
    /// into as few sealed frames as fit the path (on a stream path, frames of
    /// up to `batch_limit` bytes). One seal and one datagram then carry many
    /// messages. A message too large for a batch frame goes alone, as
    /// [`send`](Self::send) would send it. Returns how many datagrams were
    /// added.
    pub fn send_batch(
        &mut self,
        now: Instant,
        stream_id: u32,
        messages: &[&[u8]],
        batch_limit: usize,
        out: &mut Transmits,
    ) -> Result<usize, SessionError> {
        let max = self.config.reassembly.max_message_size;
        if let Some(m) = messages.iter().find(|m| m.len() > max) {
            return Err(SessionError::MessageTooLarge { len: m.len(), max });
        }
        let frame_limit = self
            .config
            .max_datagram_size
            .unwrap_or(batch_limit.max(MIN_DATAGRAM_SIZE))
            .min(MAX_PAYLOAD_LEN as usize);
        let before = out.len();
        let result = self.send_batch_inner(stream_id, messages, frame_limit, out);
        self.after_send(now, before, out, result, messages.len() as u64)
    }

    fn send_batch_inner(
        &mut self,
        stream_id: u32,
        messages: &[&[u8]],
        frame_limit: usize,
        out: &mut Transmits,
    ) -> Result<(), SessionError> {
        self.established_keys()?;
        let header = Header {
            frame_type: FrameType::Data,
            flags: Flags::BATCH,
            session_id: self.id,
            stream_id,
            packet_number: 0,
            payload_len: 0,
        };
        // Start offset of the batch frame being filled, if any.
        let mut open: Option<usize> = None;
        let record = |m: &[u8]| BATCH_RECORD_OVERHEAD + m.len();
        for (i, m) in messages.iter().enumerate() {
            if let Some(start) = open {
                if out.buf.len() - start + record(m) + TAG_LEN > frame_limit {
                    self.seal_frame(out, start, header)?;
                    open = None;
                }
            }
            if open.is_none() {
                // Open a batch frame only if the next message can share it:
                // a message alone goes as a plain DATA frame, without the
                // record's length prefix.
                let shares = messages
                    .get(i + 1)
                    .is_some_and(|next| DATA_OVERHEAD + record(m) + record(next) <= frame_limit);
                if !shares {
                    self.send_inner(FrameType::Data, stream_id, m, out)?;
                    continue;
                }
                open = Some(out.begin_frame());
            }
            write_batch_record(&mut out.buf, m);
        }
        if let Some(start) = open {
            self.seal_frame(out, start, header)?;
        }
        Ok(())
    }

    /// Seals the frame that starts at `start` in `out` and ends the datagram.
    fn seal_frame(
        &mut self,
        out: &mut Transmits,
        start: usize,
        header: Header,
    ) -> Result<(), SessionError> {
        self.established_keys()?
            .send
            .seal(&mut out.buf, start, header)?;
        out.end_datagram();
        Ok(())
    }

    fn after_send(
        &mut self,
        now: Instant,
        before: usize,
        out: &mut Transmits,
        result: Result<(), SessionError>,
        messages: u64,
    ) -> Result<usize, SessionError> {
        match result {
            Ok(()) => {
                let added = out.len() - before;
                let start = if before == 0 { 0 } else { out.ends[before - 1] };
                self.stats.bytes_sent += (out.buf.len() - start) as u64;
                self.stats.frames_sent += added as u64;
                self.stats.messages_sent += messages;
                self.last_send = now;
                self.probe_key_update(now);
                Ok(added)
            }
            Err(e) => {
                out.truncate(before);
                if matches!(e, SessionError::Crypto(CryptoError::PacketNumbersExhausted)) {
                    // Nothing can be sealed any more, not even a CLOSE.
                    self.terminate(CloseReason::PacketNumbersExhausted);
                }
                Err(e)
            }
        }
    }

    fn established_keys(&mut self) -> Result<&mut Keys, SessionError> {
        match (&mut self.keys, self.state) {
            (Some(k), SessionState::Established) => Ok(k),
            (_, state) => Err(SessionError::NotEstablished(state)),
        }
    }
}
