//! Congestion behaviour through a virtual bottleneck: one flow fills it,
//! two flows share it fairly, a flow follows it when it halves; for every
//! controller.

use std::time::Duration;

use super::sim::{Link, Sim};
use super::*;
use crate::session::recovery::cc::Congestion;

const MS: Duration = Duration::from_millis(1);
/// 10 Mbit/s.
const RATE: u64 = 1_250_000;

fn config(congestion: Congestion) -> ChannelConfig {
    ChannelConfig {
        congestion,
        ..ChannelConfig::default()
    }
}

/// 20 ms round trip; the forward direction is the bottleneck with a queue
/// of two bandwidth-delay products.
fn bottleneck(rate: u64) -> [Link; 2] {
    let bdp = (rate as f64 * 0.020) as usize;
    [
        Link {
            rate: Some(rate),
            queue: 2 * bdp,
            ..Link::delay(10 * MS)
        },
        Link::delay(10 * MS),
    ]
}

/// Keeps side 0 of each active pair's send buffer busy with 1200-byte
/// reliable messages.
fn fill(s: &mut Sim, active: &[bool]) {
    for (pair, &on) in active.iter().enumerate() {
        let end = &mut s.ends[pair][0];
        while on && end.has_room(1200) && end.out.held() < 4 << 20 {
            end.send(s.now, 0, 0x01, vec![0; 1200], SendPolicy::Refuse)
                .unwrap();
        }
    }
}

/// Bytes that arrived at side 1 of each pair, per interval of `step`.
fn run_series(sim: &mut Sim, steps: usize, step: Duration, active: &[bool]) -> Vec<Vec<u64>> {
    let mut series = vec![Vec::new(); sim.ends.len()];
    for _ in 0..steps {
        let before: Vec<u64> = sim.arrived_bytes.iter().map(|a| a[1]).collect();
        let until = sim.now + step;
        sim.run(until, |s| fill(s, active));
        for (pair, b) in before.iter().enumerate() {
            series[pair].push(sim.arrived_bytes[pair][1] - b);
        }
    }
    series
}

fn rate_of(bytes: &[u64], step: Duration) -> f64 {
    bytes.iter().sum::<u64>() as f64 / (step.as_secs_f64() * bytes.len() as f64)
}

fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    sum * sum / (x.len() as f64 * squares)
}

const ALL: [Congestion; 3] = [Congestion::NewReno, Congestion::Cubic, Congestion::Bbr];

#[test]
fn one_flow_fills_the_bottleneck_with_a_bounded_queue() {
    for cc in ALL {
        let mut sim = Sim::new(config(cc), bottleneck(RATE), 11);
        let series = run_series(&mut sim, 20, Duration::from_secs(1), &[true]);
        // Past the first five seconds (slow start and its overshoot).
        let rate = rate_of(&series[0][5..], Duration::from_secs(1));
        let drops = sim.bottleneck_drops(0);
        let sent = sim.wire_bytes[0][0] / 1200;
        println!(
            "{cc:?}: {:.0} B/s of {RATE} ({:.1}%), {drops} bottleneck drops of ~{sent} packets, max queue {} B",
            rate,
            rate / RATE as f64 * 100.0,
            sim.bottleneck_max_queue(0)
        );
        assert!(rate >= RATE as f64 * 0.9, "{cc:?}: {rate:.0} B/s");
        assert!(rate <= RATE as f64 * 1.01, "{cc:?}: faster than the link?");
        assert!(sim.errors.is_empty(), "{:?}", sim.errors);
    }
}

#[test]
fn two_flows_share_the_bottleneck_fairly() {
    for cc in ALL {
        let mut sim = Sim::with_pairs(config(cc), bottleneck(RATE), 12, 2);
        let step = Duration::from_secs(1);
        // The second flow starts 5 s after the first.
        run_series(&mut sim, 5, step, &[true, false]);
        sim.restart_pair(1, config(cc));
        let series = run_series(&mut sim, 40, step, &[true, true]);
        let rates: Vec<f64> = series.iter().map(|s| rate_of(&s[20..], step)).collect();
        let index = jain(&rates);
        let total: f64 = rates.iter().sum();
        println!(
            "{cc:?}: {:.0} and {:.0} B/s, Jain {index:.3}, total {:.1}% of the link",
            rates[0],
            rates[1],
            total / RATE as f64 * 100.0
        );
        assert!(index >= 0.9, "{cc:?}: Jain's index {index:.3} ({rates:?})");
        assert!(total >= RATE as f64 * 0.9, "{cc:?}: {total:.0} B/s in all");
    }
}

#[test]
fn a_flow_follows_the_bottleneck_when_it_halves() {
    for cc in ALL {
        let mut sim = Sim::new(config(cc), bottleneck(RATE), 13);
        run_series(&mut sim, 10, Duration::from_secs(1), &[true]);
        sim.links[0].rate = Some(RATE / 2);
        let drops_before = sim.bottleneck_drops(0);
        // What the sender puts on the wire, per 20 ms round trip.
        let step = 20 * MS;
        let mut sent = Vec::new();
        for _ in 0..150 {
            let before = sim.wire_bytes[0][0];
            let until = sim.now + step;
            sim.run(until, |s| fill(s, &[true]));
            sent.push(sim.wire_bytes[0][0] - before);
        }
        // Within ten round trips the sender is down to the new rate (with
        // 15% of slack for retransmissions and probing).
        let follow = rate_of(&sent[10..], step);
        let drops = sim.bottleneck_drops(0) - drops_before;
        println!(
            "{cc:?}: sends {follow:.0} B/s after the link went to {} B/s; {drops} drops meanwhile",
            RATE / 2
        );
        assert!(
            follow <= RATE as f64 / 2.0 * 1.15,
            "{cc:?}: {follow:.0} B/s"
        );
        assert!(follow >= RATE as f64 / 2.0 * 0.8, "{cc:?}: {follow:.0} B/s");
    }
}
