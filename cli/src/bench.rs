//! `stt bench`: throughput and open-loop round-trip latency.
//!
//! For each transport, two phases against an echo server (a local one on
//! loopback, or `--server` running `stt serve`):
//!
//! 1. **Throughput** (closed loop): the client sends as fast as `send`
//!    takes messages, for `--duration`, and counts echoes that come back.
//! 2. **Latency** (open loop, as wrk2): messages leave on a fixed schedule,
//!    `--rate` per second spread over `--sessions`; each carries the time it
//!    was *meant* to leave, and its round trip is measured from then. A stall
//!    therefore shows in the percentiles instead of silently slowing the
//!    sender (no coordinated omission). Latencies go into an HdrHistogram.
//!
//! `--warmup` runs before each phase and is not measured.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use stt::transport::udp::UdpConfig;
use stt::transport::ws::WsConfig;
use stt::{on_reactor, ConnectOptions, Node, NodeConfig, NodeEvent, SessionId};

use crate::Error;

/// The congestion controller of the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CongestionArg {
    /// NewReno (RFC 9002).
    Newreno,
    /// CUBIC (RFC 9438), the default.
    Cubic,
    /// A model-based controller after BBR v1.
    Bbr,
}

impl From<CongestionArg> for stt::session::recovery::cc::Congestion {
    fn from(c: CongestionArg) -> Self {
        match c {
            CongestionArg::Newreno => Self::NewReno,
            CongestionArg::Cubic => Self::Cubic,
            CongestionArg::Bbr => Self::Bbr,
        }
    }
}

/// Which transports to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// UDP then WebSocket.
    All,
    /// UDP only.
    Udp,
    /// WebSocket only.
    Ws,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Transports to measure.
    #[arg(long, value_enum, default_value_t = Which::All)]
    transport: Which,
    /// Message size in bytes (at least 16: sequence and send time).
    #[arg(long, default_value_t = 1200)]
    size: usize,
    /// Sessions the client opens (messages are spread over them).
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Seconds of warm-up before each phase.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Messages per second in the latency phase (open loop).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Send on this channel (0 reliable-ordered, 1 unreliable, 2
    /// unreliable-sequenced, 3 reliable-unordered), under congestion
    /// control and pacing, and report its statistics; default: plain
    /// datagrams. A remote server must echo on it too (`stt serve
    /// --channel N`).
    #[arg(long, conflicts_with = "echo_in_reactor")]
    channel: Option<u8>,
    /// The channels' congestion controller (both nodes of a local bench).
    #[arg(long, value_enum, default_value_t = CongestionArg::Cubic)]
    congestion: CongestionArg,
    /// Skip the latency phase: closed-loop throughput only.
    #[arg(long)]
    closed_loop: bool,
    /// A remote `stt serve` to aim at: UDP address (host:port) …
    #[arg(long)]
    server: Option<String>,
    /// … and/or its WebSocket URL.
    #[arg(long)]
    server_ws: Option<String>,
    /// Connect to the remote server as a token client with this connect
    /// token (`stt1.…`, `@FILE` or `-`) instead of seeds. A token holds one
    /// session at a time: repeat it once per session (`--sessions N`).
    #[arg(long, value_name = "TOKEN")]
    token: Vec<String>,
    /// Seeds for a remote server (a local bench makes up a pair).
    #[command(flatten)]
    seeds: crate::SeedArgs,
    /// Print results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Write the latency histograms to an HdrHistogram log.
    #[arg(long)]
    hdr_log: Option<PathBuf>,
    /// Draw the latency percentile distribution as an SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Reactor threads per node (default: one per core).
    #[arg(long)]
    reactors: Option<usize>,
    /// The local server echoes from its reactor threads (a reactor handler,
    /// `stt::on_reactor`) instead of an application thread.
    #[arg(long, conflicts_with_all = ["server", "server_ws"])]
    echo_in_reactor: bool,
}

/// One transport's results.
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    transport: String,
    size: usize,
    sessions: usize,
    throughput_msgs_per_s: f64,
    goodput_gbit_s: f64,
    latency_rate: u64,
    latency_sent: u64,
    latency_received: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// The channel sent on, if any, and its statistics (first session) at
    /// the end.
    channel: Option<u8>,
    channel_stats: Option<stt::ChannelStats>,
    #[serde(skip)]
    histogram: Option<Histogram<u64>>,
}

pub fn run(args: BenchArgs) -> Result<(), Error> {
    if args.size < 16 || args.size > 16 << 20 {
        return Err("--size must be 16..=16777216 bytes".into());
    }
    if args.sessions == 0 || args.duration <= 0.0 || (!args.closed_loop && args.rate == 0) {
        return Err("--sessions, --duration and --rate must be positive".into());
    }
    let local = args.server.is_none() && args.server_ws.is_none();
    let tokens = args
        .token
        .iter()
        .map(|t| crate::token::read_token(t))
        .collect::<Result<Vec<_>, _>>()?;
    if local && !tokens.is_empty() {
        return Err("--token is for a remote server (--server / --server-ws); a local bench makes up its own seeds".into());
    }
    if !tokens.is_empty() && tokens.len() < args.sessions {
        return Err(format!(
            "{} sessions need {} connect tokens (a token holds one session at a time): repeat --token",
            args.sessions, args.sessions
        )
        .into());
    }
    let (node_seed, shared_seed) = if local {
        // Talking to itself on loopback: a fresh pair, used once.
        (crate::random_bytes(32)?, crate::random_bytes(32)?)
    } else if !tokens.is_empty() {
        // A token client holds no seed.
        (Vec::new(), Vec::new())
    } else {
        args.seeds.load()?
    };
    let mut server_node = None;
    let mut udp_target = args.server.clone();
    let mut ws_target = args.server_ws.clone();
    if local {
        let mut c = NodeConfig::new(&crate::random_bytes(32)?, &shared_seed)
            .with_udp(bench_udp("127.0.0.1:0".parse()?));
        c.session.channels.congestion = args.congestion.into();
        if let Some(r) = args.reactors {
            c.reactors = r;
        }
        let server = Node::start(c)?;
        udp_target = server.udp_local_addr().map(|a| a.to_string());
        let ws = server.start_websocket_server("127.0.0.1:0".parse()?, WsConfig::default())?;
        ws_target = Some(format!("ws://{ws}/"));
        if args.echo_in_reactor {
            server.set_handler(on_reactor(|message, replies| {
                let _ = replies.send(message.session, &message.payload);
                replies.recycle(message.payload);
            }))?;
        } else {
            let echo = server.clone();
            let channel = args.channel;
            std::thread::Builder::new()
                .name("bench-echo".into())
                .spawn(move || {
                    let events = echo.events();
                    while let Ok(ev) = events.recv() {
                        if let NodeEvent::Message(message) = ev {
                            let _ = match channel {
                                Some(c) => echo.send_channel(message.session, c, &message.payload),
                                None => echo.send(message.session, &message.payload),
                            };
                            echo.recycle(message.payload);
                        }
                    }
                })?;
        }
        server_node = Some(server);
    }
    let mut outcomes = Vec::new();
    let plan: Vec<&str> = match args.transport {
        Which::All => vec!["udp", "ws"],
        Which::Udp => vec!["udp"],
        Which::Ws => vec!["ws"],
    };
    for transport in plan {
        let target = match transport {
            "udp" => udp_target.clone(),
            _ => ws_target.clone(),
        };
        let Some(target) = target else {
            eprintln!("skipping {transport}: no server address for it");
            continue;
        };
        let mut c = if tokens.is_empty() {
            NodeConfig::client(&node_seed, &shared_seed)
        } else {
            NodeConfig::token_client()
        };
        c.session.channels.congestion = args.congestion.into();
        c.udp = Some(bench_udp(
            if target.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            }
            .parse()?,
        ));
        if let Some(r) = args.reactors {
            c.reactors = r;
        }
        let client = Node::start(c)?;
        let mut sessions = Vec::new();
        for i in 0..args.sessions {
            let mut options = ConnectOptions::new();
            if let Some(token) = tokens.get(i) {
                options = options.with_token(token.clone());
            }
            let s = if transport == "udp" {
                client.connect_udp_with(target.as_str(), &options)?
            } else {
                client.connect_websocket_with(&target, &options)?
            };
            sessions.push(s.id());
        }
        outcomes.push(measure(&args, &client, &sessions, transport)?);
        client.stop();
    }
    if let Some(server) = server_node {
        server.stop();
    }
    report(&args, &outcomes)
}

/// Socket buffers large enough for bursts at benchmark rates.
fn bench_udp(addr: SocketAddr) -> UdpConfig {
    UdpConfig {
        receive_buffer_size: 4 << 20,
        send_buffer_size: 4 << 20,
        ..UdpConfig::bound_to(addr)
    }
}

fn bar(label: String, seconds: f64) -> ProgressBar {
    let pb = ProgressBar::new((seconds * 10.0) as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(label);
    pb
}

fn measure(
    args: &BenchArgs,
    client: &Node,
    sessions: &[SessionId],
    transport: &str,
) -> Result<Outcome, Error> {
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let (lat_tx, lat_rx) = crossbeam_channel::unbounded::<u64>();
    // The receiving side: count echoes, and for latency-phase messages
    // (sequence bit 63 set) record the round trip from the intended send
    // time, in nanoseconds.
    let events = client.events();
    let (stop2, received2) = (stop.clone(), received.clone());
    let receiver = std::thread::Builder::new()
        .name("bench-recv".into())
        .spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                if let Ok(NodeEvent::Message(message)) =
                    events.recv_timeout(Duration::from_millis(50))
                {
                    let payload = message.payload;
                    received2.fetch_add(1, Ordering::Relaxed);
                    if payload.len() >= 16 {
                        let seq = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
                        let intended =
                            u64::from_be_bytes(payload[8..16].try_into().unwrap_or_default());
                        if seq >> 63 == 1 {
                            let now = epoch.elapsed().as_nanos() as u64;
                            let _ = lat_tx.send(now.saturating_sub(intended));
                        }
                    }
                }
            }
        })?;
    let mut payload = vec![0u8; args.size];
    let send = |session: SessionId, payload: &[u8]| match args.channel {
        Some(c) => client.send_channel(session, c, payload),
        None => client.send(session, payload),
    };

    // Throughput, closed loop: as fast as send takes them.
    let run_closed = |seconds: f64, label: String| -> Result<(u64, f64), Error> {
        let pb = bar(label, seconds);
        let before = received.load(Ordering::Relaxed);
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(seconds);
        let mut i = 0u64;
        let mut payload = vec![0u8; args.size];
        while Instant::now() < end {
            for _ in 0..64 {
                payload[..8].copy_from_slice(&i.to_be_bytes());
                let _ = send(sessions[(i as usize) % sessions.len()], &payload);
                i += 1;
            }
            pb.set_position((start.elapsed().as_secs_f64() * 10.0) as u64);
        }
        pb.finish_and_clear();
        // Echoes still in flight are counted until the pipe drains.
        std::thread::sleep(Duration::from_millis(200));
        let got = received.load(Ordering::Relaxed) - before;
        Ok((got, start.elapsed().as_secs_f64()))
    };
    if args.warmup > 0.0 {
        run_closed(args.warmup, format!("{transport} warm-up"))?;
    }
    let (got, secs) = run_closed(args.duration, format!("{transport} throughput"))?;
    let throughput = got as f64 / secs;

    // Latency, open loop.
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut sent, mut lat_received) = (0u64, 0u64);
    if !args.closed_loop {
        std::thread::sleep(Duration::from_millis(300));
        while lat_rx.try_recv().is_ok() {}
        let pb = bar(
            format!("{transport} latency @ {}/s", args.rate),
            args.duration,
        );
        let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
        let start = Instant::now();
        let total = (args.rate as f64 * args.duration) as u64;
        for n in 0..total {
            let intended = start + interval * n as u32;
            // Sleep coarsely, then yield the last stretch: the schedule is
            // the measurement's reference. Yielding rather than spinning
            // leaves the core to the threads being measured: on a machine
            // with few cores a spinning sender took one from the reactors,
            // and its time slices showed up as milliseconds in the p99.
            loop {
                let now = Instant::now();
                if now >= intended {
                    break;
                }
                let left = intended - now;
                if left > Duration::from_micros(200) {
                    std::thread::sleep(left - Duration::from_micros(100));
                } else {
                    std::thread::yield_now();
                }
            }
            payload[..8].copy_from_slice(&(n | 1 << 63).to_be_bytes());
            let at = intended.duration_since(epoch).as_nanos() as u64;
            payload[8..16].copy_from_slice(&at.to_be_bytes());
            if send(sessions[(n as usize) % sessions.len()], &payload).is_ok() {
                sent += 1;
            }
            if n % 1024 == 0 {
                pb.set_position((start.elapsed().as_secs_f64() * 10.0) as u64);
            }
        }
        pb.finish_and_clear();
        let deadline = Instant::now() + Duration::from_secs(2);
        while lat_received < sent && Instant::now() < deadline {
            if let Ok(ns) = lat_rx.recv_timeout(Duration::from_millis(100)) {
                histogram.saturating_record(ns.max(1));
                lat_received += 1;
            }
        }
    }
    let channel_stats = args
        .channel
        .and_then(|_| sessions.first())
        .and_then(|&s| client.channel_stats(s));
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let measured = lat_received > 0;
    Ok(Outcome {
        transport: transport.into(),
        size: args.size,
        sessions: sessions.len(),
        throughput_msgs_per_s: throughput,
        goodput_gbit_s: throughput * args.size as f64 * 8.0 / 1e9,
        latency_rate: if args.closed_loop { 0 } else { args.rate },
        latency_sent: sent,
        latency_received: lat_received,
        p50_us: if measured { us(0.5) } else { 0.0 },
        p90_us: if measured { us(0.9) } else { 0.0 },
        p99_us: if measured { us(0.99) } else { 0.0 },
        p999_us: if measured { us(0.999) } else { 0.0 },
        max_us: if measured {
            histogram.max() as f64 / 1000.0
        } else {
            0.0
        },
        channel: args.channel,
        channel_stats,
        histogram: measured.then_some(histogram),
    })
}

fn report(args: &BenchArgs, outcomes: &[Outcome]) -> Result<(), Error> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(outcomes)?);
    } else {
        let mut out = String::new();
        out.push_str("| transport | size | sessions | echoed msgs/s | Gbit/s | latency rate | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | received / sent |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for o in outcomes {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.3} | {}/s | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} / {} |\n",
                o.transport,
                o.size,
                o.sessions,
                o.throughput_msgs_per_s,
                o.goodput_gbit_s,
                o.latency_rate,
                o.p50_us,
                o.p90_us,
                o.p99_us,
                o.p999_us,
                o.max_us,
                o.latency_received,
                o.latency_sent
            ));
        }
        print!("{out}");
        for o in outcomes {
            if let (Some(c), Some(s)) = (o.channel, &o.channel_stats) {
                println!(
                    "\n{} on channel {c}: rtt {:?} (min {:?}, variation {:?}), loss {:.3}% ({} of {} packets), \
                     window {} B, in flight {} B, pacing {:.1} Mbit/s, delivery {:.1} Mbit/s, \
                     send queue wait mean {:?} max {:?}, {} retransmits, {} unreliable lost",
                    o.transport,
                    s.rtt,
                    s.min_rtt,
                    s.rtt_variance,
                    s.loss_rate * 100.0,
                    s.packets_lost,
                    s.packets_sent,
                    s.congestion_window,
                    s.bytes_in_flight,
                    s.pacing_rate as f64 * 8.0 / 1e6,
                    s.delivery_rate as f64 * 8.0 / 1e6,
                    s.send_queue_wait_mean,
                    s.send_queue_wait_max,
                    s.retransmits,
                    s.unreliable_lost,
                );
            }
        }
        println!(
            "\nThroughput: closed loop, echoes counted at the client. Latency: open loop at a fixed rate, \
             measured from each message's intended send time (no coordinated omission)."
        );
        if args.server.is_none() && args.server_ws.is_none() {
            println!(
                "The local server echoes {}.",
                if args.echo_in_reactor {
                    "from its reactor threads (--echo-in-reactor)"
                } else {
                    "from an application thread (--echo-in-reactor: from its reactors)"
                }
            );
        }
    }
    if let Some(path) = &args.hdr_log {
        write_hdr_log(path, outcomes)?;
        eprintln!("HdrHistogram log written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, svg_plot(outcomes))?;
        eprintln!("latency plot written to {}", path.display());
    }
    Ok(())
}

fn write_hdr_log(path: &std::path::Path, outcomes: &[Outcome]) -> Result<(), Error> {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    use hdrhistogram::serialization::V2DeflateSerializer;
    let mut file = std::fs::File::create(path)?;
    let mut serializer = V2DeflateSerializer::new();
    let mut buf = Vec::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(1000.0)
            .add_comment("stt bench: round-trip latency in ns (divide by 1000 for µs)")
            .begin_log_with(&mut buf, &mut serializer)?;
        for o in outcomes {
            if let Some(h) = &o.histogram {
                let tag = Tag::new(&o.transport);
                log.write_histogram(h, Duration::ZERO, Duration::from_secs_f64(1.0), tag)?;
            }
        }
    }
    file.write_all(&buf)?;
    Ok(())
}

/// A percentile distribution plot (latency against 1/(1-q) on a log scale,
/// as HdrHistogram's plotter draws it), one line per transport.
fn svg_plot(outcomes: &[Outcome]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 480.0;
    const PAD: f64 = 60.0;
    let series: Vec<(&str, Vec<(f64, f64)>)> = outcomes
        .iter()
        .filter_map(|o| {
            let h = o.histogram.as_ref()?;
            let pts = (0..=50)
                .map(|i| {
                    // From the median to 99.999%: 1/(1-q) from 2 to 1e5.
                    let x = 2f64.powf(1.0 + i as f64 * (1e5f64.log2() - 1.0) / 50.0);
                    let q = 1.0 - 1.0 / x;
                    (x, h.value_at_quantile(q) as f64 / 1000.0)
                })
                .collect();
            Some((o.transport.as_str(), pts))
        })
        .collect();
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(1.0f64, f64::max);
    let sx = |x: f64| PAD + (x.log10() - 2f64.log10()) / (5.0 - 2f64.log10()) * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD - y / ymax * (H - 2.0 * PAD);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">stt bench: round-trip latency by percentile</text>\n\
         <line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">latency (µs)</text>\n",
        W / 2.0,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD,
        H / 2.0,
        H / 2.0
    );
    for (label, x) in [
        ("50%", 2.0),
        ("90%", 10.0),
        ("99%", 100.0),
        ("99.9%", 1e3),
        ("99.99%", 1e4),
        ("99.999%", 1e5),
    ] {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>\n",
            sx(x),
            H - PAD + 18.0
        ));
    }
    for i in 0..=4 {
        let y = ymax * i as f64 / 4.0;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.0}</text>\n",
            PAD - 6.0,
            sy(y) + 4.0
        ));
    }
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    for (i, (label, pts)) in series.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let line: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{label}</text>\n",
            line.join(" "),
            PAD + 10.0,
            PAD + 16.0 * (i as f64 + 1.0)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
