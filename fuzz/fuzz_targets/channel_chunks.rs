//! `cargo fuzz run channel_chunks`: see `stt_fuzz::channel_chunks` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stt_fuzz::channel_chunks::run(data));
