//! Reliable-ordered bulk transfer over a lossy link: 16 KiB messages on
//! channel `RELIABLE_ORDERED`, through an emulated link with a 20 ms round
//! trip and 1% loss each way (`stt_link::Relay`, in-process).
//!
//! Every message carries its number and pseudo-random bytes; the receiver
//! checks the numbers arrive in order and compares a checksum of the whole
//! stream with the sender's. Prints the congestion window as it goes, then
//! the goodput and the losses and retransmissions the channel saw. Exits
//! non-zero if anything arrived out of order, corrupted, or not at all.
//!
//! 4 MiB by default, a few seconds. 32 MiB (`-- 32`) takes about 45 s:
//! with 1% of packets lost, a loss-based controller (CUBIC, in its
//! Reno-friendly region at this round trip) keeps only about 15 packets in
//! flight, some 6 Mbit/s; quinn gets about 8 Mbit/s on the same link
//! (`perf/RESULTS.md`).
//!
//! Run: `cargo run --release --example channels_reliable [-- MIB]`

use std::time::{Duration, Instant};

use stt::channel::RELIABLE_ORDERED;
use stt::{Node, NodeConfig, NodeEvent, UdpConfig};
use stt_link::{LinkConfig, LinkDirection, Relay};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "3ec4cd06151aea6e2edc611281771a168c396e2e6af7fa7ec3ed9edffba3f5ec";
const SERVER_SEED: &str = "99da3c12cec42123f06993ec2a9a43a757cd48de382bf196f345ae13072f808b";
const CLIENT_SEED: &str = "edfef4a9c8288e76b0477eaf03fcca22c4a2e5c763ccac5c18c847261ff4b0af";

/// Size of one message.
const MESSAGE: usize = 16 << 10;
/// Longest the receiver waits for the next message before giving up.
const STALL: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 4,
    };
    let count = (mib << 20) / MESSAGE;
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
        delay: Duration::from_millis(10), // 20 ms round trip
        loss: 0.01,
        ..LinkDirection::default()
    };
    let relay = Relay::start(
        LinkConfig::symmetric(link).with_seed(1),
        server.udp_local_addr().ok_or("no UDP")?,
    )?;
    let session = client.connect_udp(relay.local_addr())?;
    let id = session.id();
    println!("sending {mib} MiB as {count} messages of {MESSAGE} B, 20 ms RTT, 1% loss each way");

    // The sender: `send_channel` queues each message and returns; it waits
    // only when the session's send buffer (32 MiB by default) is full.
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut sum = Checksum::new();
        for n in 0..count as u32 {
            let m = message(n);
            sum.add(&m);
            session.send_channel(RELIABLE_ORDERED, &m)?;
        }
        Ok::<_, stt::SendError>(sum.0)
    });

    let events = server.events();
    let mut sum = Checksum::new();
    let (mut got, mut bytes, mut out_of_order) = (0usize, 0usize, 0usize);
    let mut next_print = start + Duration::from_secs(1);
    while got < count {
        let m = match events.recv_timeout(STALL) {
            Ok(NodeEvent::Message(m)) if m.stream_id == u32::from(RELIABLE_ORDERED) => m,
            Ok(_) => continue,
            Err(_) => break,
        };
        if m.payload.get(..4) != Some(&(got as u32).to_be_bytes()[..]) {
            out_of_order += 1;
        }
        sum.add(&m.payload);
        got += 1;
        bytes += m.payload.len();
        server.recycle(m.payload);
        if Instant::now() >= next_print {
            let s = client.channel_stats(id).unwrap_or_default();
            println!(
                "t={:>2}s {:5.1} MiB received, cwnd {:7} B, in flight {:7} B, rtt {:5.1} ms, \
                 lost {} packets, resent {} ranges",
                next_print.duration_since(start).as_secs(),
                bytes as f64 / (1 << 20) as f64,
                s.congestion_window,
                s.bytes_in_flight,
                s.rtt.as_secs_f64() * 1e3,
                s.packets_lost,
                s.retransmits
            );
            next_print += Duration::from_secs(1);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let sent_sum = sender.join().map_err(|_| "the sender panicked")??;

    let c = client.channel_stats(id).unwrap_or_default();
    let r = relay.stats();
    println!(
        "\n{:.1} MiB of {mib} MiB in {secs:.2} s: goodput {:.1} Mbit/s",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 * 8.0 / secs / 1e6
    );
    println!(
        "sender: {} packets sent, {} declared lost ({:.2}%), {} ranges resent, {} congestion \
         events, {} probe timeouts; rtt {:.1} ms (min {:.1}), controller {}",
        c.packets_sent,
        c.packets_lost,
        c.loss_rate * 100.0,
        c.retransmits,
        c.congestion_events,
        c.probe_timeouts,
        c.rtt.as_secs_f64() * 1e3,
        c.min_rtt.as_secs_f64() * 1e3,
        c.congestion_controller
    );
    println!(
        "link: client→server {} of {} datagrams lost, server→client {} of {}",
        r.forward.dropped_loss, r.forward.received, r.backward.dropped_loss, r.backward.received
    );
    let intact = got == count && out_of_order == 0 && sum.0 == sent_sum;
    println!(
        "messages {got} of {count}, out of order {out_of_order}, checksum {:016x} (sent \
         {sent_sum:016x}): {}",
        sum.0,
        if intact {
            "every byte arrived, in order"
        } else {
            "MISMATCH"
        }
    );
    if !intact {
        eprintln!("FAILED: the stream did not arrive whole and in order");
        std::process::exit(1);
    }
    Ok(())
}

/// Message `n`: its number, then bytes of a generator seeded with it.
fn message(n: u32) -> Vec<u8> {
    let mut m = n.to_be_bytes().to_vec();
    let mut x = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while m.len() < MESSAGE {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m.extend_from_slice(&x.to_le_bytes());
    }
    m.truncate(MESSAGE);
    m
}

/// FNV-1a, 64 bits, over the whole stream: any byte changed, lost or moved
/// changes it.
struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
