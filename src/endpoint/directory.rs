//! Which shard holds each established session: the one structure the
//! shards of a node share, read by the application's threads to find a
//! session's reactor and by each shard to route a datagram of a session
//! that moved to another one.

use std::collections::HashSet;
use std::sync::RwLock;

use crate::frame::SessionId;

/// The established sessions of a node, one set per shard.
///
/// Written only when a session is established or stops taking messages;
/// read on every application send, so reads take a shared lock on one set.
#[derive(Debug)]
pub(crate) struct Directory {
    live: Vec<RwLock<HashSet<SessionId>>>,
}

impl Directory {
    /// A directory of `shards` empty sets (at least one).
    pub(crate) fn new(shards: usize) -> Self {
        Directory {
            live: (0..shards.max(1))
                .map(|_| RwLock::new(HashSet::new()))
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

    /// Whether session `id` is established on shard `shard`.
    fn holds(&self, shard: usize, id: SessionId) -> bool {
        self.live[shard]
            .read()
            .map(|set| set.contains(&id))
            .unwrap_or(false)
    }

    /// Records whether session `id` of shard `shard` takes messages.
    pub(crate) fn set(&self, shard: usize, id: SessionId, live: bool) {
        let Some(set) = self.live.get(shard) else {
            return;
        };
        // The set is only ever inserted into or removed from: a panic while
        // the lock is held cannot leave it inconsistent.
        let mut set = set.write().unwrap_or_else(|e| e.into_inner());
        if live {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// Every established session.
    pub(crate) fn all(&self) -> Vec<SessionId> {
        let mut all = Vec::new();
        for set in &self.live {
            if let Ok(set) = set.read() {
                all.extend(set.iter().copied());
            }
        }
        all
    }
}
