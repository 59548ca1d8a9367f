//! Tests of the AEAD keys: sealing and opening, key updates, their limits.

use super::*;
use crate::frame::{Frame, FrameType, SessionId};

fn header() -> Header {
    Header {
        frame_type: FrameType::Data,
        flags: Flags::EMPTY,
        session_id: SessionId(42),
        stream_id: 7,
        packet_number: 0,
        payload_len: 0,
    }
}

fn seal(keys: &mut SendKeys, msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(msg);
    keys.seal(&mut out, 0, header()).unwrap();
    out
}

fn open(keys: &mut RecvKeys, datagram: &mut [u8]) -> Result<Vec<u8>, CryptoError> {
    let (frame, _) = Frame::decode(datagram).unwrap();
    let (h, hb) = (frame.header, *frame.header_bytes);
    let plain = keys.open(&h, &hb, &mut datagram[HEADER_LEN..])?;
    Ok(plain.to_vec())
}

fn pair(alg: Algorithm) -> (SendKeys, RecvKeys) {
    (
        SendKeys::new(alg, &[3u8; 32]),
        RecvKeys::new(alg, &[3u8; 32]),
    )
}

const ALGS: [Algorithm; 2] = [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305];

#[test]
fn seal_open_round_trip_both_algorithms() {
    for alg in ALGS {
        let (mut s, mut r) = pair(alg);
        for i in 0..100u32 {
            let msg = vec![i as u8; i as usize];
            let mut d = seal(&mut s, &msg);
            assert_eq!(d.len(), HEADER_LEN + msg.len() + TAG_LEN);
            assert_eq!(open(&mut r, &mut d).unwrap(), msg);
        }
    }
}

#[test]
fn tampering_anywhere_fails() {
    for alg in ALGS {
        let (mut s, _) = pair(alg);
        let d = seal(&mut s, b"attack at dawn");
        // Every byte after the fixed magic/version/type that decode checks:
        // flip one bit, the frame must not open.
        for i in 0..d.len() {
            let mut t = d.clone();
            t[i] ^= 0x04;
            let Ok((frame, _)) = Frame::decode(&t) else {
                continue;
            };
            let (h, hb) = (frame.header, *frame.header_bytes);
            let mut r = RecvKeys::new(alg, &[3u8; 32]);
            let res = r.open(&h, &hb, &mut t[HEADER_LEN..]);
            assert!(res.is_err(), "byte {i} flipped still opened");
        }
    }
}

#[test]
fn wrong_key_fails_and_counts() {
    let mut s = SendKeys::new(Algorithm::Aes256Gcm, &[1u8; 32]);
    let mut r = RecvKeys::new(Algorithm::Aes256Gcm, &[2u8; 32]);
    let mut d = seal(&mut s, b"x");
    assert_eq!(open(&mut r, &mut d), Err(CryptoError::Authentication));
    assert_eq!(r.failures(), 1);
}

#[test]
fn replays_and_too_old_are_refused() {
    let (mut s, mut r) = pair(Algorithm::ChaCha20Poly1305);
    let first = seal(&mut s, b"first");
    let mut d = first.clone();
    open(&mut r, &mut d).unwrap();
    let mut again = first.clone();
    assert!(matches!(
        open(&mut r, &mut again),
        Err(CryptoError::Replay(ReplayError::Duplicate(0)))
    ));
    // Reordering inside the window is fine.
    let later: Vec<_> = (0..3000).map(|_| seal(&mut s, b"m")).collect();
    let mut last = later[2999].clone();
    open(&mut r, &mut last).unwrap();
    let mut mid = later[2500].clone();
    open(&mut r, &mut mid).unwrap();
    let mut old = later[10].clone();
    assert!(matches!(
        open(&mut r, &mut old),
        Err(CryptoError::Replay(ReplayError::TooOld(_)))
    ));
}

#[test]
fn key_update_with_reordering_across_it() {
    for alg in ALGS {
        let (mut s, mut r) = pair(alg);
        s.set_update_interval(10);
        // The peer confirms each update at once here.
        let frames: Vec<_> = (0..45u8)
            .map(|i| {
                let f = seal(&mut s, &[i]);
                s.confirm_update();
                f
            })
            .collect();
        assert_eq!(s.generation(), 4);
        // Deliver with a swap across each generation boundary: 9 and 10,
        // 19 and 20, ...
        let mut order: Vec<usize> = (0..45).collect();
        for b in [10, 20, 30, 40] {
            order.swap(b - 1, b);
        }
        for i in order {
            let mut d = frames[i].clone();
            assert_eq!(
                open(&mut r, &mut d).unwrap(),
                vec![i as u8],
                "{alg} frame {i}"
            );
        }
        assert_eq!(r.generation(), 4);
    }
}

#[test]
fn requested_update_changes_the_key() {
    let (mut s, mut r) = pair(Algorithm::Aes256Gcm);
    let mut a = seal(&mut s, b"a");
    s.request_update();
    let mut b = seal(&mut s, b"b");
    assert_eq!(s.generation(), 1);
    assert_ne!(a[4] & 1, b[4] & 1, "key phase flips");
    assert_eq!(open(&mut r, &mut a).unwrap(), b"a");
    assert_eq!(open(&mut r, &mut b).unwrap(), b"b");
}

#[test]
fn no_second_update_before_the_first_is_confirmed() {
    let (mut s, _) = pair(Algorithm::Aes256Gcm);
    s.set_update_interval(1);
    for _ in 0..3 {
        seal(&mut s, b"x");
    }
    assert_eq!(s.generation(), 1, "updates wait for confirmation");
    assert!(s.awaiting_confirmation());
    s.confirm_update();
    seal(&mut s, b"x");
    assert_eq!(s.generation(), 2);
    s.request_update();
    seal(&mut s, b"x");
    assert_eq!(s.generation(), 2, "a request waits too");
    s.confirm_update();
    seal(&mut s, b"x");
    assert_eq!(s.generation(), 3, "and is served once confirmed");
}

#[test]
fn an_unconfirmed_update_stops_sealing_at_the_limit() {
    let (mut s, _) = pair(Algorithm::Aes256Gcm);
    s.set_update_interval(10);
    for _ in 0..10 {
        seal(&mut s, b"x");
    }
    // Packet 11 starts generation 1; its update is never confirmed. A
    // short interval makes updates frequent, not the budget smaller.
    for _ in 0..100 {
        seal(&mut s, b"x");
    }
    assert_eq!(s.generation(), 1);
    // The key has sealed all the AEAD allows.
    s.sealed_in_generation = Algorithm::Aes256Gcm.confidentiality_limit();
    let mut out = vec![0u8; HEADER_LEN];
    out.push(0);
    assert_eq!(
        s.seal(&mut out, 0, header()),
        Err(CryptoError::KeyExhausted),
        "the confidentiality limit under one key, unconfirmed: stop"
    );
    // A confirmation lets the next update happen, and sealing resume.
    s.confirm_update();
    seal(&mut s, b"x");
    assert_eq!(s.generation(), 2);
}

#[test]
fn bytes_count_as_well_as_packets() {
    let (mut s, mut r) = pair(Algorithm::Aes256Gcm);
    s.set_update_bytes(10_000);
    let big = vec![7u8; 6_000];
    let mut a = seal(&mut s, &big);
    let mut b = seal(&mut s, &big);
    assert_eq!(
        s.generation(),
        0,
        "12 kB sealed, packet count far from any limit"
    );
    let mut c = seal(&mut s, &big);
    assert_eq!(s.generation(), 1, "the byte budget triggered the update");
    for d in [&mut a, &mut b, &mut c] {
        open(&mut r, d).unwrap();
    }
    // Unconfirmed, the key seals up to the AEAD's byte budget, not a
    // byte more.
    let budget = Algorithm::Aes256Gcm.confidentiality_bytes();
    s.bytes_in_generation = budget - (big.len() + TAG_LEN) as u64;
    let mut d = seal(&mut s, &big);
    open(&mut r, &mut d).unwrap();
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(&big);
    assert_eq!(
        s.seal(&mut out, 0, header()),
        Err(CryptoError::KeyExhausted)
    );
}

#[test]
fn the_update_interval_is_clamped_to_the_aead_limit() {
    let (mut s, _) = pair(Algorithm::Aes256Gcm);
    s.set_update_interval(u64::MAX);
    s.sealed_in_generation = Algorithm::Aes256Gcm.update_interval();
    seal(&mut s, b"x");
    assert_eq!(
        s.generation(),
        1,
        "updated at 2^22 packets despite u64::MAX"
    );
    const {
        assert!(Algorithm::Aes256Gcm.update_interval() * 2 <= 1 << 23);
        assert!(Algorithm::Aes256Gcm.confidentiality_bytes() == 1 << 37);
    }
}

#[test]
fn a_held_sender_does_not_update_and_a_rekey_changes_the_next_key() {
    let (mut s, mut r) = pair(Algorithm::Aes256Gcm);
    s.set_update_interval(2);
    s.set_held(true);
    s.request_update();
    for _ in 0..10 {
        let mut d = seal(&mut s, b"held");
        open(&mut r, &mut d).unwrap();
    }
    assert_eq!(s.generation(), 0, "no update while held");
    let ratchet_only = s.next_secret_for_test();
    s.rekey_next(&[9u8; 32]);
    r.rekey_next(&[9u8; 32]);
    assert_ne!(s.next_secret_for_test(), ratchet_only);
    s.set_held(false);
    let mut d = seal(&mut s, b"rekeyed");
    assert_eq!(s.generation(), 1);
    assert_ne!(s.secret_for_test(), ratchet_only);
    // A receiver that only ratcheted cannot open it; the rekeyed one can.
    let mut plain = RecvKeys::new(Algorithm::Aes256Gcm, &[3u8; 32]);
    assert_eq!(
        open(&mut plain, &mut d.clone()),
        Err(CryptoError::Authentication)
    );
    assert_eq!(open(&mut r, &mut d).unwrap(), b"rekeyed");
    assert_eq!(r.secret_for_test(), s.secret_for_test());
}

#[test]
fn the_previous_key_can_be_dropped() {
    let (mut s, mut r) = pair(Algorithm::ChaCha20Poly1305);
    let mut old = seal(&mut s, b"old");
    s.request_update();
    let mut new = seal(&mut s, b"new");
    open(&mut r, &mut new).unwrap();
    assert!(r.has_previous());
    let mut late = old.clone();
    r.discard_previous();
    assert!(open(&mut r, &mut late).is_err(), "no key for it any more");
    let _ = &mut old;
}

#[test]
fn packet_numbers_never_repeat_and_stop_at_the_limit() {
    let (mut s, _) = pair(Algorithm::Aes256Gcm);
    s.next_pn = MAX_PACKET_NUMBER;
    seal(&mut s, b"last");
    let mut out = vec![0u8; HEADER_LEN];
    assert_eq!(
        s.seal(&mut out, 0, header()),
        Err(CryptoError::PacketNumbersExhausted)
    );
}

#[test]
fn hardware_detection_runs() {
    // Only that it answers; the value depends on the CPU.
    let _ = hardware_aes();
}
