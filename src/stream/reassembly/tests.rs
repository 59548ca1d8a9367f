//! Tests of the reassembler: order and duplicates, the memory caps and the
//! node budget, stale ids, expiry, and message ids that wrap.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::stream::test_util::{header, payload, Rng};
use crate::stream::{fragment_count, fragments, FragmentHeader, MemoryBudget, FRAGMENT_HEADER_LEN};

const MIB: usize = 1024 * 1024;

/// Message sizes from 1 byte to 16 MiB, with small and multi-MiB sizes
/// both likely, and a chunk size to go with each: at least 1 KiB above
/// 1 MiB so that a debug build stays fast.
fn size_and_chunk() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        (1usize..=4096, 64usize..=9000),
        (4096usize..=MIB, 64usize..=9000),
        (MIB..=16 * MIB, 1024usize..=9000),
    ]
}

fn config() -> ReassemblyConfig {
    ReassemblyConfig::default()
}

/// Inserts every fragment of `msg` in order on stream 1; returns what the last one
/// produced.
fn insert_all(
    r: &mut Reassembler,
    now: Instant,
    message_id: u32,
    msg: &[u8],
    chunk_len: usize,
) -> Result<Option<Reassembled>, ReassemblyError> {
    let mut last = Ok(None);
    for (h, chunk) in fragments(message_id, 0x01, msg, chunk_len).unwrap() {
        last = r.insert(now, 1, &h, chunk);
    }
    last
}

#[test]
fn out_of_order_and_duplicates() {
    let now = Instant::now();
    let msg = payload(3000, 2);
    let mut frags: Vec<_> = fragments(4, 0x81, &msg, 1000).unwrap().collect();
    frags.reverse();
    let mut r = Reassembler::new(config(), None);
    assert!(r.insert(now, 3, &frags[0].0, frags[0].1).unwrap().is_none());
    assert!(r.insert(now, 3, &frags[0].0, frags[0].1).unwrap().is_none());
    assert!(r.insert(now, 3, &frags[1].0, frags[1].1).unwrap().is_none());
    let done = r.insert(now, 3, &frags[2].0, frags[2].1).unwrap().unwrap();
    assert_eq!(
        (done.stream_id, done.inner_type, &done.payload),
        (3, 0x81, &msg)
    );
    assert_eq!(
        r.stats(),
        ReassemblyStats {
            completed: 1,
            duplicates: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        (r.pending(), r.bytes_held(), r.poll_timeout()),
        (0, 0, None)
    );
}

#[test]
fn single_fragment_completes_at_once() {
    let budget = MemoryBudget::new(0);
    let mut r = Reassembler::new(config(), Some(budget.clone()));
    let mut wire = header(1, 5, 0, 1000).encode().to_vec();
    wire.extend_from_slice(b"hello");
    let done = r
        .insert_plaintext(Instant::now(), 2, &wire)
        .unwrap()
        .unwrap();
    assert_eq!(done.payload, b"hello");
    assert_eq!((r.pending(), r.bytes_held(), budget.used()), (0, 0, 0));
    assert_eq!(r.stats().completed, 1);
}

#[test]
fn chunk_must_match_header() {
    let mut r = Reassembler::new(config(), None);
    let h = header(1, 3000, 0, 1000);
    assert_eq!(
        r.insert(Instant::now(), 1, &h, &[0u8; 999]).unwrap_err(),
        ReassemblyError::ChunkLengthMismatch {
            index: 0,
            expected: 1000,
            actual: 999
        }
    );
    assert_eq!(
        r.insert_plaintext(Instant::now(), 1, &[1, 2]).unwrap_err(),
        ReassemblyError::Truncated { len: 2 }
    );
    assert_eq!((r.stats().rejected, r.pending(), r.bytes_held()), (2, 0, 0));
}

#[test]
fn message_larger_than_max_is_refused() {
    let cfg = ReassemblyConfig {
        max_message_size: 1000,
        ..config()
    };
    let mut r = Reassembler::new(cfg, None);
    let h = header(1, 1001, 0, 500);
    assert_eq!(
        r.insert(Instant::now(), 1, &h, &[0u8; 500]).unwrap_err(),
        ReassemblyError::MessageTooLarge {
            len: 1001,
            max: 1000
        }
    );
    // Also when it would fit in one fragment.
    let h = header(2, 1001, 0, 2000);
    assert!(matches!(
        r.insert(Instant::now(), 1, &h, &[0u8; 1001]),
        Err(ReassemblyError::MessageTooLarge { .. })
    ));
    assert_eq!((r.stats().rejected, r.pending(), r.bytes_held()), (2, 0, 0));
    // Exactly the maximum is fine.
    let msg = payload(1000, 3);
    assert_eq!(
        insert_all(&mut r, Instant::now(), 3, &msg, 300)
            .unwrap()
            .unwrap()
            .payload,
        msg
    );
}

#[test]
fn session_cap_is_enforced() {
    let cfg = ReassemblyConfig {
        max_session_bytes: 10_000,
        ..config()
    };
    let now = Instant::now();
    let mut r = Reassembler::new(cfg, None);
    let a = payload(6000, 4);
    let b = payload(6000, 5);
    let (ha, ca) = fragments(1, 1, &a, 1000).unwrap().next().unwrap();
    let (hb, cb) = fragments(2, 1, &b, 1000).unwrap().next().unwrap();
    assert!(r.insert(now, 1, &ha, ca).unwrap().is_none());
    // 6000 bytes of buffer plus one bitmap word.
    assert_eq!(r.bytes_held(), 6008);
    assert_eq!(
        r.insert(now, 1, &hb, cb).unwrap_err(),
        ReassemblyError::SessionMemoryLimit {
            needed: 6008,
            held: 6008,
            max: 10_000
        }
    );
    assert_eq!((r.pending(), r.bytes_held()), (1, 6008));
    assert!(insert_all(&mut r, now, 1, &a, 1000).unwrap().is_some());
    assert_eq!(r.bytes_held(), 0);
    assert_eq!(
        insert_all(&mut r, now, 2, &b, 1000)
            .unwrap()
            .unwrap()
            .payload,
        b
    );
}

#[test]
fn node_budget_is_shared_and_released() {
    let budget = MemoryBudget::new(10_000);
    let now = Instant::now();
    let timeout = config().timeout;
    let mut r1 = Reassembler::new(config(), Some(budget.clone()));
    let mut r2 = Reassembler::new(config(), Some(budget.clone()));
    let msg = payload(6000, 6);
    let first = |id| fragments(id, 1, &msg, 1000).unwrap().next().unwrap();

    // r1 holds 6008: r2 cannot start a message of the same size.
    let (h, c) = first(1);
    assert!(r1.insert(now, 1, &h, c).unwrap().is_none());
    assert_eq!(budget.used(), 6008);
    let (h, c) = first(1);
    assert_eq!(
        r2.insert(now, 1, &h, c).unwrap_err(),
        ReassemblyError::NodeMemoryLimit {
            needed: 6008,
            used: 6008,
            limit: 10_000
        }
    );
    assert_eq!((r2.pending(), r2.bytes_held()), (0, 0));

    // Freed by completion.
    assert!(insert_all(&mut r1, now, 1, &msg, 1000).unwrap().is_some());
    assert_eq!(budget.used(), 0);
    let (h, c) = first(1);
    assert!(r2.insert(now, 1, &h, c).unwrap().is_none());
    assert_eq!(budget.used(), 6008);

    // Freed by expiry.
    assert_eq!(r2.handle_timeout(now + timeout), 1);
    assert_eq!(budget.used(), 0);

    // Freed by drop.
    let (h, c) = first(2);
    assert!(r1.insert(now, 1, &h, c).unwrap().is_none());
    assert_eq!(budget.used(), 6008);
    drop(r1);
    assert_eq!(budget.used(), 0);
    assert!(r2.insert(now, 1, &h, c).unwrap().is_none());
    assert_eq!(budget.used(), 6008);
}

#[test]
fn max_pending_is_enforced() {
    let cfg = ReassemblyConfig {
        max_pending_messages: 2,
        ..config()
    };
    let now = Instant::now();
    let mut r = Reassembler::new(cfg, None);
    let msg = payload(2000, 7);
    for id in 0..2 {
        let (h, c) = fragments(id, 1, &msg, 1000).unwrap().next().unwrap();
        assert!(r.insert(now, 1, &h, c).unwrap().is_none());
    }
    let (h, c) = fragments(2, 1, &msg, 1000).unwrap().next().unwrap();
    assert_eq!(
        r.insert(now, 1, &h, c).unwrap_err(),
        ReassemblyError::TooManyPending { max: 2 }
    );
    // Single-fragment messages need no pending slot.
    assert!(insert_all(&mut r, now, 3, &msg, 5000).unwrap().is_some());
    // Completing one frees a slot.
    assert!(insert_all(&mut r, now, 0, &msg, 1000).unwrap().is_some());
    assert!(r.insert(now, 1, &h, c).unwrap().is_none());
    assert_eq!(r.pending(), 2);
}

#[test]
fn inconsistent_fragments_are_refused() {
    let now = Instant::now();
    let mut r = Reassembler::new(config(), None);
    let msg = payload(3000, 8);
    let frags: Vec<_> = fragments(5, 0x01, &msg, 1000).unwrap().collect();
    assert!(r.insert(now, 1, &frags[0].0, frags[0].1).unwrap().is_none());
    let h = frags[1].0;
    let c = frags[1].1;
    let cases = [
        (2, h, c, "stream_id"),
        (
            1,
            FragmentHeader {
                total_len: 3500,
                ..h
            },
            c,
            "total_len",
        ),
        (
            1,
            FragmentHeader {
                chunk_len: 500,
                index: 1,
                ..h
            },
            &c[..500],
            "chunk_len",
        ),
        (
            1,
            FragmentHeader {
                inner_type: 0x80,
                ..h
            },
            c,
            "inner_type",
        ),
    ];
    for (stream, bad, chunk, field) in cases {
        assert_eq!(
            r.insert(now, stream, &bad, chunk).unwrap_err(),
            ReassemblyError::Inconsistent {
                message_id: 5,
                field
            }
        );
    }
    assert_eq!(r.stats().rejected, 4);
    // The message is unharmed and completes with the right fragments.
    assert!(r.insert(now, 1, &frags[1].0, frags[1].1).unwrap().is_none());
    let done = r.insert(now, 1, &frags[2].0, frags[2].1).unwrap().unwrap();
    assert_eq!(done.payload, msg);
}

#[test]
fn late_duplicate_of_completed_message_is_stale() {
    let now = Instant::now();
    let mut r = Reassembler::new(config(), None);
    let msg = payload(3000, 9);
    assert!(insert_all(&mut r, now, 10, &msg, 1000).unwrap().is_some());
    for (h, c) in fragments(10, 1, &msg, 1000).unwrap() {
        assert_eq!(
            r.insert(now, 7, &h, c).unwrap_err(),
            ReassemblyError::Stale { message_id: 10 }
        );
    }
    assert_eq!((r.pending(), r.bytes_held()), (0, 0));
    assert_eq!(r.poll_timeout(), None);
    // Same for a single-fragment message.
    assert!(insert_all(&mut r, now, 11, &msg, 5000).unwrap().is_some());
    assert!(matches!(
        insert_all(&mut r, now, 11, &msg, 5000),
        Err(ReassemblyError::Stale { message_id: 11 })
    ));
    // An id far below the newest completed one is too old to tell.
    assert!(insert_all(&mut r, now, 100_000, &msg, 5000)
        .unwrap()
        .is_some());
    assert!(matches!(
        insert_all(&mut r, now, 12, &msg, 1000),
        Err(ReassemblyError::Stale { message_id: 12 })
    ));
    assert_eq!(r.stats().completed, 3);
    assert_eq!(r.stats().rejected, 3 + 1 + 3);
    assert_eq!(r.pending(), 0);
}

#[test]
fn pending_message_survives_window_moving_on() {
    let now = Instant::now();
    let mut r = Reassembler::new(config(), None);
    let msg = payload(3000, 10);
    let frags: Vec<_> = fragments(0, 1, &msg, 1000).unwrap().collect();
    assert!(r.insert(now, 1, &frags[0].0, frags[0].1).unwrap().is_none());
    for id in 1..5000 {
        assert!(insert_all(&mut r, now, id, b"x", 100).unwrap().is_some());
    }
    assert!(r.insert(now, 1, &frags[1].0, frags[1].1).unwrap().is_none());
    let done = r.insert(now, 1, &frags[2].0, frags[2].1).unwrap().unwrap();
    assert_eq!(done.payload, msg);
}

#[test]
fn expiry_follows_first_fragment_time() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(5);
    let mut r = Reassembler::new(config(), None);
    let msg = payload(3000, 11);
    let first = |id| fragments(id, 1, &msg, 1000).unwrap().next().unwrap();
    let (h, c) = first(1);
    r.insert(t0, 1, &h, c).unwrap();
    let (h, c) = first(2);
    r.insert(t0 + Duration::from_secs(1), 1, &h, c).unwrap();
    let (h, c) = first(3);
    r.insert(t0 + Duration::from_secs(2), 1, &h, c).unwrap();
    assert_eq!(r.poll_timeout(), Some(t0 + timeout));
    // Completing the oldest moves the deadline to the next one.
    assert!(
        insert_all(&mut r, t0 + Duration::from_secs(3), 1, &msg, 1000)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        r.poll_timeout(),
        Some(t0 + Duration::from_secs(1) + timeout)
    );
    // A later fragment does not extend the deadline.
    let (h, c) = fragments(2, 1, &msg, 1000).unwrap().nth(1).unwrap();
    r.insert(t0 + Duration::from_secs(4), 1, &h, c).unwrap();
    assert_eq!(r.handle_timeout(t0 + Duration::from_millis(5999)), 0);
    assert_eq!(r.handle_timeout(t0 + Duration::from_secs(6)), 1);
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(7)));
    assert_eq!(r.handle_timeout(t0 + Duration::from_secs(60)), 1);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!((r.pending(), r.bytes_held(), r.stats().expired), (0, 0, 2));
    // A late fragment of an expired message is stale: it must not start
    // a partial message that could only expire again.
    let t1 = t0 + Duration::from_secs(100);
    let (h, c) = fragments(2, 1, &msg, 1000).unwrap().nth(2).unwrap();
    assert_eq!(
        r.insert(t1, 1, &h, c).unwrap_err(),
        ReassemblyError::Stale { message_id: 2 }
    );
    assert_eq!((r.pending(), r.bytes_held()), (0, 0));
    // A new message gets a fresh deadline.
    let (h, c) = first(4);
    assert!(r.insert(t1, 1, &h, c).unwrap().is_none());
    assert_eq!(r.poll_timeout(), Some(t1 + timeout));
}

#[test]
fn message_ids_may_wrap() {
    let now = Instant::now();
    let mut r = Reassembler::new(config(), None);
    let msg = payload(3000, 13);
    for id in [u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2] {
        let mut last = None;
        for (h, c) in fragments(id, 1, &msg, 1000).unwrap() {
            last = r.insert(now, 1, &h, c).unwrap();
        }
        assert!(last.is_some(), "id {id} completes after the wrap");
        // And its late duplicate is stale, not a new message.
        let (h, c) = fragments(id, 1, &msg, 1000).unwrap().next().unwrap();
        assert!(matches!(
            r.insert(now, 1, &h, c),
            Err(ReassemblyError::Stale { .. })
        ));
    }
}

#[test]
fn huge_timeout_never_expires() {
    let cfg = ReassemblyConfig {
        timeout: Duration::MAX,
        ..config()
    };
    let now = Instant::now();
    let mut r = Reassembler::new(cfg, None);
    let msg = payload(3000, 12);
    let (h, c) = fragments(1, 1, &msg, 1000).unwrap().next().unwrap();
    assert!(r.insert(now, 1, &h, c).unwrap().is_none());
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.handle_timeout(now + Duration::from_secs(1 << 30)), 0);
    assert_eq!(r.pending(), 1);
}

#[test]
fn deadline_queue_stays_bounded() {
    let now = Instant::now();
    let mut r = Reassembler::new(config(), None);
    let msg = payload(2000, 13);
    // One message stays pending at the front while many complete behind it.
    let (h, c) = fragments(0, 1, &msg, 1000).unwrap().next().unwrap();
    r.insert(now, 1, &h, c).unwrap();
    for id in 1..1000 {
        assert!(insert_all(&mut r, now, id, &msg, 1000).unwrap().is_some());
    }
    assert!(r.deadlines.len() <= 2 * r.pending() + 33);
    assert_eq!(r.poll_timeout(), Some(now + config().timeout));
}

proptest! {
    /// Headers with small fields, so that decoding often succeeds, fed
    /// straight to a reassembler with tight limits: never a panic, and
    /// the accounting stays consistent.
    #[test]
    fn arbitrary_fragments_never_panic(
        frags in proptest::collection::vec(
            (0u32..4, 0u32..64, 0u32..8, 0u16..20, 0u8..2, 0usize..40, 0u32..3),
            0..64,
        ),
    ) {
        let budget = MemoryBudget::new(150);
        let cfg = ReassemblyConfig {
            max_message_size: 60,
            max_session_bytes: 100,
            timeout: Duration::from_millis(10),
            max_pending_messages: 3,
        };
        let mut r = Reassembler::new(cfg, Some(budget.clone()));
        let t0 = Instant::now();
        let mut ok = 0u64;
        for (step, (id, total, index, chunk_len, ty, len, stream)) in
            frags.iter().copied().enumerate()
        {
            let h = FragmentHeader {
                message_id: id,
                total_len: total,
                index,
                chunk_len,
                inner_type: ty,
            };
            let mut wire = h.encode().to_vec();
            wire.resize(FRAGMENT_HEADER_LEN + len, 1);
            let now = t0 + Duration::from_millis(step as u64);
            if let Ok(Some(m)) = r.insert_plaintext(now, stream, &wire) {
                prop_assert_eq!(m.payload.len(), total as usize);
            }
            ok += 1;
            r.handle_timeout(now);
            prop_assert!(r.bytes_held() <= 100);
            prop_assert_eq!(budget.used(), r.bytes_held());
        }
        let s = r.stats();
        prop_assert!(s.rejected + s.duplicates <= ok);
        r.handle_timeout(t0 + Duration::from_secs(1));
        prop_assert_eq!((r.pending(), r.bytes_held(), budget.used()), (0, 0, 0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn fragmentation_round_trip(
        (size, chunk_len) in size_and_chunk(),
        seed in any::<u64>(),
    ) {
        let msg = payload(size, seed);
        let mut rng = Rng(seed ^ 0xD1B5_4A32_D192_ED03);
        let mut frags: Vec<_> = fragments(42, 0x80, &msg, chunk_len).unwrap().collect();
        prop_assert_eq!(frags.len(), fragment_count(size, chunk_len));
        // Duplicate about one fragment in eight, then shuffle.
        let dups = frags.len() / 8 + 1;
        for _ in 0..dups {
            let i = rng.below(frags.len());
            frags.push(frags[i]);
        }
        rng.shuffle(&mut frags);

        let now = Instant::now();
        let mut r = Reassembler::new(ReassemblyConfig::default(), None);
        let mut delivered = None;
        for (h, chunk) in &frags {
            let mut wire = h.encode().to_vec();
            wire.extend_from_slice(chunk);
            let (h, chunk) = FragmentHeader::decode(&wire).unwrap();
            match r.insert(now, 3, &h, chunk) {
                Ok(Some(m)) => {
                    prop_assert!(delivered.is_none(), "delivered twice");
                    delivered = Some(m);
                }
                Ok(None) => {}
                // Duplicates after completion are refused as stale.
                Err(e) => {
                    prop_assert!(delivered.is_some());
                    prop_assert_eq!(e, ReassemblyError::Stale { message_id: 42 });
                }
            }
        }
        let m = delivered.unwrap();
        prop_assert_eq!((m.stream_id, m.inner_type), (3, 0x80));
        prop_assert!(m.payload == msg, "payload differs");
        prop_assert_eq!((r.pending(), r.bytes_held()), (0, 0));
        let s = r.stats();
        prop_assert_eq!(s.completed, 1);
        prop_assert_eq!(s.duplicates + s.rejected, dups as u64);
    }

    #[test]
    fn missing_fragment_is_never_delivered(
        (size, chunk_len) in size_and_chunk(),
        seed in any::<u64>(),
    ) {
        // At least two fragments, so that one can go missing.
        let size = size.max(chunk_len + 1);
        let msg = payload(size, seed);
        let mut rng = Rng(seed);
        let mut frags: Vec<_> = fragments(7, 0x01, &msg, chunk_len).unwrap().collect();
        let lost = rng.below(frags.len());
        frags.swap_remove(lost);
        if frags.len() > 1 {
            let i = rng.below(frags.len());
            frags.push(frags[i]);
        }
        rng.shuffle(&mut frags);

        let budget = MemoryBudget::new(64 * MIB);
        let t0 = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut r = Reassembler::new(ReassemblyConfig::default(), Some(budget.clone()));
        for (step, (h, chunk)) in frags.iter().enumerate() {
            let now = t0 + Duration::from_micros(step as u64);
            prop_assert!(r.insert(now, 1, h, chunk).unwrap().is_none());
        }
        prop_assert_eq!(r.pending(), 1);
        prop_assert!(r.bytes_held() >= size);
        prop_assert_eq!(budget.used(), r.bytes_held());
        prop_assert_eq!(r.poll_timeout(), Some(t0 + timeout));
        prop_assert_eq!(r.handle_timeout(t0 + timeout - Duration::from_nanos(1)), 0);
        prop_assert_eq!(r.handle_timeout(t0 + timeout), 1);
        prop_assert_eq!((r.pending(), r.bytes_held(), budget.used()), (0, 0, 0));
        prop_assert_eq!(r.stats().expired, 1);
        prop_assert_eq!(r.stats().completed, 0);
        prop_assert_eq!(r.poll_timeout(), None);
    }
}
