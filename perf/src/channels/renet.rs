//! renet 2 with its netcode transport (`renet_netcode`), the reliable-UDP
//! game library. Its configuration here:
//!
//! - `ConnectionConfig::default()`: the three default channels (unreliable,
//!   reliable-unordered, reliable-ordered), each with a 5 MiB memory limit
//!   (`max_memory_usage_bytes`) and a 300 ms resend time for the reliable
//!   ones, and `available_bytes_per_tick` 60,000 (a per-tick send budget:
//!   at this 1 ms tick, at most 60 MB/s ≈ 480 Mbit/s);
//! - ticked every [`TICK`] (1 ms, `std::thread::sleep`, so ≈ 1.06 ms):
//!   `update`, the transport's `update` (reads every datagram waiting),
//!   the application's sends and receives, `send_packets`. renet has no
//!   other way to move data: a message waits for the next tick at each end;
//! - client and server each on a thread of their own, each with a UDP
//!   socket of [`BUFFER`] bytes (non-blocking, as the transport sets it);
//! - netcode with `Unsecure` authentication (no token server: the client
//!   makes its own connect token); packets are still sealed with
//!   ChaCha20-Poly1305 under the token's keys;
//! - reliable sends are gated with `can_send_message` (a reliable channel
//!   over its memory limit disconnects); for the unreliable test, each tick
//!   the client offers messages until `can_send_message` says no (one
//!   refusal counted per tick), and renet then sends what the tick's byte
//!   budget allows and silently drops the rest (counted as lost).
//!
//! [`BUFFER`]: crate::common::BUFFER

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use renet::{ClientId, ConnectionConfig, DefaultChannel, RenetClient, RenetServer};
use renet_netcode::{
    ClientAuthentication, NetcodeClientTransport, NetcodeServerTransport, NetcodeTransportError,
    ServerAuthentication, ServerConfig,
};

use super::{
    stamped, BoxError, Net, Outcome, Receiver, Test, Unreliable, BIG, GRACE, QUIET, SMALL,
};
use crate::common::{big_std_socket, Tally};

/// renet's update period here.
pub const TICK: Duration = Duration::from_millis(1);
const PROTOCOL_ID: u64 = 0x5354_542D_5045_5246;
const RELIABLE: DefaultChannel = DefaultChannel::ReliableOrdered;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(test: &Test, net: &mut Net) -> Result<Outcome, BoxError> {
    let (server, client) = connect(net)?;
    match *test {
        Test::Bulk { bytes, cap } => bulk(server, client, bytes, cap),
        Test::Latency { rate, duration } => latency(server, client, rate, duration),
        Test::Unreliable { duration } => unreliable(server, client, duration),
    }
}

/// A transport error, except a full socket buffer (the tick's remaining
/// packets are then lost, which renet's resends cover).
fn check(r: Result<(), NetcodeTransportError>) -> Result<(), BoxError> {
    match r {
        Err(NetcodeTransportError::IO(e)) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(format!("renet transport: {e}").into()),
        Ok(()) => Ok(()),
    }
}

struct Client {
    renet: RenetClient,
    transport: NetcodeClientTransport,
    last: Instant,
    next_tick: Instant,
}

impl Client {
    fn update(&mut self) -> Result<(), BoxError> {
        let now = Instant::now();
        let dt = now - self.last;
        self.last = now;
        self.renet.update(dt);
        check(self.transport.update(dt, &mut self.renet))?;
        match self.renet.disconnect_reason() {
            Some(reason) => Err(format!("renet client disconnected: {reason}").into()),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        check(self.transport.send_packets(&mut self.renet))
    }
}

struct Server {
    renet: RenetServer,
    transport: NetcodeServerTransport,
    last: Instant,
    next_tick: Instant,
    client: Option<ClientId>,
}

impl Server {
    fn update(&mut self) -> Result<(), BoxError> {
        let now = Instant::now();
        let dt = now - self.last;
        self.last = now;
        self.renet.update(dt);
        check(self.transport.update(dt, &mut self.renet))?;
        while self.renet.get_event().is_some() {}
        if let Some(id) = self.client {
            if !self.renet.is_connected(id) {
                return Err(match self.renet.disconnect_reason(id) {
                    Some(reason) => format!("renet server lost its client: {reason}"),
                    None => "renet server lost its client".to_owned(),
                }
                .into());
            }
        } else {
            self.client = self.renet.clients_id().first().copied();
        }
        Ok(())
    }

    fn flush(&mut self) {
        self.transport.send_packets(&mut self.renet);
    }

    fn id(&self) -> Result<ClientId, BoxError> {
        self.client.ok_or_else(|| "renet: no client".into())
    }
}

/// Sleeps until the next tick (no catching up after a late one).
fn pace(next: &mut Instant) {
    *next += TICK;
    let now = Instant::now();
    if *next > now {
        std::thread::sleep(*next - now);
    } else {
        *next = now;
    }
}

fn connect(net: &mut Net) -> Result<(Server, Client), BoxError> {
    let socket: UdpSocket = big_std_socket();
    let server_addr = socket.local_addr()?;
    let dial = net.route(server_addr)?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    let transport = NetcodeServerTransport::new(
        ServerConfig {
            current_time: now,
            max_clients: 1,
            protocol_id: PROTOCOL_ID,
            public_addresses: vec![server_addr],
            authentication: ServerAuthentication::Unsecure,
        },
        socket,
    )?;
    let t = Instant::now();
    let mut server = Server {
        renet: RenetServer::new(ConnectionConfig::default()),
        transport,
        last: t,
        next_tick: t,
        client: None,
    };
    let transport = NetcodeClientTransport::new(
        now,
        ClientAuthentication::Unsecure {
            protocol_id: PROTOCOL_ID,
            client_id: 1,
            server_addr: dial,
            user_data: None,
        },
        big_std_socket(),
    )
    .map_err(|e| format!("renet client: {e}"))?;
    let mut client = Client {
        renet: RenetClient::new(ConnectionConfig::default()),
        transport,
        last: t,
        next_tick: t,
    };
    let mut next = t;
    while !(client.renet.is_connected() && server.client.is_some()) {
        if t.elapsed() > CONNECT_TIMEOUT {
            return Err("renet: not connected within 5 s".into());
        }
        client.update()?;
        server.update()?;
        client.flush()?;
        server.flush();
        pace(&mut next);
    }
    let t = Instant::now();
    (client.next_tick, server.next_tick) = (t, t);
    Ok((server, client))
}

fn bulk(
    mut server: Server,
    mut client: Client,
    bytes: u64,
    cap: Duration,
) -> Result<Outcome, BoxError> {
    let count = bytes.div_ceil(BIG as u64);
    let t0 = Instant::now();
    let deadline = t0 + cap;
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let receiving = s.spawn(|| {
            let id = server.id()?;
            let mut receiver = Receiver::new();
            let result = (|| {
                while receiver.delivered < count && Instant::now() < deadline {
                    server.update()?;
                    while let Some(m) = server.renet.receive_message(id, RELIABLE) {
                        receiver.message(&m)?;
                    }
                    server.flush();
                    pace(&mut server.next_tick);
                }
                Ok::<_, BoxError>(())
            })();
            done.store(true, Ordering::Relaxed);
            result.map(|()| receiver)
        });
        let mut seq = 0;
        while !done.load(Ordering::Relaxed) {
            client.update()?;
            while seq < count && client.renet.can_send_message(RELIABLE, BIG) {
                client.renet.send_message(RELIABLE, stamped(BIG, seq));
                seq += 1;
            }
            client.flush()?;
            pace(&mut client.next_tick);
        }
        let receiver = receiving.join().map_err(|_| "renet receiver panicked")??;
        Ok(Outcome::Bulk(receiver.bulk(count * BIG as u64, t0, cap)))
    })
}

fn latency(
    mut server: Server,
    mut client: Client,
    rate: u32,
    duration: Duration,
) -> Result<Outcome, BoxError> {
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let t0 = Instant::now();
    let deadline = t0 + duration + GRACE;
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let receiving = s.spawn(|| {
            let id = server.id()?;
            let mut receiver = Receiver::new();
            let result = (|| {
                while receiver.delivered < total && Instant::now() < deadline {
                    server.update()?;
                    while let Some(m) = server.renet.receive_message(id, RELIABLE) {
                        receiver.message(&m)?;
                    }
                    server.flush();
                    pace(&mut server.next_tick);
                }
                Ok::<_, BoxError>(())
            })();
            done.store(true, Ordering::Relaxed);
            result.map(|()| receiver)
        });
        let mut sent = 0u64;
        while !done.load(Ordering::Relaxed) {
            client.update()?;
            // Every message due by now (the schedule is `rate` per second
            // from t0), each stamped as it is handed to renet.
            let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
            while sent < due {
                client.renet.send_message(RELIABLE, stamped(SMALL, sent));
                sent += 1;
            }
            client.flush()?;
            pace(&mut client.next_tick);
        }
        let receiver = receiving.join().map_err(|_| "renet receiver panicked")??;
        Ok(Outcome::Latency(receiver.latency(sent)))
    })
}

fn unreliable(
    mut server: Server,
    mut client: Client,
    duration: Duration,
) -> Result<Outcome, BoxError> {
    let end = Instant::now() + duration;
    std::thread::scope(|s| {
        let receiving = s.spawn(|| {
            let id = server.id()?;
            let mut tally = Tally::new();
            let mut heard = Instant::now();
            loop {
                server.update()?;
                while let Some(m) = server.renet.receive_message(id, DefaultChannel::Unreliable) {
                    if m.len() == BIG {
                        tally.hit();
                        heard = Instant::now();
                    }
                }
                server.flush();
                let now = Instant::now();
                if now > end && (now - heard > QUIET || now > end + GRACE) {
                    break;
                }
                pace(&mut server.next_tick);
            }
            Ok::<_, BoxError>(tally)
        });
        let payload = Bytes::from(vec![0xABu8; BIG]);
        let (mut accepted, mut refused) = (0u64, 0u64);
        while Instant::now() < end {
            client.update()?;
            loop {
                if client
                    .renet
                    .can_send_message(DefaultChannel::Unreliable, BIG)
                {
                    client
                        .renet
                        .send_message(DefaultChannel::Unreliable, payload.clone());
                    accepted += 1;
                } else {
                    refused += 1;
                    break;
                }
            }
            client.flush()?;
            pace(&mut client.next_tick);
        }
        let tally = receiving.join().map_err(|_| "renet receiver panicked")??;
        Ok(Outcome::Unreliable(Unreliable {
            accepted,
            refused,
            delivered: tally.count,
            rate: tally.rate(),
        }))
    })
}
