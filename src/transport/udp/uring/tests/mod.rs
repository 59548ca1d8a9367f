//! Tests of the io_uring backend (skipped, visibly, where the kernel lacks
//! it). This file holds the shared helpers; the tests are in the files
//! beside it.

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

// After the helpers and the macro above, which they use.
mod exchange;
mod queue;
mod wakeup;
