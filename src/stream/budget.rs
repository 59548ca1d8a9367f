//! [`MemoryBudget`]: the byte budget shared by every reassembler of a node.

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
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                used: AtomicUsize::new(0),
                limit,
            }),
        }
    }

    /// Reserves `n` bytes if that keeps the total within the limit; returns
    /// whether it did. All or nothing.
    pub fn try_reserve(&self, n: usize) -> bool {
        let limit = self.inner.limit;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Returns `n` bytes previously reserved with
    /// [`try_reserve`](Self::try_reserve). Releasing more than is used
    /// saturates at 0 (a caller bug, but not a reason to panic).
    pub fn release(&self, n: usize) {
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
}
