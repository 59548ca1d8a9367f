//! Path validation over real sockets, against a member of the network: a
//! client node with a session of its own to the server, whose relay sends
//! copies of that session's genuine datagrams from a forged source (a raw
//! socket in a network namespace of the test's own), to aim the server's
//! session at a victim's address.
//!
//! Where the machine cannot make a namespace or a raw socket (not root),
//! the test writes SKIPPING with the reason to stderr and passes.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stt::session::SessionConfig;
use stt::{on_reactor, Node, NodeEvent};

mod netns;
mod support;
use netns::Netns;
use support::hostile::{config, spoofed_packet, StopOnDrop, WAIT};

/// A sealed PATH_CHALLENGE: the header, the control type and its 8 bytes
/// of data, the tag. The only thing an unvalidated path may receive.
const CHALLENGE_LEN: usize = stt::frame::HEADER_LEN + 9 + stt::frame::TAG_LEN;

/// How long the member sends while its datagrams are copied.
const ATTACK: Duration = Duration::from_millis(2_500);

/// Every how many member datagrams the relay sends the copy from an address
/// of its own that can receive, instead of the victim's.
const PROVOKE_EVERY: u64 = 10;

/// What the relay did.
#[derive(Debug, Default)]
struct Relayed {
    /// Member datagrams seen while copying.
    member_datagrams: u64,
    /// Copies sent from the victim's address (forged), and their bytes.
    forged: u64,
    forged_bytes: u64,
    /// Copies sent from the relay's second address instead.
    provoked: u64,
    /// Datagrams that came back to the second address (its challenges).
    second_in: u64,
    /// Times those challenges were handed to the member after a forged
    /// copy made the victim's path the one probed.
    released: u64,
}

/// What reached the victim's socket.
#[derive(Debug, Default)]
struct Received {
    datagrams: u64,
    bytes: u64,
    largest: usize,
}

fn skip(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPING a_member_cannot_aim_its_session_at_a_forged_address: {why}"
    );
}

#[test]
fn a_member_cannot_aim_its_session_at_a_forged_address() {
    let ns = match Netns::create("paths", None) {
        Ok(ns) => ns,
        Err(why) => {
            return skip(&format!(
                "this machine cannot make a network namespace ({why})"
            ))
        }
    };
    // Key updates every 32 packets each way and a fresh Diffie-Hellman
    // rekey every second: the server seals under new keys while the copies
    // arrive.
    let session = SessionConfig {
        key_update_interval: Some(32),
        rekey_after: Duration::from_secs(1),
        reject_after: Duration::from_secs(60),
        ..SessionConfig::default()
    };
    // Everything lives in the namespace, whose only interface is its
    // loopback: the victim is 127.0.0.2, the rest 127.0.0.1.
    let (server, member, relay, second, victim, raw) = ns.enter(move || {
        let server =
            Node::start(config("forged-path-server").with_session(session.clone())).unwrap();
        let member = Node::start(config("forged-path-member").with_session(session)).unwrap();
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        let second = UdpSocket::bind("127.0.0.1:0").unwrap();
        let victim = UdpSocket::bind("127.0.0.2:0");
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        );
        (server, member, relay, second, victim, raw)
    });
    let raw = match raw {
        Ok(r) => r,
        Err(e) => return skip(&format!("no raw socket here ({e})")),
    };
    let victim = match victim {
        Ok(v) => v,
        Err(e) => return skip(&format!("cannot bind 127.0.0.2 in the namespace ({e})")),
    };
    let server_addr = server.udp_local_addr().unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let (SocketAddr::V4(server_v4), SocketAddr::V4(victim_v4)) =
        (server_addr, victim.local_addr().unwrap())
    else {
        unreachable!("IPv4 sockets")
    };

    // An echo server that notes every address a message came from other
    // than the member's real one (the relay): the session's current path.
    let elsewhere = Arc::new(Mutex::new(Vec::<SocketAddr>::new()));
    {
        let elsewhere = elsewhere.clone();
        server
            .set_handler(on_reactor(move |message, replies| {
                if message.peer_addr != relay_addr {
                    elsewhere.lock().unwrap().push(message.peer_addr);
                }
                let _ = replies.send(message.session, &message.payload);
            }))
            .unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_panic = StopOnDrop(stop.clone());
    let copying = Arc::new(AtomicBool::new(false));

    // The victim counts every byte sent to it.
    let victim_thread = {
        let stop = stop.clone();
        victim
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        std::thread::spawn(move || {
            let mut got = Received::default();
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = victim.recv(&mut buf) {
                    got.datagrams += 1;
                    got.bytes += n as u64;
                    got.largest = got.largest.max(n);
                }
            }
            got
        })
    };

    // The member's relay: it forwards the member's datagrams to the server
    // and the server's back, and while `copying`, sends a copy of each
    // member datagram first (a genuine datagram of the member's own
    // session: it authenticates), from the victim's address through the
    // raw socket. Every PROVOKE_EVERY-th copy goes from a second address
    // of its own instead, which can receive: the server challenges it
    // there; the relay holds that challenge until the next forged copy has
    // made the victim's path the one probed, then hands it to the member,
    // whose node answers with a PATH_RESPONSE (copied from the victim's
    // address too, as everything the member sends). A genuine response
    // arriving while another path is probed must not validate it.
    let stopping = Arc::new(AtomicBool::new(false));
    let relay_thread = {
        let (stopping, copying) = (stopping.clone(), copying.clone());
        relay
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        second.set_nonblocking(true).unwrap();
        let to_server: socket2::SockAddr = server_addr.into();
        std::thread::spawn(move || {
            let mut r = Relayed::default();
            let mut member = None;
            let mut held: Vec<Vec<u8>> = Vec::new();
            let mut buf = [0u8; 2048];
            let mut from_second = [0u8; 2048];
            while !stopping.load(Ordering::Relaxed) {
                while let Ok(n) = second.recv(&mut from_second) {
                    r.second_in += 1;
                    held.push(from_second[..n].to_vec());
                }
                let Ok((n, from)) = relay.recv_from(&mut buf) else {
                    continue;
                };
                if from == server_addr {
                    if let Some(m) = member {
                        let _ = relay.send_to(&buf[..n], m);
                    }
                    continue;
                }
                member = Some(from);
                let datagram = &buf[..n];
                let mut forged = false;
                if copying.load(Ordering::Relaxed) {
                    r.member_datagrams += 1;
                    if held.is_empty() && r.member_datagrams % PROVOKE_EVERY == 0 {
                        if second.send_to(datagram, server_addr).is_ok() {
                            r.provoked += 1;
                        }
                    } else {
                        let packet = spoofed_packet(victim_v4, server_v4, datagram);
                        if raw.send_to(&packet, &to_server).is_ok() {
                            r.forged += 1;
                            r.forged_bytes += n as u64;
                            forged = true;
                        }
                    }
                    // Let the copy win the race.
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = relay.send_to(datagram, server_addr);
                if forged && !held.is_empty() {
                    r.released += 1;
                    for h in held.drain(..) {
                        let _ = relay.send_to(&h, from);
                    }
                }
            }
            r
        })
    };

    let session = member.connect_udp(relay_addr).unwrap();
    let events = member.events();
    let echo = |i: u32| {
        let mut p = vec![i as u8; 100];
        p[..4].copy_from_slice(&i.to_be_bytes());
        p
    };
    let mut echoed = BTreeSet::new();
    let take = |e: NodeEvent, echoed: &mut BTreeSet<u32>| {
        if let NodeEvent::Message(m) = e {
            let i = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
            assert_eq!(m.payload, echo(i), "a wrong echo");
            assert!(echoed.insert(i), "echo {i} twice");
        }
    };
    // Before the attack: one round trip along the genuine path.
    session.send(&echo(0)).unwrap();
    let deadline = Instant::now() + WAIT;
    while echoed.is_empty() {
        let e = events.recv_deadline(deadline).expect("the first echo");
        take(e, &mut echoed);
    }
    copying.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let mut sent = 1u32;
    while start.elapsed() < ATTACK {
        session.send(&echo(sent)).unwrap();
        sent += 1;
        let next = Instant::now() + Duration::from_millis(5);
        while let Ok(e) = events.recv_deadline(next) {
            take(e, &mut echoed);
        }
    }
    // Every echo comes back to the member's real address, through the
    // relay (the session never moved: the relay forwards only from there).
    let deadline = Instant::now() + WAIT;
    while echoed.len() < sent as usize {
        match events.recv_deadline(deadline) {
            Ok(e) => take(e, &mut echoed),
            Err(_) => break,
        }
    }
    let stats = session.stats().expect("the member's session is open");
    stopping.store(true, Ordering::Relaxed);
    let relayed = relay_thread.join().unwrap();
    // Let the last challenges (and timer retries) land.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let to_victim = victim_thread.join().unwrap();
    let elsewhere = std::mem::take(&mut *elsewhere.lock().unwrap());
    eprintln!(
        "{sent} messages, {} echoed; relay: {relayed:?}; victim received {to_victim:?}; \
         member's session: {} key updates, {} rekeys; server: {:?}",
        echoed.len(),
        stats.key_updates,
        stats.rekeys,
        server.stats().udp,
    );

    assert!(
        elsewhere.is_empty(),
        "the server's session moved: {} messages from {:?}",
        elsewhere.len(),
        elsewhere.first()
    );
    assert_eq!(
        echoed.len(),
        sent as usize,
        "echoes missing: the server answered elsewhere"
    );
    // The attack ran as meant: many forged copies, and genuine path
    // responses of the member's that arrived while the victim's path was
    // the one probed; keys changed meanwhile.
    assert!(relayed.forged >= 100, "{relayed:?}");
    assert!(relayed.provoked >= 5, "{relayed:?}");
    assert!(relayed.released >= 5, "{relayed:?}");
    assert!(stats.key_updates >= 2, "{stats:?}");
    assert!(stats.rekeys >= 1, "{stats:?}");
    // The victim got challenges only, within three times what was sent in
    // its name.
    assert!(to_victim.datagrams > 0, "the forged path was challenged");
    assert!(
        to_victim.largest <= CHALLENGE_LEN,
        "a {}-byte datagram reached the victim: more than a challenge",
        to_victim.largest
    );
    assert!(
        to_victim.bytes <= 3 * relayed.forged_bytes,
        "{} bytes to the victim for {} sent in its name",
        to_victim.bytes,
        relayed.forged_bytes
    );
}
