//! Replays the committed seed corpora through every harness on the stable
//! toolchain: a quick check that the seeds still pass the harness properties
//! and still reach what they were made for. `cargo test` in `fuzz/`.
//!
//! To replay a crash file the same way:
//! `STT_FUZZ_REPLAY=path/to/crash-file cargo test --test seeds replay -- --nocapture`.

use std::fs;
use std::path::PathBuf;

use stt::frame::HEADER_LEN;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus-seed")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("dir entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            (name, fs::read(&path).expect("readable seed"))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn replay_all(target: &str, run: fn(&[u8])) {
    for (name, data) in seeds(target) {
        eprintln!("{target}/{name} ({} bytes)", data.len());
        run(&data);
        // Every prefix too: cut inputs end the harness loops early.
        for cut in [0, 1, data.len() / 2] {
            run(&data[..cut.min(data.len())]);
        }
    }
}

#[test]
fn channel_chunks_seeds() {
    replay_all("channel_chunks", stt_fuzz::channel_chunks::run);
}

#[test]
fn channel_pair_seeds() {
    replay_all("channel_pair", stt_fuzz::channel_pair::run);
}

#[test]
fn cookie_seeds() {
    replay_all("cookie", stt_fuzz::cookie::run);
}

#[test]
fn frame_decode_seeds() {
    replay_all("frame_decode", stt_fuzz::frame_decode::run);
}

#[test]
fn handshake_seeds() {
    replay_all("handshake", stt_fuzz::handshake::run);
}

#[test]
fn reassembly_seeds() {
    replay_all("reassembly", stt_fuzz::reassembly::run);
}

#[test]
fn token_gate_seeds() {
    replay_all("token_gate", stt_fuzz::token_gate::run);
}

#[test]
fn token_parse_seeds() {
    replay_all("token_parse", stt_fuzz::token_parse::run);
}

#[test]
fn session_established_seeds() {
    replay_all("session_established", stt_fuzz::session_established::run);
}

/// The stored message 1 only helps the fuzzer while it is still genuine: a
/// change of the wire format or key derivation needs new seeds
/// (`cargo run --example gen_seeds`). Since handshake version 2 a message 1
/// carries a timestamp and `Session::accept` refuses it a minute after it
/// was made, so this checks what does not age: that it authenticates under
/// the network key and speaks this handshake version. (The splice modes of
/// the `handshake` target make a fresh message 1 on every run, so the fuzzer
/// still reaches past the timestamp check.)
#[test]
fn stored_message_1_is_still_genuine() {
    let k = stt_fuzz::handshake::keys();
    let check = stt::crypto::Msg1Check::new(&k.network);
    for (target, name, skip) in [
        ("handshake", "accept_msg1", 1),
        ("frame_decode", "handshake_msg1", 0),
    ] {
        let data = fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("corpus-seed")
                .join(target)
                .join(name),
        )
        .expect("seed present");
        let datagram = &data[skip..];
        let info = datagram
            .split_at_checked(HEADER_LEN)
            .and_then(|(h, m)| check.open(h, m))
            .unwrap_or_else(|| {
                panic!("{target}/{name} is no longer a genuine message 1: regenerate the seeds")
            });
        assert_eq!(
            info.version,
            stt::crypto::handshake::HANDSHAKE_VERSION,
            "{target}/{name}: regenerate the seeds"
        );
    }
}

/// Replays one file named by `STT_FUZZ_REPLAY` through the target named by
/// its parent directory (`artifacts/<target>/crash-...` or
/// `corpus-seed/<target>/...`). Does nothing without the variable.
#[test]
fn replay() {
    let Some(path) = std::env::var_os("STT_FUZZ_REPLAY").map(PathBuf::from) else {
        return;
    };
    let data = fs::read(&path).expect("readable input");
    let target = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run: fn(&[u8]) = match target.as_str() {
        "channel_chunks" => stt_fuzz::channel_chunks::run,
        "channel_pair" => stt_fuzz::channel_pair::run,
        "cookie" => stt_fuzz::cookie::run,
        "frame_decode" => stt_fuzz::frame_decode::run,
        "handshake" => stt_fuzz::handshake::run,
        "reassembly" => stt_fuzz::reassembly::run,
        "session_established" => stt_fuzz::session_established::run,
        other => panic!("cannot tell the target from directory {other:?}"),
    };
    run(&data);
}
