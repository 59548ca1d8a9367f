//! Workload `scaling`: stt over UDP with 1, 16 and 256 sessions into one
//! server, `size`-byte messages, total delivered messages/s and CPU.
//!
//! Setup (the same for every session count, so that only the count
//! changes): one server node of one reactor, and [`CLIENT_NODES`] client
//! nodes of one reactor each, every one its own UDP socket (its own flow);
//! session `i` is opened from client node `i % CLIENT_NODES` (1 session: one
//! node carries it, the others idle; 16: four each; 256: 64 each). UDP
//! backend `Auto` (io_uring where the kernel allows it), GSO/GRO on. One
//! application thread sends round-robin over the sessions, one message per
//! session in turn, for `seconds` (`Node::send`, which waits while a
//! reactor's queue is full); the server's application thread counts what
//! arrives, per session.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stt::frame::SessionId;
use stt::node::{Message, Node, NodeEvent};
use stt::transport::udp::UdpBackend;

use crate::common::{cpu_time, machine, median, min_max, next_event, ok, Tally};
use crate::{udp, Args};

/// Client nodes the sessions are spread over.
const CLIENT_NODES: usize = 4;
/// The session counts measured.
const SESSIONS: [usize; 3] = [1, 16, 256];

#[derive(Debug, Clone, Copy)]
struct Sample {
    rate: f64,
    cores: f64,
    delivered: u64,
    sent: u64,
    /// Sessions the server heard at least one message from.
    heard: usize,
    /// Fewest and most messages one session delivered, over the mean.
    least: f64,
    most: f64,
}

fn run(seconds: f64, size: usize, sessions: usize) -> Option<Sample> {
    let server = udp::stt_udp_node("scaling server", UdpBackend::Auto, true, 1, true)?;
    let addr = server.udp_local_addr()?;
    let clients: Vec<Node> = (0..CLIENT_NODES)
        .map(|i| {
            udp::stt_udp_node(
                &format!("scaling client {i}"),
                UdpBackend::Auto,
                true,
                1,
                false,
            )
        })
        .collect::<Option<_>>()?;
    let mut targets: Vec<(usize, SessionId)> = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let c = i % CLIENT_NODES;
        let session = ok(clients[c].connect_udp(addr), "connecting over UDP")?;
        targets.push((c, session.id()));
    }
    let server = Arc::new(server);
    let events = server.events();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let node = server.clone();
    let receiver = std::thread::spawn(move || {
        let mut tally = Tally::new();
        let mut per: HashMap<SessionId, u64> = HashMap::new();
        loop {
            match next_event(&events, Duration::from_millis(200)) {
                Ok(NodeEvent::Message(Message {
                    session, payload, ..
                })) => {
                    tally.hit();
                    *per.entry(session).or_default() += 1;
                    node.recycle(payload);
                }
                Ok(_) => {}
                Err(_) if done2.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        (tally, per)
    });
    let payload = vec![0xABu8; size];
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    'send: loop {
        for &(c, id) in &targets {
            if clients[c].send(id, &payload).is_ok() {
                sent += 1;
            }
            if sent.is_multiple_of(64) && Instant::now() >= end {
                break 'send;
            }
        }
        if Instant::now() >= end {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    let (tally, per) = receiver.join().ok()?;
    let wall = t0.elapsed().as_secs_f64();
    let mean = tally.count as f64 / sessions as f64;
    let counts: Vec<f64> = (0..sessions)
        .map(|i| *per.get(&targets[i].1).unwrap_or(&0) as f64)
        .collect();
    let (lo, hi) = min_max(&counts);
    let sample = Sample {
        rate: tally.rate(),
        cores: (cpu_time() - cpu0).as_secs_f64() / wall,
        delivered: tally.count,
        sent,
        heard: per.len(),
        least: if mean > 0.0 { lo / mean } else { 0.0 },
        most: if mean > 0.0 { hi / mean } else { 0.0 },
    };
    for c in &clients {
        c.stop();
    }
    server.stop();
    Some(sample)
}

pub fn workload(args: &Args) -> String {
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); SESSIONS.len()];
    for r in 0..args.runs {
        for (i, &n) in SESSIONS.iter().enumerate() {
            match run(args.seconds, args.size, n) {
                Some(s) => {
                    eprintln!(
                        "run {}/{}: stt, {n} sessions: {:.0} msg/s ({} of {} delivered, {} sessions heard, per session {:.2}–{:.2} of the mean), {:.2} cores",
                        r + 1,
                        args.runs,
                        s.rate,
                        s.delivered,
                        s.sent,
                        s.heard,
                        s.least,
                        s.most,
                        s.cores
                    );
                    samples[i].push(s);
                }
                None => eprintln!("run {}: stt, {n} sessions failed", r + 1),
            }
        }
    }
    let base = median(samples[0].iter().map(|s| s.rate).collect());
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| sessions | messages/s (median) | min – max | vs 1 session | goodput Gbit/s | cores busy | cores per Gbit/s | delivered / sent | sessions heard | per session, least – most (of the mean) |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|---|---|");
    for (i, &n) in SESSIONS.iter().enumerate() {
        let s = &samples[i];
        if s.is_empty() {
            continue;
        }
        let rates: Vec<f64> = s.iter().map(|x| x.rate).collect();
        let rate = median(rates.clone());
        let (lo, hi) = min_max(&rates);
        let cores = median(s.iter().map(|x| x.cores).collect());
        let gbit = rate * args.size as f64 * 8.0 / 1e9;
        let delivered: u64 = s.iter().map(|x| x.delivered).sum();
        let sent: u64 = s.iter().map(|x| x.sent).sum();
        let heard = s.iter().map(|x| x.heard).min().unwrap_or(0);
        let least = median(s.iter().map(|x| x.least).collect());
        let most = median(s.iter().map(|x| x.most).collect());
        let _ = writeln!(
            table,
            "| {n} | {:.0} | {:.0} – {:.0} | {:.2}× | {:.2} | {:.2} | {:.2} | {:.1}% | {heard} of {n} | {:.2} – {:.2} |",
            rate,
            lo,
            hi,
            if base > 0.0 { rate / base } else { 0.0 },
            gbit,
            cores,
            if gbit > 0.0 { cores / gbit } else { 0.0 },
            100.0 * delivered as f64 / sent.max(1) as f64,
            least,
            most
        );
    }
    format!(
        "## stt over UDP, 1 to 256 sessions, {size}-byte messages over loopback\n\n\
         Machine: {machine}. {runs} runs of {secs} s each, session counts interleaved. One \
         server node of one reactor; {clients} client nodes of one reactor each (each its own \
         socket), session i opened from client node i mod {clients}, in every case (with 1 \
         session three client nodes idle). UDP backend `Auto`, GSO/GRO on. One application \
         thread sends round-robin over the sessions (`Node::send`); \"messages/s\" is what \
         the server's application got in total, first to last arrival (giving each \
         message's buffer back with `Node::recycle`); \"cores busy\" is the \
         process's CPU time (every node's threads, sender, receiver) over the wall time. \
         \"sessions heard\" is the fewest sessions any run heard from; the last column is the \
         fewest and the most messages one session delivered, over the mean per session \
         (median over runs: 1.00 – 1.00 is perfectly even).\n\n{table}",
        size = args.size,
        machine = machine(),
        runs = args.runs,
        secs = args.seconds,
        clients = CLIENT_NODES,
    )
}
