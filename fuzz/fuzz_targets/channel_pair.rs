//! `cargo fuzz run channel_pair`: see `stt_fuzz::channel_pair` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stt_fuzz::channel_pair::run(data));
