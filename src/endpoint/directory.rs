//! Which shard holds each established session, and its [`SendBudget`]:
//! the one structure the shards of a node share, read by the application's
//! threads to find a session's reactor (and wait for room in its send
//! buffer) and by each shard to route a datagram of a session that moved
//! to another one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::frame::SessionId;

/// The bytes of channel messages an application may have on their way to
/// one session's send buffer or in it: reserved by the sending thread,
/// released by the reactor as acknowledgements (or sending, for
/// unreliable messages) free the buffer. Lock-free.
#[derive(Debug)]
pub(crate) struct SendBudget {
    held: AtomicUsize,
    limit: usize,
}

impl SendBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            limit,
        }
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

    /// Gives `n` bytes back.
    pub(crate) fn release(&self, n: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(n))
            });
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
