//! The protocol layers end to end, sans-IO: two sessions over a simulated
//! link with virtual time (no sockets, no sleeping; every run repeats).

mod support;

use std::time::Duration;

use proptest::prelude::*;
use stt::crypto::{AeadPreference, Algorithm, CryptoError, HandshakeError, ReplayError};
use stt::frame::{close_code, FrameType, HEADER_LEN, TAG_LEN};
use stt::session::{
    CloseReason, Event, SessionConfig, SessionError, SessionState, Transmits, FRAGMENT_OVERHEAD,
};
use support::{identity, LinkConfig, Pair, Rng, Side};

fn udp(mtu: usize) -> SessionConfig {
    SessionConfig {
        max_datagram_size: Some(mtu),
        ..SessionConfig::default()
    }
}

fn established(events: &[Event]) -> Option<(stt::crypto::NodeId, Algorithm)> {
    events.iter().find_map(|e| match e {
        Event::Established { peer, algorithm } => Some((*peer, *algorithm)),
        _ => None,
    })
}

fn closed(events: &[Event]) -> Option<CloseReason> {
    events.iter().find_map(|e| match e {
        Event::Closed { reason } => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn handshake_establishes_both_sides_with_authenticated_ids() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 1);
    assert!(p.handshake(Duration::from_secs(1)));
    let (client_sees, alg_c) = established(&p.client_events).unwrap();
    let (server_sees, alg_s) = established(&p.server_events).unwrap();
    assert_eq!(client_sees, identity(2).node_id());
    assert_eq!(server_sees, identity(1).node_id());
    assert_eq!(alg_c, alg_s);
    // 1.5 round trips of 10 ms each way, plus the confirming ping.
    assert!(p.client.rtt().smoothed.unwrap() >= Duration::from_millis(20));
    assert_eq!(p.client.stats().retransmits, 0);
}

#[test]
fn both_aeads_work_end_to_end() {
    for (pref, alg) in [
        (AeadPreference::Aes256Gcm, Algorithm::Aes256Gcm),
        (
            AeadPreference::ChaCha20Poly1305,
            Algorithm::ChaCha20Poly1305,
        ),
    ] {
        let config = SessionConfig {
            aead: pref,
            ..SessionConfig::default()
        };
        let mut p = Pair::new(config, LinkConfig::default(), 2);
        assert!(p.handshake(Duration::from_secs(1)));
        assert_eq!(p.client.algorithm(), Some(alg));
        let mut out = Transmits::new();
        let now = p.now;
        p.client.send(now, 3, b"hello", &mut out).unwrap();
        p.transmit_all(Side::Client, &mut out);
        p.drive_for(Duration::from_millis(50));
        assert_eq!(
            Pair::messages(&p.server_events),
            vec![(3, b"hello".to_vec())]
        );
    }
}

#[test]
fn wrong_shared_seed_gets_no_session_and_a_handshake_timeout() {
    let mut p = Pair::with_networks(
        SessionConfig::default(),
        SessionConfig::default(),
        LinkConfig::default(),
        3,
        7,
        8,
    );
    p.drive_for(Duration::from_secs(15));
    assert!(p.server.is_none(), "the server kept no session");
    assert!(!p.server_errors.is_empty());
    assert!(p
        .server_errors
        .iter()
        .all(|e| *e == SessionError::Handshake(HandshakeError::Authentication)));
    // The server answered nothing at all.
    assert!(p.sent.iter().all(|(side, _)| *side == Side::Client));
    assert_eq!(p.client.state(), SessionState::Closed);
    assert_eq!(
        closed(&p.client_events),
        Some(CloseReason::HandshakeTimeout)
    );
    assert!(p.client.stats().retransmits >= 3);
}

#[test]
fn responder_never_sends_more_than_it_received_before_validation() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 4);
    // Drive only until message 2 exists.
    p.drive_until(p.now + Duration::from_secs(1), |p| p.server.is_some());
    let client_bytes: usize = p
        .sent
        .iter()
        .filter(|(s, _)| *s == Side::Client)
        .map(|(_, d)| d.len())
        .sum();
    p.collect();
    let server_bytes: usize = p
        .sent
        .iter()
        .filter(|(s, _)| *s == Side::Server)
        .map(|(_, d)| d.len())
        .sum();
    assert!(server_bytes > 0);
    assert!(
        server_bytes <= client_bytes,
        "{server_bytes} > {client_bytes}"
    );
}

#[test]
fn messages_both_ways_on_several_streams_and_types() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 5);
    assert!(p.handshake(Duration::from_secs(1)));
    let mut out = Transmits::new();
    let now = p.now;
    p.client.send(now, 1, b"one", &mut out).unwrap();
    p.client.send(now, 2, b"two", &mut out).unwrap();
    p.client
        .send_typed(now, FrameType::Application(0x90), 2, b"app", &mut out)
        .unwrap();
    p.transmit_all(Side::Client, &mut out);
    p.server().send(now, 9, b"back", &mut out).unwrap();
    p.transmit_all(Side::Server, &mut out);
    p.drive_for(Duration::from_millis(50));
    assert_eq!(
        Pair::messages(&p.server_events),
        vec![
            (1, b"one".to_vec()),
            (2, b"two".to_vec()),
            (2, b"app".to_vec())
        ]
    );
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::Message {
            frame_type: FrameType::Application(0x90),
            ..
        }
    )));
    assert_eq!(
        Pair::messages(&p.client_events),
        vec![(9, b"back".to_vec())]
    );
    // Control and handshake types do not carry messages.
    assert_eq!(
        p.client
            .send_typed(now, FrameType::Control, 0, b"x", &mut out),
        Err(SessionError::NotAMessageType(FrameType::Control))
    );
}

#[test]
fn sending_before_established_is_refused() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 6);
    let mut out = Transmits::new();
    let now = p.now;
    assert_eq!(
        p.client.send(now, 0, b"early", &mut out),
        Err(SessionError::NotEstablished(SessionState::Handshaking))
    );
    assert!(out.is_empty());
}

#[test]
fn mtu_math_is_exact_for_512_1472_and_jumbo() {
    for mtu in [512usize, 1472, 8972] {
        let mut p = Pair::new(
            udp(mtu),
            LinkConfig {
                max_datagram: mtu,
                ..LinkConfig::default()
            },
            7,
        );
        assert!(p.handshake(Duration::from_secs(1)));
        let mut out = Transmits::new();
        let now = p.now;
        // Largest single-frame message fills the datagram exactly.
        let single = mtu - HEADER_LEN - TAG_LEN;
        assert_eq!(p.client.max_unfragmented(), single);
        assert_eq!(
            p.client.send(now, 0, &vec![1u8; single], &mut out).unwrap(),
            1
        );
        assert_eq!(out.get(0).unwrap().len(), mtu);
        out.clear();
        // One byte more needs two fragments, each within the MTU.
        assert_eq!(
            p.client
                .send(now, 0, &vec![2u8; single + 1], &mut out)
                .unwrap(),
            2
        );
        out.clear();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let n = p.client.send(now, 0, &big, &mut out).unwrap();
        let chunk = mtu - FRAGMENT_OVERHEAD;
        assert_eq!(n, big.len().div_ceil(chunk));
        assert!(out.iter().all(|d| d.len() <= mtu));
        assert_eq!(
            out.get(0).unwrap().len(),
            mtu,
            "full fragments fill the MTU"
        );
        p.transmit_all(Side::Client, &mut out);
        p.drive_for(Duration::from_millis(100));
        assert_eq!(p.oversize_dropped, 0);
        assert!(
            p.sent.iter().all(|(_, d)| d.len() <= mtu),
            "handshake fits too"
        );
        let got = Pair::messages(&p.server_events);
        assert_eq!(got.len(), 1, "mtu {mtu}");
        assert_eq!(got[0].1, big);
    }
}

#[test]
fn five_mib_message_over_udp_mtu_and_over_a_stream_path() {
    let msg: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    for mtu in [Some(1472), None] {
        let config = SessionConfig {
            max_datagram_size: mtu,
            ..SessionConfig::default()
        };
        let mut p = Pair::new(config, LinkConfig::default(), 8);
        assert!(p.handshake(Duration::from_secs(1)));
        let mut out = Transmits::new();
        let now = p.now;
        let n = p.client.send(now, 4, &msg, &mut out).unwrap();
        if mtu.is_none() {
            assert_eq!(n, 1, "whole message in one frame on a stream path");
        }
        p.transmit_all(Side::Client, &mut out);
        p.drive_for(Duration::from_millis(100));
        let got = Pair::messages(&p.server_events);
        assert_eq!(got.len(), 1);
        assert!(got[0].1 == msg);
        assert_eq!(p.server().reassembly_bytes(), 0);
    }
}

#[test]
fn oversized_message_is_refused() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 9);
    assert!(p.handshake(Duration::from_secs(1)));
    let mut out = Transmits::new();
    let now = p.now;
    let max = SessionConfig::default().reassembly.max_message_size;
    assert!(matches!(
        p.client.send(now, 0, &vec![0u8; max + 1], &mut out),
        Err(SessionError::MessageTooLarge { .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn handshake_survives_loss_duplication_and_reordering() {
    let link = LinkConfig {
        latency: Duration::from_millis(50),
        jitter: Duration::from_millis(20),
        loss: 0.3,
        duplicate: 0.2,
        max_datagram: usize::MAX,
    };
    let mut ok = 0;
    for seed in 0..40 {
        let mut p = Pair::new(SessionConfig::default(), link, 100 + seed);
        if p.handshake(Duration::from_secs(9)) {
            ok += 1;
            assert_eq!(p.client.peer(), Some(identity(2).node_id()));
        }
    }
    // With 30% loss each way a handshake needs several retransmissions;
    // within 9 s almost all complete.
    assert!(ok >= 36, "only {ok}/40 handshakes completed");
}

#[test]
fn fragmented_messages_arrive_whole_or_expire_under_loss() {
    let link = LinkConfig {
        latency: Duration::from_millis(50),
        jitter: Duration::from_millis(20),
        loss: 0.02,
        duplicate: 0.05,
        max_datagram: 1472,
    };
    let mut p = Pair::new(SessionConfig::default(), link, 11);
    let mut rng = Rng::new(99);
    // The handshake itself may lose packets: retry until established.
    assert!(p.handshake(Duration::from_secs(10)));
    let mut sent = Vec::new();
    let mut out = Transmits::new();
    for i in 0..40u32 {
        let len = 1 + rng.below(60_000) as usize;
        let mut m = vec![0u8; len];
        rng.fill(&mut m);
        m[0] = i as u8;
        let now = p.now;
        p.client.send(now, 0, &m, &mut out).unwrap();
        p.transmit_all(Side::Client, &mut out);
        sent.push(m);
        p.drive_for(Duration::from_millis(20));
    }
    p.drive_for(Duration::from_secs(6));
    let got = Pair::messages(&p.server_events);
    for (_, m) in &got {
        assert!(
            sent.contains(m),
            "a delivered message is exactly one that was sent"
        );
    }
    let stats = p.server().stats();
    assert_eq!(got.len() as u64 + stats.messages_expired, sent.len() as u64);
    assert!(
        stats.messages_expired > 0,
        "2% loss over ~900 fragments loses some"
    );
    assert_eq!(
        p.server().reassembly_bytes(),
        0,
        "memory returns after expiry"
    );
}

#[test]
fn keepalive_holds_an_idle_session_and_idle_timeout_ends_a_dead_one() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 12);
    assert!(p.handshake(Duration::from_secs(1)));
    p.drive_for(Duration::from_secs(120));
    assert!(p.client.is_established());
    assert!(p.server().is_established());
    // Pings flowed, and gave round-trip samples.
    assert!(p.client.rtt().latest.unwrap() >= Duration::from_millis(20));
    // Cut the link.
    p.link.loss = 1.0;
    p.drive_for(Duration::from_secs(40));
    assert_eq!(closed(&p.client_events), Some(CloseReason::IdleTimeout));
    assert_eq!(closed(&p.server_events), Some(CloseReason::IdleTimeout));
}

#[test]
fn close_reaches_the_peer_with_code_and_reason() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 13);
    assert!(p.handshake(Duration::from_secs(1)));
    let now = p.now;
    p.client.close(now, close_code::SHUTDOWN, "bye");
    assert_eq!(p.client.state(), SessionState::Closing);
    p.client.close(now, 0, "again"); // idempotent
    p.drive_for(Duration::from_secs(2));
    assert_eq!(
        closed(&p.server_events),
        Some(CloseReason::Peer {
            code: close_code::SHUTDOWN,
            reason: "bye".into()
        })
    );
    assert_eq!(
        closed(&p.client_events),
        Some(CloseReason::Local {
            code: close_code::SHUTDOWN,
            reason: "bye".into()
        })
    );
    assert_eq!(p.client.state(), SessionState::Closed);
    assert_eq!(p.client.poll_timeout(), None);
    // Exactly one Closed event each.
    assert_eq!(
        p.client_events
            .iter()
            .filter(|e| matches!(e, Event::Closed { .. }))
            .count(),
        1
    );
}

#[test]
fn replayed_and_tampered_datagrams_are_rejected() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 14);
    assert!(p.handshake(Duration::from_secs(1)));
    let mut out = Transmits::new();
    let now = p.now;
    p.client.send(now, 0, b"once", &mut out).unwrap();
    let captured = out.get(0).unwrap().to_vec();
    p.transmit_all(Side::Client, &mut out);
    p.drive_for(Duration::from_millis(50));
    assert_eq!(Pair::messages(&p.server_events).len(), 1);
    let now = p.now;
    let mut replay = captured.clone();
    assert!(matches!(
        p.server().handle_datagram(now, &mut replay),
        Err(SessionError::Crypto(CryptoError::Replay(
            ReplayError::Duplicate(_)
        )))
    ));
    // Tamper with the payload of a fresh frame.
    p.client.send(now, 0, b"fresh", &mut out).unwrap();
    let mut tampered = out.get(0).unwrap().to_vec();
    out.clear();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        p.server().handle_datagram(now, &mut tampered),
        Err(SessionError::Crypto(CryptoError::Authentication))
    );
    assert_eq!(
        Pair::messages(&p.server_events).len(),
        1,
        "nothing more delivered"
    );
    assert!(p.server().stats().frames_dropped >= 2);
    assert!(
        p.server().is_established(),
        "bad input does not disturb the session"
    );
}

#[test]
fn key_updates_keep_data_flowing_with_reordering() {
    let config = SessionConfig {
        // Updates far more often than the real limits (millions of
        // packets), but still less often than the link reorders: a frame
        // reordered across two updates is indistinguishable from a forgery,
        // as in QUIC.
        key_update_interval: Some(200),
        ..SessionConfig::default()
    };
    let link = LinkConfig {
        // Up to 10 ms of reordering at 100 µs spacing: 100 packets deep.
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    let mut p = Pair::new(config, link, 15);
    assert!(p.handshake(Duration::from_secs(1)));
    let mut out = Transmits::new();
    for i in 0..3000u32 {
        let now = p.now;
        p.client.send(now, 0, &i.to_be_bytes(), &mut out).unwrap();
        p.transmit_all(Side::Client, &mut out);
        p.drive_for(Duration::from_micros(100));
    }
    p.drive_for(Duration::from_millis(100));
    let got = Pair::messages(&p.server_events);
    assert_eq!(
        got.len(),
        3000,
        "every message through {} key updates",
        p.client.stats().key_updates
    );
    // An update waits for the previous one to be confirmed (a ping's round
    // trip, 20 ms here): about one per 200 packets or per round trip.
    assert!(p.client.stats().key_updates >= 5, "{:?}", p.client.stats());
    // The peer can ask for an update too.
    let before = p.server().stats().key_updates;
    let now = p.now;
    p.client.update_keys(now);
    p.drive_for(Duration::from_millis(50));
    let now = p.now;
    p.server().send(now, 0, b"after", &mut out).unwrap();
    p.transmit_all(Side::Server, &mut out);
    p.drive_for(Duration::from_millis(50));
    assert_eq!(p.server().stats().key_updates, before + 1);
    assert!(Pair::messages(&p.client_events).contains(&(0, b"after".to_vec())));
}

#[test]
fn key_updates_never_strand_the_receiver_under_heavy_loss() {
    // Update as often as allowed while a third of all datagrams vanish: were
    // the sender to update twice while a whole generation was lost, the
    // receiver could never catch up. It must always recover.
    let config = SessionConfig {
        key_update_interval: Some(1),
        ..SessionConfig::default()
    };
    let mut p = Pair::new(config, LinkConfig::default(), 21);
    assert!(p.handshake(Duration::from_secs(1)));
    p.link.loss = 0.33;
    let mut out = Transmits::new();
    for i in 0..2000u32 {
        let now = p.now;
        p.client.send(now, 0, &i.to_be_bytes(), &mut out).unwrap();
        p.transmit_all(Side::Client, &mut out);
        p.drive_for(Duration::from_millis(1));
    }
    let lossy = Pair::messages(&p.server_events).len();
    let updates = p.client.stats().key_updates;
    assert!(updates >= 2, "{updates} updates");
    p.link.loss = 0.0;
    p.drive_for(Duration::from_secs(1));
    for i in 0..100u32 {
        let now = p.now;
        p.client.send(now, 1, &i.to_be_bytes(), &mut out).unwrap();
        p.transmit_all(Side::Client, &mut out);
        p.drive_for(Duration::from_millis(1));
    }
    p.drive_for(Duration::from_millis(100));
    let after: Vec<_> = Pair::messages(&p.server_events)
        .into_iter()
        .filter(|(stream, _)| *stream == 1)
        .collect();
    assert_eq!(
        after.len(),
        100,
        "all arrive once the loss stops ({lossy} of 2000 under loss, {updates} updates)"
    );
}

#[test]
fn batches_coalesce_small_messages_into_few_frames() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 16);
    assert!(p.handshake(Duration::from_secs(1)));
    let msgs: Vec<Vec<u8>> = (0..200u32)
        .map(|i| vec![i as u8; 1 + (i as usize % 60)])
        .collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let mut out = Transmits::new();
    let now = p.now;
    let n = p
        .client
        .send_batch(now, 5, &refs, 16 * 1024, &mut out)
        .unwrap();
    let payload: usize = msgs.iter().map(|m| m.len() + 4).sum();
    assert!(
        n <= payload / (1472 - 45) + 1,
        "{n} datagrams for {payload} bytes"
    );
    assert!(out.iter().all(|d| d.len() <= 1472));
    p.transmit_all(Side::Client, &mut out);
    p.drive_for(Duration::from_millis(50));
    let got: Vec<Vec<u8>> = Pair::messages(&p.server_events)
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(got, msgs, "all delivered, in order");
}

#[test]
fn garbage_never_disturbs_a_session_in_any_state() {
    let mut rng = Rng::new(17);
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 17);
    let feed = |p: &mut Pair, rng: &mut Rng| {
        let now = p.now;
        for _ in 0..2000 {
            let len = rng.below(200) as usize;
            let mut junk = vec![0u8; len];
            rng.fill(&mut junk);
            if len > 2 && rng.below(2) == 0 {
                // Often make it look like a frame of this session.
                junk[0] = b'S';
                junk[1] = b'T';
            }
            let _ = p.client.handle_datagram(now, &mut junk);
            if let Some(s) = p.server.as_mut() {
                let _ = s.handle_datagram(now, &mut junk);
            }
        }
    };
    feed(&mut p, &mut rng); // client handshaking
    assert!(p.handshake(Duration::from_secs(2)));
    feed(&mut p, &mut rng); // both established
    let mut out = Transmits::new();
    let now = p.now;
    p.client.send(now, 0, b"still fine", &mut out).unwrap();
    p.transmit_all(Side::Client, &mut out);
    p.drive_for(Duration::from_millis(50));
    assert_eq!(
        Pair::messages(&p.server_events),
        vec![(0, b"still fine".to_vec())]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any datagram, including real frames with bytes flipped or cut, fed to
    /// a session in any state: no panic, and the session stays usable.
    #[test]
    fn mutated_real_datagrams_never_panic(seed in any::<u64>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4), cut in any::<usize>()) {
        let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), seed);
        prop_assert!(p.handshake(Duration::from_secs(1)));
        let mut out = Transmits::new();
        let now = p.now;
        p.client.send(now, 1, b"payload", &mut out).unwrap();
        p.client.send(now, 1, &vec![3u8; 5000], &mut out).unwrap();
        let handshake: Vec<Vec<u8>> = p.sent.iter().take(3).map(|(_, d)| d.clone()).collect();
        for original in out.iter().map(|d| d.to_vec()).chain(handshake) {
            let mut d = original.clone();
            for (pos, byte) in &flips {
                let i = pos % d.len();
                d[i] ^= byte | 1;
            }
            d.truncate(1 + cut % d.len());
            let now = p.now;
            let _ = p.server().handle_datagram(now, &mut d.clone());
            let _ = p.client.handle_datagram(now, &mut d);
        }
        out.clear();
        let now = p.now;
        p.client.send(now, 2, b"after", &mut out).unwrap();
        p.transmit_all(Side::Client, &mut out);
        p.drive_for(Duration::from_millis(50));
        prop_assert!(Pair::messages(&p.server_events).contains(&(2, b"after".to_vec())));
    }
}

#[test]
fn a_forged_message_3_ahead_of_the_genuine_one_does_not_stall_the_handshake() {
    // Regression (found by the `handshake` fuzz target): snow does not roll
    // back its cipher key when message 3's tag fails, so one tampered copy
    // used to break the responder for good.
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 31);
    // Deliver message 1 and message 2 by hand.
    p.drive_until(p.now + Duration::from_secs(1), |p| {
        p.sent
            .iter()
            .any(|(side, d)| *side == Side::Client && d.len() == HEADER_LEN + 64)
    });
    let msg3 = p
        .sent
        .iter()
        .find(|(side, d)| *side == Side::Client && d.len() == HEADER_LEN + 64)
        .map(|(_, d)| d.clone())
        .expect("message 3 was sent");
    for pos in [HEADER_LEN + 5, msg3.len() - 1] {
        let mut forged = msg3.clone();
        forged[pos] ^= 0x70;
        let now = p.now;
        assert!(p.server().handle_datagram(now, &mut forged).is_err());
    }
    assert!(
        p.handshake(Duration::from_secs(1)),
        "the genuine message 3 still completes it"
    );
}

#[test]
fn batches_respect_the_per_message_limit_not_the_frame_size() {
    // Each message is within max_message_size even though the batch frame
    // carrying ten of them is not.
    let mut config = SessionConfig::default();
    config.reassembly.max_message_size = 1000;
    let mut p = Pair::new(config, LinkConfig::default(), 32);
    assert!(p.handshake(Duration::from_secs(1)));
    let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let mut out = Transmits::new();
    let now = p.now;
    assert_eq!(
        p.client
            .send_batch(now, 0, &refs, 16 * 1024, &mut out)
            .unwrap(),
        1
    );
    p.transmit_all(Side::Client, &mut out);
    p.drive_for(Duration::from_millis(50));
    assert_eq!(Pair::messages(&p.server_events).len(), 10);
}

#[test]
fn only_the_newest_authenticated_datagram_may_move_a_session() {
    let mut p = Pair::new(SessionConfig::default(), LinkConfig::default(), 33);
    assert!(p.handshake(Duration::from_secs(1)));
    let mut out = Transmits::new();
    let now = p.now;
    p.client.send(now, 0, b"older", &mut out).unwrap();
    p.client.send(now, 0, b"newer", &mut out).unwrap();
    let (mut older, mut newer) = (out.get(0).unwrap().to_vec(), out.get(1).unwrap().to_vec());
    // Delivered out of order: the newer one proves the path, the late older
    // one is accepted (reordering) but must not move the session back.
    assert_eq!(p.server().handle_datagram(now, &mut newer), Ok(true));
    assert_eq!(p.server().handle_datagram(now, &mut older), Ok(false));
    assert_eq!(
        Pair::messages(&p.server_events).len(),
        0,
        "events not drained yet"
    );
    p.collect();
    assert_eq!(Pair::messages(&p.server_events).len(), 2, "both delivered");
}

#[test]
fn messages_flow_across_many_rekeys_under_loss_and_reordering() {
    // A rekey every 2 s (instead of 120 s) for a minute, with 10% and 30%
    // loss and up to 10 ms of reordering, both ways: every datagram the link
    // delivers must open (none refused for its key), so exactly the messages
    // whose datagrams the link dropped are missing, and none comes twice.
    let config = SessionConfig {
        rekey_after: Duration::from_secs(2),
        reject_after: Duration::from_secs(20),
        ..SessionConfig::default()
    };
    for (seed, loss) in [(41u64, 0.1), (42, 0.3)] {
        let link = LinkConfig {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            loss: 0.0,
            duplicate: 0.0,
            max_datagram: usize::MAX,
        };
        let mut p = Pair::new(config.clone(), link, seed);
        assert!(p.handshake(Duration::from_secs(1)));
        p.link.loss = loss;
        let mut out = Transmits::new();
        let mut sent = 0u32;
        for i in 0..6000u32 {
            let now = p.now;
            p.client.send(now, 0, &i.to_be_bytes(), &mut out).unwrap();
            p.transmit_all(Side::Client, &mut out);
            p.server().send(now, 0, &i.to_be_bytes(), &mut out).unwrap();
            p.transmit_all(Side::Server, &mut out);
            sent += 1;
            p.drive_for(Duration::from_millis(10));
        }
        p.drive_for(Duration::from_millis(200));
        assert!(p.client.is_established() && p.server().is_established());
        assert!(
            p.client_errors.is_empty() && p.server_errors.is_empty(),
            "loss {loss}: refused datagrams {:?} {:?}",
            p.client_errors.first(),
            p.server_errors.first()
        );
        let rekeys = (p.client.stats().rekeys, p.server().stats().rekeys);
        assert!(rekeys.0 >= 15 && rekeys.1 >= 15, "loss {loss}: {rekeys:?}");
        for (to, events) in [
            (Side::Server, &p.server_events),
            (Side::Client, &p.client_events),
        ] {
            let got: Vec<u32> = Pair::messages(events)
                .into_iter()
                .map(|(_, m)| u32::from_be_bytes(m.try_into().unwrap()))
                .collect();
            let mut unique = got.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), got.len(), "loss {loss}: a message came twice");
            assert!(got.iter().all(|&i| i < sent));
            // Data frames (type byte 3 of the header) the link dropped.
            let from = if to == Side::Server {
                Side::Client
            } else {
                Side::Server
            };
            let dropped = p
                .lost
                .iter()
                .filter(|(side, d)| *side == from && d[3] == FrameType::Data.to_u8())
                .count();
            assert_eq!(
                got.len() + dropped,
                sent as usize,
                "loss {loss}: to {to:?}, {} delivered, {dropped} dropped by the link",
                got.len()
            );
        }
    }
}

#[test]
fn a_peer_that_never_rekeys_is_closed_at_the_hard_lifetime() {
    // The client never sees a rekey request or response (both dropped by
    // size: 41-byte plaintexts); everything else gets through.
    let config = SessionConfig {
        rekey_after: Duration::from_secs(5),
        reject_after: Duration::from_secs(12),
        ..SessionConfig::default()
    };
    let mut p = Pair::new(config, LinkConfig::default(), 43);
    assert!(p.handshake(Duration::from_secs(1)));
    let start = p.now;
    let rekey_len = HEADER_LEN + 41 + TAG_LEN;
    while p.client.state() == SessionState::Established && p.now < start + Duration::from_secs(20) {
        p.drive_for(Duration::from_millis(5));
        p.in_flight_retain(|d| d.len() != rekey_len);
    }
    assert_eq!(closed(&p.client_events), Some(CloseReason::RekeyTimeout));
    let age = p.now - start;
    assert!(
        // Counted from the client's establishment, a little before `start`.
        age >= Duration::from_millis(11_900) && age < Duration::from_millis(12_100),
        "{age:?}"
    );
    p.drive_for(Duration::from_secs(1));
    assert!(matches!(
        closed(&p.server_events),
        Some(CloseReason::Peer {
            code: close_code::REKEY_TIMEOUT,
            ..
        }) | Some(CloseReason::RekeyTimeout)
    ));
}
