//! BBR through a simulated bottleneck, and its parts alone.

use super::*;
use crate::session::recovery::cc::testing::Bottleneck;

const MDS: usize = 1250;
/// 10 Mbit/s.
const RATE: u64 = 1_250_000;
const BASE_RTT: Duration = Duration::from_millis(40);
/// BBR's min-RTT filter window and ProbeRtt duration, written out so that
/// the tests check the code's.
const TEN_S: Duration = Duration::from_secs(10);
const PROBE_RTT_TIME: Duration = Duration::from_millis(200);

fn path() -> Bottleneck<Bbr> {
    let start = Instant::now();
    Bottleneck::new(Bbr::new(start, MDS), start, MDS, RATE, BASE_RTT)
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b as f64
}

#[test]
fn estimates_the_bottleneck_and_leaves_startup() {
    let mut path = path();
    let mut left_startup = None;
    path.run_until(Duration::from_secs(3), |p| {
        if left_startup.is_none() && p.cc.state() != BbrState::Startup {
            left_startup = Some(p.elapsed());
        }
    });
    // Five rounds of growth (41 ms each until the queue builds), then three
    // rounds without growth, each a round trip through the queue Startup's
    // window builds (127 ms): Drain begins with round 8, at 607 ms.
    let left = left_startup.expect("Startup ends");
    assert!(left < Duration::from_millis(650), "{left:?}");
    assert_eq!(path.cc.state(), BbrState::ProbeBw);
    let bw = path.cc.bandwidth();
    assert!((0.97..=1.03).contains(&ratio(bw, RATE)), "estimate {bw}");
    // The first packet met an empty queue: base + one serialisation.
    assert_eq!(path.cc.min_rtt(), Some(BASE_RTT + Duration::from_millis(1)));
    // Two bandwidth-delay products and three send quanta of two datagrams
    // (two more while probing), and the queue stays short.
    let bdp = bw as f64 * path.cc.min_rtt().unwrap().as_secs_f64();
    let probe = if path.cc.pacing_gain() > 1.0 { 2 } else { 0 };
    let want = 2.0 * bdp + ((3 * 2 + probe) * MDS) as f64;
    let window = path.cc.window() as f64;
    assert!((window / want - 1.0).abs() < 0.05, "{window} {want}");
    assert!(path.rtt.latest() < BASE_RTT * 2);
}

#[test]
fn pacing_rate_cycles_around_the_estimate() {
    let mut path = path();
    path.run_until(Duration::from_secs(2), |_| {});
    let mut gains = Vec::new();
    let mut sent_before = path.delivered;
    path.run_until(Duration::from_secs(6), |p| {
        let gain = ratio(p.cc.pacing_rate().unwrap(), p.cc.bandwidth()) / PACING_MARGIN;
        if gains.last().is_none_or(|g: &f64| (g - gain).abs() > 0.01) {
            gains.push(gain);
        }
    });
    // Every probe (1.25) is followed by a drain (0.75), then cruising (1).
    let near = |g: f64, want: f64| (g - want).abs() < 0.01;
    let probes = gains.iter().filter(|g| near(**g, 1.25)).count();
    assert!(probes >= 8, "gains {gains:?}");
    for w in gains.windows(3) {
        if near(w[0], 1.25) {
            assert!(near(w[1], 0.75) && near(w[2], 1.0), "gains {gains:?}");
        }
    }
    assert!(gains
        .iter()
        .all(|g| near(*g, 1.25) || near(*g, 0.75) || near(*g, 1.0)));
    // Over the whole cycle it delivers the bottleneck rate.
    sent_before = path.delivered - sent_before;
    let rate = sent_before as f64 / 4.0;
    assert!((rate / RATE as f64 - 1.0).abs() < 0.03, "{rate} B/s");
}

#[test]
fn probes_rtt_after_ten_seconds_without_a_lower_one() {
    let mut path = path();
    let mut entered = None;
    let mut left = None;
    let mut drained_to = usize::MAX;
    path.run_until(Duration::from_secs(12), |p| {
        let probing = p.cc.state() == BbrState::ProbeRtt;
        if probing {
            assert_eq!(p.cc.window(), 4 * MDS);
            drained_to = drained_to.min(p.in_flight);
            entered.get_or_insert(p.elapsed());
        } else if entered.is_some() && left.is_none() {
            left = Some(p.elapsed());
        }
    });
    // The minimum was first (and last) seen with the first ack, 41 ms in.
    let entered = entered.expect("ProbeRtt happens");
    let first_ack = BASE_RTT + Duration::from_millis(1);
    assert!(entered > first_ack + TEN_S, "{entered:?}");
    assert!(entered < first_ack + TEN_S + Duration::from_millis(50));
    assert!(drained_to <= 4 * MDS, "in flight {drained_to}");
    let left = left.expect("ProbeRtt ends");
    let held = left - entered;
    assert!(held >= PROBE_RTT_TIME, "held {held:?}");
    assert!(held < PROBE_RTT_TIME + 4 * BASE_RTT, "held {held:?}");
    assert_eq!(path.cc.state(), BbrState::ProbeBw);
    assert!(path.cc.window() > 50 * MDS);
}

#[test]
fn a_lower_round_trip_postpones_probe_rtt() {
    let t0 = Instant::now();
    let mut cc = Bbr::new(t0, MDS);
    let mut delivered = 0;
    let mut rtt = Duration::from_millis(50);
    for i in 1..=1200u32 {
        let now = t0 + Duration::from_millis(10) * i;
        // A new minimum every 5 s.
        if i % 500 == 0 {
            rtt -= Duration::from_millis(1);
        }
        delivered += 10 * MDS as u64;
        cc.on_sent(now, MDS, 20 * MDS);
        cc.on_ack(now, now - rtt, 10 * MDS, false, &RttEstimator::new(rtt));
        let (delivery_rate, app_limited) = (RATE, false);
        let sample = RateSample {
            delivery_rate,
            rtt,
            app_limited,
            delivered,
            prior_delivered: delivered - 10 * MDS as u64,
        };
        cc.on_rate_sample(now, &sample);
        assert_ne!(cc.state(), BbrState::ProbeRtt, "at {i}");
    }
    assert_eq!(cc.min_rtt(), Some(Duration::from_millis(48)));
}

#[test]
fn loss_conserves_packets_for_a_round_then_restores() {
    let mut path = path();
    path.run_until(Duration::from_secs(2), |_| {});
    let before = path.cc.window();
    path.lose(10);
    assert_eq!(path.cc.window(), path.in_flight.max(4 * MDS));
    // A later loss of a packet sent before recovery: its bytes come off.
    let (now, in_flight) = (path.now, path.in_flight);
    path.cc.on_congestion_event(now, now - BASE_RTT, false, MDS);
    assert_eq!(path.cc.window(), (in_flight - MDS).max(4 * MDS));
    // Once a packet sent after the loss is acknowledged, the window is back.
    path.run_until(Duration::from_secs(2) + BASE_RTT * 3, |_| {});
    assert!(path.cc.window() >= before, "{}", path.cc.window());
    let now = path.now;
    path.cc.on_congestion_event(now, now, true, path.in_flight);
    assert_eq!(path.cc.window(), 4 * MDS);
}

#[test]
fn max_filter_forgets_after_ten_rounds() {
    let mut f = MaxFilter::default();
    f.update(1, 100);
    f.update(2, 50);
    assert_eq!(f.get(), 100);
    f.update(10, 60);
    assert_eq!(f.get(), 100);
    f.update(11, 70);
    assert_eq!(f.get(), 70);
}

#[test]
fn a_round_ends_when_a_packet_sent_in_it_is_acknowledged() {
    let t0 = Instant::now();
    let mut cc = Bbr::new(t0, MDS);
    let mds = MDS as u64;
    let sample = |delivered: u64, prior_delivered: u64| RateSample {
        delivery_rate: RATE,
        rtt: BASE_RTT,
        app_limited: false,
        delivered,
        prior_delivered,
    };
    cc.on_rate_sample(t0, &sample(2 * mds, 0));
    assert_eq!(cc.round_count, 1);
    // Packets sent before that acknowledgement arrived: the same round,
    // however much they deliver.
    for n in 3..30 {
        cc.on_rate_sample(t0, &sample(n * mds, mds));
    }
    assert_eq!(cc.round_count, 1);
    // The first one sent after it ends the round.
    cc.on_rate_sample(t0, &sample(30 * mds, 2 * mds));
    assert_eq!(cc.round_count, 2);
}

#[test]
fn probe_rtt_keeps_the_estimate_on_a_short_round_trip() {
    // At 20 ms, ProbeRtt's 200 ms span more rounds than the bandwidth
    // filter holds: its small-window samples must not replace the estimate.
    let start = Instant::now();
    let rtt = Duration::from_millis(20);
    let mut path = Bottleneck::new(Bbr::new(start, MDS), start, MDS, RATE, rtt);
    path.run_until(Duration::from_secs(2), |_| {});
    let mut probed = false;
    let mut lowest = u64::MAX;
    path.run_until(Duration::from_secs(13), |p| {
        probed |= p.cc.state() == BbrState::ProbeRtt;
        lowest = lowest.min(p.cc.bandwidth());
    });
    assert!(probed, "ProbeRtt happens");
    assert!(ratio(lowest, RATE) > 0.97, "estimate fell to {lowest}");
    assert_eq!(path.cc.state(), BbrState::ProbeBw);
}

#[test]
fn probing_advances_when_packets_are_smaller_than_the_datagram() {
    // The controller counts in 1472-byte datagrams, the packets are 1253
    // bytes, and the path (500 kbit/s over 20 ms) holds two of them: twice
    // its bandwidth-delay product is below the minimum window, which then
    // is the window, and the probe's target must still be reachable by a
    // sender that checks for room for a whole datagram.
    let start = Instant::now();
    let (rate, packet) = (62_500, 1253);
    let rtt = Duration::from_millis(20);
    let cc = Bbr::new(start, 1472);
    let mut path = Bottleneck::new(cc, start, packet, rate, rtt);
    path.run_until(Duration::from_secs(5), |_| {});
    assert_eq!(path.cc.state(), BbrState::ProbeBw);
    let before = path.delivered;
    let mut phases = 0;
    let mut index = path.cc.cycle_index;
    path.run_until(Duration::from_secs(15), |p| {
        if p.cc.cycle_index != index {
            index = p.cc.cycle_index;
            phases += 1;
        }
    });
    // One phase per minimum round trip (40 ms with serialisation), ended by
    // the first acknowledgement after it: about 200 in 10 s. A probe that
    // cannot end stops the cycle.
    assert!(phases > 150, "{phases} phases in 10 s");
    let delivered = (path.delivered - before) as f64 / 10.0;
    assert!(delivered > 0.95 * rate as f64, "{delivered} B/s");
}
