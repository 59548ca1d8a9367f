//! Workload `channels`: reliable and unreliable message channels over a
//! lossy 20 ms link and over plain loopback, stt's channels against quinn
//! and renet.
//!
//! Paths, each a fresh connection per run: plain loopback (no relay), and
//! through the in-process link emulator ([`stt_link::Relay`]: 10 ms each way,
//! so a 20 ms round trip, at 0%, 1% and 5% loss each way, no rate limit
//! unless `--rate`). Tests:
//!
//! - **bulk**: `--mib` MiB as 1200-byte messages on one reliable-ordered
//!   channel; goodput from the first send to the last byte received, or to
//!   `--bulk-cap` seconds if the transfer has not finished by then (then
//!   what arrived in order by the cap counts, and the row says so);
//! - **latency**: 64-byte reliable-ordered messages at `--msg-rate` per
//!   second for `--seconds`; one-way latency (the sender's timestamp is in
//!   the message; both ends share the process's clock) in an HDR
//!   histogram; messages not delivered within [`GRACE`] of the last send
//!   are counted as lost;
//! - **unreliable**: 1200-byte unreliable messages as fast as the API takes
//!   them for `--seconds`; offered, refused by the API, delivered.
//!
//! Contenders ([`Contender`]): quinn ([`quinn`]), renet ([`renet`]) and
//! stt's channels ([`stt`]; a second stt row for the unreliable test only,
//! sending with `SendPolicy::ReplaceOldest`), alternating their order round
//! by round. Adding a contender is a module with a `run(&Test, &mut Net)`
//! and a line in [`Contender`].

mod quinn;
mod renet;
mod stt;
mod tables;

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stt_link::{LinkConfig, LinkDirection, Relay, RelayStats};

use crate::Args;

pub type BoxError = crate::quic::BoxError;

/// Size of a bulk and of an unreliable message.
pub const BIG: usize = 1200;
/// Size of a latency message.
pub const SMALL: usize = 64;
/// How long the latency receiver waits for stragglers after the last send;
/// the unreliable receiver's longest drain after the sender stopped.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long the unreliable receiver waits for more after the sender
/// stopped and nothing arrived (and it stops [`GRACE`] after the sender in
/// any case).
pub const QUIET: Duration = Duration::from_millis(300);
/// One-way delay of the emulated paths.
pub const ONE_WAY: Duration = Duration::from_millis(10);

/// One measurement to make.
#[derive(Debug, Clone, Copy)]
pub enum Test {
    /// `bytes` in [`BIG`]-byte reliable-ordered messages, stopped at `cap`.
    Bulk { bytes: u64, cap: Duration },
    /// [`SMALL`]-byte reliable-ordered messages, `rate` per second, for
    /// `duration`.
    Latency { rate: u32, duration: Duration },
    /// [`BIG`]-byte unreliable messages as fast as the API allows.
    Unreliable { duration: Duration },
}

impl Test {
    /// The tests' names, in the order [`workload`] runs them.
    pub const KINDS: [&'static str; 3] = ["bulk", "latency", "unreliable"];
}

/// What a test measured.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Bulk(Bulk),
    Latency(Latency),
    Unreliable(Unreliable),
}

/// A bulk transfer.
#[derive(Debug, Clone, Copy)]
pub struct Bulk {
    /// Bytes received in order.
    pub delivered: u64,
    /// Bytes the test meant to send.
    pub target: u64,
    /// From the first send to the last byte received (or to the cap).
    pub seconds: f64,
}

impl Bulk {
    pub fn mbits(&self) -> f64 {
        if self.seconds > 0.0 {
            self.delivered as f64 * 8.0 / self.seconds / 1e6
        } else {
            0.0
        }
    }

    pub fn complete(&self) -> bool {
        self.delivered >= self.target
    }
}

/// The latency test's tally.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub sent: u64,
    pub delivered: u64,
    /// One-way, in milliseconds.
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The unreliable test's tally.
#[derive(Debug, Clone, Copy)]
pub struct Unreliable {
    /// Messages the API accepted.
    pub accepted: u64,
    /// Messages the API refused (see each contender's notes for what
    /// counts as a refusal).
    pub refused: u64,
    pub delivered: u64,
    /// Delivered messages per second, first to last arrival.
    pub rate: f64,
}

/// The network path of one run: loopback, or through a fresh relay.
#[derive(Debug, Clone, Copy)]
pub struct Path {
    /// Through the emulator (20 ms round trip) or plain loopback.
    pub emulated: bool,
    /// Loss probability each way (emulated only).
    pub loss: f64,
    /// Rate limit each way in bit/s (emulated only).
    pub rate: Option<u64>,
}

impl Path {
    pub fn label(&self) -> String {
        if !self.emulated {
            return "loopback".into();
        }
        let rate = match self.rate {
            Some(r) => format!(", {:.0} Mbit/s", r as f64 / 1e6),
            None => String::new(),
        };
        format!(
            "20 ms RTT, {}% loss{rate}",
            (self.loss * 100.0 * 100.0).round() / 100.0
        )
    }
}

/// The path as a contender's run sees it: it binds its server, then asks
/// [`Net::route`] where its client should send.
#[derive(Debug)]
pub struct Net {
    path: Path,
    seed: u64,
    relay: Option<Relay>,
}

impl Net {
    fn new(path: Path, seed: u64) -> Net {
        Net {
            path,
            seed,
            relay: None,
        }
    }

    /// The address a client dials to reach `server` over this path: the
    /// server itself on loopback, otherwise a fresh relay's (kept until the
    /// run ends). Call once per run.
    pub fn route(&mut self, server: SocketAddr) -> io::Result<SocketAddr> {
        if !self.path.emulated {
            return Ok(server);
        }
        let direction = LinkDirection {
            delay: ONE_WAY,
            loss: self.path.loss,
            rate: self.path.rate,
            ..LinkDirection::default()
        };
        let relay = Relay::start(
            LinkConfig::symmetric(direction).with_seed(self.seed),
            server,
        )?;
        let addr = relay.local_addr();
        self.relay = Some(relay);
        Ok(addr)
    }

    /// The relay's counters, if there is one (then dropping it).
    fn finish(&mut self) -> Option<RelayStats> {
        self.relay.take().map(|r| {
            // Let the last scheduled datagrams go out before reading.
            std::thread::sleep(Duration::from_millis(30));
            r.stats()
        })
    }
}

/// The contenders, dispatched by [`Contender::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    Quinn,
    Renet,
    /// stt's channels, default configuration; unreliable sends with
    /// `SendPolicy::Wait` (what `send_channel` does).
    Stt,
    /// stt's channels, default configuration; unreliable sends with
    /// `SendPolicy::ReplaceOldest` (the unreliable test only).
    SttReplace,
}

impl Contender {
    pub const ALL: [Contender; 4] = [
        Contender::Quinn,
        Contender::Renet,
        Contender::Stt,
        Contender::SttReplace,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Contender::Quinn => "quinn 0.11 (streams / datagrams)",
            Contender::Renet => "renet 2 + netcode (1 ms tick)",
            Contender::Stt => "stt channels (defaults; Wait)",
            Contender::SttReplace => "stt channels (defaults; ReplaceOldest)",
        }
    }

    /// Whether this contender has a row for `test`.
    pub fn measures(self, test: &Test) -> bool {
        match self {
            Contender::SttReplace => matches!(test, Test::Unreliable { .. }),
            _ => true,
        }
    }

    pub fn run(self, test: &Test, net: &mut Net) -> Result<Measured, BoxError> {
        match self {
            Contender::Quinn => quinn::run(test, net).map(Measured::from),
            Contender::Renet => renet::run(test, net).map(Measured::from),
            Contender::Stt => stt::run(test, net, ::stt::SendPolicy::Wait),
            Contender::SttReplace => stt::run(test, net, ::stt::SendPolicy::ReplaceOldest),
        }
    }
}

/// What a run measured, and what the library itself reported at its end
/// (stt only: its channel statistics and node counters).
#[derive(Debug, Clone)]
pub struct Measured {
    pub outcome: Outcome,
    pub stt: Option<stt::Report>,
}

impl From<Outcome> for Measured {
    fn from(outcome: Outcome) -> Self {
        Measured { outcome, stt: None }
    }
}

/// Nanoseconds since the first call in this process: the clock both ends
/// of a latency run share.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A message of `size` bytes carrying `seq` and the time now.
pub fn stamped(size: usize, seq: u64) -> Vec<u8> {
    let mut m = vec![0xAB; size];
    m[..8].copy_from_slice(&seq.to_be_bytes());
    m[8..16].copy_from_slice(&now_ns().to_be_bytes());
    m
}

/// The sequence number and timestamp of a message from [`stamped`].
pub fn read_stamp(m: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_be_bytes(m.get(..8)?.try_into().ok()?);
    let ns = u64::from_be_bytes(m.get(8..16)?.try_into().ok()?);
    Some((seq, ns))
}

/// The receiving end of a reliable-ordered test: checks the order, counts
/// bytes and records one-way latencies.
pub struct Receiver {
    next: u64,
    pub delivered: u64,
    pub bytes: u64,
    pub last: Option<Instant>,
    hist: Histogram<u64>,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver::new()
    }
}

impl Receiver {
    pub fn new() -> Receiver {
        Receiver {
            next: 0,
            delivered: 0,
            bytes: 0,
            last: None,
            hist: crate::common::histogram(),
        }
    }

    /// One message in; an error if it is out of order or malformed (a
    /// reliable-ordered channel must never do that).
    pub fn message(&mut self, m: &[u8]) -> Result<(), BoxError> {
        let (seq, ns) = read_stamp(m).ok_or("short message")?;
        if seq != self.next {
            return Err(format!("message {seq} arrived, expected {}", self.next).into());
        }
        self.next += 1;
        self.delivered += 1;
        self.bytes += m.len() as u64;
        self.last = Some(Instant::now());
        self.hist
            .saturating_record(now_ns().saturating_sub(ns).max(1));
        Ok(())
    }

    pub fn latency(&self, sent: u64) -> Latency {
        let ms = |ns: u64| ns as f64 / 1e6;
        Latency {
            sent,
            delivered: self.delivered,
            p50: ms(self.hist.value_at_quantile(0.5)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            max: ms(self.hist.max()),
        }
    }

    pub fn bulk(&self, target: u64, t0: Instant, cap: Duration) -> Bulk {
        let seconds = if self.bytes >= target {
            self.last.map_or(cap, |l| l - t0).as_secs_f64()
        } else {
            cap.as_secs_f64()
        };
        Bulk {
            delivered: self.bytes,
            target,
            seconds,
        }
    }
}

/// The paths of one run: loopback, then 20 ms RTT at 0%, 1% and 5% loss.
pub fn paths(rate: Option<u64>) -> Vec<Path> {
    let mut v = vec![Path {
        emulated: false,
        loss: 0.0,
        rate: None,
    }];
    for loss in [0.0, 0.01, 0.05] {
        v.push(Path {
            emulated: true,
            loss,
            rate,
        });
    }
    v
}

/// Every run's record, by path, test, contender and round.
pub type Records = Vec<Vec<Vec<Vec<Record>>>>;

/// One run's record: what it measured (or why not) and the relay's
/// counters.
#[derive(Debug)]
pub struct Record {
    pub outcome: Result<Outcome, String>,
    pub relay: Option<RelayStats>,
    /// stt's own statistics at the run's end.
    pub stt: Option<stt::Report>,
}

pub fn workload(args: &Args) -> String {
    let rounds = if args.runs_given { args.runs } else { 3 };
    let paths = paths(args.link_rate);
    let seconds = if args.seconds_given {
        args.seconds
    } else {
        2.0
    };
    let tests = [
        Test::Bulk {
            bytes: args.mib * (1 << 20),
            cap: Duration::from_secs_f64(args.bulk_cap),
        },
        Test::Latency {
            rate: args.msg_rate,
            duration: Duration::from_secs_f64(seconds),
        },
        Test::Unreliable {
            duration: Duration::from_secs_f64(seconds),
        },
    ];
    // [path][test][contender][round]
    let mut records: Records = (0..paths.len())
        .map(|_| {
            (0..tests.len())
                .map(|_| (0..Contender::ALL.len()).map(|_| Vec::new()).collect())
                .collect()
        })
        .collect();
    let started = Instant::now();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..Contender::ALL.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (pi, path) in paths.iter().enumerate() {
            for (ti, test) in tests.iter().enumerate() {
                for &ci in &order {
                    let contender = Contender::ALL[ci];
                    if !contender.measures(test) {
                        continue;
                    }
                    let label = format!(
                        "{}, {}, {}",
                        path.label(),
                        Test::KINDS[ti],
                        contender.label()
                    );
                    if args
                        .only
                        .as_ref()
                        .is_some_and(|o| !label.contains(o.as_str()))
                    {
                        continue;
                    }
                    // The same loss pattern for every contender of a round.
                    let mut net = Net::new(*path, 0x5EED + round as u64);
                    let (outcome, report) = match contender.run(test, &mut net) {
                        Ok(m) => (Ok(m.outcome), m.stt),
                        Err(e) => (Err(e.to_string()), None),
                    };
                    let relay = net.finish();
                    eprintln!(
                        "round {}/{rounds} ({:.0} s): {label}: {}{}",
                        round + 1,
                        started.elapsed().as_secs_f64(),
                        tables::describe(&outcome),
                        relay.map_or(String::new(), |r| format!(
                            "; relay: forward lost {} of {}, backward lost {} of {}, overload drops {}",
                            r.forward.dropped_loss,
                            r.forward.received,
                            r.backward.dropped_loss,
                            r.backward.received,
                            r.forward.dropped_overload + r.backward.dropped_overload
                        ))
                    );
                    if let Some(r) = &report {
                        eprintln!("  stt: {}", r.describe());
                    }
                    records[pi][ti][ci].push(Record {
                        outcome,
                        relay,
                        stt: report,
                    });
                }
            }
        }
    }
    tables::report(args, rounds, seconds, &paths, &tests, &records)
}
