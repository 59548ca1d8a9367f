//! Sliding anti-replay window over 64-bit packet numbers.
//!
//! The window is the bitmap scheme of RFC 6479 (used by WireGuard): a ring of
//! 64-bit words that covers the [`WINDOW`] packet numbers below the highest one
//! seen. A packet number is accepted once: a duplicate, or one too old to be
//! tracked, is refused. Reordering inside the window is accepted.
//!
//! The check is split in two so that a receiver can reject cheaply *before*
//! spending an AEAD open, and record only *after* the packet authenticated:
//! [`ReplayWindow::check`] then [`ReplayWindow::commit`]. Committing a number
//! that was never authenticated would let a forger advance the window and make
//! honest packets look old.

/// Bits per ring word.
const WORD_BITS: u64 = 64;
/// Words in the ring. A power of two so that indexing is a mask.
const RING_WORDS: usize = 32;
/// Packet numbers tracked below the highest one seen.
///
/// One word of the ring is always being reused for the numbers just above the
/// highest, so the guaranteed depth is `(RING_WORDS - 1) * 64` = 1984 (WireGuard
/// keeps 8128 in the same scheme; DTLS keeps 64). Reordering deeper than this
/// on one session is indistinguishable from a replay attack and is refused.
pub const WINDOW: u64 = (RING_WORDS as u64 - 1) * WORD_BITS;

/// Why a packet number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The number was seen before.
    #[error("packet number {0} was already received (replay or duplicate)")]
    Duplicate(u64),
    /// The number is older than the window can tell apart from a replay.
    #[error("packet number {0} is older than the replay window")]
    TooOld(u64),
}

/// Sliding window of seen packet numbers. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest packet number committed, plus one (0 = none yet).
    next: u64,
    ring: [u64; RING_WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window: every packet number is new.
    pub const fn new() -> Self {
        Self {
            next: 0,
            ring: [0; RING_WORDS],
        }
    }

    /// Whether `pn` may be accepted. Does not record it.
    pub fn check(&self, pn: u64) -> Result<(), ReplayError> {
        if pn >= self.next {
            return Ok(());
        }
        if self.next - 1 - pn >= WINDOW {
            return Err(ReplayError::TooOld(pn));
        }
        let (word, bit) = Self::slot(pn);
        if self.ring[word] & bit != 0 {
            Err(ReplayError::Duplicate(pn))
        } else {
            Ok(())
        }
    }

    /// Records `pn` as received. Call only after the packet authenticated, and
    /// after [`check`](Self::check) accepted it.
    pub fn commit(&mut self, pn: u64) {
        if pn >= self.next {
            // Advance: clear every word between the old top and the new one.
            let old_top_word = if self.next == 0 {
                None
            } else {
                Some((self.next - 1) / WORD_BITS)
            };
            let new_top_word = pn / WORD_BITS;
            match old_top_word {
                Some(old) if new_top_word - old < RING_WORDS as u64 => {
                    for w in old + 1..=new_top_word {
                        self.ring[(w as usize) & (RING_WORDS - 1)] = 0;
                    }
                }
                _ => self.ring = [0; RING_WORDS],
            }
            self.next = pn.saturating_add(1);
        }
        let (word, bit) = Self::slot(pn);
        self.ring[word] |= bit;
    }

    /// [`check`](Self::check) then [`commit`](Self::commit), for callers that
    /// have nothing to authenticate in between.
    #[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
    pub fn accept(&mut self, pn: u64) -> Result<(), ReplayError> {
        self.check(pn)?;
        self.commit(pn);
        Ok(())
    }

    /// The highest packet number committed, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    fn slot(pn: u64) -> (usize, u64) {
        (
            ((pn / WORD_BITS) as usize) & (RING_WORDS - 1),
            1u64 << (pn % WORD_BITS),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_each_number_once() {
        let mut w = ReplayWindow::new();
        for pn in 0..5000 {
            w.accept(pn).unwrap();
            assert_eq!(w.accept(pn), Err(ReplayError::Duplicate(pn)));
        }
    }

    #[test]
    fn reordering_inside_window_is_accepted() {
        let mut w = ReplayWindow::new();
        w.accept(WINDOW + 100).unwrap();
        // Everything still inside the window is new exactly once.
        for pn in (101..WINDOW + 100).rev() {
            w.accept(pn).unwrap();
        }
        assert_eq!(w.check(150), Err(ReplayError::Duplicate(150)));
        assert_eq!(w.check(100), Err(ReplayError::TooOld(100)));
        assert_eq!(w.check(0), Err(ReplayError::TooOld(0)));
    }

    #[test]
    fn window_is_at_least_1024() {
        const { assert!(WINDOW >= 1024) };
    }

    #[test]
    fn big_jump_clears_history() {
        let mut w = ReplayWindow::new();
        for pn in 0..100 {
            w.accept(pn).unwrap();
        }
        w.accept(1_000_000).unwrap();
        assert!(w.check(1_000_000 - 10).is_ok());
        assert_eq!(w.check(99), Err(ReplayError::TooOld(99)));
        w.accept(u64::MAX - 1).unwrap();
        assert_eq!(
            w.check(u64::MAX - 1),
            Err(ReplayError::Duplicate(u64::MAX - 1))
        );
        assert!(w.check(u64::MAX - 2).is_ok());
    }

    #[test]
    fn check_does_not_record() {
        let mut w = ReplayWindow::new();
        w.check(7).unwrap();
        w.check(7).unwrap();
        w.commit(7);
        assert!(w.check(7).is_err());
    }

    proptest! {
        /// Against a model (a set of everything seen): the window never
        /// accepts a number twice, and accepts every fresh number within
        /// WINDOW of the highest.
        #[test]
        fn matches_model(pns in proptest::collection::vec(0u64..6000, 1..3000)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::HashSet::new();
            let mut highest: Option<u64> = None;
            for pn in pns {
                let fresh = !seen.contains(&pn);
                let in_window = highest.is_none_or(|h| pn > h || h - pn < WINDOW);
                let got = w.accept(pn);
                if !fresh {
                    prop_assert!(got.is_err());
                } else if in_window {
                    prop_assert!(got.is_ok(), "fresh {} refused, highest {:?}", pn, highest);
                } else {
                    prop_assert!(got.is_err());
                }
                if got.is_ok() {
                    seen.insert(pn);
                    highest = Some(highest.map_or(pn, |h| h.max(pn)));
                }
            }
        }
    }
}
