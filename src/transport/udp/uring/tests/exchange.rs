//! Sending and receiving through the io_uring backend: exchanges, GSO and
//! GRO, limits, refusals.

use super::*;

#[test]
fn probe_answers() {
    // Either answer is fine; it must not hang or crash, and be cached.
    let first = UringUdp::supported();
    assert_eq!(UringUdp::supported(), first);
    eprintln!("io_uring supported: {first}");
}

#[test]
fn exchange_1000_datagrams_both_ways() {
    skip_unless_supported!();
    let c = config(v4());
    let (a, b) = (open(&c), open(&c));
    assert_eq!(a.kind(), "udp/io_uring");
    assert_eq!(a.max_datagram_size(), Some(MAX));
    exchange(a, b, 1000);
}

#[test]
fn exchange_without_gso_or_gro() {
    skip_unless_supported!();
    let c = UdpConfig {
        gso: false,
        gro: false,
        ..config(v4())
    };
    exchange(open(&c), open(&c), 500);
}

#[test]
fn exchange_over_ipv6() {
    skip_unless_supported!();
    let c = config(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let Ok((mut s1, info1)) = bind_group(&c, 1) else {
        eprintln!("SKIPPED: ::1 is not available here");
        return;
    };
    let (mut s2, info2) = bind_group(&c, 1).unwrap();
    let a = UringUdp::new(&c, &info1, s1.pop().unwrap()).unwrap();
    let b = UringUdp::new(&c, &info2, s2.pop().unwrap()).unwrap();
    assert!(a.local_addr().is_ipv6());
    exchange(a, b, 300);
}

#[test]
fn gso_run_arrives_as_separate_datagrams_in_order() {
    skip_unless_supported!();
    let mut t = open(&config(v4()));
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let to = rx.local_addr().unwrap();
    for i in 0..40u8 {
        t.send(to, &[i; 1000]).unwrap();
    }
    t.send(to, &[40; 300]).unwrap();
    if t.gso {
        assert_eq!(t.queue.pending().len(), 1, "one GSO run of 41");
    } else {
        eprintln!("GSO unavailable: the datagrams go singly");
    }
    t.flush().unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..41u8 {
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(from, t.local_addr());
        assert_eq!(n, if i < 40 { 1000 } else { 300 }, "datagram {i}");
        assert!(buf[..n].iter().all(|&b| b == i), "datagram {i} in order");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.counters.snapshot().packets_sent < 41 {
        assert!(Instant::now() < deadline, "send completion never reaped");
        t.recv(&mut |_, _| {}).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let s = t.counters.snapshot();
    assert_eq!(
        (s.packets_sent, s.bytes_sent, s.errors_send),
        (41, 40 * 1000 + 300, 0)
    );
}

#[test]
fn gso_refused_by_the_kernel_resends_singles() {
    skip_unless_supported!();
    // The run's bytes in the slot's own copy, then in a lent buffer.
    for lend in [false, true] {
        let mut t = open(&config(v4()));
        if !t.gso {
            eprintln!("SKIPPED: GSO unavailable");
            return;
        }
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = rx.local_addr().unwrap();
        for i in 0..4u8 {
            t.send(to, &[i; 500]).unwrap();
        }
        t.send(to, &[4; 100]).unwrap();
        assert_eq!(t.queue.pending().len(), 1);
        // Fill a slot with the run as `flush` would, then complete it
        // as a route without segmentation offload does (EIO).
        let run = t.queue.pending()[0];
        let slot = t.sends.free.pop().unwrap();
        if lend {
            let i = t.sends.lend(mem::take(&mut t.queue.buf)).ok().unwrap();
            let buf = &t.sends.lent[usize::from(i)].buf;
            t.sends.fill(usize::from(slot), &run, buf, Some(i));
            t.sends.lent[usize::from(i)].refs = 1;
        } else {
            t.sends.fill(usize::from(slot), &run, &t.queue.buf, None);
        }
        t.queue.advance(1);
        t.in_flight += 1;
        t.complete_send(u64::from(slot), -libc::EIO, &mut 0);
        assert!(!t.gso, "GSO turned off");
        assert_eq!(t.queue.pending().len(), 5, "five singles back in front");
        assert_eq!(
            t.sends.lent_free.len(),
            t.sends.lent.len(),
            "lent buffer released"
        );
        assert_eq!(t.counters.snapshot().errors_send, 0);
        t.send(to, &[5; 500]).unwrap();
        t.flush().unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..6u8 {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(n, if i == 4 { 100 } else { 500 });
            assert!(buf[..n].iter().all(|&b| b == i), "datagram {i} in order");
        }
    }
}

#[test]
fn burst_larger_than_the_slab_is_sent_eventually() {
    skip_unless_supported!();
    let c = UdpConfig {
        gso: false,
        send_queue_limit: 20_000,
        ..config(v4())
    };
    let mut t = open(&c);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(16);
    t.register(poll.registry(), Token(0)).unwrap();
    // Nobody reads: the receiver's kernel drops what does not fit.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap();
    let n = 10_000u64;
    for i in 0..n {
        t.send(to, &[i as u8; 200]).unwrap();
    }
    t.flush().unwrap();
    assert!(t.wants_write(), "more entries than send slots");
    assert!(t.queue.datagrams < n as usize);
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.wants_write() || t.counters.snapshot().packets_sent < n {
        assert!(
            Instant::now() < deadline,
            "burst stalled at {:?}",
            t.counters.snapshot()
        );
        poll_once(&mut poll, &mut events, Duration::from_millis(20));
        t.recv(&mut |_, _| {}).unwrap();
        t.flush().unwrap();
    }
    let s = t.counters.snapshot();
    assert_eq!((s.packets_sent, s.bytes_sent), (n, n * 200));
    assert_eq!((s.errors_send, s.packets_dropped), (0, 0));
}

#[test]
fn send_queue_limit_refuses_and_counts() {
    skip_unless_supported!();
    let c = UdpConfig {
        send_queue_limit: 3,
        ..config(v4())
    };
    let mut t = open(&c);
    let to = t.local_addr();
    for _ in 0..3 {
        t.send(to, b"x").unwrap();
    }
    assert!(matches!(
        t.send(to, b"x"),
        Err(TransportError::QueueFull(3))
    ));
    assert_eq!(t.counters.snapshot().packets_dropped, 1);
}

#[test]
fn oversize_and_wrong_family_are_refused() {
    skip_unless_supported!();
    let mut t = open(&config(v4()));
    let to = t.local_addr();
    assert!(matches!(
        t.send(to, &vec![0; MAX + 1]),
        Err(TransportError::TooLarge { len, max: MAX }) if len == MAX + 1
    ));
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    assert!(matches!(
        t.send(v6, b"x"),
        Err(TransportError::AddressFamily { .. })
    ));
    t.send(to, &vec![7; MAX]).unwrap();
}

#[test]
fn more_datagrams_than_buffers_rearm_the_receive() {
    skip_unless_supported!();
    for gro in [false, true] {
        let c = UdpConfig {
            gro,
            ..config(v4())
        };
        let mut rx = open(&c);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let n = 3 * usize::from(RECV_BUFFERS);
        // All of them wait in the socket before the first `recv`: the
        // multishot receive runs out of buffers and must be re-armed.
        for i in 0..n {
            tx.send_to(&payload(i)[..100.min(payload(i).len())], rx.local_addr())
                .unwrap();
        }
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        rx.register(poll.registry(), Token(0)).unwrap();
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got < n {
            assert!(Instant::now() < deadline, "got {got} of {n} (gro {gro})");
            poll_once(&mut poll, &mut events, Duration::from_millis(20));
            rx.recv(&mut |from, _| {
                assert_eq!(from, tx.local_addr().unwrap());
                got += 1;
            })
            .unwrap();
        }
        let s = rx.counters.snapshot();
        assert_eq!(
            (s.packets_received, s.errors_receive, s.packets_dropped),
            (n as u64, 0, 0)
        );
    }
}

#[test]
fn oversized_datagram_is_dropped_and_counted() {
    skip_unless_supported!();
    let c = UdpConfig {
        gro: false,
        max_packet_size: 512,
        ..config(v4())
    };
    let mut rx = open(&c);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(&[1; 4000], rx.local_addr()).unwrap();
    tx.send_to(&[2; 100], rx.local_addr()).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.is_empty() {
        assert!(Instant::now() < deadline);
        rx.recv(&mut |_, d| got.push(d.to_vec())).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(got, vec![vec![2; 100]]);
    assert_eq!(rx.counters.snapshot().packets_dropped, 1);
}
