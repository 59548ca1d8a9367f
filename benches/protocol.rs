//! Micro-benchmarks of the protocol layers, through the public API only.
//!
//! Run with `cargo bench --bench protocol` (under 2 minutes on 2 cores, plus
//! the build).
//! Every group sets a throughput, so criterion reports bytes/s (or
//! elements/s where bytes make no sense) next to the time per operation.
//!
//! | group                 | what one iteration is                                      |
//! |-----------------------|------------------------------------------------------------|
//! | `seal`                | `SendKeys::seal` of one frame into a reused buffer         |
//! | `open`                | `RecvKeys::open` of one distinct, freshly sealed frame     |
//! | `frame`               | `Header::encode`, `Header::decode` or `Frame::decode`      |
//! | `session_send`        | `Session::send` of one message into a reused `Transmits`   |
//! | `fragment_reassemble` | split 1 MiB into 1412-byte fragments and reassemble it     |
//! | `session_receive`     | `Session::handle_datagram` of one fresh 1200 B datagram    |
//! | `handshake`           | a whole 3-message handshake between two in-memory sessions |
//! |                       | (and refusing message 1 from another network)              |
//! | `stretch`             | one offline guess of the shared seed against a captured    |
//! |                       | message 1: Argon2id + HKDF + check (now), HKDF + check     |
//! |                       | (before the stretch)                                       |
//!
//! Receive-side benchmarks (`open`, `session_receive`) must not re-open one
//! frame: the replay window would refuse it before any decryption, and we
//! would time the refusal. They use `iter_batched_ref`: the untimed setup
//! seals one new frame (next packet number) per iteration, the timed routine
//! opens it in place exactly once and `expect`s success, so a replay refusal
//! would abort the run rather than be measured. No copy is timed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

use stt::crypto::{Algorithm, Identity, NetworkKey, RecvKeys, SendKeys};
use stt::frame::{Flags, Frame, FrameType, Header, SessionId, HEADER_LEN, TAG_LEN};
use stt::session::{Session, SessionConfig, Transmits};
use stt::stream::{self, Reassembler, ReassemblyConfig};

/// Both AEADs, whatever this CPU would negotiate.
const ALGORITHMS: [Algorithm; 2] = [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305];
/// A tiny message, a typical datagram payload, a large WebSocket record.
const SIZES: [usize; 3] = [64, 1200, 64 * 1024];
/// One message that fits a 1472-byte datagram unfragmented.
const DATAGRAM_PAYLOAD: usize = 1200;
/// A message fragmented at the default MTU.
const LARGE_MESSAGE: usize = 1 << 20;
/// Chunk of a fragment at MTU 1472: 1472 − `FRAGMENT_OVERHEAD` (60).
const FRAGMENT_CHUNK: usize = 1412;
/// Traffic secret shared by the benchmark's key pairs.
const SECRET: [u8; 32] = [3; 32];

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

/// Frames per `iter_batched_ref` batch: about 2 MiB of input (in cache when
/// opened, as a datagram just copied in by the kernel), 16 to 4096 frames.
fn batch_for(frame_len: usize) -> BatchSize {
    BatchSize::NumIterations(((2 << 20) / frame_len).clamp(16, 4096) as u64)
}

/// Seals `plaintext` as the real path does: header room, plaintext, seal.
fn seal_into(keys: &mut SendKeys, buf: &mut Vec<u8>, plaintext: &[u8]) -> u64 {
    buf.clear();
    buf.resize(HEADER_LEN, 0);
    buf.extend_from_slice(plaintext);
    keys.seal(buf, 0, data_header()).expect("seal")
}

fn bench_seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    group.measurement_time(Duration::from_secs(3));
    for alg in ALGORITHMS {
        for size in SIZES {
            let plaintext = payload(size);
            let mut keys = SendKeys::new(alg, &SECRET);
            let mut buf = Vec::with_capacity(HEADER_LEN + size + TAG_LEN);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(alg.to_string(), size), |b| {
                b.iter(|| seal_into(&mut keys, &mut buf, black_box(&plaintext)))
            });
        }
    }
    group.finish();
}

/// A sealed frame, its header already decoded, ready to be opened once.
struct Sealed {
    header: Header,
    header_bytes: [u8; HEADER_LEN],
    /// The whole frame: the payload stays at offset 29, as in a datagram.
    frame: Vec<u8>,
}

fn bench_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    group.measurement_time(Duration::from_secs(3));
    for alg in ALGORITHMS {
        for size in SIZES {
            let plaintext = payload(size);
            let mut send = SendKeys::new(alg, &SECRET);
            let mut recv = RecvKeys::new(alg, &SECRET);
            // Untimed: one new frame per iteration, packet numbers in order,
            // so each is opened exactly once and the window only slides.
            let mut setup = || {
                let mut buf = Vec::with_capacity(HEADER_LEN + size + TAG_LEN);
                seal_into(&mut send, &mut buf, &plaintext);
                let (frame, _) = Frame::decode(&buf).expect("decode");
                let (header, header_bytes) = (frame.header, *frame.header_bytes);
                Sealed {
                    header,
                    header_bytes,
                    frame: buf,
                }
            };
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(alg.to_string(), size), |b| {
                b.iter_batched_ref(
                    &mut setup,
                    |f| {
                        recv.open(&f.header, &f.header_bytes, &mut f.frame[HEADER_LEN..])
                            .expect("a fresh frame opens")
                            .len()
                    },
                    batch_for(HEADER_LEN + size + TAG_LEN),
                )
            });
        }
    }
    group.finish();
}

fn bench_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    let mut keys = SendKeys::new(Algorithm::Aes256Gcm, &SECRET);
    let mut sealed = Vec::new();
    seal_into(&mut keys, &mut sealed, &payload(DATAGRAM_PAYLOAD));
    let header = Header::decode(&sealed).expect("decode");
    group.bench_function("Header::encode", |b| {
        let mut out = [0u8; HEADER_LEN];
        b.iter(|| {
            black_box(&header).encode(&mut out);
            black_box(&mut out);
        })
    });
    group.bench_function("Header::decode", |b| {
        b.iter(|| Header::decode(black_box(&sealed)).expect("decode"))
    });
    // The whole result goes to `black_box`: returning only a field would let
    // the compiler skip decoding the others.
    group.bench_function("Frame::decode/1200B", |b| {
        b.iter(|| Frame::decode(black_box(&sealed)).expect("decode"))
    });
    group.finish();
}

/// Node identities and the network key of the in-memory pair.
struct Nodes {
    client: Identity,
    server: Identity,
    network: NetworkKey,
}

impl Nodes {
    fn new() -> Self {
        Nodes {
            client: Identity::from_seed(&[1; 32]).expect("seed"),
            server: Identity::from_seed(&[2; 32]).expect("seed"),
            network: NetworkKey::from_seed(&[7; 32]).expect("seed"),
        }
    }

    /// Handshake messages 1, 2 and 3 between a new client and server; both
    /// are established when it returns (the server's confirming ping is
    /// still queued, undelivered).
    fn handshake(&self, id: u64, now: Instant) -> (Session, Session) {
        let config = SessionConfig::default();
        let mut client = Session::connect(
            config.clone(),
            &self.client,
            &self.network,
            SessionId(id),
            now,
        )
        .expect("connect");
        let msg1 = client.poll_transmit().expect("message 1");
        let mut server =
            Session::accept(config, &self.server, &self.network, &msg1, now).expect("accept");
        let mut msg2 = server.poll_transmit().expect("message 2");
        client.handle_datagram(now, &mut msg2).expect("message 2");
        let mut msg3 = client.poll_transmit().expect("message 3");
        server.handle_datagram(now, &mut msg3).expect("message 3");
        assert!(client.is_established() && server.is_established());
        (client, server)
    }

    /// An established pair with nothing in flight and no event pending.
    fn established_pair(&self, now: Instant) -> (Session, Session) {
        let (mut client, mut server) = self.handshake(0x5eed, now);
        // Ping, pong: until neither side has anything to send.
        for _ in 0..8 {
            let mut moved = false;
            while let Some(mut d) = server.poll_transmit() {
                client.handle_datagram(now, &mut d).expect("to client");
                moved = true;
            }
            while let Some(mut d) = client.poll_transmit() {
                server.handle_datagram(now, &mut d).expect("to server");
                moved = true;
            }
            if !moved {
                break;
            }
        }
        while client.poll_event().is_some() {}
        while server.poll_event().is_some() {}
        (client, server)
    }
}

fn bench_session_send(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_send");
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(50);
    let nodes = Nodes::new();
    let now = Instant::now();
    let (mut client, _server) = nodes.established_pair(now);
    let alg = client.algorithm().expect("established").to_string();
    let mut out = Transmits::new();
    for (size, datagrams) in [
        (DATAGRAM_PAYLOAD, 1),
        (
            LARGE_MESSAGE,
            stream::fragment_count(LARGE_MESSAGE, FRAGMENT_CHUNK),
        ),
    ] {
        let message = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new(&alg, size), |b| {
            b.iter(|| {
                out.clear();
                let n = client
                    .send(now, 1, black_box(&message), &mut out)
                    .expect("send");
                debug_assert_eq!(n, datagrams);
                n
            })
        });
        // Check once, in release builds too, that the path is the one named.
        out.clear();
        let n = client.send(now, 1, &message, &mut out).expect("send");
        assert_eq!(n, datagrams, "{size} B message: datagram count");
    }
    group.finish();
}

fn bench_fragment_reassemble(c: &mut Criterion) {
    let mut group = c.benchmark_group("fragment_reassemble");
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(50);
    let message = payload(LARGE_MESSAGE);
    let mut reassembler = Reassembler::new(ReassemblyConfig::default(), None);
    let now = Instant::now();
    // Fresh ids: the window of completed ids refuses a reused one as Stale.
    let mut message_id = 0u32;
    group.throughput(Throughput::Bytes(LARGE_MESSAGE as u64));
    group.bench_function(BenchmarkId::new("1412B_chunks", LARGE_MESSAGE), |b| {
        b.iter(|| {
            message_id = message_id.wrapping_add(1);
            let fragments = stream::fragments(
                message_id,
                FrameType::DATA,
                black_box(&message),
                FRAGMENT_CHUNK,
            )
            .expect("split");
            let mut done = None;
            for (header, chunk) in fragments {
                done = reassembler
                    .insert(now, 1, &header, chunk)
                    .expect("fragment accepted");
            }
            // The message buffer is freed inside the timing, as an
            // application consuming it would.
            done.expect("message complete").payload.len()
        })
    });
    group.finish();
}

fn bench_session_receive(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_receive");
    group.measurement_time(Duration::from_secs(4));
    let nodes = Nodes::new();
    let now = Instant::now();
    let (mut client, mut server) = nodes.established_pair(now);
    let alg = client.algorithm().expect("established").to_string();
    let message = payload(DATAGRAM_PAYLOAD);
    let mut out = Transmits::new();
    // Untimed: the client seals the next datagram (next packet number).
    let mut setup = || {
        out.clear();
        client.send(now, 1, &message, &mut out).expect("send");
        out.get(0).expect("one datagram").to_vec()
    };
    group.throughput(Throughput::Bytes(DATAGRAM_PAYLOAD as u64));
    group.bench_function(BenchmarkId::new(alg, DATAGRAM_PAYLOAD), |b| {
        b.iter_batched_ref(
            &mut setup,
            |datagram| {
                server
                    .handle_datagram(now, datagram)
                    .expect("a fresh datagram is accepted");
                // Take the message, as the owner of the session must.
                let mut delivered = 0;
                while let Some(event) = server.poll_event() {
                    delivered += 1;
                    drop(black_box(event));
                }
                debug_assert_eq!(delivered, 1);
                delivered
            },
            batch_for(DATAGRAM_PAYLOAD + HEADER_LEN + TAG_LEN),
        )
    });
    group.finish();
    assert_eq!(
        server.stats().frames_dropped,
        0,
        "every datagram was accepted"
    );
}

fn bench_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(50);
    group.throughput(Throughput::Elements(1));
    let nodes = Nodes::new();
    let now = Instant::now();
    let mut id = 0u64;
    group.bench_function("XXpsk0_3_messages", |b| {
        b.iter(|| {
            id = id.wrapping_add(1);
            nodes.handshake(id, now)
        })
    });
    // What a node pays to refuse message 1 from outside the network (another
    // shared seed): the work anyone can make a responder do per datagram.
    let foreign = NetworkKey::from_seed(&[8; 32]).expect("seed");
    let msg1 = Session::connect(
        SessionConfig::default(),
        &nodes.client,
        &foreign,
        SessionId(1),
        now,
    )
    .expect("connect")
    .poll_transmit()
    .expect("message 1");
    group.bench_function("reject_foreign_msg1", |b| {
        b.iter(|| {
            Session::accept(
                SessionConfig::default(),
                &nodes.server,
                &nodes.network,
                black_box(&msg1),
                now,
            )
            .expect_err("a foreign message 1 is refused")
        })
    });
    // Under load, side by side: what a genuine message 1 costs the
    // responder when it keeps state (accept: message 2, two
    // Diffie-Hellmans), against the stateless path (the PSK check of
    // message 1, then a cookie challenge), and the check alone refusing a
    // foreign one.
    let genuine = Session::connect(
        SessionConfig::default(),
        &nodes.client,
        &nodes.network,
        SessionId(2),
        now,
    )
    .expect("connect")
    .poll_transmit()
    .expect("message 1");
    let check = stt::crypto::Msg1Check::new(&nodes.network);
    let cookies = stt::crypto::CookieKey::from_secret(&[9; 32]);
    let from: std::net::SocketAddr = "127.0.0.1:4000".parse().expect("literal address");
    group.bench_function("accept_genuine_msg1", |b| {
        b.iter(|| {
            Session::accept(
                SessionConfig::default(),
                &nodes.server,
                &nodes.network,
                black_box(&genuine),
                now,
            )
            .expect("a genuine message 1 is accepted")
        })
    });
    group.bench_function("check_and_challenge_genuine_msg1", |b| {
        b.iter(|| {
            let m = black_box(&genuine);
            assert!(check.verify(&m[..HEADER_LEN], &m[HEADER_LEN..]));
            cookies.challenge(1, SessionId(2), from, check.challenge_key(), m)
        })
    });
    group.bench_function("check_foreign_msg1", |b| {
        b.iter(|| {
            let m = black_box(&msg1);
            assert!(!check.verify(&m[..HEADER_LEN], &m[HEADER_LEN..]));
        })
    });
    group.finish();
}

/// What one offline guess of the shared seed costs an attacker holding a
/// captured message 1: before the Argon2id stretch (HKDF, the message-1
/// precomputation and the check) and with it (the same plus Argon2id, which
/// every node also pays once at start).
fn bench_stretch(c: &mut Criterion) {
    let mut group = c.benchmark_group("stretch");
    group.throughput(Throughput::Elements(1));
    let nodes = Nodes::new();
    let captured = Session::connect(
        SessionConfig::default(),
        &nodes.client,
        &nodes.network,
        SessionId(3),
        Instant::now(),
    )
    .expect("connect")
    .poll_transmit()
    .expect("message 1");
    let guess = *b"correct horse battery staple, 1!";
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("guess_without_stretch", |b| {
        b.iter(|| {
            // What the guess cost before: the seed went into HKDF directly.
            let key = NetworkKey::from_stretched(black_box(&guess));
            let check = stt::crypto::Msg1Check::new(&key);
            check.verify(&captured[..HEADER_LEN], &captured[HEADER_LEN..])
        })
    });
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("guess_with_argon2id", |b| {
        b.iter(|| {
            let stretched = stt::crypto::keys::stretch(black_box(&guess)).expect("stretch");
            let key = NetworkKey::from_stretched(&stretched);
            let check = stt::crypto::Msg1Check::new(&key);
            check.verify(&captured[..HEADER_LEN], &captured[HEADER_LEN..])
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench_seal, bench_open, bench_frame, bench_session_send,
        bench_fragment_reassemble, bench_session_receive, bench_handshake, bench_stretch
}
criterion_main!(benches);
