//! Hand-offs between the reactors of a node.
//!
//! A reactor hands another one datagrams of sessions it owns (received on
//! the wrong socket of the group, or over a transport of this reactor) and
//! datagrams to send over transports that live there. It never blocks on
//! another reactor (two reactors waiting on each other would deadlock): a
//! command that finds the other's queue full waits here, in order, and goes
//! first on the next turns. Beyond [`TO_PEERS_LIMIT`] waiting commands the
//! other reactor has been stuck for long, and further ones are dropped and
//! logged rather than held without bound. Forwarded datagrams, which nobody
//! has authenticated yet, may hold at most [`FORWARD_BYTES_LIMIT`] of that.

use std::collections::VecDeque;

use super::command::{Command, ReactorHandle};

/// Commands waiting for a busy sibling reactor before further ones are
/// dropped (logged).
pub(crate) const TO_PEERS_LIMIT: usize = 65_536;

/// Bytes of forwarded datagrams waiting for busy siblings before further
/// ones are dropped (counted): they are not authenticated yet, so anyone
/// can send them.
pub(crate) const FORWARD_BYTES_LIMIT: usize = 4 << 20;

/// A reactor's way to its siblings.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    handles: Vec<ReactorHandle>,
    waiting: VecDeque<(usize, Command)>,
    /// Bytes of the forwarded datagrams in `waiting`.
    forward_bytes: usize,
}

/// The bytes of a forwarded datagram.
fn forwarded(cmd: &Command) -> usize {
    match cmd {
        Command::Forward { datagram, .. } => datagram.len(),
        _ => 0,
    }
}

impl Peers {
    /// Gives the handles of every reactor (this one included).
    pub(crate) fn set(&mut self, handles: Vec<ReactorHandle>) {
        self.handles = handles;
    }

    /// Hands `cmd` to reactor `reactor` without waiting; what does not fit
    /// now waits here, in order. Returns false if it was dropped instead
    /// (see the [module docs](self)).
    pub(crate) fn hand(&mut self, reactor: usize, cmd: Command) -> bool {
        if self.waiting.is_empty() {
            match self.try_hand(reactor, cmd) {
                None => return true,
                Some(cmd) => return self.wait(reactor, cmd),
            }
        }
        self.wait(reactor, cmd)
    }

    fn wait(&mut self, reactor: usize, cmd: Command) -> bool {
        let bytes = forwarded(&cmd);
        if self.waiting.len() >= TO_PEERS_LIMIT || self.forward_bytes + bytes > FORWARD_BYTES_LIMIT
        {
            tracing::debug!(reactor, "reactor hand-off queue full: command dropped");
            return false;
        }
        self.forward_bytes += bytes;
        self.waiting.push_back((reactor, cmd));
        true
    }

    /// Returns the command if the reactor's queue is full.
    fn try_hand(&self, reactor: usize, cmd: Command) -> Option<Command> {
        let peer = self.handles.get(reactor)?;
        peer.try_send_back(cmd).err().map(|c| *c)
    }

    /// Hands over what waits, in order, until a queue is full.
    pub(crate) fn retry(&mut self) {
        while let Some((reactor, cmd)) = self.waiting.pop_front() {
            let bytes = forwarded(&cmd);
            if let Some(cmd) = self.try_hand(reactor, cmd) {
                self.waiting.push_front((reactor, cmd));
                return;
            }
            self.forward_bytes -= bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::reactor::command::{self, COMMAND_QUEUE};

    fn forward(len: usize) -> Command {
        Command::Forward {
            transport: 0,
            from: "127.0.0.1:9".parse().expect("addr"),
            path: None,
            datagram: vec![0; len],
        }
    }

    #[test]
    fn forwarded_datagrams_waiting_for_a_stuck_reactor_are_bounded_by_bytes() {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let (handle, inbox) = command::queue(waker);
        let mut peers = Peers::default();
        peers.set(vec![handle]);
        // The sibling's queue fills; later commands wait here.
        for _ in 0..COMMAND_QUEUE {
            assert!(peers.hand(0, Command::Stop));
        }
        assert!(peers.waiting.is_empty());
        let size = 64 * 1024;
        let fit = FORWARD_BYTES_LIMIT / size;
        for _ in 0..fit {
            assert!(peers.hand(0, forward(size)));
        }
        assert!(!peers.hand(0, forward(size)), "beyond the byte bound");
        // Other commands still wait (bounded by count).
        assert!(peers.hand(0, Command::Stop));
        assert_eq!(peers.forward_bytes, fit * size);
        // The sibling drains: what waited goes, in order, and the bytes
        // are given back.
        while inbox.next().is_some() {}
        peers.retry();
        assert_eq!(peers.waiting.len(), 0);
        assert_eq!(peers.forward_bytes, 0);
        assert_eq!(inbox.commands.len(), fit + 1);
    }
}
