//! Tests of the io_uring backend (skipped, visibly, where the kernel lacks it).

use std::collections::HashSet;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::send::requeue_front;
use super::{thread_marker, UringUdp, RECV_BUFFERS};
use crate::transport::udp::mmsg::SendQueue;
use crate::transport::udp::{bind_group, UdpConfig};
use crate::transport::{Transport, TransportError};

const MAX: usize = 1472;

fn config(ip: IpAddr) -> UdpConfig {
    UdpConfig {
        bind_address: ip,
        receive_buffer_size: 4 << 20,
        send_buffer_size: 4 << 20,
        ..UdpConfig::default()
    }
}

fn open(config: &UdpConfig) -> UringUdp {
    let (mut sockets, info) = bind_group(config, 1).expect("bind");
    UringUdp::new(config, &info, sockets.pop().expect("one socket")).expect("io_uring transport")
}

fn v4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

macro_rules! skip_unless_supported {
    () => {
        if !UringUdp::supported() {
            eprintln!("SKIPPED: io_uring is not available here");
            return;
        }
    };
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Duration) {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) => panic!("poll: {e}"),
    }
}

/// Datagram `i`: its index, then a filler; 4..=1472 bytes.
fn payload(i: usize) -> Vec<u8> {
    let len = 4 + (i * 131) % (MAX - 3);
    let mut v = vec![(i % 251) as u8; len];
    v[..4].copy_from_slice(&(i as u32).to_le_bytes());
    v
}

/// `a` and `b` send `n` datagrams each to the other, at most `window`
/// ahead of what arrived; checks contents, sources and counters.
fn exchange(mut a: UringUdp, mut b: UringUdp, n: usize) {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(16);
    a.register(poll.registry(), Token(0)).unwrap();
    b.register(poll.registry(), Token(1)).unwrap();
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    let window = 200;
    let (mut sent_a, mut sent_b) = (0, 0);
    let (mut got_a, mut got_b) = (HashSet::new(), HashSet::new());
    let check = |from: SocketAddr, want_from: SocketAddr, d: &[u8], got: &mut HashSet<usize>| {
        assert_eq!(from, want_from);
        let i = u32::from_le_bytes(d[..4].try_into().unwrap()) as usize;
        assert_eq!(d, &payload(i)[..], "datagram {i}");
        assert!(got.insert(i), "datagram {i} twice");
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while got_a.len() < n
        || got_b.len() < n
        || a.counters.snapshot().packets_sent < n as u64
        || b.counters.snapshot().packets_sent < n as u64
    {
        assert!(
            Instant::now() < deadline,
            "exchange stalled: a got {}, b got {}",
            got_a.len(),
            got_b.len()
        );
        while sent_a < n && sent_a < got_b.len() + window {
            a.send(b_addr, &payload(sent_a)).unwrap();
            sent_a += 1;
        }
        while sent_b < n && sent_b < got_a.len() + window {
            b.send(a_addr, &payload(sent_b)).unwrap();
            sent_b += 1;
        }
        a.flush().unwrap();
        b.flush().unwrap();
        poll_once(&mut poll, &mut events, Duration::from_millis(20));
        a.recv(&mut |from, d| check(from, b_addr, d, &mut got_a))
            .unwrap();
        b.recv(&mut |from, d| check(from, a_addr, d, &mut got_b))
            .unwrap();
    }
    let bytes: u64 = (0..n).map(|i| payload(i).len() as u64).sum();
    for (t, name) in [(&a, "a"), (&b, "b")] {
        let s = t.counters.snapshot();
        assert_eq!(
            (s.packets_sent, s.bytes_sent),
            (n as u64, bytes),
            "{name} sent"
        );
        assert_eq!(
            (s.packets_received, s.bytes_received),
            (n as u64, bytes),
            "{name} received"
        );
        assert_eq!(
            (s.packets_dropped, s.errors_send, s.errors_receive),
            (0, 0, 0),
            "{name} errors"
        );
    }
    assert!(!a.wants_write() && !b.wants_write());
    for t in [&a, &b] {
        assert_eq!(t.sends.free.len(), t.sends.slots.len(), "every slot back");
        assert_eq!(
            t.sends.lent_free.len(),
            t.sends.lent.len(),
            "every lent buffer back"
        );
    }
}

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
