//! Sending: to one session (waiting for room, without waiting, or waiting
//! for the reactor's verdict), to many, with failover; closing a session;
//! asking a reactor and waiting for its answer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::frame::{close_code, FrameType, SessionId};
use crate::reactor::{Command, Failure, Refused, Wait};
use crate::session::SessionStats;

use super::error::{CloseError, SendError};
use super::{Core, Node};

/// Reactor answers: `Reply<T>` in the reactor's terms.
type Answer<T> = crossbeam_channel::Sender<Result<T, Failure>>;

impl Core {
    /// Queues `command` for reactor `reactor`, waiting for room as `wait`
    /// says.
    pub(crate) fn command(
        &self,
        reactor: usize,
        command: Command,
        wait: Wait,
    ) -> Result<(), Failure> {
        if !self.running.load(Ordering::Relaxed) {
            return Err(Failure::Stopped);
        }
        let handle = self.reactors.get(reactor).ok_or(Failure::NoSuchTransport)?;
        handle.send(command, wait).map_err(|e| match e {
            Refused::Full => Failure::Full,
            Refused::Stopped => Failure::Stopped,
        })
    }

    /// Asks reactor `reactor` and waits for its answer, up to
    /// `call_timeout`.
    pub(crate) fn call<T>(
        &self,
        reactor: usize,
        make: impl FnOnce(Answer<T>) -> Command,
    ) -> Result<T, Failure> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let deadline = Instant::now() + self.call_timeout;
        self.command(reactor, make(tx), Wait::Until(Some(deadline)))
            .map_err(|e| match e {
                Failure::Full => Failure::TimedOut(self.call_timeout),
                other => other,
            })?;
        match rx.recv_deadline(deadline) {
            Ok(answer) => answer,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(Failure::TimedOut(self.call_timeout))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(Failure::Stopped),
        }
    }

    /// The reactor holding established session `session`.
    fn holder(&self, session: SessionId) -> Result<usize, SendError> {
        self.shared
            .holder_of(session)
            .ok_or(SendError::SessionClosed(session))
    }

    /// Queues a message for its session's reactor, waiting for room until
    /// `deadline` (`Wait::Never`: not at all).
    pub(crate) fn queue_message(
        &self,
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
        wait: Wait,
    ) -> Result<(), SendError> {
        self.shared
            .check_message(frame_type, payload.len())
            .map_err(SendError::from_failure)?;
        let reactor = self.holder(session)?;
        let command = Command::Send {
            session,
            stream_id,
            frame_type,
            payload: self.shared.pool.copy_of(payload),
            reply: None,
        };
        self.command(reactor, command, wait)
            .map_err(SendError::from_failure)
    }

    /// [`Node::send_typed`].
    pub(crate) fn send_typed(
        &self,
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.queue_message(
            session,
            stream_id,
            frame_type,
            payload,
            Wait::For(self.send_timeout),
        )
    }

    /// [`Node::send_confirmed`].
    pub(crate) fn send_confirmed(
        &self,
        session: SessionId,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.shared
            .check_message(FrameType::Data, payload.len())
            .map_err(SendError::from_failure)?;
        let reactor = self.holder(session)?;
        let payload = self.shared.pool.copy_of(payload);
        self.call(reactor, |reply| Command::Send {
            session,
            stream_id,
            frame_type: FrameType::Data,
            payload,
            reply: Some(reply),
        })
        .map_err(SendError::from_failure)
    }

    /// [`Node::close_session`].
    pub(crate) fn close(&self, session: SessionId) -> Result<(), CloseError> {
        let reactor = self
            .shared
            .holder_of(session)
            .ok_or(CloseError::SessionClosed(session))?;
        let command = Command::Close {
            session,
            code: close_code::NORMAL,
            reason: "closed by application".into(),
        };
        let deadline = Instant::now() + self.call_timeout;
        self.command(reactor, command, Wait::Until(Some(deadline)))
            .map_err(|_| CloseError::Stopped)
    }

    /// [`Node::session_stats`].
    pub(crate) fn session_stats(&self, session: SessionId) -> Option<SessionStats> {
        let reactor = self.shared.holder_of(session)?;
        self.ask(reactor, |reply| Command::SessionStats { session, reply })
    }

    /// Asks reactor `reactor` a question whose answer may be "none", and
    /// waits for it up to `call_timeout`; `None` too if the node is stopped
    /// or the reactor did not answer in time.
    pub(crate) fn ask<T>(
        &self,
        reactor: usize,
        make: impl FnOnce(crossbeam_channel::Sender<Option<T>>) -> Command,
    ) -> Option<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let deadline = Instant::now() + self.call_timeout;
        self.command(reactor, make(tx), Wait::Until(Some(deadline)))
            .ok()?;
        rx.recv_deadline(deadline).ok().flatten()
    }
}

impl Node {
    /// Sends `payload` as a DATA message on stream 0.
    pub fn send(&self, session: SessionId, payload: &[u8]) -> Result<(), SendError> {
        self.inner.send_typed(session, 0, FrameType::Data, payload)
    }

    /// Sends `payload` as a DATA message on `stream_id`.
    ///
    /// Returns once the message is queued for the session's reactor: an
    /// unknown session or a message over `max_message_size` is refused here;
    /// what happens on the wire is counted in the statistics.
    ///
    /// Backpressure: while the reactor's queue is full (16,384 messages, or
    /// 64 MiB of messages of 1 KiB and more), this waits for room, up to
    /// [`NodeConfig::send_timeout`](super::NodeConfig::send_timeout), then
    /// gives up with [`SendError::QueueFull`]. The reactor stops taking
    /// messages while a WebSocket peer reads too slowly, so a sender to a
    /// slow peer waits here rather than filling memory. Do not wait here on
    /// the thread that drains [`events`](Self::events) when the peer's
    /// application may do the same (an echo that sends from its receiving
    /// loop, against a peer that floods it): each side would wait for the
    /// other to read. Receive on a thread of its own, use
    /// [`try_send`](Self::try_send), or bound the requests in flight.
    pub fn send_on(
        &self,
        session: SessionId,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.inner
            .send_typed(session, stream_id, FrameType::Data, payload)
    }

    /// Sends a message of an application type (0x80–0xFF) or DATA.
    pub fn send_typed(
        &self,
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.inner
            .send_typed(session, stream_id, frame_type, payload)
    }

    /// [`send`](Self::send) without waiting: a full queue refuses the
    /// message at once with [`SendError::QueueFull`].
    pub fn try_send(&self, session: SessionId, payload: &[u8]) -> Result<(), SendError> {
        self.inner
            .queue_message(session, 0, FrameType::Data, payload, Wait::Never)
    }

    /// [`send_typed`](Self::send_typed) without waiting: a full queue
    /// refuses the message at once with [`SendError::QueueFull`].
    pub fn try_send_typed(
        &self,
        session: SessionId,
        stream_id: u32,
        frame_type: FrameType,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.inner
            .queue_message(session, stream_id, frame_type, payload, Wait::Never)
    }

    /// [`send`](Self::send), waiting for room at most `timeout`.
    pub fn send_timeout(
        &self,
        session: SessionId,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), SendError> {
        let wait = Wait::For(timeout);
        self.inner
            .queue_message(session, 0, FrameType::Data, payload, wait)
    }

    /// Like [`send_on`](Self::send_on), but waits for the reactor to have
    /// sealed and handed the message to its transport, and returns its
    /// verdict (up to [`NodeConfig::call_timeout`](super::NodeConfig::call_timeout)).
    pub fn send_confirmed(
        &self,
        session: SessionId,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.inner.send_confirmed(session, stream_id, payload)
    }

    /// Sends over `primary`, or over `fallback` when `primary`'s path failed
    /// ([`SendError::is_path_failure`]: its session closed — e.g. UDP is
    /// blocked and it timed out — or it was refused). Returns the session
    /// that took it.
    ///
    /// The usual pairing: a UDP session for speed and a WebSocket session to
    /// the same peer for when UDP does not get through.
    pub fn send_with_failover(
        &self,
        primary: SessionId,
        fallback: SessionId,
        payload: &[u8],
    ) -> Result<SessionId, SendError> {
        match self.send(primary, payload) {
            Ok(()) => Ok(primary),
            Err(e) if e.is_path_failure() => self.send(fallback, payload).map(|()| fallback),
            Err(e) => Err(e),
        }
    }

    /// Sends one message to many sessions: sealed once per session, the
    /// datagrams of each reactor leaving in one batch. Returns each
    /// session's result, in the order given.
    pub fn send_to_sessions(
        &self,
        sessions: &[SessionId],
        payload: &[u8],
    ) -> Vec<(SessionId, Result<(), SendError>)> {
        if let Err(e) = self
            .inner
            .shared
            .check_message(FrameType::Data, payload.len())
        {
            let e = SendError::from_failure(e);
            return sessions.iter().map(|s| (*s, Err(e.clone()))).collect();
        }
        let payload: Arc<[u8]> = Arc::from(payload);
        let mut results: HashMap<SessionId, Result<(), SendError>> =
            HashMap::with_capacity(sessions.len());
        let mut per_reactor: Vec<Vec<SessionId>> = vec![Vec::new(); self.inner.reactors.len()];
        for &s in sessions {
            match self.inner.shared.holder_of(s) {
                Some(r) => per_reactor[r].push(s),
                None => {
                    results.insert(s, Err(SendError::SessionClosed(s)));
                }
            }
        }
        let deadline = Instant::now() + self.inner.call_timeout;
        let mut pending = Vec::new();
        for (r, ids) in per_reactor.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let (tx, rx) = crossbeam_channel::bounded(1);
            let command = Command::SendMany {
                sessions: ids.clone(),
                stream_id: 0,
                frame_type: FrameType::Data,
                payload: payload.clone(),
                reply: tx,
            };
            match self.inner.command(r, command, Wait::Until(Some(deadline))) {
                Ok(()) => pending.push((ids, rx)),
                Err(e) => {
                    let e = SendError::from_failure(e);
                    results.extend(ids.into_iter().map(|id| (id, Err(e.clone()))));
                }
            }
        }
        for (ids, rx) in pending {
            match rx.recv_deadline(deadline) {
                Ok(list) => results.extend(
                    list.into_iter()
                        .map(|(id, r)| (id, r.map_err(SendError::from_failure))),
                ),
                Err(_) => {
                    let e = SendError::TimedOut(self.inner.call_timeout);
                    results.extend(ids.into_iter().map(|id| (id, Err(e.clone()))));
                }
            }
        }
        sessions
            .iter()
            .map(|s| {
                let r = results
                    .get(s)
                    .cloned()
                    .unwrap_or(Err(SendError::SessionClosed(*s)));
                (*s, r)
            })
            .collect()
    }

    /// Sends one message to every established session.
    pub fn send_to_all(&self, payload: &[u8]) -> Vec<(SessionId, Result<(), SendError>)> {
        let all = self.sessions();
        self.send_to_sessions(&all, payload)
    }

    /// Closes a session with a CLOSE frame.
    pub fn close_session(&self, session: SessionId) -> Result<(), CloseError> {
        self.inner.close(session)
    }

    /// Statistics of one session, or `None` if it is gone (or its reactor
    /// did not answer within the call timeout).
    pub fn session_stats(&self, session: SessionId) -> Option<SessionStats> {
        self.inner.session_stats(session)
    }
}
