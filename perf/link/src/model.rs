//! One direction of the link, without sockets or a clock: arrival time and
//! size in, a verdict out. The relay's scheduling threads feed it; tests
//! feed it made-up times and get the same verdicts for the same seed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{JitterKind, LinkDirection};
use crate::rng::SplitMix64;

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It is delivered at `at`; a duplicate copy right after it when
    /// `duplicate`.
    Deliver {
        /// When it leaves the far end of the link.
        at: Instant,
        /// Whether a second copy follows it.
        duplicate: bool,
        /// Whether it was held back by the reorder delay.
        reordered: bool,
    },
    /// Lost on the wire (after it took its share of the rate).
    Lost,
    /// Dropped at the tail of a full queue.
    QueueFull,
}

/// The state of one direction: the bottleneck's queue, the burst-loss
/// chain, the last in-order delivery time, and the random stream.
#[derive(Debug, Clone)]
pub struct DirectionModel {
    config: LinkDirection,
    rng: SplitMix64,
    /// Gilbert–Elliott: in the bad state.
    bad: bool,
    /// When the link finishes sending what it has accepted.
    busy_until: Option<Instant>,
    /// Accepted datagrams not yet fully sent: (time it is sent, bytes).
    queue: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
    /// Delivery time of the last datagram delivered in order.
    last_delivery: Option<Instant>,
    /// The latest arrival time seen.
    latest: Option<Instant>,
}

impl DirectionModel {
    /// A direction with `config` (assumed valid, see
    /// [`LinkDirection::validate`]) and its own random stream.
    pub fn new(config: LinkDirection, seed: u64) -> Self {
        DirectionModel {
            config,
            rng: SplitMix64::new(seed),
            bad: false,
            busy_until: None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            last_delivery: None,
            latest: None,
        }
    }

    /// The verdict on a datagram of `len` bytes arriving at `now`. Arrival
    /// times should not go backwards; one that does is taken as arriving at
    /// the latest time seen.
    pub fn on_datagram(&mut self, now: Instant, len: usize) -> Verdict {
        // The bottleneck: serialisation at `rate` behind a drop-tail queue.
        let now = match self.latest {
            Some(latest) if latest > now => latest,
            _ => now,
        };
        self.latest = Some(now);
        let departure = match self.config.rate {
            None => now,
            Some(rate) => {
                while let Some(&(done, bytes)) = self.queue.front() {
                    if done > now {
                        break;
                    }
                    self.queue.pop_front();
                    self.queued_bytes -= bytes;
                }
                if self.queued_bytes > 0 && self.queued_bytes + len > self.config.queue {
                    return Verdict::QueueFull;
                }
                let start = self.busy_until.map_or(now, |b| b.max(now));
                let nanos = (len as u128 * 8 * 1_000_000_000).div_ceil(rate as u128);
                let done = start + Duration::from_nanos(nanos.min(u64::MAX as u128) as u64);
                self.busy_until = Some(done);
                self.queue.push_back((done, len));
                self.queued_bytes += len;
                done
            }
        };
        // Loss on the wire. Always the same number of draws per datagram,
        // so that a seed replays the same pattern whatever the settings.
        let lost = match self.config.burst_loss {
            Some(ge) => {
                let flip = self.rng.chance(if self.bad { ge.r } else { ge.p });
                if flip {
                    self.bad = !self.bad;
                }
                self.rng
                    .chance(if self.bad { ge.loss_bad } else { ge.loss_good })
            }
            None => {
                let _ = self.rng.next_u64();
                self.rng.chance(self.config.loss)
            }
        };
        let jitter = self.jitter();
        let reordered = self.rng.chance(self.config.reorder);
        let duplicate = self.rng.chance(self.config.duplicate);
        if lost {
            return Verdict::Lost;
        }
        let base = departure + self.config.delay;
        let mut at = if jitter >= 0.0 {
            base + Duration::from_secs_f64(jitter)
        } else {
            base.checked_sub(Duration::from_secs_f64(-jitter))
                .unwrap_or(departure)
                .max(departure)
        };
        if reordered {
            at += self.config.reorder_delay;
        } else {
            // Jitter never reorders: not before the last in-order delivery.
            if let Some(last) = self.last_delivery {
                at = at.max(last);
            }
            self.last_delivery = Some(at);
        }
        Verdict::Deliver {
            at,
            duplicate,
            reordered,
        }
    }

    /// A jitter draw in seconds (two uniform draws for the uniform kind as
    /// well, to keep the stream's length fixed).
    fn jitter(&mut self) -> f64 {
        let j = self.config.jitter.as_secs_f64();
        match self.config.jitter_kind {
            JitterKind::Uniform => {
                let u = self.rng.next_f64();
                let _ = self.rng.next_u64();
                let _ = self.rng.next_u64();
                let _ = self.rng.next_u64();
                (2.0 * u - 1.0) * j
            }
            JitterKind::Normal => {
                // Irwin–Hall: four U(-1, 1) have variance 4/3.
                let sum: f64 = (0..4).map(|_| 2.0 * self.rng.next_f64() - 1.0).sum();
                sum / (4.0f64 / 3.0).sqrt() * j
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delay_only() {
        let t0 = Instant::now();
        let mut m = DirectionModel::new(
            LinkDirection {
                delay: ms(10),
                ..LinkDirection::default()
            },
            1,
        );
        for i in 0..100 {
            let now = t0 + Duration::from_micros(i * 10);
            match m.on_datagram(now, 1200) {
                Verdict::Deliver { at, .. } => assert_eq!(at, now + ms(10)),
                v => panic!("{v:?}"),
            }
        }
    }

    #[test]
    fn loss_is_deterministic_and_near_its_rate() {
        let config = LinkDirection {
            loss: 0.1,
            ..LinkDirection::default()
        };
        let t0 = Instant::now();
        let run = |seed| {
            let mut m = DirectionModel::new(config.clone(), seed);
            (0..20_000)
                .map(|_| m.on_datagram(t0, 100) == Verdict::Lost)
                .collect::<Vec<_>>()
        };
        let a = run(9);
        assert_eq!(a, run(9));
        assert_ne!(a, run(10));
        let lost = a.iter().filter(|l| **l).count();
        // 2,000 expected; 5 standard deviations (≈ 42 each) either side.
        assert!((1788..=2212).contains(&lost), "{lost}");
    }

    #[test]
    fn burst_loss_mean() {
        let ge = crate::GilbertElliott {
            p: 0.01,
            r: 0.25,
            loss_bad: 1.0,
            loss_good: 0.0,
        };
        let mut m = DirectionModel::new(
            LinkDirection {
                burst_loss: Some(ge),
                ..LinkDirection::default()
            },
            3,
        );
        let t0 = Instant::now();
        let n = 200_000;
        let verdicts: Vec<bool> = (0..n)
            .map(|_| m.on_datagram(t0, 10) == Verdict::Lost)
            .collect();
        let lost = verdicts.iter().filter(|l| **l).count() as f64 / n as f64;
        assert!(
            (lost - ge.mean_loss()).abs() < 0.01,
            "{lost} vs {}",
            ge.mean_loss()
        );
        // Bursts: losses come in runs averaging 1/r = 4.
        let runs = verdicts.windows(2).filter(|w| w[1] && !w[0]).count() as f64;
        let mean_run = verdicts.iter().filter(|l| **l).count() as f64 / runs;
        assert!((3.0..5.0).contains(&mean_run), "{mean_run}");
    }

    #[test]
    fn rate_serialises_and_queue_drops_tail() {
        // 1 Mbit/s: 1000 bytes take 8 ms. Queue of 4000 bytes.
        let mut m = DirectionModel::new(
            LinkDirection {
                rate: Some(1_000_000),
                queue: 4000,
                ..LinkDirection::default()
            },
            1,
        );
        let t0 = Instant::now();
        let verdicts: Vec<Verdict> = (0..10).map(|_| m.on_datagram(t0, 1000)).collect();
        for (i, v) in verdicts.iter().take(4).enumerate() {
            assert_eq!(
                *v,
                Verdict::Deliver {
                    at: t0 + ms(8 * (i as u64 + 1)),
                    duplicate: false,
                    reordered: false
                }
            );
        }
        assert!(verdicts[4..].iter().all(|v| *v == Verdict::QueueFull));
        // Once the first has left, one more fits.
        assert!(matches!(
            m.on_datagram(t0 + ms(8), 1000),
            Verdict::Deliver { at, .. } if at == t0 + ms(40)
        ));
        assert_eq!(m.on_datagram(t0 + ms(8), 1000), Verdict::QueueFull);
    }

    #[test]
    fn oversized_datagram_fits_an_empty_queue() {
        let mut m = DirectionModel::new(
            LinkDirection {
                rate: Some(1_000_000),
                queue: 100,
                ..LinkDirection::default()
            },
            1,
        );
        assert!(matches!(
            m.on_datagram(Instant::now(), 1400),
            Verdict::Deliver { .. }
        ));
    }

    #[test]
    fn jitter_keeps_order_unless_reordering() {
        let t0 = Instant::now();
        let mut m = DirectionModel::new(
            LinkDirection {
                delay: ms(10),
                jitter: ms(3),
                jitter_kind: JitterKind::Normal,
                ..LinkDirection::default()
            },
            5,
        );
        let mut last = t0;
        let mut spread = (Duration::MAX, Duration::ZERO);
        for i in 0..5000 {
            let now = t0 + Duration::from_millis(i);
            let Verdict::Deliver { at, reordered, .. } = m.on_datagram(now, 100) else {
                panic!()
            };
            assert!(!reordered);
            assert!(at >= last, "reordered at {i}");
            last = at;
            spread = (spread.0.min(at - now), spread.1.max(at - now));
        }
        assert!(spread.0 < ms(7) && spread.1 > ms(13), "{spread:?}");

        let mut m = DirectionModel::new(
            LinkDirection {
                delay: ms(10),
                reorder: 0.1,
                reorder_delay: ms(5),
                ..LinkDirection::default()
            },
            5,
        );
        let times: Vec<Instant> = (0..1000)
            .filter_map(
                |i| match m.on_datagram(t0 + Duration::from_millis(i), 100) {
                    Verdict::Deliver { at, .. } => Some(at),
                    _ => None,
                },
            )
            .collect();
        let inversions = times.windows(2).filter(|w| w[1] < w[0]).count();
        assert!((50..=150).contains(&inversions), "{inversions}");
    }

    #[test]
    fn duplicates_near_their_rate() {
        let mut m = DirectionModel::new(
            LinkDirection {
                duplicate: 0.25,
                ..LinkDirection::default()
            },
            11,
        );
        let t0 = Instant::now();
        let dups = (0..10_000)
            .filter(|_| {
                matches!(
                    m.on_datagram(t0, 10),
                    Verdict::Deliver {
                        duplicate: true,
                        ..
                    }
                )
            })
            .count();
        assert!((2300..=2700).contains(&dups), "{dups}");
    }
}
