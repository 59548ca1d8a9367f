//! `cargo fuzz run frame_decode`: see `stt_fuzz::frame_decode` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stt_fuzz::frame_decode::run(data));
