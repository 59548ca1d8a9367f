//! stt's channels: two nodes of one reactor each on 127.0.0.1 (UDP backend
//! `Auto`, GSO/GRO on, socket buffers [`BUFFER`] as every contender gets),
//! the client dialling the server over the run's path; everything else
//! `NodeConfig`'s and `ChannelConfig`'s defaults (CUBIC, pacing on, 32 MiB
//! send buffer, 32 MiB receive window, path MTU discovery on).
//!
//! - reliable tests: channel [`RELIABLE_ORDERED`] with `Session::send_channel`
//!   (waits for room in the session's send buffer), [`super::stamped`]
//!   messages into a [`super::Receiver`] on a thread reading the server's
//!   `events()`;
//! - unreliable test: channel [`UNRELIABLE`] with `send_channel_with` and
//!   the run's [`SendPolicy`]: `Wait` (the default a user gets: the send
//!   waits while 32 MiB of messages are queued) or `ReplaceOldest` (never
//!   waits: the oldest queued unsent message is dropped and counted). A
//!   send the API turns down (`SendError::QueueFull`) counts as refused;
//!   any other error fails the run.
//!
//! At the end of each run, before the nodes stop, [`Report`] keeps both
//! ends' `channel_stats` and the nodes' UDP counters, so that every message
//! not delivered can be matched with what stt counted: unreliable messages
//! a lost packet carried (`unreliable_lost`), dropped from the send queue
//! (`unreliable_replaced`), dropped at the receiving node's hand-off to the
//! application (its `packets_dropped`), refused by the reactor after the
//! API took them (the client's `errors_send`), or still queued when the
//! receiver stopped (`send_buffered`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use stt::channel::{RELIABLE_ORDERED, UNRELIABLE};
use stt::node::{Node, NodeConfig, NodeEvent, SendError};
use stt::transport::TransportStats;
use stt::{ChannelStats, FrameType, SendPolicy, SessionId, UdpConfig};

use super::{
    stamped, BoxError, Measured, Net, Outcome, Receiver, Test, Unreliable, BIG, GRACE, QUIET, SMALL,
};
use crate::common::{Tally, BUFFER};

const SHARED: &[u8] = b"stt-perf channels network shared seed";

/// What stt reported at the end of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The sending (client) side's channel statistics.
    pub sender: Option<ChannelStats>,
    /// The receiving (server) side's.
    pub receiver: Option<ChannelStats>,
    /// The client node's UDP counters.
    pub client_udp: Option<TransportStats>,
    /// The server node's UDP counters.
    pub server_udp: Option<TransportStats>,
    /// The server session's frames refused (bad format, authentication,
    /// replay, state).
    pub server_frames_dropped: u64,
    /// Messages accepted and not delivered (0 for the reliable tests when
    /// everything arrived).
    pub missing: u64,
    /// Bytes of a message on the tested channel.
    pub message: usize,
}

impl Report {
    /// Unreliable messages still in the sender's queue at the end (its
    /// send buffer over the message size).
    pub fn still_queued(&self) -> u64 {
        self.sender
            .map_or(0, |s| (s.send_buffered / self.message.max(1)) as u64)
    }

    /// Datagrams in flight at the end (bytes in flight over the datagram
    /// size: about one message a datagram).
    pub fn in_flight(&self) -> u64 {
        self.sender
            .map_or(0, |s| (s.bytes_in_flight / s.datagram_size.max(1)) as u64)
    }

    /// Datagrams the server node dropped: any, received (a full hand-off
    /// to the application, undecodable, replayed, ...) or its own outgoing
    /// ones (a full send queue).
    pub fn server_dropped(&self) -> u64 {
        self.server_udp.as_ref().map_or(0, |u| u.packets_dropped)
    }

    /// The client's failed sends: socket errors, and channel messages its
    /// reactor refused after the API took them.
    pub fn client_send_errors(&self) -> u64 {
        self.client_udp.as_ref().map_or(0, |u| u.errors_send)
    }

    /// One line for the progress output.
    pub fn describe(&self) -> String {
        let Some(s) = &self.sender else {
            return "no channel statistics (session gone)".into();
        };
        format!(
            "srtt {:.1} ms (min {:.1}), loss {:.2}% ({} of {} packets), cwnd {} B, \
             delivery {:.1} Mbit/s, pacing {:.1} Mbit/s, in flight {} B, retransmits {}, \
             congestion events {}, PTOs {}, datagram {} B, queue wait mean {:.1} ms max {:.1} ms; \
             unreliable lost {}, replaced {}; still queued {} B; server dropped {}, \
             client send errors {}; missing {}; receiver: duplicates {}, incomplete {}, \
             held {} B, frames refused {}; datagrams: client sent {}, server received {}, \
             server sent {}",
            ms(s.rtt),
            ms(s.min_rtt),
            s.loss_rate * 100.0,
            s.packets_lost,
            s.packets_sent,
            s.congestion_window,
            mbit(s.delivery_rate),
            mbit(s.pacing_rate),
            s.bytes_in_flight,
            s.retransmits,
            s.congestion_events,
            s.probe_timeouts,
            s.datagram_size,
            ms(s.send_queue_wait_mean),
            ms(s.send_queue_wait_max),
            s.unreliable_lost,
            s.unreliable_replaced,
            s.send_buffered,
            self.server_dropped(),
            self.client_send_errors(),
            self.missing,
            self.receiver.map_or(0, |r| r.duplicates),
            self.receiver.map_or(0, |r| r.unreliable_incomplete),
            self.receiver.map_or(0, |r| r.recv_buffered),
            self.server_frames_dropped,
            self.client_udp.as_ref().map_or(0, |u| u.packets_sent),
            self.server_udp.as_ref().map_or(0, |u| u.packets_received),
            self.server_udp.as_ref().map_or(0, |u| u.packets_sent),
        )
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Bytes per second in Mbit/s.
pub fn mbit(bytes_per_second: u64) -> f64 {
    bytes_per_second as f64 * 8.0 / 1e6
}

fn node(seed: &str, server: bool) -> Result<Node, BoxError> {
    let udp = UdpConfig {
        bind_address: "127.0.0.1".parse()?,
        receive_buffer_size: BUFFER,
        send_buffer_size: BUFFER,
        ..UdpConfig::default()
    };
    let seed = format!("stt-perf channels node seed: {seed}");
    Ok(Node::start(
        NodeConfig::new(seed.as_bytes(), SHARED)
            .with_udp(udp)
            .with_reactors(1)
            .with_server_mode(server),
    )?)
}

/// Both nodes and the client's session, over the run's path.
struct Pair {
    server: Node,
    client: Node,
    session: SessionId,
}

impl Pair {
    fn connect(net: &mut Net) -> Result<Pair, BoxError> {
        let server = node("channels server", true)?;
        let client = node("channels client", false)?;
        let addr = server
            .udp_local_addr()
            .ok_or("stt server has no UDP socket")?;
        let session = client.connect_udp(net.route(addr)?)?.id();
        Ok(Pair {
            server,
            client,
            session,
        })
    }

    /// Both ends' statistics now.
    fn report(&self, missing: u64, message: usize) -> Report {
        let server_session = self.server.sessions().first().copied();
        Report {
            sender: self.client.channel_stats(self.session),
            receiver: server_session.and_then(|s| self.server.channel_stats(s)),
            client_udp: self.client.udp_stats(),
            server_udp: self.server.udp_stats(),
            server_frames_dropped: server_session
                .and_then(|s| self.server.session_stats(s))
                .map_or(0, |s| s.frames_dropped),
            missing,
            message,
        }
    }

    fn stop(self) {
        self.client.stop();
        self.server.stop();
    }
}

pub fn run(test: &Test, net: &mut Net, policy: SendPolicy) -> Result<Measured, BoxError> {
    let pair = Pair::connect(net)?;
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        if let Some(period) = trace_period() {
            let (pair, stop) = (&pair, &stop);
            s.spawn(move || trace(pair, period, stop));
        }
        let result = match *test {
            Test::Bulk { bytes, cap } => bulk(&pair, bytes, cap),
            Test::Latency { rate, duration } => latency(&pair, rate, duration),
            Test::Unreliable { duration } => unreliable(&pair, duration, policy),
        };
        stop.store(true, Ordering::Relaxed);
        result
    });
    pair.stop();
    result
}

/// `STT_PERF_TRACE=MS`: print the sender's channel statistics every MS
/// milliseconds during each stt run (for looking into a result).
fn trace_period() -> Option<Duration> {
    let ms: u64 = std::env::var("STT_PERF_TRACE").ok()?.parse().ok()?;
    Some(Duration::from_millis(ms.max(1)))
}

fn trace(pair: &Pair, period: Duration, stop: &AtomicBool) {
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(period);
        let Some(s) = pair.client.channel_stats(pair.session) else {
            break;
        };
        eprintln!(
            "  trace {:>7.1} ms: srtt {:.1} latest {:.1} min {:.1} ms, cwnd {} B, in flight {} B, \
             pacing {:.1} Mbit/s, delivery {:.1} Mbit/s, sent {} lost {} pkts, events {}, PTOs {}, \
             buffered {} B, oldest wait {:.1} ms, flow blocked {}",
            ms(t0.elapsed()),
            ms(s.rtt),
            ms(s.latest_rtt),
            ms(s.min_rtt),
            s.congestion_window,
            s.bytes_in_flight,
            mbit(s.pacing_rate),
            mbit(s.delivery_rate),
            s.packets_sent,
            s.packets_lost,
            s.congestion_events,
            s.probe_timeouts,
            s.send_buffered,
            ms(s.send_queue_wait),
            s.flow_blocked,
        );
    }
}

/// Reads reliable-ordered messages of `size` bytes from the server into a
/// [`Receiver`] until `want` of them or `deadline`; sets `done` when it
/// stops.
fn receive(
    server: &Node,
    want: u64,
    deadline: Instant,
    done: &AtomicBool,
) -> Result<Receiver, BoxError> {
    let events = server.events();
    let mut receiver = Receiver::new();
    let result = (|| {
        while receiver.delivered < want {
            match events.recv_deadline(deadline) {
                Ok(NodeEvent::Message(m)) if m.stream_id == u32::from(RELIABLE_ORDERED) => {
                    receiver.message(&m.payload)?;
                    server.recycle(m.payload);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok::<_, BoxError>(())
    })();
    done.store(true, Ordering::Relaxed);
    result.map(|()| receiver)
}

fn bulk(pair: &Pair, bytes: u64, cap: Duration) -> Result<Measured, BoxError> {
    let count = bytes.div_ceil(BIG as u64);
    let t0 = Instant::now();
    let deadline = t0 + cap;
    let done = AtomicBool::new(false);
    let receiver = std::thread::scope(|s| {
        let receiving = s.spawn(|| receive(&pair.server, count, deadline, &done));
        for seq in 0..count {
            if done.load(Ordering::Relaxed) || Instant::now() >= deadline {
                break;
            }
            // Waits while the send buffer (32 MiB) is full.
            pair.client
                .send_channel(pair.session, RELIABLE_ORDERED, &stamped(BIG, seq))?;
        }
        receiving.join().map_err(|_| "stt receiver panicked")?
    })?;
    let outcome = receiver.bulk(count * BIG as u64, t0, cap);
    let missing = count.saturating_sub(receiver.delivered);
    Ok(Measured {
        outcome: Outcome::Bulk(outcome),
        stt: Some(pair.report(missing, BIG)),
    })
}

fn latency(pair: &Pair, rate: u32, duration: Duration) -> Result<Measured, BoxError> {
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let t0 = Instant::now();
    let done = AtomicBool::new(false);
    let receiver = std::thread::scope(|s| {
        let receiving = s.spawn(|| receive(&pair.server, total, t0 + duration + GRACE, &done));
        // Message `seq` is due at t0 + seq × period (as tokio's interval:
        // a late one goes at once, the schedule does not slip).
        for seq in 0..total {
            if done.load(Ordering::Relaxed) {
                break;
            }
            let due = t0 + period * seq as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            pair.client
                .send_channel(pair.session, RELIABLE_ORDERED, &stamped(SMALL, seq))?;
        }
        receiving.join().map_err(|_| "stt receiver panicked")?
    })?;
    let outcome = receiver.latency(total);
    Ok(Measured {
        outcome: Outcome::Latency(outcome),
        stt: Some(pair.report(total.saturating_sub(outcome.delivered), SMALL)),
    })
}

fn unreliable(pair: &Pair, duration: Duration, policy: SendPolicy) -> Result<Measured, BoxError> {
    let end = Instant::now() + duration;
    let (tally, accepted, refused) = std::thread::scope(|s| {
        let receiving = s.spawn(|| {
            let events = pair.server.events();
            let mut tally = Tally::new();
            let stop = end + GRACE;
            loop {
                let now = Instant::now();
                if now >= stop {
                    // What stt still holds at the sender then is lost.
                    break;
                }
                match events.recv_deadline((now + QUIET).min(stop)) {
                    Ok(NodeEvent::Message(m)) => {
                        if m.stream_id == u32::from(UNRELIABLE) && m.payload.len() == BIG {
                            tally.hit();
                        }
                        pair.server.recycle(m.payload);
                    }
                    Ok(_) => {}
                    Err(_) if Instant::now() > end => break,
                    Err(_) => {}
                }
            }
            tally
        });
        let payload = vec![0xABu8; BIG];
        let (mut accepted, mut refused) = (0u64, 0u64);
        let mut failure = None;
        while Instant::now() < end {
            match pair.client.send_channel_with(
                pair.session,
                UNRELIABLE,
                FrameType::Data,
                &payload,
                policy,
            ) {
                Ok(()) => accepted += 1,
                Err(SendError::QueueFull) => refused += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let tally = receiving.join().map_err(|_| "stt receiver panicked")?;
        match failure {
            Some(e) => Err::<_, BoxError>(format!("stt send_channel_with: {e}").into()),
            None => Ok((tally, accepted, refused)),
        }
    })?;
    let outcome = Unreliable {
        accepted,
        refused,
        delivered: tally.count,
        rate: tally.rate(),
    };
    Ok(Measured {
        outcome: Outcome::Unreliable(outcome),
        stt: Some(pair.report(accepted.saturating_sub(tally.count), BIG)),
    })
}
