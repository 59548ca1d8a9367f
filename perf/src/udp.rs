//! Workload `udp`: one sender, one receiver, `size`-byte messages sent as
//! fast as the sender can for `seconds`. The figure is what the receiver got:
//! messages delivered per second between the first and the last arrival.
//! Contenders, interleaved run by run:
//!
//! - unsealed: a plain `std::net::UdpSocket` `send_to`/`recv_from` loop
//!   (what people write by hand), the same with tokio's `UdpSocket`, and
//!   quinn-udp's batched I/O with GSO/GRO (the raw-I/O ceiling);
//! - sealed: quinn's unreliable datagrams over QUIC (see [`crate::quic`])
//!   and stt over each UDP backend, with and without GSO/GRO (AES-256-GCM
//!   or ChaCha20-Poly1305 as negotiated).
//!
//! Before each run the one-core AES-256-GCM seal ceiling is measured too
//! ([`crypto::seal_rate`]), and the sealed rows are reported as a share of it.

use std::fmt::Write as _;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use stt::crypto::Algorithm;
use stt::node::{Message, Node, NodeConfig, NodeEvent};
use stt::transport::udp::{self, UdpBackend, UdpConfig};

use crate::common::{
    big_std_socket, cpu_time, machine, median, min_max, next_event, ok, paired, ratio_cell,
    send_for, Contender, Sample, Tally, BUFFER,
};
use crate::Args;
use crate::{crypto, quic};

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
    let (sent, cpu0, t0) = send_for(seconds, || tx.send_to(&payload, to).is_ok());
    let tally = receiver.join().expect("receiver");
    let wall = t0.elapsed().as_secs_f64();
    Sample::measured(&tally, cpu0, wall, sent)
}

/// tokio's `UdpSocket`: a sender task and a receiver task on a runtime with
/// a worker per core, `send_to` / `recv_from`, unsealed.
fn run_tokio(seconds: f64, size: usize) -> Option<Sample> {
    let rt = ok(quic::runtime(), "building the tokio runtime")?;
    let run = async move {
        let rx = big_std_socket();
        let tx = big_std_socket();
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        let rx = tokio::net::UdpSocket::from_std(rx)?;
        let tx = tokio::net::UdpSocket::from_std(tx)?;
        let to = rx.local_addr()?;
        let receiver = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut tally = Tally::new();
            while let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(200), rx.recv_from(&mut buf)).await
            {
                tally.hit();
            }
            tally
        });
        let sender = tokio::spawn(async move {
            let payload = vec![0xABu8; size];
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            let end = t0 + Duration::from_secs_f64(seconds);
            let mut sent = 0u64;
            while Instant::now() < end {
                for _ in 0..64 {
                    if tx.send_to(&payload, to).await.is_ok() {
                        sent += 1;
                    }
                }
            }
            (cpu0, t0, sent)
        });
        let (cpu0, t0, sent) = sender.await?;
        let tally = receiver.await?;
        let wall = t0.elapsed().as_secs_f64();
        Ok::<_, quic::BoxError>(Sample::measured(&tally, cpu0, wall, sent))
    };
    ok(rt.block_on(run), "tokio UdpSocket")
}

/// How long each run's one-core seal-ceiling measurement lasts.
const CEILING_SECONDS: f64 = 0.5;

/// Most GSO segments per `sendmsg` (40 × 1200 B stays under 64 KiB).
const GSO_BATCH: usize = 40;

/// quinn-udp's batched I/O, unsealed: the raw-I/O ceiling. The sender
/// hands the kernel up to [`GSO_BATCH`] segments per `sendmsg` (GSO, one
/// `Transmit` with `segment_size`); the receiver reads several GRO
/// super-datagrams per `recvmmsg` into [`RECV_SLOTS`] 64 KiB buffers and
/// counts the segments (`len / stride`). The sender's socket is set back to
/// blocking (quinn-udp makes it non-blocking), as the std loop's is; the
/// receiver stays non-blocking and waits in `poll(2)` (quinn-udp's
/// `recvmmsg` would otherwise block until every slot is filled).
fn run_quinn_udp(seconds: f64, size: usize) -> Option<Sample> {
    const RECV_SLOTS: usize = 8;
    let rx = big_std_socket();
    let tx = big_std_socket();
    let rx_state = ok(UdpSocketState::new((&rx).into()), "quinn-udp socket state")?;
    let tx_state = ok(UdpSocketState::new((&tx).into()), "quinn-udp socket state")?;
    ok(tx.set_nonblocking(false), "blocking sender")?;
    let to: SocketAddr = rx.local_addr().ok()?;
    let batch = tx_state.max_gso_segments().clamp(1, GSO_BATCH);
    if std::env::var_os("STT_PERF_DEBUG").is_some() {
        eprintln!(
            "  quinn-udp: {batch} segments per send, GRO {} segments",
            rx_state.gro_segments()
        );
    }
    let receiver = std::thread::spawn(move || {
        let mut storage = vec![vec![0u8; 64 << 10]; RECV_SLOTS];
        let mut meta = [RecvMeta::default(); RECV_SLOTS];
        let mut tally = Tally::new();
        loop {
            let mut bufs: Vec<IoSliceMut<'_>> =
                storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            match rx_state.recv((&rx).into(), &mut bufs, &mut meta) {
                Ok(n) => {
                    let segments: usize = meta[..n]
                        .iter()
                        .map(|m| m.len.div_ceil(m.stride.max(1)))
                        .sum();
                    tally.hits(segments as u64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let mut fd = libc::pollfd {
                        fd: std::os::fd::AsRawFd::as_raw_fd(&rx),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one live pollfd, count 1.
                    if unsafe { libc::poll(&mut fd, 1, 200) } <= 0 {
                        break;
                    }
                }
                Err(e) => {
                    eprintln!("  quinn-udp recv: {e}");
                    break;
                }
            }
        }
        tally
    });
    let payload = vec![0xABu8; size * batch];
    let transmit = Transmit {
        destination: to,
        ecn: None,
        contents: &payload,
        segment_size: (batch > 1).then_some(size),
        src_ip: None,
    };
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        for _ in 0..8 {
            if tx_state.try_send((&tx).into(), &transmit).is_ok() {
                sent += batch as u64;
            }
        }
    }
    let tally = receiver.join().ok()?;
    let wall = t0.elapsed().as_secs_f64();
    Some(Sample::measured(&tally, cpu0, wall, sent))
}

/// quinn: unreliable datagrams on one QUIC connection (sealed, TLS 1.3 keys,
/// AES-GCM or ChaCha20-Poly1305 as rustls negotiates). The client sends with
/// `send_datagram_wait`, which waits for room in quinn's datagram send
/// buffer, as `Node::send` waits for room in stt's queue (plain
/// `send_datagram` never waits: it discards the oldest unsent datagram to
/// make room, so "as fast as it accepts" would spin and measure drops). The
/// server's task reads with `read_datagram`.
fn run_quinn(seconds: f64, size: usize) -> Option<Sample> {
    let rt = ok(quic::runtime(), "building the tokio runtime")?;
    let run = async move {
        let pair = quic::connect().await?;
        let max = pair.client.max_datagram_size().unwrap_or(0);
        if max < size {
            return Err(format!("quinn's largest datagram is {max} B, under {size} B").into());
        }
        let server = pair.server.clone();
        let receiver = tokio::spawn(async move {
            let mut tally = Tally::new();
            while let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(200), server.read_datagram()).await
            {
                tally.hit();
            }
            tally
        });
        let client = pair.client.clone();
        let sender = tokio::spawn(async move {
            let payload = bytes::Bytes::from(vec![0xABu8; size]);
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            let end = t0 + Duration::from_secs_f64(seconds);
            let mut sent = 0u64;
            while Instant::now() < end {
                for _ in 0..64 {
                    if client.send_datagram_wait(payload.clone()).await.is_ok() {
                        sent += 1;
                    }
                }
            }
            (cpu0, t0, sent)
        });
        let (cpu0, t0, sent) = sender.await?;
        let tally = receiver.await?;
        let wall = t0.elapsed().as_secs_f64();
        let sample = Sample::measured(&tally, cpu0, wall, sent);
        if std::env::var_os("STT_PERF_DEBUG").is_some() {
            eprintln!(
                "  quinn client {:?}\n  quinn server {:?}",
                pair.client.stats(),
                pair.server.stats()
            );
        }
        pair.close().await;
        Ok::<_, quic::BoxError>(sample)
    };
    ok(rt.block_on(run), "quinn datagrams")
}

/// stt: two nodes with one reactor each, sealed messages over `backend`.
/// An stt node with `reactors` reactors and UDP on 127.0.0.1 over
/// `backend`, GSO and GRO on or off, [`BUFFER`]-sized socket buffers; all
/// nodes share one network seed, `seed` makes the node's identity.
pub fn stt_udp_node(
    seed: &str,
    backend: UdpBackend,
    offload: bool,
    reactors: usize,
    server_mode: bool,
) -> Option<Node> {
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
    let seed = format!("stt-perf benchmark node seed: {seed}");
    ok(
        Node::start(
            NodeConfig::new(seed.as_bytes(), SHARED)
                .with_udp(udp)
                .with_reactors(reactors)
                .with_server_mode(server_mode),
        ),
        "starting an stt node",
    )
}

fn run_stt(seconds: f64, size: usize, backend: UdpBackend, offload: bool) -> Option<Sample> {
    let server = stt_udp_node("udp server", backend, offload, 1, true)?;
    let client = stt_udp_node("udp client", backend, offload, 1, false)?;
    let session = client.connect_udp(server.udp_local_addr()?).ok()?;
    let server = Arc::new(server);
    let events = server.events();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let node = server.clone();
    let receiver = std::thread::spawn(move || {
        let mut tally = Tally::new();
        loop {
            match next_event(&events, Duration::from_millis(200)) {
                Ok(NodeEvent::Message(Message { payload, .. })) => {
                    tally.hit();
                    node.recycle(payload);
                }
                Ok(_) => {}
                Err(_) if done2.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        tally
    });
    let payload = vec![0xABu8; size];
    let (sent, cpu0, t0) = send_for(seconds, || client.send(session.id(), &payload).is_ok());
    done.store(true, Ordering::Relaxed);
    let tally = receiver.join().ok()?;
    let wall = t0.elapsed().as_secs_f64();
    let sample = Sample::measured(&tally, cpu0, wall, sent);
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
            "tokio `UdpSocket` (unsealed)",
            Box::new(|| run_tokio(args.seconds, args.size)),
        ),
        (
            "quinn-udp, GSO/GRO batches (unsealed)",
            Box::new(|| run_quinn_udp(args.seconds, args.size)),
        ),
        (
            "quinn datagrams over QUIC (sealed)",
            Box::new(|| run_quinn(args.seconds, args.size)),
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
    // [contender][run]: the rate, for run-by-run ratios.
    let mut by_run: Vec<Vec<Option<f64>>> = vec![Vec::new(); contenders.len()];
    let mut ceiling: Vec<f64> = Vec::new();
    for run in 0..args.runs {
        // The one-core AES-256-GCM seal ceiling, measured between the runs
        // so that it sees the same machine noise.
        let c = crypto::seal_rate(Algorithm::Aes256Gcm, args.size, CEILING_SECONDS);
        eprintln!(
            "run {}/{}: AES-256-GCM seal ceiling, one core: {c:.0} /s",
            run + 1,
            args.runs
        );
        ceiling.push(c);
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
                    by_run[i].push(Some(s.rate));
                    samples[i].push(s);
                }
                None => {
                    by_run[i].push(None);
                    eprintln!("run {}: {name} failed to start", run + 1)
                }
            }
        }
    }
    let base = median(samples[0].iter().map(|s| s.rate).collect());
    // The sealed peer: quinn's datagrams.
    let quinn = contenders
        .iter()
        .position(|(name, _)| name.starts_with("quinn datagrams"));
    let quinn_rate = quinn.map_or(0.0, |q| median(samples[q].iter().map(|s| s.rate).collect()));
    let seal_ceiling = median(ceiling.clone());
    let (ceiling_lo, ceiling_hi) = min_max(&ceiling);
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| contender | messages/s (median) | min – max | vs std loop | vs quinn datagrams | goodput Gbit/s | cores busy | cores per Gbit/s | delivered / sent | % of one-core AES seal ceiling |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|---|---|");
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
        let vs_quinn = match quinn {
            Some(q) if q != i => ratio_cell(rate, quinn_rate, paired(&by_run[i], &by_run[q])),
            Some(_) => "1.00×".into(),
            None => "–".into(),
        };
        let _ = writeln!(
            table,
            "| {name} | {:.0} | {:.0} – {:.0} | {} | {vs_quinn} | {:.2} | {:.2} | {:.2} | {:.1}% | {} |",
            rate,
            lo,
            hi,
            ratio_cell(rate, base, paired(&by_run[i], &by_run[0])),
            gbit,
            cores,
            if gbit > 0.0 { cores / gbit } else { 0.0 },
            100.0 * delivered as f64 / sent.max(1) as f64,
            if name.contains("(sealed)") && seal_ceiling > 0.0 {
                format!("{:.0}%", 100.0 * rate / seal_ceiling)
            } else {
                "–".into()
            }
        );
    }
    format!(
        "## UDP, {size}-byte messages, one sender → one receiver over loopback\n\n\
         Machine: {machine}. {runs} runs of {secs} s each, contenders interleaved; \
         socket buffers {buf} MiB for all. \"messages/s\" is what the receiver got, \
         first to last arrival (stt's receiving application gives each message's buffer \
         back with `Node::recycle`); \"cores busy\" is the whole process's CPU time (sender, \
         receiver and every stt thread) over the wall time. The two ratio columns divide \
         medians; \"per run\" then gives the median and the range of the ratios taken run \
         by run (the two contenders of one run share its noise).\n\n\
         The last column, for the sealed contenders, divides the datagrams/s delivered by \
         the one-core AES-256-GCM seal ceiling: {ceiling:.0} seals/s of {size}-byte payloads \
         (median, {ceiling_lo:.0} – {ceiling_hi:.0}; stt's `SendKeys::seal` on one thread, no \
         I/O, {ceiling_secs} s before each run; see the `crypto` section). Above 100% means \
         the sealing is spread over more than one core (sender and reactor threads). quinn \
         seals with rustls's QUIC packet protection on ring, most likely AES-256-GCM (the \
         first TLS 1.3 suite rustls offers), plus header protection.\n\n{table}",
        size = args.size,
        machine = machine(),
        runs = args.runs,
        secs = args.seconds,
        buf = BUFFER >> 20,
        ceiling = seal_ceiling,
        ceiling_secs = CEILING_SECONDS,
    )
}
