//! Commands to a reactor, the handle that queues them, and the reactor's
//! answers.
//!
//! A reactor's command queue is bounded by count ([`COMMAND_QUEUE`]) and,
//! for messages of 1 KiB and more, by bytes ([`QUEUED_BYTES_LIMIT`]): a
//! sender waits for room, so an application that sends faster than the
//! network drains feels backpressure instead of growing memory. One wake-up
//! per burst: the handle wakes the reactor only if it is not already awake.

use crate::session::channel::{ChannelStats, SendPolicy};
use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use crate::crypto::NodeId;
use crate::endpoint::{OpenError, Path, SessionRefused};
use crate::frame::{FrameType, SessionId};
use crate::pool::Payload;
use crate::session::{CloseReason, SessionError, SessionStats};
use crate::token::ConnectToken;
use crate::transport::{Transport, TransportError, TransportStats};

use super::deliver::SessionOpened;

/// Commands queued for one reactor before senders wait: deep enough for a
/// burst of sends to be sealed and flushed in one loop turn.
pub(crate) const COMMAND_QUEUE: usize = 16_384;

/// Bytes of messages queued for one reactor beyond which senders wait:
/// with large messages the queue's length alone would let an application
/// queue gigabytes (16,384 messages of 64 KiB are 1 GiB).
pub(crate) const QUEUED_BYTES_LIMIT: usize = 64 << 20;

/// Messages smaller than this are not counted against
/// [`QUEUED_BYTES_LIMIT`]: the queue's length bounds them (16 MiB at most),
/// and small messages skip two atomic operations each.
const COUNTED_FROM: usize = 1024;

/// Why a reactor could not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Failure {
    #[error("no session {0} on this node (closed, or never opened)")]
    UnknownSession(SessionId),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("the handshake with {peer} failed: {reason}")]
    ConnectFailed {
        peer: SocketAddr,
        reason: CloseReason,
    },
    #[error("the node is stopped")]
    Stopped,
    #[error("the reactor's queue stayed full")]
    Full,
    #[error("no such transport on this node")]
    NoSuchTransport,
    #[error(transparent)]
    Transport(Arc<TransportError>),
    #[error("session limit reached ({0} sessions on one reactor)")]
    TooManySessions(usize),
    #[error("no randomness for a session id")]
    NoRandomness,
    #[error("this node has no shared seed: connect with a connect token")]
    NoCredential,
    #[error("no answer from the reactor within {0:?}")]
    TimedOut(Duration),
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Self {
        Failure::Transport(Arc::new(e))
    }
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::TooManySessions(n) => Failure::TooManySessions(n),
            OpenError::NoRandomness => Failure::NoRandomness,
            OpenError::NoCredential => Failure::NoCredential,
            OpenError::Session(e) => Failure::Session(e),
        }
    }
}

impl From<SessionRefused> for Failure {
    fn from(e: SessionRefused) -> Self {
        match e {
            SessionRefused::Unknown(id) => Failure::UnknownSession(id),
            SessionRefused::Session(e) => Failure::Session(e),
        }
    }
}

/// A one-shot answer from a reactor.
pub(crate) type Reply<T> = Sender<Result<T, Failure>>;

/// Opening a session (boxed in [`Command`]: rare, and large).
pub(crate) struct Connect {
    pub transport: usize,
    pub peer: SocketAddr,
    /// A target the transport must open first (a WebSocket URL).
    pub target: Option<String>,
    /// Transport-specific options for that one open (a `WsConfig`).
    pub options: Option<Box<dyn Any + Send>>,
    /// The only peer the session may be opened with.
    pub expect: Option<NodeId>,
    /// Open it with this connect token instead of the network key.
    pub token: Option<Arc<ConnectToken>>,
    pub reply: Reply<SessionOpened>,
}

/// A command from the application (or another reactor) to a reactor.
pub(crate) enum Command {
    Connect(Box<Connect>),
    Send {
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        /// From the node's pool; given back once sealed.
        payload: Payload,
        reply: Option<Reply<()>>,
    },
    /// A message for a session's channel; its bytes were reserved in the
    /// session's send budget.
    SendChannel {
        session: SessionId,
        channel: u8,
        frame_type: FrameType,
        payload: Vec<u8>,
        policy: SendPolicy,
    },
    ChannelStats {
        session: SessionId,
        reply: Sender<Option<ChannelStats>>,
    },
    Close {
        session: SessionId,
        code: u16,
        reason: Box<str>,
    },
    SendMany {
        sessions: Vec<SessionId>,
        stream_id: u32,
        frame_type: FrameType,
        payload: Arc<[u8]>,
        reply: Sender<Vec<(SessionId, Result<(), Failure>)>>,
    },
    SessionStats {
        session: SessionId,
        reply: Sender<Option<SessionStats>>,
    },
    /// Describes an established session.
    Describe {
        session: SessionId,
        reply: Sender<Option<SessionOpened>>,
    },
    /// A datagram for a session this reactor owns, received elsewhere: on
    /// this reactor's own socket of a sharded group (`path: None`), or on a
    /// transport of another reactor (`path`: the way back).
    Forward {
        transport: usize,
        from: SocketAddr,
        path: Option<Box<Path>>,
        datagram: Vec<u8>,
    },
    /// Datagrams of a session held elsewhere, to send on a transport here.
    PathSend {
        transport: usize,
        to: SocketAddr,
        datagrams: Vec<Vec<u8>>,
    },
    /// A peer of a transport here is authenticated (a session of another
    /// reactor runs over it).
    Authenticated {
        transport: usize,
        peer: SocketAddr,
    },
    /// Moves a session to another path.
    SetPath {
        session: SessionId,
        path: Box<Path>,
        reply: Reply<()>,
    },
    /// Opens a target (a WebSocket URL) on a transport here and returns the
    /// path to it.
    /// Closes a session a newer session of its connect token replaced, if it
    /// still holds that ticket.
    CloseReplaced {
        session: SessionId,
        salt: [u8; 16],
    },
    /// Closes every session of a revoked connect-token client.
    CloseClient {
        client_id: u64,
        reply: Reply<usize>,
    },
    OpenPath {
        transport: usize,
        target: Box<str>,
        addr: SocketAddr,
        reply: Reply<Path>,
    },
    AddTransport {
        transport: Box<dyn Transport>,
        reply: Reply<usize>,
    },
    TransportStats {
        transport: usize,
        reply: Sender<Option<TransportStats>>,
    },
    Stop,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Command::Connect(_) => "Connect",
            Command::Send { .. } => "Send",
            Command::Close { .. } => "Close",
            Command::SendChannel { .. } => "SendChannel",
            Command::ChannelStats { .. } => "ChannelStats",
            Command::SendMany { .. } => "SendMany",
            Command::SessionStats { .. } => "SessionStats",
            Command::Describe { .. } => "Describe",
            Command::Forward { .. } => "Forward",
            Command::PathSend { .. } => "PathSend",
            Command::Authenticated { .. } => "Authenticated",
            Command::SetPath { .. } => "SetPath",
            Command::OpenPath { .. } => "OpenPath",
            Command::CloseClient { .. } => "CloseClient",
            Command::CloseReplaced { .. } => "CloseReplaced",
            Command::AddTransport { .. } => "AddTransport",
            Command::TransportStats { .. } => "TransportStats",
            Command::Stop => "Stop",
        };
        f.write_str(name)
    }
}

impl Command {
    /// The message bytes it carries, for [`QUEUED_BYTES_LIMIT`].
    pub(crate) fn queued_bytes(&self) -> usize {
        match self {
            Command::Send { payload, .. } if payload.message().len() >= COUNTED_FROM => {
                payload.message().len()
            }
            _ => 0,
        }
    }
}

/// The reactor's end of its queue.
#[derive(Debug)]
pub(crate) struct Inbox {
    pub commands: Receiver<Command>,
    /// Message bytes in `commands`.
    pub queued: Arc<AtomicUsize>,
    /// Woken since it last looked.
    pub notified: Arc<AtomicBool>,
    /// Asked to stop (also flagged beside the queue, which may be full).
    pub stop: Arc<AtomicBool>,
}

impl Inbox {
    /// The next command, if any.
    pub(crate) fn next(&self) -> Option<Command> {
        let cmd = self.commands.try_recv().ok()?;
        let bytes = cmd.queued_bytes();
        if bytes > 0 {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
        }
        Some(cmd)
    }
}

/// The application's end of a reactor: its command queue and waker.
#[derive(Debug, Clone)]
pub(crate) struct ReactorHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    notified: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
}

/// A reactor's queue: its handle and its inbox.
pub(crate) fn queue(waker: Arc<Waker>) -> (ReactorHandle, Inbox) {
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
    let inbox = Inbox {
        commands: rx,
        queued,
        notified,
        stop,
    };
    (handle, inbox)
}

/// Whether [`ReactorHandle::send`] waits for room or refuses at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Wait for room, up to a deadline (`None`: as long as it takes).
    Until(Option<Instant>),
    /// Wait for room at most this long from when the queue is found full
    /// (no clock is read while there is room).
    For(Duration),
    /// Refuse at once when the queue is full.
    Never,
}

impl Wait {
    /// The deadline, read from the clock now for [`Wait::For`]; `Err` for
    /// [`Wait::Never`].
    fn deadline(self) -> Result<Option<Instant>, Refused> {
        match self {
            Wait::Never => Err(Refused::Full),
            Wait::Until(d) => Ok(d),
            Wait::For(t) => Ok(Some(Instant::now() + t)),
        }
    }
}

/// Why a command was not queued.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue stayed full (refused at once, or until the deadline).
    Full,
    /// The reactor is gone.
    Stopped,
}

impl ReactorHandle {
    /// Queues a command, waiting for room as `wait` says, and wakes the
    /// reactor if it is not already awake for an earlier one.
    pub(crate) fn send(&self, command: Command, wait: Wait) -> Result<(), Refused> {
        let bytes = command.queued_bytes();
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
                let deadline = wait.deadline()?;
                self.wake().map_err(|()| Refused::Stopped)?;
                let mut nap = Duration::from_micros(50);
                while over() {
                    if self.stop.load(Ordering::Acquire) {
                        return Err(Refused::Stopped);
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Refused::Full);
                    }
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(1));
                }
            }
            self.queued.fetch_add(bytes, Ordering::AcqRel);
        }
        let sent = match self.commands.try_send(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(command)) => match wait.deadline() {
                Err(refused) => Err(refused),
                // Make sure the reactor is awake to drain, then wait.
                Ok(deadline) => match self.wake() {
                    Err(()) => Err(Refused::Stopped),
                    Ok(()) => self.wait_for_room(command, deadline),
                },
            },
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        };
        if sent.is_err() {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
        }
        sent?;
        self.wake().map_err(|()| Refused::Stopped)
    }

    fn wait_for_room(&self, command: Command, deadline: Option<Instant>) -> Result<(), Refused> {
        match deadline {
            None => self.commands.send(command).map_err(|_| Refused::Stopped),
            Some(d) => self
                .commands
                .send_deadline(command, d)
                .map_err(|e| match e {
                    crossbeam_channel::SendTimeoutError::Timeout(_) => Refused::Full,
                    crossbeam_channel::SendTimeoutError::Disconnected(_) => Refused::Stopped,
                }),
        }
    }

    /// Queues a command without waiting (between reactors, which must never
    /// block on each other); a full queue hands it back.
    pub(crate) fn try_send_back(&self, command: Command) -> Result<(), Box<Command>> {
        let bytes = command.queued_bytes();
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

    fn wake(&self) -> Result<(), ()> {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.waker.wake().map_err(|_| ())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_stays_small() {
        // Every `Node::send` moves one through the reactor's channel.
        assert!(
            std::mem::size_of::<Command>() <= 96,
            "{}",
            std::mem::size_of::<Command>()
        );
    }
}
