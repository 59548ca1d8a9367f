//! Channels in virtual time: delivery guarantees of every mode under loss,
//! reordering and duplication (property tests), bounded memory, flow
//! control, and congestion behaviour through a bottleneck.

mod congestion;
mod sim;

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::frame::chunk::Delivery;
use sim::{Link, Sim};

const MS: Duration = Duration::from_millis(1);

/// Message `i` of channel `c`: its index in the first 8 bytes, then filler.
fn message(c: u8, i: u64, len: usize) -> Vec<u8> {
    let mut m = vec![c; len.max(8)];
    m[..8].copy_from_slice(&i.to_be_bytes());
    m
}

fn index_of(d: &Delivered) -> u64 {
    u64::from_be_bytes(d.payload[..8].try_into().unwrap())
}

/// Checks what `delivered` holds against `sent` messages per channel.
fn check_delivery(delivered: &[Delivered], sent: &HashMap<u8, u64>) -> Result<(), TestCaseError> {
    let mut per: HashMap<u8, Vec<u64>> = HashMap::new();
    for d in delivered {
        per.entry(d.channel).or_default().push(index_of(d));
    }
    for (&c, &n) in sent {
        let got = per.remove(&c).unwrap_or_default();
        match DEFAULT_CHANNELS[c as usize] {
            Delivery::ReliableOrdered => {
                prop_assert_eq!(got, (0..n).collect::<Vec<_>>(), "channel {} in order", c);
            }
            Delivery::ReliableUnordered => {
                let mut sorted = got.clone();
                sorted.sort_unstable();
                prop_assert_eq!(
                    sorted,
                    (0..n).collect::<Vec<_>>(),
                    "channel {} once each",
                    c
                );
            }
            Delivery::UnreliableSequenced => {
                prop_assert!(
                    got.windows(2).all(|w| w[0] < w[1]),
                    "channel {} went back",
                    c
                );
                prop_assert!(got.iter().all(|&i| i < n));
            }
            Delivery::Unreliable => {
                let mut sorted = got.clone();
                sorted.sort_unstable();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), got.len(), "channel {} duplicated", c);
                prop_assert!(got.iter().all(|&i| i < n));
            }
        }
    }
    Ok(())
}

fn lossy(loss: f64, reorder: f64, duplicate: f64) -> Link {
    Link {
        jitter: 2 * MS,
        loss,
        reorder,
        duplicate,
        ..Link::delay(10 * MS)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Both ends send on all four channels through 0–30% loss with
    /// reordering and duplication: reliable messages arrive exactly once
    /// (in order on the ordered channel), sequenced ones never go back,
    /// and memory stays bounded on both ends.
    #[test]
    fn every_mode_keeps_its_promise_under_loss(
        loss in 0.0f64..0.30,
        reorder in 0.0f64..0.2,
        duplicate in 0.0f64..0.1,
        sizes in proptest::collection::vec(8usize..4000, 20..80),
        seed: u64,
    ) {
        let config = ChannelConfig {
            send_buffer: 16 << 20,
            ..ChannelConfig::default()
        };
        let link = lossy(loss, reorder, duplicate);
        let mut sim = Sim::new(config, [link.clone(), link], seed);
        let mut sent: [HashMap<u8, u64>; 2] = Default::default();
        for (side, counts) in sent.iter_mut().enumerate() {
            for (i, &len) in sizes.iter().enumerate() {
                let c = (i % 4) as u8;
                let n = counts.entry(c).or_insert(0);
                let m = message(c, *n, len);
                sim.ends[0][side].send(sim.now, c, 0x01, m, SendPolicy::Refuse).unwrap();
                *n += 1;
            }
        }
        let end = sim.now + Duration::from_secs(120);
        let mut peak = [0usize; 2];
        sim.run(end, |s| {
            for (p, end) in peak.iter_mut().zip(&s.ends[0]) {
                *p = (*p).max(end.out.held() + end.inc.held() as usize);
            }
        });
        prop_assert!(sim.errors.is_empty(), "{:?}", sim.errors);
        for side in 0..2 {
            check_delivery(&sim.delivered[0][1 - side], &sent[side])?;
            // Everything reliable was acknowledged and released.
            prop_assert_eq!(sim.ends[0][side].out.unacked_messages(), 0);
            prop_assert_eq!(sim.ends[0][side].inc.held(), 0);
            prop_assert!(peak[side] <= 16 << 20);
        }
    }
}

#[test]
fn large_reliable_messages_are_resent_part_by_part() {
    let link = lossy(0.05, 0.0, 0.0);
    let mut sim = Sim::new(ChannelConfig::default(), [link.clone(), link], 7);
    let big = message(0, 0, 1 << 20);
    sim.ends[0][0]
        .send(sim.now, 0, 0x01, big.clone(), SendPolicy::Refuse)
        .unwrap();
    let end = sim.now + Duration::from_secs(60);
    sim.run(end, |_| {});
    assert_eq!(sim.delivered[0][1].len(), 1);
    assert_eq!(sim.delivered[0][1][0].payload, big);
    let stats = sim.ends[0][0].stats(sim.now);
    assert!(stats.packets_lost > 0);
    // Only lost parts go again: about 5% of the message, not all of it.
    let sent = sim.wire_bytes[0][0] as f64;
    assert!(sent < (1 << 20) as f64 * 1.25, "{sent} bytes for 1 MiB");
}

#[test]
fn a_slow_application_stops_the_sender_without_loss() {
    let mut sim = Sim::new(
        ChannelConfig::default(),
        [Link::delay(MS), Link::delay(MS)],
        1,
    );
    sim.consuming[1] = false;
    let mut queued = 0u64;
    let end = sim.now + Duration::from_secs(5);
    sim.run(end, |s| {
        while s.ends[0][0].has_room(60_000) {
            let m = message(0, queued, 60_000);
            s.ends[0][0]
                .send(s.now, 0, 0x01, m, SendPolicy::Refuse)
                .unwrap();
            queued += 1;
        }
    });
    // The receiver holds at most its window; the sender holds the rest.
    let held = sim.ends[0][1].inc.held();
    assert!(held <= 32 << 20, "{held}");
    assert!(held > 16 << 20, "{held}: the window was not used");
    assert!(sim.ends[0][0].stats(sim.now).flow_blocked);
    assert!(sim.ends[0][0].out.held() <= 32 << 20);
    // Now the application reads: everything arrives, in order.
    sim.consuming[1] = true;
    let end = sim.now + Duration::from_secs(60);
    sim.run(end, |_| {});
    let got: Vec<u64> = sim.delivered[0][1].iter().map(index_of).collect();
    assert_eq!(got, (0..queued).collect::<Vec<_>>());
}

#[test]
fn replace_oldest_drops_queued_unreliable_messages_and_counts_them() {
    let config = ChannelConfig {
        send_buffer: 16 << 20,
        max_message_size: 1 << 20,
        ..ChannelConfig::default()
    };
    let mut sim = Sim::new(config, [Link::delay(50 * MS), Link::delay(50 * MS)], 3);
    for i in 0..40 {
        let m = message(1, i, 1 << 20);
        sim.ends[0][0]
            .send(sim.now, 1, 0x01, m, SendPolicy::ReplaceOldest)
            .unwrap();
    }
    let stats = sim.ends[0][0].stats(sim.now);
    assert_eq!(stats.unreliable_replaced, 24);
    assert!(sim.ends[0][0].out.held() <= 16 << 20);
    let refused = sim.ends[0][0].send(sim.now, 0, 0x01, vec![0; 1 << 20], SendPolicy::Refuse);
    assert_eq!(refused, Err(SendRefused::Full));
}

#[test]
fn a_clean_path_declares_nothing_lost() {
    let mut sim = Sim::new(
        ChannelConfig::default(),
        [Link::delay(MS), Link::delay(MS)],
        5,
    );
    let end = sim.now + Duration::from_millis(30);
    let mut i = 0u64;
    sim.run(end, |s| {
        while s.ends[0][0].has_room(1200) && s.ends[0][0].out.held() < 1 << 20 {
            let m = message(1, i, 1200);
            s.ends[0][0]
                .send(s.now, 1, 0x01, m, SendPolicy::Refuse)
                .unwrap();
            i += 1;
        }
    });
    let stats = sim.ends[0][0].stats(sim.now);
    println!("{stats:?} delivered {}", sim.delivered[0][1].len());
    assert_eq!(stats.packets_lost, 0, "{stats:?}");
    assert_eq!(stats.unreliable_lost, 0);
    assert!(
        sim.delivered[0][1].len() as u64 > i / 2,
        "{} of {i}",
        sim.delivered[0][1].len()
    );
}

/// A reliable message whose first part arrived, sent again whole after the
/// session moved to a stream path: delivered once, charged once.
#[test]
fn a_message_resent_whole_after_a_path_change_is_charged_once() {
    let now = std::time::Instant::now();
    let config = ChannelConfig::default();
    let mut a = Channels::new(config.clone(), now, Some(1472), None, None);
    let mut b = Channels::new(config, now, Some(1472), None, None);
    a.send(now, 0, 0x01, vec![5; 3000], SendPolicy::Refuse)
        .unwrap();
    let mut packet = Vec::new();
    a.poll_packet(now, 0, &mut packet).unwrap();
    b.on_packet(now, 0, &packet, None).unwrap();
    assert!(
        b.recv_held() > 0 && b.poll_delivered().is_none(),
        "one part held"
    );
    a.on_path_change(now, None);
    let mut pn = 1;
    let mut delivered = Vec::new();
    loop {
        packet.clear();
        if a.poll_packet(now, pn, &mut packet).is_none() {
            break;
        }
        b.on_packet(now, pn, &packet, None).unwrap();
        pn += 1;
        while let Some(d) = b.poll_delivered() {
            b.release(d.credit);
            delivered.push(d.payload);
        }
        assert!(pn < 100);
    }
    assert_eq!(delivered, vec![vec![5u8; 3000]]);
    assert_eq!(b.recv_held(), 0);
}
