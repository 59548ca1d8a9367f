//! Target `channel_chunks`: the chunk decoder of CHANNEL plaintexts
//! (`stt::frame::chunk`) on arbitrary bytes, used whole as one plaintext.
//!
//! Besides "never panics", it checks:
//!
//! - [`Chunks`] yields nothing after its first error;
//! - every ACK's ranges iterate without panicking: each range has
//!   `smallest <= largest`, the first ends at the ACK's `largest`, each is
//!   below the one before with at least one number between them, and there
//!   are at most `MAX_ACK_RANGES + 1`; written again with `write_ack` they
//!   decode to the same ranges;
//! - a MSG chunk's fragment lies inside its message, and written again with
//!   `write_msg` it decodes to the same chunk, in `encoded_len()` bytes, no
//!   more than it took in the input;
//! - FLOW_CREDIT round-trips; PADDING is the last chunk and takes the rest.

use stt::frame::chunk::{
    write_ack, write_flow_credit, write_msg, AckRange, Chunk, Chunks, MAX_ACK_RANGES,
};

/// Decodes `data` as one CHANNEL plaintext and checks every chunk.
pub fn run(data: &[u8]) {
    let mut failed = false;
    let mut padded = false;
    for chunk in Chunks::new(data) {
        assert!(!failed, "Chunks yielded an item after an error");
        assert!(!padded, "a chunk after PADDING");
        match chunk {
            Err(_) => failed = true,
            Ok(Chunk::Ack(ack)) => {
                let ranges: Vec<AckRange> = ack.ranges().collect();
                check_ranges(ack.largest, &ranges);
                let mut out = Vec::new();
                write_ack(&mut out, ack.delay_us, ranges.iter().copied());
                match Chunks::new(&out).collect::<Vec<_>>()[..] {
                    [Ok(Chunk::Ack(again))] => {
                        assert_eq!((again.largest, again.delay_us), (ack.largest, ack.delay_us));
                        assert_eq!(again.ranges().collect::<Vec<_>>(), ranges);
                    }
                    ref other => panic!("a re-encoded ACK decodes to {other:?}"),
                }
            }
            Ok(Chunk::Msg(m)) => {
                if let Some((total, offset)) = m.fragment {
                    assert!(
                        offset + m.data.len() as u64 <= total,
                        "fragment beyond its message"
                    );
                }
                let mut out = Vec::new();
                write_msg(&mut out, &m);
                assert_eq!(out.len(), m.encoded_len());
                assert!(out.len() <= data.len(), "MSG longer than its input");
                match Chunks::new(&out).collect::<Vec<_>>()[..] {
                    [Ok(Chunk::Msg(again))] => assert_eq!(again, m),
                    ref other => panic!("a re-encoded MSG decodes to {other:?}"),
                }
            }
            Ok(Chunk::FlowCredit { max_data }) => {
                let mut out = Vec::new();
                write_flow_credit(&mut out, max_data);
                let again: Vec<_> = Chunks::new(&out).collect();
                assert_eq!(again, [Ok(Chunk::FlowCredit { max_data })]);
            }
            Ok(Chunk::Padding(n)) => {
                assert!(n >= 1 && n <= data.len(), "PADDING of {n} bytes");
                padded = true;
            }
            Ok(Chunk::Ping) => {}
        }
    }
}

fn check_ranges(largest: u64, ranges: &[AckRange]) {
    assert!(!ranges.is_empty(), "an ACK without a range");
    assert!(
        ranges.len() <= MAX_ACK_RANGES + 1,
        "{} ranges",
        ranges.len()
    );
    assert_eq!(
        ranges[0].1, largest,
        "the first range does not end at largest"
    );
    let mut below: Option<u64> = None;
    for &(lo, hi) in ranges {
        assert!(lo <= hi, "range {lo}..={hi}");
        if let Some(prev_lo) = below {
            assert!(hi + 2 <= prev_lo, "range {lo}..={hi} touches the one above");
        }
        below = Some(lo);
    }
}
