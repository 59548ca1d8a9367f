//! What reactors hand to the application, and how.
//!
//! Every reactor of a node shares one [`Shared`]: the endpoint
//! configuration, the two bounded hand-off channels (the application's
//! events channel, and one channel per worker thread for a worker handler),
//! whether messages go to the workers ([`Dispatch`]), the buffer pool and the
//! in-reactor handler. A reactor's [`App`] turns the endpoint's events into
//! [`Delivery`]s:
//!
//! - lifecycle events (opened, closed) are never dropped: when the channel
//!   is full they wait in order in the reactor's overflow queue;
//! - messages of reliable paths (WebSocket) are never dropped either: they
//!   wait likewise, and the reactor stops reading reliable transports until
//!   the queue drains (TCP's window then slows the sender);
//! - messages of datagram paths (UDP) are dropped when the channel is full,
//!   and counted in the transport's `packets_dropped`;
//! - with an in-reactor handler set, every message goes to it, on this
//!   thread, with an [`InlineQueue`] for its answers.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Sender, TrySendError};

use crate::crypto::NodeId;
use crate::endpoint::{EndpointConfig, Event};
use crate::frame::{FrameType, SessionId};
use crate::pool::{BufferPool, Payload};
use crate::session::{CloseReason, SessionError};
use crate::token::ClientInfo;
use crate::transport::TransportCounters;

use super::command::{Failure, Reply};

/// An established session, as reported to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionOpened {
    pub id: SessionId,
    pub peer_node: NodeId,
    pub peer_addr: SocketAddr,
    pub transport: &'static str,
    pub initiator: bool,
    pub client: Option<Arc<ClientInfo>>,
}

/// A message, as handed to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Incoming {
    pub session: SessionId,
    pub peer_node: NodeId,
    pub peer_addr: SocketAddr,
    pub stream_id: u32,
    pub frame_type: FrameType,
    pub payload: Vec<u8>,
    /// Reliable channel bytes it holds in its session's flow-control
    /// window, released once it is handed over.
    pub credit: u64,
    /// The connect token's client, for a session a token opened here.
    pub client: Option<Arc<ClientInfo>>,
}

/// What goes on the hand-off channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    Opened(SessionOpened),
    Message(Incoming),
    Closed {
        session: SessionId,
        reason: CloseReason,
    },
}

/// A message handler that runs on the reactor thread.
#[derive(Clone)]
pub(crate) struct InlineHandler(pub Arc<InlineFn>);

/// The in-reactor handler's signature.
pub(crate) type InlineFn = dyn Fn(Incoming, InlineQueue<'_>) + Send + Sync;

impl std::fmt::Debug for InlineHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InlineHandler")
    }
}

/// A message an in-reactor handler sends: sealed and queued by the reactor
/// right after the handler returns, in this turn.
#[derive(Debug)]
pub(crate) struct InlineSend {
    pub session: SessionId,
    pub stream_id: u32,
    pub frame_type: FrameType,
    pub payload: Payload,
}

/// Where an in-reactor handler's sends wait for the reactor.
#[derive(Debug)]
pub(crate) struct InlineQueue<'a> {
    queue: &'a mut Vec<InlineSend>,
    shared: &'a Shared,
}

impl InlineQueue<'_> {
    /// Queues a message, refused at once as `Node::send` would refuse it.
    pub(crate) fn push(
        &mut self,
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
    ) -> Result<(), Failure> {
        self.shared.check_message(frame_type, payload.len())?;
        if self.shared.holder_of(session).is_none() {
            return Err(Failure::UnknownSession(session));
        }
        self.queue.push(InlineSend {
            session,
            stream_id,
            frame_type,
            payload: self.shared.pool.copy_of(payload),
        });
        Ok(())
    }

    /// Gives a received message's buffer back to the pool.
    pub(crate) fn recycle(&mut self, payload: Vec<u8>) {
        self.shared.pool.give(payload);
    }

    /// Messages queued so far.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// Whether the reactors hand messages to the worker threads (where a
/// worker handler runs) instead of the application's channel. Read on every
/// message, so a plain atomic: a handler set while messages are in flight
/// takes effect for the next ones.
#[derive(Debug, Default)]
pub(crate) struct Dispatch {
    /// A worker handler is set: every message goes to the workers.
    pub to_workers: AtomicBool,
}

/// Bytes of messages in the hand-off channels, against a limit: counted in
/// when a reactor hands a message over, out when the application or a
/// worker takes it.
#[derive(Debug)]
pub(crate) struct QueuedBytes {
    bytes: AtomicUsize,
    limit: usize,
}

impl QueuedBytes {
    pub(crate) fn new(limit: usize) -> Self {
        QueuedBytes {
            bytes: AtomicUsize::new(0),
            limit,
        }
    }

    /// Whether `n` more bytes fit (one message always fits an empty queue).
    fn fits(&self, n: usize) -> bool {
        let now = self.bytes.load(Ordering::Relaxed);
        now == 0 || now.saturating_add(n) <= self.limit
    }

    /// Three quarters full.
    fn crowded(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) >= self.limit - self.limit / 4
    }

    /// Counts `n` bytes in, before the message is put on a channel (a
    /// receiver may take it, and count it out, at once).
    fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes out again: the message did not go on the channel.
    fn remove(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// A delivery left the channel.
    pub(crate) fn taken(&self, delivery: &Delivery) {
        if let Delivery::Message(m) = delivery {
            self.remove(m.payload.len());
        }
    }
}

/// What every reactor of a node shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The endpoints' configuration, counters and directory.
    pub endpoint: Arc<EndpointConfig>,
    /// The application's channel.
    pub events: Sender<Delivery>,
    /// One channel per worker thread (for a worker handler): a session's
    /// messages always go to the same worker, so they are handled in order.
    pub work: Vec<Sender<Delivery>>,
    /// Which messages go to the workers.
    pub dispatch: Dispatch,
    /// Bytes of messages in the channels.
    pub queued: Arc<QueuedBytes>,
    /// The node is stopping (workers exit).
    pub stopping: AtomicBool,
    /// Message buffers.
    pub pool: Arc<BufferPool>,
    /// The in-reactor message handler, set at most once.
    pub inline: OnceLock<InlineHandler>,
}

impl Shared {
    /// Refuses what no session would send: a type that is not a message, a
    /// message over `max_message_size`.
    pub(crate) fn check_message(&self, frame_type: FrameType, len: usize) -> Result<(), Failure> {
        if !frame_type.is_message() {
            return Err(SessionError::NotAMessageType(frame_type).into());
        }
        let max = self.endpoint.session.reassembly.max_message_size;
        if len > max {
            return Err(SessionError::MessageTooLarge { len, max }.into());
        }
        Ok(())
    }

    /// The reactor that holds established session `id`, if any.
    pub(crate) fn holder_of(&self, id: SessionId) -> Option<usize> {
        self.endpoint.directory.holder(id)
    }

    /// Where messages of `session` go: their worker, or the application.
    pub(crate) fn message_channel(&self, session: SessionId) -> &Sender<Delivery> {
        if self.dispatch.to_workers.load(Ordering::Relaxed) && !self.work.is_empty() {
            // The low byte names the reactor; the rest is random.
            &self.work[(session.0 >> 8) as usize % self.work.len()]
        } else {
            &self.events
        }
    }
}

/// A reactor's side of the hand-off. See the [module docs](self).
pub(crate) struct App {
    pub shared: Arc<Shared>,
    /// What found its channel full: handed over first, in order.
    overflow: VecDeque<Delivery>,
    /// What in-reactor handlers sent this turn.
    pub inline_sends: Vec<InlineSend>,
    /// Sessions this reactor opened for the application, waiting for the
    /// handshake's outcome.
    pub connects: HashMap<SessionId, Reply<SessionOpened>>,
    /// Flow-control credit of reliable channel messages handed over, to
    /// give back to their sessions.
    pub released: Vec<(SessionId, u64)>,
}

impl App {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        App {
            shared,
            overflow: VecDeque::new(),
            inline_sends: Vec::new(),
            connects: HashMap::new(),
            released: Vec::new(),
        }
    }

    /// Hands an endpoint event to the application.
    pub(crate) fn deliver(&mut self, event: Event<'_>) {
        match event {
            Event::Established {
                id,
                peer,
                path,
                initiator,
                client,
            } => {
                let info = SessionOpened {
                    id,
                    peer_node: peer,
                    peer_addr: path.peer,
                    transport: path.kind,
                    initiator,
                    client: client.cloned(),
                };
                if let Some(reply) = self.connects.remove(&id) {
                    let _ = reply.send(Ok(info.clone()));
                }
                self.keep(Delivery::Opened(info));
            }
            Event::Message {
                id,
                peer,
                stream_id,
                frame_type,
                payload,
                credit,
                path,
                client,
            } => {
                let incoming = Incoming {
                    session: id,
                    peer_node: peer,
                    peer_addr: path.peer,
                    stream_id,
                    frame_type,
                    payload,
                    credit,
                    client: client.cloned(),
                };
                if let Some(InlineHandler(handler)) = self.shared.inline.get() {
                    let queue = InlineQueue {
                        queue: &mut self.inline_sends,
                        shared: &self.shared,
                    };
                    // A panicking handler must not take the reactor (and
                    // every session on it) down with it.
                    let run = std::panic::AssertUnwindSafe(|| handler(incoming, queue));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!(session = %id, "in-reactor message handler panicked");
                    }
                    if credit > 0 {
                        self.released.push((id, credit));
                    }
                    return;
                }
                let len = incoming.payload.len();
                let delivery = Delivery::Message(incoming);
                // A reliable channel's message is never dropped: it waits,
                // holding its session's flow-control credit, so that the
                // peer slows down instead.
                if path.reliable || credit > 0 {
                    self.keep(delivery);
                } else if !self.overflow.is_empty() || !self.shared.queued.fits(len) {
                    // Full by bytes, or behind what waits: dropped, as a
                    // full channel drops it.
                    TransportCounters::add(&path.counters.packets_dropped, 1);
                } else {
                    self.shared.queued.add(len);
                    match self.shared.message_channel(id).try_send(delivery) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            self.shared.queued.remove(len);
                            TransportCounters::add(&path.counters.packets_dropped, 1)
                        }
                        Err(TrySendError::Disconnected(_)) => self.shared.queued.remove(len),
                    }
                }
            }
            // The engine's business, not the application's.
            Event::Authenticated { .. } | Event::Replaced { .. } => {}
            Event::Closed { id, reason, path } => {
                if let Some(reply) = self.connects.remove(&id) {
                    let _ = reply.send(Err(Failure::ConnectFailed {
                        peer: path.peer,
                        reason: reason.clone(),
                    }));
                }
                self.keep(Delivery::Closed {
                    session: id,
                    reason,
                });
            }
        }
    }

    /// Hands `delivery` over, or keeps it in order behind what waits.
    fn keep(&mut self, delivery: Delivery) {
        if !self.overflow.is_empty() {
            self.overflow.push_back(delivery);
            return;
        }
        if let Err(d) = self.hand_over(delivery) {
            self.overflow.push_back(d);
        }
    }

    /// Puts `delivery` on its channel if it has room (by count and by
    /// bytes); gives it back if not.
    fn hand_over(&mut self, delivery: Delivery) -> Result<(), Delivery> {
        let (len, credit) = match &delivery {
            Delivery::Message(m) => (m.payload.len(), (m.session, m.credit)),
            _ => (0, (SessionId(0), 0)),
        };
        if len > 0 && !self.shared.queued.fits(len) {
            return Err(delivery);
        }
        self.shared.queued.add(len);
        match self.channel_of(&delivery).try_send(delivery) {
            Ok(()) => {
                if credit.1 > 0 {
                    self.released.push(credit);
                }
                Ok(())
            }
            Err(TrySendError::Full(d)) => {
                self.shared.queued.remove(len);
                Err(d)
            }
            // The application is gone: nothing to keep it for.
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued.remove(len);
                Ok(())
            }
        }
    }

    fn channel_of(&self, delivery: &Delivery) -> &Sender<Delivery> {
        match delivery {
            Delivery::Message(m) => self.shared.message_channel(m.session),
            _ => &self.shared.events,
        }
    }

    /// Hands waiting deliveries over; returns whether none is left.
    pub(crate) fn drain_overflow(&mut self) -> bool {
        while let Some(d) = self.overflow.pop_front() {
            if let Err(d) = self.hand_over(d) {
                self.overflow.push_front(d);
                return false;
            }
        }
        true
    }

    /// Whether deliveries wait for room in the application's channels
    /// (the reactor must look again soon: nothing else wakes it for them).
    pub(crate) fn waiting(&self) -> bool {
        !self.overflow.is_empty()
    }

    /// Whether the application falls behind: something waits, or a channel
    /// is three quarters full.
    pub(crate) fn behind(&mut self) -> bool {
        let crowded = |c: &Sender<Delivery>| c.capacity().is_some_and(|cap| c.len() * 4 >= cap * 3);
        !self.drain_overflow()
            || crowded(&self.shared.events)
            || self.shared.work.iter().any(crowded)
            || self.shared.queued.crowded()
    }

    /// The node stops: every connect still waiting learns it.
    pub(crate) fn stopped(&mut self) {
        for (_, reply) in self.connects.drain() {
            let _ = reply.send(Err(Failure::Stopped));
        }
    }
}
