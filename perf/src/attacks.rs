//! The `attacks` workload: what an honest session sees while a node on
//! loopback is attacked, and what the attack costs the node in memory.
//!
//! Per attack: a fresh server node (UDP and a WebSocket server on
//! 127.0.0.1, default limits), an honest client node with one established
//! session (UDP, or WebSocket for the WebSocket attacks) sending 64-byte
//! request/response pings at [`PING_RATE`] while the attacker runs for
//! `--seconds` from threads and sockets of its own (127.0.0.1 only). The
//! server echoes the honest session's pings from its reactor
//! ([`stt::on_reactor`]) and drops everything else. Resident memory
//! (`VmRSS`) of the process is read before, at the end of the attack and
//! [`SETTLE`] after it stops: attacker, server and honest client share this
//! process, so the figures are deltas of all three.
//!
//! The attacks themselves: [`floods`] (UDP junk, replayed and non-member
//! handshake message 1s), [`websocket`] (idle and junk-sending WebSocket
//! connections), [`members`] (a member opening sessions as fast as it can,
//! and one holding reassembly memory with large messages it never
//! completes).

mod floods;
mod members;
mod websocket;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stt::frame::SessionId;
use stt::{on_reactor, Node, NodeConfig, NodeStats, UdpConfig, WsConfig};

use crate::common::{histogram, machine};
use crate::Args;

/// The shared seed of the attacked network.
pub const SHARED: &[u8] = b"stt-perf attacks: the network's shared seed";
/// Honest pings per second.
pub const PING_RATE: u64 = 200;
/// Size of an honest ping (and of its echo).
const PING_SIZE: usize = 64;
/// How long after the attack stops the "after" memory figure is read.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How long the honest client waits for the echoes still in flight when the
/// attack stops; a ping answered later counts as lost.
const LATE: Duration = Duration::from_secs(1);

/// Resident memory of this process, bytes (`VmRSS` of `/proc/self/status`).
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A node config of the attacked network on 127.0.0.1 (any port), with
/// `reactors` reactors; everything else is `NodeConfig`'s default.
pub fn config(seed: &str, reactors: usize) -> NodeConfig {
    NodeConfig::new(format!("{seed:-<40}").as_bytes(), SHARED)
        .with_udp(UdpConfig {
            bind_address: "127.0.0.1".parse().expect("an address"),
            ..UdpConfig::default()
        })
        .with_reactors(reactors)
}

/// The attacked server: UDP and WebSocket on 127.0.0.1, default limits,
/// echoing the honest session's pings from its reactor.
pub struct Target {
    pub node: Node,
    pub udp: SocketAddr,
    pub ws: SocketAddr,
    /// The honest session's id (0 until it is known); only its messages are
    /// echoed.
    honest: Arc<AtomicU64>,
    drain_stop: Arc<AtomicBool>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Target {
    fn start() -> Option<Target> {
        let node = crate::common::ok(Node::start(config("attacked-server", 2)), "server")?;
        let udp = node.udp_local_addr()?;
        let ws = crate::common::ok(
            node.start_websocket_server("127.0.0.1:0".parse().expect("addr"), WsConfig::default()),
            "WebSocket server",
        )?;
        let honest = Arc::new(AtomicU64::new(0));
        {
            let honest = honest.clone();
            crate::common::ok(
                node.set_handler(on_reactor(move |m, replies| {
                    if m.session.0 == honest.load(Ordering::Relaxed) {
                        let _ = replies.send(m.session, &m.payload);
                    }
                    replies.recycle(m.payload);
                })),
                "server handler",
            )?;
        }
        // Session events still come through the channel: keep it drained so
        // that an attack opening sessions does not fill it.
        let drain_stop = Arc::new(AtomicBool::new(false));
        let drain = {
            let (events, stop) = (node.events(), drain_stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = events.recv_timeout(Duration::from_millis(50));
                }
            })
        };
        Some(Target {
            node,
            udp,
            ws,
            honest,
            drain_stop,
            drain: Some(drain),
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.ws)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.drain_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.drain.take() {
            let _ = t.join();
        }
        self.node.stop();
    }
}

/// Which transport the honest session uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Udp,
    WebSocket,
}

/// The honest client: its node and its one session to the target.
struct Honest {
    node: Node,
    session: SessionId,
    state: Arc<Mutex<Answers>>,
    /// The clock the pings carry (nanoseconds since this).
    base: Instant,
}

/// What came back to the honest client.
struct Answers {
    hist: Histogram<u64>,
    seen: Vec<bool>,
    answered: u64,
}

/// What the honest session saw during one attack.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub sent: u64,
    pub answered: u64,
    /// Pings the client could not even hand to its node (queue full).
    pub refused: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Whether the session was still open at the end.
    pub open: bool,
}

impl Honest {
    fn connect(target: &Target, path: Path) -> Option<Honest> {
        let node = match path {
            Path::Udp => Node::start(config("honest-client", 1).with_server_mode(false)),
            Path::WebSocket => Node::start(
                NodeConfig::websocket_only(format!("{:-<40}", "honest-client").as_bytes(), SHARED)
                    .with_server_mode(false)
                    .with_reactors(1),
            ),
        };
        let node = crate::common::ok(node, "honest client")?;
        let state = Arc::new(Mutex::new(Answers {
            hist: histogram(),
            seen: Vec::new(),
            answered: 0,
        }));
        let base = Instant::now();
        {
            let state = state.clone();
            crate::common::ok(
                node.set_handler(on_reactor(move |m, replies| {
                    if m.payload.len() == PING_SIZE {
                        let seq = u64::from_be_bytes(m.payload[..8].try_into().expect("8 bytes"));
                        let at = u64::from_be_bytes(m.payload[8..16].try_into().expect("8 bytes"));
                        let ns = (base.elapsed().as_nanos() as u64).saturating_sub(at);
                        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                        let seq = seq as usize;
                        if seq < s.seen.len() && !s.seen[seq] {
                            s.seen[seq] = true;
                            s.answered += 1;
                            s.hist.saturating_record(ns.max(1));
                        }
                    }
                    replies.recycle(m.payload);
                })),
                "honest handler",
            )?;
        }
        let session = match path {
            Path::Udp => crate::common::ok(node.connect_udp(target.udp), "honest connect")?,
            Path::WebSocket => crate::common::ok(
                node.connect_websocket(&target.ws_url()),
                "honest WebSocket connect",
            )?,
        };
        target.honest.store(session.id().0, Ordering::Relaxed);
        Some(Honest {
            node,
            session: session.id(),
            state,
            base,
        })
    }

    /// Pings at [`PING_RATE`] until `stop` is set, then waits up to
    /// [`LATE`] for the echoes in flight.
    fn ping_until(&self, stop: &AtomicBool) -> Seen {
        let base = self.base;
        let period = Duration::from_nanos(1_000_000_000 / PING_RATE);
        let start = Instant::now();
        let (mut sent, mut refused) = (0u64, 0u64);
        let mut payload = [0u8; PING_SIZE];
        while !stop.load(Ordering::Relaxed) {
            let due = start + period * sent as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
                continue;
            }
            {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                s.seen.push(false);
            }
            payload[..8].copy_from_slice(&sent.to_be_bytes());
            payload[8..16].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_be_bytes());
            if self.node.try_send(self.session, &payload).is_err() {
                refused += 1;
            }
            sent += 1;
        }
        let deadline = Instant::now() + LATE;
        while Instant::now() < deadline {
            if self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .answered
                >= sent - refused
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ms = |q: f64| {
            if s.answered == 0 {
                f64::NAN
            } else {
                s.hist.value_at_quantile(q) as f64 / 1e6
            }
        };
        Seen {
            sent,
            answered: s.answered,
            refused,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: if s.answered == 0 {
                f64::NAN
            } else {
                s.hist.max() as f64 / 1e6
            },
            open: self.node.sessions().contains(&self.session),
        }
    }
}

/// What an attack does once its threads stopped, before it lets go of what
/// it holds: more for its report.
type Finish = Box<dyn FnOnce(&Target) -> String + Send>;

/// An attack under way: what it reports when it stops, and what it holds
/// until then (sockets, nodes, threads).
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<String>>,
    /// Called once the threads are stopped, before the attacker lets go of
    /// what it holds; adds to the report.
    finish: Option<Finish>,
}

impl Running {
    pub fn new(stop: Arc<AtomicBool>) -> Running {
        Running {
            stop,
            threads: Vec::new(),
            finish: None,
        }
    }

    pub fn thread(&mut self, t: std::thread::JoinHandle<String>) {
        self.threads.push(t);
    }

    pub fn on_finish(&mut self, f: impl FnOnce(&Target) -> String + Send + 'static) {
        self.finish = Some(Box::new(f));
    }

    /// Stops the attacker's threads; returns their reports and the finish
    /// step's, joined.
    fn stop(mut self, target: &Target) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let mut parts: Vec<String> = std::mem::take(&mut self.threads)
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| "attacker thread panicked".into())
            })
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(f) = self.finish.take() {
            parts.push(f(target));
        }
        parts.retain(|s| !s.is_empty());
        parts.join("; ")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One attack: its row's label, the honest session's transport, and how to
/// start it against a target (running until its stop flag is set; it may
/// also stop on its own once its volume is spent).
struct Attack {
    name: &'static str,
    path: Path,
    start: fn(&Target, Duration) -> Option<Running>,
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "none (baseline)",
        path: Path::Udp,
        start: |_, _| Some(Running::new(Arc::new(AtomicBool::new(false)))),
    },
    Attack {
        name: "1. UDP junk flood",
        path: Path::Udp,
        start: floods::junk,
    },
    Attack {
        name: "2. replayed genuine message 1s",
        path: Path::Udp,
        start: floods::replayed_msg1,
    },
    Attack {
        name: "3. message 1s from non-members",
        path: Path::Udp,
        start: floods::non_member_msg1,
    },
    Attack {
        name: "4. idle WebSocket connections",
        path: Path::WebSocket,
        start: websocket::idle,
    },
    Attack {
        name: "5. WebSocket junk messages",
        path: Path::WebSocket,
        start: websocket::junk,
    },
    Attack {
        name: "6. member opening sessions",
        path: Path::Udp,
        start: members::session_opener,
    },
    Attack {
        name: "7. member holding reassembly",
        path: Path::Udp,
        start: members::reassembly_holder,
    },
];

/// The server's counters that an attack moves, as a short text.
pub fn server_view(before: &NodeStats, s: &NodeStats) -> String {
    let udp = |st: &NodeStats| {
        st.udp
            .map_or((0, 0), |u| (u.packets_received, u.packets_dropped))
    };
    let (r0, d0) = udp(before);
    let (r1, d1) = udp(s);
    let mut v = format!(
        "UDP read {}, dropped {}; sessions {}, pending {}, cookies {}, refused {}/{} (limits/quotas)",
        r1 - r0,
        d1 - d0,
        s.sessions,
        s.handshakes_pending,
        s.cookie_challenges - before.cookie_challenges,
        s.handshakes_refused - before.handshakes_refused,
        s.quota_refused - before.quota_refused,
    );
    if let (Some(a), Some(b)) = (&before.websocket, &s.websocket) {
        let _ = write!(
            v,
            "; WS messages read {}, dropped {}",
            b.packets_received - a.packets_received,
            b.packets_dropped - a.packets_dropped
        );
    }
    if let (Some(a), Some(b)) = (&before.websocket_connections, &s.websocket_connections) {
        let _ = write!(
            v,
            "; WS open {}, accepted {}, closed {}, refused {}",
            b.connections_open,
            b.connections_accepted - a.connections_accepted,
            b.connections_closed - a.connections_closed,
            b.connections_refused - a.connections_refused
        );
    }
    v
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn delta(now: u64, before: u64) -> String {
    let d = now as f64 - before as f64;
    format!("{:+.1}", d / (1 << 20) as f64)
}

/// One attack end to end; its table row, or `None` if it could not start.
fn run(attack: &Attack, seconds: f64) -> Option<String> {
    let target = Target::start()?;
    let honest = Honest::connect(&target, attack.path)?;
    // Let the allocator settle on what the idle pair uses.
    std::thread::sleep(Duration::from_millis(300));
    let stats_before = target.node.stats();
    let rss_before = rss();
    let duration = Duration::from_secs_f64(seconds);
    let stop_pings = AtomicBool::new(false);
    let (seen, rss_during, report, peak_reassembly, stats_end) = std::thread::scope(|s| {
        let pinger = s.spawn(|| honest.ping_until(&stop_pings));
        let t0 = Instant::now();
        let running = (attack.start)(&target, duration);
        // Sample the server's reassembly memory while the attack runs.
        let mut peak = 0usize;
        while t0.elapsed() < duration {
            peak = peak.max(target.node.stats().reassembly_bytes);
            std::thread::sleep(Duration::from_millis(50));
        }
        let rss_during = rss();
        let stats_end = target.node.stats();
        stop_pings.store(true, Ordering::Relaxed);
        let seen = pinger.join().expect("pinger");
        let report = match running {
            Some(r) => r.stop(&target),
            None => "the attack could not start".into(),
        };
        (seen, rss_during, report, peak, stats_end)
    });
    std::thread::sleep(SETTLE);
    let rss_after = rss();
    let stats_after = target.node.stats();
    let lost = seen.sent - seen.answered;
    eprintln!(
        "{}: {report}; honest {}/{} answered, p50 {:.2} ms, p99 {:.2} ms; RSS {:.1} MiB, {} at the end, {} after",
        attack.name,
        seen.answered,
        seen.sent,
        seen.p50_ms,
        seen.p99_ms,
        mib(rss_before),
        delta(rss_during, rss_before),
        delta(rss_after, rss_before)
    );
    let honest_cell = format!(
        "{} sent, {} answered, **{} lost**{}; RTT p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms{}",
        seen.sent,
        seen.answered,
        lost,
        if seen.refused > 0 {
            format!(" ({} refused by its own node)", seen.refused)
        } else {
            String::new()
        },
        seen.p50_ms,
        seen.p99_ms,
        seen.max_ms,
        if seen.open {
            ""
        } else {
            "; **session closed**"
        }
    );
    let server_cell = format!(
        "at the end: {}; reassembly peak {:.1} MiB; {} s after: reassembly {:.1} MiB, sessions {}",
        server_view(&stats_before, &stats_end),
        mib(peak_reassembly as u64),
        SETTLE.as_secs(),
        mib(stats_after.reassembly_bytes as u64),
        stats_after.sessions
    );
    drop(honest);
    drop(target);
    Some(format!(
        "| {} | {} | {} | {:.1} / {} / {} | {} |",
        attack.name,
        report,
        honest_cell,
        mib(rss_before),
        delta(rss_during, rss_before),
        delta(rss_after, rss_before),
        server_cell
    ))
}

/// How long each attack runs when `--seconds` is not given.
const DEFAULT_SECONDS: f64 = 3.0;

pub fn workload(args: &Args) -> String {
    let seconds = if args.seconds_given {
        args.seconds
    } else {
        DEFAULT_SECONDS
    };
    // The idle-connection attack holds both ends of its connections here.
    websocket::raise_fd_limit(4 * websocket::IDLE_CONNECTIONS as u64 + 1_000);
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| attack | volume tried | what the honest session saw | process RSS before, MiB / during / after (Δ) | what the server did |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|");
    for attack in ATTACKS {
        eprintln!("attack: {} ({seconds} s)", attack.name);
        match run(attack, seconds) {
            Some(row) => {
                let _ = writeln!(table, "{row}");
            }
            None => {
                let _ = writeln!(table, "| {} | could not start | – | – | – |", attack.name);
            }
        }
    }
    format!(
        "## Attacks on a node, with an honest session watching\n\n\
         Machine: {machine}. Per attack: a fresh server node (2 reactors, UDP and a WebSocket \
         server on 127.0.0.1, default limits and quotas) and an honest client node with one \
         established session (UDP; WebSocket for attacks 4 and 5) sending {size}-byte \
         request/response pings at {rate}/s for the {secs} s the attacker runs, echoed by the \
         server's reactor; a ping not answered within {late} s of the attack's end is lost. \
         The attacker runs from threads and sockets of the same process, 127.0.0.1 only. \
         **Memory is the resident set of the whole process** (attacker, server and honest client \
         share it): before the attack (absolute), at its end and {settle} s after it stopped \
         (deltas from before), so an attacker's own buffers (attack 7 keeps a 16 MiB message, \
         attack 6 its sessions' state, attack 4 both ends of every connection) count too. \
         \"What the server did\": its counters over the attack, read at the attack's end \
         (`NodeStats`: UDP datagrams read and dropped, sessions and pending handshakes then, \
         cookie challenges, message 1s refused by the node-wide limits / by the per-peer \
         quotas, WebSocket connections), and the peak of its reassembly memory (sampled every \
         50 ms). Loopback on one busy machine: floods here compete with the server for the \
         same two cores.\n\n{table}",
        machine = machine(),
        size = PING_SIZE,
        rate = PING_RATE,
        secs = seconds,
        late = LATE.as_secs(),
        settle = SETTLE.as_secs(),
    )
}
