//! The shared test vectors: `testdata/vectors.json`, which this crate's
//! tests and the JavaScript client's (`clients/js/`) both check.
//!
//! Every value is computed here with fixed keys by the code paths a node
//! runs, and each is also read back by the receiving side of this crate
//! (sealed frames opened, the token message 1 admitted by a token gate and
//! answered by a responder, the token parsed), so the file is not only what
//! the writer wrote. `cargo test --lib vectors` fails when the file differs
//! from what the code computes; `STT_WRITE_VECTORS=1 cargo test --lib
//! vectors` rewrites it.

use serde_json::{json, Value};

use crate::crypto::aead::{RecvKeys, SendKeys};
use crate::crypto::cookie::{self, ChallengeKey, CookieKey};
use crate::crypto::handshake::{build, MSG1_PAYLOAD_LEN};
use crate::crypto::keys::hkdf_32;
use crate::crypto::{Algorithm, Identity, NetworkKey, ReplayError};
use crate::frame::{Control, Flags, FrameType, Header, SessionId, HEADER_LEN};
use crate::stream::FragmentHeader;
use crate::token::{
    ConnectToken, GateResult, Issuer, IssuingKey, TokenConfig, TokenGate, TokenRequest,
};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors.json");
const SESSION: SessionId = SessionId(0x0123_4567_89ab_cdef);
const TIMESTAMP: u64 = 1_800_000_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn handshake_header(pn: u64, len: usize) -> Header {
    Header {
        frame_type: FrameType::Handshake,
        flags: Flags::EMPTY,
        session_id: SESSION,
        stream_id: 0,
        packet_number: pn,
        payload_len: len as u32,
    }
}

/// A whole handshake with fixed keys: `ticket_part` empty for a member's,
/// `T || ticket` for a token's; `psk` the network key or the client key.
fn handshake(psk: &NetworkKey, ticket_part: &[u8], algorithm: Algorithm) -> Value {
    let (i, r) = (
        Identity::from_seed(&[0x01; 32]).expect("seed"),
        Identity::from_seed(&[0x02; 32]).expect("seed"),
    );
    let (ei, er) = ([0x11u8; 32], [0x22u8; 32]);
    let len1 = ticket_part.len() + 112;
    let mut prologue = handshake_header(1, len1).to_bytes().to_vec();
    prologue.extend_from_slice(ticket_part);
    let mut si = build(&i, psk, &prologue, true, &ei).expect("noise");
    let mut sr = build(&r, psk, &prologue, false, &er).expect("noise");
    let mut payload1 = [0u8; MSG1_PAYLOAD_LEN];
    payload1[0] = 2;
    payload1[1] = 0x04; // PREFER_CHACHA: no hardware bit, so the vector is the same everywhere
    payload1[2..10].copy_from_slice(&TIMESTAMP.to_be_bytes());
    let mut scratch = [0u8; 256];
    let mut m1 = vec![0u8; 112];
    si.write_message(&payload1, &mut m1).expect("m1");
    sr.read_message(&m1, &mut scratch).expect("m1 read");
    let mut m2 = vec![0u8; 97];
    sr.write_message(&[algorithm.to_u8()], &mut m2).expect("m2");
    si.read_message(&m2, &mut scratch).expect("m2 read");
    let mut m3 = vec![0u8; 64];
    si.write_message(&[], &mut m3).expect("m3");
    sr.read_message(&m3, &mut scratch).expect("m3 read");
    let hash = si.get_handshake_hash().to_vec();
    let (i2r, r2i) = si.dangerously_get_raw_split();
    let d1 = [&prologue[..], &m1].concat();
    let d2 = [&handshake_header(2, 97).to_bytes()[..], &m2].concat();
    let d3 = [&handshake_header(3, 64).to_bytes()[..], &m3].concat();
    // This crate's responder takes datagram 1 at that time.
    let config = crate::session::SessionConfig {
        aead: match algorithm {
            Algorithm::Aes256Gcm => crate::crypto::AeadPreference::Aes256Gcm,
            Algorithm::ChaCha20Poly1305 => crate::crypto::AeadPreference::ChaCha20Poly1305,
        },
        ..crate::session::SessionConfig::default()
    };
    crate::session::Session::accept(config, &r, psk, &d1, std::time::Instant::now())
        .map(|_| ())
        .or_else(|e| match e {
            // Accepted but for the real clock: the vector's timestamp is fixed.
            crate::session::SessionError::Handshake(
                crate::crypto::HandshakeError::StaleTimestamp { .. },
            ) => Ok(()),
            e => Err(e),
        })
        .expect("this crate's responder reads datagram 1");
    json!({
        "initiator_static_private": hex(&hkdf_32(b"stt v1 node identity", &[0x01; 32], b"x25519 static")[..]),
        "initiator_static_public": hex(i.public_key()),
        "initiator_node_id": i.node_id().to_hex(),
        "responder_static_public": hex(r.public_key()),
        "responder_node_id": r.node_id().to_hex(),
        "initiator_ephemeral_private": hex(&ei),
        "responder_ephemeral_private": hex(&er),
        "psk": hex(psk.psk()),
        "session_id": format!("{:016x}", SESSION.0),
        "timestamp": TIMESTAMP,
        "prologue": hex(&[b"stt v1 handshake".as_slice(), &prologue].concat()),
        "payload1": hex(&payload1),
        "aead": algorithm.to_u8(),
        "datagram1": hex(&d1),
        "datagram2": hex(&d2),
        "datagram3": hex(&d3),
        "handshake_hash": hex(&hash),
        "i2r_secret": hex(&i2r),
        "r2i_secret": hex(&r2i),
    })
}

/// The key schedule of 4.4 from `secret`.
fn key_schedule(secret: [u8; 32]) -> Value {
    let expand = |prk: &[u8; 32], info: &[u8]| {
        let prk = ring::hkdf::Prk::new_less_safe(ring::hkdf::HKDF_SHA256, prk);
        *crate::crypto::keys::expand_32(&prk, info)
    };
    let key_0 = expand(&secret, b"stt v1 key");
    let secret_1 = expand(&secret, b"stt v1 key update");
    let key_1 = expand(&secret_1, b"stt v1 key");
    json!({ "secret_0": hex(&secret), "key_0": hex(&key_0), "secret_1": hex(&secret_1), "key_1": hex(&key_1) })
}

/// Sealed frames under both AEADs, each opened again by a receiver.
fn sealed_frames() -> Vec<Value> {
    let secret = [0x03u8; 32];
    let mut out = Vec::new();
    for alg in [Algorithm::ChaCha20Poly1305, Algorithm::Aes256Gcm] {
        let mut send = SendKeys::new(alg, &secret);
        let mut recv = RecvKeys::new(alg, &secret);
        let fragment = FragmentHeader {
            message_id: 9,
            total_len: 2000,
            index: 1,
            chunk_len: 1000,
            inner_type: 0x01,
        };
        let frames: Vec<(&str, FrameType, u32, Vec<u8>)> = vec![
            ("data", FrameType::Data, 0, b"hello".to_vec()),
            ("data_empty", FrameType::Data, 7, Vec::new()),
            (
                "application_0x80",
                FrameType::Application(0x80),
                3,
                b"app".to_vec(),
            ),
            (
                "control_ping",
                FrameType::Control,
                0,
                control(Control::Ping { token: 1_000_000 }),
            ),
            (
                "control_pong",
                FrameType::Control,
                0,
                control(Control::Pong { token: 42 }),
            ),
            (
                "control_close",
                FrameType::Control,
                0,
                control(Control::Close {
                    code: 8,
                    reason: "revoked".into(),
                }),
            ),
            (
                "control_rekey_request",
                FrameType::Control,
                0,
                control(Control::RekeyRequest {
                    seq: 1,
                    ephemeral: [0x33; 32],
                }),
            ),
            (
                "control_path_challenge",
                FrameType::Control,
                0,
                control(Control::PathChallenge { data: [7; 8] }),
            ),
            (
                "stream_fragment",
                FrameType::Stream,
                5,
                [&fragment.encode()[..], &[0xEE; 1000]].concat(),
            ),
        ];
        for (name, frame_type, stream_id, plaintext) in frames {
            out.push(seal_one(
                &mut send, &mut recv, alg, name, frame_type, stream_id, &plaintext,
            ));
        }
        // Generation 1: the key phase bit set, the next key.
        send.request_update();
        let v = seal_one(
            &mut send,
            &mut recv,
            alg,
            "data_generation_1",
            FrameType::Data,
            0,
            b"after update",
        );
        assert_eq!(send.generation(), 1);
        out.push(v);
    }
    out
}

fn control(c: Control) -> Vec<u8> {
    let mut v = Vec::new();
    c.encode(&mut v);
    v
}

fn seal_one(
    send: &mut SendKeys,
    recv: &mut RecvKeys,
    alg: Algorithm,
    name: &str,
    frame_type: FrameType,
    stream_id: u32,
    plaintext: &[u8],
) -> Value {
    let mut frame = vec![0u8; HEADER_LEN];
    frame.extend_from_slice(plaintext);
    let header = Header {
        frame_type,
        flags: Flags::EMPTY,
        session_id: SESSION,
        stream_id,
        packet_number: 0,
        payload_len: 0,
    };
    let pn = send.seal(&mut frame, 0, header).expect("seal");
    let mut copy = frame.clone();
    let (decoded, _) = Header::decode(&copy).map(|h| (h, ())).expect("header");
    let head: [u8; HEADER_LEN] = copy[..HEADER_LEN].try_into().expect("header bytes");
    let opened = recv
        .open(&decoded, &head, &mut copy[HEADER_LEN..])
        .expect("this crate opens what it sealed");
    assert_eq!(opened, plaintext);
    json!({
        "name": name,
        "aead": alg.to_u8(),
        "secret": hex(&[0x03; 32]),
        "generation": send.generation(),
        "packet_number": pn,
        "frame_type": frame_type.to_u8(),
        "stream_id": stream_id,
        "plaintext": hex(plaintext),
        "frame": hex(&frame),
    })
}

/// Tokens and the token handshake's extras (ticket, refusal, challenge).
fn tokens() -> (Value, Value) {
    let network = NetworkKey::from_seed(&[0x07; 32]).expect("seed");
    let derived = IssuingKey::from_network(&network);
    let issuing = IssuingKey::from_bytes([0x05; 32]);
    let request = TokenRequest::new(7, ["eu-1", "ws://game.example:8081/"])
        .with_lifetime(std::time::Duration::from_secs(600))
        .with_data(b"role=player".to_vec());
    let token = Issuer::new(issuing.clone())
        .issue_at(&request, TIMESTAMP - 10, [0x0a; 16], [0x0c; 32])
        .expect("issue");
    let text = token.encode();
    assert_eq!(ConnectToken::parse(&text).expect("parse"), token);
    let mut ticket_part = (token.ticket().len() as u16).to_be_bytes().to_vec();
    ticket_part.extend_from_slice(token.ticket());
    let psk = NetworkKey::from_client_key(&[0x0c; 32]);
    let hs = handshake(&psk, &ticket_part, Algorithm::ChaCha20Poly1305);
    let d1 = decode_hex(hs["datagram1"].as_str().expect("hex"));
    // A server with the key admits it (at the vector's time) and refuses it
    // for another audience.
    let gate = TokenGate::new(&TokenConfig::with_key(issuing.clone(), ["eu-1"]), None);
    match gate.check(&d1, TIMESTAMP) {
        GateResult::Admit(a) => assert_eq!(a.client.client_id, 7),
        other => panic!("the token message 1 is admitted: {other:?}"),
    }
    let elsewhere = TokenGate::new(&TokenConfig::with_key(issuing.clone(), ["us-2"]), None);
    assert!(matches!(
        elsewhere.check(&d1, TIMESTAMP),
        GateResult::Refuse(..)
    ));
    let mac = ChallengeKey::new(&psk);
    let refusal = cookie::refusal(SESSION, 3, &mac, &d1);
    let addr: std::net::SocketAddr = "127.0.0.1:4000".parse().expect("address");
    let challenge = CookieKey::from_secret(&[0x0d; 32]).challenge(1, SESSION, addr, &mac, &d1);
    let echo = cookie::echo(
        SESSION,
        challenge[HEADER_LEN..HEADER_LEN + 16]
            .try_into()
            .expect("cookie"),
        &d1,
    );
    let token_vector = json!({
        "issuing_key": hex(&[0x05; 32]),
        "key_id": format!("{:08x}", issuing.key_id()),
        "shared_seed": hex(&[0x07; 32]),
        "derived_issuing_key_id": format!("{:08x}", derived.key_id()),
        "client_id": 7,
        "issued_at": TIMESTAMP - 10,
        "expires_at": TIMESTAMP + 590,
        "audience": ["eu-1", "ws://game.example:8081/"],
        "data": hex(b"role=player"),
        "salt": hex(&[0x0a; 16]),
        "client_key": hex(&[0x0c; 32]),
        "ticket": hex(token.ticket()),
        "token_bytes": hex(&token.to_bytes()),
        "token_text": text.as_str(),
    });
    let extras = json!({
        "handshake": hs,
        "refusal_wrong_audience": hex(&refusal),
        "challenge_key": "HKDF-SHA256(salt \"stt v2 cookie challenge\", IKM client_key, info \"challenge mac\")",
        "cookie_challenge": hex(&challenge),
        "cookie_echo": hex(&echo),
    });
    (token_vector, extras)
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Replay window decisions (6.5) for a sequence of packet numbers.
fn replay_window() -> Value {
    let mut w = crate::crypto::replay::ReplayWindow::new();
    let sequence = [5u64, 3, 5, 2000, 16, 17, 3000, 1016, 1017, 1016, 4000, 2017];
    let results: Vec<Value> = sequence
        .iter()
        .map(|&pn| {
            let r = w.accept(pn);
            json!({ "pn": pn, "result": match r {
                Ok(()) => "accepted",
                Err(ReplayError::Duplicate(_)) => "duplicate",
                Err(ReplayError::TooOld(_)) => "too_old",
                #[allow(unreachable_patterns)]
                Err(_) => "other",
            }})
        })
        .collect();
    json!(results)
}

fn all() -> Value {
    let member = handshake(
        &NetworkKey::from_seed(&[0x07; 32]).expect("seed"),
        &[],
        Algorithm::ChaCha20Poly1305,
    );
    let (token, token_handshake) = tokens();
    json!({
        "about": "stt test vectors (docs/PROTOCOL.md). Generated by `STT_WRITE_VECTORS=1 cargo test --lib vectors`; checked by `cargo test` and by clients/js. Byte strings are lowercase hex.",
        "key_schedule": [key_schedule([0x03; 32]), key_schedule([0x04; 32])],
        "member_handshake": member,
        "sealed_frames": sealed_frames(),
        "token": token,
        "token_handshake": token_handshake,
        "replay_window": replay_window(),
    })
}

#[test]
fn the_vector_file_is_what_the_code_computes() {
    let computed = serde_json::to_string_pretty(&all()).expect("json") + "\n";
    if std::env::var_os("STT_WRITE_VECTORS").is_some() {
        std::fs::write(PATH, &computed).expect("writing testdata/vectors.json");
        return;
    }
    let on_disk = std::fs::read_to_string(PATH).expect("testdata/vectors.json exists");
    assert!(
        on_disk == computed,
        "testdata/vectors.json differs from what the code computes: the wire format changed. Rewrite it with STT_WRITE_VECTORS=1 cargo test --lib vectors, and update docs/PROTOCOL.md and clients/js if the change is intended"
    );
}
