//! Fuzz the yaml store: parse arbitrary bytes, emit what parsed, parse the emission;
//! and where the fast YAML path takes the input, it gives what the general parser gives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sops_age::fuzz::plain_round_trip(sops_age::Format::Yaml, data);
    sops_age::fuzz::yaml_fast_path(data);
});
