//! `cargo fuzz run cookie`: see `stt_fuzz::cookie` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stt_fuzz::cookie::run(data));
