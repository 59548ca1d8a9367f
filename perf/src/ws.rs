//! Workload `ws`: one WebSocket connection over loopback, 64-byte and 64 KiB
//! messages, two contenders:
//!
//! - stt over WebSocket (sealed): two [`Node`]s with one reactor each and no
//!   UDP socket (`NodeConfig { udp: None, .. }`: the WebSocket transport
//!   alone, nothing else on the reactors' poll). The application sends with
//!   [`Node::send`] (which waits while the reactor's command queue is full)
//!   and receives [`NodeEvent::Message`] from [`Node::events`].
//! - tokio-tungstenite over plain TCP (unsealed): a server task and a client
//!   task on one multi-threaded tokio runtime (one worker per core), the
//!   sender `feed`ing messages into the sink (tungstenite writes to the
//!   socket whenever its write buffer fills) and flushing at the end;
//!   `TCP_NODELAY` on both ends, as stt sets it.
//!
//! Two measurements per contender and size:
//!
//! - throughput: the client sends as fast as its API allows for `seconds`;
//!   the figure is what the server's application got, messages per second
//!   between the first and the last arrival, and the goodput that makes.
//!   "Cores busy" is the process's CPU time (getrusage, every thread) over
//!   the wall time from the first send to the last arrival.
//! - latency: ping-pong with one message in flight, the server's
//!   application echoing each message back; `pings` round trips (after a
//!   warm-up) recorded in an HDR histogram.

use std::error::Error;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use stt::frame::SessionId;
use stt::node::{Node, NodeConfig, NodeEvent};
use stt::transport::ws::WsConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::common::{
    cpu_time, histogram, machine, median, min_max, ok, send_for, stt_ping_pong, Contender, Latency,
    Sample, Tally, ECHO_TIMEOUT, WARMUP,
};
use crate::Args;

/// The message sizes measured.
const SIZES: [usize; 2] = [64, 64 << 10];
/// After the sender stops, how long without an arrival before the receiver
/// gives up on what is missing.
const IDLE: Duration = Duration::from_millis(500);

type BoxError = Box<dyn Error + Send + Sync>;

// ---------------------------------------------------------------- stt ----

struct SttPair {
    server: Node,
    client: Node,
    session: SessionId,
}

impl SttPair {
    /// Two nodes, one reactor each, WebSocket only; the client connected.
    fn start() -> Option<SttPair> {
        const SHARED: &[u8] = b"stt-perf benchmark network shared seed";
        let config = |seed: &[u8]| NodeConfig {
            udp: None,
            ..NodeConfig::new(seed, SHARED).with_reactors(1)
        };
        let server = ok(
            Node::start(config(b"stt-perf ws benchmark server node seed")),
            "starting the stt server",
        )?;
        let client = ok(
            Node::start(config(b"stt-perf ws benchmark client node seed").with_server_mode(false)),
            "starting the stt client",
        )?;
        let addr = ok(
            server.start_websocket_server(
                "127.0.0.1:0".parse().expect("literal"),
                WsConfig::default(),
            ),
            "starting the stt WebSocket server",
        )?;
        let session = ok(
            client.connect_websocket(&format!("ws://{addr}/")),
            "connecting over WebSocket",
        )?
        .id;
        Some(SttPair {
            server,
            client,
            session,
        })
    }

    fn debug(&self) {
        if std::env::var_os("STT_PERF_DEBUG").is_some() {
            eprintln!(
                "  client {:?}\n  server {:?}",
                self.client.websocket_stats(),
                self.server.websocket_stats()
            );
        }
    }

    fn stop(self) {
        self.client.stop();
        self.server.stop();
    }
}

fn stt_throughput(seconds: f64, size: usize) -> Option<Sample> {
    let pair = SttPair::start()?;
    let events = pair.server.events();
    // u64::MAX until the sender is done; then how many it sent.
    let sent_total = Arc::new(AtomicU64::new(u64::MAX));
    let sent_total2 = sent_total.clone();
    let receiver = std::thread::spawn(move || {
        let mut tally = Tally::new();
        let mut heard = Instant::now();
        loop {
            match events.recv_timeout(Duration::from_millis(5)) {
                Ok(NodeEvent::Message { .. }) => {
                    tally.hit();
                    heard = Instant::now();
                }
                Ok(_) => {}
                Err(e) if e.is_disconnected() => break,
                Err(_) => {}
            }
            let total = sent_total2.load(Ordering::Acquire);
            if total != u64::MAX && (tally.count >= total || heard.elapsed() > IDLE) {
                break;
            }
        }
        tally
    });
    let payload = vec![0xABu8; size];
    let (sent, cpu0, t0) = send_for(seconds, || pair.client.send(pair.session, &payload).is_ok());
    sent_total.store(sent, Ordering::Release);
    let tally = receiver.join().ok()?;
    let wall = t0.elapsed().as_secs_f64();
    let sample = Sample::measured(&tally, cpu0, wall, sent);
    pair.debug();
    pair.stop();
    Some(sample)
}

fn stt_latency(round_trips: usize, size: usize) -> Option<Latency> {
    let pair = SttPair::start()?;
    let result = stt_ping_pong(&pair.server, &pair.client, pair.session, size, round_trips);
    pair.debug();
    pair.stop();
    result
}

// -------------------------------------------------- tokio-tungstenite ----

fn runtime() -> Option<tokio::runtime::Runtime> {
    ok(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        "building the tokio runtime",
    )
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Dials `addr` and upgrades: the client side.
async fn dial(addr: SocketAddr) -> Result<Ws, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await?;
    Ok(ws)
}

/// Accepts one connection and upgrades: the server side.
async fn accept(listener: TcpListener) -> Result<Ws, BoxError> {
    let (tcp, _) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    Ok(tokio_tungstenite::accept_async(tcp).await?)
}

fn tt_throughput(seconds: f64, size: usize) -> Option<Sample> {
    let rt = runtime()?;
    let run = async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let mut ws = accept(listener).await?;
            let mut tally = Tally::new();
            while let Some(msg) = ws.next().await {
                match msg? {
                    Message::Binary(_) => tally.hit(),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            Ok::<_, BoxError>(tally)
        });
        let client = tokio::spawn(async move {
            let mut ws = dial(addr).await?;
            let payload = Bytes::from(vec![0xABu8; size]);
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            let end = t0 + Duration::from_secs_f64(seconds);
            let mut sent = 0u64;
            while Instant::now() < end {
                for _ in 0..64 {
                    ws.feed(Message::Binary(payload.clone())).await?;
                    sent += 1;
                }
            }
            ws.close(None).await?;
            Ok::<_, BoxError>((cpu0, t0, sent))
        });
        let (cpu0, t0, sent) = client.await??;
        let tally = server.await??;
        let wall = t0.elapsed().as_secs_f64();
        Ok::<_, BoxError>(Sample::measured(&tally, cpu0, wall, sent))
    };
    ok(rt.block_on(run), "tokio-tungstenite throughput")
}

fn tt_latency(round_trips: usize, size: usize) -> Option<Latency> {
    let rt = runtime()?;
    let run = async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            // The server's application: echo every message back.
            let mut ws = accept(listener).await?;
            while let Some(msg) = ws.next().await {
                match msg? {
                    m @ Message::Binary(_) => ws.send(m).await?,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            Ok::<_, BoxError>(())
        });
        let pinger = tokio::spawn(async move {
            let mut client = dial(addr).await?;
            let payload = Bytes::from(vec![0xABu8; size]);
            let mut hist = histogram();
            for i in 0..WARMUP + round_trips {
                let t = Instant::now();
                client.send(Message::Binary(payload.clone())).await?;
                loop {
                    let next = tokio::time::timeout(ECHO_TIMEOUT, client.next()).await?;
                    match next.ok_or("connection closed")?? {
                        Message::Binary(p) if p.len() == size => break,
                        _ => {}
                    }
                }
                if i >= WARMUP {
                    hist.saturating_record(t.elapsed().as_nanos() as u64);
                }
            }
            client.close(None).await?;
            Ok::<_, BoxError>(Latency::from_histogram(&hist))
        });
        let latency = pinger.await??;
        server.await??;
        Ok::<_, BoxError>(latency)
    };
    ok(rt.block_on(run), "tokio-tungstenite latency")
}

// ------------------------------------------------------------ report ----

/// The baseline first: ratios are against it.
const CONTENDERS: [&str; 2] = [
    "tokio-tungstenite, plain TCP (unsealed)",
    "stt over WebSocket (sealed)",
];

fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

pub fn workload(args: &Args) -> String {
    let (seconds, pings) = (args.seconds, args.pings);
    // [contender][size] -> samples
    let mut tput: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); SIZES.len()]; 2];
    let mut lat: Vec<Vec<Vec<Latency>>> = vec![vec![Vec::new(); SIZES.len()]; 2];
    for run in 0..args.runs {
        for (si, &size) in SIZES.iter().enumerate() {
            let runs: [(Contender<'_, Sample>, Contender<'_, Latency>); 2] = [
                (
                    Box::new(move || tt_throughput(seconds, size)),
                    Box::new(move || tt_latency(pings, size)),
                ),
                (
                    Box::new(move || stt_throughput(seconds, size)),
                    Box::new(move || stt_latency(pings, size)),
                ),
            ];
            for (ci, (t, l)) in runs.iter().enumerate() {
                let name = CONTENDERS[ci];
                let size_n = size_name(size);
                if let Some(only) = &args.only {
                    if !format!("{name}, {size_n}").contains(only.as_str()) {
                        continue;
                    }
                }
                match t() {
                    Some(s) => {
                        eprintln!(
                            "run {}/{}: {name}, {size_n}: {:.0} msg/s ({:.2} Gbit/s, {} of {} delivered), {:.2} cores",
                            run + 1,
                            args.runs,
                            s.rate,
                            s.rate * size as f64 * 8.0 / 1e9,
                            s.delivered,
                            s.sent,
                            s.cores
                        );
                        tput[ci][si].push(s);
                    }
                    None => eprintln!("run {}: {name}, {size_n}: throughput failed", run + 1),
                }
                match l() {
                    Some(s) => {
                        eprintln!(
                            "run {}/{}: {name}, {size_n}: round trip p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
                            run + 1,
                            args.runs,
                            s.p50,
                            s.p99,
                            s.max
                        );
                        lat[ci][si].push(s);
                    }
                    None => eprintln!("run {}: {name}, {size_n}: latency failed", run + 1),
                }
            }
        }
    }

    let mut t_table = String::new();
    let _ = writeln!(
        t_table,
        "| contender | message | messages/s (median) | min – max | goodput Gbit/s | vs tokio-tungstenite | cores busy | cores per Gbit/s | delivered / sent |"
    );
    let _ = writeln!(t_table, "|---|---|---|---|---|---|---|---|---|");
    for (si, &size) in SIZES.iter().enumerate() {
        let base = median(tput[0][si].iter().map(|s| s.rate).collect());
        for (ci, name) in CONTENDERS.iter().enumerate() {
            let s = &tput[ci][si];
            if s.is_empty() {
                continue;
            }
            let rates: Vec<f64> = s.iter().map(|x| x.rate).collect();
            let rate = median(rates.clone());
            let (lo, hi) = min_max(&rates);
            let cores = median(s.iter().map(|x| x.cores).collect());
            let gbit = rate * size as f64 * 8.0 / 1e9;
            let delivered: u64 = s.iter().map(|x| x.delivered).sum();
            let sent: u64 = s.iter().map(|x| x.sent).sum();
            let _ = writeln!(
                t_table,
                "| {name} | {} | {:.0} | {:.0} – {:.0} | {:.2} | {} | {:.2} | {:.2} | {:.1}% |",
                size_name(size),
                rate,
                lo,
                hi,
                gbit,
                ratio(rate, base),
                cores,
                if gbit > 0.0 { cores / gbit } else { 0.0 },
                100.0 * delivered as f64 / sent.max(1) as f64
            );
        }
    }

    let mut l_table = String::new();
    let _ = write!(l_table, "| contender | message |");
    for p in Latency::NAMES {
        let _ = write!(l_table, " {p} µs |");
    }
    let _ = writeln!(l_table, " p50 / p99 vs tokio-tungstenite |");
    let _ = writeln!(l_table, "|---|---|---|---|---|---|---|---|");
    for (si, &size) in SIZES.iter().enumerate() {
        let med = |ci: usize, k: usize| median(lat[ci][si].iter().map(|l| l.values()[k]).collect());
        for (ci, name) in CONTENDERS.iter().enumerate() {
            let s = &lat[ci][si];
            if s.is_empty() {
                continue;
            }
            let _ = write!(l_table, "| {name} | {} |", size_name(size));
            for k in 0..Latency::NAMES.len() {
                let v: Vec<f64> = s.iter().map(|l| l.values()[k]).collect();
                let (lo, hi) = min_max(&v);
                let _ = write!(l_table, " {:.1} ({:.1} – {:.1}) |", median(v), lo, hi);
            }
            let _ = writeln!(
                l_table,
                " {} / {} |",
                ratio(med(ci, 0), med(0, 0)),
                ratio(med(ci, 2), med(0, 2))
            );
        }
    }

    format!(
        "## WebSocket, one connection over loopback: stt (sealed) and tokio-tungstenite (unsealed)\n\n\
         Machine: {machine}. {runs} runs, contenders and sizes interleaved. stt: two nodes of one \
         reactor each, WebSocket only (no UDP socket), `ws://`, AEAD as negotiated; \
         tokio-tungstenite: plain TCP, no encryption, server and client tasks on one \
         multi-threaded tokio runtime (a worker per core), `TCP_NODELAY` on both ends.\n\n\
         ### Sample\n\n\
         One sender → one receiver for {secs} s, as fast as the sender's API allows (stt: \
         `Node::send`, which waits while the reactor's queue is full; tokio-tungstenite: \
         `SinkExt::feed`, flushed at the end). \"messages/s\" is what the receiving application \
         got, first to last arrival; \"cores busy\" is the whole process's CPU time (both ends, \
         every thread) over the wall time from the first send to the last arrival.\n\n\
         {t_table}\n\
         ### Round-trip latency\n\n\
         Ping-pong, one message in flight, the server's application echoing it back; {pings} \
         round trips per run after {warmup} of warm-up, in an HDR histogram. Each cell is the \
         median over runs (min – max), in µs; the last column divides stt's p50 and p99 by \
         tokio-tungstenite's (below 1: stt is faster). Read with the setup in mind: with one \
         message in flight a tokio worker can serve both ends of a round trip without waking \
         another thread, while stt's round trip is handed between threads six times (client \
         application → client reactor → server reactor → echo thread → server reactor → client \
         reactor → client application).\n\n{l_table}",
        machine = machine(),
        runs = args.runs,
        secs = args.seconds,
        warmup = WARMUP,
    )
}
