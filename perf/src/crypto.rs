//! Workload `crypto`: the one-core AEAD ceiling. How many `size`-byte
//! payloads one thread seals, and opens, per second with stt's own frame
//! keys ([`SendKeys::seal`], [`RecvKeys::open`]), no I/O at all: the most
//! any sealed transport could deliver per core.
//!
//! Sealing is timed as the send path does it: header room, plaintext,
//! `seal`, into one reused buffer. Opening must not re-open a frame (the
//! replay window would refuse it before any decryption, and we would time
//! the refusal), so a batch of fresh frames, packet numbers in order, is
//! sealed untimed, then opened in place once each, timed, and every open
//! must succeed; the timed intervals add up to `seconds`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use stt::crypto::{hardware_aes, Algorithm, RecvKeys, SendKeys};
use stt::frame::{Flags, Frame, FrameType, Header, SessionId, HEADER_LEN, TAG_LEN};

use crate::common::{machine, median, min_max};
use crate::Args;

/// Traffic secret of the key pairs.
const SECRET: [u8; 32] = [3; 32];
/// Frames sealed untimed, then opened timed, per batch (about 300 KiB at
/// 1200 B: in cache, as a datagram just copied in by the kernel).
const OPEN_BATCH: usize = 256;

/// A DATA header; `seal` fills in packet number, key phase and length.
fn data_header() -> Header {
    Header {
        frame_type: FrameType::Data,
        flags: Flags::EMPTY,
        session_id: SessionId(0x5eed_5eed_5eed_5eed),
        stream_id: 1,
        packet_number: 0,
        payload_len: 0,
    }
}

/// Deterministic, non-constant payload bytes.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// Seals `plaintext` as the real path does: header room, plaintext, seal.
fn seal_into(keys: &mut SendKeys, buf: &mut Vec<u8>, plaintext: &[u8]) {
    buf.clear();
    buf.resize(HEADER_LEN, 0);
    buf.extend_from_slice(plaintext);
    keys.seal(buf, 0, data_header()).expect("seal");
}

/// Payloads of `size` bytes sealed per second on this thread.
pub fn seal_rate(alg: Algorithm, size: usize, seconds: f64) -> f64 {
    let plaintext = payload(size);
    let mut keys = SendKeys::new(alg, &SECRET);
    let mut buf = Vec::with_capacity(HEADER_LEN + size + TAG_LEN);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(seconds);
    let mut n = 0u64;
    while Instant::now() < end {
        for _ in 0..256 {
            seal_into(&mut keys, &mut buf, black_box(&plaintext));
        }
        n += 256;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Payloads of `size` bytes opened per second on this thread (fresh frames
/// only, see the module's description).
pub fn open_rate(alg: Algorithm, size: usize, seconds: f64) -> f64 {
    let plaintext = payload(size);
    let mut send = SendKeys::new(alg, &SECRET);
    let mut recv = RecvKeys::new(alg, &SECRET);
    let mut frames: Vec<(Header, [u8; HEADER_LEN], Vec<u8>)> = (0..OPEN_BATCH)
        .map(|_| {
            (
                data_header(),
                [0; HEADER_LEN],
                Vec::with_capacity(HEADER_LEN + size + TAG_LEN),
            )
        })
        .collect();
    let budget = Duration::from_secs_f64(seconds);
    let mut timed = Duration::ZERO;
    let mut n = 0u64;
    while timed < budget {
        for (header, header_bytes, buf) in frames.iter_mut() {
            seal_into(&mut send, buf, &plaintext);
            let (frame, _) = Frame::decode(buf).expect("decode");
            *header = frame.header;
            *header_bytes = *frame.header_bytes;
        }
        let t = Instant::now();
        for (header, header_bytes, buf) in frames.iter_mut() {
            let opened = recv
                .open(header, header_bytes, &mut buf[HEADER_LEN..])
                .expect("a fresh frame opens");
            black_box(opened);
        }
        timed += t.elapsed();
        n += OPEN_BATCH as u64;
    }
    n as f64 / timed.as_secs_f64()
}

const CONTENDERS: [(Algorithm, bool); 4] = [
    (Algorithm::Aes256Gcm, true),
    (Algorithm::Aes256Gcm, false),
    (Algorithm::ChaCha20Poly1305, true),
    (Algorithm::ChaCha20Poly1305, false),
];

fn name(alg: Algorithm, seal: bool) -> String {
    format!("{alg} {}", if seal { "seal" } else { "open" })
}

pub fn workload(args: &Args) -> String {
    let size = args.size;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); CONTENDERS.len()];
    for run in 0..args.runs {
        for (i, &(alg, seal)) in CONTENDERS.iter().enumerate() {
            let rate = if seal {
                seal_rate(alg, size, args.seconds)
            } else {
                open_rate(alg, size, args.seconds)
            };
            eprintln!(
                "run {}/{}: {}, {size} B: {:.0} /s ({:.2} Gbit/s)",
                run + 1,
                args.runs,
                name(alg, seal),
                rate,
                rate * size as f64 * 8.0 / 1e9
            );
            samples[i].push(rate);
        }
    }
    let base = median(samples[0].clone());
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| operation | payloads/s (median) | min – max | payload Gbit/s | vs AES-256-GCM seal |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|");
    for (i, &(alg, seal)) in CONTENDERS.iter().enumerate() {
        let rate = median(samples[i].clone());
        let (lo, hi) = min_max(&samples[i]);
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.0} – {:.0} | {:.2} | {:.2}× |",
            name(alg, seal),
            rate,
            lo,
            hi,
            rate * size as f64 * 8.0 / 1e9,
            if base > 0.0 { rate / base } else { 0.0 }
        );
    }
    format!(
        "## AEAD ceiling, one core, {size}-byte payloads\n\n\
         Machine: {machine}; AES instructions {aes}. {runs} runs of {secs} s per operation, \
         interleaved. One thread, stt's frame keys (`stt::crypto::SendKeys::seal`, \
         `RecvKeys::open`), no I/O: seal is header room + plaintext + `seal` into a reused \
         buffer; open is timed over batches of {batch} fresh frames sealed untimed (packet \
         numbers in order, each opened once in place and required to succeed, so no replay \
         refusal is timed). A sealed transport cannot deliver more per core than this.\n\n{table}",
        machine = machine(),
        aes = if hardware_aes() { "present" } else { "absent" },
        runs = args.runs,
        secs = args.seconds,
        batch = OPEN_BATCH,
    )
}
