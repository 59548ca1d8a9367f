//! `cargo fuzz run handshake`: see `stt_fuzz::handshake` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stt_fuzz::handshake::run(data));
