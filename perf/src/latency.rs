//! Workload `latency`: UDP round trips over loopback, one 64-byte message in
//! flight, the far end echoing it; `pings` round trips per run (after
//! [`WARMUP`]) in an HDR histogram. Contenders, interleaved run by run:
//!
//! - a blocking `std::net::UdpSocket` ping-pong (unsealed): the floor, two
//!   threads each blocked in `recv_from`, nothing between them but the
//!   kernel;
//! - stt over UDP (sealed): two nodes of one reactor each (backend `Auto`:
//!   io_uring where the kernel allows it, GSO/GRO on as by default), the
//!   server's application a thread reading [`NodeEvent::Message`] from
//!   `server.events()` and calling `server.send(session, &payload)`;
//! - quinn datagrams over QUIC (sealed, see [`crate::quic`]): the client
//!   task `send_datagram`s and awaits `read_datagram`, the server task
//!   echoes each datagram, both on one tokio runtime with a worker per core.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use stt::transport::udp::UdpBackend;

use crate::common::{
    big_std_socket, histogram, machine, median, min_max, ok, stt_ping_pong, stt_ping_pong_inline,
    Contender, Latency, ECHO_TIMEOUT, WARMUP,
};
use crate::{quic, udp, Args};

/// The message size.
const SIZE: usize = 64;

fn std_pingpong(round_trips: usize) -> Option<Latency> {
    let server = big_std_socket();
    let client = big_std_socket();
    let server_addr = ok(server.local_addr(), "server address")?;
    ok(
        server.set_read_timeout(Some(Duration::from_millis(20))),
        "timeout",
    )?;
    ok(client.set_read_timeout(Some(ECHO_TIMEOUT)), "timeout")?;
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                if let Ok((n, from)) = server.recv_from(&mut buf) {
                    let _ = server.send_to(&buf[..n], from);
                }
            }
        });
        let result = (|| {
            let payload = [0xABu8; SIZE];
            let mut buf = [0u8; 2048];
            let mut hist = histogram();
            for i in 0..WARMUP + round_trips {
                let t = Instant::now();
                ok(client.send_to(&payload, server_addr), "std send_to")?;
                ok(client.recv_from(&mut buf), "waiting for the std echo")?;
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

fn stt_pingpong(round_trips: usize, in_reactor: bool) -> Option<Latency> {
    let server = udp::stt_udp_node("latency server", UdpBackend::Auto, true, 1, true)?;
    let client = udp::stt_udp_node("latency client", UdpBackend::Auto, true, 1, false)?;
    let session = ok(
        client.connect_udp(server.udp_local_addr()?),
        "connecting over UDP",
    )?
    .id();
    let result = if in_reactor {
        stt_ping_pong_inline(&server, &client, session, SIZE, round_trips)
    } else {
        stt_ping_pong(&server, &client, session, SIZE, round_trips)
    };
    client.stop();
    server.stop();
    result
}

fn quinn_pingpong(round_trips: usize) -> Option<Latency> {
    let rt = ok(quic::runtime(), "building the tokio runtime")?;
    let run = async move {
        let pair = quic::connect().await?;
        let server = pair.server.clone();
        // The server's application: echo every datagram; ends when the
        // connection closes.
        let echo = tokio::spawn(async move {
            while let Ok(d) = server.read_datagram().await {
                if server.send_datagram(d).is_err() {
                    break;
                }
            }
        });
        let client = pair.client.clone();
        let payload = bytes::Bytes::from(vec![0xABu8; SIZE]);
        let mut hist = histogram();
        for i in 0..WARMUP + round_trips {
            let t = Instant::now();
            client.send_datagram(payload.clone())?;
            loop {
                let d = tokio::time::timeout(ECHO_TIMEOUT, client.read_datagram()).await??;
                if d.len() == SIZE {
                    break;
                }
            }
            if i >= WARMUP {
                hist.saturating_record(t.elapsed().as_nanos() as u64);
            }
        }
        pair.close().await;
        let _ = echo.await;
        Ok::<_, quic::BoxError>(Latency::from_histogram(&hist))
    };
    ok(rt.block_on(run), "quinn datagram ping-pong")
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

pub fn workload(args: &Args) -> String {
    let pings = args.pings;
    let contenders: [(&str, Contender<'_, Latency>); 4] = [
        (
            "std `UdpSocket` ping-pong, blocking (unsealed)",
            Box::new(move || std_pingpong(pings)),
        ),
        (
            "stt over UDP, application on its own threads (sealed)",
            Box::new(move || stt_pingpong(pings, false)),
        ),
        (
            "stt over UDP, application in the reactors (sealed)",
            Box::new(move || stt_pingpong(pings, true)),
        ),
        (
            "quinn datagrams over QUIC (sealed)",
            Box::new(move || quinn_pingpong(pings)),
        ),
    ];
    let mut lat: Vec<Vec<Latency>> = vec![Vec::new(); contenders.len()];
    for run in 0..args.runs {
        for (i, (name, f)) in contenders.iter().enumerate() {
            match f() {
                Some(l) => {
                    eprintln!(
                        "run {}/{}: {name}: round trip p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
                        run + 1,
                        args.runs,
                        l.p50,
                        l.p99,
                        l.max
                    );
                    lat[i].push(l);
                }
                None => eprintln!("run {}: {name} failed", run + 1),
            }
        }
    }
    let med = |ci: usize, k: usize| median(lat[ci].iter().map(|l| l.values()[k]).collect());
    let mut table = String::new();
    let _ = write!(table, "| contender |");
    for p in Latency::NAMES {
        let _ = write!(table, " {p} µs |");
    }
    let _ = writeln!(table, " p50 / p99 vs std floor |");
    let _ = writeln!(table, "|---|---|---|---|---|---|---|");
    for (ci, (name, _)) in contenders.iter().enumerate() {
        if lat[ci].is_empty() {
            continue;
        }
        let _ = write!(table, "| {name} |");
        for k in 0..Latency::NAMES.len() {
            let v: Vec<f64> = lat[ci].iter().map(|l| l.values()[k]).collect();
            let (lo, hi) = min_max(&v);
            let _ = write!(table, " {:.1} ({:.1} – {:.1}) |", median(v), lo, hi);
        }
        let _ = writeln!(
            table,
            " {} / {} |",
            ratio(med(ci, 0), med(0, 0)),
            ratio(med(ci, 2), med(0, 2))
        );
    }
    format!(
        "## UDP round-trip latency, {SIZE}-byte messages over loopback\n\n\
         Machine: {machine}. {runs} runs, contenders interleaved. Ping-pong with one message \
         in flight, the far end's application echoing it back; {pings} round trips per run \
         after {WARMUP} of warm-up, in an HDR histogram. Each cell is the median over runs \
         (min – max), in µs; the last column divides each contender's p50 and p99 by the \
         blocking std ping-pong's (the floor: two threads blocked in `recv_from`, nothing but \
         the kernel between them). stt: two nodes of one reactor each (UDP backend `Auto`, \
         GSO/GRO on), in two shapes. *Application on its own threads*: the server's echo a \
         thread reading `server.events()` and calling `server.send(session, payload)`, the \
         client a thread doing the same, so a round trip is handed between threads six times \
         (client application → client reactor → server reactor → echo thread → server reactor \
         → client reactor → client application). *Application in the reactors*: both ends \
         answer from `stt::on_reactor` handlers (the server's echoes, the client's \
         records the round trip and sends the next ping), so, as in the floor, only the two \
         receiving threads are woken per round trip; quinn: `send_datagram` / `read_datagram` on one connection, client and echo \
         tasks on one tokio runtime with a worker per core.\n\n{table}",
        machine = machine(),
        runs = args.runs,
    )
}
