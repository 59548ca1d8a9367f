//! `cargo fuzz run token_parse`: see `stt_fuzz::token_parse` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stt_fuzz::token_parse::run(data));
