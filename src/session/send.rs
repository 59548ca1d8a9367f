//! The send paths: single messages, fragmented messages, batches.

use std::time::Instant;

use crate::crypto::CryptoError;
use crate::frame::{
    write_batch_record, Flags, FrameType, Header, HEADER_LEN, MAX_PAYLOAD_LEN, TAG_LEN,
};
use crate::session::{
    CloseReason, Keys, Session, SessionError, SessionState, Transmits, BATCH_RECORD_OVERHEAD,
    DATA_OVERHEAD, FRAGMENT_OVERHEAD, MAX_BATCH_RECORDS, MIN_DATAGRAM_SIZE,
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

    /// [`send_typed`](Self::send_typed) for a message that waits in
    /// `buf[HEADER_LEN..]`, the first [`HEADER_LEN`] bytes being room for
    /// the header (a shorter `buf` is taken as room for an empty message).
    ///
    /// When it goes as one frame and `out` is empty, it is sealed where it
    /// lies, without being copied: `buf` and `out`'s buffer trade places,
    /// and `buf` comes back empty, keeping the other's capacity. Otherwise
    /// it is sent as `send_typed` would send it and `buf` is left as it
    /// was. A session that is not established refuses it with `buf`
    /// untouched; a sealing failure past that point (packet numbers
    /// exhausted, which ends the session) loses it and leaves `out` empty.
    pub(crate) fn send_in_place(
        &mut self,
        now: Instant,
        frame_type: FrameType,
        stream_id: u32,
        buf: &mut Vec<u8>,
        out: &mut Transmits,
    ) -> Result<usize, SessionError> {
        if buf.len() < HEADER_LEN {
            // Room only: an empty message.
            buf.resize(HEADER_LEN, 0);
        }
        let message = &buf[HEADER_LEN..];
        let single = self.one_frame(message.len());
        let fits = message.len() <= self.config.reassembly.max_message_size;
        if !(out.is_empty() && single && fits && frame_type.is_message()) {
            let message = &buf[HEADER_LEN..];
            return self.send_typed(now, frame_type, stream_id, message, out);
        }
        let header = self.header(frame_type, Flags::EMPTY, stream_id);
        self.established_keys()?;
        out.clear();
        std::mem::swap(&mut out.buf, buf);
        buf.clear();
        let result = self.seal_frame(out, 0, header);
        self.after_send(now, 0, out, result, 1)
    }

    fn send_inner(
        &mut self,
        frame_type: FrameType,
        stream_id: u32,
        payload: &[u8],
        out: &mut Transmits,
    ) -> Result<(), SessionError> {
        let mut header = self.header(frame_type, Flags::EMPTY, stream_id);
        self.established_keys()?;
        let datagram_size = self.config.max_datagram_size;
        if self.one_frame(payload.len()) {
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
        let header = self.header(FrameType::Data, Flags::BATCH, stream_id);
        // Start offset of the batch frame being filled, if any.
        let mut open: Option<usize> = None;
        let mut records = 0;
        let record = |m: &[u8]| BATCH_RECORD_OVERHEAD + m.len();
        for (i, m) in messages.iter().enumerate() {
            if let Some(start) = open {
                if out.buf.len() - start + record(m) + TAG_LEN > frame_limit
                    || records >= MAX_BATCH_RECORDS
                {
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
                records = 0;
            }
            write_batch_record(&mut out.buf, m);
            records += 1;
        }
        if let Some(start) = open {
            self.seal_frame(out, start, header)?;
        }
        Ok(())
    }

    /// The header of a message frame of this session (packet number and
    /// length are filled in when it is sealed).
    fn header(&self, frame_type: FrameType, flags: Flags, stream_id: u32) -> Header {
        Header {
            frame_type,
            flags,
            session_id: self.id,
            stream_id,
            packet_number: 0,
            payload_len: 0,
        }
    }

    /// Whether a message of `len` bytes goes as one plain frame.
    fn one_frame(&self, len: usize) -> bool {
        self.config
            .max_datagram_size
            .is_none_or(|size| len + DATA_OVERHEAD <= size)
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
                if let SessionError::Crypto(c) = &e {
                    self.after_seal_failure(c.clone());
                }
                Err(e)
            }
        }
    }

    /// Ends the session when sealing failed for good: nothing can be
    /// sealed any more, not even a CLOSE.
    pub(super) fn after_seal_failure(&mut self, e: CryptoError) {
        match e {
            CryptoError::PacketNumbersExhausted => {
                self.terminate(CloseReason::PacketNumbersExhausted)
            }
            CryptoError::KeyExhausted => self.terminate(CloseReason::KeyExhausted),
            _ => {}
        }
    }

    fn established_keys(&mut self) -> Result<&mut Keys, SessionError> {
        match (&mut self.keys, self.state) {
            (Some(k), SessionState::Established) => Ok(k),
            (_, state) => Err(SessionError::NotEstablished(state)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameError;
    use crate::session::{Event, SessionConfig, MAX_BATCH_RECORDS};
    use std::time::Duration;

    fn pair(config: SessionConfig) -> (Session, Session, Instant) {
        crate::session::established_pair_for_test(config)
    }

    fn deliver(to: &mut Session, out: &Transmits, now: Instant) -> Vec<Vec<u8>> {
        for d in out.iter() {
            to.handle_datagram(now, &mut d.to_vec()).unwrap();
        }
        std::iter::from_fn(|| to.poll_event())
            .filter_map(|e| match e {
                Event::Message { payload, .. } => Some(payload),
                _ => None,
            })
            .collect()
    }

    /// Room for the header in front and for the tag behind, as the node's
    /// buffer pool gives.
    fn with_room(message: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(DATA_OVERHEAD + message.len());
        buf.resize(HEADER_LEN, 0);
        buf.extend_from_slice(message);
        buf
    }

    #[test]
    fn a_message_in_place_is_sealed_where_it_lies_or_sent_as_send_would() {
        let udp = SessionConfig {
            max_datagram_size: Some(1200),
            ..SessionConfig::default()
        };
        let (mut client, mut server, now) = pair(udp);
        let mut out = Transmits::new();

        // One frame, empty queue: the buffers trade places.
        let mut buf = with_room(b"sealed in place");
        let ptr = buf.as_ptr();
        let n = client
            .send_in_place(now, FrameType::Data, 3, &mut buf, &mut out)
            .unwrap();
        assert_eq!(n, 1);
        assert!(buf.is_empty(), "the buffer comes back empty");
        assert_eq!(out.buf.as_ptr(), ptr, "sealed in the message's own buffer");
        assert_eq!(out.bytes(), DATA_OVERHEAD + 15);
        assert_eq!(
            deliver(&mut server, &out, now),
            vec![b"sealed in place".to_vec()]
        );

        // Datagrams already queued: appended after them, buffer untouched.
        out.clear();
        client.send(now, 0, b"first", &mut out).unwrap();
        let mut buf = with_room(b"second");
        client
            .send_in_place(now, FrameType::Application(0x90), 0, &mut buf, &mut out)
            .unwrap();
        assert_eq!(buf, with_room(b"second"));
        assert_eq!(
            deliver(&mut server, &out, now),
            vec![b"first".to_vec(), b"second".to_vec()]
        );

        // Larger than a datagram: fragmented as `send` would.
        out.clear();
        let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut buf = with_room(&big);
        let n = client
            .send_in_place(now, FrameType::Data, 0, &mut buf, &mut out)
            .unwrap();
        assert!(n >= 5, "{n} datagrams");
        assert_eq!(deliver(&mut server, &out, now), vec![big]);

        // No room given: an empty message.
        out.clear();
        let mut buf = Vec::new();
        client
            .send_in_place(now, FrameType::Data, 0, &mut buf, &mut out)
            .unwrap();
        assert_eq!(deliver(&mut server, &out, now), vec![Vec::<u8>::new()]);

        // Refusals are those of `send_typed`.
        let mut buf = with_room(b"x");
        assert!(matches!(
            client.send_in_place(
                now,
                FrameType::Handshake,
                0,
                &mut buf,
                &mut Transmits::new()
            ),
            Err(SessionError::NotAMessageType(_))
        ));

        // A closed session refuses it in place, leaving both buffers as
        // they were and counting nothing.
        client.close(now, 0, "done");
        let sent = client.stats().messages_sent;
        let mut out = Transmits::new();
        let mut buf = with_room(b"too late");
        assert!(matches!(
            client.send_in_place(now, FrameType::Data, 0, &mut buf, &mut out),
            Err(SessionError::NotEstablished(_))
        ));
        assert_eq!(buf, with_room(b"too late"));
        assert!(out.is_empty() && out.bytes() == 0);
        assert_eq!(client.stats().messages_sent, sent);
    }

    /// Moves every datagram each way until both are quiet.
    fn exchange(a: &mut Session, b: &mut Session, now: Instant) {
        for _ in 0..8 {
            let mut moved = false;
            while let Some(mut d) = a.poll_transmit() {
                let _ = b.handle_datagram(now, &mut d);
                moved = true;
            }
            while let Some(mut d) = b.poll_transmit() {
                let _ = a.handle_datagram(now, &mut d);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        while a.poll_event().is_some() || b.poll_event().is_some() {}
    }

    #[test]
    fn a_batch_frame_carries_at_most_max_batch_records() {
        let ws = SessionConfig {
            max_datagram_size: None,
            ..SessionConfig::default()
        };
        let (mut client, mut server, now) = pair(ws);
        // The sender splits: 5 000 empty messages in two frames.
        let empty: Vec<&[u8]> = vec![b""; 5000];
        let mut out = Transmits::new();
        client
            .send_batch(now, 1, &empty, 1 << 24, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(deliver(&mut server, &out, now).len(), 5000);
        // A frame of MAX_BATCH_RECORDS + 1 records, sealed by hand: refused
        // whole, nothing delivered.
        let mut out = Transmits::new();
        let start = out.begin_frame();
        for _ in 0..=MAX_BATCH_RECORDS {
            write_batch_record(&mut out.buf, b"");
        }
        let header = client.header(FrameType::Data, Flags::BATCH, 1);
        client.seal_frame(&mut out, start, header).unwrap();
        let mut d = out.iter().next().unwrap().to_vec();
        assert!(matches!(
            server.handle_datagram(now, &mut d),
            Err(SessionError::Frame(FrameError::BadBatch(_)))
        ));
        assert!(server.poll_event().is_none());
    }

    #[test]
    fn keys_renew_by_rekey_in_time_and_the_old_receive_key_goes() {
        let (mut client, mut server, start) = pair(SessionConfig::default());
        let mut now = start;
        while now < start + Duration::from_secs(125) {
            now += Duration::from_secs(1);
            client.handle_timeout(now);
            server.handle_timeout(now);
            exchange(&mut client, &mut server, now);
        }
        assert!(client.is_established() && server.is_established());
        let updates = client.stats().key_updates;
        assert_eq!(updates, 1, "one key update after 120 s: the rekey's");
        assert_eq!(client.stats().rekeys, 1);
        assert_eq!(server.stats().rekeys, 1);
        // Both receive keys moved on and, three probe intervals later (the
        // loop ran seconds past the update), dropped the previous one.
        for s in [&client, &server] {
            let k = s.keys.as_ref().unwrap();
            assert!(k.recv.current_generation() >= 1);
            assert!(!k.recv.has_previous(), "previous receive key dropped");
        }
    }

    #[test]
    fn a_key_never_confirmed_closes_the_session_at_its_limit() {
        let config = SessionConfig {
            key_update_interval: Some(5),
            ..SessionConfig::default()
        };
        let (mut client, _server, now) = pair(config);
        let mut out = Transmits::new();
        // The server never answers, so the update after 5 packets stays
        // unconfirmed; the new key is then driven to the AEAD's limit.
        for _ in 0..10 {
            client
                .send(now, 1, b"x", &mut out)
                .expect("within the budget");
        }
        client
            .keys
            .as_mut()
            .expect("established")
            .send
            .spend_budget_for_test();
        let mut result = Ok(0);
        for _ in 0..3 {
            result = client.send(now, 1, b"x", &mut out);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(
            result,
            Err(SessionError::Crypto(CryptoError::KeyExhausted))
        ));
        assert_eq!(client.state(), SessionState::Closed);
        assert_eq!(client.close_reason(), Some(&CloseReason::KeyExhausted));
    }
}
