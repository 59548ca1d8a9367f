//! Target `frame_decode`: the wire parsers of `stt::frame` on arbitrary bytes.
//!
//! The input is used whole, as a datagram and as a plaintext, by every
//! parser. Besides "never panics", it checks:
//!
//! - a decoded [`Header`] re-encodes to exactly the first 29 input bytes
//!   (decoding is lossless: no two wire forms give one header);
//! - [`Frames`] yields each frame at the offset where it starts, with
//!   `header_bytes` equal to the re-encoded header and the declared payload
//!   length; it stops after its first error, and without error it covers the
//!   whole datagram;
//! - a decoded [`Control`] re-encodes to the input bytes exactly;
//! - a batch whose records all parse re-encodes to the input bytes exactly.

use stt::frame::{write_batch_record, BatchRecords, Control, Frames, Header, HEADER_LEN};

/// Runs every parser on `data`.
pub fn run(data: &[u8]) {
    header_round_trip(data);
    frames(data);
    control(data);
    batch(data);
}

fn header_round_trip(data: &[u8]) {
    if let Ok(header) = Header::decode(data) {
        assert_eq!(
            header.to_bytes()[..],
            data[..HEADER_LEN],
            "decoded header {header:?} does not re-encode to its input bytes"
        );
    }
}

fn frames(data: &[u8]) {
    let mut offset = 0usize;
    let mut failed = false;
    for item in Frames::new(data) {
        assert!(!failed, "Frames yielded an item after an error");
        match item {
            Ok(frame) => {
                let end = offset + HEADER_LEN + frame.header.payload_len as usize;
                assert!(end <= data.len(), "frame runs past the datagram");
                assert_eq!(&frame.header_bytes[..], &data[offset..offset + HEADER_LEN]);
                assert_eq!(frame.header_bytes, &frame.header.to_bytes());
                assert_eq!(frame.payload, &data[offset + HEADER_LEN..end]);
                // The payload of a CONTROL frame is ciphertext here, but the
                // parser must take any bytes.
                let _ = Control::decode(frame.payload);
                offset = end;
            }
            Err(_) => failed = true,
        }
    }
    if !failed {
        assert_eq!(offset, data.len(), "Frames stopped early without an error");
    }
}

fn control(data: &[u8]) {
    if let Ok(c) = Control::decode(data) {
        let mut out = Vec::with_capacity(data.len());
        c.encode(&mut out);
        assert_eq!(
            out, data,
            "decoded control {c:?} does not re-encode to its input"
        );
    }
}

fn batch(data: &[u8]) {
    let mut out = Vec::with_capacity(data.len());
    let mut failed = false;
    for record in BatchRecords::new(data) {
        assert!(!failed, "BatchRecords yielded an item after an error");
        match record {
            Ok(r) => write_batch_record(&mut out, r),
            Err(_) => failed = true,
        }
    }
    if !failed {
        assert_eq!(
            out, data,
            "a batch that parses does not re-encode to its input"
        );
    }
}
