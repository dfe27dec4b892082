//! Fuzz the ini store: parse arbitrary bytes, emit what parsed, parse the emission.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sops_age::fuzz::plain_round_trip(sops_age::Format::Ini, data);
});
