//! The relay: sockets, a receiving thread per socket, and a scheduling
//! thread per direction that runs the [`DirectionModel`] and sends each
//! datagram on at its time.
//!
//! ```text
//! client ──► front socket ──► [forward scheduler] ──► upstream socket (one per client) ──► server
//! client ◄── front socket ◄── [backward scheduler] ◄── upstream socket ◄── server
//! ```

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::LinkConfig;
use crate::model::{DirectionModel, Verdict};
use crate::stats::{Counters, RelayStats};
use crate::MAX_DATAGRAM;

/// Socket buffers of every relay socket, as the perf harness gives its
/// contenders (the kernel may cap them at `net.core.rmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;
/// How often a receiving thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Datagrams a receiving thread may hand to a scheduling thread ahead of
/// it; past that they are dropped as overload.
const HAND_OFF: usize = 65_536;
/// Arrivals a scheduling thread takes in before it looks at its deadlines
/// again.
const BATCH: usize = 256;

/// A running link emulator between clients and one upstream address.
/// Dropping it stops and joins its threads (within about 50 ms).
#[derive(Debug)]
pub struct Relay {
    local: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    forward: Counters,
    backward: Counters,
    clients: AtomicU64,
    refused_clients: AtomicU64,
}

impl Relay {
    /// Validates `config`, binds [`LinkConfig::listen`] and starts relaying
    /// every datagram from any client to `upstream` and the replies back,
    /// through the emulated link. Each client address gets its own upstream
    /// socket (on loopback when `upstream` is, otherwise on the unspecified
    /// address), so the server sees one address per client.
    ///
    /// Errors: an invalid configuration (`InvalidInput`, wrapping a
    /// [`ConfigError`](crate::ConfigError)), or the socket and thread
    /// errors of the system.
    pub fn start(config: LinkConfig, upstream: SocketAddr) -> io::Result<Relay> {
        config.validate()?;
        let front = Arc::new(udp_socket(config.listen, None)?);
        front.set_read_timeout(Some(POLL))?;
        let local = front.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (forward_tx, forward_rx) = mpsc::sync_channel(HAND_OFF);
        let (backward_tx, backward_rx) = mpsc::sync_channel(HAND_OFF);
        let mut threads = Vec::new();
        let result = (|| {
            for (name, rx, direction, salt) in [
                (
                    "stt-link forward",
                    forward_rx,
                    &config.forward,
                    0x0F0F_0F0F_0F0F_0F0F,
                ),
                (
                    "stt-link backward",
                    backward_rx,
                    &config.backward,
                    0xB0B0_B0B0_B0B0_B0B0,
                ),
            ] {
                let scheduler = Scheduler {
                    rx,
                    model: DirectionModel::new(direction.clone(), config.seed ^ salt),
                    shared: shared.clone(),
                    forward: salt == 0x0F0F_0F0F_0F0F_0F0F,
                    spin: config.spin,
                    max_in_flight: config.max_in_flight_bytes,
                };
                threads.push(
                    std::thread::Builder::new()
                        .name(name.into())
                        .spawn(move || scheduler.run())?,
                );
            }
            let front_loop = Front {
                socket: front,
                upstream,
                max_clients: config.max_clients,
                shared: shared.clone(),
                forward: forward_tx,
                backward: backward_tx,
            };
            threads.push(
                std::thread::Builder::new()
                    .name("stt-link front".into())
                    .spawn(move || front_loop.run())?,
            );
            Ok::<_, io::Error>(())
        })();
        let relay = Relay {
            local,
            upstream,
            shared,
            threads,
        };
        // On an error, dropping `relay` stops what did start.
        result.map(|()| relay)
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address datagrams are relayed to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The counters so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            forward: self.shared.forward.snapshot(),
            backward: self.shared.backward.snapshot(),
            clients: self.shared.clients.load(Ordering::Relaxed),
            refused_clients: self.shared.refused_clients.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket bound to `addr` with [`SOCKET_BUFFER`]-byte buffers,
/// connected to `peer` if given.
fn udp_socket(addr: SocketAddr, peer: Option<SocketAddr>) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps them, and a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    if let Some(peer) = peer {
        socket.connect(&peer.into())?;
    }
    Ok(socket.into())
}

/// Where a scheduled datagram goes.
#[derive(Debug, Clone, Copy)]
enum Dest {
    /// The socket's connected peer (an upstream socket).
    Connected,
    /// A client, from the front socket.
    To(SocketAddr),
}

/// A datagram handed from a receiving thread to a scheduling thread.
#[derive(Debug)]
struct Job {
    arrival: Instant,
    data: Vec<u8>,
    socket: Arc<UdpSocket>,
    dest: Dest,
}

/// The front socket's receiving thread: finds (or opens) each client's
/// upstream socket and hands the datagram to the forward scheduler.
struct Front {
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    max_clients: usize,
    shared: Arc<Shared>,
    forward: SyncSender<Job>,
    backward: SyncSender<Job>,
}

impl Front {
    fn run(self) {
        let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut threads = Vec::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let counters = &self.shared.forward;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) => {
                    pause_after(&e);
                    continue;
                }
            };
            let arrival = Instant::now();
            let socket = match clients.get(&from) {
                Some(s) => s.clone(),
                None => {
                    if clients.len() >= self.max_clients {
                        Counters::add(&self.shared.refused_clients, 1);
                        continue;
                    }
                    match self.open_client(from) {
                        Ok((socket, thread)) => {
                            threads.push(thread);
                            clients.insert(from, socket.clone());
                            Counters::add(&self.shared.clients, 1);
                            socket
                        }
                        Err(_) => {
                            Counters::add(&counters.received, 1);
                            Counters::add(&counters.dropped_overload, 1);
                            continue;
                        }
                    }
                }
            };
            Counters::add(&counters.received, 1);
            let job = Job {
                arrival,
                data: buf[..n].to_vec(),
                socket,
                dest: Dest::Connected,
            };
            if self.forward.try_send(job).is_err() {
                Counters::add(&counters.dropped_overload, 1);
            }
        }
        for t in threads {
            let _ = t.join();
        }
    }

    /// An upstream socket for the client at `client` and the thread that
    /// receives its replies.
    fn open_client(&self, client: SocketAddr) -> io::Result<(Arc<UdpSocket>, JoinHandle<()>)> {
        let ip: IpAddr = match (self.upstream.ip(), self.upstream.ip().is_loopback()) {
            (IpAddr::V4(_), true) => Ipv4Addr::LOCALHOST.into(),
            (IpAddr::V4(_), false) => Ipv4Addr::UNSPECIFIED.into(),
            (IpAddr::V6(_), true) => Ipv6Addr::LOCALHOST.into(),
            (IpAddr::V6(_), false) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = Arc::new(udp_socket((ip, 0).into(), Some(self.upstream))?);
        socket.set_read_timeout(Some(POLL))?;
        let back = Back {
            socket: socket.clone(),
            front: self.socket.clone(),
            client,
            shared: self.shared.clone(),
            backward: self.backward.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("stt-link back".into())
            .spawn(move || back.run())?;
        Ok((socket, thread))
    }
}

/// One client's upstream socket's receiving thread: hands each reply to the
/// backward scheduler, addressed to the client.
struct Back {
    socket: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
    backward: SyncSender<Job>,
}

impl Back {
    fn run(self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let counters = &self.shared.backward;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    pause_after(&e);
                    continue;
                }
            };
            Counters::add(&counters.received, 1);
            let job = Job {
                arrival: Instant::now(),
                data: buf[..n].to_vec(),
                socket: self.front.clone(),
                dest: Dest::To(self.client),
            };
            if self.backward.try_send(job).is_err() {
                Counters::add(&counters.dropped_overload, 1);
            }
        }
    }
}

/// After a receive error: nothing for a time-out or an interruption, nor
/// for a refused connection (an ICMP error reported once), a short pause
/// for anything else so that a broken socket does not spin a core.
fn pause_after(e: &io::Error) {
    match e.kind() {
        io::ErrorKind::WouldBlock
        | io::ErrorKind::TimedOut
        | io::ErrorKind::Interrupted
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset => {}
        _ => std::thread::sleep(Duration::from_millis(1)),
    }
}

/// A datagram waiting for its delivery time.
struct Pending {
    at: Instant,
    seq: u64,
    data: Vec<u8>,
    socket: Arc<UdpSocket>,
    dest: Dest,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed: the earliest (then the first scheduled) on top of the
    /// max-heap.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One direction's scheduling thread: a binary heap of datagrams by
/// delivery time, sleeping until the next one is due (then spinning the
/// last [`LinkConfig::spin`]).
struct Scheduler {
    rx: Receiver<Job>,
    model: DirectionModel,
    shared: Arc<Shared>,
    forward: bool,
    spin: Duration,
    max_in_flight: usize,
}

impl Scheduler {
    fn counters(&self) -> &Counters {
        if self.forward {
            &self.shared.forward
        } else {
            &self.shared.backward
        }
    }

    fn run(mut self) {
        let mut heap: BinaryHeap<Pending> = BinaryHeap::new();
        let mut in_flight = 0usize;
        let mut seq = 0u64;
        let mut disconnected = false;
        while !self.shared.stop.load(Ordering::Relaxed) {
            // Deliver what is due.
            let now = Instant::now();
            while heap.peek().is_some_and(|p| p.at <= now) {
                let Some(p) = heap.pop() else { break };
                in_flight -= p.data.len();
                self.send(&p);
            }
            // Take in new arrivals, a batch at a time.
            let mut took = 0;
            while took < BATCH && !disconnected {
                match self.rx.try_recv() {
                    Ok(job) => {
                        self.admit(job, &mut heap, &mut in_flight, &mut seq);
                        took += 1;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => disconnected = true,
                }
            }
            if took > 0 {
                continue;
            }
            let wait = heap
                .peek()
                .map(|p| p.at.saturating_duration_since(Instant::now()));
            match wait {
                None if disconnected => break,
                Some(w) if w.is_zero() => {}
                Some(w) if w <= self.spin => std::thread::yield_now(),
                _ if disconnected => {
                    std::thread::sleep(wait.map_or(POLL, |w| w - self.spin).min(POLL))
                }
                _ => {
                    let timeout = wait.map_or(POLL, |w| (w - self.spin).min(POLL));
                    match self.rx.recv_timeout(timeout) {
                        Ok(job) => self.admit(job, &mut heap, &mut in_flight, &mut seq),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => disconnected = true,
                    }
                }
            }
        }
    }

    fn admit(
        &mut self,
        job: Job,
        heap: &mut BinaryHeap<Pending>,
        in_flight: &mut usize,
        seq: &mut u64,
    ) {
        let len = job.data.len();
        match self.model.on_datagram(job.arrival, len) {
            Verdict::Lost => Counters::add(&self.counters().dropped_loss, 1),
            Verdict::QueueFull => Counters::add(&self.counters().dropped_queue, 1),
            Verdict::Deliver {
                at,
                duplicate,
                reordered,
            } => {
                let copies = 1 + usize::from(duplicate);
                if *in_flight + copies * len > self.max_in_flight {
                    Counters::add(&self.counters().dropped_overload, 1);
                    return;
                }
                if reordered {
                    Counters::add(&self.counters().reordered, 1);
                }
                *seq += 1;
                let first = *seq;
                if duplicate {
                    Counters::add(&self.counters().duplicated, 1);
                    *seq += 1;
                    heap.push(Pending {
                        at,
                        seq: *seq,
                        data: job.data.clone(),
                        socket: job.socket.clone(),
                        dest: job.dest,
                    });
                }
                *in_flight += copies * len;
                heap.push(Pending {
                    at,
                    seq: first,
                    data: job.data,
                    socket: job.socket,
                    dest: job.dest,
                });
            }
        }
    }

    fn send(&self, p: &Pending) {
        let sent = match p.dest {
            Dest::Connected => p.socket.send(&p.data),
            Dest::To(addr) => p.socket.send_to(&p.data, addr),
        };
        let c = self.counters();
        match sent {
            Ok(n) => {
                Counters::add(&c.forwarded, 1);
                Counters::add(&c.forwarded_bytes, n as u64);
            }
            Err(_) => Counters::add(&c.send_errors, 1),
        }
    }
}
