//! Writes the seed corpora in `fuzz/corpus-seed/<target>/`.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
//! ```
//!
//! Seeds are small inputs that already pass the first checks of each target
//! (genuine handshake messages, sealed frames, well-formed fragments and
//! operation sequences), so the fuzzer starts deep instead of rediscovering
//! the wire format. Handshake and sealed bytes use random ephemeral keys, so
//! every run writes different bytes; rerun after a wire format change.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use stt::crypto::{Identity, NetworkKey};
use stt::frame::{
    write_batch_record, Control, Flags, FrameType, Header, SessionId, HEADER_LEN, TAG_LEN,
};
use stt::session::{Session, SessionConfig, Transmits};
use stt::stream::{fragments, FragmentHeader};
use stt_fuzz::handshake::{self as hs, Mode, Mutation};
use stt_fuzz::reassembly::{self as re, pattern};
use stt_fuzz::session_established::{self as se, Op as SeOp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus-seed");
    // With a target name, only that target's seeds are rewritten.
    let only = std::env::args().nth(1);
    let wanted = |t: &str| only.as_deref().is_none_or(|o| o == t);
    if wanted("frame_decode") {
        write(&root.join("frame_decode"), &frame_decode_seeds()?)?;
    }
    if wanted("handshake") {
        write(&root.join("handshake"), &handshake_seeds())?;
    }
    if wanted("reassembly") {
        write(&root.join("reassembly"), &reassembly_seeds())?;
    }
    if wanted("session_established") {
        write(&root.join("session_established"), &session_seeds())?;
    }
    if wanted("cookie") {
        write(&root.join("cookie"), &cookie_seeds())?;
    }
    if wanted("channel_chunks") {
        write(&root.join("channel_chunks"), &channel_chunks_seeds())?;
    }
    if wanted("channel_pair") {
        write(&root.join("channel_pair"), &channel_pair_seeds())?;
    }
    println!("wrote seeds under {}", root.display());
    Ok(())
}

/// `cookie`: the first byte 0 picks epoch 0 and source 127.0.0.1:1000 (see
/// `stt_fuzz::cookie`); then a genuine echo of a genuine message 1, the
/// same with a wrong cookie, and a challenge.
fn cookie_seeds() -> Seeds {
    use stt::crypto::cookie;
    let key = stt_fuzz::cookie::key();
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1000));
    let (_, msg1) = hs::client(Instant::now());
    let id = hs::SESSION_ID;
    let with = |bytes: &[u8]| {
        let mut v = vec![0u8];
        v.extend_from_slice(bytes);
        v
    };
    let good = cookie::echo(id, &key.cookie(0, id, peer), &msg1);
    let bad = cookie::echo(id, &[0x55; cookie::COOKIE_LEN], &msg1);
    // Found by this target: a challenge whose header announces 0 bytes, with
    // the cookie after it anyway, was read as a challenge.
    let mac = stt_fuzz::cookie::challenge_key();
    let m1 = stt_fuzz::cookie::CHALLENGED_MSG1;
    let mut len_0 = key.challenge(0, id, peer, &mac, m1);
    len_0[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&[0; 4]);
    vec![
        ("echo_genuine", with(&good)),
        ("echo_wrong_cookie", with(&bad)),
        ("challenge", with(&key.challenge(0, id, peer, &mac, m1))),
        ("regression_challenge_len_0", with(&len_0)),
    ]
}

type Seeds = Vec<(&'static str, Vec<u8>)>;

/// `channel_chunks`: one plaintext of each chunk type, and whole packets.
fn channel_chunks_seeds() -> Seeds {
    use stt::frame::chunk::{
        write_ack, write_flow_credit, write_msg, write_padding, write_ping, Delivery, MsgChunk,
    };
    let msg = |delivery, fragment, data: &'static [u8]| MsgChunk {
        delivery,
        channel: 1,
        msg_type: 0x01,
        seq: 300,
        fragment,
        data,
    };
    let one = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        f(&mut out);
        out
    };
    let ack = one(&|o| write_ack(o, 25_000, [(95, 100), (80, 90), (50, 50), (2, 10)]));
    let whole = one(&|o| write_msg(o, &msg(Delivery::ReliableOrdered, None, b"hello")));
    let fragment = one(&|o| {
        write_msg(
            o,
            &msg(Delivery::Unreliable, Some((5000, 1200)), b"fragment"),
        )
    });
    let credit = one(&|o| write_flow_credit(o, 34_603_008));
    let packet = [ack.clone(), credit.clone(), whole.clone(), fragment.clone()].concat();
    let probe = one(&|o| {
        write_ack(o, 0, [(4, 4)]);
        write_ping(o);
        write_padding(o, 64);
    });
    vec![
        ("ack", ack),
        ("msg_whole", whole),
        ("msg_fragment", fragment),
        ("flow_credit", credit),
        ("ping", one(&|o| write_ping(o))),
        ("padding", vec![0; 16]),
        ("packet", packet),
        ("probe", probe),
    ]
}

/// `channel_pair`: honest exchanges (messages on every channel, loss and
/// reordering, a path change, flow control moving), and injections.
fn channel_pair_seeds() -> Seeds {
    use stt_fuzz::channel_pair::{encode, Op};
    let send = |side, channel, len| Op::Send {
        side,
        channel,
        len,
        app: channel == 2,
        policy: 0,
    };
    let round = |mask: u8, action: u8| {
        vec![
            Op::Flush { side: 0 },
            Op::Wire {
                side: 0,
                count: 7,
                mask,
                action,
            },
            Op::Take { side: 1 },
            Op::Advance { ms: 30 },
            Op::Flush { side: 1 },
            Op::Wire {
                side: 1,
                count: 7,
                mask: 0,
                action: 0,
            },
            Op::Take { side: 0 },
            Op::Advance { ms: 0 },
        ]
    };
    let mut every_channel: Vec<Op> = (0..4)
        .flat_map(|c| [send(0, c, 3), send(0, c, 0x45), send(1, c, 0x81)])
        .collect();
    for _ in 0..4 {
        every_channel.extend(round(0b0000_0100, 1));
    }
    let mut lossy: Vec<Op> = (0..8).map(|i| send(0, i % 4, 0x50)).collect();
    for i in 0..6 {
        lossy.extend(round(0b0101_0010 >> i, 0));
    }
    let mut path: Vec<Op> = vec![send(0, 0, 0x50), send(0, 3, 0x90), send(0, 0, 0xc1)];
    path.extend(round(0, 0));
    path.push(Op::Path { side: 0, size: 0 });
    path.push(Op::Path { side: 1, size: 0 });
    path.extend(round(0, 0));
    let mut credit: Vec<Op> = (0..40).map(|i| send(0, 3 * (i % 2), 0xff)).collect();
    for _ in 0..12 {
        credit.extend(round(0, 0));
    }
    let mut inject: Vec<Op> = vec![send(0, 0, 3)];
    inject.extend(round(0, 0));
    inject.extend([
        Op::Raw {
            side: 1,
            pn: 900,
            bytes: vec![
                0x02, 0x07, 0x00, 0x01, 0x41, 0x2c, 0x53, 0x88, 0x44, 0xb0, 0x02, 1, 2,
            ],
        },
        Op::Msg {
            side: 1,
            pn: 901,
            flags: 0x06,
            channel: 3,
            seq: 5,
            total: 200,
            offset: 100,
            len: 50,
        },
        Op::Ack {
            side: 0,
            pn: 902,
            back: 0,
            delay: 1000,
            ranges: vec![(0, 1), (2, 0)],
        },
        Op::Take { side: 1 },
    ]);
    vec![
        ("every_channel", encode(&every_channel)),
        ("lossy", encode(&lossy)),
        ("path_change", encode(&path)),
        ("credit", encode(&credit)),
        ("inject", encode(&inject)),
    ]
}

fn write(dir: &Path, seeds: &Seeds) -> std::io::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes)?;
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    Ok(())
}

/// An established pair through the public API, as a node would run it.
fn pair(now: Instant) -> Result<(Session, Session), Box<dyn std::error::Error>> {
    let network = NetworkKey::from_seed(&[7u8; 32])?;
    let server_id = Identity::from_seed(&[1u8; 32])?;
    let client_id = Identity::from_seed(&[2u8; 32])?;
    let mut client = Session::connect(
        SessionConfig::default(),
        &client_id,
        &network,
        SessionId(42),
        now,
    )?;
    let msg1 = client.poll_transmit().ok_or("message 1")?;
    let mut server = Session::accept(SessionConfig::default(), &server_id, &network, &msg1, now)?;
    let mut msg2 = server.poll_transmit().ok_or("message 2")?;
    client.handle_datagram(now, &mut msg2)?;
    let mut msg3 = client.poll_transmit().ok_or("message 3")?;
    server.handle_datagram(now, &mut msg3)?;
    Ok((client, server))
}

fn frame_decode_seeds() -> Result<Seeds, Box<dyn std::error::Error>> {
    let now = Instant::now();
    let (mut c, msg1) = hs::client(now);
    let k = hs::keys();
    let mut s = Session::accept(SessionConfig::default(), &k.server, &k.network, &msg1, now)?;
    let msg2 = s.poll_transmit().ok_or("message 2")?;
    c.handle_datagram(now, &mut msg2.clone())?;
    let msg3 = c.poll_transmit().ok_or("message 3")?;

    let (mut client, _server) = pair(now)?;
    let mut out = Transmits::new();
    client.send(now, 0, b"hello", &mut out)?;
    let data = out.get(0).ok_or("data frame")?.to_vec();
    out.clear();
    client.send_typed(now, FrameType::Application(0x80), 9, b"app", &mut out)?;
    let app = out.get(0).ok_or("app frame")?.to_vec();
    out.clear();
    client.send(now, 1, &[0xab; 3000], &mut out)?;
    let fragment = out.get(0).ok_or("fragment")?.to_vec();
    out.clear();
    client.send_batch(now, 2, &[b"a", b"bc", b""], 1000, &mut out)?;
    let batch = out.get(0).ok_or("batch")?.to_vec();
    let mut two = data.clone();
    two.extend_from_slice(&app);

    let control = |c: Control| {
        let mut v = Vec::new();
        c.encode(&mut v);
        v
    };
    let mut batch_plain = Vec::new();
    for r in [&b"one"[..], b"", b"three"] {
        write_batch_record(&mut batch_plain, r);
    }
    let (h, chunk) = fragments(5, 0x01, &[1u8; 100], 40)?
        .nth(2)
        .ok_or("fragment 2")?;
    let mut frag_plain = h.encode().to_vec();
    frag_plain.extend_from_slice(chunk);
    let empty_control = Header {
        frame_type: FrameType::Control,
        flags: Flags::KEY_PHASE,
        session_id: SessionId(1),
        stream_id: 0,
        packet_number: 7,
        payload_len: TAG_LEN as u32,
    };
    let mut tag_only = empty_control.to_bytes().to_vec();
    tag_only.extend_from_slice(&[0u8; TAG_LEN]);
    assert_eq!(tag_only.len(), HEADER_LEN + TAG_LEN);

    Ok(vec![
        ("handshake_msg1", msg1),
        ("handshake_msg2", msg2),
        ("handshake_msg3", msg3),
        ("sealed_data", data),
        ("sealed_app", app),
        ("sealed_fragment", fragment),
        ("sealed_batch", batch),
        ("two_frames", two),
        ("tag_only_control", tag_only),
        ("control_ping", control(Control::Ping { token: 1 })),
        ("control_pong", control(Control::Pong { token: 2 })),
        ("control_credit", control(Control::FlowCredit { bytes: 3 })),
        ("control_rotation", control(Control::KeyRotation)),
        (
            "control_close",
            control(Control::Close {
                code: 0,
                reason: "bye".into(),
            }),
        ),
        (
            "control_error",
            control(Control::Error {
                code: 2,
                message: "é".into(),
            }),
        ),
        ("batch_plaintext", batch_plain),
        ("fragment_plaintext", frag_plain),
    ])
}

fn handshake_seeds() -> Seeds {
    let now = Instant::now();
    let (_, msg1) = hs::client(now);
    let (_, other_msg1) = hs::client(now);
    let k = hs::keys();
    let mut s = Session::accept(
        SessionConfig::default(),
        &k.server,
        &k.network,
        &other_msg1,
        now,
    )
    .expect("genuine message 1");
    let foreign_msg2 = s.poll_transmit().expect("message 2");
    let len = msg1.len() as u16;
    let m = |offset: u16, truncate: bool, xor: &[u8]| Mutation {
        offset,
        truncate,
        xor: xor.to_vec(),
    };
    vec![
        ("accept_msg1", hs::encode_accept(&msg1)),
        ("accept_header_only", hs::encode_accept(&msg1[..HEADER_LEN])),
        ("client_foreign_msg2", hs::encode_client(&[&foreign_msg2])),
        (
            "client_two_datagrams",
            hs::encode_client(&[&foreign_msg2[..40], &msg1]),
        ),
        (
            "splice1_genuine",
            hs::encode_splice(Mode::SpliceMsg1, &m(0, false, &[])),
        ),
        (
            "splice1_session_id",
            hs::encode_splice(Mode::SpliceMsg1, &m(5, false, &[1])),
        ),
        (
            "splice1_noise",
            hs::encode_splice(Mode::SpliceMsg1, &m(60, false, &[0x80])),
        ),
        (
            "splice1_append",
            hs::encode_splice(Mode::SpliceMsg1, &m(len, false, b"ST\x01")),
        ),
        (
            "splice1_truncate",
            hs::encode_splice(Mode::SpliceMsg1, &m(100, true, &[])),
        ),
        (
            "splice2_genuine",
            hs::encode_splice(Mode::SpliceMsg2, &m(0, false, &[])),
        ),
        (
            "splice2_stream_id",
            hs::encode_splice(Mode::SpliceMsg2, &m(13, false, &[1])),
        ),
        (
            "splice2_noise",
            hs::encode_splice(Mode::SpliceMsg2, &m(50, false, &[4])),
        ),
        (
            "splice3_genuine",
            hs::encode_splice(Mode::SpliceMsg3, &m(0, false, &[])),
        ),
        (
            "splice3_position",
            hs::encode_splice(Mode::SpliceMsg3, &m(24, false, &[2])),
        ),
        (
            "splice3_noise",
            hs::encode_splice(Mode::SpliceMsg3, &m(70, false, &[1])),
        ),
    ]
}

fn reassembly_seeds() -> Seeds {
    use re::Op;
    // total_len selector 100 (small range), chunk selector 40 (40 bytes):
    // three fragments of 40, 40 and 20 bytes.
    let frag = |target: u8, id: u8, index: u8, advance: u8| Op::Fragment {
        target,
        id,
        len: 100,
        chunk: 40,
        index,
        flags: 0,
        advance,
        wrong_len: 0,
    };
    let message: Vec<u8> = (0..100).map(|p| pattern(9, p)).collect();
    let (h, chunk) = fragments(9, 0x80, &message, 40)
        .expect("split")
        .next()
        .expect("fragment 0");
    let mut raw = h.encode().to_vec();
    raw.extend_from_slice(chunk);
    let first_of = |id: u8| frag(0, id, 0, 0);
    vec![
        (
            "in_order",
            re::encode(0, &[frag(0, 1, 0, 0), frag(0, 1, 1, 0), frag(0, 1, 2, 0)]),
        ),
        (
            "reversed_duplicate",
            re::encode(
                1,
                &[
                    frag(1, 2, 2, 1),
                    frag(1, 2, 2, 1),
                    frag(1, 2, 1, 1),
                    frag(1, 2, 0, 1),
                ],
            ),
        ),
        (
            "wrong_length",
            re::encode(
                2,
                &[Op::Fragment {
                    target: 0,
                    id: 3,
                    len: 100,
                    chunk: 40,
                    index: 0,
                    flags: 3 << 3,
                    advance: 0,
                    wrong_len: 39,
                }],
            ),
        ),
        (
            "raw_plaintext",
            re::encode(
                0,
                &[
                    Op::Raw {
                        target: 0,
                        stream: 0,
                        bytes: raw,
                    },
                    frag(0, 9, 1, 0),
                ],
            ),
        ),
        (
            "expiry_then_stale",
            re::encode(
                0,
                &[
                    frag(0, 4, 0, 0),
                    Op::Advance {
                        target: 0,
                        millis: 1500,
                    },
                    frag(0, 4, 1, 0),
                    frag(0, 4, 2, 0),
                ],
            ),
        ),
        (
            "near_limit",
            re::encode(
                3,
                &[Op::Fragment {
                    target: 0,
                    id: 5,
                    len: 2 << 14 | 8,
                    chunk: 0x80,
                    index: 0,
                    flags: 0,
                    advance: 0,
                    wrong_len: 0,
                }],
            ),
        ),
        (
            "whole_and_recreate",
            re::encode(
                0,
                &[
                    Op::Whole {
                        target: 0,
                        id: 6,
                        len: 3000,
                        chunk: 0x50,
                        order: 0x83,
                        stream: 1,
                    },
                    frag(1, 7, 0, 0),
                    Op::Recreate { target: 1 },
                    Op::Whole {
                        target: 1,
                        id: 0x86,
                        len: 10,
                        chunk: 3,
                        order: 0,
                        stream: 0,
                    },
                ],
            ),
        ),
        (
            "many_pending",
            re::encode(0, &(0..20).map(first_of).collect::<Vec<_>>()),
        ),
    ]
}

fn session_seeds() -> Seeds {
    let ping = SeOp::Control(Control::Ping { token: 77 });
    let data = SeOp::Sealed {
        frame_type: FrameType::DATA,
        batch: false,
        stream: 3,
        plaintext: b"hello".to_vec(),
    };
    let fragment = FragmentHeader {
        message_id: 12,
        total_len: 30,
        index: 1,
        chunk_len: 20,
        inner_type: 0x80,
    };
    let mut frag_plain = fragment.encode().to_vec();
    frag_plain.extend_from_slice(&[0u8; 10]);
    vec![
        (
            "data_ping_batch",
            se::encode(
                0,
                &[
                    data.clone(),
                    ping.clone(),
                    SeOp::Batch(vec![b"a".to_vec(), vec![], b"ccc".to_vec()]),
                ],
            ),
        ),
        (
            "fragments",
            se::encode(
                1,
                &[
                    SeOp::Whole {
                        id: 1,
                        len: 4000,
                        chunk: 0x90,
                        order: 0x41,
                        skip: 0,
                    },
                    SeOp::Whole {
                        id: 2,
                        len: 2000,
                        chunk: 0x50,
                        order: 0x82,
                        skip: 0,
                    },
                    SeOp::Fragment {
                        id: 3,
                        len: 100,
                        chunk: 40,
                        index: 0,
                        flags: 1,
                    },
                    SeOp::Sealed {
                        frame_type: FrameType::STREAM,
                        batch: false,
                        stream: 0,
                        plaintext: frag_plain,
                    },
                ],
            ),
        ),
        (
            "key_update_reorder_replay",
            se::encode(
                0x40 | 2,
                &[
                    SeOp::Stash {
                        frame_type: FrameType::DATA,
                        stream: 4,
                        plaintext: b"late".to_vec(),
                    },
                    SeOp::KeyUpdate,
                    data.clone(),
                    SeOp::Unstash(0),
                    SeOp::Replay(0),
                    SeOp::Control(Control::KeyRotation),
                    ping.clone(),
                    SeOp::Advance(3000),
                    SeOp::Advance(3000),
                ],
            ),
        ),
        (
            "mutated_and_raw",
            se::encode(
                0x80 | 4,
                &[
                    SeOp::Mutated {
                        plaintext: b"x".to_vec(),
                        mutation: Mutation {
                            offset: 30,
                            truncate: false,
                            xor: vec![1],
                        },
                    },
                    SeOp::Raw(b"ST\x01\x01\x00".to_vec()),
                    SeOp::Sealed {
                        frame_type: FrameType::HANDSHAKE,
                        batch: false,
                        stream: 0,
                        plaintext: vec![0; 64],
                    },
                ],
            ),
        ),
        (
            "error_then_close",
            se::encode(
                5,
                &[
                    SeOp::Control(Control::Error {
                        code: 1,
                        message: "oops".into(),
                    }),
                    SeOp::Control(Control::Close {
                        code: 0,
                        reason: "bye".into(),
                    }),
                    data,
                ],
            ),
        ),
    ]
}
