//! Target `handshake`: handshake messages, arbitrary and spliced.
//!
//! The first input byte picks a mode ([`Mode`]); the rest is the mode's data.
//! Keys come from fixed seeds: server identity `[1; 32]`, client identity
//! `[2; 32]`, network `[7; 32]`, session id [`SESSION_ID`]. The ephemeral
//! keys are random (stt draws them from the OS), so messages 1-3 differ from
//! run to run, but every check below holds whatever they are, and a crash
//! that does not depend on ciphertext bytes reproduces.
//!
//! Properties checked, beyond "never panics":
//!
//! - `Session::accept` accepts a datagram only if its first frame is a genuine
//!   message 1, byte for byte (header included: it is bound into the
//!   prologue), and then answers with one datagram no larger than the one it
//!   received (anti-amplification);
//! - a client fed arbitrary datagrams never becomes established;
//! - a mutated message 2 (or 3) establishes nothing unless its first frame is
//!   the genuine message, and does not break the handshake: the genuine
//!   message still completes it afterwards, and both sides then agree on
//!   each other's node ids.
//!
//! Splice modes build the genuine datagram, then apply a [`Mutation`] from
//! the fuzz data, so that the fuzzer starts past the magic, version and
//! length checks.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use stt::crypto::{Identity, NetworkKey};
use stt::frame::{Frame, SessionId, HEADER_LEN};
use stt::session::{Session, SessionConfig};

use crate::input::{Input, Output};

/// The session id every client of this target uses.
pub const SESSION_ID: SessionId = SessionId(0x5354_5446_555a_5a31);

/// What the input's first byte selects (`byte % 5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The rest is one datagram for `Session::accept`.
    Accept = 0,
    /// The rest is a sequence of `u8`-length-prefixed datagrams for a fresh
    /// client's `handle_datagram`, with a timer run between them.
    Client = 1,
    /// The rest is a [`Mutation`] of the client's genuine message-1 datagram,
    /// which then goes to `Session::accept`.
    SpliceMsg1 = 2,
    /// The rest is a [`Mutation`] of the server's genuine message-2 datagram,
    /// fed to the client before the genuine one.
    SpliceMsg2 = 3,
    /// The rest is a [`Mutation`] of the client's genuine message-3 datagram,
    /// fed to the server before the genuine one.
    SpliceMsg3 = 4,
}

/// How a splice mode changes the genuine datagram: `offset` (`u16`, taken
/// modulo `len + 1`), a flag byte (bit 0: cut the datagram at `offset`
/// first), then bytes XORed in from `offset` on; bytes that reach past the
/// end are appended.
#[derive(Debug, Clone, Default)]
pub struct Mutation {
    /// Where the change starts.
    pub offset: u16,
    /// Cut the datagram at `offset` before XORing.
    pub truncate: bool,
    /// XOR mask (appended past the end).
    pub xor: Vec<u8>,
}

impl Mutation {
    fn read(input: &mut Input<'_>) -> Self {
        Mutation {
            offset: input.u16().unwrap_or(0),
            truncate: input.u8().unwrap_or(0) & 1 == 1,
            xor: input.rest().to_vec(),
        }
    }

    fn write(&self, o: &mut Output) {
        o.u16(self.offset)
            .u8(u8::from(self.truncate))
            .bytes(&self.xor);
    }

    /// `datagram` changed as described.
    pub fn apply(&self, datagram: &[u8]) -> Vec<u8> {
        let mut d = datagram.to_vec();
        let offset = usize::from(self.offset) % (d.len() + 1);
        if self.truncate {
            d.truncate(offset);
        }
        for (i, &x) in self.xor.iter().enumerate() {
            match d.get_mut(offset + i) {
                Some(b) => *b ^= x,
                None => d.push(x),
            }
        }
        d
    }
}

/// Encodes a splice-mode input.
pub fn encode_splice(mode: Mode, m: &Mutation) -> Vec<u8> {
    let mut o = Output::new();
    o.u8(mode as u8);
    m.write(&mut o);
    o.finish()
}

/// Encodes an [`Mode::Accept`] input.
pub fn encode_accept(datagram: &[u8]) -> Vec<u8> {
    let mut v = vec![Mode::Accept as u8];
    v.extend_from_slice(datagram);
    v
}

/// Encodes a [`Mode::Client`] input.
pub fn encode_client(datagrams: &[&[u8]]) -> Vec<u8> {
    let mut o = Output::new();
    o.u8(Mode::Client as u8);
    for d in datagrams {
        o.short_bytes(d);
    }
    o.finish()
}

/// Fixed keys of the two nodes.
pub struct Keys {
    /// The responder's identity (`[1; 32]`).
    pub server: Identity,
    /// The initiator's identity (`[2; 32]`).
    pub client: Identity,
    /// The shared network key (`[7; 32]`).
    pub network: NetworkKey,
}

/// The fixed keys, derived once per process.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        server: Identity::from_seed(&[1u8; 32]).expect("32-byte seed"),
        client: Identity::from_seed(&[2u8; 32]).expect("32-byte seed"),
        network: NetworkKey::from_seed(&[7u8; 32]).expect("32-byte seed"),
    })
}

/// A client session (fixed keys and id) and its message-1 datagram.
pub fn client(now: Instant) -> (Session, Vec<u8>) {
    let k = keys();
    let mut c = Session::connect(
        SessionConfig::default(),
        &k.client,
        &k.network,
        SESSION_ID,
        now,
    )
    .expect("connect with the default config");
    let msg1 = c.poll_transmit().expect("connect queues message 1");
    (c, msg1)
}

fn accept(datagram: &[u8], now: Instant) -> Option<Session> {
    let k = keys();
    let s = Session::accept(
        SessionConfig::default(),
        &k.server,
        &k.network,
        datagram,
        now,
    )
    .ok()?;
    Some(s)
}

/// Checks what an accepted session must look like: one answer, no larger
/// than the datagram that created it.
fn check_accepted(server: &mut Session, datagram: &[u8]) -> Vec<u8> {
    let msg2 = server.poll_transmit().expect("an accepted session answers");
    assert!(
        msg2.len() <= datagram.len(),
        "amplification: {}-byte answer to a {}-byte message 1",
        msg2.len(),
        datagram.len()
    );
    assert!(
        server.poll_transmit().is_none(),
        "more than one answer to message 1"
    );
    assert!(!server.is_established());
    msg2
}

/// The length of the first frame of `datagram` (0 if it does not parse).
fn first_frame_len(datagram: &[u8]) -> usize {
    Frame::decode(datagram).map_or(0, |(f, _)| HEADER_LEN + f.payload.len())
}

/// The Noise payload of the first frame of `datagram`, if it parses.
fn first_payload(datagram: &[u8]) -> Option<&[u8]> {
    Frame::decode(datagram).ok().map(|(f, _)| f.payload)
}

fn drain(s: &mut Session) {
    while s.poll_transmit().is_some() {}
    while s.poll_event().is_some() {}
}

/// Runs the target on `data`.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(mode) = input.u8() else { return };
    let now = Instant::now();
    match mode % 5 {
        0 => {
            let datagram = input.rest();
            if let Some(mut s) = accept(datagram, now) {
                check_accepted(&mut s, datagram);
            }
        }
        1 => {
            let (mut c, _) = client(now);
            let mut t = now;
            while let Some(d) = input.short_bytes() {
                let _ = c.handle_datagram(t, &mut d.to_vec());
                t += Duration::from_millis(100);
                c.handle_timeout(t);
                drain(&mut c);
                assert!(
                    !c.is_established(),
                    "a forged datagram established the client"
                );
            }
        }
        2 => {
            let (_, msg1) = client(now);
            let m = Mutation::read(&mut input);
            let d = m.apply(&msg1);
            if let Some(mut s) = accept(&d, now) {
                assert_eq!(
                    &d[..first_frame_len(&d)],
                    &msg1[..],
                    "accepted a message 1 that is not the genuine one"
                );
                check_accepted(&mut s, &d);
            }
        }
        3 => {
            let (mut c, msg1) = client(now);
            let mut s = accept(&msg1, now).expect("genuine message 1 is accepted");
            let msg2 = check_accepted(&mut s, &msg1);
            let m = Mutation::read(&mut input);
            let mut d = m.apply(&msg2);
            let original = d.clone();
            let _ = c.handle_datagram(now, &mut d);
            if c.is_established() {
                // Only the Noise payload of messages 2 and 3 is
                // authenticated (the prologue binds message 1's header).
                assert_eq!(
                    first_payload(&original),
                    first_payload(&msg2),
                    "a mutated message 2 established the client"
                );
            }
            let _ = c.handle_datagram(now, &mut msg2.clone());
            assert!(
                c.is_established(),
                "a mutated message 2 broke the handshake"
            );
            finish(&mut c, &mut s, now, None);
        }
        _ => {
            let (mut c, msg1) = client(now);
            let mut s = accept(&msg1, now).expect("genuine message 1 is accepted");
            let mut msg2 = check_accepted(&mut s, &msg1);
            c.handle_datagram(now, &mut msg2)
                .expect("genuine message 2");
            assert!(c.is_established());
            let m = Mutation::read(&mut input);
            finish(&mut c, &mut s, now, Some(&m));
        }
    }
}

/// Takes message 3 from the client; feeds the server its mutation (if any),
/// then the genuine one; checks both sides end established and agreeing.
fn finish(c: &mut Session, s: &mut Session, now: Instant, m: Option<&Mutation>) {
    let msg3 = c
        .poll_transmit()
        .expect("an established initiator sends message 3");
    if let Some(m) = m {
        let mut d = m.apply(&msg3);
        let original = d.clone();
        let _ = s.handle_datagram(now, &mut d);
        if s.is_established() {
            assert_eq!(
                first_payload(&original),
                first_payload(&msg3),
                "a mutated message 3 established the server"
            );
        }
    }
    let _ = s.handle_datagram(now, &mut msg3.clone());
    assert!(
        s.is_established(),
        "a mutated message 3 broke the handshake"
    );
    let k = keys();
    assert_eq!(s.peer(), Some(k.client.node_id()));
    assert_eq!(c.peer(), Some(k.server.node_id()));
    // The server's confirmation (a ping) opens at the client.
    let mut confirmations = 0;
    while let Some(mut d) = s.poll_transmit() {
        c.handle_datagram(now, &mut d)
            .expect("the established server's datagrams open at the client");
        confirmations += 1;
    }
    assert!(confirmations > 0, "the server sent no confirmation");
}
