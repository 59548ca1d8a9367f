//! What a node reports to the application: [`NodeEvent`]s on the
//! [`Events`] channel, and the [`Message`] a handler receives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

pub use crossbeam_channel::{RecvError, RecvTimeoutError, TryRecvError};

use crate::crypto::NodeId;
use crate::frame::{FrameType, SessionId};
use crate::reactor::{Delivery, Incoming, QueuedBytes, SessionOpened};
use crate::session::CloseReason;
use crate::token::ClientInfo;

/// A message that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The session it arrived on.
    pub session: SessionId,
    /// The sender's authenticated node id.
    pub peer_node: NodeId,
    /// The sender's address at the time (the session's current path).
    pub peer_addr: SocketAddr,
    /// The stream it was sent on.
    pub stream_id: u32,
    /// DATA or an application type (0x80–0xFF).
    pub frame_type: FrameType,
    /// The message. Give its buffer back with
    /// [`Node::recycle`](super::Node::recycle) when done, if you like.
    pub payload: Vec<u8>,
    /// Who sent it, when a connect token opened the session (this node is
    /// the server): the token's client id and application data. `None`
    /// for a member's session.
    pub client: Option<Arc<ClientInfo>>,
}

impl From<Incoming> for Message {
    fn from(m: Incoming) -> Self {
        Message {
            session: m.session,
            peer_node: m.peer_node,
            peer_addr: m.peer_addr,
            stream_id: m.stream_id,
            frame_type: m.frame_type,
            payload: m.payload,
            client: m.client,
        }
    }
}

/// A description of an established session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session id.
    pub id: SessionId,
    /// The peer's authenticated node id.
    pub peer_node: NodeId,
    /// The peer's address when the session was established.
    pub peer_addr: SocketAddr,
    /// The transport it runs on (e.g. `"udp/io_uring"`, `"ws"`).
    pub transport: &'static str,
    /// Whether this node opened it.
    pub initiator: bool,
    /// The connect token's client, when a token opened it here.
    pub client: Option<Arc<ClientInfo>>,
}

impl From<SessionOpened> for SessionInfo {
    fn from(s: SessionOpened) -> Self {
        SessionInfo {
            id: s.id,
            peer_node: s.peer_node,
            peer_addr: s.peer_addr,
            transport: s.transport,
            initiator: s.initiator,
            client: s.client,
        }
    }
}

/// What the node reports to the application.
///
/// Lifecycle events (`SessionEstablished`, `SessionClosed`) are never
/// dropped: when the channel is full they wait, in order, in the reactor.
/// Messages over WebSocket are never dropped either (the reactor stops
/// reading instead); messages over UDP that find the channel full are
/// dropped and counted in the UDP statistics' `packets_dropped`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A session completed its handshake (either side).
    SessionEstablished(SessionInfo),
    /// A message arrived.
    Message(Message),
    /// A session ended.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
}

impl From<Delivery> for NodeEvent {
    fn from(d: Delivery) -> Self {
        match d {
            Delivery::Opened(s) => NodeEvent::SessionEstablished(s.into()),
            Delivery::Message(m) => NodeEvent::Message(m.into()),
            Delivery::Closed { session, reason } => NodeEvent::SessionClosed { session, reason },
        }
    }
}

/// The node's event channel (see [`Node::events`](super::Node::events)):
/// bounded, and every clone drains the same queue, so any number of the
/// application's threads may receive from it.
#[derive(Debug, Clone)]
pub struct Events {
    rx: Receiver<Delivery>,
    queued: Arc<QueuedBytes>,
}

impl Events {
    pub(crate) fn new(rx: Receiver<Delivery>, queued: Arc<QueuedBytes>) -> Self {
        Events { rx, queued }
    }

    /// A delivery taken off the channel: its bytes leave the count.
    fn took(&self, d: Delivery) -> NodeEvent {
        self.queued.taken(&d);
        d.into()
    }

    /// Waits for the next event. Fails only once the node is gone.
    pub fn recv(&self) -> Result<NodeEvent, RecvError> {
        self.rx.recv().map(|d| self.took(d))
    }

    /// Waits for the next event for at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<NodeEvent, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).map(|d| self.took(d))
    }

    /// Waits for the next event until `deadline`.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<NodeEvent, RecvTimeoutError> {
        self.rx.recv_deadline(deadline).map(|d| self.took(d))
    }

    /// The next event, if one waits.
    pub fn try_recv(&self) -> Result<NodeEvent, TryRecvError> {
        self.rx.try_recv().map(|d| self.took(d))
    }

    /// Events as they come, until the node is gone.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            inner: self.rx.iter(),
            events: self,
        }
    }

    /// The events waiting now.
    pub fn try_iter(&self) -> TryIter<'_> {
        TryIter {
            inner: self.rx.try_iter(),
            events: self,
        }
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// Events as they come (see [`Events::iter`]).
#[derive(Debug)]
pub struct Iter<'a> {
    inner: crossbeam_channel::Iter<'a, Delivery>,
    events: &'a Events,
}

impl Iterator for Iter<'_> {
    type Item = NodeEvent;

    fn next(&mut self) -> Option<NodeEvent> {
        self.inner.next().map(|d| self.events.took(d))
    }
}

/// The events waiting now (see [`Events::try_iter`]).
#[derive(Debug)]
pub struct TryIter<'a> {
    inner: crossbeam_channel::TryIter<'a, Delivery>,
    events: &'a Events,
}

impl Iterator for TryIter<'_> {
    type Item = NodeEvent;

    fn next(&mut self) -> Option<NodeEvent> {
        self.inner.next().map(|d| self.events.took(d))
    }
}

/// Events as they come, owning the channel (see [`Events`]'s
/// `IntoIterator`).
#[derive(Debug)]
pub struct IntoIter {
    inner: crossbeam_channel::IntoIter<Delivery>,
    queued: Arc<QueuedBytes>,
}

impl Iterator for IntoIter {
    type Item = NodeEvent;

    fn next(&mut self) -> Option<NodeEvent> {
        let d = self.inner.next()?;
        self.queued.taken(&d);
        Some(d.into())
    }
}

impl IntoIterator for Events {
    type Item = NodeEvent;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter {
            inner: self.rx.into_iter(),
            queued: self.queued,
        }
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = NodeEvent;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}
