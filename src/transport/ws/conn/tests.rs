//! [`Conn`] over an in-memory pipe in virtual time: no sockets, no sleeps.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::*;

/// One direction of a pipe: bytes in flight, bounded like a socket buffer.
struct Half {
    bytes: VecDeque<u8>,
    capacity: usize,
    hung_up: bool,
}

/// One end of an in-memory, non-blocking duplex pipe: `WouldBlock` when
/// there is nothing to read or no room to write, like a mio socket.
#[derive(Clone)]
struct Pipe {
    rx: Rc<RefCell<Half>>,
    tx: Rc<RefCell<Half>>,
}

fn pipe(capacity: usize) -> (Pipe, Pipe) {
    let half = || {
        Rc::new(RefCell::new(Half {
            bytes: VecDeque::new(),
            capacity,
            hung_up: false,
        }))
    };
    let (a, b) = (half(), half());
    (
        Pipe {
            rx: a.clone(),
            tx: b.clone(),
        },
        Pipe { rx: b, tx: a },
    )
}

impl Pipe {
    /// Bytes written by this end, not yet read by the other.
    fn in_flight(&self) -> usize {
        self.tx.borrow().bytes.len()
    }

    /// Puts raw bytes in this end's outgoing direction.
    fn inject(&self, bytes: &[u8]) {
        self.tx.borrow_mut().bytes.extend(bytes);
    }

    /// Both directions end: reads drain and then see end-of-file.
    fn hang_up(&self) {
        self.rx.borrow_mut().hung_up = true;
        self.tx.borrow_mut().hung_up = true;
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rx = self.rx.borrow_mut();
        if rx.bytes.is_empty() {
            return if rx.hung_up {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(rx.bytes.len());
        for (b, x) in buf.iter_mut().zip(rx.bytes.drain(..n)) {
            *b = x;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut tx = self.tx.borrow_mut();
        if tx.hung_up {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let room = tx.capacity.saturating_sub(tx.bytes.len());
        if room == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = room.min(buf.len());
        tx.bytes.extend(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ShutdownWrite for Pipe {
    fn shutdown_write(&mut self) {
        self.tx.borrow_mut().hung_up = true;
    }
}

impl Pipe {
    /// Everything the other end wrote, as text.
    fn read_text(&mut self) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
}

fn url() -> WsUrl {
    WsUrl::parse("ws://127.0.0.1:9000/stt").unwrap()
}

/// A server and a client connection over one pipe, upgraded; the server's
/// is authenticated, as the engine does once a session runs over it.
struct Pair {
    server: Conn<Pipe>,
    client: Conn<Pipe>,
    server_end: Pipe,
    client_end: Pipe,
    t0: Instant,
}

fn pair_with(capacity: usize, server: WsConfig, client: WsConfig) -> Pair {
    let t0 = Instant::now();
    let (server_end, client_end) = pipe(capacity);
    let counters = || TransportCounters::new(addr());
    let mut s = Conn::accept(server_end.clone(), addr(), Arc::new(server), counters(), t0);
    let mut c = Conn::dial(
        client_end.clone(),
        addr(),
        &url(),
        Arc::new(client),
        counters(),
        t0,
        t0,
    )
    .unwrap();
    let (mut s_opened, mut c_opened) = (0, 0);
    for _ in 0..16 {
        c_opened += c.drive(t0, &mut |_| {}).opened as usize;
        s_opened += s.drive(t0, &mut |_| {}).opened as usize;
    }
    assert_eq!((s_opened, c_opened), (1, 1), "each side opens once");
    assert!(
        s.authenticate(),
        "an accepted connection starts unauthenticated"
    );
    assert!(!c.authenticate(), "a dialled one is trusted");
    Pair {
        server: s,
        client: c,
        server_end,
        client_end,
        t0,
    }
}

fn pair() -> Pair {
    pair_with(1 << 20, WsConfig::default(), WsConfig::default())
}

/// Drives `conn` once at `now`; returns what it did and the messages.
fn drive(conn: &mut Conn<Pipe>, now: Instant) -> (Drive, Vec<Vec<u8>>) {
    let mut got = Vec::new();
    let d = conn.drive(now, &mut |m| got.push(m.clone()));
    (d, got)
}

fn bytes(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

#[test]
fn the_upgrade_completes_over_an_in_memory_pair() {
    let p = pair();
    assert!(p.server.is_open() && p.client.is_open());
    assert!(p.server.was_open() && p.client.was_open());
    let (s, c) = (p.server.stats(p.t0), p.client.stats(p.t0));
    assert!(s.open && !s.dialled && c.open && c.dialled);
    // Open: the next timer is the ping, no longer the upgrade's deadline.
    assert_eq!(p.server.poll_timeout(), p.t0 + Duration::from_secs(10));
}

#[test]
fn binary_messages_travel_both_ways_in_order() {
    let mut p = pair();
    let now = p.t0;
    for m in [&b"one"[..], b"two", b""] {
        p.client.write(bytes(m), now).unwrap();
    }
    p.server.write(bytes(b"back"), now).unwrap();
    p.client.flush().unwrap();
    p.server.flush().unwrap();
    let (d, got) = drive(&mut p.server, now);
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), Vec::new()]);
    assert!(d.ended.is_none() && !d.more && d.delivered == 3);
    let (_, got) = drive(&mut p.client, now);
    assert_eq!(got, vec![b"back".to_vec()]);
    let s = p.server.stats(now);
    assert_eq!((s.messages_received, s.bytes_received), (3, 6));
    assert_eq!((s.messages_sent, s.bytes_sent), (1, 4));
}

#[test]
fn a_partial_write_blocks_the_connection_until_the_peer_reads() {
    let mut p = pair_with(4096, WsConfig::default(), WsConfig::default());
    let now = p.t0;
    let big: Vec<u8> = (0..256 << 10).map(|i: u32| (i % 251) as u8).collect();
    p.client.write(bytes(&big), now).unwrap();
    assert!(p.client.is_blocked(), "the pipe took only part of it");
    assert!(!p.client.ready_to_write(), "no more until the rest is out");
    let mut got = Vec::new();
    for _ in 0..1000 {
        let (d, mut m) = drive(&mut p.server, now);
        assert!(d.ended.is_none());
        got.append(&mut m);
        if p.client.ready_to_write() && !got.is_empty() {
            break;
        }
    }
    assert!(!p.client.is_blocked());
    assert_eq!(got, vec![big], "resumed writes deliver it intact");
}

#[test]
fn flush_reports_a_still_full_pipe_as_blocked_not_as_an_error() {
    let mut p = pair_with(1024, WsConfig::default(), WsConfig::default());
    p.client.write(bytes(&[7; 8192]), p.t0).unwrap();
    assert!(p.client.flush().is_ok());
    assert!(p.client.is_blocked());
    assert_eq!(p.client_end.in_flight(), 1024);
}

#[test]
fn a_full_write_buffer_gives_the_message_back() {
    let small = WsConfig {
        max_message_size: 64 << 10,
        write_buffer_limit: 0,
        ..WsConfig::default()
    };
    let mut p = pair_with(1024, WsConfig::default(), small);
    let message: Vec<u8> = (0..60 << 10).map(|i: u32| i as u8).collect();
    let mut taken = 0;
    let back = loop {
        match p.client.write(bytes(&message), p.t0) {
            Ok(()) => taken += 1,
            Err(WriteError::Full(back)) => break back,
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(taken < 100, "the buffer never filled");
    };
    assert!(taken >= 2, "the buffer holds a few first");
    assert_eq!(
        &back[..],
        &message[..],
        "the refused message comes back whole"
    );
    assert_eq!(p.client.stats(p.t0).messages_sent, taken);
}

#[test]
fn an_oversized_message_closes_the_connection_with_1009() {
    let strict = WsConfig {
        max_message_size: 1024,
        ..WsConfig::default()
    };
    let mut p = pair_with(1 << 20, strict, WsConfig::default());
    p.client.write(bytes(&[1; 2048]), p.t0).unwrap();
    p.client.flush().unwrap();
    let (d, got) = drive(&mut p.server, p.t0);
    assert!(got.is_empty());
    assert!(
        matches!(
            d.ended,
            Some(End::ClosedByUs {
                code: CloseCode::Size,
                ..
            })
        ),
        "{:?}",
        d.ended
    );
    assert_eq!(p.server.counters.snapshot().packets_dropped, 1);
}

#[test]
fn text_closes_with_1003_and_an_unmasked_frame_with_1002() {
    // A masked text frame (mask 0) "hello", then an unmasked binary frame,
    // which a server must refuse.
    for (frame, code) in [
        (&b"\x81\x85\0\0\0\0hello"[..], CloseCode::Unsupported),
        (&b"\x82\x03abc"[..], CloseCode::Protocol),
    ] {
        let mut p = pair();
        p.client_end.inject(frame);
        let (d, got) = drive(&mut p.server, p.t0);
        assert!(got.is_empty());
        match d.ended {
            Some(End::ClosedByUs { code: c, .. }) => assert_eq!(c, code),
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

#[test]
fn a_close_from_the_peer_ends_the_connection() {
    let mut p = pair();
    p.client.close(CloseCode::Normal, "bye");
    let mut ended = None;
    for _ in 0..4 {
        let (d, _) = drive(&mut p.server, p.t0);
        if d.ended.is_some() {
            ended = d.ended;
            break;
        }
    }
    assert!(matches!(ended, Some(End::ClosedByPeer)), "{ended:?}");
}

#[test]
fn a_vanished_peer_ends_the_connection_and_writes_fail() {
    let mut p = pair();
    p.server_end.hang_up();
    let (d, _) = drive(&mut p.client, p.t0);
    assert!(d.ended.is_some(), "end of stream without a close frame");
    let mut p = pair();
    p.client_end.hang_up();
    let r = p.server.write(bytes(b"x"), p.t0);
    let flushed = p.server.flush();
    assert!(r.is_err() || flushed.is_err(), "a broken pipe is reported");
}

#[test]
fn a_quiet_connection_is_pinged_at_ping_interval_and_the_pong_keeps_it() {
    let mut p = pair();
    let t0 = p.t0;
    let before = p.server_end.in_flight();
    p.server
        .handle_timeout(t0 + Duration::from_secs(9))
        .unwrap();
    assert_eq!(
        p.server_end.in_flight(),
        before,
        "no ping before the interval"
    );
    let ping_at = t0 + Duration::from_secs(10);
    assert_eq!(p.server.poll_timeout(), ping_at);
    p.server.handle_timeout(ping_at).unwrap();
    assert!(p.server_end.in_flight() > before, "a ping went out");
    // The client reads the ping and answers; the pong counts as traffic.
    let (d, got) = drive(&mut p.client, ping_at);
    assert!(got.is_empty() && d.ended.is_none());
    p.client.flush().unwrap();
    let pong_at = ping_at + Duration::from_millis(1);
    let (d, _) = drive(&mut p.server, pong_at);
    assert!(d.ended.is_none());
    // Silent for dead_after counted from the pong, not from the upgrade.
    let past_first_deadline = t0 + Duration::from_secs(30) + Duration::from_millis(500);
    assert!(p.server.handle_timeout(past_first_deadline).is_ok());
    assert_eq!(
        p.server.poll_timeout(),
        pong_at + Duration::from_secs(30),
        "the idle deadline counts from the pong"
    );
}

#[test]
fn a_silent_peer_is_ended_after_dead_after() {
    let mut p = pair();
    let t0 = p.t0;
    for s in [10, 20] {
        p.server
            .handle_timeout(t0 + Duration::from_secs(s))
            .unwrap();
    }
    let just_before = t0 + Duration::from_secs(30) - Duration::from_millis(1);
    assert!(p.server.handle_timeout(just_before).is_ok());
    let dead = p.server.handle_timeout(t0 + Duration::from_secs(30));
    assert!(matches!(dead, Err(End::Idle)), "{dead:?}");
}

#[test]
fn an_upgrade_not_done_in_time_is_ended_at_its_deadline() {
    let t0 = Instant::now();
    let (server_end, client_end) = pipe(1 << 16);
    let config = WsConfig {
        handshake_timeout: Duration::from_millis(200),
        ..WsConfig::default()
    };
    let counters = TransportCounters::new(addr());
    let mut s = Conn::accept(server_end, addr(), Arc::new(config), counters, t0);
    client_end.inject(b"GET / HTTP/1.1\r\nHost: x\r\n");
    let (d, _) = drive(&mut s, t0);
    assert!(d.ended.is_none() && !d.opened && !s.is_open());
    assert_eq!(s.poll_timeout(), t0 + Duration::from_millis(200));
    assert!(s.handle_timeout(t0 + Duration::from_millis(199)).is_ok());
    let r = s.handle_timeout(t0 + Duration::from_millis(200));
    assert!(matches!(r, Err(End::HandshakeTimeout)), "{r:?}");
}

#[test]
fn a_malformed_upgrade_is_answered_then_refused() {
    let t0 = Instant::now();
    let (server_end, mut client_end) = pipe(1 << 16);
    let counters = TransportCounters::new(addr());
    let config = Arc::new(WsConfig::default());
    let mut s = Conn::accept(server_end, addr(), config, counters, t0);
    client_end.inject(b"HELLO THERE\r\n\r\n");
    let (d, _) = drive(&mut s, t0);
    assert!(d.ended.is_none() && !s.was_open(), "{:?}", d.ended);
    let answer = client_end.read_text();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    // It lingers until the client closes, then ends: refused.
    assert_eq!(s.poll_timeout(), t0 + LINGER);
    client_end.hang_up();
    let (d, _) = drive(&mut s, t0);
    assert!(
        matches!(&d.ended, Some(End::Rejected(r)) if r.status == 400),
        "{:?}",
        d.ended
    );
}

#[test]
fn a_refusal_lingers_no_longer_than_linger() {
    let t0 = Instant::now();
    let (server_end, client_end) = pipe(1 << 16);
    let counters = TransportCounters::new(addr());
    let mut s = Conn::accept(
        server_end,
        addr(),
        Arc::new(WsConfig::default()),
        counters,
        t0,
    );
    client_end.inject(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (d, _) = drive(&mut s, t0);
    assert!(d.ended.is_none());
    assert!(s
        .handle_timeout(t0 + LINGER - Duration::from_millis(1))
        .is_ok());
    let r = s.handle_timeout(t0 + LINGER);
    assert!(
        matches!(&r, Err(End::Rejected(r)) if r.status == 400),
        "{r:?}"
    );
}

/// A server connection upgraded over a pipe, not authenticated, and the
/// client's end of the pipe.
fn unauthenticated(config: WsConfig) -> (Conn<Pipe>, Conn<Pipe>, Instant) {
    let (s, c, _, t0) = unauthenticated_with_end(config);
    (s, c, t0)
}

/// [`unauthenticated`], with the client's end of the pipe.
fn unauthenticated_with_end(config: WsConfig) -> (Conn<Pipe>, Conn<Pipe>, Pipe, Instant) {
    let t0 = Instant::now();
    let (server_end, client_end) = pipe(1 << 20);
    let raw = client_end.clone();
    let counters = || TransportCounters::new(addr());
    let mut s = Conn::accept(server_end, addr(), Arc::new(config), counters(), t0);
    let mut c = Conn::dial(
        client_end,
        addr(),
        &url(),
        Arc::new(WsConfig::default()),
        counters(),
        t0,
        t0,
    )
    .unwrap();
    for _ in 0..16 {
        c.drive(t0, &mut |_| {});
        s.drive(t0, &mut |_| {});
    }
    assert!(s.is_open() && c.is_open());
    (s, c, raw, t0)
}

#[test]
fn an_unauthenticated_connection_is_closed_at_auth_timeout_with_1008() {
    let (mut s, mut c, mut raw, t0) = unauthenticated_with_end(WsConfig::default());
    // Junk that answers pings does not keep it open.
    for sec in 1..10 {
        let now = t0 + Duration::from_secs(sec);
        c.write(bytes(b"junk"), now).unwrap();
        c.flush().unwrap();
        let (d, _) = drive(&mut s, now);
        assert!(d.ended.is_none());
        assert!(s.handle_timeout(now).is_ok());
    }
    assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(10));
    let r = s.handle_timeout(t0 + Duration::from_secs(10));
    assert!(matches!(r, Err(End::Unauthenticated)), "{r:?}");
    // On the wire: a close frame (0x88) with code 1008 (0x03f0).
    let mut wire = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = raw.read(&mut buf) {
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&buf[..n]);
    }
    assert!(
        wire.windows(4)
            .any(|w| w[0] == 0x88 && w[2..] == [0x03, 0xf0]),
        "{wire:02x?}"
    );
}

#[test]
fn authentication_lifts_the_deadline_and_the_small_limit() {
    let (mut s, mut c, t0) = unauthenticated(WsConfig::default());
    // One message per drive while unauthenticated.
    c.write(bytes(&[1; 100]), t0).unwrap();
    c.write(bytes(&[2; 1500]), t0).unwrap();
    c.flush().unwrap();
    let (d, got) = drive(&mut s, t0);
    assert_eq!((d.delivered, d.more, got.len()), (1, true, 1));
    // The engine authenticates it before the next drive: 1500 bytes pass.
    assert!(s.authenticate());
    let (d, got) = drive(&mut s, t0);
    assert!(d.ended.is_none(), "{:?}", d.ended);
    assert_eq!(got, vec![vec![2; 1500]]);
    assert!(s.poll_timeout() >= t0 + Duration::from_secs(10));
    assert!(s.handle_timeout(t0 + Duration::from_secs(10)).is_ok());
    assert!(s.handle_timeout(t0 + Duration::from_secs(25)).is_ok());
}

#[test]
fn an_unauthenticated_connection_takes_no_message_over_the_small_limit() {
    let (mut s, mut c, t0) = unauthenticated(WsConfig::default());
    // One byte over the limit: refused at its frame header, before any
    // buffer is reserved for it.
    c.write(bytes(&vec![0; 1025]), t0).unwrap();
    c.flush().unwrap();
    let (d, got) = drive(&mut s, t0);
    assert!(got.is_empty());
    assert!(
        matches!(
            d.ended,
            Some(End::ClosedByUs {
                code: CloseCode::Size,
                ..
            })
        ),
        "{:?}",
        d.ended
    );
    // Exactly the limit passes.
    let (mut s, mut c, t0) = unauthenticated(WsConfig::default());
    c.write(bytes(&[0; 1024]), t0).unwrap();
    c.flush().unwrap();
    let (d, got) = drive(&mut s, t0);
    assert!(d.ended.is_none() && got.len() == 1);
}

#[test]
fn reads_stop_after_reads_per_turn_and_say_more_waits() {
    let mut p = pair();
    let extra = 44;
    for i in 0..(READS_PER_TURN + extra) as u32 {
        p.client.write(bytes(&i.to_be_bytes()), p.t0).unwrap();
    }
    p.client.flush().unwrap();
    let (d, first) = drive(&mut p.server, p.t0);
    assert_eq!((d.delivered, d.more), (READS_PER_TURN, true));
    let (d, rest) = drive(&mut p.server, p.t0);
    assert_eq!((d.delivered, d.more), (extra, false));
    let order: Vec<u32> = first
        .iter()
        .chain(&rest)
        .map(|m| u32::from_be_bytes(m[..4].try_into().unwrap()))
        .collect();
    assert_eq!(
        order,
        (0..(READS_PER_TURN + extra) as u32).collect::<Vec<_>>()
    );
}

#[test]
fn a_write_before_the_upgrade_gives_the_message_back() {
    let t0 = Instant::now();
    let (_server_end, client_end) = pipe(1 << 16);
    let counters = TransportCounters::new(addr());
    let config = Arc::new(WsConfig::default());
    let mut c = Conn::dial(client_end, addr(), &url(), config, counters, t0, t0).unwrap();
    match c.write(bytes(b"early"), t0) {
        Err(WriteError::NotOpen(back)) => assert_eq!(&back[..], b"early"),
        other => panic!("expected NotOpen, got {other:?}"),
    }
    assert!(
        c.ready_to_write(),
        "nothing blocks a connection not yet open"
    );
}

#[test]
fn later_saturates_instead_of_panicking() {
    let now = Instant::now();
    assert!(later(now, Duration::MAX) > now + Duration::from_secs(3600 * 24 * 365));
    assert_eq!(
        later(now, Duration::from_secs(1)),
        now + Duration::from_secs(1)
    );
}
