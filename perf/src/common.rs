//! What every workload shares: CPU accounting, arrival tallies, medians and
//! spreads, the machine's description, and the results files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stt::frame::SessionId;
use stt::node::{on_reactor, Events, Message, Node, NodeEvent, RecvTimeoutError};

/// Socket buffers (receive and send) for every UDP contender alike.
pub const BUFFER: usize = 4 << 20;

/// A plain UDP socket on 127.0.0.1 with the same buffers stt gets (std
/// cannot set them, so setsockopt does).
pub fn big_std_socket() -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        let v = BUFFER as libc::c_int;
        // SAFETY: passes a live c_int and its size.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                opt,
                &v as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    s
}

/// One contender: runs one measurement, or `None` if it could not start.
pub type Contender<'a, T> = Box<dyn Fn() -> Option<T> + 'a>;

/// `Some(value)`, or `None` after saying what failed.
pub fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Option<T> {
    r.map_err(|e| eprintln!("  {what}: {e}")).ok()
}

/// One latency run's percentiles, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub const NAMES: [&'static str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }

    pub fn values(&self) -> [f64; 5] {
        [self.p50, self.p90, self.p99, self.p999, self.max]
    }
}

/// Round trips in nanoseconds, 1 ns to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Process CPU time (user + system), from getrusage.
/// One throughput measurement: what the receiver got, and the CPU it cost.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Messages per second the receiver got, first to last arrival.
    pub rate: f64,
    /// Process CPU time over wall time.
    pub cores: f64,
    /// Messages the receiver got.
    pub delivered: u64,
    /// Messages the sender's API accepted.
    pub sent: u64,
}

impl Sample {
    /// From the receiver's tally, the CPU time at the start, and the wall
    /// time the run took.
    pub fn measured(tally: &Tally, cpu0: Duration, wall: f64, sent: u64) -> Sample {
        Sample {
            rate: tally.rate(),
            cores: (cpu_time() - cpu0).as_secs_f64() / wall,
            delivered: tally.count,
            sent,
        }
    }
}

pub fn cpu_time() -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The next event of a node's channel: taken at once when one waits (no
/// clock read, as a plain blocking receive), otherwise waited for up to
/// `timeout`.
pub fn next_event(events: &Events, timeout: Duration) -> Result<NodeEvent, RecvTimeoutError> {
    match events.try_recv() {
        Ok(ev) => Ok(ev),
        Err(_) => events.recv_timeout(timeout),
    }
}

/// Counts arrivals: first and last arrival times and how many.
pub struct Tally {
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    pub count: u64,
}

impl Tally {
    pub fn new() -> Self {
        Tally {
            first: None,
            last: None,
            count: 0,
        }
    }

    pub fn hit(&mut self) {
        self.hits(1);
    }

    /// `n` arrivals at once (a batch read, a GRO super-datagram).
    pub fn hits(&mut self, n: u64) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.count += n;
    }

    /// Arrivals per second between the first and the last.
    pub fn rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) if b > a && self.count > 1 => {
                (self.count - 1) as f64 / (b - a).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The ratios `a[run] / b[run]` of the runs where both were measured:
/// their median, smallest and largest. On a noisy machine two contenders
/// measured in the same run share its noise; their ratio run by run shows
/// what the ratio of their medians can hide.
pub fn paired(a: &[Option<f64>], b: &[Option<f64>]) -> Option<(f64, f64, f64)> {
    let r: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y > 0.0 => Some(x / y),
            _ => None,
        })
        .collect();
    if r.is_empty() {
        return None;
    }
    let (lo, hi) = min_max(&r);
    Some((median(r), lo, hi))
}

/// A ratio cell: the ratio of medians, then the run-by-run ratios (see
/// [`paired`]) when there are several.
pub fn ratio_cell(a: f64, b: f64, runs: Option<(f64, f64, f64)>) -> String {
    if b <= 0.0 {
        return "–".into();
    }
    match runs {
        Some((m, lo, hi)) if hi > lo => {
            format!("{:.2}× (per run {m:.2}×, {lo:.2}–{hi:.2})", a / b)
        }
        _ => format!("{:.2}×", a / b),
    }
}

/// The smallest and the largest of `v` (`(inf, 0)` when empty).
pub fn min_max(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(0.0, f64::max);
    (lo, hi)
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu}), Linux {kernel}")
}

/// Every workload's section, in the order the results file lists them.
/// The last two are written by other tools and only gathered here:
/// `tokens` from the criterion bench `benches/tokens.rs` (by hand), and
/// `js_client` by `clients/js/perf/bench.mjs`.
pub const SECTIONS: [&str; 9] = [
    "udp",
    "latency",
    "scaling",
    "crypto",
    "ws",
    "attacks",
    "channels",
    "tokens",
    "js_client",
];

/// Where the section of `workload` lives when the results file is `out`:
/// `results/<workload>.md` beside it (`perf/results/udp.md` for the default
/// `perf/RESULTS.md`).
pub fn section_path(out: &Path, workload: &str) -> PathBuf {
    out.parent()
        .unwrap_or(Path::new(""))
        .join("results")
        .join(format!("{workload}.md"))
}

/// Stores the sections just measured, each in its own file, then rebuilds
/// `out` from every section file present, so that running one workload
/// refreshes its section and keeps the others'.
pub fn write_results(out: &Path, sections: &[(&str, String)]) -> std::io::Result<()> {
    for (workload, report) in sections {
        let path = section_path(out, workload);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, report)?;
    }
    let mut text = String::from(
        "# stt performance results\n\nProduced by `cargo run --release -p stt-perf -- all` \
         (see perf/README.md); one workload alone (`-- udp`, `-- latency`, `-- scaling`, \
         `-- crypto`, `-- ws`, `-- attacks`, `-- channels`) refreshes only its own section (kept in `results/` beside \
         this file). Re-run to refresh; figures from a noisy 2-core machine \
         are medians with their spread.\n",
    );
    for workload in SECTIONS {
        if let Ok(report) = std::fs::read_to_string(section_path(out, workload)) {
            text.push('\n');
            text.push_str(report.trim_end());
            text.push('\n');
        }
    }
    std::fs::write(out, text)
}

/// Echo latency between two stt nodes: the server's application echoes every
/// message to its session; the client sends `size`-byte messages one at a
/// time and records each round trip, after [`WARMUP`] unrecorded ones.
pub fn stt_ping_pong(
    server: &Node,
    client: &Node,
    session: SessionId,
    size: usize,
    round_trips: usize,
) -> Option<Latency> {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // The server's application: echo every message to its session.
            let events = server.events();
            while !done.load(Ordering::Relaxed) {
                if let Ok(NodeEvent::Message(Message {
                    session, payload, ..
                })) = events.recv_timeout(Duration::from_millis(20))
                {
                    let _ = server.send(session, &payload);
                }
            }
        });
        let events = client.events();
        let payload = vec![0xABu8; size];
        let mut hist = histogram();
        let result = (|| {
            for i in 0..WARMUP + round_trips {
                let t = Instant::now();
                ok(client.send(session, &payload), "stt send")?;
                loop {
                    match events.recv_timeout(ECHO_TIMEOUT) {
                        Ok(NodeEvent::Message(m)) if m.payload.len() == size => break,
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("  waiting for the stt echo: {e}");
                            return None;
                        }
                    }
                }
                if i >= WARMUP {
                    hist.saturating_record(t.elapsed().as_nanos() as u64);
                }
            }
            Some(Latency::from_histogram(&hist))
        })();
        done.store(true, Ordering::Relaxed);
        result
    })
}

/// Echo latency between two stt nodes whose applications run in their
/// reactors (`node.set_handler(stt::on_reactor(..))`): the server's handler
/// echoes every message; the client's handler records the round trip and
/// sends the next ping at once. Nothing crosses a thread but the datagrams:
/// what a game server or a request-response service answering from its
/// receive callback sees. [`WARMUP`] unrecorded round trips first.
pub fn stt_ping_pong_inline(
    server: &Node,
    client: &Node,
    session: SessionId,
    size: usize,
    round_trips: usize,
) -> Option<Latency> {
    ok(
        server.set_handler(on_reactor(|message, replies| {
            let _ = replies.send(message.session, &message.payload);
            replies.recycle(message.payload);
        })),
        "server handler",
    )?;
    struct Ping {
        hist: Histogram<u64>,
        done: usize,
        sent_at: Instant,
    }
    let total = WARMUP + round_trips;
    let state = std::sync::Arc::new(std::sync::Mutex::new(Ping {
        hist: histogram(),
        done: 0,
        sent_at: Instant::now(),
    }));
    let (finished_tx, finished) = std::sync::mpsc::sync_channel(1);
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let state = state.clone();
        let progress = progress.clone();
        ok(
            client.set_handler(on_reactor(move |message, replies| {
                if message.payload.len() != size {
                    return;
                }
                // Only this reactor's thread takes the lock: never contended.
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if s.done >= WARMUP {
                    let ns = s.sent_at.elapsed().as_nanos() as u64;
                    s.hist.saturating_record(ns);
                }
                s.done += 1;
                progress.store(s.done, Ordering::Relaxed);
                if s.done == total {
                    let _ = finished_tx.try_send(());
                    return;
                }
                s.sent_at = Instant::now();
                let _ = replies.send(message.session, &message.payload);
                replies.recycle(message.payload);
            })),
            "client handler",
        )?;
    }
    // The first ping leaves from this thread; every later one from the
    // client's handler.
    state.lock().unwrap_or_else(|e| e.into_inner()).sent_at = Instant::now();
    ok(client.send(session, &vec![0xABu8; size]), "stt send")?;
    let mut last = 0;
    loop {
        match finished.recv_timeout(ECHO_TIMEOUT) {
            Ok(()) => break,
            Err(_) => {
                let now = progress.load(Ordering::Relaxed);
                if now == last {
                    eprintln!("  waiting for the stt echo: no round trip in {ECHO_TIMEOUT:?} ({now} done)");
                    return None;
                }
                last = now;
            }
        }
    }
    let s = state.lock().unwrap_or_else(|e| e.into_inner());
    Some(Latency::from_histogram(&s.hist))
}

/// Round trips run before the recorded ones.
pub const WARMUP: usize = 500;
/// How long a ping-pong waits for one echo before giving up.
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

/// The closed-loop sender of the throughput workloads: calls `send` in
/// bursts of 64 until `seconds` have passed. Returns how many sends it
/// accepted, and the process CPU time and the instant at the start.
pub fn send_for(seconds: f64, mut send: impl FnMut() -> bool) -> (u64, Duration, Instant) {
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        for _ in 0..64 {
            if send() {
                sent += 1;
            }
        }
    }
    (sent, cpu0, t0)
}
