//! Channels between two real sessions (handshake, sealing, replay window)
//! in virtual time, through 0–30% loss, duplication and reordering: every
//! reliable message arrives exactly once (in order on the ordered
//! channel), sequenced messages never go backwards, unreliable ones at
//! most once, and both ends end up holding nothing.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use stt::channel::{SendPolicy, DEFAULT_CHANNELS};
use stt::frame::FrameType;
use stt::session::{Event, SessionConfig};
use stt::Delivery;
use support::{LinkConfig, Pair};

fn message(channel: u8, index: u64, len: usize) -> Vec<u8> {
    let mut m = vec![channel; len.max(8)];
    m[..8].copy_from_slice(&index.to_be_bytes());
    m
}

/// (channel, index) of every message delivered, in order.
fn delivered(events: &[Event]) -> Vec<(u8, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                stream_id, payload, ..
            } => Some((
                *stream_id as u8,
                u64::from_be_bytes(payload[..8].try_into().unwrap()),
            )),
            _ => None,
        })
        .collect()
}

fn check(got: &[(u8, u64)], sent: &HashMap<u8, u64>) -> Result<(), TestCaseError> {
    for (&c, &n) in sent {
        let on: Vec<u64> = got.iter().filter(|m| m.0 == c).map(|m| m.1).collect();
        let mut unique = on.clone();
        unique.sort_unstable();
        unique.dedup();
        prop_assert_eq!(unique.len(), on.len(), "channel {} delivered a copy", c);
        match DEFAULT_CHANNELS[c as usize] {
            Delivery::ReliableOrdered => prop_assert_eq!(on, (0..n).collect::<Vec<_>>()),
            Delivery::ReliableUnordered => prop_assert_eq!(unique, (0..n).collect::<Vec<_>>()),
            Delivery::UnreliableSequenced => {
                prop_assert!(
                    on.windows(2).all(|w| w[0] < w[1]),
                    "channel {} went back",
                    c
                )
            }
            _ => prop_assert!(on.iter().all(|&i| i < n)),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn channels_keep_their_promises_between_real_sessions(
        loss in 0.0f64..0.30,
        duplicate in 0.0f64..0.2,
        sizes in proptest::collection::vec(8usize..5000, 8..40),
        seed: u64,
    ) {
        let link = LinkConfig {
            latency: Duration::from_millis(15),
            // Jitter larger than the spacing of packets: reordering.
            jitter: Duration::from_millis(5),
            loss,
            duplicate,
            ..LinkConfig::default()
        };
        let mut pair = Pair::new(SessionConfig::default(), link, seed);
        prop_assume!(pair.handshake(Duration::from_secs(30)));
        let mut sent: HashMap<u8, u64> = HashMap::new();
        for (i, &len) in sizes.iter().enumerate() {
            let c = (i % 4) as u8;
            let n = sent.entry(c).or_insert(0);
            let now = pair.now;
            pair.client
                .send_channel(now, c, FrameType::Data, message(c, *n, len), SendPolicy::Refuse)
                .unwrap();
            *n += 1;
        }
        let reliable: u64 = sent.iter().filter(|(c, _)| DEFAULT_CHANNELS[**c as usize].is_reliable()).map(|(_, n)| n).sum();
        let end = pair.now + Duration::from_secs(60);
        let done = pair.drive_until(end, |p| {
            let got = delivered(&p.server_events);
            got.iter().filter(|m| DEFAULT_CHANNELS[m.0 as usize].is_reliable()).count() as u64 == reliable
                && !p.client.channels_busy()
        });
        prop_assert!(done, "not everything reliable arrived within 60 s");
        check(&delivered(&pair.server_events), &sent)?;
        let stats = pair.client.channel_stats(pair.now).unwrap();
        prop_assert_eq!(stats.send_buffered, 0);
        let now = pair.now;
        prop_assert_eq!(pair.server().channel_stats(now).unwrap().recv_buffered, 0);
        prop_assert!(pair.client.is_established());
    }
}
