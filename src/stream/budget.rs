//! [`MemoryBudget`]: the byte budget shared by every reassembler of a node,
//! and the smaller budgets (per peer) drawn from it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A byte budget shared by all reassemblers of a node, so that many sessions
/// cannot each fill their own cap.
///
/// Lock-free (an atomic counter and a fixed limit). Cloning shares the budget.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    used: AtomicUsize,
    limit: usize,
    /// A budget every reservation also draws from.
    parent: Option<MemoryBudget>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                used: AtomicUsize::new(0),
                limit,
                parent: None,
            }),
        }
    }

    /// A budget of `limit` bytes whose reservations also draw from this one
    /// (a peer's share of the node's budget): a reservation succeeds only
    /// when both have room.
    pub fn child(&self, limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                used: AtomicUsize::new(0),
                limit,
                parent: Some(self.clone()),
            }),
        }
    }

    /// Reserves `n` bytes if that keeps the total within the limit; returns
    /// whether it did. All or nothing.
    pub fn try_reserve(&self, n: usize) -> bool {
        let limit = self.inner.limit;
        let own = self
            .inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok();
        if !own {
            return false;
        }
        match &self.inner.parent {
            Some(parent) if !parent.try_reserve(n) => {
                self.release_own(n);
                false
            }
            _ => true,
        }
    }

    /// Returns `n` bytes previously reserved with
    /// [`try_reserve`](Self::try_reserve). Releasing more than is used
    /// saturates at 0 (a caller bug, but not a reason to panic).
    pub fn release(&self, n: usize) {
        self.release_own(n);
        if let Some(parent) = &self.inner.parent {
            parent.release(n);
        }
    }

    fn release_own(&self, n: usize) {
        // The closure always returns Some, so the update cannot fail.
        let _ = self
            .inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// Bytes currently reserved.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// The limit this budget was created with.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_budget_is_all_or_nothing() {
        let b = MemoryBudget::new(100);
        assert!(b.try_reserve(60));
        assert!(!b.try_reserve(41));
        assert!(!b.try_reserve(usize::MAX));
        assert!(b.try_reserve(40));
        assert_eq!((b.used(), b.limit()), (100, 100));
        b.release(150);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_child_draws_from_its_parent_too() {
        let node = MemoryBudget::new(100);
        let (a, b) = (node.child(60), node.child(60));
        assert!(a.try_reserve(60));
        assert!(!a.try_reserve(1), "a's own limit");
        assert!(!b.try_reserve(41), "the node's limit");
        assert_eq!((a.used(), b.used(), node.used()), (60, 0, 60));
        assert!(b.try_reserve(40));
        assert_eq!(node.used(), 100);
        a.release(60);
        assert_eq!((a.used(), node.used()), (0, 40));
    }
}
