//! Which shard holds each established session, and its [`SendBudget`]:
//! the one structure the shards of a node share, read by the application's
//! threads to find a session's reactor (and wait for room in its send
//! buffer) and by each shard to route a datagram of a session that moved
//! to another one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::frame::SessionId;

/// The bytes of channel messages an application may have on their way to
/// one session's send buffer or in it: reserved by the sending thread,
/// released by the reactor as acknowledgements (or sending, for
/// unreliable messages) free the buffer. Lock-free but for senders that
/// wait for room: they sleep on a condition variable that a release
/// notifies.
#[derive(Debug)]
pub(crate) struct SendBudget {
    held: AtomicUsize,
    limit: usize,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    room: Condvar,
}

impl SendBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            limit,
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(()),
            room: Condvar::new(),
        }
    }

    /// Reserves `n` bytes, waiting for room until `deadline`, or until
    /// `gone` says the session went away (looked at every 10 ms); whether
    /// it did.
    pub(crate) fn reserve_until(
        &self,
        n: usize,
        deadline: Instant,
        gone: impl Fn() -> bool,
    ) -> bool {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let reserved = loop {
            // Checked under the lock: a release between the check and the
            // wait cannot be missed (it notifies under the lock).
            if self.try_reserve(n) {
                break true;
            }
            let now = Instant::now();
            if now >= deadline || gone() {
                break false;
            }
            let wait = (deadline - now).min(Duration::from_millis(10));
            guard = match self.room.wait_timeout(guard, wait) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        reserved
    }

    /// Reserves `n` bytes if they fit (a message alone always fits);
    /// returns whether it did.
    pub(crate) fn try_reserve(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h == 0 || h + n <= self.limit).then_some(h + n)
            })
            .is_ok()
    }

    /// Reserves `n` bytes whatever the limit (the session makes room by
    /// dropping queued unreliable messages).
    pub(crate) fn force(&self, n: usize) {
        self.held.fetch_add(n, Ordering::AcqRel);
    }

    /// Gives `n` bytes back, waking the senders waiting for room.
    pub(crate) fn release(&self, n: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(n))
            });
        if self.waiters.load(Ordering::Acquire) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.room.notify_all();
        }
    }
}

/// The established sessions of a node, one map per shard.
///
/// Written only when a session is established or stops taking messages;
/// read on every application send, so reads take a shared lock on one map.
#[derive(Debug)]
pub(crate) struct Directory {
    live: Vec<RwLock<HashMap<SessionId, Arc<SendBudget>>>>,
}

impl Directory {
    /// A directory of `shards` empty sets (at least one).
    pub(crate) fn new(shards: usize) -> Self {
        Directory {
            live: (0..shards.max(1))
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
        }
    }

    /// How many shards share it.
    pub(crate) fn shards(&self) -> usize {
        self.live.len()
    }

    /// The shard that owns session id `id` by its low byte.
    pub(crate) fn owner(&self, id: SessionId) -> usize {
        (id.0 & 0xFF) as usize % self.live.len()
    }

    /// The shard holding established session `id`, if any: its owner by id
    /// first, then any other (a session moves to the shard of the transport
    /// it was opened over).
    pub(crate) fn holder(&self, id: SessionId) -> Option<usize> {
        let owner = self.owner(id);
        if self.holds(owner, id) {
            return Some(owner);
        }
        (0..self.live.len()).find(|&s| s != owner && self.holds(s, id))
    }

    /// The shard holding established session `id`, and its send budget.
    pub(crate) fn lookup(&self, id: SessionId) -> Option<(usize, Arc<SendBudget>)> {
        let owner = self.owner(id);
        std::iter::once(owner)
            .chain((0..self.live.len()).filter(|&s| s != owner))
            .find_map(|s| Some((s, self.budget_in(s, id)?)))
    }

    /// Whether session `id` is established on shard `shard`.
    fn holds(&self, shard: usize, id: SessionId) -> bool {
        self.live[shard]
            .read()
            .map(|map| map.contains_key(&id))
            .unwrap_or(false)
    }

    fn budget_in(&self, shard: usize, id: SessionId) -> Option<Arc<SendBudget>> {
        self.live[shard].read().ok()?.get(&id).cloned()
    }

    /// Records that session `id` of shard `shard` takes messages, with its
    /// send budget.
    pub(crate) fn insert(&self, shard: usize, id: SessionId, budget: Arc<SendBudget>) {
        if let Some(map) = self.live.get(shard) {
            // Only ever inserted into or removed from: a panic while the
            // lock is held cannot leave it inconsistent.
            map.write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, budget);
        }
    }

    /// Records that session `id` of shard `shard` no longer takes messages.
    pub(crate) fn remove(&self, shard: usize, id: SessionId) {
        if let Some(map) = self.live.get(shard) {
            map.write().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
    }

    /// Every established session.
    pub(crate) fn all(&self) -> Vec<SessionId> {
        let mut all = Vec::new();
        for set in &self.live {
            if let Ok(map) = set.read() {
                all.extend(map.keys().copied());
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_sender_gets_room_when_it_is_released() {
        let budget = Arc::new(SendBudget::new(1000));
        assert!(budget.try_reserve(800));
        assert!(!budget.try_reserve(300), "over the limit");
        let b = budget.clone();
        let waiter = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            b.reserve_until(300, deadline, || false)
        });
        std::thread::sleep(Duration::from_millis(20));
        budget.release(500);
        assert!(waiter.join().unwrap());
        // A message alone always fits; nothing fits past the deadline.
        let empty = SendBudget::new(10);
        assert!(empty.try_reserve(1 << 20));
        let past = Instant::now();
        assert!(!empty.reserve_until(1, past, || false));
    }
}
