//! A handshake and a sealed exchange between two sessions, in memory.
//!
//! The protocol layers of stt are sans-IO: a `Session` takes datagrams and
//! the time, and gives back datagrams, timers and events. This example wires
//! two sessions together with two queues instead of sockets, so it shows the
//! whole protocol — Noise handshake, sealed messages, fragmentation of a
//! large message, a coalesced batch, close — without any network.
//!
//! Run: `cargo run --release --example sealed_exchange`

use std::collections::VecDeque;
use std::time::Instant;

use stt::crypto::{Identity, NetworkKey};
use stt::frame::SessionId;
use stt::session::{Event, Session, SessionConfig, Transmits};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "43ef6b76c74a629d1446d5a0a39798d79fce0cf9ea19acd31ece8f463881321d";
const CLIENT_SEED: &str = "ca6eeb5ae61c972dafb459f7b22db5593fba1ff2d182d6441eaf8c98d3b8a451";
const SERVER_SEED: &str = "066acbd34375b4c0b292ad9486f6d3e8b2d92778ae39b19cb0128341d8cb5f09";

/// Moves every queued datagram from one session to the other until both
/// are quiet, printing the events.
fn pump(client: &mut Session, server: &mut Option<Session>, wire: &mut Wire, now: Instant) {
    loop {
        while let Some(d) = client.poll_transmit() {
            wire.to_server.push_back(d);
        }
        if let Some(s) = server.as_mut() {
            while let Some(d) = s.poll_transmit() {
                wire.to_client.push_back(d);
            }
        }
        report("client", client);
        if let Some(s) = server.as_mut() {
            report("server", s);
        }
        if wire.to_server.is_empty() && wire.to_client.is_empty() {
            return;
        }
        while let Some(mut d) = wire.to_server.pop_front() {
            match server {
                Some(s) => {
                    s.handle_datagram(now, &mut d).expect("valid datagram");
                }
                // The first datagram is handshake message 1: it creates the
                // server's session (a non-member's would fail right here).
                None => {
                    *server = Some(
                        Session::accept(
                            SessionConfig::default(),
                            &wire.server_identity,
                            &wire.network,
                            &d,
                            now,
                        )
                        .expect("message 1 from a member"),
                    )
                }
            }
        }
        while let Some(mut d) = wire.to_client.pop_front() {
            client.handle_datagram(now, &mut d).expect("valid datagram");
        }
    }
}

fn report(who: &str, session: &mut Session) {
    while let Some(event) = session.poll_event() {
        match event {
            Event::Established { peer, algorithm } => {
                println!("{who}: established with {peer:?} using {algorithm}")
            }
            // The batch on stream 3: print its last message only.
            Event::Message {
                stream_id: 3,
                payload,
                ..
            } if payload != b"tick 99" => {}
            Event::Message {
                stream_id, payload, ..
            } if payload.len() <= 64 => println!(
                "{who}: stream {stream_id}: {:?}",
                String::from_utf8_lossy(&payload)
            ),
            Event::Message {
                stream_id, payload, ..
            } => println!("{who}: stream {stream_id}: {} bytes", payload.len()),
            Event::Closed { reason } => println!("{who}: closed: {reason}"),
            other => println!("{who}: {other:?}"),
        }
    }
}

struct Wire {
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    server_identity: Identity,
    network: NetworkKey,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let network = NetworkKey::from_seed(&hex(SHARED_SEED))?;
    let client_identity = Identity::from_seed(&hex(CLIENT_SEED))?;
    let mut wire = Wire {
        to_server: VecDeque::new(),
        to_client: VecDeque::new(),
        server_identity: Identity::from_seed(&hex(SERVER_SEED))?,
        network: network.clone(),
    };
    println!("client node id {}", client_identity.node_id());
    println!("server node id {}", wire.server_identity.node_id());

    let now = Instant::now();
    let id = SessionId(0x5eed_0000_0000_0001);
    let mut client = Session::connect(
        SessionConfig::default(),
        &client_identity,
        &network,
        id,
        now,
    )?;
    let mut server = None;
    pump(&mut client, &mut server, &mut wire, now);
    let Some(mut server) = server else {
        return Err("handshake did not complete".into());
    };

    // Sealed messages, both ways. Each `send` seals straight into `out`,
    // ready for one batched hand-off to the kernel.
    let mut out = Transmits::new();
    client.send(now, 1, b"hello from the client", &mut out)?;
    server.send(now, 1, b"hello from the server", &mut out)?;
    let (c2s, s2c) = (
        out.get(0).unwrap_or_default().to_vec(),
        out.get(1).unwrap_or_default().to_vec(),
    );
    println!("a 21-byte message travels as a {}-byte datagram", c2s.len());
    wire.to_server.push_back(c2s);
    wire.to_client.push_back(s2c);
    out.clear();
    let mut server = Some(server);
    pump(&mut client, &mut server, &mut wire, now);

    // A message larger than the 1472-byte datagram is fragmented.
    let big = vec![0xA5u8; 1 << 20];
    let n = client.send(now, 2, &big, &mut out)?;
    println!("a 1 MiB message goes out as {n} datagrams of at most 1472 bytes");
    wire.to_server.extend(out.iter().map(|d| d.to_vec()));
    out.clear();

    // Small messages coalesce: one seal and one datagram carry many.
    let small: Vec<Vec<u8>> = (0..100).map(|i| format!("tick {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = small.iter().map(|m| m.as_slice()).collect();
    let n = client.send_batch(now, 3, &refs, 16 * 1024, &mut out)?;
    println!("100 small messages go out as {n} datagram(s)");
    wire.to_server.extend(out.iter().map(|d| d.to_vec()));
    out.clear();
    let started = Instant::now();
    pump(&mut client, &mut server, &mut wire, now);
    println!(
        "delivered in {:?} (in memory, no sockets)",
        started.elapsed()
    );

    client.close(now, stt::frame::close_code::NORMAL, "done");
    pump(&mut client, &mut server, &mut wire, now);
    let stats = client.stats();
    println!(
        "client sent {} messages in {} frames, {} bytes",
        stats.messages_sent, stats.frames_sent, stats.bytes_sent
    );
    Ok(())
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
