//! Target `session_established`: an established server session fed fuzz
//! datagrams, interleaved with authentic ones.
//!
//! The harness plays the initiator itself with the public
//! [`Handshake`](stt::crypto::Handshake) API (the same three messages a
//! `Session::connect` client sends), so that it holds the client's traffic
//! keys: it can then seal *any* plaintext as an authentic frame, and the
//! fuzzer reaches the code behind the AEAD (control messages, batches,
//! fragments and reassembly, key update, replay) instead of stopping at the
//! tag check. It also opens everything the server sends.
//!
//! Input layout: one setup byte (AEAD preferences, datagram size, key update
//! interval), then operations ([`Op`]; written for seeds by [`encode`]).
//!
//! Properties checked after every operation (any failure is a bug in `stt`):
//!
//! - **the session survives**: unless the fuzz input itself sent a CLOSE, the
//!   server is still established and a freshly sealed probe message arrives
//!   as exactly one `Event::Message` with its stream, type and bytes;
//! - a datagram of one frame that is refused delivers no message; an
//!   authentic DATA (or application) frame delivers exactly its plaintext;
//!   an authentic well-formed batch delivers exactly its records, in order;
//! - an authentic ping is answered by a pong with its token;
//! - replaying a datagram the server already accepted is refused and
//!   delivers nothing;
//! - a message reassembled from fragments has its announced `total_len` and
//!   the bytes its fragments carried, and each message id is delivered once
//!   (while no id from the upper half of the `u32` range was sent: beyond
//!   that the id space may wrap, and an id may come again legitimately);
//! - the server's reassembly memory stays under its cap;
//! - every datagram the server sends opens with the client's keys and is a
//!   well-formed control message; a final `close()` sends a CLOSE.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use stt::crypto::{AeadPreference, Handshake, RecvKeys, SendKeys};
use stt::frame::{
    write_batch_record, BatchRecords, Control, Flags, Frame, FrameType, Frames, Header, HEADER_LEN,
};
use stt::session::{CloseReason, Event, Session, SessionConfig, SessionState};
use stt::stream::{fragments, FragmentHeader};

use crate::handshake::{keys, Mutation, SESSION_ID};
use crate::input::{Input, Output};
use crate::reassembly::{
    self, chunk_len, index, inner_type, is_pattern, message_id, pattern_bytes, total_len,
};

/// Stream of the probe messages (the fuzzer's own streams are below 256 or
/// `u32::MAX`).
pub const PROBE_STREAM: u32 = 0x7fff_fff0;

/// Most sealed datagrams kept for replay, and most stashed.
const KEEP: usize = 32;

/// One operation of the input. The op byte is `kind % 12` (see [`encode`]).
#[derive(Debug, Clone)]
pub enum Op {
    /// 0: raw bytes as a datagram.
    Raw(Vec<u8>),
    /// 1: an authentic frame of wire type `frame_type` (unassigned values
    /// become DATA), BATCH flag when `batch`, on stream [`stream`]`(stream)`.
    Sealed {
        /// Wire type byte.
        frame_type: u8,
        /// Set the BATCH flag.
        batch: bool,
        /// Stream selector.
        stream: u8,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// 2: an authentic control message.
    Control(Control),
    /// 3: an authentic STREAM frame carrying one fragment built from the
    /// selectors of [`crate::reassembly`], with pattern bytes.
    Fragment {
        /// [`message_id`] selector.
        id: u8,
        /// [`total_len`] selector.
        len: u16,
        /// [`chunk_len`] selector.
        chunk: u8,
        /// [`index`] selector.
        index: u8,
        /// Bits 0-1 inner type, bit 2 stream.
        flags: u8,
    },
    /// 4: every fragment of a pattern message of `len % 8192 + 1` bytes,
    /// chunk [`chunk_len`]`(chunk).max(1)`; `order` rotates (bits 0-5),
    /// coalesces all into one datagram (bit 6), reverses (bit 7); fragment
    /// `skip - 1` is left out when `skip > 0`.
    Whole {
        /// [`message_id`] selector.
        id: u8,
        /// Length selector.
        len: u16,
        /// [`chunk_len`] selector.
        chunk: u8,
        /// Order selector.
        order: u8,
        /// Fragment to leave out, plus one.
        skip: u8,
    },
    /// 5: an authentic well-formed batch of these records on stream 1.
    Batch(Vec<Vec<u8>>),
    /// 6: an authentic DATA frame of `plaintext`, then changed by `mutation`.
    Mutated {
        /// The plaintext.
        plaintext: Vec<u8>,
        /// The change.
        mutation: Mutation,
    },
    /// 7: like `Sealed`, but kept back for `Unstash` (reordering).
    Stash {
        /// Wire type byte.
        frame_type: u8,
        /// Stream selector.
        stream: u8,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// 8: delivers stashed datagram `i % len`.
    Unstash(u8),
    /// 9: replays accepted datagram `i % len`.
    Replay(u8),
    /// 10: the client updates its sending key.
    KeyUpdate,
    /// 11: the clock moves `millis % 4000` ms and timers run.
    Advance(u16),
}

/// Setup byte: client preference `b % 3`, server preference `(b / 3) % 3`
/// (Auto, AES-256-GCM, ChaCha20-Poly1305), bit 6 a key update every 2
/// packets on the server, bit 7 a stream path (no datagram size).
pub fn encode(setup: u8, ops: &[Op]) -> Vec<u8> {
    let mut o = Output::new();
    o.u8(setup);
    for op in ops {
        match op {
            Op::Raw(b) => {
                o.u8(0).long_bytes(b);
            }
            Op::Sealed {
                frame_type,
                batch,
                stream,
                plaintext,
            } => {
                o.u8(1)
                    .u8(*frame_type)
                    .u8(u8::from(*batch))
                    .u8(*stream)
                    .long_bytes(plaintext);
            }
            Op::Control(c) => {
                o.u8(2);
                match c {
                    Control::Ping { token } => o.u8(0).u64(*token),
                    Control::Pong { token } => o.u8(1).u64(*token),
                    Control::FlowCredit { bytes } => o.u8(2).u64(*bytes),
                    Control::KeyRotation => o.u8(3),
                    Control::Error { code, message } => {
                        o.u8(4).u16(*code).short_bytes(message.as_bytes())
                    }
                    Control::Close { code, reason } => {
                        o.u8(5).u16(*code).short_bytes(reason.as_bytes())
                    }
                    Control::PathChallenge { data } => o.u8(6).u64(u64::from_be_bytes(*data)),
                    Control::PathResponse { data } => o.u8(7).u64(u64::from_be_bytes(*data)),
                    Control::RekeyRequest { seq, ephemeral }
                    | Control::RekeyResponse { seq, ephemeral } => {
                        o.u8(if matches!(c, Control::RekeyRequest { .. }) {
                            8
                        } else {
                            9
                        })
                        .u64(*seq);
                        for chunk in ephemeral.chunks_exact(8) {
                            o.u64(u64::from_be_bytes(chunk.try_into().expect("8 bytes")));
                        }
                        &mut o
                    }
                };
            }
            Op::Fragment {
                id,
                len,
                chunk,
                index,
                flags,
            } => {
                o.u8(3).u8(*id).u16(*len).u8(*chunk).u8(*index).u8(*flags);
            }
            Op::Whole {
                id,
                len,
                chunk,
                order,
                skip,
            } => {
                o.u8(4).u8(*id).u16(*len).u8(*chunk).u8(*order).u8(*skip);
            }
            Op::Batch(records) => {
                o.u8(5).u8(records.len() as u8);
                for r in records {
                    o.short_bytes(r);
                }
            }
            Op::Mutated {
                plaintext,
                mutation,
            } => {
                o.u8(6)
                    .short_bytes(plaintext)
                    .u16(mutation.offset)
                    .u8(u8::from(mutation.truncate))
                    .short_bytes(&mutation.xor);
            }
            Op::Stash {
                frame_type,
                stream,
                plaintext,
            } => {
                o.u8(7).u8(*frame_type).u8(*stream).short_bytes(plaintext);
            }
            Op::Unstash(i) => {
                o.u8(8).u8(*i);
            }
            Op::Replay(i) => {
                o.u8(9).u8(*i);
            }
            Op::KeyUpdate => {
                o.u8(10);
            }
            Op::Advance(ms) => {
                o.u8(11).u16(*ms);
            }
        }
    }
    o.finish()
}

/// Stream id for selector `s`: small, or `u32::MAX` for 0xff.
pub fn stream(s: u8) -> u32 {
    if s == 0xff {
        u32::MAX
    } else {
        u32::from(s)
    }
}

fn preference(b: u8) -> AeadPreference {
    [
        AeadPreference::Auto,
        AeadPreference::Aes256Gcm,
        AeadPreference::ChaCha20Poly1305,
    ][usize::from(b % 3)]
}

/// A message event, flattened.
type Message = (u32, FrameType, Vec<u8>);

/// What one delivery produced.
struct Delivery {
    ok: bool,
    /// Frames the datagram held (`None` if it does not parse whole).
    frames: Option<usize>,
    messages: Vec<Message>,
    controls: Vec<Control>,
}

/// The server session and the harness's client half.
pub struct Pair {
    now: Instant,
    server: Session,
    config: SessionConfig,
    send: SendKeys,
    recv: RecvKeys,
    /// Datagrams kept back, with the fragment they carry (if any).
    stash: Vec<(Vec<u8>, Option<FragmentHeader>, u32)>,
    accepted: Vec<Vec<u8>>,
    probes: u64,
    update_pending: bool,
    /// Fragment message ids that carried non-pattern bytes.
    tainted: HashSet<u32>,
    /// Fragment message ids delivered.
    delivered: HashSet<u32>,
    /// Whether a fragment with an id in the upper half of the `u32` range
    /// was sent: the receiver then may see the id space wrap, and deliver
    /// an id again legitimately, so "once per id" is no longer checked.
    may_wrap: bool,
    /// Whether the input sent a CLOSE (the server may then close).
    close_sent: bool,
    /// Whether the server answered a rekey request of the input: its keys
    /// then follow a Diffie-Hellman with a key the harness does not hold,
    /// so the run stops there.
    rekeyed: bool,
}

impl Pair {
    /// Runs the handshake for `setup` (see [`encode`]).
    pub fn establish(setup: u8) -> Pair {
        let k = keys();
        let now = Instant::now();
        let config = SessionConfig {
            aead: preference(setup / 3),
            max_datagram_size: if setup & 0x80 != 0 { None } else { Some(1472) },
            key_update_interval: if setup & 0x40 != 0 { Some(2) } else { None },
            reassembly: reassembly::config(),
            // The harness plays a client without the rekey: the server must
            // not ask for one, nor close for lack of one, within any input
            // (an input moves the clock at most 4 s per operation).
            rekey_after: Duration::from_secs(1 << 32),
            reject_after: Duration::from_secs(1 << 33),
            ..SessionConfig::default()
        };
        let h1 = handshake_header(1, stt::crypto::handshake::MSG1_LEN);
        let (mut hs, m1) =
            Handshake::initiate(&k.client, &k.network, preference(setup), &h1.to_bytes())
                .expect("initiate");
        let mut d1 = h1.to_bytes().to_vec();
        d1.extend_from_slice(&m1);
        let mut server = Session::accept(config.clone(), &k.server, &k.network, &d1, now)
            .expect("accept a genuine message 1");
        let d2 = server.poll_transmit().expect("message 2");
        let (f2, _) = Frame::decode(&d2).expect("message 2 parses");
        let (m3, outcome) = hs.finish_initiator(f2.payload).expect("finish initiator");
        let mut d3 = handshake_header(3, m3.len()).to_bytes().to_vec();
        d3.extend_from_slice(&m3);
        server.handle_datagram(now, &mut d3).expect("message 3");
        assert!(server.is_established());
        let events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
        assert!(
            matches!(events.as_slice(), [Event::Established { peer, algorithm }]
                if *peer == k.client.node_id() && *algorithm == outcome.algorithm),
            "unexpected events after the handshake: {events:?}"
        );
        let mut pair = Pair {
            now,
            server,
            config,
            send: SendKeys::new(outcome.algorithm, &outcome.send_secret),
            recv: RecvKeys::new(outcome.algorithm, &outcome.recv_secret),
            stash: Vec::new(),
            accepted: Vec::new(),
            probes: 0,
            update_pending: false,
            tainted: HashSet::new(),
            delivered: HashSet::new(),
            may_wrap: false,
            close_sent: false,
            rekeyed: false,
        };
        let confirmation = pair.outputs();
        assert!(
            confirmation
                .iter()
                .any(|c| matches!(c, Control::Ping { .. })),
            "the server did not confirm the handshake with a ping"
        );
        pair
    }

    /// Seals `plaintext` as an authentic frame.
    fn seal(
        &mut self,
        frame_type: FrameType,
        flags: Flags,
        stream_id: u32,
        plaintext: &[u8],
    ) -> Vec<u8> {
        if frame_type == FrameType::Stream {
            if let Ok((h, _)) = FragmentHeader::decode(plaintext) {
                self.may_wrap |= h.message_id >= 1 << 31;
            }
        }
        let mut buf = vec![0u8; HEADER_LEN];
        buf.extend_from_slice(plaintext);
        let header = Header {
            frame_type,
            flags,
            session_id: SESSION_ID,
            stream_id,
            packet_number: 0,
            payload_len: 0,
        };
        self.send
            .seal(&mut buf, 0, header)
            .expect("plaintexts here are far below the frame limit");
        buf
    }

    /// Opens and decodes everything the server queued.
    fn outputs(&mut self) -> Vec<Control> {
        let mut controls = Vec::new();
        while let Some(mut d) = self.server.poll_transmit() {
            let mut rest = &mut d[..];
            while !rest.is_empty() {
                let header = Header::decode(rest).expect("the server sent a bad header");
                assert_eq!(header.session_id, SESSION_ID);
                assert_eq!(
                    header.frame_type,
                    FrameType::Control,
                    "an established server sent a {:?} frame",
                    header.frame_type
                );
                let end = HEADER_LEN + header.payload_len as usize;
                assert!(end <= rest.len(), "the server sent a truncated frame");
                let (frame, tail) = std::mem::take(&mut rest).split_at_mut(end);
                rest = tail;
                let (head, payload) = frame.split_at_mut(HEADER_LEN);
                let head: &[u8; HEADER_LEN] = (&*head).try_into().expect("HEADER_LEN bytes");
                let plaintext = self
                    .recv
                    .open(&header, head, payload)
                    .expect("a frame from the server does not open at the client");
                controls.push(Control::decode(plaintext).expect("the server sent a bad control"));
            }
        }
        controls
    }

    /// Feeds `datagram` to the server and collects what came out.
    fn deliver(&mut self, datagram: &[u8]) -> Delivery {
        let frames = {
            let all: Result<Vec<_>, _> = Frames::new(datagram).collect();
            all.ok().map(|f| f.len())
        };
        let sealed_single = Frames::new(datagram)
            .next()
            .and_then(Result::ok)
            .is_some_and(|f| f.header.frame_type.is_sealed())
            && frames == Some(1);
        let mut d = datagram.to_vec();
        let ok = self.server.handle_datagram(self.now, &mut d).is_ok();
        if ok && sealed_single {
            if self.accepted.len() == KEEP {
                self.accepted.remove(0);
            }
            self.accepted.push(datagram.to_vec());
        }
        let mut messages = Vec::new();
        while let Some(e) = self.server.poll_event() {
            if let Event::Message {
                stream_id,
                frame_type,
                payload,
            } = e
            {
                messages.push((stream_id, frame_type, payload));
            }
        }
        let controls = self.outputs();
        self.rekeyed |= controls
            .iter()
            .any(|c| matches!(c, Control::RekeyResponse { .. }));
        let max = self.config.reassembly.max_session_bytes;
        assert!(
            self.server.reassembly_bytes() <= max,
            "server holds {} reassembly bytes, cap {max}",
            self.server.reassembly_bytes()
        );
        if !ok && frames == Some(1) {
            assert!(
                messages.is_empty(),
                "a refused frame delivered {} message(s)",
                messages.len()
            );
        }
        Delivery {
            ok,
            frames,
            messages,
            controls,
        }
    }

    /// Seals and delivers one frame, with the checks that follow from its
    /// plaintext.
    fn sealed(&mut self, frame_type: FrameType, batch: bool, stream_id: u32, plaintext: &[u8]) {
        let flags = Flags::EMPTY.with(Flags::BATCH, batch);
        if frame_type == FrameType::Stream {
            if let Ok((h, _)) = FragmentHeader::decode(plaintext) {
                self.tainted.insert(h.message_id);
            }
        }
        let d = self.seal(frame_type, flags, stream_id, plaintext);
        let got = self.deliver(&d);
        let batch_ok = batch && frame_type.is_message();
        match frame_type {
            t if t.is_message() && !batch => {
                assert!(got.ok, "an authentic {t:?} frame was refused");
                assert_eq!(
                    got.messages,
                    vec![(stream_id, t, plaintext.to_vec())],
                    "an authentic {t:?} frame was not delivered as sent"
                );
            }
            t if batch_ok => {
                let records: Result<Vec<&[u8]>, _> = BatchRecords::new(plaintext).collect();
                match records {
                    Ok(records) => {
                        assert!(got.ok, "an authentic well-formed batch was refused");
                        let want: Vec<Message> =
                            records.iter().map(|r| (stream_id, t, r.to_vec())).collect();
                        assert_eq!(got.messages, want, "a batch was not delivered as sent");
                    }
                    Err(_) => assert!(!got.ok, "a malformed batch was accepted"),
                }
            }
            FrameType::Control => {
                if self.server.state() == SessionState::Established {
                    if let Ok(Control::Ping { token }) = Control::decode(plaintext) {
                        assert!(
                            got.controls.contains(&Control::Pong { token }),
                            "ping {token} not answered: {:?}",
                            got.controls
                        );
                    }
                }
                if matches!(Control::decode(plaintext), Ok(Control::Close { .. })) {
                    self.close_sent = true;
                }
            }
            FrameType::Stream => {
                if let Ok((h, _)) = FragmentHeader::decode(plaintext) {
                    self.check_fragment_delivery(&h, stream_id, &got.messages);
                } else {
                    assert!(!got.ok, "an undecodable fragment was accepted");
                }
            }
            _ => {}
        }
    }

    /// What may come out of fragments of message `h`: nothing, or the whole
    /// message, once.
    fn check_fragment_delivery(
        &mut self,
        h: &FragmentHeader,
        stream_id: u32,
        messages: &[Message],
    ) {
        match messages {
            [] => {}
            [(s, t, payload)] => {
                assert_eq!(*s, stream_id);
                assert_eq!(t.to_u8(), h.inner_type, "reassembled message changed type");
                assert_eq!(
                    payload.len(),
                    h.total_len as usize,
                    "reassembled message {} has {} bytes, announced {}",
                    h.message_id,
                    payload.len(),
                    h.total_len
                );
                if !self.tainted.contains(&h.message_id) {
                    assert!(
                        is_pattern(h.message_id, payload),
                        "reassembled message {} has wrong bytes",
                        h.message_id
                    );
                }
                assert!(
                    self.delivered.insert(h.message_id) || self.may_wrap,
                    "message id {} delivered twice",
                    h.message_id
                );
            }
            more => panic!("one fragment delivered {} messages", more.len()),
        }
    }

    /// Seals a probe message and checks that it arrives whole.
    fn probe(&mut self) {
        self.probes += 1;
        let mut text = b"probe ".to_vec();
        text.extend_from_slice(&self.probes.to_be_bytes());
        let d = self.seal(FrameType::Data, Flags::EMPTY, PROBE_STREAM, &text);
        let got = self.deliver(&d);
        assert!(
            got.ok,
            "the server refused a valid message after fuzz input"
        );
        assert_eq!(
            got.messages,
            vec![(PROBE_STREAM, FrameType::Data, text)],
            "a valid message was not delivered after fuzz input"
        );
        self.update_pending = false;
    }

    /// After an operation: the session must be alive and take a valid message,
    /// unless the input closed it. Returns whether to go on.
    fn after_op(&mut self) -> bool {
        if self.rekeyed {
            return false;
        }
        match self.server.state() {
            SessionState::Established => {
                self.probe();
                true
            }
            state => {
                assert!(
                    self.close_sent,
                    "the server left Established ({state:?}, {:?}) without being sent a CLOSE",
                    self.server.close_reason()
                );
                assert!(
                    matches!(self.server.close_reason(), Some(CloseReason::Peer { .. })),
                    "closed for {:?} after a CLOSE from the peer",
                    self.server.close_reason()
                );
                false
            }
        }
    }

    /// Closes the server and checks that it says so.
    fn close(&mut self) {
        if self.server.state() != SessionState::Established {
            return;
        }
        self.server.close(self.now, 0, "fuzz done");
        let out = self.outputs();
        // A key that spent its whole budget with its update unconfirmed
        // seals nothing more, not even the CLOSE (RFC 9001 §6.6).
        let exhausted = matches!(
            self.server.close_reason(),
            Some(stt::session::CloseReason::KeyExhausted)
        );
        assert!(
            exhausted || out.iter().any(|c| matches!(c, Control::Close { .. })),
            "close() sent no CLOSE: {out:?}"
        );
    }
}

fn handshake_header(position: u64, len: usize) -> Header {
    Header {
        frame_type: FrameType::Handshake,
        flags: Flags::EMPTY,
        session_id: SESSION_ID,
        stream_id: 0,
        packet_number: position,
        payload_len: len as u32,
    }
}

fn frame_type(b: u8) -> FrameType {
    FrameType::from_u8(b).unwrap_or(FrameType::Data)
}

fn control(input: &mut Input<'_>) -> Option<Control> {
    Some(match input.u8()? % 10 {
        0 => Control::Ping {
            token: input.u64()?,
        },
        1 => Control::Pong {
            token: input.u64()?,
        },
        2 => Control::FlowCredit {
            bytes: input.u64()?,
        },
        3 => Control::KeyRotation,
        4 => Control::Error {
            code: input.u16()?,
            message: String::from_utf8_lossy(input.short_bytes()?).into_owned(),
        },
        5 => Control::Close {
            code: input.u16()?,
            reason: String::from_utf8_lossy(input.short_bytes()?).into_owned(),
        },
        6 => Control::PathChallenge {
            data: input.u64()?.to_be_bytes(),
        },
        7 => Control::PathResponse {
            data: input.u64()?.to_be_bytes(),
        },
        kind => {
            let seq = input.u64()?;
            let mut ephemeral = [0u8; 32];
            for chunk in ephemeral.chunks_exact_mut(8) {
                chunk.copy_from_slice(&input.u64()?.to_be_bytes());
            }
            if kind == 8 {
                Control::RekeyRequest { seq, ephemeral }
            } else {
                Control::RekeyResponse { seq, ephemeral }
            }
        }
    })
}

/// Runs one operation; `None` when the input ran out.
fn step(p: &mut Pair, input: &mut Input<'_>) -> Option<()> {
    match input.u8()? % 12 {
        0 => {
            let b = input.long_bytes()?;
            p.deliver(b);
        }
        1 => {
            let (t, batch, s) = (input.u8()?, input.u8()?, input.u8()?);
            let plaintext = input.long_bytes()?;
            p.sealed(frame_type(t), batch & 1 == 1, stream(s), plaintext);
        }
        2 => {
            let c = control(input)?;
            let mut plaintext = Vec::new();
            c.encode(&mut plaintext);
            p.sealed(FrameType::Control, false, 0, &plaintext);
        }
        3 => {
            let (id, len, chunk, idx, flags) = (
                input.u8()?,
                input.u16()?,
                input.u8()?,
                input.u8()?,
                input.u8()?,
            );
            let mut h = FragmentHeader {
                message_id: message_id(id),
                total_len: total_len(len),
                index: 0,
                chunk_len: chunk_len(chunk),
                inner_type: inner_type(flags),
            };
            h.index = index(idx, h.fragment_count());
            let offset = u64::from(h.index) * u64::from(h.chunk_len);
            let n = h.expected_chunk_len().unwrap_or(0);
            let mut plaintext = h.encode().to_vec();
            plaintext.extend(pattern_bytes(h.message_id, offset, n));
            p.sealed(
                FrameType::Stream,
                false,
                u32::from((flags >> 2) & 1),
                &plaintext,
            );
        }
        4 => {
            let (id, len, chunk, order, skip) = (
                input.u8()?,
                input.u16()?,
                input.u8()?,
                input.u8()?,
                input.u8()?,
            );
            let id = message_id(id);
            let payload = pattern_bytes(id, 0, usize::from(len % 8192) + 1);
            let chunk = usize::from(chunk_len(chunk).max(1));
            let mut frames: Vec<(FragmentHeader, Vec<u8>)> = fragments(id, 0x01, &payload, chunk)
                .expect("a valid split")
                .map(|(h, c)| {
                    let mut pt = h.encode().to_vec();
                    pt.extend_from_slice(c);
                    (h, pt)
                })
                .collect();
            let n = frames.len();
            if skip > 0 {
                frames.remove(usize::from(skip - 1) % n);
            }
            if frames.is_empty() {
                return Some(());
            }
            let k = usize::from(order & 0x3f) % frames.len();
            frames.rotate_left(k);
            if order & 0x80 != 0 {
                frames.reverse();
            }
            let header = frames[0].0;
            if order & 0x40 != 0 {
                let mut datagram = Vec::new();
                for (_, pt) in &frames {
                    datagram.extend(p.seal(FrameType::Stream, Flags::EMPTY, 1, pt));
                }
                let got = p.deliver(&datagram);
                p.check_fragment_delivery(&header, 1, &got.messages);
            } else {
                for (h, pt) in &frames {
                    let d = p.seal(FrameType::Stream, Flags::EMPTY, 1, pt);
                    let got = p.deliver(&d);
                    p.check_fragment_delivery(h, 1, &got.messages);
                }
            }
        }
        5 => {
            let n = input.u8()? % 8;
            let mut plaintext = Vec::new();
            for _ in 0..n {
                write_batch_record(&mut plaintext, input.short_bytes()?);
            }
            p.sealed(FrameType::Data, true, 1, &plaintext);
        }
        6 => {
            let plaintext = input.short_bytes()?.to_vec();
            let mutation = Mutation {
                offset: input.u16()?,
                truncate: input.u8()? & 1 == 1,
                xor: input.short_bytes()?.to_vec(),
            };
            let d = p.seal(FrameType::Data, Flags::EMPTY, 2, &plaintext);
            let changed = mutation.apply(&d);
            let got = p.deliver(&changed);
            if got.ok && got.frames == Some(1) && changed.len() == d.len() {
                // Same length and accepted: only fields outside the AEAD's
                // reach may differ, and the message must be the one sealed.
                for (_, _, m) in &got.messages {
                    assert_eq!(m, &plaintext, "a mutated frame delivered altered bytes");
                }
            }
        }
        7 => {
            let (t, s) = (input.u8()?, input.u8()?);
            let plaintext = input.short_bytes()?;
            let (t, s) = (frame_type(t), stream(s));
            let fragment = match t {
                FrameType::Stream => FragmentHeader::decode(plaintext).ok().map(|(h, _)| h),
                _ => None,
            };
            if let Some(h) = &fragment {
                p.tainted.insert(h.message_id);
            }
            let d = p.seal(t, Flags::EMPTY, s, plaintext);
            if p.stash.len() == KEEP {
                p.stash.remove(0);
            }
            p.stash.push((d, fragment, s));
        }
        8 => {
            let i = input.u8()?;
            if !p.stash.is_empty() {
                let (d, fragment, s) = p.stash.remove(usize::from(i) % p.stash.len());
                let got = p.deliver(&d);
                if let Some(h) = fragment {
                    p.check_fragment_delivery(&h, s, &got.messages);
                }
            }
        }
        9 => {
            let i = input.u8()?;
            if !p.accepted.is_empty() {
                let d = p.accepted[usize::from(i) % p.accepted.len()].clone();
                let got = p.deliver(&d);
                assert!(!got.ok, "a replayed datagram was accepted");
                assert!(
                    got.messages.is_empty(),
                    "a replayed datagram delivered a message"
                );
            }
        }
        10 => {
            // One update at a time: a second one before the peer saw the
            // first would reuse the key phase bit (the probe confirms it).
            if !p.update_pending {
                p.send.request_update();
                p.update_pending = true;
            }
        }
        _ => {
            let ms = input.u16()? % 4000;
            p.now += Duration::from_millis(u64::from(ms));
            if p.server.poll_timeout().is_some_and(|t| t <= p.now) {
                p.server.handle_timeout(p.now);
            }
            let _ = p.outputs();
            while p.server.poll_event().is_some() {}
        }
    }
    Some(())
}

/// Runs the target on `data`.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(setup) = input.u8() else { return };
    let mut p = Pair::establish(setup);
    while step(&mut p, &mut input).is_some() {
        if !p.after_op() {
            return;
        }
    }
    p.close();
}
