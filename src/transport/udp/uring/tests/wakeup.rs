//! The io_uring backend and its reactor: completions that wake the poll,
//! the thread that drives it, no sleep on pending work.

use super::*;

#[test]
fn receive_completions_reaped_by_flush_wake_the_poll() {
    skip_unless_supported!();
    let c = UdpConfig {
        gso: false,
        batch_size: 2, // 8 send slots
        ..config(v4())
    };
    let mut t = open(&c);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(16);
    t.register(poll.registry(), Token(0)).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(b"hello", t.local_addr()).unwrap();
    // Wait until the receive completion is on the ring, then let a
    // flush (more entries than slots) reap it into the stash.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        poll_once(&mut poll, &mut events, Duration::from_millis(100));
        if !events.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "ring never readable");
    }
    for _ in 0..2 * t.sends.slots.len() {
        t.send(peer.local_addr().unwrap(), b"out").unwrap();
    }
    t.flush().unwrap();
    t.flush().unwrap();
    assert!(
        !t.stash.is_empty(),
        "the flush reaped the receive completion"
    );
    // The poll must still report the ring readable.
    poll_once(&mut poll, &mut events, Duration::from_secs(2));
    assert!(!events.is_empty(), "poll slept on a stashed datagram");
    let mut got = Vec::new();
    t.recv(&mut |_, d| got.push(d.to_vec())).unwrap();
    assert_eq!(got, vec![b"hello".to_vec()]);
}

#[test]
fn built_on_one_thread_driven_on_another() {
    skip_unless_supported!();
    // As a node does: the transport is built by the thread that starts the
    // node, then driven by a reactor thread, which binds the ring. Once
    // with the builder gone, once with it alive but asleep: neither may
    // matter.
    for builder_lingers in [false, true] {
        let (tx, rx) = std::sync::mpsc::channel();
        let builder = std::thread::spawn(move || {
            let a = open(&config(v4()));
            let b = open(&config(v4()));
            tx.send((a, b)).unwrap();
            if builder_lingers {
                std::thread::sleep(Duration::from_secs(2));
            }
        });
        let (a, b) = rx.recv().unwrap();
        let mut builder = Some(builder);
        if !builder_lingers {
            builder.take().unwrap().join().unwrap();
        }
        let started = Instant::now();
        let (mut a, mut b) = (a, b);
        assert_eq!((a.owner, a.recv_armed), (0, false), "nothing submitted yet");
        // The first `recv` here binds the ring to this thread.
        a.recv(&mut |_, _| {}).unwrap();
        b.recv(&mut |_, _| {}).unwrap();
        assert!(a.recv_armed && a.owner == thread_marker());
        exchange(a, b, 300);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the exchange waited for the builder thread"
        );
        if let Some(b) = builder {
            b.join().unwrap();
        }
    }
}

#[test]
fn driven_by_a_second_thread_is_refused_then_dropped_safely() {
    skip_unless_supported!();
    let mut t = open(&config(v4()));
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    t.recv(&mut |_, _| {}).unwrap(); // bound to this thread
    t.send(peer.local_addr().unwrap(), b"queued").unwrap();
    std::thread::spawn(move || {
        let poll = Poll::new().unwrap();
        let e = t.recv(&mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("thread"), "{e}");
        assert!(t.flush().is_err());
        assert!(t.register(poll.registry(), Token(0)).is_err());
        // Dropped here, on the wrong thread: the receive is in flight and
        // cannot be cancelled from here, so its memory is leaked, not freed.
        drop(t);
    })
    .join()
    .unwrap();
}

#[test]
fn deferred_work_wakes_the_polled_eventfd() {
    skip_unless_supported!();
    let c = UdpConfig {
        gro: false,
        ..config(v4())
    };
    let mut t = open(&c);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(16);
    t.register(poll.registry(), Token(0)).unwrap();
    // The kernel behaviour behind the eventfd: the ring's own fd, in an
    // epoll of its own, is not reported while a receive waits as deferred
    // work, only once completions are posted (Linux 6.18; printed, since a
    // kernel that reports it would do no harm).
    let mut ring_poll = Poll::new().unwrap();
    let mut ring_events = Events::with_capacity(4);
    let ring_fd = t.ring.as_raw_fd();
    ring_poll
        .registry()
        .register(&mut SourceFd(&ring_fd), Token(1), Interest::READABLE)
        .unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    for round in 0..50u8 {
        // Consume the edges left by the last round's completions, so that
        // only the new datagram can wake the poll.
        poll_once(&mut poll, &mut events, Duration::ZERO);
        poll_once(&mut ring_poll, &mut ring_events, Duration::ZERO);
        peer.send_to(&[round; 64], t.local_addr()).unwrap();
        // The datagram's receive is deferred work now: nothing is posted,
        // and yet the poll must report the transport.
        poll_once(&mut poll, &mut events, Duration::from_secs(5));
        assert!(
            !events.is_empty(),
            "round {round}: poll slept on a datagram"
        );
        assert!(t.ring.completion().is_empty(), "the receive is deferred");
        if round == 0 {
            poll_once(&mut ring_poll, &mut ring_events, Duration::from_millis(100));
            eprintln!(
                "ring fd reported while the receive is deferred: {}",
                !ring_events.is_empty()
            );
        }
        let mut got = Vec::new();
        // As the reactor: after an event, `recv` until it returns 0.
        while t.recv(&mut |_, d| got.push(d.to_vec())).unwrap() > 0 {}
        assert_eq!(got, vec![vec![round; 64]], "round {round}");
    }
}

#[test]
fn edge_triggered_reactor_never_sleeps_on_pending_work() {
    skip_unless_supported!();
    for gro in [false, true] {
        let c = UdpConfig {
            gro,
            ..config(v4())
        };
        let (mut rx, mut tx) = (open(&c), open(&c));
        let to = rx.local_addr();
        let n = 20_000usize;
        // The sender: bursts of up to 2,000, then a pause.
        let sender = std::thread::spawn(move || {
            let mut sent = 0;
            while sent < n {
                for _ in 0..(sent % 2000 + 1).min(n - sent) {
                    tx.send(to, &payload(sent)[..600.min(payload(sent).len())])
                        .unwrap();
                    sent += 1;
                }
                while tx.wants_write() {
                    tx.flush().unwrap();
                    tx.recv(&mut |_, _| {}).unwrap();
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            // Every completion reaped before the sender goes.
            while tx.counters.snapshot().packets_sent < n as u64 {
                tx.recv(&mut |_, _| {}).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        // The receiver, as the reactor: `recv` only after an event or a
        // turn that delivered something, a long timeout otherwise. The
        // sender never pauses for long, so a poll that runs out its timeout
        // with datagrams missing slept on work it was not told about.
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        rx.register(poll.registry(), Token(0)).unwrap();
        let (mut got, mut ready) = (0usize, true);
        let timeout = Duration::from_secs(1);
        while got < n {
            let before = Instant::now();
            poll_once(
                &mut poll,
                &mut events,
                if ready { Duration::ZERO } else { timeout },
            );
            if events.is_empty() && !ready {
                assert!(
                    before.elapsed() < timeout,
                    "slept with work pending (gro {gro}, got {got} of {n}, {:?})",
                    rx.counters.snapshot()
                );
                continue; // woken early without an event: poll again
            }
            let k = rx.recv(&mut |_, _| {}).unwrap();
            got += k;
            ready = k > 0;
        }
        sender.join().unwrap();
        // Loopback with a 4 MiB buffer loses nothing at this pace.
        assert_eq!(got, n, "gro {gro}");
    }
}
