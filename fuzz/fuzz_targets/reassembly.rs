//! `cargo fuzz run reassembly`: see `stt_fuzz::reassembly` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stt_fuzz::reassembly::run(data));
