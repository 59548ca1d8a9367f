//! A virtual-time network for pairs of [`Channels`]: per-direction delay,
//! jitter, loss, duplication, reordering, and a bottleneck with a rate and
//! a bounded drop-tail queue that every pair shares. No sockets, no
//! sleeps, deterministic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::session::channel::{ChannelConfig, Channels, Delivered};

/// A small deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// One direction of the link.
#[derive(Debug, Clone)]
pub struct Link {
    pub delay: Duration,
    pub jitter: Duration,
    pub loss: f64,
    pub duplicate: f64,
    /// Probability that a packet is held back an extra `delay`.
    pub reorder: f64,
    /// Bottleneck rate in bytes per second, if any.
    pub rate: Option<u64>,
    /// Bytes the bottleneck queue holds (drop-tail).
    pub queue: usize,
}

impl Link {
    pub fn delay(delay: Duration) -> Self {
        Self {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            rate: None,
            queue: usize::MAX,
        }
    }
}

#[derive(Debug, Default)]
struct Bottleneck {
    /// Departure times and sizes of packets queued or on the wire.
    queued: VecDeque<(Instant, usize)>,
    busy_until: Option<Instant>,
    dropped: u64,
    max_queued: usize,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Reverse<Instant>,
    order: Reverse<u64>,
    pair: usize,
    to: usize,
    pn: u64,
    bytes: Vec<u8>,
}

/// Pairs of endpoints and the network between the two sides.
pub struct Sim {
    pub now: Instant,
    pub ends: Vec<[Channels; 2]>,
    pub links: [Link; 2],
    bottleneck: [Bottleneck; 2],
    next_pn: Vec<[u64; 2]>,
    seen: Vec<[HashSet<u64>; 2]>,
    wire: BinaryHeap<InFlight>,
    order: u64,
    pub rng: Rng,
    /// Messages delivered to each end, in delivery order.
    pub delivered: Vec<[Vec<Delivered>; 2]>,
    /// Whether each end's application takes what arrives.
    pub consuming: [bool; 2],
    /// Bytes each end put on the wire, and bytes that arrived at it.
    pub wire_bytes: Vec<[u64; 2]>,
    pub arrived_bytes: Vec<[u64; 2]>,
    pub errors: Vec<String>,
}

impl Sim {
    pub fn new(config: ChannelConfig, links: [Link; 2], seed: u64) -> Self {
        Self::with_pairs(config, links, seed, 1)
    }

    /// `pairs` pairs of endpoints sharing the links.
    pub fn with_pairs(config: ChannelConfig, links: [Link; 2], seed: u64, pairs: usize) -> Self {
        let now = Instant::now();
        let datagram = Some(1472);
        let make = |c: &ChannelConfig| Channels::new(c.clone(), now, datagram, None, None);
        Self {
            now,
            ends: (0..pairs).map(|_| [make(&config), make(&config)]).collect(),
            links,
            bottleneck: Default::default(),
            next_pn: vec![[0; 2]; pairs],
            seen: (0..pairs).map(|_| Default::default()).collect(),
            wire: BinaryHeap::new(),
            order: 0,
            rng: Rng::new(seed),
            delivered: (0..pairs).map(|_| [Vec::new(), Vec::new()]).collect(),
            consuming: [true; 2],
            wire_bytes: vec![[0; 2]; pairs],
            arrived_bytes: vec![[0; 2]; pairs],
            errors: Vec::new(),
        }
    }

    /// Starts pair `pair` at a later time (its endpoints are made now).
    pub fn restart_pair(&mut self, pair: usize, config: ChannelConfig) {
        let make = || Channels::new(config.clone(), self.now, Some(1472), None, None);
        self.ends[pair] = [make(), make()];
    }

    /// Sends everything both ends have ready now.
    fn flush(&mut self) {
        let mut buf = Vec::with_capacity(2048);
        for pair in 0..self.ends.len() {
            for side in 0..2 {
                // Bounded: a bug that writes forever must fail, not hang.
                for _ in 0..100_000 {
                    buf.clear();
                    let pn = self.next_pn[pair][side];
                    let Some(size) = self.ends[pair][side].poll_packet(self.now, pn, &mut buf)
                    else {
                        break;
                    };
                    assert_eq!(size, buf.len() + 45);
                    self.next_pn[pair][side] += 1;
                    self.wire_bytes[pair][side] += size as u64;
                    self.transmit(pair, side, pn, &buf, size);
                }
            }
        }
    }

    fn transmit(&mut self, pair: usize, from: usize, pn: u64, bytes: &[u8], size: usize) {
        let link = self.links[from].clone();
        let mut departure = self.now;
        if let Some(rate) = link.rate {
            let b = &mut self.bottleneck[from];
            while b.queued.front().is_some_and(|&(t, _)| t <= self.now) {
                b.queued.pop_front();
            }
            let held: usize = b.queued.iter().map(|&(_, s)| s).sum();
            if held + size > link.queue {
                b.dropped += 1;
                return;
            }
            let start = b.busy_until.map_or(self.now, |t| t.max(self.now));
            departure = start + Duration::from_nanos(size as u64 * 1_000_000_000 / rate);
            b.busy_until = Some(departure);
            b.queued.push_back((departure, size));
            b.max_queued = b.max_queued.max(held + size);
        }
        if self.rng.chance(link.loss) {
            return;
        }
        let copies = if self.rng.chance(link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = departure + link.delay;
            if !link.jitter.is_zero() {
                at += Duration::from_nanos(self.rng.below(link.jitter.as_nanos() as u64));
            }
            if self.rng.chance(link.reorder) {
                at += link.delay;
            }
            self.order += 1;
            self.wire.push(InFlight {
                at: Reverse(at),
                order: Reverse(self.order),
                pair,
                to: 1 - from,
                pn,
                bytes: bytes.to_vec(),
            });
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let mut t = self.wire.peek().map(|p| p.at.0);
        for e in self.ends.iter().flatten() {
            if let Some(x) = e.poll_timeout() {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        }
        t
    }

    /// Runs until `until` or until nothing is left to do; `app` is called
    /// at every step to queue messages.
    pub fn run(&mut self, until: Instant, mut app: impl FnMut(&mut Sim)) {
        let mut still = 0u64;
        loop {
            app(self);
            for pair in 0..self.ends.len() {
                for side in 0..2 {
                    if self.consuming[side] {
                        self.consume(pair, side);
                    }
                }
            }
            self.flush();
            let Some(next) = self.next_event() else {
                break;
            };
            if next > until {
                self.now = until;
                break;
            }
            if next <= self.now {
                still += 1;
                assert!(still < 100_000, "a timer keeps firing without progress");
            } else {
                still = 0;
            }
            self.now = self.now.max(next);
            while self.wire.peek().is_some_and(|p| p.at.0 <= self.now) {
                let Some(p) = self.wire.pop() else { break };
                // The session's replay window drops a second copy of a
                // packet number; this network stands in for it.
                if !self.seen[p.pair][p.to].insert(p.pn) {
                    continue;
                }
                self.arrived_bytes[p.pair][p.to] += p.bytes.len() as u64 + 45;
                let max_sent = self.next_pn[p.pair][p.to].checked_sub(1);
                let end = &mut self.ends[p.pair][p.to];
                if let Err(e) = end.on_packet(self.now, p.pn, &p.bytes, max_sent) {
                    self.errors.push(e.to_string());
                }
            }
            for end in self.ends.iter_mut().flatten() {
                if end.poll_timeout().is_some_and(|t| t <= self.now) {
                    end.handle_timeout(self.now);
                }
            }
        }
    }

    /// The application at `side` of `pair` takes what arrived.
    pub fn consume(&mut self, pair: usize, side: usize) {
        while let Some(d) = self.ends[pair][side].poll_delivered() {
            self.ends[pair][side].release(d.credit);
            self.delivered[pair][side].push(d);
        }
    }

    pub fn bottleneck_drops(&self, side: usize) -> u64 {
        self.bottleneck[side].dropped
    }

    pub fn bottleneck_max_queue(&self, side: usize) -> usize {
        self.bottleneck[side].max_queued
    }
}
