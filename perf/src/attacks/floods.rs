//! UDP floods: junk, replayed genuine handshake message 1s, and message 1s
//! of another network.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stt::crypto::{Identity, NetworkKey};
use stt::frame::{FrameType, SessionId, HEADER_LEN};
use stt::session::{Session as SansIoSession, SessionConfig};
use stt::Node;

use super::{config, Running, Target};

/// Most datagrams one flood sends, whatever `--seconds` says.
const MAX_DATAGRAMS: u64 = 20_000_000;
/// Source sockets of a flood (distinct source ports).
const SOURCES: usize = 64;

/// xorshift64: fast, seedable, enough for junk.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let x = self.next().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
    }
}

/// `SOURCES` sockets on 127.0.0.1 that never read (what they get back is
/// counted by the kernel only, and dropped when their buffers fill).
fn sources() -> Option<Vec<UdpSocket>> {
    (0..SOURCES)
        .map(|_| crate::common::ok(UdpSocket::bind("127.0.0.1:0"), "flood socket"))
        .collect()
}

/// One flooding thread: sends what `next` makes to `to`, round-robin over
/// the source sockets, as fast as it can, until stopped, `duration` or
/// [`MAX_DATAGRAMS`]. Reports how many datagrams and bytes went out and how
/// many answers came back to the sources.
fn flood(
    running: &mut Running,
    to: SocketAddr,
    duration: Duration,
    what: &'static str,
    mut next: impl FnMut(&mut Vec<u8>) + Send + 'static,
) -> Option<()> {
    let socks = sources()?;
    let stop = running.stop.clone();
    running.thread(std::thread::spawn(move || {
        let end = Instant::now() + duration;
        let (mut sent, mut bytes, mut failed) = (0u64, 0u64, 0u64);
        let mut d = Vec::with_capacity(2048);
        'outer: while sent < MAX_DATAGRAMS {
            for _ in 0..256 {
                next(&mut d);
                match socks[sent as usize % SOURCES].send_to(&d, to) {
                    Ok(n) => bytes += n as u64,
                    Err(_) => failed += 1,
                }
                sent += 1;
            }
            if stop.load(Ordering::Relaxed) || Instant::now() >= end {
                break 'outer;
            }
        }
        // What came back to the flood's sources.
        let mut back = 0u64;
        let mut buf = [0u8; 2048];
        for s in &socks {
            let _ = s.set_nonblocking(true);
            while s.recv(&mut buf).is_ok() {
                back += 1;
            }
        }
        format!(
            "{sent} {what} ({:.1} MiB) from {SOURCES} ports{}; {back} datagrams came back",
            bytes as f64 / (1 << 20) as f64,
            if failed > 0 {
                format!(" ({failed} refused by the kernel)")
            } else {
                String::new()
            }
        )
    }));
    Some(())
}

/// Attack 1: random datagrams, a third pure junk, a third dressed as DATA
/// frames and a third as handshake frames, each with a random session id
/// and a payload length that matches the datagram.
pub fn junk(target: &Target, duration: Duration) -> Option<Running> {
    let mut running = Running::new(Arc::new(AtomicBool::new(false)));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut i = 0u64;
    flood(
        &mut running,
        target.udp,
        duration,
        "junk datagrams",
        move |d| {
            i += 1;
            let len = 1 + (rng.next() % 1400) as usize;
            d.resize(len, 0);
            rng.fill(d);
            if len > HEADER_LEN && !i.is_multiple_of(3) {
                d[..3].copy_from_slice(b"ST\x01");
                d[3] = if i % 3 == 1 {
                    FrameType::DATA
                } else {
                    FrameType::HANDSHAKE
                };
                d[4] = 0;
                let id = (rng.next() & !0xff) | 0x01;
                d[5..13].copy_from_slice(&id.to_be_bytes());
                if i % 3 == 2 {
                    // Handshake message 1 carries its position as the packet
                    // number.
                    d[17..25].copy_from_slice(&1u64.to_be_bytes());
                }
                d[25..29].copy_from_slice(&((len - HEADER_LEN) as u32).to_be_bytes());
            }
        },
    )?;
    Some(running)
}

/// A relay socket between one dialler and the server that keeps the first
/// datagram the dialler sends: its handshake message 1. Returns it once the
/// session is up.
fn capture_msg1(target: &Target) -> Option<Vec<u8>> {
    let relay = Arc::new(crate::common::ok(UdpSocket::bind("127.0.0.1:0"), "relay")?);
    let _ = relay.set_read_timeout(Some(Duration::from_millis(5)));
    let captured = Arc::new(Mutex::new(None::<Vec<u8>>));
    let stop = Arc::new(AtomicBool::new(false));
    let server = target.udp;
    let thread = {
        let (relay, captured, stop) = (relay.clone(), captured.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut client = None;
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = relay.recv_from(&mut buf) else {
                    continue;
                };
                if from == server {
                    if let Some(c) = client {
                        let _ = relay.send_to(&buf[..n], c);
                    }
                } else {
                    client = Some(from);
                    captured
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert_with(|| buf[..n].to_vec());
                    let _ = relay.send_to(&buf[..n], server);
                }
            }
        })
    };
    let dialler = crate::common::ok(
        Node::start(config("replay-victim", 1).with_server_mode(false)),
        "dialler",
    )?;
    let session = crate::common::ok(
        dialler.connect_udp(relay.local_addr().ok()?),
        "dialling through the relay",
    );
    // The genuine session ends before the replays start: its message 1 is
    // then a handshake the server does not know, the worse case (a live
    // session's message 1 is a duplicate).
    if let Some(s) = &session {
        let _ = s.close();
    }
    std::thread::sleep(Duration::from_millis(100));
    dialler.stop();
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    session?;
    let msg1 = captured.lock().unwrap_or_else(|e| e.into_inner()).take();
    msg1
}

/// Attack 2: one genuine message 1, captured on the wire, replayed from
/// many source ports as fast as one thread sends.
pub fn replayed_msg1(target: &Target, duration: Duration) -> Option<Running> {
    let msg1 = capture_msg1(target)?;
    let mut running = Running::new(Arc::new(AtomicBool::new(false)));
    flood(
        &mut running,
        target.udp,
        duration,
        "copies of one captured message 1",
        move |d| {
            d.clear();
            d.extend_from_slice(&msg1);
        },
    )?;
    Some(running)
}

/// Attack 3: genuine message 1s of another network (another shared seed),
/// each for a fresh session id, made with the sans-IO session beforehand
/// and sent round-robin as fast as one thread sends.
pub fn non_member_msg1(target: &Target, duration: Duration) -> Option<Running> {
    let identity = crate::common::ok(Identity::from_seed(&[0x66; 32]), "identity")?;
    let network = crate::common::ok(
        NetworkKey::from_seed(b"another network's shared seed, not the attacked one"),
        "network key",
    )?;
    let now = Instant::now();
    let msg1s: Vec<Vec<u8>> = (0..4096u64)
        .filter_map(|i| {
            let id = SessionId(0x0bad_0000_0000_0000 | i << 8 | 0x01);
            let mut s =
                SansIoSession::connect(SessionConfig::default(), &identity, &network, id, now)
                    .ok()?;
            s.poll_transmit()
        })
        .collect();
    let mut running = Running::new(Arc::new(AtomicBool::new(false)));
    let mut i = 0usize;
    flood(
        &mut running,
        target.udp,
        duration,
        "non-member message 1s",
        move |d| {
            d.clear();
            d.extend_from_slice(&msg1s[i % msg1s.len()]);
            i += 1;
        },
    )?;
    Some(running)
}
