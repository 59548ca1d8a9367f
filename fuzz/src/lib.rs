//! Fuzz harnesses for `stt`.
//!
//! Each module holds one target's logic as a `run(data: &[u8])` function; the
//! binaries in `fuzz_targets/` are one-line wrappers. Keeping the logic here
//! lets `tests/seeds.rs` replay the committed seed corpora on the stable
//! toolchain (no libFuzzer, no sanitizer) and lets `examples/gen_seeds.rs`
//! build those seeds with the same encoders the harnesses decode.
//!
//! Every `assert!` in a harness is a property of `stt` that must hold for any
//! input: a failing one is a bug in `stt` (or in the property), never noise.

pub mod channel_chunks;
pub mod channel_pair;
pub mod cookie;
pub mod frame_decode;
pub mod handshake;
pub mod input;
pub mod reassembly;
pub mod session_established;
pub mod token_gate;
pub mod token_parse;
