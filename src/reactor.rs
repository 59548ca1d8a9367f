//! The engine: one event loop per core.
//!
//! A reactor is a thread that owns its transports (for UDP, its own socket of
//! the `SO_REUSEPORT` group) and its shard of the session table. It waits on
//! one `mio::Poll`, in which sit its transports' event sources and a
//! `mio::Waker` for commands. No lock is taken on the per-packet path: a
//! datagram is received, decrypted in place, and its messages handed to the
//! node's workers through a bounded crossbeam channel, all on this thread.
//!
//! ## Which reactor owns a session
//!
//! Session ids carry their owner in their low byte: `id & 0xFF` modulo the
//! number of reactors. The initiating reactor picks such an id; the
//! `SO_REUSEPORT` steering program makes the kernel deliver every datagram
//! of the session to that reactor's socket, whatever the peer's address.
//! A datagram that lands elsewhere anyway (no steering program, or an
//! accepting node with a different reactor count than the id was made for)
//! is forwarded to its owner through the owner's command channel.
//!
//! ## One loop turn
//!
//! 1. wait for readiness or the earliest session timer (no wait when a
//!    transport still had datagrams last turn);
//! 2. drain commands (connect, send, close, forwarded datagrams, stop);
//! 3. receive from every transport that is ready, feeding each datagram to
//!    its session (or accepting a new one from a handshake message 1);
//! 4. run the session timers that are due;
//! 5. flush every transport: a turn's datagrams leave in one batch.
//!
//! ## Backpressure
//!
//! A full worker queue drops the message and counts the datagram in
//! `packets_dropped` (UDP promises nothing more). Timers are kept in a heap
//! that may fire early: a session whose deadline moved later is simply asked
//! again, so a packet never costs a heap operation.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::{Events, Poll, Token, Waker};

use crate::crypto::{CookieKey, Identity, Msg1Check, NetworkKey, NodeId};
use crate::frame::{close_code, FrameType, Header, SessionId, HEADER_LEN, MAX_PAYLOAD_LEN};
use crate::session::{
    CloseReason, Event, Role, Session, SessionConfig, SessionError, SessionStats, Transmits,
    BATCH_RECORD_OVERHEAD, DATA_OVERHEAD,
};
use crate::stream::MemoryBudget;
use crate::transport::{Transport, TransportCounters, TransportError};

const WAKER: Token = Token(usize::MAX);
/// Commands queued for one reactor before senders wait: deep enough for a
/// burst of sends to be sealed and flushed in one loop turn, bounded so that
/// an application sending faster than the network drains feels backpressure
/// instead of growing memory.
const COMMAND_QUEUE: usize = 16_384;

/// Bytes of messages queued for one reactor beyond which `Node::send` waits:
/// with large messages the queue's length alone would let an application
/// queue gigabytes (16,384 messages of 64 KiB are 1 GiB).
const QUEUED_BYTES_LIMIT: usize = 64 << 20;

/// Messages smaller than this are not counted against
/// [`QUEUED_BYTES_LIMIT`]: the queue's length bounds them (16 MiB at most),
/// and small messages skip two atomic operations each.
const COUNTED_FROM: usize = 1024;

/// The message bytes a command carries, for [`QUEUED_BYTES_LIMIT`].
fn queued_bytes(command: &Command) -> usize {
    match command {
        Command::Send { payload, .. } if payload.message().len() >= COUNTED_FROM => {
            payload.message().len()
        }
        _ => 0,
    }
}
/// Commands handled per loop turn before the turn's datagrams are flushed:
/// large enough to fill several `sendmmsg` batches, small enough that an
/// application sending without pause cannot keep the reactor from flushing,
/// receiving and running timers.
const COMMANDS_PER_TURN: usize = 256;

/// Sends being gathered for one session and stream: (session, stream,
/// messages in order).
type Coalescing = (SessionId, u32, Vec<Payload>);

/// Largest coalesced frame on a stream transport (WebSocket): TLS-record
/// sized, so one seal covers many small messages without delaying any.
const COALESCE_LIMIT: usize = 16 * 1024;

/// Datagrams held for slow reliable transports before the reactor stops
/// taking commands.
const HELD_LIMIT: usize = 1024;

/// Bytes of such datagrams beyond which it stops too (1,024 large
/// messages could be a gigabyte).
const HELD_BYTES_LIMIT: usize = 64 << 20;

/// Datagrams waiting for one slow reliable peer, each with whether an
/// in-reactor handler sent it.
type HeldQueue = VecDeque<(Vec<u8>, bool)>;

/// What waits in a reactor's `held` queues; `answers` and `answer_bytes`
/// count the part in-reactor handlers sent.
#[derive(Debug, Default)]
struct HeldCount {
    frames: usize,
    bytes: usize,
    answers: usize,
    answer_bytes: usize,
}

impl HeldCount {
    /// Too much waits: the reactor takes no more sends.
    fn throttles(&self) -> bool {
        self.frames > HELD_LIMIT || self.bytes > HELD_BYTES_LIMIT
    }

    /// Too many in-reactor handlers' answers wait: the reactor reads
    /// nothing more for them to answer.
    fn stops_answering(&self) -> bool {
        self.answers > HELD_LIMIT || self.answer_bytes > HELD_BYTES_LIMIT
    }
}

/// Commands waiting for a busy sibling reactor before further ones are
/// dropped (logged).
const TO_PEERS_LIMIT: usize = 65_536;

/// Datagrams held for one slow reliable peer before further ones are
/// dropped (counted and logged): a peer this far behind is not reading.
const PEER_HELD_LIMIT: usize = 8192;

/// How soon a reactor that paused reading a reliable transport looks again.
const PAUSE_RECHECK: Duration = Duration::from_millis(1);

/// What [`Reactor::drain_commands`] left behind.
enum Drained {
    All,
    More,
    Stop,
}

/// What the node reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A session completed its handshake (either side).
    SessionEstablished(SessionInfo),
    /// A message arrived.
    Message {
        /// The session it arrived on.
        session: SessionId,
        /// The stream it was sent on.
        stream_id: u32,
        /// DATA or an application type (0x80–0xFF).
        frame_type: FrameType,
        /// The message.
        payload: Vec<u8>,
        /// The peer's address at the time.
        peer: SocketAddr,
    },
    /// A session ended.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
}

/// A description of an established session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session id.
    pub id: SessionId,
    /// The peer's authenticated node id.
    pub peer_node: NodeId,
    /// The peer's address.
    pub peer_addr: SocketAddr,
    /// The transport it runs on (e.g. `"udp/io_uring"`).
    pub transport: &'static str,
    /// Whether this node opened it.
    pub initiator: bool,
}

/// Why a node operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No session with this id on this node.
    #[error("no session {0} on this node (closed, or never opened)")]
    UnknownSession(SessionId),
    /// The session refused the operation.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The handshake did not complete.
    #[error("connecting to {peer} failed: {reason}")]
    ConnectFailed {
        /// The address dialled.
        peer: SocketAddr,
        /// Why.
        reason: CloseReason,
    },
    /// The node is not running.
    #[error("the node is stopped")]
    Stopped,
    /// The transport refused the datagram.
    #[error("transport: {0}")]
    Transport(String),
    /// The session table is full.
    #[error("session limit reached ({0} sessions): raise max_sessions or close idle sessions")]
    TooManySessions(usize),
    /// [`Node::on_frame_inline`](crate::node::Node::on_frame_inline) was
    /// called twice.
    #[error("this node already has an in-reactor message handler (on_frame_inline is set once)")]
    HandlerAlreadySet,
}

/// Settings shared by all reactors of a node.
#[derive(Debug)]
pub(crate) struct Shared {
    pub node_id: NodeId,
    pub identity: Identity,
    pub network: NetworkKey,
    pub session_config: SessionConfig,
    pub accepting: AtomicBool,
    pub max_sessions_per_reactor: usize,
    pub budget: MemoryBudget,
    /// The application's event channel (`Node::events`).
    pub events: Sender<NodeEvent>,
    /// The worker threads' channel: messages for registered callbacks.
    pub work: Sender<NodeEvent>,
    /// Which messages go to the workers.
    pub dispatch: Dispatch,
    /// The node is stopping (workers exit).
    pub stopping: AtomicBool,
    pub sessions: AtomicUsize,
    /// Established sessions, per reactor: lets `Node::send` refuse an
    /// unknown session at once. Written only on establish and close.
    pub live: Vec<RwLock<HashSet<SessionId>>>,
    /// The secret of stateless address-validation cookies.
    pub cookie_key: CookieKey,
    /// Checks a message 1 authenticates before it gets any answer.
    pub msg1_check: Msg1Check,
    /// The origin of cookie epochs.
    pub started: Instant,
    /// Pending incoming handshakes on one reactor above which message 1
    /// gets a cookie challenge.
    pub cookie_threshold_per_reactor: usize,
    /// Most pending incoming handshakes on one reactor.
    pub max_pending_per_reactor: usize,
    /// Pending incoming handshakes, all reactors (statistics only).
    pub pending: AtomicUsize,
    /// Cookie challenges sent.
    pub cookie_challenges: AtomicU64,
    /// Message 1s and echoes refused (bad cookie, pending limit).
    pub handshakes_refused: AtomicU64,
    /// Payload buffers recycled between `Node::send` and the reactors, and
    /// between the reactors and `Node::recycle`.
    pub pool: Arc<BufferPool>,
    /// The application's in-reactor message handler
    /// (`Node::on_frame_inline`), set at most once.
    pub inline: OnceLock<InlineHandler>,
}

/// A message handler that runs on the reactor thread (see
/// `Node::on_frame_inline`).
#[derive(Clone)]
pub(crate) struct InlineHandler(pub Arc<InlineFn>);

/// The handler's signature.
pub(crate) type InlineFn = dyn Fn(crate::node::Frame, SocketAddr, &mut Replies<'_>) + Send + Sync;

impl std::fmt::Debug for InlineHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InlineHandler")
    }
}

/// A message an in-reactor handler sends: sealed and queued by the reactor
/// right after the handler returns, in this turn.
struct InlineSend {
    session: SessionId,
    stream_id: u32,
    frame_type: FrameType,
    payload: Payload,
}

/// What a handler given to [`Node::on_frame_inline`](crate::node::Node::on_frame_inline)
/// sends with: messages queued here are sealed by the reactor the handler
/// runs on as soon as the handler returns, and leave with the datagrams of
/// the same turn (in one `sendmmsg` or io_uring batch over UDP) — no other
/// thread is woken on the way. A session held by another reactor is handed
/// to it, as [`Node::send`](crate::node::Node::send) would.
pub struct Replies<'a> {
    queue: &'a mut Vec<InlineSend>,
    shared: &'a Shared,
}

impl std::fmt::Debug for Replies<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl Replies<'_> {
    /// Sends `payload` as a DATA message on stream 0.
    pub fn send(&mut self, session: SessionId, payload: &[u8]) -> Result<(), NodeError> {
        self.send_typed(session, 0, FrameType::Data, payload)
    }

    /// Sends `payload` as a DATA message on `stream_id`.
    pub fn send_on(
        &mut self,
        session: SessionId,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), NodeError> {
        self.send_typed(session, stream_id, FrameType::Data, payload)
    }

    /// Sends a message of an application type (0x80–0xFF) or DATA.
    ///
    /// Refused at once, as by [`Node::send_typed`](crate::node::Node::send_typed):
    /// a type that is not a message, a message over `max_message_size`, a
    /// session that is not established on this node. A session that closes
    /// before the reactor seals the message loses it (logged at debug
    /// level); a refusal when sealing counts in its transport's
    /// `errors_send`.
    pub fn send_typed(
        &mut self,
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
    ) -> Result<(), NodeError> {
        self.shared.check_message(frame_type, payload.len())?;
        if !self.shared.is_live(session) {
            return Err(NodeError::UnknownSession(session));
        }
        self.queue.push(InlineSend {
            session,
            stream_id,
            frame_type,
            payload: self.shared.pool.copy_of(payload),
        });
        Ok(())
    }

    /// Gives a received message's buffer back, as
    /// [`Node::recycle`](crate::node::Node::recycle) does: an echo that
    /// sends `frame.payload` can then give it back.
    pub fn recycle(&mut self, payload: Vec<u8>) {
        self.shared.pool.give(payload);
    }
}

/// A message on its way to a reactor, in a pooled buffer with room for the
/// frame header in front, so that the reactor can seal it where it lies.
#[derive(Debug)]
pub(crate) struct Payload(Vec<u8>);

impl Payload {
    /// The message.
    pub(crate) fn message(&self) -> &[u8] {
        // Every Payload is built by `BufferPool::copy_of`, with the room.
        self.0.get(HEADER_LEN..).unwrap_or_default()
    }
}

/// Payload buffers recycled between the application's threads
/// (`Node::send` copies a message into one) and the reactors (which give it
/// back once the message is sealed).
///
/// A buffer allocated on one thread and freed on another makes glibc's
/// malloc take the owning arena's lock, and, for large messages, trim the
/// heap and return its pages to the kernel, which must then fault and zero
/// fresh pages for the next message: profiled at 39% of the CPU time of a
/// 64 KiB WebSocket run, and about 10% (lock contention) at 1200 bytes over
/// UDP. Spare buffers wait in a bounded lock-free channel instead, within a
/// byte budget so that a burst of large messages cannot pin memory.
pub(crate) struct BufferPool {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    /// Capacity of the buffers waiting, bytes.
    held: AtomicUsize,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("spare", &self.rx.len())
            .field("held", &self.held.load(Ordering::Relaxed))
            .finish()
    }
}

impl BufferPool {
    /// Spare buffers kept at most.
    const BUFFERS: usize = 4096;
    /// Bytes of spare buffers kept at most (their capacities).
    const BYTES: usize = 8 << 20;
    /// A buffer larger than this is not kept.
    const LARGEST: usize = 1 << 20;

    pub(crate) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(Self::BUFFERS);
        BufferPool {
            tx,
            rx,
            held: AtomicUsize::new(0),
        }
    }

    /// A buffer holding a copy of `payload` after room for the frame
    /// header, with room for the tag behind: a spare one if any.
    pub(crate) fn copy_of(&self, payload: &[u8]) -> Payload {
        let mut buf = self.spare();
        buf.reserve(DATA_OVERHEAD + payload.len());
        buf.resize(HEADER_LEN, 0);
        buf.extend_from_slice(payload);
        Payload(buf)
    }

    /// A spare buffer (cleared), or a new one.
    fn spare(&self) -> Vec<u8> {
        match self.rx.try_recv() {
            Ok(mut b) => {
                self.held.fetch_sub(b.capacity(), Ordering::Relaxed);
                b.clear();
                b
            }
            Err(_) => Vec::new(),
        }
    }

    /// Keeps a message's buffer for a later one.
    pub(crate) fn recycle(&self, payload: Payload) {
        self.give(payload.0);
    }

    /// Keeps `buf` for a later message, if it fits the budget.
    pub(crate) fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap > Self::LARGEST {
            return;
        }
        if self.held.fetch_add(cap, Ordering::Relaxed) + cap > Self::BYTES {
            self.held.fetch_sub(cap, Ordering::Relaxed);
            return;
        }
        if let Err(e) = self.tx.try_send(buf) {
            self.held.fetch_sub(cap, Ordering::Relaxed);
            drop(e);
        }
    }

    /// [`recycle`](Self::recycle) for each message.
    pub(crate) fn recycle_all(&self, payloads: Vec<Payload>) {
        for p in payloads {
            self.give(p.0);
        }
    }
}

impl crate::session::PayloadSource for BufferPool {
    fn copy_out(&self, data: &[u8]) -> Vec<u8> {
        let mut buf = self.spare();
        buf.extend_from_slice(data);
        buf
    }
}

/// Which messages the reactors hand to the worker threads (where callbacks
/// run) instead of the application's channel. Read on every message, so
/// plain atomics: a callback registered while messages are in flight takes
/// effect for the next ones.
#[derive(Debug, Default)]
pub(crate) struct Dispatch {
    /// An `on_frame` callback is set: every message goes to the workers.
    pub on_frame: AtomicBool,
    /// Bit `t - 0x80`: a handler is registered for application type `t`.
    pub handlers: [AtomicU64; 2],
}

impl Dispatch {
    /// Whether a message of this type goes to the workers.
    pub(crate) fn to_workers(&self, frame_type: FrameType) -> bool {
        if self.on_frame.load(Ordering::Relaxed) {
            return true;
        }
        match frame_type {
            FrameType::Application(t) => {
                let bit = (t - FrameType::APPLICATION_MIN) as usize;
                self.handlers[bit / 64].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
            }
            _ => false,
        }
    }

    pub(crate) fn set_handler(&self, t: u8) {
        let bit = (t.saturating_sub(FrameType::APPLICATION_MIN)) as usize;
        self.handlers[bit / 64].fetch_or(1 << (bit % 64), Ordering::Relaxed);
    }
}

impl Shared {
    /// Refuses what no session would send: a type that is not a message, a
    /// message over `max_message_size`.
    pub(crate) fn check_message(&self, frame_type: FrameType, len: usize) -> Result<(), NodeError> {
        if !frame_type.is_message() {
            return Err(SessionError::NotAMessageType(frame_type).into());
        }
        let max = self.session_config.reassembly.max_message_size;
        if len > max {
            return Err(SessionError::MessageTooLarge { len, max }.into());
        }
        Ok(())
    }

    /// The reactor that holds established session `id`, if any.
    pub(crate) fn holder_of(&self, id: SessionId) -> Option<usize> {
        let count = self.live.len();
        let owner = (id.0 & 0xFF) as usize % count;
        let live = |r: usize| {
            self.live[r]
                .read()
                .map(|set| set.contains(&id))
                .unwrap_or(false)
        };
        if live(owner) {
            return Some(owner);
        }
        (0..count).find(|&r| r != owner && live(r))
    }

    /// Whether session `id` is established on this node.
    pub(crate) fn is_live(&self, id: SessionId) -> bool {
        self.holder_of(id).is_some()
    }

    /// Where a message of this type goes: the workers or the application.
    pub(crate) fn channel_for(&self, frame_type: FrameType) -> &Sender<NodeEvent> {
        if self.dispatch.to_workers(frame_type) {
            &self.work
        } else {
            &self.events
        }
    }
}

/// A command from the application (or another reactor) to a reactor.
pub(crate) enum Command {
    Connect {
        transport: usize,
        peer: SocketAddr,
        /// A target the transport must open first (a WebSocket URL).
        target: Option<String>,
        reply: Sender<Result<SessionInfo, NodeError>>,
    },
    Send {
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        /// From the node's [`BufferPool`]; given back once sealed.
        payload: Payload,
        reply: Option<Sender<Result<(), NodeError>>>,
    },
    Close {
        session: SessionId,
        code: u16,
        reason: String,
    },
    SendMany {
        sessions: Vec<SessionId>,
        stream_id: u32,
        frame_type: FrameType,
        payload: Arc<[u8]>,
        reply: Sender<Vec<(SessionId, Result<(), NodeError>)>>,
    },
    SessionStats {
        session: SessionId,
        reply: Sender<Option<SessionStats>>,
    },
    /// A datagram for a session this reactor owns, received elsewhere:
    /// on this reactor's own socket of a sharded group (`path: None`), or on
    /// a transport of another reactor (`path`: the way back).
    Forward {
        transport: usize,
        from: SocketAddr,
        path: Option<Box<Path>>,
        datagram: Vec<u8>,
    },
    /// Datagrams of a session owned elsewhere, to send on a transport here.
    PathSend {
        transport: usize,
        to: SocketAddr,
        datagrams: Vec<Vec<u8>>,
    },
    /// Moves a session to another path (`Node::move_session_*`).
    SetPath {
        session: SessionId,
        path: Box<Path>,
        reply: Sender<Result<(), NodeError>>,
    },
    /// Opens a target (a WebSocket URL) on a transport here and returns
    /// the path to it.
    OpenPath {
        transport: usize,
        target: String,
        addr: SocketAddr,
        reply: Sender<Result<Path, NodeError>>,
    },
    AddTransport {
        transport: Box<dyn Transport>,
        reply: Sender<Result<usize, NodeError>>,
    },
    TransportStats {
        transport: usize,
        reply: Sender<Option<crate::transport::TransportStats>>,
    },
    Stop,
}

/// The application's end of a reactor: its command queue and waker.
#[derive(Debug, Clone)]
pub(crate) struct ReactorHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    notified: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Message bytes in the queue (see [`QUEUED_BYTES_LIMIT`]).
    queued: Arc<AtomicUsize>,
}

impl ReactorHandle {
    /// Queues a command, waiting while the queue is full (or holds
    /// [`QUEUED_BYTES_LIMIT`] bytes of messages), and wakes the reactor if it
    /// is not already awake for an earlier one (one wake-up per burst, not
    /// per command).
    pub(crate) fn send(&self, command: Command) -> Result<(), NodeError> {
        let bytes = queued_bytes(&command);
        if bytes > 0 {
            // A message larger than the limit still goes, into an empty
            // queue. The wait sleeps, from 50 µs up to 1 ms: it only
            // happens with tens of megabytes queued, which take the reactor
            // milliseconds; the reactor is woken once, not per look.
            let over = || {
                let queued = self.queued.load(Ordering::Acquire);
                queued > 0 && queued + bytes > QUEUED_BYTES_LIMIT
            };
            if over() {
                self.wake()?;
                let mut nap = Duration::from_micros(50);
                while over() {
                    if self.stop.load(Ordering::Acquire) {
                        return Err(NodeError::Stopped);
                    }
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(1));
                }
            }
            self.queued.fetch_add(bytes, Ordering::AcqRel);
        }
        let sent = match self.commands.try_send(command) {
            Ok(()) => Ok(()),
            // Make sure the reactor is awake to drain, then wait.
            Err(TrySendError::Full(command)) => self
                .wake()
                .and_then(|()| self.commands.send(command).map_err(|_| NodeError::Stopped)),
            Err(TrySendError::Disconnected(_)) => Err(NodeError::Stopped),
        };
        if sent.is_err() {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
        }
        sent?;
        self.wake()
    }

    /// Queues a command without waiting (between reactors, which must never
    /// block on each other); a full queue hands it back.
    pub(crate) fn try_send_back(&self, command: Command) -> Result<(), Box<Command>> {
        let bytes = queued_bytes(&command);
        self.queued.fetch_add(bytes, Ordering::AcqRel);
        let result = match self.commands.try_send(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => {
                self.queued.fetch_sub(bytes, Ordering::AcqRel);
                Err(Box::new(c))
            }
        };
        let _ = self.wake();
        result
    }

    /// Asks the reactor to stop: flagged, then queued.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if self.commands.try_send(Command::Stop).is_err() {
            // A full queue: the flag alone is enough once it wakes.
            let _ = self.waker.wake();
        }
        let _ = self.wake();
    }

    fn wake(&self) -> Result<(), NodeError> {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.waker.wake().map_err(|_| NodeError::Stopped)?;
        }
        Ok(())
    }
}

/// Where a session's datagrams go: a transport (on this reactor or on
/// another: a WebSocket connection lives on the reactor that accepted or
/// dialled it) and the peer's address on it.
#[derive(Clone, Debug)]
pub(crate) struct Path {
    /// The reactor the transport lives on.
    pub via: usize,
    /// The transport's index on that reactor.
    pub transport: usize,
    /// The peer's address on that transport.
    pub peer: SocketAddr,
    pub kind: &'static str,
    pub reliable: bool,
    pub max_datagram: Option<usize>,
    pub counters: Arc<TransportCounters>,
}

struct Entry {
    session: Session,
    path: Path,
    connect: Option<Sender<Result<SessionInfo, NodeError>>>,
    /// The earliest deadline this session has in the timer heap.
    timer: Option<Instant>,
    /// Listed in `Shared::live` (established, not closing).
    live: bool,
    /// An incoming handshake, counted in `Core::pending` until it completes
    /// or ends.
    pending: bool,
    /// A new path being validated before the session moves to it.
    probe: Option<PathProbe>,
    /// The application chose the path (`set_path`): the session no longer
    /// follows the peer.
    pinned: bool,
}

/// A ping sent along a path the peer appeared on; its pong validates the
/// path.
struct PathProbe {
    path: Path,
    /// The tokens of the pings sent along it, latest last: a pong to any of
    /// them validates the path (a slow path answers an earlier one).
    tokens: VecDeque<u64>,
    /// When a probe may be sent again if none was answered.
    due: Instant,
    /// Probes sent along it so far.
    sent: u32,
    /// Bytes of authenticated datagrams that came along it, and bytes of
    /// probes sent along it: probes stay within 3× what arrived, so an
    /// unvalidated (possibly forged) address is never an amplifier.
    bytes_in: usize,
    bytes_out: usize,
    /// A pong to one of its pings came back.
    answered: bool,
}

/// Probes sent along one path on the timer alone, unanswered, before it
/// waits for another datagram along the path.
const PROBE_RETRIES: u32 = 3;
/// Tokens remembered per probed path.
const PROBE_TOKENS: usize = 8;
/// A path probe never sends more than this many times what arrived along
/// the path.
const PROBE_AMPLIFICATION: usize = 3;

/// Whether two paths lead to the same place the same way.
fn same_route(a: &Path, b: &Path) -> bool {
    a.peer == b.peer && a.via == b.via && a.transport == b.transport
}

impl Entry {
    fn new(
        session: Session,
        path: Path,
        connect: Option<Sender<Result<SessionInfo, NodeError>>>,
    ) -> Self {
        Entry {
            session,
            path,
            connect,
            timer: None,
            live: false,
            pending: false,
            probe: None,
            pinned: false,
        }
    }
}

/// A datagram waiting for the transports to be free to take it.
struct Outgoing {
    via: usize,
    transport: usize,
    to: SocketAddr,
    datagram: Vec<u8>,
}

/// One reactor. Built on the node's thread, then moved to its own.
pub(crate) struct Reactor {
    index: usize,
    count: usize,
    poll: Poll,
    commands: Receiver<Command>,
    /// Message bytes in `commands` (see [`QUEUED_BYTES_LIMIT`]).
    queued: Arc<AtomicUsize>,
    notified: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    peers: Vec<ReactorHandle>,
    transports: Vec<Box<dyn Transport>>,
    ready: Vec<bool>,
    /// Per reliable transport and peer: datagrams the transport could not
    /// take yet (that peer reads slowly), in order. Other peers of the same
    /// transport are not held up behind them.
    /// Each datagram with whether an in-reactor handler sent it.
    held: HashMap<(usize, SocketAddr), HeldQueue>,
    held_total: HeldCount,
    /// Commands for other reactors that found their queue full: retried in
    /// order each turn (a reactor never blocks on another, and reliable
    /// traffic must not be dropped on the way).
    to_peers: VecDeque<(usize, Command)>,
    /// Sending what in-reactor handlers sent (see [`Reactor::hold`]).
    answering: bool,
    core: Core,
}

/// The reactor's state apart from its transports, so that a transport's
/// receive callback can borrow it.
struct Core {
    index: usize,
    count: usize,
    shared: Arc<Shared>,
    sessions: HashMap<SessionId, Entry>,
    timers: BinaryHeap<Reverse<(Instant, SessionId)>>,
    outbox: Vec<Outgoing>,
    forwards: Vec<(usize, Command)>,
    counters: Vec<Arc<TransportCounters>>,
    kinds: Vec<&'static str>,
    /// Whether each transport is one of a group spread over all reactors
    /// (the UDP socket group), whose sessions are owned by session id; a
    /// transport that lives on this reactor alone owns its sessions here.
    sharded: Vec<bool>,
    max_datagram: Vec<Option<usize>>,
    reliable: Vec<bool>,
    /// Messages from reliable transports that found the hand-off channel
    /// full: kept, in order, and handed over first on the next turns (their
    /// transports are not read meanwhile, so this stays small).
    overflow: VecDeque<NodeEvent>,
    transmits: Transmits,
    rng: ring::rand::SystemRandom,
    /// Incoming handshakes on this reactor waiting for message 3.
    pending: usize,
    /// What in-reactor handlers sent this turn (see [`Replies`]).
    inline_sends: Vec<InlineSend>,
}

impl Reactor {
    /// Builds reactor `index` of `count` with its transports; returns it and
    /// its handle.
    pub(crate) fn new(
        index: usize,
        count: usize,
        shared: Arc<Shared>,
        mut transports: Vec<Box<dyn Transport>>,
    ) -> io::Result<(Reactor, ReactorHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        for (i, t) in transports.iter_mut().enumerate() {
            t.register(poll.registry(), Token(i))?;
        }
        let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
        let notified = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let handle = ReactorHandle {
            commands: tx,
            waker,
            notified: notified.clone(),
            stop: stop.clone(),
            queued: queued.clone(),
        };
        let counters = transports.iter().map(|t| t.counters().clone()).collect();
        let kinds = transports.iter().map(|t| t.kind()).collect();
        let sharded = vec![true; transports.len()];
        let max_datagram = transports.iter().map(|t| t.max_datagram_size()).collect();
        let reliable = transports.iter().map(|t| t.is_reliable()).collect();
        let ready = vec![true; transports.len()];
        Ok((
            Reactor {
                index,
                count,
                poll,
                commands: rx,
                queued,
                notified,
                stop,
                peers: Vec::new(),
                transports,
                ready,
                held: HashMap::new(),
                held_total: HeldCount::default(),
                to_peers: VecDeque::new(),
                answering: false,
                core: Core {
                    index,
                    count,
                    shared,
                    sessions: HashMap::new(),
                    timers: BinaryHeap::new(),
                    outbox: Vec::new(),
                    forwards: Vec::new(),
                    counters,
                    kinds,
                    sharded,
                    max_datagram,
                    reliable,
                    overflow: VecDeque::new(),
                    transmits: Transmits::new(),
                    rng: ring::rand::SystemRandom::new(),
                    pending: 0,
                    inline_sends: Vec::new(),
                },
            },
            handle,
        ))
    }

    /// Gives the reactor the handles of all reactors (itself included), for
    /// forwarding misrouted datagrams.
    pub(crate) fn set_peers(&mut self, peers: Vec<ReactorHandle>) {
        self.peers = peers;
    }

    /// Runs the loop until a `Stop` command.
    pub(crate) fn run(mut self) {
        // However the loop ends (a failed poll, a panic), senders waiting
        // for room must learn that this reactor is gone.
        struct Exit(Arc<AtomicBool>);
        impl Drop for Exit {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _exit = Exit(self.stop.clone());
        let mut events = Events::with_capacity(256);
        let mut busy = true;
        let mut paused = false;
        let mut throttled = false;
        loop {
            let now = Instant::now();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                let transport_timer = self
                    .transports
                    .iter()
                    .filter_map(|t| t.poll_timeout())
                    .min();
                let mut next = match (self.core.next_timer(), transport_timer) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if paused || throttled {
                    // A reliable transport waits for the application to drain
                    // its queue, or for its peer to read: look again shortly.
                    next = Some(next.map_or(now + PAUSE_RECHECK, |t| t.min(now + PAUSE_RECHECK)));
                }
                next.map(|t| t.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    // The poll itself failed: nothing more can run here.
                    break;
                }
            }
            let mut woken = false;
            for ev in events.iter() {
                match ev.token() {
                    WAKER => woken = true,
                    Token(i) => {
                        if let Some(r) = self.ready.get_mut(i) {
                            *r = true;
                        }
                    }
                }
            }
            let now = Instant::now();
            busy = false;
            // Reliable peers reading slowly: take no more sends until they
            // catch up (the application's sends block meanwhile); a stop
            // still gets through.
            throttled = self.held_total.throttles();
            if woken || !self.commands.is_empty() {
                self.notified.store(false, Ordering::Release);
                match self.drain_commands(now, throttled) {
                    Drained::Stop => break,
                    // More wait: come back without sleeping, after this
                    // turn's datagrams have gone out.
                    Drained::More => busy = true,
                    Drained::All => {}
                }
            }
            if self.stop.load(Ordering::Acquire) && self.commands.is_empty() {
                // Stopped while the queue was too full to take the command.
                break;
            }
            paused = false;
            // A throttled reactor keeps reading (its application's channel
            // paces that): two nodes that both stopped reading while their
            // own writes wait would wait on each other for ever. Only an
            // in-reactor handler's reactor stops (below), since nothing else
            // would hold its answers back.
            let full = !self.core.drain_overflow() || {
                let crowded =
                    |c: &Sender<NodeEvent>| c.capacity().is_some_and(|cap| c.len() * 4 >= cap * 3);
                crowded(&self.core.shared.events) || crowded(&self.core.shared.work)
            };
            // An in-reactor handler is the application: while too many of
            // its answers wait for slow peers, nothing more is read for it
            // to answer (a datagram the kernel then drops is lost as any
            // datagram may be). Only its own answers count: a node whose
            // application's sends wait keeps reading, or two nodes could
            // each wait for the other to read.
            let answers_wait = self.held_total.stops_answering();
            for i in 0..self.transports.len() {
                if !self.ready[i] {
                    continue;
                }
                if answers_wait || (full && self.transports[i].is_reliable()) {
                    // Backpressure: leave the data in the kernel, whose TCP
                    // window then slows the sender; nothing is dropped.
                    paused = true;
                    continue;
                }
                let core = &mut self.core;
                let got = self.transports[i]
                    .recv(&mut |from, datagram| core.on_datagram(i, from, datagram, now));
                match got {
                    Ok(n) if n > 0 => busy = true,
                    Ok(_) => self.ready[i] = false,
                    Err(e) => {
                        tracing::warn!(transport = self.core.kinds[i], error = %e, "receive failed");
                        TransportCounters::add(&self.core.counters[i].errors_receive, 1);
                        self.ready[i] = false;
                    }
                }
            }
            let now = Instant::now();
            for t in &mut self.transports {
                // A reliable transport that is not being read (the
                // application is behind) must not take its silence for a
                // dead peer: its timers wait with it.
                if paused && t.is_reliable() {
                    continue;
                }
                if t.poll_timeout().is_some_and(|d| d <= now) {
                    t.handle_timeout(now);
                }
            }
            self.core.run_timers(now);
            self.run_inline(now);
            self.forward();
            self.flush();
        }
        self.shutdown();
    }

    /// Handles up to [`COMMANDS_PER_TURN`] queued commands.
    /// While `throttled`, only a `Stop` is taken (sends wait in the queue).
    fn drain_commands(&mut self, now: Instant, throttled: bool) -> Drained {
        if throttled {
            // A stop is also flagged beside the queue, so it is seen without
            // taking the sends queued before it.
            return if self.stop.load(Ordering::Acquire) {
                Drained::Stop
            } else {
                Drained::All
            };
        }
        // Consecutive plain sends to one session and stream coalesce: the
        // messages that queued while the reactor was busy share sealed
        // frames (one seal, one datagram or WebSocket message, for many
        // small messages). Nothing waits for company: only what is already
        // queued is coalesced.
        let mut batch: Option<Coalescing> = None;
        let result = self.drain_into(now, &mut batch);
        self.send_batch(&mut batch, now);
        result
    }

    /// Sends a coalescing batch, if any, and recycles its buffers.
    fn send_batch(&mut self, batch: &mut Option<Coalescing>, now: Instant) {
        if let Some((session, stream_id, messages)) = batch.take() {
            self.send_coalesced(session, stream_id, messages, now);
        }
    }

    /// Adds a plain DATA send to the coalescing batch, sending the batch
    /// first when it is for another session or stream. A message too large
    /// to share a frame with one of its size goes at once, after the batch,
    /// sealed in place.
    fn coalesce(
        &mut self,
        batch: &mut Option<Coalescing>,
        session: SessionId,
        stream_id: u32,
        payload: Payload,
        now: Instant,
    ) {
        let frame_limit = self
            .core
            .sessions
            .get(&session)
            .and_then(|e| e.path.max_datagram)
            .unwrap_or(COALESCE_LIMIT)
            .min(MAX_PAYLOAD_LEN as usize);
        // Could it share a frame with a message of its own size? If not,
        // coalescing would send it alone anyway, after a copy.
        let alone =
            DATA_OVERHEAD + 2 * (BATCH_RECORD_OVERHEAD + payload.message().len()) > frame_limit;
        if alone {
            self.send_batch(batch, now);
            let _ = self.send_payload(session, stream_id, FrameType::Data, payload, now);
            return;
        }
        match batch {
            Some((s, st, list)) if *s == session && *st == stream_id => list.push(payload),
            _ => {
                self.send_batch(batch, now);
                *batch = Some((session, stream_id, vec![payload]));
            }
        }
    }

    /// Seals and queues what in-reactor handlers sent this turn: plain sends
    /// to one session coalesce as the application's do; a session held by
    /// another reactor is handed to it.
    fn run_inline(&mut self, now: Instant) {
        if self.core.inline_sends.is_empty() {
            return;
        }
        let mut sends = std::mem::take(&mut self.core.inline_sends);
        self.answering = true;
        let mut batch: Option<Coalescing> = None;
        for send in sends.drain(..) {
            let InlineSend {
                session,
                stream_id,
                frame_type,
                payload,
            } = send;
            if self.core.sessions.contains_key(&session) {
                if frame_type == FrameType::Data {
                    self.coalesce(&mut batch, session, stream_id, payload, now);
                    continue;
                }
                self.send_batch(&mut batch, now);
                if let Err(e) = self.send_payload(session, stream_id, frame_type, payload, now) {
                    tracing::debug!(session = %session, error = %e, "in-reactor send refused");
                }
                continue;
            }
            self.send_batch(&mut batch, now);
            match self.core.shared.holder_of(session) {
                Some(r) if r != self.index => self.hand_to_peer(
                    r,
                    Command::Send {
                        session,
                        stream_id,
                        frame_type,
                        payload,
                        reply: None,
                    },
                ),
                _ => {
                    tracing::debug!(session = %session, "in-reactor send to a session that closed");
                    self.core.shared.pool.recycle(payload);
                }
            }
        }
        self.send_batch(&mut batch, now);
        self.answering = false;
        // Keep the allocation; a handler run by the sends above (none does
        // today) would have queued into a fresh vector.
        sends.append(&mut self.core.inline_sends);
        self.core.inline_sends = sends;
    }

    fn drain_into(&mut self, now: Instant, batch: &mut Option<Coalescing>) -> Drained {
        for _ in 0..COMMANDS_PER_TURN {
            let Ok(cmd) = self.commands.try_recv() else {
                return Drained::All;
            };
            let bytes = queued_bytes(&cmd);
            if bytes > 0 {
                self.queued.fetch_sub(bytes, Ordering::AcqRel);
            }
            if let Command::Send {
                session,
                stream_id,
                frame_type: FrameType::Data,
                payload,
                reply: None,
            } = cmd
            {
                self.coalesce(batch, session, stream_id, payload, now);
                continue;
            }
            self.send_batch(batch, now);
            match cmd {
                Command::Stop => return Drained::Stop,
                Command::Connect {
                    transport,
                    peer,
                    target,
                    reply,
                } => {
                    let peer = match (target, self.transports.get_mut(transport)) {
                        (_, None) => {
                            let _ =
                                reply.send(Err(NodeError::Transport("no such transport".into())));
                            continue;
                        }
                        (None, Some(_)) => peer,
                        (Some(target), Some(t)) => match t.open(&target, peer) {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = reply.send(Err(NodeError::Transport(e.to_string())));
                                continue;
                            }
                        },
                    };
                    self.core.connect(transport, peer, reply, now)
                }
                Command::Send {
                    session,
                    stream_id,
                    frame_type,
                    payload,
                    reply,
                } => {
                    let r = self.send_payload(session, stream_id, frame_type, payload, now);
                    if let Some(reply) = reply {
                        let _ = reply.send(r);
                    }
                }
                Command::Close {
                    session,
                    code,
                    reason,
                } => {
                    if let Some(e) = self.core.sessions.get_mut(&session) {
                        e.session.close(now, code, &reason);
                    }
                    self.core.after_activity(session, now);
                }
                Command::SendMany {
                    sessions,
                    stream_id,
                    frame_type,
                    payload,
                    reply,
                } => {
                    // One seal per session; the datagrams leave together in
                    // this turn's batched flush.
                    let results = sessions
                        .into_iter()
                        .map(|id| (id, self.send(id, stream_id, frame_type, &payload, now)))
                        .collect();
                    let _ = reply.send(results);
                }
                Command::SessionStats { session, reply } => {
                    let _ = reply.send(self.core.sessions.get(&session).map(|e| e.session.stats()));
                }
                Command::Forward {
                    transport,
                    from,
                    path,
                    mut datagram,
                } => {
                    match path {
                        Some(path) => self.core.on_datagram_via(*path, &mut datagram, now),
                        // From a sibling socket of the group: this reactor
                        // owns the id, but the session may be held by a third
                        // one (it arrived over another transport).
                        None => self.core.on_datagram(transport, from, &mut datagram, now),
                    }
                }
                Command::PathSend {
                    transport,
                    to,
                    datagrams,
                } => {
                    for d in datagrams {
                        if self.transport_send(transport, to, &d).is_err() {
                            if let Some(c) = self.core.counters.get(transport) {
                                TransportCounters::add(&c.errors_send, 1);
                            }
                        }
                    }
                }
                Command::SetPath {
                    session,
                    path,
                    reply,
                } => {
                    let r = self.core.set_path(session, *path, now);
                    let _ = reply.send(r);
                }
                Command::OpenPath {
                    transport,
                    target,
                    addr,
                    reply,
                } => {
                    let r = match self.transports.get_mut(transport) {
                        None => Err(NodeError::Transport("no such transport".into())),
                        Some(t) => t
                            .open(&target, addr)
                            .map(|peer| self.core.local_path(transport, peer))
                            .map_err(|e| NodeError::Transport(e.to_string())),
                    };
                    let _ = reply.send(r);
                }
                Command::AddTransport { transport, reply } => {
                    let _ = reply.send(self.add_transport(transport));
                }
                Command::TransportStats { transport, reply } => {
                    let _ = reply.send(self.core.counters.get(transport).map(|c| c.snapshot()));
                }
            }
        }
        if self.commands.is_empty() {
            Drained::All
        } else {
            Drained::More
        }
    }

    /// Adds a transport that lives on this reactor alone.
    fn add_transport(&mut self, mut transport: Box<dyn Transport>) -> Result<usize, NodeError> {
        let index = self.transports.len();
        transport
            .register(self.poll.registry(), Token(index))
            .map_err(|e| NodeError::Transport(format!("registering the transport: {e}")))?;
        self.core.counters.push(transport.counters().clone());
        self.core.kinds.push(transport.kind());
        self.core.sharded.push(false);
        self.core.max_datagram.push(transport.max_datagram_size());
        self.core.reliable.push(transport.is_reliable());
        self.ready.push(true);
        self.transports.push(transport);
        Ok(index)
    }

    /// Sends queued messages of one session and stream, coalesced.
    fn send_coalesced(
        &mut self,
        id: SessionId,
        stream_id: u32,
        mut messages: Vec<Payload>,
        now: Instant,
    ) {
        if messages.len() == 1 {
            if let Some(only) = messages.pop() {
                let _ = self.send_payload(id, stream_id, FrameType::Data, only, now);
            }
            return;
        }
        let Some(entry) = self.core.sessions.get_mut(&id) else {
            self.core.shared.pool.recycle_all(messages);
            return;
        };
        let refs: Vec<&[u8]> = messages.iter().map(Payload::message).collect();
        self.core.transmits.clear();
        let sealed = entry.session.send_batch(
            now,
            stream_id,
            &refs,
            COALESCE_LIMIT,
            &mut self.core.transmits,
        );
        drop(refs);
        self.core.shared.pool.recycle_all(messages);
        if let Err(e) = sealed {
            tracing::debug!(session = %id, error = %e, "coalesced send refused");
            TransportCounters::add(&entry.path.counters.errors_send, 1);
            return;
        }
        let path = entry.path.clone();
        if self.send_transmits(&path).is_err() {
            TransportCounters::add(&path.counters.errors_send, 1);
        }
        self.core.after_activity(id, now);
    }

    /// [`send`](Self::send) for a message in a pooled buffer: sealed where
    /// it lies when it goes as one frame; the buffer then goes back to the
    /// pool.
    fn send_payload(
        &mut self,
        id: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: Payload,
        now: Instant,
    ) -> Result<(), NodeError> {
        let core = &mut self.core;
        let Some(entry) = core.sessions.get_mut(&id) else {
            core.shared.pool.recycle(payload);
            return Err(NodeError::UnknownSession(id));
        };
        core.transmits.clear();
        let mut buf = payload.0;
        let sealed =
            entry
                .session
                .send_in_place(now, frame_type, stream_id, &mut buf, &mut core.transmits);
        core.shared.pool.give(buf);
        if let Err(e) = sealed {
            TransportCounters::add(&entry.path.counters.errors_send, 1);
            return Err(e.into());
        }
        let path = entry.path.clone();
        let result = self.send_transmits(&path);
        self.core.after_activity(id, now);
        result
    }

    fn send(
        &mut self,
        id: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), NodeError> {
        let core = &mut self.core;
        let entry = core
            .sessions
            .get_mut(&id)
            .ok_or(NodeError::UnknownSession(id))?;
        core.transmits.clear();
        entry
            .session
            .send_typed(now, frame_type, stream_id, payload, &mut core.transmits)?;
        let path = entry.path.clone();
        let result = self.send_transmits(&path);
        self.core.after_activity(id, now);
        result
    }

    /// Sends what `core.transmits` holds along `path`: here, or through the
    /// reactor the path's transport lives on.
    fn send_transmits(&mut self, path: &Path) -> Result<(), NodeError> {
        let mut transmits = std::mem::take(&mut self.core.transmits);
        let mut result = Ok(());
        let reliable = self.core.reliable.get(path.transport).copied() == Some(true);
        if path.via == self.index && reliable && transmits.len() == 1 {
            // One whole message for a stream transport: its buffer can go
            // to the transport as it is (the WebSocket transport frames it
            // without a copy), another coming back in its place.
            if let Err(e) = self.transport_send_owned(path.transport, path.peer, &mut transmits.buf)
            {
                result = Err(NodeError::Transport(e.to_string()));
            }
            transmits.clear();
        } else if path.via == self.index {
            for d in transmits.iter() {
                if let Err(e) = self.transport_send(path.transport, path.peer, d) {
                    result = Err(NodeError::Transport(e.to_string()));
                    break;
                }
            }
        } else {
            let datagrams = transmits.iter().map(|d| d.to_vec()).collect();
            let cmd = Command::PathSend {
                transport: path.transport,
                to: path.peer,
                datagrams,
            };
            self.hand_to_peer(path.via, cmd);
        }
        self.core.transmits = transmits;
        result
    }

    /// Hands a datagram to a transport. A reliable transport that cannot
    /// take it now (its write buffer is full: the peer reads slowly) gets it
    /// later, in order: it waits in `held`, and while too much waits, the
    /// reactor stops taking commands, so `Node::send` blocks — backpressure
    /// reaches the application and nothing is dropped.
    fn transport_send(
        &mut self,
        ti: usize,
        to: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), TransportError> {
        let Some(t) = self.transports.get_mut(ti) else {
            return Err(TransportError::io(
                "sending",
                io::ErrorKind::NotFound.into(),
            ));
        };
        if !self.core.reliable[ti] {
            return t.send(to, datagram);
        }
        if self.held.contains_key(&(ti, to)) {
            // Behind what waits for this peer already: in order.
            return self.hold(ti, to, datagram.to_vec());
        }
        match t.send(to, datagram) {
            Err(TransportError::QueueFull(_)) => self.hold(ti, to, datagram.to_vec()),
            other => other,
        }
    }

    /// [`transport_send`](Self::transport_send) for a reliable transport
    /// that may take the datagram's buffer ([`Transport::send_owned`]).
    fn transport_send_owned(
        &mut self,
        ti: usize,
        to: SocketAddr,
        datagram: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        if self.held.contains_key(&(ti, to)) {
            // Behind what waits for this peer already: in order.
            return self.hold(ti, to, std::mem::take(datagram));
        }
        let Some(t) = self.transports.get_mut(ti) else {
            return Err(TransportError::io(
                "sending",
                io::ErrorKind::NotFound.into(),
            ));
        };
        match t.send_owned(to, datagram) {
            // Refused, the transport gave the datagram back: hold it.
            Err(TransportError::QueueFull(_)) => self.hold(ti, to, std::mem::take(datagram)),
            other => other,
        }
    }

    /// Queues a datagram behind a slow peer's others. A peer that has not
    /// read [`PEER_HELD_LIMIT`] datagrams is not reading at all: what is
    /// beyond is dropped, counted and logged rather than held without bound.
    ///
    /// In-reactor handlers' answers (`self.answering`) are always held: a
    /// handler cannot wait, and reading pauses while they wait, so what one
    /// turn read bounds them.
    fn hold(&mut self, ti: usize, to: SocketAddr, datagram: Vec<u8>) -> Result<(), TransportError> {
        let answering = self.answering;
        let queue = self.held.entry((ti, to)).or_default();
        if queue.len() >= PEER_HELD_LIMIT && !answering {
            TransportCounters::add(&self.core.counters[ti].packets_dropped, 1);
            tracing::warn!(peer = %to, held = queue.len(), "peer is not reading: datagram dropped");
            return Err(TransportError::QueueFull(queue.len()));
        }
        let total = &mut self.held_total;
        total.frames += 1;
        total.bytes += datagram.len();
        if answering {
            total.answers += 1;
            total.answer_bytes += datagram.len();
        }
        queue.push_back((datagram, answering));
        Ok(())
    }

    /// Offers held datagrams to their transports again, in order per peer.
    fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let keys: Vec<(usize, SocketAddr)> = self.held.keys().copied().collect();
        let mut flushed = vec![false; self.transports.len()];
        for (ti, to) in keys {
            let Some(t) = self.transports.get_mut(ti) else {
                continue;
            };
            if !flushed[ti] {
                let _ = t.flush();
                flushed[ti] = true;
            }
            let Some(queue) = self.held.get_mut(&(ti, to)) else {
                continue;
            };
            while let Some((mut d, answer)) = queue.pop_front() {
                let len = d.len();
                match t.send_owned(to, &mut d) {
                    Err(TransportError::QueueFull(_)) => {
                        // Given back: first again next time.
                        queue.push_front((d, answer));
                        break;
                    }
                    Ok(()) => {}
                    Err(_) => TransportCounters::add(&self.core.counters[ti].errors_send, 1),
                }
                let total = &mut self.held_total;
                total.frames -= 1;
                total.bytes -= len;
                if answer {
                    total.answers -= 1;
                    total.answer_bytes -= len;
                }
            }
            if queue.is_empty() {
                self.held.remove(&(ti, to));
            }
        }
    }

    /// Hands a command to another reactor without waiting; what does not fit
    /// now waits here, in order, and goes first next turn.
    fn hand_to_peer(&mut self, reactor: usize, cmd: Command) {
        if !self.to_peers.is_empty() {
            if self.to_peers.len() >= TO_PEERS_LIMIT {
                // The other reactor has been stuck for a long while: bound
                // the memory rather than wait (waiting could deadlock two
                // reactors that each wait on the other).
                tracing::warn!(reactor, "reactor hand-off queue full: command dropped");
                return;
            }
            self.to_peers.push_back((reactor, cmd));
            return;
        }
        if let Some(cmd) = self.try_to_peer(reactor, cmd) {
            self.to_peers.push_back((reactor, cmd));
        }
    }

    /// Returns the command if the reactor's queue is full.
    fn try_to_peer(&self, reactor: usize, cmd: Command) -> Option<Command> {
        let peer = self.peers.get(reactor)?;
        peer.try_send_back(cmd).err().map(|c| *c)
    }

    fn retry_to_peers(&mut self) {
        while let Some((reactor, cmd)) = self.to_peers.pop_front() {
            if let Some(cmd) = self.try_to_peer(reactor, cmd) {
                self.to_peers.push_front((reactor, cmd));
                return;
            }
        }
    }

    fn forward(&mut self) {
        self.retry_to_peers();
        let forwards: Vec<(usize, Command)> = self.core.forwards.drain(..).collect();
        for (owner, cmd) in forwards {
            self.hand_to_peer(owner, cmd);
        }
    }

    fn flush(&mut self) {
        self.release_held();
        let outbox = std::mem::take(&mut self.core.outbox);
        for o in outbox {
            if o.via == self.index {
                if self.transport_send(o.transport, o.to, &o.datagram).is_err() {
                    TransportCounters::add(&self.core.counters[o.transport].errors_send, 1);
                }
            } else {
                let cmd = Command::PathSend {
                    transport: o.transport,
                    to: o.to,
                    datagrams: vec![o.datagram],
                };
                self.hand_to_peer(o.via, cmd);
            }
        }
        for (i, t) in self.transports.iter_mut().enumerate() {
            if t.flush().is_err() {
                TransportCounters::add(&self.core.counters[i].errors_send, 1);
            }
        }
    }

    /// Closes every session with a CLOSE frame, sends what is queued, and
    /// releases the transports.
    fn shutdown(&mut self) {
        let now = Instant::now();
        let ids: Vec<SessionId> = self.core.sessions.keys().copied().collect();
        for id in &ids {
            if let Some(e) = self.core.sessions.get_mut(id) {
                e.session.close(now, close_code::SHUTDOWN, "node stopping");
            }
            self.core.after_activity(*id, now);
        }
        self.flush();
        // Give a full socket buffer a moment to take the CLOSE frames.
        let deadline = now + Duration::from_millis(100);
        while self.transports.iter().any(|t| t.wants_write()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            self.flush();
        }
        for e in self.core.sessions.values_mut() {
            if let Some(reply) = e.connect.take() {
                let _ = reply.send(Err(NodeError::Stopped));
            }
        }
        let n = self.core.sessions.len();
        self.core.shared.sessions.fetch_sub(n, Ordering::Relaxed);
        let pending = std::mem::take(&mut self.core.pending);
        self.core
            .shared
            .pending
            .fetch_sub(pending, Ordering::Relaxed);
        for id in std::mem::take(&mut self.core.sessions).into_keys() {
            set_live(&self.core.shared, self.index, id, false);
        }
        for t in &mut self.transports {
            let _ = t.deregister(self.poll.registry());
            t.counters().set_stopped();
        }
        let _ = (self.index, self.count);
    }
}

impl Core {
    /// The reactor that owns `id`.
    fn owner(&self, id: SessionId) -> usize {
        (id.0 & 0xFF) as usize % self.count
    }

    /// A fresh random session id owned by this reactor and unused here.
    fn new_session_id(&self) -> Option<SessionId> {
        use ring::rand::SecureRandom;
        for _ in 0..16 {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b).ok()?;
            let raw = u64::from_be_bytes(b);
            // Low byte = k * count + index, with k uniform: byte % count == index.
            let slots = (256 / self.count) as u64;
            let low = (raw & 0xFF) % slots * self.count as u64 + self.index as u64;
            let id = SessionId((raw & !0xFF) | low);
            if !self.sessions.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    fn connect(
        &mut self,
        transport: usize,
        peer: SocketAddr,
        reply: Sender<Result<SessionInfo, NodeError>>,
        now: Instant,
    ) {
        if self.sessions.len() >= self.shared.max_sessions_per_reactor {
            let _ = reply.send(Err(NodeError::TooManySessions(self.sessions.len())));
            return;
        }
        let Some(id) = self.new_session_id() else {
            let _ = reply.send(Err(NodeError::Transport(
                "no randomness for a session id".into(),
            )));
            return;
        };
        let path = self.local_path(transport, peer);
        let mut config = self.shared.session_config.clone();
        config.max_datagram_size = path.max_datagram;
        match Session::connect_with_budget(
            config,
            &self.shared.identity,
            &self.shared.network,
            id,
            now,
            Some(self.shared.budget.clone()),
        ) {
            Ok(session) => {
                self.insert(id, Entry::new(session, path, Some(reply)));
                self.after_activity(id, now);
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn max_datagram(&self, transport: usize) -> Option<usize> {
        self.max_datagram.get(transport).copied().flatten()
    }

    fn insert(&mut self, id: SessionId, mut entry: Entry) {
        entry.session.set_payload_source(self.shared.pool.clone());
        self.sessions.insert(id, entry);
        self.shared.sessions.fetch_add(1, Ordering::Relaxed);
    }

    fn dropped(&self, transport: usize) {
        TransportCounters::add(&self.counters[transport].packets_dropped, 1);
    }

    /// The path to `peer` over this reactor's transport `transport`.
    fn local_path(&self, transport: usize, peer: SocketAddr) -> Path {
        Path {
            via: self.index,
            transport,
            peer,
            kind: self.kinds[transport],
            reliable: self.reliable[transport],
            max_datagram: self.max_datagram(transport),
            counters: self.counters[transport].clone(),
        }
    }

    /// The reactor holding established session `id`, if another one does.
    fn holder(&self, id: SessionId) -> Option<usize> {
        self.shared.holder_of(id).filter(|&r| r != self.index)
    }

    fn on_datagram(
        &mut self,
        transport: usize,
        from: SocketAddr,
        datagram: &mut [u8],
        now: Instant,
    ) {
        let header = match Header::decode(datagram) {
            Ok(h) => h,
            Err(_) => return self.dropped(transport),
        };
        let id = header.session_id;
        if !self.sessions.contains_key(&id) {
            let owner = self.owner(id);
            if self.sharded[transport] && owner != self.index {
                // A socket of the group that the steering program did not
                // pick for this session: hand it to its owner, who answers
                // from its own socket of the same group.
                self.forwards.push((
                    owner,
                    Command::Forward {
                        transport,
                        from,
                        path: None,
                        datagram: datagram.to_vec(),
                    },
                ));
                return;
            }
            // A message 1, bare or wrapped in a cookie echo.
            let first_message = header.packet_number == 1
                && matches!(header.frame_type, FrameType::Handshake | FrameType::Auth);
            if first_message && self.holder(id).is_some() {
                // An id already in use on this node: a replay, or a
                // collision. It must not shadow the live session here.
                return self.dropped(transport);
            }
            if !first_message {
                if let Some(holder) = self.holder(id) {
                    // A session of another reactor arriving over a transport
                    // of this one (it moved here, e.g. from UDP to a
                    // WebSocket connection): hand it over with the way back.
                    let path = self.local_path(transport, from);
                    self.forwards.push((
                        holder,
                        Command::Forward {
                            transport,
                            from,
                            path: Some(Box::new(path)),
                            datagram: datagram.to_vec(),
                        },
                    ));
                    return;
                }
            }
        }
        let path = self.local_path(transport, from);
        self.on_datagram_via(path, datagram, now);
    }

    /// A datagram that arrived along `path` (here, or on another reactor).
    fn on_datagram_via(&mut self, path: Path, datagram: &mut [u8], now: Instant) {
        let header = match Header::decode(datagram) {
            Ok(h) => h,
            Err(_) => return TransportCounters::add(&path.counters.packets_dropped, 1),
        };
        let id = header.session_id;
        if let Some(entry) = self.sessions.get_mut(&id) {
            let result = entry.session.handle_datagram(now, datagram);
            // A pong to the path probe validates its path, whichever path
            // the pong came back on (as QUIC's PATH_RESPONSE).
            if let Some(p) = entry.probe.as_mut() {
                p.answered |= entry
                    .session
                    .last_pong()
                    .is_some_and(|t| p.tokens.contains(&t));
            }
            match result {
                // The session id, not the address, finds the session: a
                // datagram that authenticated along a new path (a new address
                // after NAT rebinding, or another transport) means the peer
                // moved. Only proof moves it: a replayed or forged datagram
                // from elsewhere must not redirect the session.
                //
                // And only a path that proved it reaches the peer: a copy of
                // a genuine datagram sent first from another (possibly
                // forged) address, or over the copier's own WebSocket
                // connection, authenticates too. So a new path gets a ping
                // along it (a path probe), and the session moves once that
                // ping's pong is back and a newest datagram arrives along the
                // path; until then nothing else is sent there.
                //
                // Only the responder follows, and only while the application
                // has not chosen the path itself (`set_path`): the initiator
                // is the side whose address changes (NAT, roaming, a move to
                // another transport), and two sides that both followed
                // would chase each other's late datagrams between paths.
                Ok(true) => {
                    if !same_route(&entry.path, &path)
                        && entry.session.is_established()
                        && entry.session.role() == Role::Responder
                        && !entry.pinned
                    {
                        let answered = entry
                            .probe
                            .as_ref()
                            .is_some_and(|p| p.answered && same_route(&p.path, &path));
                        if answered {
                            tracing::info!(
                                session = %id,
                                from = %entry.path.peer,
                                to = %path.peer,
                                transport = path.kind,
                                "session path changed"
                            );
                            let _ = entry.session.set_max_datagram_size(path.max_datagram);
                            entry.path = path;
                            entry.probe = None;
                        } else {
                            // Credit the path with what came along it (a new
                            // path starts afresh), then probe if one is due.
                            let len = datagram.len();
                            match entry.probe.as_mut() {
                                Some(p) if same_route(&p.path, &path) => p.bytes_in += len,
                                _ => {
                                    entry.probe = Some(PathProbe {
                                        path,
                                        tokens: VecDeque::new(),
                                        due: now,
                                        sent: 0,
                                        bytes_in: len,
                                        bytes_out: 0,
                                        answered: false,
                                    })
                                }
                            }
                            if entry.probe.as_ref().is_some_and(|p| now >= p.due) {
                                self.probe(id, now);
                            }
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::trace!(session = %id, from = %path.peer, error = %e, "datagram dropped");
                    TransportCounters::add(&path.counters.packets_dropped, 1);
                }
            }
            self.after_activity(id, now);
            return;
        }
        self.on_new_session(header, path, datagram, now);
    }

    /// A datagram for no session here: a message 1, a cookie echo, or
    /// something to drop. No state is kept for anything but a message 1 that
    /// authenticates, and under load only for one whose sender proved it
    /// receives at its address.
    fn on_new_session(&mut self, header: Header, path: Path, datagram: &[u8], now: Instant) {
        use crate::crypto::cookie::{self, CookieError};
        let drop = |path: &Path| TransportCounters::add(&path.counters.packets_dropped, 1);
        let refused = |shared: &Shared, path: &Path| {
            shared.handshakes_refused.fetch_add(1, Ordering::Relaxed);
            drop(path);
        };
        let msg1 = match (header.frame_type, header.packet_number) {
            (FrameType::Handshake, 1) => datagram,
            (FrameType::Auth, cookie::ECHO_PN) => {
                let epoch = self.cookie_epoch(now);
                match self.shared.cookie_key.open_echo(epoch, path.peer, datagram) {
                    Ok(msg1) => msg1,
                    Err(CookieError::Invalid) => {
                        // A cookie that expired, or was made for the address
                        // the client had before its NAT moved it: a fresh
                        // challenge, so that it can try again — for a genuine
                        // message 1 only.
                        let room = self.shared.accepting.load(Ordering::Relaxed)
                            && self.sessions.len() < self.shared.max_sessions_per_reactor
                            && self.pending < self.shared.max_pending_per_reactor;
                        if let Ok((_, _, inner)) = cookie::parse_echo(datagram) {
                            if room && self.genuine_msg1(inner) {
                                self.challenge(&path, header.session_id, now);
                            }
                        }
                        tracing::debug!(from = %path.peer, "cookie echo with a stale cookie");
                        return refused(&self.shared, &path);
                    }
                    Err(e) => {
                        tracing::debug!(from = %path.peer, error = %e, "cookie echo refused");
                        return refused(&self.shared, &path);
                    }
                }
            }
            _ => return drop(&path),
        };
        // Whatever the load, a message 1 must authenticate under the
        // network's PSK before anything else: a check without any
        // Diffie-Hellman (about 2 µs against 36 µs for snow to refuse it),
        // so that outsiders cost little and get silence.
        if !self.genuine_msg1(msg1) {
            return drop(&path);
        }
        if !self.shared.accepting.load(Ordering::Relaxed)
            || self.sessions.len() >= self.shared.max_sessions_per_reactor
        {
            return drop(&path);
        }
        if self.pending >= self.shared.max_pending_per_reactor {
            tracing::debug!(from = %path.peer, pending = self.pending, "pending handshake limit reached");
            return refused(&self.shared, &path);
        }
        let validated = header.frame_type == FrameType::Auth;
        // Reliable transports (a WebSocket connection, after TCP's own
        // handshake) have already proven the address.
        if !validated && !path.reliable && self.pending >= self.shared.cookie_threshold_per_reactor
        {
            // Under load: no state, and a challenge a third the size of the
            // message 1 that provoked it (which authenticated, above).
            return self.challenge(&path, header.session_id, now);
        }
        let mut config = self.shared.session_config.clone();
        config.max_datagram_size = path.max_datagram;
        match Session::accept_with_budget(
            config,
            &self.shared.identity,
            &self.shared.network,
            msg1,
            now,
            Some(self.shared.budget.clone()),
        ) {
            Ok(session) => {
                let id = session.id();
                let mut entry = Entry::new(session, path, None);
                entry.pending = true;
                self.pending += 1;
                self.shared.pending.fetch_add(1, Ordering::Relaxed);
                self.insert(id, entry);
                self.after_activity(id, now);
            }
            Err(e) => {
                tracing::debug!(from = %path.peer, error = %e, "handshake refused");
                drop(&path);
            }
        }
    }

    /// Whether `datagram` is a message 1 of this network: the right length,
    /// and authenticated under the network's PSK.
    fn genuine_msg1(&self, datagram: &[u8]) -> bool {
        use crate::crypto::handshake::MSG1_LEN;
        datagram.len() == crate::frame::HEADER_LEN + MSG1_LEN
            && self.shared.msg1_check.verify(
                &datagram[..crate::frame::HEADER_LEN],
                &datagram[crate::frame::HEADER_LEN..],
            )
    }

    /// Sends a cookie challenge for `session` to the source of `path`.
    fn challenge(&mut self, path: &Path, session: SessionId, now: Instant) {
        let epoch = self.cookie_epoch(now);
        let challenge = self.shared.cookie_key.challenge(epoch, session, path.peer);
        self.shared
            .cookie_challenges
            .fetch_add(1, Ordering::Relaxed);
        self.outbox.push(Outgoing {
            via: path.via,
            transport: path.transport,
            to: path.peer,
            datagram: challenge.to_vec(),
        });
    }

    /// Sends a path probe for session `id` along `path`: a ping whose pong
    /// validates the path. The only thing sent on an unvalidated path; at
    /// most one per datagram that arrived along it, plus a few on the timer.
    fn probe(&mut self, id: SessionId, now: Instant) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(p) = entry.probe.as_mut() else {
            return;
        };
        // A ping is a fixed 54 bytes: check the budget before sealing one.
        let ping_len = crate::frame::HEADER_LEN + 9 + crate::frame::TAG_LEN;
        if p.bytes_out + ping_len > PROBE_AMPLIFICATION * p.bytes_in {
            return;
        }
        let Some((token, datagram)) = entry.session.path_probe(now) else {
            return;
        };
        tracing::debug!(session = %id, to = %p.path.peer, sent = p.sent, "validating a new path");
        // Backs off like the handshake, from the session's own estimate of
        // the round trip (at least initial_rto), doubling per probe.
        let config = entry.session.config().initial_rto;
        let rto = entry
            .session
            .rtt()
            .smoothed
            .map_or(config, |s| (s * 2).max(config));
        p.due = now + rto * (1 << p.sent.min(6));
        p.sent += 1;
        p.bytes_out += datagram.len();
        if p.tokens.len() == PROBE_TOKENS {
            p.tokens.pop_front();
        }
        p.tokens.push_back(token);
        self.outbox.push(Outgoing {
            via: p.path.via,
            transport: p.path.transport,
            to: p.path.peer,
            datagram,
        });
        self.timers.push(Reverse((p.due, id)));
    }

    fn cookie_epoch(&self, now: Instant) -> u64 {
        crate::crypto::cookie::epoch_of(now.saturating_duration_since(self.shared.started))
    }

    /// Moves a session to `path` (the application asked), and pings along
    /// it at once so that the peer learns the new path.
    fn set_path(&mut self, id: SessionId, path: Path, now: Instant) -> Result<(), NodeError> {
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(NodeError::UnknownSession(id))?;
        entry
            .session
            .set_max_datagram_size(path.max_datagram)
            .map_err(|e| NodeError::Session(e.into()))?;
        tracing::info!(session = %id, to = %path.peer, transport = path.kind, "session moved");
        entry.path = path;
        // The application chose this path: from now on the session stays
        // on it, whatever path the peer's datagrams take.
        entry.probe = None;
        entry.pinned = true;
        entry.session.send_ping(now);
        self.after_activity(id, now);
        Ok(())
    }

    /// After anything touched a session: queue its datagrams, deliver its
    /// events, re-arm its timer, and forget it once closed.
    fn after_activity(&mut self, id: SessionId, now: Instant) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        while let Some(d) = entry.session.poll_transmit() {
            self.outbox.push(Outgoing {
                via: entry.path.via,
                transport: entry.path.transport,
                to: entry.path.peer,
                datagram: d,
            });
        }
        let mut closed = false;
        while let Some(event) = entry.session.poll_event() {
            match event {
                Event::Established { peer, .. } => {
                    let info = SessionInfo {
                        id,
                        peer_node: peer,
                        peer_addr: entry.path.peer,
                        transport: entry.path.kind,
                        initiator: entry.connect.is_some(),
                    };
                    set_live(&self.shared, self.index, id, true);
                    entry.live = true;
                    tracing::info!(
                        session = %id,
                        peer_node = ?peer,
                        peer_addr = %entry.path.peer,
                        transport = entry.path.kind,
                        initiator = info.initiator,
                        "session established"
                    );
                    if let Some(reply) = entry.connect.take() {
                        let _ = reply.send(Ok(info.clone()));
                    }
                    let _ = self
                        .shared
                        .events
                        .try_send(NodeEvent::SessionEstablished(info));
                }
                Event::Message {
                    stream_id,
                    frame_type,
                    payload,
                } => {
                    if let Some(InlineHandler(handler)) = self.shared.inline.get() {
                        let frame = crate::node::Frame {
                            session: id,
                            stream_id,
                            frame_type,
                            payload,
                        };
                        let mut replies = Replies {
                            queue: &mut self.inline_sends,
                            shared: &self.shared,
                        };
                        let peer = entry.path.peer;
                        // A panicking handler must not take the reactor (and
                        // every session on it) down with it.
                        let run =
                            std::panic::AssertUnwindSafe(|| handler(frame, peer, &mut replies));
                        if std::panic::catch_unwind(run).is_err() {
                            tracing::error!(session = %id, "in-reactor message handler panicked");
                        }
                        continue;
                    }
                    let ev = NodeEvent::Message {
                        session: id,
                        stream_id,
                        frame_type,
                        payload,
                        peer: entry.path.peer,
                    };
                    let channel = self.shared.channel_for(frame_type);
                    if entry.path.reliable {
                        // Never dropped: queued behind anything waiting.
                        if !self.overflow.is_empty() {
                            self.overflow.push_back(ev);
                        } else if let Err(TrySendError::Full(ev)) = channel.try_send(ev) {
                            self.overflow.push_back(ev);
                        }
                    } else if let Err(TrySendError::Full(_)) = channel.try_send(ev) {
                        TransportCounters::add(&entry.path.counters.packets_dropped, 1);
                    }
                }
                Event::PeerError { .. } => {}
                Event::Closed { reason } => {
                    tracing::info!(session = %id, peer_addr = %entry.path.peer, %reason, "session closed");
                    if let Some(reply) = entry.connect.take() {
                        let _ = reply.send(Err(NodeError::ConnectFailed {
                            peer: entry.path.peer,
                            reason: reason.clone(),
                        }));
                    }
                    emit(
                        &mut self.overflow,
                        &self.shared.events,
                        NodeEvent::SessionClosed {
                            session: id,
                            reason,
                        },
                    );
                    closed = true;
                }
            }
        }
        if entry.pending && (closed || entry.session.is_established()) {
            entry.pending = false;
            self.pending -= 1;
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
        }
        if entry.live && !entry.session.is_established() {
            // Closing: no more sends are taken for it.
            set_live(&self.shared, self.index, id, false);
            entry.live = false;
        }
        if closed {
            self.sessions.remove(&id);
            self.shared.sessions.fetch_sub(1, Ordering::Relaxed);
            set_live(&self.shared, self.index, id, false);
            return;
        }
        if let Some(deadline) = entry.session.poll_timeout() {
            if entry.timer.is_none_or(|t| deadline < t || t <= now) {
                entry.timer = Some(deadline);
                self.timers.push(Reverse((deadline, id)));
            }
        }
    }

    /// Hands waiting reliable messages over; returns whether none is left.
    fn drain_overflow(&mut self) -> bool {
        while let Some(ev) = self.overflow.pop_front() {
            let channel = match &ev {
                NodeEvent::Message { frame_type, .. } => self.shared.channel_for(*frame_type),
                _ => &self.shared.events,
            };
            if let Err(TrySendError::Full(ev) | TrySendError::Disconnected(ev)) =
                channel.try_send(ev)
            {
                self.overflow.push_front(ev);
                return false;
            }
        }
        true
    }

    fn next_timer(&mut self) -> Option<Instant> {
        // Drop entries of sessions that are gone.
        while let Some(Reverse((_, id))) = self.timers.peek() {
            if self.sessions.contains_key(id) {
                break;
            }
            self.timers.pop();
        }
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn run_timers(&mut self, now: Instant) {
        // Every session's timer moves forward when handled; the bound only
        // guards the loop against a deadline that would not.
        let mut budget = self.sessions.len() * 2 + 16;
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now || budget == 0 {
                break;
            }
            budget -= 1;
            self.timers.pop();
            let Some(entry) = self.sessions.get_mut(&id) else {
                continue;
            };
            if entry.timer == Some(t) {
                entry.timer = None;
            }
            entry.session.handle_timeout(now);
            // An unanswered path probe is sent again (a lost probe must not
            // leave the session on a dead path until the peer's keepalive).
            let retry = entry
                .probe
                .as_ref()
                .is_some_and(|p| !p.answered && now >= p.due && p.sent <= PROBE_RETRIES);
            if retry {
                self.probe(id, now);
            }
            self.after_activity(id, now);
        }
    }
}

/// Records whether a session is established, for `Node::send`'s check.
fn set_live(shared: &Shared, reactor: usize, id: SessionId, live: bool) {
    // The set is only ever inserted into or removed from: a panic while the
    // lock is held cannot leave it inconsistent.
    let mut set = shared.live[reactor]
        .write()
        .unwrap_or_else(|e| e.into_inner());
    if live {
        set.insert(id);
    } else {
        set.remove(&id);
    }
}

/// Hands a session event to the application; when its channel is full the
/// event waits in order with the rest (an application that never learns a
/// session closed would leak its own state for it).
fn emit(overflow: &mut VecDeque<NodeEvent>, events: &Sender<NodeEvent>, ev: NodeEvent) {
    if !overflow.is_empty() {
        overflow.push_back(ev);
    } else if let Err(TrySendError::Full(ev)) = events.try_send(ev) {
        overflow.push_back(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_stays_small() {
        // Every `Node::send` moves one through the reactor's channel: at
        // 64-byte messages, its copies were 6% of the profile at 160 bytes.
        assert!(
            std::mem::size_of::<Command>() <= 96,
            "{}",
            std::mem::size_of::<Command>()
        );
    }

    #[test]
    fn the_pool_recycles_buffers_within_its_budget() {
        let pool = BufferPool::new();
        let a = pool.copy_of(&[1u8; 1000]);
        assert_eq!(a.message(), &[1u8; 1000][..]);
        // Room for the header in front, and for the tag behind.
        assert_eq!(a.0.len(), HEADER_LEN + 1000);
        assert!(a.0.capacity() >= DATA_OVERHEAD + 1000);
        let ptr = a.0.as_ptr();
        pool.recycle(a);
        // The same allocation comes back, holding the new message only.
        let b = pool.copy_of(&[2u8; 10]);
        assert_eq!(b.message(), &[2u8; 10][..]);
        assert_eq!(b.0.as_ptr(), ptr);
        assert_eq!(pool.held.load(Ordering::Relaxed), 0);
        // Too large to keep.
        pool.give(vec![0u8; BufferPool::LARGEST + 1]);
        assert_eq!(pool.rx.len(), 0);
        // The byte budget holds: 8 MiB of 1 MiB buffers, no more.
        for _ in 0..20 {
            pool.give(Vec::with_capacity(BufferPool::LARGEST));
        }
        assert_eq!(pool.rx.len(), BufferPool::BYTES / BufferPool::LARGEST);
        assert!(pool.held.load(Ordering::Relaxed) <= BufferPool::BYTES);
        while pool.rx.try_recv().is_ok() {}
    }
}
