//! The engine: one event loop per core.
//!
//! A reactor is a thread that owns its transports (for UDP, its own socket
//! of the `SO_REUSEPORT` group) and an [`Endpoint`], its shard of the
//! session table. It waits on one `mio::Poll`, in which sit its transports'
//! event sources and a `mio::Waker` for commands. No lock is taken on the
//! per-packet path: a datagram is received, given to the endpoint (which
//! decrypts it in place), and its messages handed to the application, all
//! on this thread. Everything a datagram means is the endpoint's business;
//! the reactor only moves bytes, honours timers and hands things over.
//!
//! Session ids carry their owner in their low byte (`id & 0xFF` modulo the
//! number of reactors); the `SO_REUSEPORT` steering program makes the kernel
//! deliver every datagram of a session to its owner's socket. A datagram
//! that lands elsewhere anyway is forwarded to its owner ([`forward`]).
//!
//! ## One loop turn
//!
//! 1. wait for readiness or the earliest timer (no wait when a transport
//!    still had datagrams last turn);
//! 2. drain commands (connect, send, close, forwarded datagrams, stop),
//!    coalescing consecutive sends ([`coalesce`]);
//! 3. receive from every ready transport, unless the application is behind
//!    ([`deliver`]) or too many answers wait ([`io`]);
//! 4. run the transports' and the endpoint's timers;
//! 5. seal what in-reactor handlers sent, hand commands to other reactors,
//!    and flush every transport: a turn's datagrams leave in one batch.

mod coalesce;
mod command;
mod deliver;
mod forward;
mod io;
mod output;

pub(crate) use command::{Command, Connect, Failure, ReactorHandle, Refused, Wait};
pub(crate) use deliver::{
    Delivery, Dispatch, Incoming, InlineHandler, InlineQueue, QueuedBytes, SessionOpened, Shared,
};

use std::io as stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use crate::endpoint::{Endpoint, Link, Routed};
use crate::transport::{Transport, TransportCounters, TransportError};
use coalesce::Coalescing;
use command::Inbox;
use deliver::App;
use forward::Peers;
use io::{Io, Outbox, Slot};
use output::{Deferred, Direct};

const WAKER: Token = Token(usize::MAX);

/// Commands handled per loop turn before the turn's datagrams are flushed:
/// large enough to fill several `sendmmsg` batches, small enough that an
/// application sending without pause cannot keep the reactor from flushing,
/// receiving and running timers.
const COMMANDS_PER_TURN: usize = 256;

/// How soon a reactor that paused reading a reliable transport looks again.
const PAUSE_RECHECK: Duration = Duration::from_millis(1);

/// What [`Reactor::drain_commands`] left behind.
enum Drained {
    All,
    More,
    Stop,
}

/// One reactor. Built on its own thread, then run there.
pub(crate) struct Reactor {
    index: usize,
    poll: Poll,
    inbox: Inbox,
    peers: Peers,
    io: Io,
    outbox: Outbox,
    endpoint: Endpoint,
    app: App,
    /// Sessions whose channels took messages in this turn's commands.
    channel_touched: Vec<crate::frame::SessionId>,
    /// Datagrams received here for sessions of other reactors.
    forwards: Vec<(usize, Command)>,
}

impl Reactor {
    /// Builds reactor `index` with its transports (each one of a group
    /// spread over every reactor, as the UDP sockets are); returns it and
    /// its handle.
    pub(crate) fn new(
        index: usize,
        shared: Arc<Shared>,
        transports: Vec<Box<dyn Transport>>,
    ) -> stdio::Result<(Reactor, ReactorHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (handle, inbox) = command::queue(waker);
        let endpoint = Endpoint::new(
            index,
            shared.endpoint.clone(),
            Box::new(ring::rand::SystemRandom::new()),
        );
        let mut reactor = Reactor {
            index,
            poll,
            inbox,
            peers: Peers::default(),
            io: Io::default(),
            outbox: Outbox::default(),
            endpoint,
            app: App::new(shared),
            channel_touched: Vec::new(),
            forwards: Vec::new(),
        };
        for t in transports {
            reactor.add_transport(t, true)?;
        }
        Ok((reactor, handle))
    }

    /// Gives the reactor the handles of all reactors (itself included), for
    /// forwarding.
    pub(crate) fn set_peers(&mut self, peers: Vec<ReactorHandle>) {
        self.peers.set(peers);
    }

    /// Adds a transport; `sharded` for one of a group spread over every
    /// reactor, whose sessions are owned by session id.
    fn add_transport(
        &mut self,
        mut transport: Box<dyn Transport>,
        sharded: bool,
    ) -> stdio::Result<usize> {
        let index = self.io.slots.len();
        transport.register(self.poll.registry(), Token(index))?;
        self.endpoint.add_link(Link {
            kind: transport.kind(),
            reliable: transport.is_reliable(),
            max_datagram: transport.max_datagram_size(),
            sharded,
            counters: transport.counters().clone(),
        });
        self.io.slots.push(Slot::new(transport));
        Ok(index)
    }

    /// Runs `f` with the endpoint and an output that sends at once; returns
    /// its result and the first transport refusal.
    fn with_endpoint<R>(
        &mut self,
        f: impl FnOnce(&mut Endpoint, &mut Direct<'_>) -> R,
    ) -> (R, Option<TransportError>) {
        self.drain_outbox();
        let mut out = Direct {
            index: self.index,
            io: &mut self.io,
            peers: &mut self.peers,
            app: &mut self.app,
            error: None,
        };
        let r = f(&mut self.endpoint, &mut out);
        (r, out.error)
    }

    /// Builds and sends the packets of the sessions whose channels took
    /// messages this turn.
    fn flush_channels(&mut self, now: Instant) {
        if self.channel_touched.is_empty() {
            return;
        }
        let touched = std::mem::take(&mut self.channel_touched);
        self.with_endpoint(|ep, out| {
            for &id in &touched {
                ep.flush_session(id, now, out);
            }
        });
        self.channel_touched = touched;
        self.channel_touched.clear();
    }

    /// Gives the flow-control credit of reliable channel messages handed
    /// to the application back to their sessions.
    fn release_credits(&mut self, now: Instant) {
        if self.app.released.is_empty() {
            return;
        }
        let mut released = std::mem::take(&mut self.app.released);
        self.with_endpoint(|ep, out| {
            for &(id, credit) in &released {
                ep.release_credit(now, id, credit, out);
            }
        });
        released.clear();
        if self.app.released.is_empty() {
            self.app.released = released;
        }
    }

    /// Runs the loop until a `Stop` command.
    pub(crate) fn run(mut self) {
        // However the loop ends (a failed poll, a panic), senders waiting
        // for room must learn that this reactor is gone.
        struct Exit(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Exit {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _exit = Exit(self.inbox.stop.clone());
        let mut events = Events::with_capacity(256);
        let mut busy = true;
        let mut paused = false;
        let mut throttled = false;
        loop {
            let now = Instant::now();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                let transports = self
                    .io
                    .slots
                    .iter()
                    .filter_map(|s| s.transport.poll_timeout())
                    .min();
                let mut next = match (self.endpoint.poll_timeout(), transports) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if paused || throttled || self.app.waiting() {
                    // A reliable transport waits for the application to
                    // drain its queue, or for its peer to read; deliveries
                    // wait for room in the application's channel.
                    next = Some(next.map_or(now + PAUSE_RECHECK, |t| t.min(now + PAUSE_RECHECK)));
                }
                next.map(|t| t.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != stdio::ErrorKind::Interrupted {
                    // The poll itself failed: nothing more can run here.
                    break;
                }
            }
            let mut woken = false;
            for ev in events.iter() {
                match ev.token() {
                    WAKER => woken = true,
                    Token(i) => {
                        if let Some(s) = self.io.slots.get_mut(i) {
                            s.ready = true;
                        }
                    }
                }
            }
            let now = Instant::now();
            busy = false;
            // Reliable peers reading slowly: take no more sends until they
            // catch up (the application's sends wait meanwhile); a stop
            // still gets through.
            throttled = self.io.held_total.throttles();
            if woken || !self.inbox.commands.is_empty() {
                self.inbox.notified.store(false, Ordering::Release);
                match self.drain_commands(now, throttled) {
                    Drained::Stop => break,
                    // More wait: come back without sleeping, after this
                    // turn's datagrams have gone out.
                    Drained::More => busy = true,
                    Drained::All => {}
                }
            }
            if self.inbox.stop.load(Ordering::Acquire) && self.inbox.commands.is_empty() {
                // Stopped while the queue was too full to take the command.
                break;
            }
            // Commands may have taken a while: datagrams are stamped with
            // the time they are read (a stale stamp would shorten the
            // round trips their acknowledgements measure).
            let now = Instant::now();
            let (read, pause) = self.receive(now);
            busy |= read;
            paused = pause;
            let now = Instant::now();
            for s in &mut self.io.slots {
                // A reliable transport that is not being read (the
                // application is behind) must not take its silence for a
                // dead peer: its timers wait with it.
                if paused && s.reliable {
                    continue;
                }
                if s.transport.poll_timeout().is_some_and(|d| d <= now) {
                    s.transport.handle_timeout(now);
                }
            }
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.with_endpoint(|ep, out| ep.handle_timeout(now, out));
            }
            self.run_inline(now);
            self.release_credits(now);
            self.forward();
            self.flush();
        }
        self.shutdown();
    }

    /// Receives from every ready transport; returns whether anything was
    /// read and whether a transport was left unread on purpose.
    ///
    /// A throttled reactor keeps reading (its application's channel paces
    /// that): two nodes that both stopped reading while their own writes
    /// wait would wait on each other for ever. Reliable transports pause
    /// while the application is behind; every transport pauses while too
    /// many in-reactor handlers' answers wait (nothing else would hold their
    /// answers back; a datagram the kernel then drops is lost as any
    /// datagram may be).
    fn receive(&mut self, now: Instant) -> (bool, bool) {
        let behind = self.app.behind();
        let answers_wait = self.io.held_total.stops_answering();
        let (mut read, mut paused) = (false, false);
        let Reactor {
            io,
            endpoint,
            outbox,
            app,
            forwards,
            ..
        } = self;
        for (i, slot) in io.slots.iter_mut().enumerate() {
            if !slot.ready {
                continue;
            }
            if answers_wait || (behind && slot.reliable) {
                // Backpressure: leave the data in the kernel, whose TCP
                // window then slows the sender; nothing is dropped.
                paused = true;
                continue;
            }
            let mut out = Deferred {
                outbox: &mut *outbox,
                app: &mut *app,
            };
            let got = slot.transport.recv(&mut |from, datagram| {
                if let Routed::Forward { owner, path } =
                    endpoint.handle(now, i, from, datagram, &mut out)
                {
                    forwards.push((
                        owner,
                        Command::Forward {
                            transport: i,
                            from,
                            path: path.map(Box::new),
                            datagram: datagram.to_vec(),
                        },
                    ));
                }
            });
            match got {
                Ok(n) if n > 0 => read = true,
                Ok(_) => slot.ready = false,
                Err(e) => {
                    tracing::warn!(transport = slot.kind, error = %e, "receive failed");
                    TransportCounters::add(&slot.counters.errors_receive, 1);
                    slot.ready = false;
                }
            }
        }
        (read, paused)
    }

    /// Handles up to [`COMMANDS_PER_TURN`] queued commands. While
    /// `throttled`, only a stop is taken (sends wait in the queue).
    fn drain_commands(&mut self, now: Instant, throttled: bool) -> Drained {
        if throttled {
            return if self.inbox.stop.load(Ordering::Acquire) {
                Drained::Stop
            } else {
                Drained::All
            };
        }
        let mut batch: Coalescing = None;
        for _ in 0..COMMANDS_PER_TURN {
            let Some(cmd) = self.inbox.next() else {
                self.send_batch(&mut batch, now);
                self.flush_channels(now);
                return Drained::All;
            };
            // Channel messages are queued in their session, and its packets
            // built once the turn's commands are in: small messages then
            // share packets (one seal, one datagram for many).
            if let Command::SendChannel {
                session,
                channel,
                frame_type,
                payload,
                policy,
            } = cmd
            {
                let queued = self
                    .endpoint
                    .queue_channel(now, session, channel, frame_type, payload, policy);
                if queued && !self.channel_touched.contains(&session) {
                    self.channel_touched.push(session);
                }
                continue;
            }
            if let Command::Send {
                session,
                stream_id,
                frame_type: crate::frame::FrameType::Data,
                payload,
                reply: None,
            } = cmd
            {
                self.coalesce(&mut batch, session, stream_id, payload, now);
                continue;
            }
            self.send_batch(&mut batch, now);
            if let Command::Stop = cmd {
                return Drained::Stop;
            }
            self.execute(cmd, now);
        }
        self.send_batch(&mut batch, now);
        self.flush_channels(now);
        if self.inbox.commands.is_empty() {
            Drained::All
        } else {
            Drained::More
        }
    }

    /// Carries out one command (other than a plain send or a stop).
    fn execute(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Stop => {}
            Command::Connect(c) => self.connect(*c, now),
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
                self.with_endpoint(|ep, out| ep.close(now, session, code, &reason, out));
            }
            Command::SendMany {
                sessions,
                stream_id,
                frame_type,
                payload,
                reply,
            } => {
                // One seal per session; the datagrams leave together in this
                // turn's batched flush.
                let results = sessions
                    .into_iter()
                    .map(|id| {
                        let (sealed, refused) = self.with_endpoint(|ep, out| {
                            ep.send(now, id, stream_id, frame_type, &payload, out)
                        });
                        let r = match (sealed, refused) {
                            (Err(e), _) => Err(e.into()),
                            (Ok(()), Some(e)) => Err(e.into()),
                            (Ok(()), None) => Ok(()),
                        };
                        (id, r)
                    })
                    .collect();
                let _ = reply.send(results);
            }
            Command::CloseReplaced { session, salt } => {
                self.with_endpoint(|ep, out| ep.close_replaced(now, session, salt, out));
            }
            Command::CloseClient { client_id, reply } => {
                let (closed, _) =
                    self.with_endpoint(|ep, out| ep.close_client(now, client_id, out));
                let _ = reply.send(Ok(closed));
            }
            Command::SessionStats { session, reply } => {
                let _ = reply.send(self.endpoint.session_stats(session));
            }
            Command::SendChannel {
                session,
                channel,
                frame_type,
                payload,
                policy,
            } => {
                // A refusal is counted (errors_send) and its reservation
                // returned; the sender learnt of the checks it could make.
                if self
                    .endpoint
                    .queue_channel(now, session, channel, frame_type, payload, policy)
                {
                    self.with_endpoint(|ep, out| ep.flush_session(session, now, out));
                }
            }
            Command::ChannelStats { session, reply } => {
                let _ = reply.send(self.endpoint.channel_stats(session, now));
            }
            Command::Describe { session, reply } => {
                let described =
                    self.endpoint
                        .describe(session)
                        .map(|(peer, path, initiator, client)| SessionOpened {
                            id: session,
                            peer_node: peer,
                            peer_addr: path.peer,
                            transport: path.kind,
                            initiator,
                            client: client.cloned(),
                        });
                let _ = reply.send(described);
            }
            Command::Forward {
                transport,
                from,
                path,
                mut datagram,
            } => {
                let (routed, _) = self.with_endpoint(|ep, out| match path {
                    Some(path) => {
                        ep.handle_via(now, *path, &mut datagram, out);
                        Routed::Done
                    }
                    // From a sibling socket of the group: this reactor owns
                    // the id, but the session may be held by a third one.
                    None => ep.handle(now, transport, from, &mut datagram, out),
                });
                if let Routed::Forward { owner, path } = routed {
                    let cmd = Command::Forward {
                        transport,
                        from,
                        path: path.map(Box::new),
                        datagram,
                    };
                    self.peers.hand(owner, cmd);
                }
            }
            Command::PathSend {
                transport,
                to,
                datagrams,
            } => {
                for d in datagrams {
                    if self.io.send(transport, to, &d).is_err() {
                        self.io.send_failed(transport);
                    }
                }
            }
            Command::Authenticated { transport, peer } => self.io.authenticated(transport, peer),
            Command::SetPath {
                session,
                path,
                reply,
            } => {
                let (r, _) = self.with_endpoint(|ep, out| ep.set_path(now, session, *path, out));
                let _ = reply.send(r.map_err(Failure::from));
            }
            Command::OpenPath {
                transport,
                target,
                addr,
                reply,
            } => {
                let r = match self.io.slots.get_mut(transport) {
                    None => Err(Failure::NoSuchTransport),
                    Some(s) => s
                        .transport
                        .open(&target, addr)
                        .map_err(Failure::from)
                        .and_then(|peer| {
                            self.endpoint
                                .path(transport, peer)
                                .ok_or(Failure::NoSuchTransport)
                        }),
                };
                let _ = reply.send(r);
            }
            Command::AddTransport { transport, reply } => {
                let r = self
                    .add_transport(transport, false)
                    .map_err(|e| Failure::from(TransportError::io("registering the transport", e)));
                let _ = reply.send(r);
            }
            Command::TransportStats { transport, reply } => {
                let _ = reply.send(self.io.slots.get(transport).map(|s| s.counters.snapshot()));
            }
        }
    }

    /// Opens a session for the application: the transport opens its target
    /// first, if any; the reply waits for the handshake's outcome.
    fn connect(&mut self, c: Connect, now: Instant) {
        let Connect {
            transport,
            peer,
            target,
            options,
            expect,
            token,
            reply,
        } = c;
        let Some(slot) = self.io.slots.get_mut(transport) else {
            let _ = reply.send(Err(Failure::NoSuchTransport));
            return;
        };
        let peer = match target {
            None => peer,
            Some(target) => match slot.transport.open_with(&target, peer, options.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
            },
        };
        let Some(path) = self.endpoint.path(transport, peer) else {
            let _ = reply.send(Err(Failure::NoSuchTransport));
            return;
        };
        let (opened, _) =
            self.with_endpoint(|ep, out| ep.connect(now, path, expect, token.as_deref(), out));
        match opened {
            Ok(id) => {
                self.app.connects.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// Hands commands to other reactors: what waited first, then this
    /// turn's forwarded datagrams.
    fn forward(&mut self) {
        self.peers.retry();
        for (owner, cmd) in self.forwards.drain(..) {
            let transport = match &cmd {
                Command::Forward { transport, .. } => Some(*transport),
                _ => None,
            };
            if !self.peers.hand(owner, cmd) {
                if let Some(s) = transport.and_then(|t| self.io.slots.get(t)) {
                    TransportCounters::add(&s.counters.packets_dropped, 1);
                }
            }
        }
    }

    /// Sends what waits: held datagrams, the outbox, then every transport's
    /// queue.
    fn flush(&mut self) {
        self.io.release_held();
        self.drain_outbox();
        self.io.flush();
    }

    /// Hands what waits in the outbox to the transports, in order (before
    /// anything sent directly: a session's packets must leave in the order
    /// they were numbered, or its peer sees them reordered).
    fn drain_outbox(&mut self) {
        if !self.outbox.is_empty() {
            let Reactor {
                index,
                io,
                peers,
                outbox,
                ..
            } = self;
            for (shard, session, salt) in outbox.replaced.drain(..) {
                peers.hand(shard, Command::CloseReplaced { session, salt });
            }
            for (via, transport, peer) in outbox.authenticated.drain(..) {
                if via == *index {
                    io.authenticated(transport, peer);
                } else {
                    peers.hand(via, Command::Authenticated { transport, peer });
                }
            }
            outbox.drain(|via, transport, to, datagram| {
                if via == *index {
                    if io.send(transport, to, datagram).is_err() {
                        io.send_failed(transport);
                    }
                } else {
                    let cmd = Command::PathSend {
                        transport,
                        to,
                        datagrams: vec![datagram.to_vec()],
                    };
                    peers.hand(via, cmd);
                }
            });
        }
    }

    /// Closes every session with a CLOSE frame, sends what is queued, and
    /// releases the transports.
    fn shutdown(&mut self) {
        let now = Instant::now();
        self.with_endpoint(|ep, out| ep.close_all(now, out));
        self.flush();
        // Give a full socket buffer a moment to take the CLOSE frames.
        let deadline = now + Duration::from_millis(100);
        while self.io.slots.iter().any(|s| s.transport.wants_write()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            self.flush();
        }
        self.app.stopped();
        for s in &mut self.io.slots {
            let _ = s.transport.deregister(self.poll.registry());
            s.transport.counters().set_stopped();
        }
    }
}
