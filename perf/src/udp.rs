//! Workload `udp`: one sender, one receiver, `size`-byte messages sent as
//! fast as the sender can for `seconds`. The figure is what the receiver got:
//! messages delivered per second between the first and the last arrival.
//! Contenders: a plain `std::net::UdpSocket` `send_to`/`recv_from` loop
//! (unsealed: what people write by hand) and stt over each UDP backend
//! (sealed, AES-256-GCM or ChaCha20-Poly1305 as negotiated).

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stt::node::{Node, NodeConfig, NodeEvent};
use stt::transport::udp::{self, UdpBackend, UdpConfig};

use crate::common::{cpu_time, machine, median, Contender, Tally};
use crate::Args;

/// Socket buffers for every contender alike.
const BUFFER: usize = 4 << 20;

/// One measurement: delivered rate and CPU burned.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rate: f64,
    cores: f64,
    delivered: u64,
    sent: u64,
}

/// A plain socket with the same buffers stt gets (std cannot set them, so
/// setsockopt does).
fn big_std_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
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

/// A plain blocking `send_to` / `recv_from` loop, unsealed.
fn run_std(seconds: f64, size: usize) -> Sample {
    let rx = big_std_socket();
    let tx = big_std_socket();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let to: SocketAddr = rx.local_addr().expect("addr");
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        let mut tally = Tally::new();
        while rx.recv_from(&mut buf).is_ok() {
            tally.hit();
        }
        tally
    });
    let payload = vec![0xABu8; size];
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        for _ in 0..64 {
            if tx.send_to(&payload, to).is_ok() {
                sent += 1;
            }
        }
    }
    let tally = receiver.join().expect("receiver");
    let wall = t0.elapsed().as_secs_f64();
    Sample {
        rate: tally.rate(),
        cores: (cpu_time() - cpu0).as_secs_f64() / wall,
        delivered: tally.count,
        sent,
    }
}

/// stt: two nodes with one reactor each, sealed messages over `backend`.
fn run_stt(seconds: f64, size: usize, backend: UdpBackend, offload: bool) -> Option<Sample> {
    const SHARED: &[u8] = b"stt-perf benchmark network shared seed";
    let udp = UdpConfig {
        bind_address: "127.0.0.1".parse().expect("literal"),
        backend,
        gso: offload,
        gro: offload,
        receive_buffer_size: BUFFER,
        send_buffer_size: BUFFER,
        ..UdpConfig::default()
    };
    let server = Node::start(
        NodeConfig::new(b"stt-perf benchmark server node seed!!", SHARED)
            .with_udp(udp.clone())
            .with_reactors(1),
    )
    .ok()?;
    let client = Node::start(
        NodeConfig::new(b"stt-perf benchmark client node seed!!", SHARED)
            .with_udp(udp)
            .with_reactors(1)
            .with_server_mode(false),
    )
    .ok()?;
    let session = client.connect_udp(server.udp_local_addr()?).ok()?;
    let events = server.events();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let receiver = std::thread::spawn(move || {
        let mut tally = Tally::new();
        loop {
            match events.recv_timeout(Duration::from_millis(200)) {
                Ok(NodeEvent::Message { .. }) => tally.hit(),
                Ok(_) => {}
                Err(_) if done2.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        tally
    });
    let payload = vec![0xABu8; size];
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        for _ in 0..64 {
            if client.send(session.id, &payload).is_ok() {
                sent += 1;
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let tally = receiver.join().ok()?;
    let wall = t0.elapsed().as_secs_f64();
    let sample = Sample {
        rate: tally.rate(),
        cores: (cpu_time() - cpu0).as_secs_f64() / wall,
        delivered: tally.count,
        sent,
    };
    if std::env::var_os("STT_PERF_DEBUG").is_some() {
        eprintln!(
            "  client {:?}\n  server {:?}",
            client.udp_stats(),
            server.udp_stats()
        );
    }
    client.stop();
    server.stop();
    Some(sample)
}

pub fn workload(args: &Args) -> String {
    let uring_ok = udp::bind(&UdpConfig {
        bind_address: "127.0.0.1".parse().expect("literal"),
        backend: UdpBackend::IoUring,
        ..UdpConfig::default()
    })
    .is_ok();
    let mut contenders: Vec<(&str, Contender<'_, Sample>)> = vec![
        (
            "std `UdpSocket` loop (unsealed)",
            Box::new(|| Some(run_std(args.seconds, args.size))),
        ),
        (
            "stt, mio backend (sealed)",
            Box::new(|| run_stt(args.seconds, args.size, UdpBackend::Mio, true)),
        ),
        (
            "stt, mio backend, no GSO/GRO (sealed)",
            Box::new(|| run_stt(args.seconds, args.size, UdpBackend::Mio, false)),
        ),
    ];
    if uring_ok {
        contenders.push((
            "stt, io_uring backend (sealed)",
            Box::new(|| run_stt(args.seconds, args.size, UdpBackend::IoUring, true)),
        ));
        contenders.push((
            "stt, io_uring backend, no GSO/GRO (sealed)",
            Box::new(|| run_stt(args.seconds, args.size, UdpBackend::IoUring, false)),
        ));
    } else {
        eprintln!("io_uring is not available here: its row is left out");
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); contenders.len()];
    for run in 0..args.runs {
        for (i, (name, f)) in contenders.iter().enumerate() {
            match f() {
                Some(s) => {
                    eprintln!(
                        "run {}/{}: {name}: {:.0} msg/s ({} of {} delivered), {:.2} cores",
                        run + 1,
                        args.runs,
                        s.rate,
                        s.delivered,
                        s.sent,
                        s.cores
                    );
                    samples[i].push(s);
                }
                None => eprintln!("run {}: {name} failed to start", run + 1),
            }
        }
    }
    let base = median(samples[0].iter().map(|s| s.rate).collect());
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| contender | messages/s (median) | min – max | vs std loop | goodput Gbit/s | cores busy | cores per Gbit/s | delivered / sent |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|");
    for (i, (name, _)) in contenders.iter().enumerate() {
        let s = &samples[i];
        if s.is_empty() {
            continue;
        }
        let rates: Vec<f64> = s.iter().map(|x| x.rate).collect();
        let rate = median(rates.clone());
        let lo = rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().cloned().fold(0.0, f64::max);
        let cores = median(s.iter().map(|x| x.cores).collect());
        let gbit = rate * args.size as f64 * 8.0 / 1e9;
        let delivered: u64 = s.iter().map(|x| x.delivered).sum();
        let sent: u64 = s.iter().map(|x| x.sent).sum();
        let _ = writeln!(
            table,
            "| {name} | {:.0} | {:.0} – {:.0} | {:.2}× | {:.2} | {:.2} | {:.2} | {:.1}% |",
            rate,
            lo,
            hi,
            if base > 0.0 { rate / base } else { 0.0 },
            gbit,
            cores,
            if gbit > 0.0 { cores / gbit } else { 0.0 },
            100.0 * delivered as f64 / sent.max(1) as f64
        );
    }
    format!(
        "## UDP, {size}-byte messages, one sender → one receiver over loopback\n\n\
         Machine: {machine}. {runs} runs of {secs} s each, contenders interleaved; \
         socket buffers {buf} MiB for all. \"messages/s\" is what the receiver got, \
         first to last arrival; \"cores busy\" is the whole process's CPU time (sender, \
         receiver and every stt thread) over the wall time.\n\n{table}",
        size = args.size,
        machine = machine(),
        runs = args.runs,
        secs = args.seconds,
        buf = BUFFER >> 20,
    )
}
