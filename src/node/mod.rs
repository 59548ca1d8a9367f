//! The node: what applications use.
//!
//! A [`Node`] has an identity (its `node_seed`) and a network membership (the
//! `shared_seed`). It runs one reactor thread per core; each owns a UDP socket
//! of a `SO_REUSEPORT` group and a shard of the sessions.
//!
//! - **Open** a session with [`Node::connect_udp`] or
//!   [`Node::connect_websocket`] (or their `_with` forms, for a timeout or a
//!   WebSocket configuration of its own: [`ConnectOptions`]); each returns a
//!   [`Session`] handle once both sides hold the session.
//! - **Send** through the handle or the node: [`Node::send`] waits for room
//!   in a full queue (up to [`NodeConfig::send_timeout`]),
//!   [`Node::try_send`] never waits, [`Node::send_confirmed`] waits for the
//!   reactor's verdict; [`Node::send_to_sessions`] sends one message to many.
//! - **Receive** one of two ways: the [`Events`] channel ([`Node::events`]),
//!   which any number of the application's threads may drain, or a
//!   [`Handler`] ([`Node::set_handler`]) that runs on the reactors or on
//!   worker threads. Either way every message carries the peer's node id.
//!   A slow consumer never stalls I/O: when the channel is full, UDP
//!   messages are dropped and counted in `packets_dropped`, WebSocket
//!   reading pauses; session events are never dropped.
//!
//! ```no_run
//! use stt::node::{Node, NodeConfig, NodeEvent};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let network = [9u8; 32]; // use generated seeds: `stt seeds`
//! let server = Node::start(NodeConfig::new(&[1; 32], &network))?;
//! let addr = server.udp_local_addr().expect("UDP is on");
//!
//! let client = Node::start(NodeConfig::client(&[2; 32], &network))?;
//! let session = client.connect_udp(addr)?;
//! session.send(b"hello")?;
//! if let Ok(NodeEvent::Message(message)) = server.events().recv() {
//!     println!("{} says {}", message.peer_node, String::from_utf8_lossy(&message.payload));
//! }
//! # Ok(())
//! # }
//! ```

mod channel;
mod config;
mod connect;
mod error;
mod event;
mod handler;
mod send;
mod session;
mod start;
mod stats;
mod token;
mod ws;

pub use config::{Authorizer, NodeConfig, PeerCandidate, QuotaConfig, StartError};
pub use connect::ConnectOptions;
pub use error::{CloseError, ConnectError, HandlerError, ListenError, MoveError, SendError};
pub use event::{
    Events, Message, NodeEvent, RecvError, RecvTimeoutError, SessionInfo, TryRecvError,
};
pub use handler::{on_reactor, on_worker, FnHandler, Handler, Replies, RunsOn};
pub use session::Session;
pub use stats::NodeStats;
pub use token::RevokeError;
pub use ws::TransportId;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::crypto::NodeId;
use crate::reactor::{Delivery, ReactorHandle, Shared};
use crate::transport::udp::UdpSocketInfo;
use crate::transport::TransportCounters;

/// A running node. Cheap to clone: every clone (and every [`Session`]
/// handle) drives the same node, which stops when [`stop`](Self::stop) is
/// called or the last clone and handle are dropped. See the
/// [module docs](self).
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// A node that does not keep it running (see [`Node::downgrade`]): what a
/// handler that needs the node should capture.
#[derive(Clone, Debug)]
pub struct WeakNode {
    inner: Weak<Inner>,
}

impl WeakNode {
    /// The node, if it still exists.
    pub fn upgrade(&self) -> Option<Node> {
        self.inner.upgrade().map(|inner| Node { inner })
    }
}

/// What the application's sends need: the reactors' queues and the
/// node-wide state, without the threads (worker threads hold this).
pub(crate) struct Core {
    pub node_id: NodeId,
    pub shared: Arc<Shared>,
    pub reactors: Vec<ReactorHandle>,
    pub running: AtomicBool,
    pub send_timeout: Duration,
    pub call_timeout: Duration,
}

/// The node behind every [`Node`] clone and [`Session`] handle.
pub(crate) struct Inner {
    core: Arc<Core>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    events: Receiver<Delivery>,
    udp: Option<(UdpSocketInfo, Vec<Arc<TransportCounters>>)>,
    next_reactor: AtomicUsize,
    server_mode: bool,
    /// How long a connect waits by default: the handshake timeout and a
    /// second.
    connect_timeout: Duration,
    ws: Mutex<ws::WsState>,
    /// One receiver per worker thread.
    work: Vec<Receiver<Delivery>>,
    handler: OnceLock<Arc<dyn Handler>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::ops::Deref for Inner {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Node {
    /// This node's id (SHA-256 of its static public key).
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// A handle that does not keep the node running.
    pub fn downgrade(&self) -> WeakNode {
        WeakNode {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Whether the node is running.
    pub fn is_running(&self) -> bool {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// Whether the node was started in server mode.
    pub fn server_mode(&self) -> bool {
        self.inner.server_mode
    }

    /// The UDP address the node is bound to (with the port the system chose
    /// for port 0).
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        self.inner.udp.as_ref().map(|(info, _)| info.local_addr)
    }

    /// What the kernel granted for the UDP sockets.
    pub fn udp_socket_info(&self) -> Option<UdpSocketInfo> {
        self.inner.udp.as_ref().map(|(info, _)| *info)
    }

    /// Sessions currently open (in any state).
    pub fn session_count(&self) -> usize {
        self.inner
            .shared
            .endpoint
            .stats
            .sessions
            .load(Ordering::Relaxed)
    }

    /// The established sessions.
    pub fn sessions(&self) -> Vec<crate::frame::SessionId> {
        self.inner.shared.endpoint.directory.all()
    }

    /// Starts accepting incoming handshakes.
    pub fn enable_accept_connections(&self) {
        self.set_accepting(true);
    }

    /// Stops accepting incoming handshakes; open sessions continue.
    pub fn disable_accept_connections(&self) {
        self.set_accepting(false);
    }

    fn set_accepting(&self, on: bool) {
        self.inner
            .shared
            .endpoint
            .accepting
            .store(on, Ordering::Relaxed);
    }

    /// Whether incoming handshakes are accepted.
    pub fn accepting_connections(&self) -> bool {
        self.inner.shared.endpoint.accepting.load(Ordering::Relaxed)
    }

    /// The channel of what arrives: sessions established and closed, and
    /// messages unless a [`Handler`] takes them. Bounded; every clone drains
    /// the same queue.
    pub fn events(&self) -> Events {
        Events::new(self.inner.events.clone(), self.inner.shared.queued.clone())
    }

    /// Receives every message through `handler` instead of
    /// [`events`](Self::events) (which keeps the session events), on the
    /// reactors or on worker threads as the handler says (see
    /// [`Handler`]). Set once per node.
    pub fn set_handler(&self, handler: impl Handler) -> Result<(), HandlerError> {
        let handler: Arc<dyn Handler> = Arc::new(handler);
        self.inner
            .handler
            .set(handler.clone())
            .map_err(|_| HandlerError::AlreadySet)?;
        match handler.runs_on() {
            RunsOn::Reactor => {
                let inline = crate::reactor::InlineHandler(Arc::new(move |incoming, queue| {
                    handler.on_message(incoming.into(), &mut Replies::reactor(queue));
                }));
                // The node's own OnceLock above admits one handler only.
                let _ = self.inner.shared.inline.set(inline);
            }
            RunsOn::Worker => {
                self.start_workers(handler);
                self.inner
                    .shared
                    .dispatch
                    .to_workers
                    .store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn start_workers(&self, handler: Arc<dyn Handler>) {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
        for (i, work) in self.inner.work.iter().enumerate() {
            let work = work.clone();
            let core = self.inner.core.clone();
            let handler = handler.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("stt-worker-{i}"))
                .spawn(move || handler::worker(work, handler, core));
            match spawned {
                Ok(t) => workers.push(t),
                Err(e) => tracing::error!(error = %e, "a worker thread could not start"),
            }
        }
    }

    /// Gives a received message's buffer back, for a later message to be
    /// delivered in (or sent from): optional, and worth it for large
    /// messages at high rates. Without it, a message's buffer is allocated
    /// on a reactor thread and freed on the application's; with glibc's
    /// malloc, freeing large buffers across threads trims the heap, and
    /// every later message then faults in and zeroes fresh pages (setting
    /// `MALLOC_TRIM_THRESHOLD_` high, or using jemalloc or mimalloc, has the
    /// same effect without code).
    ///
    /// Given back, buffers wait in the node's pool: up to 8 MiB of them,
    /// none over 1 MiB (the rest are freed). Messages that fit one frame are
    /// delivered in them; a message reassembled from fragments is not. A
    /// delivered message's buffer may then have more capacity than its
    /// length: `shrink_to_fit` one you keep for long.
    pub fn recycle(&self, payload: Vec<u8>) {
        self.inner.shared.pool.give(payload);
    }

    /// Stops the node: closes every session with a CLOSE frame, sends what
    /// is queued, and joins every thread. Idempotent. Called from a handler,
    /// it does not wait for the thread the handler runs on.
    pub fn stop(&self) {
        self.inner.stop();
    }
}

impl Inner {
    fn stop(&self) {
        self.running.store(false, Ordering::Relaxed);
        self.shared.stopping.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        if threads.is_empty() {
            return;
        }
        for r in &self.reactors {
            r.stop();
        }
        let me = std::thread::current().id();
        for t in threads {
            // Stopped from a reactor handler: that reactor finishes by itself
            // once the handler returns (joining it would wait on ourselves).
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // Workers see `stopping` within their poll interval.
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            if w.thread().id() != me {
                let _ = w.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.inner.node_id)
            .field("udp", &self.udp_local_addr())
            .field("reactors", &self.inner.reactors.len())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}
