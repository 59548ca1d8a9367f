//! `cargo fuzz run token_gate`: see `stt_fuzz::token_gate` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stt_fuzz::token_gate::run(data));
