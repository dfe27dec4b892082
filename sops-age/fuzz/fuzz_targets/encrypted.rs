//! Fuzz the encrypted-file readers (metadata parsing, flattened keys) of every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sops_age::Format;

fuzz_target!(|data: &[u8]| {
    for format in [
        Format::Yaml,
        Format::Json,
        Format::Dotenv,
        Format::Ini,
        Format::Binary,
    ] {
        sops_age::fuzz::encrypted(format, data);
    }
});
