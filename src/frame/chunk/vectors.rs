//! The channel test vectors of `docs/PROTOCOL.md` (Appendix A.8): each chunk
//! and CHANNEL plaintext is built with this module's encoders and compared
//! with its hex, decoded back to the chunks it was built from, and looked up
//! under its label in the document, which must list exactly these vectors
//! with exactly these bytes. So the specification and the code cannot drift
//! apart. The two sealed CHANNEL frames use the fixed traffic secret of
//! Appendix A.5.
//!
//! The hex below groups bytes by field; whitespace is not significant, here
//! or in the document.

use super::*;
use crate::crypto::aead::{Algorithm, RecvKeys, SendKeys};
use crate::frame::{Flags, Frame, FrameType, Header, SessionId, HEADER_LEN, TAG_LEN};

/// The specification, as this tree ships it.
const PROTOCOL_MD: &str = include_str!("../../../docs/PROTOCOL.md");
/// The heading of the appendix section that prints the vectors.
const SECTION: &str = "### A.8 ";

/// Traffic secret of the sealed vectors (the one of Appendix A.5).
const SECRET: [u8; 32] = [0x03; 32];
/// Session id of the sealed vectors.
const SESSION: u64 = 0x0123_4567_89ab_cdef;

/// One vector: its label in the document, its bytes, and the chunks it
/// decodes to.
struct Vector {
    label: &'static str,
    hex: &'static str,
    bytes: Vec<u8>,
    chunks: Vec<Chunk<'static>>,
}

fn msg(
    delivery: Delivery,
    channel: u8,
    msg_type: u8,
    seq: u64,
    fragment: Option<(u64, u64)>,
    data: &'static [u8],
) -> MsgChunk<'static> {
    MsgChunk {
        delivery,
        channel,
        msg_type,
        seq,
        fragment,
        data,
    }
}

fn encoded(msg: &MsgChunk<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write_msg(&mut out, msg);
    out
}

/// The MSG chunks of the vectors, by label.
fn msgs() -> [(&'static str, &'static str, MsgChunk<'static>); 8] {
    use Delivery::*;
    [
        (
            "msg_unreliable_whole",
            "02 00 01 01 07 02 6869",
            msg(Unreliable, 1, 0x01, 7, None, b"hi"),
        ),
        (
            "msg_unreliable_fragment",
            "02 04 01 01 08 4bb8 4578 03 616263",
            msg(Unreliable, 1, 0x01, 8, Some((3000, 1400)), b"abc"),
        ),
        (
            "msg_sequenced_whole",
            "02 01 02 81 4040 03 706f73",
            msg(UnreliableSequenced, 2, 0x81, 64, None, b"pos"),
        ),
        (
            "msg_sequenced_fragment",
            "02 05 02 81 4041 47d0 00 02 6162",
            msg(UnreliableSequenced, 2, 0x81, 65, Some((2000, 0)), b"ab"),
        ),
        (
            "msg_unordered_whole",
            "02 02 03 01 43e8 00",
            msg(ReliableUnordered, 3, 0x01, 1000, None, b""),
        ),
        (
            "msg_unordered_fragment",
            "02 06 03 01 43e9 800186a0 80010000 03 78797a",
            msg(
                ReliableUnordered,
                3,
                0x01,
                1001,
                Some((100_000, 65_536)),
                b"xyz",
            ),
        ),
        (
            "msg_ordered_whole",
            "02 03 00 01 00 05 68656c6c6f",
            msg(ReliableOrdered, 0, 0x01, 0, None, b"hello"),
        ),
        (
            "msg_ordered_fragment",
            "02 07 00 80 01 5388 4584 02 6c6f",
            msg(ReliableOrdered, 0, 0x80, 1, Some((5000, 1412)), b"lo"),
        ),
    ]
}

/// The ACK vector's ranges, largest first, and its delay in µs.
const ACK_RANGES: [AckRange; 4] = [(95, 100), (80, 90), (50, 50), (2, 10)];
const ACK_DELAY_US: u64 = 25_000;
/// The credit a default receiver sends first: the application took 1 MiB,
/// plus the 32 MiB window.
const CREDIT: u64 = (1 << 20) + (32 << 20);

/// The plaintext of a data packet: an ACK of packets 0 to 9 held 1 ms, a
/// credit, a reliable-ordered and an unreliable message.
fn channel_plaintext() -> Vec<u8> {
    let mut out = Vec::new();
    write_ack(&mut out, 1000, [(0, 9)]);
    write_flow_credit(&mut out, CREDIT);
    write_msg(&mut out, &msgs()[6].2);
    write_msg(&mut out, &msgs()[0].2);
    out
}

/// A probe's plaintext cut to 32 bytes: an ACK of packet 4, PING, PADDING.
fn probe_plaintext() -> Vec<u8> {
    let mut out = Vec::new();
    write_ack(&mut out, 0, [(4, 4)]);
    write_ping(&mut out);
    write_padding(&mut out, 32);
    out
}

fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    let mut ack = Vec::new();
    write_ack(&mut ack, ACK_DELAY_US, ACK_RANGES);
    v.push(Vector {
        label: "ack",
        hex: "01 4064 800061a8 4003 05 030a 1c00 2608",
        bytes: ack,
        chunks: Vec::new(), // checked range by range below
    });
    for (label, hex, m) in msgs() {
        v.push(Vector {
            label,
            hex,
            bytes: encoded(&m),
            chunks: vec![Chunk::Msg(m)],
        });
    }
    let mut credit = Vec::new();
    write_flow_credit(&mut credit, CREDIT);
    v.push(Vector {
        label: "flow_credit",
        hex: "03 82100000",
        bytes: credit,
        chunks: vec![Chunk::FlowCredit { max_data: CREDIT }],
    });
    let mut ping = Vec::new();
    write_ping(&mut ping);
    v.push(Vector {
        label: "ping",
        hex: "04",
        bytes: ping,
        chunks: vec![Chunk::Ping],
    });
    let mut padding = Vec::new();
    write_padding(&mut padding, 8);
    v.push(Vector {
        label: "padding",
        hex: "00 00000000000000",
        bytes: padding,
        chunks: vec![Chunk::Padding(8)],
    });
    v.push(Vector {
        label: "channel_plaintext",
        hex: "01 09 43e8 4000 09  03 82100000  02 03 00 01 00 05 68656c6c6f  \
              02 00 01 01 07 02 6869",
        bytes: channel_plaintext(),
        chunks: Vec::new(), // checked below
    });
    v.push(Vector {
        label: "probe_plaintext",
        hex: "01 04 00 4000 00  04  00 000000000000000000000000000000000000000000000000",
        bytes: probe_plaintext(),
        chunks: Vec::new(), // checked below
    });
    v
}

/// The sealed vectors: algorithm, label, hex.
const SEALED: [(Algorithm, &str, &str); 2] = [
    (
        Algorithm::Aes256Gcm,
        "sealed_aes256gcm",
        "5354 01 06 00 0123456789abcdef 00000000 0000000000000000 0000002f \
         d17cb29ec5971ff8c20d02ae54d1ddfebce12e388e1b8388f625275f724b3d \
         8690eff4f97dcfe098d547831dbb07ae",
    ),
    (
        Algorithm::ChaCha20Poly1305,
        "sealed_chacha20poly1305",
        "5354 01 06 00 0123456789abcdef 00000000 0000000000000000 0000002f \
         b1d1bbd3fe27faa3d239b51543f818cfb5cde5a0fa906f014f01882da3c146 \
         abab4869ad4c86e7484fcba49a239e31",
    ),
];

fn unhex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd hex: {hex}");
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).unwrap();
            u8::from_str_radix(s, 16).unwrap_or_else(|_| panic!("not hex: {s}"))
        })
        .collect()
}

/// `label = hex` entries of the appendix section's code blocks; a line of
/// hex alone continues the entry above it.
fn document_vectors() -> Vec<(String, Vec<u8>)> {
    let start = PROTOCOL_MD
        .find(SECTION)
        .unwrap_or_else(|| panic!("no section {SECTION:?} in docs/PROTOCOL.md"));
    let section = &PROTOCOL_MD[start + SECTION.len()..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    let is_hex = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| (b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) || b == b' ')
    };
    let mut found: Vec<(String, String)> = Vec::new();
    let mut in_code = false;
    let mut continues = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continues = false;
            continue;
        }
        if !in_code {
            continue;
        }
        if let Some((label, hex)) = line.split_once(" = ") {
            let label = label.trim();
            if !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
                && is_hex(hex.trim())
            {
                found.push((label.to_owned(), hex.to_owned()));
                continues = true;
                continue;
            }
        }
        match found.last_mut() {
            Some((_, hex)) if continues && line.starts_with(' ') && is_hex(line.trim()) => {
                hex.push_str(line);
            }
            _ => continues = false,
        }
    }
    found
        .into_iter()
        .map(|(label, hex)| (label, unhex(&hex)))
        .collect()
}

fn sealed(alg: Algorithm) -> Vec<u8> {
    let mut keys = SendKeys::new(alg, &SECRET);
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(&channel_plaintext());
    let header = Header {
        frame_type: FrameType::Channel,
        flags: Flags::EMPTY,
        session_id: SessionId(SESSION),
        stream_id: 0,
        packet_number: 0,
        payload_len: 0,
    };
    let pn = keys.seal(&mut out, 0, header).unwrap();
    assert_eq!(pn, 0);
    out
}

#[test]
fn vectors_are_what_the_encoders_write() {
    for v in vectors() {
        assert_eq!(v.bytes, unhex(v.hex), "{}", v.label);
    }
}

#[test]
fn vectors_decode_to_what_they_were_built_from() {
    for v in vectors() {
        let chunks: Vec<Chunk<'_>> = Chunks::new(&v.bytes).collect::<Result<_, _>>().unwrap();
        match v.label {
            "ack" => {
                let [Chunk::Ack(a)] = chunks[..] else {
                    panic!("{chunks:?}")
                };
                assert_eq!((a.largest, a.delay_us), (100, ACK_DELAY_US));
                assert_eq!(a.ranges().collect::<Vec<_>>(), ACK_RANGES);
            }
            "channel_plaintext" => {
                let [Chunk::Ack(a), credit, m1, m2] = chunks[..] else {
                    panic!("{chunks:?}")
                };
                assert_eq!((a.largest, a.delay_us), (9, 1000));
                assert_eq!(a.ranges().collect::<Vec<_>>(), [(0, 9)]);
                assert_eq!(credit, Chunk::FlowCredit { max_data: CREDIT });
                assert_eq!([m1, m2], [Chunk::Msg(msgs()[6].2), Chunk::Msg(msgs()[0].2)]);
            }
            "probe_plaintext" => {
                let [Chunk::Ack(a), Chunk::Ping, Chunk::Padding(25)] = chunks[..] else {
                    panic!("{chunks:?}")
                };
                assert_eq!(a.ranges().collect::<Vec<_>>(), [(4, 4)]);
            }
            _ => assert_eq!(chunks, v.chunks, "{}", v.label),
        }
        if let [Chunk::Msg(m)] = chunks[..] {
            assert_eq!(m.encoded_len(), v.bytes.len(), "{}", v.label);
        }
    }
}

#[test]
fn sealed_channel_frames_match_and_open() {
    for (alg, label, hex) in SEALED {
        let mut frame = sealed(alg);
        assert_eq!(frame, unhex(hex), "{label}");
        let (decoded, rest) = Frame::decode(&frame).unwrap();
        assert!(rest.is_empty());
        let (h, hb) = (decoded.header, *decoded.header_bytes);
        assert_eq!(h.frame_type, FrameType::Channel);
        assert_eq!(h.payload_len as usize, channel_plaintext().len() + TAG_LEN);
        let mut keys = RecvKeys::new(alg, &SECRET);
        let plaintext = keys.open(&h, &hb, &mut frame[HEADER_LEN..]).unwrap();
        assert_eq!(plaintext, channel_plaintext(), "{label}");
    }
}

#[test]
fn the_document_prints_exactly_these_vectors() {
    let mut expected: Vec<(String, Vec<u8>)> = vectors()
        .into_iter()
        .map(|v| (v.label.to_owned(), v.bytes))
        .collect();
    expected.extend(
        SEALED
            .iter()
            .map(|&(alg, label, _)| (label.to_owned(), sealed(alg))),
    );
    // The header both sealed frames share, printed on its own.
    expected.push((
        "header".to_owned(),
        sealed(SEALED[0].0)[..HEADER_LEN].to_vec(),
    ));
    let printed = document_vectors();
    for (label, bytes) in &expected {
        let hits: Vec<_> = printed.iter().filter(|(l, _)| l == label).collect();
        assert_eq!(
            hits.len(),
            1,
            "{label}: printed {} times in {SECTION}",
            hits.len()
        );
        assert_eq!(&hits[0].1, bytes, "{label}: the document's bytes differ");
    }
    for (label, _) in &printed {
        assert!(
            expected.iter().any(|(l, _)| l == label),
            "{label}: printed in {SECTION} but not checked here"
        );
    }
}
