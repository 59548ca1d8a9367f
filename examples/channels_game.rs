//! A game-style loop over channels, through an emulated link with a 20 ms
//! round trip and 5% loss each way (`stt_link::Relay`, in-process).
//!
//! The client sends its player state 60 times a second on the
//! unreliable-sequenced channel (only the newest state matters: a lost one
//! is not resent, a late one is dropped rather than delivered after a
//! newer one) and game events ("fired", "picked up item N") on the
//! reliable-ordered channel (every one arrives, in order, lost packets
//! resent). The server answers with a world snapshot 20 times a second,
//! unreliable-sequenced too. Both sides print their channel statistics
//! every second for 3 s, then a summary. Exits non-zero if an event is
//! missing or out of order, or a state or snapshot goes backwards.
//!
//! Run: `cargo run --release --example channels_game`

use std::sync::mpsc;
use std::time::{Duration, Instant};

use stt::channel::{RELIABLE_ORDERED, UNRELIABLE_SEQUENCED};
use stt::{ChannelStats, Node, NodeConfig, NodeEvent, UdpConfig};
use stt_link::{LinkConfig, LinkDirection, Relay};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "ffed2291b82fad685ed7d0bfd0a9876d1ba7190ddc2da20933909648d314e14b";
const SERVER_SEED: &str = "b533b8427d4bf2dde54db014b489a67ea81e05ae441f1847065ef96880b554a9";
const CLIENT_SEED: &str = "e5895ab78abb563d1cffc866fae9e0525f1cd402824f9e558a87c7aeca3e37c3";

/// How long the client plays.
const PLAY: Duration = Duration::from_secs(3);
/// Client ticks (player states) per second; server snapshots per second.
const TICK_HZ: u32 = 60;
const SNAPSHOT_HZ: u32 = 20;

/// What the client sent, and the snapshots it got.
#[derive(Default)]
struct ClientTally {
    states: u32,
    events: u32,
    snapshots: u32,
    snapshots_backwards: u32,
}

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
    // 10 ms each way (a 20 ms round trip), 5% of datagrams lost each way.
    let link = LinkDirection {
        delay: Duration::from_millis(10),
        loss: 0.05,
        ..LinkDirection::default()
    };
    let relay = Relay::start(
        LinkConfig::symmetric(link).with_seed(60),
        server.udp_local_addr().ok_or("no UDP")?,
    )?;
    let session = client.connect_udp(relay.local_addr())?;
    let client_session = session.id();
    println!(
        "connected through the emulated link at {}",
        relay.local_addr()
    );

    // The client: a fixed-rate loop on its own thread.
    let (done_tx, done_rx) = mpsc::channel();
    let client_events = client.events();
    let client_thread = std::thread::spawn(move || {
        let mut tally = ClientTally::default();
        let mut newest_snapshot = None;
        let start = Instant::now();
        for tick in 0..PLAY.as_secs() as u32 * TICK_HZ {
            // The player runs in a circle: tick, position, velocity, heading.
            let a = tick as f32 / TICK_HZ as f32;
            let mut state = tick.to_be_bytes().to_vec();
            for v in [a.cos() * 10.0, a.sin() * 10.0, -a.sin(), a.cos(), a] {
                state.extend_from_slice(&v.to_be_bytes());
            }
            session.send_channel(UNRELIABLE_SEQUENCED, &state)?;
            tally.states += 1;
            let event = match tick {
                t if t % 45 == 44 => Some(format!("picked up item {}", t / 45)),
                t if t % 12 == 0 => Some("fired".to_string()),
                _ => None,
            };
            if let Some(text) = event {
                let mut m = tally.events.to_be_bytes().to_vec();
                m.extend_from_slice(text.as_bytes());
                session.send_channel(RELIABLE_ORDERED, &m)?;
                tally.events += 1;
            }
            for event in client_events.try_iter() {
                if let NodeEvent::Message(m) = event {
                    let n = u32::from_be_bytes(m.payload[..4].try_into()?);
                    tally.snapshots += 1;
                    tally.snapshots_backwards += went_back(&mut newest_snapshot, n);
                }
            }
            let next = start + Duration::from_secs(1) * (tick + 1) / TICK_HZ;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        done_tx.send(tally)?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });

    // The server, on this thread: receive, send snapshots, print statistics.
    let events = server.events();
    let start = Instant::now();
    let mut session = None;
    let (mut states, mut backwards, mut newest_state) = (0u32, 0u32, None);
    let (mut events_got, mut out_of_order, mut last_event) = (0u32, 0u32, String::new());
    let mut snapshots_sent = 0u32;
    let mut next_snapshot = start;
    let mut next_print = start + Duration::from_secs(1);
    let mut finished: Option<(ClientTally, Instant)> = None;
    loop {
        if let Some((tally, at)) = &finished {
            if events_got >= tally.events || at.elapsed() > Duration::from_secs(3) {
                break;
            }
        } else {
            match done_rx.try_recv() {
                Ok(tally) => finished = Some((tally, Instant::now())),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    let outcome = client_thread.join();
                    return Err(format!("the client stopped early: {outcome:?}").into());
                }
            }
        }
        let now = Instant::now();
        if let Some(id) = session.filter(|_| now >= next_snapshot && finished.is_none()) {
            let mut snapshot = snapshots_sent.to_be_bytes().to_vec();
            snapshot.extend_from_slice(&[0u8; 60]); // other players, projectiles…
            server.send_channel(id, UNRELIABLE_SEQUENCED, &snapshot)?;
            snapshots_sent += 1;
            next_snapshot += Duration::from_secs(1) / SNAPSHOT_HZ;
        }
        if now >= next_print && next_print <= start + PLAY {
            let t = next_print.duration_since(start).as_secs();
            let c = client.channel_stats(client_session).unwrap_or_default();
            let s = session.and_then(|id| server.channel_stats(id));
            println!("t={t}s client: {}", line(&c));
            println!("     server: {}", line(&s.unwrap_or_default()));
            next_print += Duration::from_secs(1);
        }
        let wait = next_snapshot
            .min(next_print)
            .max(now + Duration::from_millis(1));
        let Ok(NodeEvent::Message(m)) = events.recv_deadline(wait) else {
            continue;
        };
        session = Some(m.session); // the server learns of the session here
        let n = u32::from_be_bytes(m.payload[..4].try_into()?);
        match u8::try_from(m.stream_id) {
            Ok(UNRELIABLE_SEQUENCED) => {
                states += 1;
                backwards += went_back(&mut newest_state, n);
            }
            Ok(RELIABLE_ORDERED) => {
                if n != events_got {
                    out_of_order += 1;
                }
                events_got += 1;
                last_event = String::from_utf8_lossy(&m.payload[4..]).into_owned();
            }
            _ => {}
        }
    }

    let (tally, _) = finished.ok_or("the client never finished")?;
    let c = client.channel_stats(client_session).unwrap_or_default();
    let s = session
        .and_then(|id| server.channel_stats(id))
        .unwrap_or_default();
    println!("\nsummary after {:.1} s:", start.elapsed().as_secs_f64());
    println!(
        "  player states: sent {}, received {} ({:.1}%), went backwards {backwards} times; \
         counted lost by the client {}, dropped as stale by the server {}",
        tally.states,
        states,
        states as f64 * 100.0 / tally.states as f64,
        c.unreliable_lost,
        s.stale_dropped
    );
    println!(
        "  game events:   sent {}, received {events_got}, out of order {out_of_order} \
         (last: {last_event:?}); reliable ranges resent {}",
        tally.events, c.retransmits
    );
    println!(
        "  snapshots:     sent {snapshots_sent}, received {}, went backwards {} times",
        tally.snapshots, tally.snapshots_backwards
    );
    let r = relay.stats();
    println!(
        "  link: client→server {} of {} datagrams lost, server→client {} of {}",
        r.forward.dropped_loss, r.forward.received, r.backward.dropped_loss, r.backward.received
    );
    let mut failures = Vec::new();
    if events_got != tally.events || out_of_order > 0 {
        failures.push("a game event is missing or out of order");
    }
    if backwards > 0 || tally.snapshots_backwards > 0 {
        failures.push("a sequenced message went backwards");
    }
    if states == 0 || tally.snapshots == 0 {
        failures.push("no state or no snapshot arrived");
    }
    if !failures.is_empty() {
        eprintln!("FAILED: {}", failures.join("; "));
        std::process::exit(1);
    }
    println!("ok: every event arrived once and in order; no state or snapshot went backwards");
    Ok(())
}

/// 1 if sequence number `n` is not newer than the newest so far, else 0.
fn went_back(newest: &mut Option<u32>, n: u32) -> u32 {
    let back = newest.is_some_and(|newest| n <= newest);
    *newest = (*newest).max(Some(n));
    u32::from(back)
}

/// One side's channel statistics on a line. The delivery rate is a
/// bandwidth estimate: samples taken while the application had less to send
/// than the window allowed only ever raise it, so for a game's trickle it
/// keeps the highest rate measured so far.
fn line(s: &ChannelStats) -> String {
    format!(
        "rtt {:5.1} ms (min {:4.1}), loss {:4.1}% ({} packets), cwnd {:6} B, delivery {:6.1} kB/s",
        s.rtt.as_secs_f64() * 1e3,
        s.min_rtt.as_secs_f64() * 1e3,
        s.loss_rate * 100.0,
        s.packets_lost,
        s.congestion_window,
        s.delivery_rate as f64 / 1e3
    )
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
