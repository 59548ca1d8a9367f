//! Encoding and decoding of channel chunks, against fixed bytes and by
//! round trip.

use super::*;
use proptest::prelude::*;

fn decode_all(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, FrameError> {
    Chunks::new(bytes).collect()
}

#[test]
fn varints_match_rfc_9000_examples() {
    // RFC 9000 §A.1.
    let cases: [(&[u8], u64); 4] = [
        (
            &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
            151_288_809_941_952_652,
        ),
        (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
        (&[0x7b, 0xbd], 15_293),
        (&[0x25], 37),
    ];
    for (bytes, value) in cases {
        let mut b = bytes;
        assert_eq!(read_varint(&mut b), Ok(value));
        assert!(b.is_empty());
        let mut out = Vec::new();
        write_varint(&mut out, value);
        assert_eq!(out, bytes);
    }
}

#[test]
fn msg_chunk_has_a_fixed_layout() {
    let mut out = Vec::new();
    write_msg(
        &mut out,
        &MsgChunk {
            delivery: Delivery::ReliableOrdered,
            channel: 2,
            msg_type: 0x01,
            seq: 300,
            fragment: Some((5000, 1200)),
            data: b"hi",
        },
    );
    assert_eq!(
        out,
        [0x02, 0x07, 0x02, 0x01, 0x41, 0x2c, 0x53, 0x88, 0x44, 0xb0, 0x02, b'h', b'i']
    );
    let chunks = decode_all(&out).unwrap();
    let [Chunk::Msg(m)] = chunks[..] else {
        panic!("{chunks:?}")
    };
    assert_eq!(m.encoded_len(), out.len());
    assert_eq!(
        (m.seq, m.fragment, m.data),
        (300, Some((5000, 1200)), &b"hi"[..])
    );
}

#[test]
fn ack_chunk_round_trips_its_ranges() {
    let ranges = [(90, 100), (50, 80), (10, 10)];
    let mut out = Vec::new();
    write_ack(&mut out, 25_000, ranges);
    assert_eq!(out[..3], [0x01, 0x40, 100]); // type, largest 100 (2-byte varint)
    let chunks = decode_all(&out).unwrap();
    let [Chunk::Ack(a)] = chunks[..] else {
        panic!("{chunks:?}")
    };
    assert_eq!((a.largest, a.delay_us), (100, 25_000));
    assert_eq!(a.ranges().collect::<Vec<_>>(), ranges);
}

#[test]
fn malformed_chunks_are_refused() {
    let bad: [&[u8]; 8] = [
        &[0x09],                                                 // unknown type
        &[0x00, 0x00, 0x01],                                     // padding with a non-zero byte
        &[0x01, 0x05, 0x00, 0x00, 0x06],                         // first range below zero
        &[0x01, 0x05, 0x00, 0x01, 0x00, 0x04, 0x00],             // second range below zero
        &[0x02, 0x08, 0x00, 0x01, 0x00, 0x00],                   // reserved MSG flag
        &[0x02, 0x00, 0x00, 0x02, 0x00, 0x00],                   // MSG type 0x02 (CONTROL)
        &[0x02, 0x00, 0x00, 0x01, 0x00, 0x05, 1, 2],             // longer than the packet
        &[0x02, 0x04, 0x00, 0x01, 0x00, 0x03, 0x02, 0x02, 1, 2], // beyond its message
    ];
    for b in bad {
        assert!(decode_all(b).is_err(), "{b:02x?}");
    }
}

#[test]
fn padding_ping_and_credit_decode() {
    let mut out = Vec::new();
    write_flow_credit(&mut out, 1 << 20);
    write_ping(&mut out);
    write_padding(&mut out, 20);
    let chunks = decode_all(&out).unwrap();
    assert_eq!(
        chunks,
        [
            Chunk::FlowCredit { max_data: 1 << 20 },
            Chunk::Ping,
            Chunk::Padding(20 - 6)
        ]
    );
}

proptest! {
    #[test]
    fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for c in Chunks::new(&bytes) {
            if let Ok(Chunk::Ack(a)) = c {
                for (lo, hi) in a.ranges() {
                    prop_assert!(lo <= hi);
                }
            }
        }
    }

    #[test]
    fn ack_ranges_round_trip(mut points in proptest::collection::btree_set(0u64..100_000, 1..300)) {
        // Build disjoint ranges from a set of numbers, largest first.
        let mut ranges: Vec<AckRange> = Vec::new();
        while let Some(&hi) = points.iter().next_back() {
            let mut lo = hi;
            points.remove(&hi);
            while lo > 0 && points.remove(&(lo - 1)) {
                lo -= 1;
            }
            ranges.push((lo, hi));
        }
        let mut out = Vec::new();
        write_ack(&mut out, 7, ranges.iter().copied());
        let chunks = decode_all(&out).unwrap();
        let [Chunk::Ack(a)] = chunks[..] else { panic!() };
        let expected: Vec<_> = ranges.into_iter().take(MAX_ACK_RANGES + 1).collect();
        prop_assert_eq!(a.ranges().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn msg_round_trips(seq in any::<u64>(), total in 0u64..1 << 40, data in proptest::collection::vec(any::<u8>(), 0..64), channel: u8, bits in 0u8..4, frag: bool) {
        let seq = seq & VARINT_MAX;
        let fragment = frag.then_some((total + data.len() as u64, total / 2));
        let m = MsgChunk { delivery: Delivery::from_bits(bits), channel, msg_type: 0x80, seq, fragment, data: &data };
        let mut out = Vec::new();
        write_msg(&mut out, &m);
        prop_assert_eq!(out.len(), m.encoded_len());
        let chunks = decode_all(&out).unwrap();
        prop_assert_eq!(chunks, vec![Chunk::Msg(m)]);
    }
}
