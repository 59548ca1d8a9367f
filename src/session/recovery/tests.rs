//! Loss detection, probe timeouts and acknowledgement processing in
//! virtual time, with a recording controller.

use super::*;
use crate::frame::chunk::{write_ack, Chunk, Chunks};

const MS: Duration = Duration::from_millis(1);

/// A controller with a fixed window that records what it is told.
#[derive(Debug, Default)]
struct Recorder {
    acked: usize,
    events: Vec<(bool, usize)>,
}

impl Controller for Recorder {
    fn on_sent(&mut self, _: Instant, _: usize, _: usize) {}
    fn on_ack(&mut self, _: Instant, _: Instant, bytes: usize, _: bool, _: &RttEstimator) {
        self.acked += bytes;
    }
    fn on_congestion_event(&mut self, _: Instant, _: Instant, persistent: bool, lost: usize) {
        self.events.push((persistent, lost));
    }
    fn on_mtu_update(&mut self, _: usize) {}
    fn window(&self) -> usize {
        100_000
    }
    fn name(&self) -> &'static str {
        "recorder"
    }
}

fn recovery(now: Instant) -> Recovery {
    Recovery::new(now, 100 * MS, 25 * MS, Box::<Recorder>::default())
}

fn send(r: &mut Recovery, now: Instant, pn: u64) {
    r.on_sent(
        now,
        Sending {
            pn,
            size: 1000,
            ack_eliciting: true,
            mtu_probe: false,
            ack_largest: None,
            retransmit: vec![Retransmit::Msg {
                channel: 3,
                seq: pn,
                offset: 0,
                len: 900,
            }],
            unreliable: Vec::new(),
        },
    );
}

fn ack(r: &mut Recovery, now: Instant, ranges: &[(u64, u64)], delay_us: u64) -> Outcome {
    let mut bytes = Vec::new();
    write_ack(&mut bytes, delay_us, ranges.iter().copied());
    let Some(Ok(Chunk::Ack(a))) = Chunks::new(&bytes).next() else {
        panic!()
    };
    let mut out = Outcome::default();
    r.on_ack(now, &a, Some(1 << 40), &mut out).unwrap();
    out
}

fn pns(packets: &[SentPacket]) -> Vec<u64> {
    packets.iter().map(|p| p.pn).collect()
}

#[test]
fn packet_threshold_declares_older_packets_lost() {
    let t0 = Instant::now();
    let mut r = recovery(t0);
    for pn in 0..10 {
        send(&mut r, t0, pn);
    }
    let out = ack(&mut r, t0 + 10 * MS, &[(5, 9)], 0);
    assert_eq!(pns(&out.acked), [5, 6, 7, 8, 9]);
    // 9 - 3 = 6: everything at or below 6 and unacknowledged is lost.
    assert_eq!(pns(&out.lost), [0, 1, 2, 3, 4]);
    assert_eq!(r.in_flight(), 0);
    assert_eq!(r.stats().congestion_events, 1);
    assert_eq!(
        out.lost[0].retransmit,
        [Retransmit::Msg {
            channel: 3,
            seq: 0,
            offset: 0,
            len: 900
        }]
    );
}

#[test]
fn time_threshold_declares_a_tail_loss_after_nine_eighths_of_a_round_trip() {
    let t0 = Instant::now();
    let mut r = recovery(t0);
    send(&mut r, t0, 0);
    send(&mut r, t0 + MS, 1);
    let out = ack(&mut r, t0 + 41 * MS, &[(1, 1)], 0);
    assert!(out.lost.is_empty(), "one packet behind: not lost by count");
    // RTT 40 ms: lost 45 ms after it was sent.
    let deadline = r.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + 45 * MS);
    let mut out = Outcome::default();
    assert_eq!(r.on_timeout(deadline - MS, &mut out), TimeoutAction::None);
    assert!(out.lost.is_empty());
    r.on_timeout(deadline, &mut out);
    assert_eq!(pns(&out.lost), [0]);
}

#[test]
fn probe_timeout_fires_and_backs_off() {
    let t0 = Instant::now();
    let mut r = recovery(t0);
    send(&mut r, t0, 0);
    let first = r.poll_timeout().unwrap();
    // Initial RTT 100 ms: PTO = 100 + 4 × 50 + 25 ms.
    assert_eq!(first, t0 + 325 * MS);
    let mut out = Outcome::default();
    assert_eq!(r.on_timeout(first, &mut out), TimeoutAction::Probe(2));
    assert_eq!(r.poll_timeout().unwrap(), t0 + 650 * MS);
    assert_eq!(r.oldest_unacked().unwrap().pn, 0);
    // An acknowledgement resets the backoff.
    send(&mut r, first, 1);
    ack(&mut r, first + 10 * MS, &[(0, 1)], 0);
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn round_trip_samples_come_from_the_largest_newly_acknowledged() {
    let t0 = Instant::now();
    let mut r = recovery(t0);
    send(&mut r, t0, 0);
    ack(&mut r, t0 + 50 * MS, &[(0, 0)], 0);
    assert_eq!(r.rtt().smoothed(), 50 * MS);
    send(&mut r, t0 + 50 * MS, 1);
    // 70 ms measured, 10 ms of it held back by the peer.
    ack(&mut r, t0 + 120 * MS, &[(0, 1)], 10_000);
    assert_eq!(r.rtt().latest(), 70 * MS);
    assert_eq!(r.rtt().smoothed(), (50 * MS * 7 + 60 * MS) / 8);
    // A repeated acknowledgement takes no sample.
    ack(&mut r, t0 + 500 * MS, &[(0, 1)], 0);
    assert_eq!(r.rtt().latest(), 70 * MS);
}

#[test]
fn acknowledging_an_unsent_packet_is_an_error() {
    let t0 = Instant::now();
    let mut r = recovery(t0);
    send(&mut r, t0, 0);
    let mut bytes = Vec::new();
    write_ack(&mut bytes, 0, [(0, 5)]);
    let Some(Ok(Chunk::Ack(a))) = Chunks::new(&bytes).next() else {
        panic!()
    };
    let mut out = Outcome::default();
    assert_eq!(
        r.on_ack(t0, &a, Some(4), &mut out),
        Err(AckError::Unsent {
            largest: 5,
            sent: Some(4)
        })
    );
}

#[test]
fn losses_spanning_three_probe_timeouts_are_persistent_congestion() {
    let t0 = Instant::now();
    let mut r = recovery(t0);
    send(&mut r, t0, 0);
    ack(&mut r, t0 + 20 * MS, &[(0, 0)], 0);
    // PTO is now 20 + 4 × 10 + 25 = 85 ms; three of them 255 ms.
    send(&mut r, t0 + 30 * MS, 1);
    send(&mut r, t0 + 300 * MS, 2);
    for pn in 3..6 {
        send(&mut r, t0 + 301 * MS, pn);
    }
    let out = ack(&mut r, t0 + 330 * MS, &[(5, 5)], 0);
    assert_eq!(pns(&out.lost), [1, 2]);
    let (persistent, _) = (r.stats().congestion_events, ());
    assert_eq!(persistent, 1);
    let rec = format!("{:?}", r.controller());
    assert!(rec.contains("events: [(true, 2000)]"), "{rec}");
}

#[test]
fn mtu_probe_losses_are_not_congestion() {
    let t0 = Instant::now();
    let mut r = recovery(t0);
    r.on_sent(
        t0,
        Sending {
            pn: 0,
            size: 9000,
            ack_eliciting: true,
            mtu_probe: true,
            ack_largest: None,
            retransmit: Vec::new(),
            unreliable: Vec::new(),
        },
    );
    for pn in 1..5 {
        send(&mut r, t0, pn);
    }
    let out = ack(&mut r, t0 + 10 * MS, &[(1, 4)], 0);
    assert_eq!(pns(&out.lost), [0]);
    assert_eq!(r.stats().congestion_events, 0);
    assert_eq!(r.in_flight(), 0);
}
