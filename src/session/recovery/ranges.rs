//! [`RangeSet`]: disjoint, merged `u64` ranges in a small sorted vector (the
//! acknowledged packet numbers, the bytes of a message received or
//! acknowledged).

use std::ops::Range;

/// A set of `u64`s kept as sorted, disjoint, non-adjacent half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range<u64>>,
}

impl RangeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `r`; returns how many of its values were new.
    pub fn insert(&mut self, r: Range<u64>) -> u64 {
        if r.start >= r.end {
            return 0;
        }
        // First range that ends at or after r.start (may merge).
        let i = self.ranges.partition_point(|x| x.end < r.start);
        let mut j = i;
        let mut start = r.start;
        let mut end = r.end;
        let mut covered = 0;
        while j < self.ranges.len() && self.ranges[j].start <= end {
            let x = &self.ranges[j];
            covered += x.end.min(r.end).saturating_sub(x.start.max(r.start));
            start = start.min(x.start);
            end = end.max(x.end);
            j += 1;
        }
        self.ranges.splice(i..j, std::iter::once(start..end));
        (r.end - r.start) - covered
    }

    /// Whether `v` is in the set.
    pub fn contains(&self, v: u64) -> bool {
        let i = self.ranges.partition_point(|x| x.end <= v);
        self.ranges.get(i).is_some_and(|x| x.start <= v)
    }

    /// Whether every value of `r` is in the set.
    pub fn contains_range(&self, r: Range<u64>) -> bool {
        if r.start >= r.end {
            return true;
        }
        let i = self.ranges.partition_point(|x| x.end <= r.start);
        self.ranges
            .get(i)
            .is_some_and(|x| x.start <= r.start && r.end <= x.end)
    }

    /// Removes every value below `v`.
    pub fn remove_below(&mut self, v: u64) {
        let i = self.ranges.partition_point(|x| x.end <= v);
        self.ranges.drain(..i);
        if let Some(first) = self.ranges.first_mut() {
            first.start = first.start.max(v);
        }
    }

    /// Drops the lowest ranges until at most `n` remain.
    pub fn keep_highest(&mut self, n: usize) {
        if self.ranges.len() > n {
            let excess = self.ranges.len() - n;
            self.ranges.drain(..excess);
        }
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The largest value.
    pub fn max(&self) -> Option<u64> {
        self.ranges.last().map(|r| r.end - 1)
    }

    /// The lowest range.
    pub fn first(&self) -> Option<Range<u64>> {
        self.ranges.first().cloned()
    }

    /// The ranges, lowest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Range<u64>> + '_ {
        self.ranges.iter().cloned()
    }

    /// The parts of `r` not in the set, lowest first.
    pub fn gaps_in(&self, r: Range<u64>) -> impl Iterator<Item = Range<u64>> + '_ {
        let mut at = r.start;
        let end = r.end;
        let i = self.ranges.partition_point(|x| x.end <= r.start);
        let mut iter = self.ranges[i..].iter();
        std::iter::from_fn(move || loop {
            if at >= end {
                return None;
            }
            match iter.next() {
                Some(x) if x.start <= at => at = at.max(x.end),
                Some(x) => {
                    let gap = at..x.start.min(end);
                    at = x.end;
                    return Some(gap);
                }
                None => {
                    let gap = at..end;
                    at = end;
                    return Some(gap);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((0u64..200, 0u64..20), 0..60), probe in 0u64..220, below in 0u64..220) {
            let mut set = RangeSet::new();
            let mut model = BTreeSet::new();
            for (start, len) in ops {
                let new = (start..start + len).filter(|v| !model.contains(v)).count() as u64;
                prop_assert_eq!(set.insert(start..start + len), new);
                model.extend(start..start + len);
            }
            prop_assert_eq!(set.contains(probe), model.contains(&probe));
            let all = |r: Range<u64>| r.clone().all(|v| model.contains(&v));
            prop_assert_eq!(set.contains_range(probe..probe + 5), all(probe..probe + 5));
            let gaps: Vec<u64> = set.gaps_in(probe..probe + 30).flatten().collect();
            let expected: Vec<u64> = (probe..probe + 30).filter(|v| !model.contains(v)).collect();
            prop_assert_eq!(gaps, expected);
            for w in set.ranges.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            set.remove_below(below);
            model.retain(|&v| v >= below);
            prop_assert_eq!(set.iter().flatten().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
        }
    }
}
