//! Unreliable messages at full speed on loopback, with each `SendPolicy`:
//! what a send does when the session's send buffer is full.
//!
//! - `Wait`: the send waits for room (the sender slows to the path's pace);
//! - `Refuse`: the send fails at once with `SendError::QueueFull` (the
//!   application drops that message, or keeps it for later);
//! - `ReplaceOldest`: the send succeeds and the oldest queued unreliable
//!   message is dropped to make room (counted in
//!   `ChannelStats::unreliable_replaced`).
//!
//! For each, a client offers 1200-byte messages on channel `UNRELIABLE` as
//! fast as it can for one second (a send buffer of 256 KiB, so that it
//! fills), then waits until nothing is queued or in flight. The table shows
//! messages offered, accepted, refused, delivered, and every way an accepted
//! message can fail to arrive, each counted somewhere: lost on the way
//! (`unreliable_lost`, from the sender's loss detection), replaced in the
//! queue (`unreliable_replaced`), dropped by the receiving node (its
//! application channel full: `stats().udp.packets_dropped`), refused by the
//! session after the API took it (`stats().udp.errors_send`). "uncounted"
//! is what is left: accepted messages that vanished without a counter.
//! Exits non-zero if any did.
//!
//! On a small machine the rates say as much about the CPU as about the
//! path. A `ReplaceOldest` sender never waits: at full speed it spends a
//! core offering messages that are mostly replaced before they leave, and
//! fewer are delivered than with the other policies; it is meant for a
//! sender with its own pace, such as a game's tick. A `Wait` sender polls
//! for room with growing sleeps (up to 1 ms), so it may deliver fewer than
//! a `Refuse` sender that retries at once.
//!
//! Run: `cargo run --release --example channels_unreliable`

use std::time::{Duration, Instant};

use stt::channel::UNRELIABLE;
use stt::{FrameType, Node, NodeConfig, NodeEvent, SendError, SendPolicy, UdpConfig};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "db8b3b99629003e9043ad021811af6570d2cf89565227354e760c8326d2d9f9e";
const SERVER_SEED: &str = "4aa9059565d41b37ec50c6a3397b99a1b3efcce7f639e664f22335b9829a32df";
const CLIENT_SEED: &str = "4b059244e6315b20597d1b2f644b4c4cd0336d76c59b061f9199720ccf814802";

/// How long the client sends with each policy.
const SEND_FOR: Duration = Duration::from_secs(1);
/// Size of one message.
const SIZE: usize = 1200;

/// What one policy's run counted.
#[derive(Default)]
struct Tally {
    offered: u64,
    accepted: u64,
    refused: u64,
    delivered: u64,
    lost: u64,
    replaced: u64,
    dropped_by_receiver: u64,
    refused_by_session: u64,
    queued_wait_max: Duration,
}

impl Tally {
    /// Accepted messages neither delivered nor counted anywhere (negative:
    /// packets declared lost that arrived after all).
    fn uncounted(&self) -> i64 {
        self.accepted as i64
            - (self.delivered
                + self.lost
                + self.replaced
                + self.dropped_by_receiver
                + self.refused_by_session) as i64
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut tallies = Vec::new();
    for policy in [
        SendPolicy::Wait,
        SendPolicy::Refuse,
        SendPolicy::ReplaceOldest,
    ] {
        tallies.push((policy, run(policy)?));
    }
    println!(
        "\n{:<14} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "policy",
        "offered",
        "accepted",
        "refused",
        "delivered",
        "lost",
        "replaced",
        "rx drop",
        "tx drop",
        "uncounted",
        "max wait"
    );
    let mut failed = false;
    for (policy, t) in &tallies {
        println!(
            "{:<14} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8} {:>8} {:>8} {:>10} {:>7.1} ms",
            format!("{policy:?}"),
            t.offered,
            t.accepted,
            t.refused,
            t.delivered,
            t.lost,
            t.replaced,
            t.dropped_by_receiver,
            t.refused_by_session,
            t.uncounted(),
            t.queued_wait_max.as_secs_f64() * 1e3
        );
        failed |= t.uncounted() > 0;
    }
    println!(
        "(lost: unreliable_lost; replaced: unreliable_replaced; rx drop: the receiver's \
         udp.packets_dropped; tx drop: the sender's udp.errors_send; max wait: \
         send_queue_wait_max; negative uncounted: declared lost, arrived anyway)"
    );
    if failed {
        eprintln!("FAILED: accepted messages vanished without being counted");
        std::process::exit(1);
    }
    println!("ok: every accepted message was delivered or counted");
    Ok(())
}

/// Sends for [`SEND_FOR`] with `policy` between two fresh nodes.
fn run(policy: SendPolicy) -> Result<Tally, Box<dyn std::error::Error>> {
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(&hex(SERVER_SEED), &hex(SHARED_SEED))
            .with_udp(loopback.clone())
            .with_reactors(1),
    )?;
    let mut config = NodeConfig::client(&hex(CLIENT_SEED), &hex(SHARED_SEED))
        .with_udp(loopback)
        .with_reactors(1);
    // A small send buffer, so that a full-speed sender fills it.
    config.session.channels.send_buffer = 256 << 10;
    config.session.channels.max_message_size = 64 << 10;
    let client = Node::start(config)?;
    let session = client.connect_udp(server.udp_local_addr().ok_or("no UDP")?)?;
    let id = session.id();

    let sender = std::thread::spawn(move || {
        let mut t = Tally::default();
        let mut m = vec![0u8; SIZE];
        let start = Instant::now();
        while start.elapsed() < SEND_FOR {
            m[..8].copy_from_slice(&t.offered.to_be_bytes());
            t.offered += 1;
            match session.send_channel_with(UNRELIABLE, FrameType::Data, &m, policy) {
                Ok(()) => t.accepted += 1,
                Err(SendError::QueueFull) => {
                    // A game would drop this state and send the next one.
                    t.refused += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(t)
    });

    // Receive until the sender is done and nothing is queued or in flight.
    let events = server.events();
    let mut delivered = 0;
    let mut quiet_since = None;
    let mut deadline = Instant::now() + SEND_FOR + Duration::from_secs(10);
    while Instant::now() < deadline {
        match events.recv_timeout(Duration::from_millis(20)) {
            Ok(NodeEvent::Message(m)) if m.stream_id == u32::from(UNRELIABLE) => {
                delivered += 1;
                server.recycle(m.payload);
                quiet_since = None;
                continue;
            }
            Ok(_) => continue,
            Err(_) => {}
        }
        if !sender.is_finished() {
            continue;
        }
        let s = client.channel_stats(id).ok_or("the session closed")?;
        if s.send_buffered == 0 && s.bytes_in_flight == 0 {
            // Idle: anything still on its way arrives within a few ms.
            let since = *quiet_since.get_or_insert_with(Instant::now);
            deadline = deadline.min(since + Duration::from_millis(200));
        }
    }
    let mut t = sender.join().map_err(|_| "the sender panicked")??;
    let s = client.channel_stats(id).ok_or("the session closed")?;
    if s.send_buffered > 0 || s.bytes_in_flight > 0 {
        println!(
            "{policy:?}: still {} B queued and {} B in flight after 10 s",
            s.send_buffered, s.bytes_in_flight
        );
    }
    t.delivered = delivered;
    t.lost = s.unreliable_lost;
    t.replaced = s.unreliable_replaced;
    t.queued_wait_max = s.send_queue_wait_max;
    t.dropped_by_receiver = server.stats().udp.map_or(0, |u| u.packets_dropped);
    t.refused_by_session = client.stats().udp.map_or(0, |u| u.errors_send);
    Ok(t)
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
