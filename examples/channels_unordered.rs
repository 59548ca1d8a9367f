//! Reliable-unordered delivery: many messages on channel
//! `RELIABLE_UNORDERED` through an emulated link that reorders, loses and
//! duplicates datagrams (`stt_link::Relay`, in-process: 20 ms round trip,
//! 5% of datagrams held back 5 ms, 1% lost, 1% duplicated, each way).
//!
//! Every message arrives exactly once (lost ones are resent, duplicates
//! dropped), but each as soon as it arrives: a message is not held back
//! behind an earlier one still being resent. The receiver counts how many
//! arrived before an earlier one, and how much later they would have been
//! delivered had the channel been ordered. Exits non-zero if a message is
//! missing or delivered twice.
//!
//! Run: `cargo run --release --example channels_unordered`

use std::time::{Duration, Instant};

use stt::channel::RELIABLE_UNORDERED;
use stt::{Node, NodeConfig, NodeEvent, UdpConfig};
use stt_link::{LinkConfig, LinkDirection, Relay};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "2aefecc64b0b86433b99bc5513564882176a7af4d3f038e009d5e52be739aabd";
const SERVER_SEED: &str = "2e1c116003fcbd7db44fd7784b781882f80e2559479ca96ae1435703c40705e5";
const CLIENT_SEED: &str = "47d40965bcdf85e1720c832dec299c214f0c0bf4460d3b8949e55ee250f92085";

/// Messages sent, and the size of each.
const COUNT: usize = 3000;
const SIZE: usize = 400;
/// Longest the receiver waits for the next message before giving up.
const STALL: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(&hex(SERVER_SEED), &hex(SHARED_SEED))
            .with_udp(loopback.clone())
            .with_reactors(1),
    )?;
    let client = Node::start(
        NodeConfig::client(&hex(CLIENT_SEED), &hex(SHARED_SEED))
            .with_udp(loopback)
            .with_reactors(1),
    )?;
    let link = LinkDirection {
        delay: Duration::from_millis(10),
        reorder: 0.05,
        reorder_delay: Duration::from_millis(5),
        loss: 0.01,
        duplicate: 0.01,
        ..LinkDirection::default()
    };
    let relay = Relay::start(
        LinkConfig::symmetric(link).with_seed(3),
        server.udp_local_addr().ok_or("no UDP")?,
    )?;
    let session = client.connect_udp(relay.local_addr())?;
    let id = session.id();
    println!("sending {COUNT} messages of {SIZE} B on the reliable-unordered channel");

    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        for n in 0..COUNT as u32 {
            let mut m = n.to_be_bytes().to_vec();
            m.resize(SIZE, (n % 251) as u8);
            session.send_channel(RELIABLE_UNORDERED, &m)?;
        }
        Ok::<_, stt::SendError>(())
    });

    // Arrival time of each message, by number; and the order they came in.
    let events = server.events();
    let mut arrived: Vec<Option<Duration>> = vec![None; COUNT];
    let (mut got, mut twice, mut corrupt, mut early, mut newest) = (0, 0, 0, 0, None);
    let mut first_out_of_order = Vec::new();
    while got < COUNT {
        let m = match events.recv_timeout(STALL) {
            Ok(NodeEvent::Message(m)) if m.stream_id == u32::from(RELIABLE_UNORDERED) => m,
            Ok(_) => continue,
            Err(_) => break,
        };
        let n = u32::from_be_bytes(m.payload[..4].try_into()?) as usize;
        if n >= COUNT || m.payload.len() != SIZE || m.payload[SIZE - 1] != (n % 251) as u8 {
            corrupt += 1;
            continue;
        }
        if arrived[n].is_some() {
            twice += 1;
            continue;
        }
        arrived[n] = Some(start.elapsed());
        got += 1;
        // Out of order: it arrived after a message sent later.
        if newest.is_some_and(|newest| n < newest) {
            early += 1;
            if first_out_of_order.len() < 5 {
                first_out_of_order.push((n, newest.unwrap_or(0)));
            }
        }
        newest = newest.max(Some(n));
    }
    let secs = start.elapsed().as_secs_f64();
    sender.join().map_err(|_| "the sender panicked")??;
    // Nothing more comes: a late duplicate would show up here.
    while let Ok(event) = events.recv_timeout(Duration::from_millis(300)) {
        if let NodeEvent::Message(m) = event {
            if m.stream_id == u32::from(RELIABLE_UNORDERED) {
                twice += 1;
            }
        }
    }

    // Had the channel been ordered, message n would have been delivered
    // only once every message before it had arrived.
    let (mut held, mut held_max, mut latest) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut held_count = 0;
    for at in arrived.iter().map_while(|a| *a) {
        latest = latest.max(at);
        if latest > at {
            held += latest - at;
            held_max = held_max.max(latest - at);
            held_count += 1;
        }
    }

    let c = client.channel_stats(id).unwrap_or_default();
    let s = server.channel_stats(id).unwrap_or_default();
    let r = relay.stats();
    println!(
        "{got} of {COUNT} messages in {secs:.2} s; delivered twice {twice}, corrupt {corrupt}"
    );
    println!(
        "{early} arrived after a message sent later than them; the first few (number, \
         after): {first_out_of_order:?}"
    );
    println!(
        "an ordered channel would have held {held_count} messages back, by {:.1} ms on \
         average (at most {:.1} ms)",
        held.as_secs_f64() * 1e3 / held_count.max(1) as f64,
        held_max.as_secs_f64() * 1e3
    );
    println!(
        "sender: {} packets, {} declared lost, {} ranges resent; receiver: {} duplicate \
         parts dropped",
        c.packets_sent, c.packets_lost, c.retransmits, s.duplicates
    );
    println!(
        "link client→server: {} datagrams, {} reordered, {} lost, {} duplicated",
        r.forward.received, r.forward.reordered, r.forward.dropped_loss, r.forward.duplicated
    );
    if got != COUNT || twice > 0 || corrupt > 0 {
        eprintln!(
            "FAILED: {} missing, {twice} delivered twice, {corrupt} corrupt",
            COUNT - got
        );
        std::process::exit(1);
    }
    println!("ok: every message arrived exactly once");
    Ok(())
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
