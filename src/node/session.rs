//! A handle on one established session.

use std::net::SocketAddr;
use std::time::Duration;

use crate::crypto::NodeId;
use crate::frame::{FrameType, SessionId};
use crate::session::SessionStats;

use super::error::{CloseError, MoveError, SendError};
use super::event::SessionInfo;
use super::Node;

/// A session this node opened (returned by the `connect_*` calls): sends,
/// closes, reports and moves it. Cheap to clone. It keeps its node running
/// (see [`Node`]); once the session closes, its sends fail with
/// [`SendError::SessionClosed`].
///
/// Sessions the peer opened are known by their [`SessionId`] (from
/// [`NodeEvent::SessionEstablished`](super::NodeEvent::SessionEstablished)
/// or a message); [`Node::session`] makes a handle for one.
#[derive(Debug, Clone)]
pub struct Session {
    node: Node,
    info: SessionInfo,
}

impl Session {
    pub(crate) fn new(node: Node, info: SessionInfo) -> Self {
        Session { node, info }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.info.id
    }

    /// The peer's authenticated node id.
    pub fn peer_node(&self) -> NodeId {
        self.info.peer_node
    }

    /// The peer's address when the session was established.
    pub fn peer_addr(&self) -> SocketAddr {
        self.info.peer_addr
    }

    /// What was known of the session when it was established.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The node it belongs to.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Whether it is still established.
    pub fn is_open(&self) -> bool {
        self.node.inner.shared.holder_of(self.info.id).is_some()
    }

    /// Sends `payload` as a DATA message on stream 0 (see [`Node::send_on`]).
    pub fn send(&self, payload: &[u8]) -> Result<(), SendError> {
        self.node.send(self.info.id, payload)
    }

    /// Sends `payload` as a DATA message on `stream_id`.
    pub fn send_on(&self, stream_id: u32, payload: &[u8]) -> Result<(), SendError> {
        self.node.send_on(self.info.id, stream_id, payload)
    }

    /// Sends a message of an application type (0x80–0xFF) or DATA.
    pub fn send_typed(
        &self,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.node
            .send_typed(self.info.id, stream_id, frame_type, payload)
    }

    /// Sends without waiting (see [`Node::try_send`]).
    pub fn try_send(&self, payload: &[u8]) -> Result<(), SendError> {
        self.node.try_send(self.info.id, payload)
    }

    /// Sends a message of any type and stream without waiting (see
    /// [`Node::try_send_typed`]).
    pub fn try_send_typed(
        &self,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.node
            .try_send_typed(self.info.id, stream_id, frame_type, payload)
    }

    /// Sends, waiting for room at most `timeout`.
    pub fn send_timeout(&self, payload: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.node.send_timeout(self.info.id, payload, timeout)
    }

    /// Closes it with a CLOSE frame.
    pub fn close(&self) -> Result<(), CloseError> {
        self.node.close_session(self.info.id)
    }

    /// Its statistics, or `None` once it is gone.
    pub fn stats(&self) -> Option<SessionStats> {
        self.node.session_stats(self.info.id)
    }

    /// Moves it onto a WebSocket connection to `url` (see
    /// [`Node::move_session_to_websocket`]).
    pub fn move_to_websocket(&self, url: &str) -> Result<(), MoveError> {
        self.node.move_session_to_websocket(self.info.id, url)
    }

    /// Moves it onto UDP to `addr` (see [`Node::move_session_to_udp`]).
    pub fn move_to_udp(&self, addr: SocketAddr) -> Result<(), MoveError> {
        self.node.move_session_to_udp(self.info.id, addr)
    }
}

impl Node {
    /// A handle on established session `id` (one the peer opened, for
    /// instance), or `None` if there is none (or its reactor did not answer
    /// within the call timeout).
    pub fn session(&self, id: SessionId) -> Option<Session> {
        let reactor = self.inner.shared.holder_of(id)?;
        let opened = self
            .inner
            .ask(reactor, |reply| crate::reactor::Command::Describe {
                session: id,
                reply,
            })?;
        Some(Session::new(self.clone(), opened.into()))
    }
}
