//! The io_uring backend's send queue: large turns, compaction, requeueing.

use super::*;

#[test]
fn a_turn_larger_than_the_slots_goes_out_in_one_flush() {
    skip_unless_supported!();
    let c = UdpConfig {
        gso: false,
        ..config(v4())
    };
    let mut t = open(&c);
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap();
    let n = 3 * t.sends.slots.len();
    for i in 0..n {
        t.send(to, &[i as u8; 100]).unwrap();
    }
    t.flush().unwrap();
    assert!(!t.wants_write(), "sent in rounds, none left queued");
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.counters.snapshot().packets_sent < n as u64 {
        assert!(Instant::now() < deadline, "{:?}", t.counters.snapshot());
        t.recv(&mut |_, _| {}).unwrap();
    }
    assert_eq!(t.counters.snapshot().packets_dropped, 0);
}

#[test]
fn compact_keeps_the_pending_datagrams() {
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut q = SendQueue::default();
    for i in 0..200u8 {
        q.push(to, &[i; 10], false);
    }
    q.advance(150);
    let mut requeued = 0;
    requeue_front(&mut q, &mut requeued, to, &[255; 7], 7, 1, false);
    q.compact();
    assert_eq!(q.head, 0);
    assert_eq!(q.entries.len(), 51);
    assert!(q.buf.len() <= 50 * 10 + 7, "sent bytes dropped");
    let got: Vec<Vec<u8>> = q
        .pending()
        .iter()
        .map(|e| q.buf[e.start..e.start + e.len].to_vec())
        .collect();
    assert_eq!(got[0], vec![255; 7]);
    for (k, d) in got[1..].iter().enumerate() {
        assert_eq!(d, &vec![150 + k as u8; 10]);
    }
    q.push(to, &[1; 10], false);
    assert_eq!(q.pending().len(), 52);
    assert_eq!(q.advance(52), (52, 7 + 51 * 10));
}

#[test]
fn requeue_front_splits_and_keeps_order() {
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut q = SendQueue::default();
    q.push(to, &[9; 10], false);
    let mut requeued = 0;
    requeue_front(&mut q, &mut requeued, to, &[1; 250], 100, 3, true);
    requeue_front(&mut q, &mut requeued, to, &[2; 30], 30, 1, false);
    let p: Vec<(usize, u8)> = q
        .pending()
        .iter()
        .map(|e| (e.len, q.buf[e.start]))
        .collect();
    assert_eq!(p, vec![(100, 1), (100, 1), (50, 1), (30, 2), (10, 9)]);
    assert_eq!(q.datagrams, 5);
    assert_eq!(q.advance(5), (5, 290));
    assert!(q.is_empty());
}

#[test]
fn drop_with_requests_in_flight() {
    skip_unless_supported!();
    for _ in 0..20 {
        let c = UdpConfig {
            batch_size: 8,
            send_queue_limit: 10_000,
            ..config(v4())
        };
        let mut t = open(&c);
        let counters = Arc::clone(t.counters());
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Receive completions pile up unreaped (more than the buffers)…
        for i in 0..300usize {
            peer.send_to(&payload(i), t.local_addr()).unwrap();
        }
        // …sends are in flight, and a flush stashed receives.
        for i in 0..1000usize {
            t.send(peer.local_addr().unwrap(), &payload(i)).unwrap();
        }
        t.flush().unwrap();
        t.flush().unwrap();
        drop(t);
        assert!(!counters.snapshot().running);
    }
}

/// Throughput: 1,000,000 × 1200-byte datagrams over loopback, io_uring
/// vs mmsg, with and without GSO; sender and receiver on their own
/// threads, CPU time from `/proc/thread-self/schedstat`. Run with
/// `cargo test --release --lib uring::tests::throughput -- --ignored --nocapture`
/// (`STT_BENCH=IoUring-false` etc. runs one case).
#[test]
#[ignore = "measurement, not a test"]
fn throughput() {
    use crate::transport::udp::{open_backend, UdpBackend};
    skip_unless_supported!();
    const N: u64 = 1_000_000;
    fn thread_cpu() -> Duration {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        Duration::from_nanos(
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )
    }
    fn run(backend: UdpBackend, gso: bool) -> (f64, f64, u64, f64, f64) {
        let c = UdpConfig {
            backend,
            gso,
            ..config(v4())
        };
        let (mut rs, rinfo) = bind_group(&c, 1).unwrap();
        let mut rx = open_backend(&c, &rinfo, rs.pop().unwrap()).unwrap();
        let (mut ss, sinfo) = bind_group(&c, 1).unwrap();
        let mut tx = open_backend(&c, &sinfo, ss.pop().unwrap()).unwrap();
        let to = rx.local_addr();
        let receiver = std::thread::spawn(move || {
            let mut poll = Poll::new().unwrap();
            let mut events = Events::with_capacity(64);
            rx.register(poll.registry(), Token(0)).unwrap();
            let (mut got, mut first, mut last) = (0u64, None, Instant::now());
            let cpu0 = thread_cpu();
            loop {
                poll_once(&mut poll, &mut events, Duration::from_millis(20));
                let n = rx
                    .recv(&mut |_, d| {
                        debug_assert_eq!(d.len(), 1200);
                    })
                    .unwrap() as u64;
                if n > 0 {
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    got += n;
                }
                if got >= N || (first.is_some() && last.elapsed() > Duration::from_millis(500)) {
                    break;
                }
            }
            let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(f64::NAN);
            (got, secs, (thread_cpu() - cpu0).as_secs_f64())
        });
        std::thread::sleep(Duration::from_millis(50));
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(64);
        tx.register(poll.registry(), Token(0)).unwrap();
        let buf = [0x5au8; 1200];
        let start = Instant::now();
        let cpu0 = thread_cpu();
        let mut queued = 0u64;
        let mut done = 0;
        // As the reactor: poll (without sleeping while there is
        // progress), receive (which reaps completions), queue, flush.
        while done < N {
            let timeout = if tx.wants_write() { 1 } else { 0 };
            poll_once(&mut poll, &mut events, Duration::from_millis(timeout));
            tx.recv(&mut |_, _| {}).unwrap();
            while queued < N {
                match tx.send(to, &buf) {
                    Ok(()) => queued += 1,
                    Err(TransportError::QueueFull(_)) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            tx.flush().unwrap();
            let s = tx.counters().snapshot();
            done = s.packets_sent + s.errors_send;
        }
        let send_secs = start.elapsed().as_secs_f64();
        let send_cpu = (thread_cpu() - cpu0).as_secs_f64();
        let (got, recv_secs, recv_cpu) = receiver.join().unwrap();
        (
            N as f64 / send_secs,
            got as f64 / recv_secs,
            got,
            send_cpu,
            recv_cpu,
        )
    }
    let only = std::env::var("STT_BENCH").unwrap_or_default();
    for gso in [false, true] {
        for backend in [UdpBackend::IoUring, UdpBackend::Mio] {
            if !only.is_empty() && only != format!("{backend:?}-{gso}") {
                continue;
            }
            let mut runs: Vec<_> = (0..3).map(|_| run(backend, gso)).collect();
            for r in &runs {
                eprintln!(
                    "  {backend:?} gso={gso}: send {:.2} M/s ({:.2} s CPU), receive {:.2} M/s ({} of {N}, {:.2} s CPU)",
                    r.0 / 1e6,
                    r.3,
                    r.1 / 1e6,
                    r.2,
                    r.4
                );
            }
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let median_send = runs[1].0;
            runs.sort_by(|a, b| a.1.total_cmp(&b.1));
            eprintln!(
                "{backend:?} gso={gso}: median send {:.2} M datagrams/s, median receive {:.2} M datagrams/s",
                median_send / 1e6,
                runs[1].1 / 1e6
            );
        }
    }
}
