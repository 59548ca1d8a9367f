//! Receiving through a handler instead of the events channel: the
//! [`Handler`] trait, where it runs, and what it answers with.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::frame::{FrameType, SessionId};
use crate::reactor::{Delivery, InlineQueue};

use super::error::SendError;
use super::event::Message;
use super::Core;

/// Where a [`Handler`] runs. See [`Handler`]'s documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsOn {
    /// On the reactor thread that received the message.
    Reactor,
    /// On one of the node's worker threads (the same one for every
    /// message of a session).
    Worker,
}

/// Receives every message of a node instead of the events channel.
///
/// A [`Handler`] says where it runs ([`RunsOn`]):
///
/// - [`RunsOn::Worker`]: on the node's worker threads, fed through bounded
///   queues, so a slow handler slows no reactor (when a queue is full, UDP
///   messages are dropped and counted, WebSocket reading pauses). A
///   session's messages always go to the same worker, so they are handled
///   one at a time and in order; different sessions run in parallel;
/// - [`RunsOn::Reactor`]: on the reactor thread that received the message,
///   the fastest way to answer: what it sends through its [`Replies`] is
///   sealed by that reactor as soon as it returns and leaves with the same
///   turn's datagrams, so an echo or a request-response crosses no thread.
///   It holds up every session of its reactor while it runs: it must not
///   block, sleep or wait on a lock held long elsewhere, and must not call
///   the node's methods that wait on a reactor (`send*`, `connect*`,
///   `close_session`, `move_session_*`, `session_stats`, `transport_stats`):
///   the reactor they wait on may be its own. Send with `replies`.
///
/// With a handler set, messages no longer reach
/// [`Node::events`](super::Node::events), which keeps the session events. A
/// handler that panics loses that message only; the panic is logged. A
/// handler that captures the node keeps it alive (the node holds the
/// handler): capture a `std::sync::Weak`.
///
/// Order and backpressure of a reactor handler: its sends leave in the
/// order it made them, and before anything its reactor takes afterwards;
/// they are not ordered with sends other threads make meanwhile. While too
/// many of its answers wait for reliable peers that read too slowly (1,024
/// frames or 64 MiB), the reactor stops reading every transport. Two nodes
/// that both answer from their reactors and flood each other over one
/// WebSocket connection faster than either reads can each stop reading
/// while waiting for the other: bound such traffic in the application (a
/// window of requests in flight), as request-response protocols do.
pub trait Handler: Send + Sync + 'static {
    /// Where it runs. Default: a worker.
    fn runs_on(&self) -> RunsOn {
        RunsOn::Worker
    }

    /// Handles one message; `replies` sends answers.
    fn on_message(&self, message: Message, replies: &mut Replies<'_>);
}

/// A closure as a [`Handler`] that runs where it was told to (see
/// [`on_reactor`] and [`on_worker`]).
pub struct FnHandler<F> {
    runs_on: RunsOn,
    f: F,
}

impl<F> std::fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnHandler")
            .field("runs_on", &self.runs_on)
            .finish_non_exhaustive()
    }
}

impl<F> Handler for FnHandler<F>
where
    F: Fn(Message, &mut Replies<'_>) + Send + Sync + 'static,
{
    fn runs_on(&self) -> RunsOn {
        self.runs_on
    }

    fn on_message(&self, message: Message, replies: &mut Replies<'_>) {
        (self.f)(message, replies)
    }
}

/// A closure that runs on the reactor thread (see [`Handler`]).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stt::node::{on_reactor, Node, NodeConfig};
/// # let node = Node::start(NodeConfig::new(&[7; 32], &[9; 32]))?;
/// // An echo server that never leaves its reactor threads.
/// node.set_handler(on_reactor(|message, replies| {
///     let _ = replies.send(message.session, &message.payload);
/// }))?;
/// # Ok(()) }
/// ```
pub fn on_reactor<F>(f: F) -> FnHandler<F>
where
    F: Fn(Message, &mut Replies<'_>) + Send + Sync + 'static,
{
    FnHandler {
        runs_on: RunsOn::Reactor,
        f,
    }
}

/// A closure that runs on a worker thread (see [`Handler`]).
pub fn on_worker<F>(f: F) -> FnHandler<F>
where
    F: Fn(Message, &mut Replies<'_>) + Send + Sync + 'static,
{
    FnHandler {
        runs_on: RunsOn::Worker,
        f,
    }
}

/// What a [`Handler`] sends answers with.
///
/// On a reactor, messages queued here are sealed by that reactor as soon as
/// the handler returns; a session held by another reactor is handed to it.
/// On a worker, they go as [`Node::send_typed`](super::Node::send_typed)
/// sends them.
pub struct Replies<'a> {
    to: To<'a>,
}

enum To<'a> {
    Reactor(InlineQueue<'a>),
    Worker(&'a Core),
}

impl std::fmt::Debug for Replies<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.to {
            To::Reactor(q) => f.debug_struct("Replies").field("queued", &q.len()).finish(),
            To::Worker(_) => f.write_str("Replies(worker)"),
        }
    }
}

impl<'a> Replies<'a> {
    pub(crate) fn reactor(queue: InlineQueue<'a>) -> Self {
        Replies {
            to: To::Reactor(queue),
        }
    }

    /// Sends `payload` as a DATA message on stream 0.
    pub fn send(&mut self, session: SessionId, payload: &[u8]) -> Result<(), SendError> {
        self.send_typed(session, 0, FrameType::Data, payload)
    }

    /// Sends `payload` as a DATA message on `stream_id`.
    pub fn send_on(
        &mut self,
        session: SessionId,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.send_typed(session, stream_id, FrameType::Data, payload)
    }

    /// Sends a message of an application type (0x80–0xFF) or DATA. Refused
    /// at once as [`Node::send_typed`](super::Node::send_typed) refuses: a
    /// type that is not a message, a message over `max_message_size`, a
    /// session that is not established on this node. On a reactor, a
    /// session that closes before the message is sealed loses it (logged at
    /// debug level).
    pub fn send_typed(
        &mut self,
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
    ) -> Result<(), SendError> {
        match &mut self.to {
            To::Reactor(q) => q
                .push(session, stream_id, frame_type, payload)
                .map_err(SendError::from_failure),
            To::Worker(core) => core.send_typed(session, stream_id, frame_type, payload),
        }
    }

    /// Gives a received message's buffer back, as
    /// [`Node::recycle`](super::Node::recycle) does: an echo that sends
    /// `message.payload` can then give it back.
    pub fn recycle(&mut self, payload: Vec<u8>) {
        match &mut self.to {
            To::Reactor(q) => q.recycle(payload),
            To::Worker(core) => core.shared.pool.give(payload),
        }
    }
}

/// A worker thread: runs the handler for the messages the reactors route
/// to it, until the node stops.
pub(crate) fn worker(work: Receiver<Delivery>, handler: Arc<dyn Handler>, core: Arc<Core>) {
    loop {
        let delivery = match work.recv_timeout(Duration::from_millis(100)) {
            Ok(d) => d,
            Err(RecvTimeoutError::Timeout) => {
                if core.shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        core.shared.queued.taken(&delivery);
        let Delivery::Message(incoming) = delivery else {
            let _ = core.shared.events.send(delivery);
            continue;
        };
        let mut replies = Replies {
            to: To::Worker(&core),
        };
        let message = Message::from(incoming);
        // A panicking handler must not take the worker down with it.
        let run = std::panic::AssertUnwindSafe(|| handler.on_message(message, &mut replies));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("message handler panicked on a worker");
        }
    }
}
