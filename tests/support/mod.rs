//! In-memory test driver for two sessions over a simulated link: virtual
//! time, latency, jitter, loss, duplication and a datagram size limit, all
//! from a seeded RNG so that every run repeats exactly (as quinn-proto's
//! `Pair`). [`hostile`]: what the hostile-network tests share (real nodes
//! on loopback).

#![allow(dead_code)]

pub mod hostile;

use std::time::{Duration, Instant};

use stt::crypto::{Identity, NetworkKey};
use stt::frame::SessionId;
use stt::session::{Event, Session, SessionConfig, SessionError, Transmits};

/// SplitMix64: small, seedable, good enough for fault injection.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

/// Faults applied to every datagram on the link, both ways.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    pub latency: Duration,
    pub jitter: Duration,
    pub loss: f64,
    pub duplicate: f64,
    /// Datagrams larger than this are dropped (and counted).
    pub max_datagram: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            max_datagram: usize::MAX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

pub struct InFlight {
    at: Instant,
    seq: u64,
    to: Side,
    bytes: Vec<u8>,
}

pub fn identity(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32]).unwrap()
}

pub fn network(seed: u8) -> NetworkKey {
    NetworkKey::from_seed(&[seed; 32]).unwrap()
}

/// A client session, a server (created from the first handshake datagram),
/// and the link between them.
pub struct Pair {
    pub now: Instant,
    pub client: Session,
    pub server: Option<Session>,
    pub server_config: SessionConfig,
    pub server_identity: Identity,
    pub server_network: NetworkKey,
    pub link: LinkConfig,
    pub rng: Rng,
    in_flight: Vec<InFlight>,
    seq: u64,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    /// Errors returned by handle_datagram / accept on each side.
    pub client_errors: Vec<SessionError>,
    pub server_errors: Vec<SessionError>,
    /// Every datagram put on the link, with its sender.
    pub sent: Vec<(Side, Vec<u8>)>,
    /// Copies the link dropped (loss), by sender.
    pub lost: Vec<(Side, Vec<u8>)>,
    pub oversize_dropped: usize,
}

impl Pair {
    pub fn new(config: SessionConfig, link: LinkConfig, seed: u64) -> Self {
        Self::with_networks(config.clone(), config, link, seed, 7, 7)
    }

    pub fn with_networks(
        client_config: SessionConfig,
        server_config: SessionConfig,
        link: LinkConfig,
        seed: u64,
        client_net: u8,
        server_net: u8,
    ) -> Self {
        let now = Instant::now();
        let mut rng = Rng::new(seed);
        let id = SessionId(rng.next_u64());
        let client =
            Session::connect(client_config, &identity(1), &network(client_net), id, now).unwrap();
        let mut p = Pair {
            now,
            client,
            server: None,
            server_config,
            server_identity: identity(2),
            server_network: network(server_net),
            link,
            rng,
            in_flight: Vec::new(),
            seq: 0,
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_errors: Vec::new(),
            server_errors: Vec::new(),
            sent: Vec::new(),
            lost: Vec::new(),
            oversize_dropped: 0,
        };
        p.collect();
        p
    }

    pub fn server(&mut self) -> &mut Session {
        self.server.as_mut().expect("server session exists")
    }

    /// Puts a datagram on the link from `from`.
    pub fn transmit(&mut self, from: Side, bytes: Vec<u8>) {
        self.sent.push((from, bytes.clone()));
        if bytes.len() > self.link.max_datagram {
            self.oversize_dropped += 1;
            return;
        }
        let to = match from {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let copies = if self.rng.unit() < self.link.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.rng.unit() < self.link.loss {
                self.lost.push((from, bytes.clone()));
                continue;
            }
            let jitter = if self.link.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.rng.below(self.link.jitter.as_nanos() as u64 * 2))
            };
            let at = self.now + self.link.latency.saturating_sub(self.link.jitter) + jitter;
            self.seq += 1;
            self.in_flight.push(InFlight {
                at,
                seq: self.seq,
                to,
                bytes: bytes.clone(),
            });
        }
    }

    /// Sends every datagram of `out` from `from`, then clears it.
    pub fn transmit_all(&mut self, from: Side, out: &mut Transmits) {
        let datagrams: Vec<Vec<u8>> = out.iter().map(|d| d.to_vec()).collect();
        out.clear();
        for d in datagrams {
            self.transmit(from, d);
        }
    }

    /// Drains transmits and events of both sessions.
    pub fn collect(&mut self) {
        let now = self.now;
        while let Some(d) = self.client.poll_transmit_at(now) {
            self.transmit(Side::Client, d);
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        if let Some(s) = self.server.as_mut() {
            let mut out = Vec::new();
            while let Some(d) = s.poll_transmit_at(now) {
                out.push(d);
            }
            while let Some(e) = s.poll_event() {
                self.server_events.push(e);
            }
            for d in out {
                self.transmit(Side::Server, d);
            }
        }
    }

    fn deliver(&mut self, to: Side, mut bytes: Vec<u8>) {
        let now = self.now;
        match to {
            Side::Client => {
                if let Err(e) = self.client.handle_datagram(now, &mut bytes) {
                    self.client_errors.push(e);
                }
            }
            Side::Server => match self.server.as_mut() {
                Some(s) => {
                    if let Err(e) = s.handle_datagram(now, &mut bytes) {
                        self.server_errors.push(e);
                    }
                }
                None => match Session::accept(
                    self.server_config.clone(),
                    &self.server_identity,
                    &self.server_network,
                    &bytes,
                    now,
                ) {
                    Ok(s) => self.server = Some(s),
                    Err(e) => self.server_errors.push(e),
                },
            },
        }
        self.collect();
    }

    /// Runs the simulation for `span` of virtual time.
    pub fn drive_for(&mut self, span: Duration) {
        let end = self.now + span;
        self.drive_until(end, |_| false);
    }

    /// Runs until `done` holds or `end` passes. Returns whether `done` held.
    pub fn drive_until(&mut self, end: Instant, mut done: impl FnMut(&Pair) -> bool) -> bool {
        loop {
            self.collect();
            if done(self) {
                return true;
            }
            // Next thing to happen: a delivery or a timer.
            let next_packet = self
                .in_flight
                .iter()
                .enumerate()
                .min_by_key(|(_, f)| (f.at, f.seq))
                .map(|(i, f)| (i, f.at));
            let client_timer = self.client.poll_timeout();
            let server_timer = self.server.as_ref().and_then(|s| s.poll_timeout());
            let next_timer = [client_timer, server_timer].into_iter().flatten().min();
            let next = match (next_packet, next_timer) {
                (Some((_, p)), Some(t)) => p.min(t),
                (Some((_, p)), None) => p,
                (None, Some(t)) => t,
                (None, None) => return false,
            };
            if next > end {
                self.now = end;
                return false;
            }
            self.now = self.now.max(next);
            if let Some((i, at)) = next_packet {
                if at <= self.now {
                    let f = self.in_flight.swap_remove(i);
                    self.deliver(f.to, f.bytes);
                    continue;
                }
            }
            let now = self.now;
            if client_timer.is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
            }
            if server_timer.is_some_and(|t| t <= now) {
                if let Some(s) = self.server.as_mut() {
                    s.handle_timeout(now);
                }
            }
        }
    }

    /// Drives until both sides are established (or `limit` passes).
    pub fn handshake(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        self.drive_until(end, |p| {
            p.client.is_established()
                && p.server.as_ref().is_some_and(|s| s.is_established())
                && p.in_flight.is_empty()
        })
    }

    /// Messages delivered to a side, in order.
    pub fn messages(events: &[Event]) -> Vec<(u32, Vec<u8>)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Message {
                    stream_id, payload, ..
                } => Some((*stream_id, payload.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Keeps in flight only the datagrams `keep` accepts (the others are
    /// lost on the way).
    pub fn in_flight_retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        self.in_flight.retain(|f| keep(&f.bytes));
    }
}
