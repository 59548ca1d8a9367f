//! Tests of the handshake, the message-1 check and the replay cache.

use super::*;
use std::time::{Duration, Instant};

fn node(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32]).unwrap()
}

fn net(seed: u8) -> NetworkKey {
    NetworkKey::from_seed(&[seed; 32]).unwrap()
}

fn run(
    i_net: &NetworkKey,
    r_net: &NetworkKey,
    i_pref: AeadPreference,
    r_pref: AeadPreference,
) -> Result<(HandshakeOutcome, HandshakeOutcome), HandshakeError> {
    let (a, b) = (node(1), node(2));
    let hdr = [7u8; 29];
    let (mut hi, m1) = Handshake::initiate(&a, i_net, i_pref, &hdr)?;
    assert_eq!(m1.len(), MSG1_LEN);
    let (mut hr, m2) = Handshake::respond(&b, r_net, r_pref, &hdr, &m1)?;
    assert_eq!(m2.len(), MSG2_LEN);
    let (m3, oi) = hi.finish_initiator(&m2)?;
    assert_eq!(m3.len(), MSG3_LEN);
    let or = hr.finish_responder(&m3)?;
    Ok((oi, or))
}

#[test]
fn msg1_check_agrees_with_the_handshake() {
    let check = Msg1Check::new(&net(5));
    for round in 0..4u8 {
        let hdr = [round; 29];
        let (_, m1) = Handshake::initiate(&node(1), &net(5), AeadPreference::Auto, &hdr).unwrap();
        assert!(check.verify(&hdr, &m1), "a genuine message 1");
        assert!(Handshake::respond(&node(2), &net(5), AeadPreference::Auto, &hdr, &m1).is_ok());
        // Another network's message 1.
        let (_, other) =
            Handshake::initiate(&node(1), &net(6), AeadPreference::Auto, &hdr).unwrap();
        assert!(!check.verify(&hdr, &other));
        // Any bit of the message or of its header (the prologue).
        for i in 0..m1.len() {
            let mut bent = m1.clone();
            bent[i] ^= 1 << (i % 8);
            assert!(!check.verify(&hdr, &bent), "byte {i} of message 1");
            let snow = Handshake::respond(&node(2), &net(5), AeadPreference::Auto, &hdr, &bent);
            assert!(snow.is_err(), "snow agrees on byte {i}");
        }
        for i in 0..hdr.len() {
            let mut bent = hdr;
            bent[i] ^= 0x80;
            assert!(!check.verify(&bent, &m1), "byte {i} of the header");
        }
        assert!(!check.verify(&hdr, &m1[..MSG1_LEN - 1]));
        assert!(!check.verify(&hdr, &[0u8; MSG1_LEN]));
    }
}

#[test]
fn full_handshake_agrees_on_keys_and_identities() {
    let (i, r) = run(&net(5), &net(5), AeadPreference::Auto, AeadPreference::Auto).unwrap();
    assert_eq!(*i.send_secret, *r.recv_secret);
    assert_eq!(*i.recv_secret, *r.send_secret);
    assert_ne!(*i.send_secret, *i.recv_secret);
    assert_eq!(i.peer, node(2).node_id());
    assert_eq!(r.peer, node(1).node_id());
    assert_eq!(i.algorithm, r.algorithm);
    let expected = if hardware_aes() {
        Algorithm::Aes256Gcm
    } else {
        Algorithm::ChaCha20Poly1305
    };
    assert_eq!(i.algorithm, expected);
}

#[test]
fn wrong_shared_seed_is_refused_at_message_one() {
    let (a, b) = (node(1), node(2));
    let hdr = [0u8; 29];
    let (_, m1) = Handshake::initiate(&a, &net(5), AeadPreference::Auto, &hdr).unwrap();
    let e = Handshake::respond(&b, &net(6), AeadPreference::Auto, &hdr, &m1).unwrap_err();
    assert_eq!(e, HandshakeError::Authentication);
}

#[test]
fn prologue_binds_the_first_header() {
    let (a, b) = (node(1), node(2));
    let (_, m1) = Handshake::initiate(&a, &net(5), AeadPreference::Auto, &[0u8; 29]).unwrap();
    let e = Handshake::respond(&b, &net(5), AeadPreference::Auto, &[1u8; 29], &m1).unwrap_err();
    assert_eq!(e, HandshakeError::Authentication);
}

#[test]
fn explicit_preferences() {
    use AeadPreference::*;
    for (ip, rp, want) in [
        (ChaCha20Poly1305, Auto, Algorithm::ChaCha20Poly1305),
        (Aes256Gcm, Auto, Algorithm::Aes256Gcm),
        (Auto, ChaCha20Poly1305, Algorithm::ChaCha20Poly1305),
        (Aes256Gcm, ChaCha20Poly1305, Algorithm::ChaCha20Poly1305),
    ] {
        let (i, r) = run(&net(1), &net(1), ip, rp).unwrap();
        assert_eq!((i.algorithm, r.algorithm), (want, want), "{ip:?} {rp:?}");
    }
}

#[test]
fn first_message_outweighs_the_answer() {
    // Anti-amplification: message 1 >= message 2.
    const { assert!(MSG1_LEN >= MSG2_LEN) };
}

#[test]
fn tampered_messages_fail() {
    let (a, b) = (node(1), node(2));
    let hdr = [0u8; 29];
    for pos in [0usize, 40, MSG1_LEN - 1] {
        let (_, mut m1) = Handshake::initiate(&a, &net(5), AeadPreference::Auto, &hdr).unwrap();
        m1[pos] ^= 1;
        assert!(Handshake::respond(&b, &net(5), AeadPreference::Auto, &hdr, &m1).is_err());
    }
    let (mut hi, m1) = Handshake::initiate(&a, &net(5), AeadPreference::Auto, &hdr).unwrap();
    let (mut hr, m2) = Handshake::respond(&b, &net(5), AeadPreference::Auto, &hdr, &m1).unwrap();
    let mut bad = m2.clone();
    bad[50] ^= 1;
    assert_eq!(
        hi.finish_initiator(&bad).unwrap_err(),
        HandshakeError::Authentication
    );
    // The forged message did not break the handshake: the genuine one
    // still completes it.
    let (m3, oi) = hi.finish_initiator(&m2).unwrap();
    let mut bad = m3.clone();
    bad[10] ^= 1;
    assert_eq!(
        hr.finish_responder(&bad).unwrap_err(),
        HandshakeError::Authentication
    );
    let or = hr.finish_responder(&m3).unwrap();
    assert_eq!(*oi.send_secret, *or.recv_secret);
    // Finished handshakes take no more messages.
    assert!(hr.finish_responder(&m3).is_err());
    assert!(hi.finish_initiator(&m2).is_err());
}

/// Message 1 datagram (header and Noise part) made at `unix_secs`.
fn msg1_at(unix_secs: u64) -> Vec<u8> {
    let hdr = [3u8; crate::frame::HEADER_LEN];
    let (_, m1) =
        Handshake::initiate_at(&node(1), &net(5), AeadPreference::Auto, &hdr, unix_secs).unwrap();
    let mut d = hdr.to_vec();
    d.extend_from_slice(&m1);
    d
}

#[test]
fn message_one_carries_a_checked_timestamp() {
    let t = 1_800_000_000;
    let d = msg1_at(t);
    let (hdr, m1) = d.split_at(crate::frame::HEADER_LEN);
    let check = Msg1Check::new(&net(5));
    let info = check.open(hdr, m1).unwrap();
    assert_eq!((info.timestamp, info.version), (t, HANDSHAKE_VERSION));
    assert_eq!(info.ephemeral[..], m1[..32]);
    let respond =
        |now| Handshake::respond_at(&node(2), &net(5), AeadPreference::Auto, hdr, m1, now);
    let w = MSG1_TIME_WINDOW.as_secs();
    assert!(respond(t + w).is_ok());
    assert!(respond(t - w).is_ok());
    assert_eq!(
        respond(t + w + 1).unwrap_err(),
        HandshakeError::StaleTimestamp {
            skew_secs: -(w as i64) - 1
        }
    );
    assert_eq!(
        respond(t - w - 1).unwrap_err(),
        HandshakeError::StaleTimestamp {
            skew_secs: w as i64 + 1
        }
    );
    let now = Instant::now();
    assert_eq!(
        check.admit_fresh_at(&d, now, t + 3600),
        Err(Msg1Error::Stale { skew_secs: -3600 })
    );
    // The timestamp is authenticated: changing it breaks the tag.
    let mut bent = d.clone();
    bent[crate::frame::HEADER_LEN + 32 + TIMESTAMP_AT + 7] ^= 1;
    assert_eq!(
        check.admit_fresh_at(&bent, now, t),
        Err(Msg1Error::NotGenuine)
    );
}

#[test]
fn a_message_one_makes_state_once_per_node() {
    let t = 1_800_000_000;
    let check = Msg1Check::new(&net(5));
    let now = Instant::now();
    let d = msg1_at(t);
    assert!(check.admit_fresh_at(&d, now, t).is_ok());
    // The same message 1 again, later but within its window: replayed.
    assert_eq!(
        check.admit_fresh_at(&d, now + Duration::from_secs(50), t + 50),
        Err(Msg1Error::Replayed)
    );
    // Another message 1 is fine.
    assert!(check.admit_fresh_at(&msg1_at(t), now, t).is_ok());
    // Once its timestamp can no longer pass, the cache may forget it.
    let later = now + MSG1_REPLAY_RETENTION;
    assert_eq!(
        check.admit_fresh_at(&d, later, t + MSG1_REPLAY_RETENTION.as_secs()),
        Err(Msg1Error::Stale {
            skew_secs: -(MSG1_REPLAY_RETENTION.as_secs() as i64)
        })
    );
    const { assert!(MSG1_REPLAY_RETENTION.as_secs() >= 2 * MSG1_TIME_WINDOW.as_secs()) };
}

#[test]
fn replay_cache_is_bounded_and_expires() {
    let mut cache = Msg1ReplayCache::new(3, Duration::from_secs(10));
    let now = Instant::now();
    for i in 0..3u8 {
        cache.insert(&[i; 32], now).unwrap();
    }
    assert_eq!(cache.insert(&[0; 32], now), Err(Msg1Error::Replayed));
    assert_eq!(cache.insert(&[9; 32], now), Err(Msg1Error::CacheFull));
    assert_eq!(cache.len(), 3);
    let later = now + Duration::from_secs(10);
    cache.insert(&[9; 32], later).unwrap();
    assert_eq!(cache.len(), 1, "expired keys are gone");
    cache.insert(&[0; 32], later).unwrap();
}

#[test]
fn forged_message_threes_cannot_break_a_genuine_handshake() {
    let (a, b) = (node(1), node(2));
    let hdr = [0u8; 29];
    let (mut hi, m1) = Handshake::initiate(&a, &net(5), AeadPreference::Auto, &hdr).unwrap();
    let (mut hr, m2) = Handshake::respond(&b, &net(5), AeadPreference::Auto, &hdr, &m1).unwrap();
    let (m3, oi) = hi.finish_initiator(&m2).unwrap();
    let t0 = Instant::now();
    hr.refill(t0);
    // An on-path forger copies message 3 and bends its tag, many times.
    for i in 0..3 * MAX_REBUILDS as usize {
        let mut bad = m3.clone();
        bad[MSG3_LEN - 1 - i % 16] ^= 1;
        hr.refill(t0);
        assert!(hr.finish_responder(&bad).is_err(), "forgery {i}");
    }
    // Out of rebuilds: the genuine copy waits, the state is intact.
    assert_eq!(
        hr.finish_responder(&m3).unwrap_err(),
        HandshakeError::RebuildsExhausted
    );
    hr.refill(t0 + REBUILD_REFILL);
    let or = hr.finish_responder(&m3).unwrap();
    assert_eq!(*oi.send_secret, *or.recv_secret);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `docs/PROTOCOL.md`, appendix A.2 and A.3: recomputed here with fixed
/// ephemeral keys and timestamp (run with `--nocapture` to print them);
/// the digests below pin the values printed in the document.
#[test]
fn appendix_a_vectors() {
    use crate::crypto::aead::SendKeys;
    use crate::frame::{Control, Flags, FrameType, Header, SessionId, HEADER_LEN};
    let network = net(7);
    let (i, r) = (node(1), node(2));
    let id = SessionId(0x0123_4567_89ab_cdef);
    let hs = |pn: u64, len: usize| Header {
        frame_type: FrameType::Handshake,
        flags: Flags::EMPTY,
        session_id: id,
        stream_id: 0,
        packet_number: pn,
        payload_len: len as u32,
    };
    let h1 = hs(1, MSG1_LEN).to_bytes();
    let timestamp: u64 = 1_800_000_000;
    let mut si = build(&i, &network, &h1, true, &[0x11; 32]).unwrap();
    let mut sr = build(&r, &network, &h1, false, &[0x22; 32]).unwrap();
    let mut payload1 = [0u8; MSG1_PAYLOAD_LEN];
    payload1[0] = HANDSHAKE_VERSION;
    payload1[1] = CAP_PREFER_CHACHA;
    payload1[TIMESTAMP_AT..TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_be_bytes());
    let mut m1 = vec![0u8; MSG1_LEN];
    si.write_message(&payload1, &mut m1).unwrap();
    let mut scratch = [0u8; 256];
    sr.read_message(&m1, &mut scratch).unwrap();
    let mut m2 = vec![0u8; MSG2_LEN];
    sr.write_message(&[Algorithm::ChaCha20Poly1305.to_u8()], &mut m2)
        .unwrap();
    si.read_message(&m2, &mut scratch).unwrap();
    let mut m3 = vec![0u8; MSG3_LEN];
    si.write_message(&[], &mut m3).unwrap();
    sr.read_message(&m3, &mut scratch).unwrap();
    let hash = si.get_handshake_hash().to_vec();
    let (i2r, r2i) = si.dangerously_get_raw_split();
    let d1 = [&h1[..], &m1].concat();
    let d2 = [&hs(2, MSG2_LEN).to_bytes()[..], &m2].concat();
    let d3 = [&hs(3, MSG3_LEN).to_bytes()[..], &m3].concat();
    // stt's own responder accepts datagram 1 at that time.
    assert!(Handshake::respond_at(&r, &network, AeadPreference::Auto, &h1, &m1, timestamp).is_ok());
    let control = |secret: &[u8; 32], c: Control| {
        let mut keys = SendKeys::new(Algorithm::ChaCha20Poly1305, secret);
        let mut out = vec![0u8; HEADER_LEN];
        c.encode(&mut out);
        let header = Header {
            frame_type: FrameType::Control,
            flags: Flags::EMPTY,
            session_id: id,
            stream_id: 0,
            packet_number: 0,
            payload_len: 0,
        };
        keys.seal(&mut out, 0, header).unwrap();
        out
    };
    let ping = control(&r2i, Control::Ping { token: 1_000_000 });
    let close = control(
        &i2r,
        Control::Close {
            code: 0,
            reason: "bye".into(),
        },
    );
    let lines = [
        format!("psk {}", hex(network.psk())),
        format!("payload1 {}", hex(&payload1)),
        format!("datagram1 {}", hex(&d1)),
        format!("datagram2 {}", hex(&d2)),
        format!("datagram3 {}", hex(&d3)),
        format!("h {}", hex(&hash)),
        format!("i2r {}", hex(&i2r)),
        format!("r2i {}", hex(&r2i)),
        format!("ping {}", hex(&ping)),
        format!("close {}", hex(&close)),
    ];
    for l in &lines {
        println!("{l}");
    }
    // The stretched network key of shared seed [7; 32]: A.2.
    assert_eq!(
        hex(network.psk()),
        "95606912f5dcbc535e41991580f6989ac95a7e04194daa77ffe961da574598fc"
    );
    assert_eq!(
        hex(&hash),
        "ac4e1443f958e2d8761f658c8f08d16cde7e2783613571b502ce33dc938c8084"
    );
}

#[test]
fn wrong_lengths_are_typed_errors() {
    let b = node(2);
    let e =
        Handshake::respond(&b, &net(5), AeadPreference::Auto, &[0; 29], &[0u8; 10]).unwrap_err();
    assert!(matches!(e, HandshakeError::BadLength { position: 1, .. }));
}
