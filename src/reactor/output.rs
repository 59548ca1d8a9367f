//! Where a reactor takes what its endpoint produces.
//!
//! [`Direct`] sends datagrams at once (to a transport of this reactor, or
//! through the reactor the path's transport lives on) and is used for
//! everything the application asked. [`Deferred`] is used while a transport
//! is being read, when no transport can be written: datagrams wait in the
//! [`Outbox`] until the turn's flush. Both hand events to the application.

use crate::endpoint::{Event, Output, Path};
use crate::session::Transmits;
use crate::transport::TransportError;

use super::command::Command;
use super::deliver::App;
use super::forward::Peers;
use super::io::{Io, Outbox};

/// Sends at once. See the [module docs](self).
pub(crate) struct Direct<'a> {
    pub index: usize,
    pub io: &'a mut Io,
    pub peers: &'a mut Peers,
    pub app: &'a mut App,
    /// The first transport refusal since it was made.
    pub error: Option<TransportError>,
}

impl Output for Direct<'_> {
    fn transmit(&mut self, path: &Path, datagrams: &mut Transmits) {
        if path.via != self.index {
            let datagrams = datagrams.iter().map(<[u8]>::to_vec).collect();
            let cmd = Command::PathSend {
                transport: path.transport,
                to: path.peer,
                datagrams,
            };
            self.peers.hand(path.via, cmd);
            return;
        }
        if let Err(e) = self.io.send_all(path.transport, path.peer, datagrams) {
            self.io.send_failed(path.transport);
            self.error.get_or_insert(e);
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Authenticated { path } if path.via == self.index => {
                self.io.authenticated(path.transport, path.peer)
            }
            Event::Authenticated { path } => {
                let cmd = Command::Authenticated {
                    transport: path.transport,
                    peer: path.peer,
                };
                self.peers.hand(path.via, cmd);
            }
            Event::Replaced { shard, id, salt } => {
                self.peers
                    .hand(shard, Command::CloseReplaced { session: id, salt });
            }
            event => self.app.deliver(event),
        }
    }
}

/// Queues for the turn's flush. See the [module docs](self).
pub(crate) struct Deferred<'a> {
    pub outbox: &'a mut Outbox,
    pub app: &'a mut App,
}

impl Output for Deferred<'_> {
    fn transmit(&mut self, path: &Path, datagrams: &mut Transmits) {
        self.outbox.push(path, datagrams);
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Authenticated { path } => {
                let at = (path.via, path.transport, path.peer);
                self.outbox.authenticated.push(at);
            }
            Event::Replaced { shard, id, salt } => self.outbox.replaced.push((shard, id, salt)),
            event => self.app.deliver(event),
        }
    }
}
