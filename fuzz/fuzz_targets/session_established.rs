//! `cargo fuzz run session_established`: see `stt_fuzz::session_established` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stt_fuzz::session_established::run(data));
