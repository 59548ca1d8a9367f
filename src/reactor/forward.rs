//! Hand-offs between the reactors of a node.
//!
//! A reactor hands another one datagrams of sessions it owns (received on
//! the wrong socket of the group, or over a transport of this reactor) and
//! datagrams to send over transports that live there. It never blocks on
//! another reactor (two reactors waiting on each other would deadlock): a
//! command that finds the other's queue full waits here, in order, and goes
//! first on the next turns. Beyond [`TO_PEERS_LIMIT`] waiting commands the
//! other reactor has been stuck for long, and further ones are dropped and
//! logged rather than held without bound.

use std::collections::VecDeque;

use super::command::{Command, ReactorHandle};

/// Commands waiting for a busy sibling reactor before further ones are
/// dropped (logged).
pub(crate) const TO_PEERS_LIMIT: usize = 65_536;

/// A reactor's way to its siblings.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    handles: Vec<ReactorHandle>,
    waiting: VecDeque<(usize, Command)>,
}

impl Peers {
    /// Gives the handles of every reactor (this one included).
    pub(crate) fn set(&mut self, handles: Vec<ReactorHandle>) {
        self.handles = handles;
    }

    /// Hands `cmd` to reactor `reactor` without waiting; what does not fit
    /// now waits here, in order.
    pub(crate) fn hand(&mut self, reactor: usize, cmd: Command) {
        if !self.waiting.is_empty() {
            if self.waiting.len() >= TO_PEERS_LIMIT {
                tracing::warn!(reactor, "reactor hand-off queue full: command dropped");
                return;
            }
            self.waiting.push_back((reactor, cmd));
            return;
        }
        if let Some(cmd) = self.try_hand(reactor, cmd) {
            self.waiting.push_back((reactor, cmd));
        }
    }

    /// Returns the command if the reactor's queue is full.
    fn try_hand(&self, reactor: usize, cmd: Command) -> Option<Command> {
        let peer = self.handles.get(reactor)?;
        peer.try_send_back(cmd).err().map(|c| *c)
    }

    /// Hands over what waits, in order, until a queue is full.
    pub(crate) fn retry(&mut self) {
        while let Some((reactor, cmd)) = self.waiting.pop_front() {
            if let Some(cmd) = self.try_hand(reactor, cmd) {
                self.waiting.push_front((reactor, cmd));
                return;
            }
        }
    }
}
