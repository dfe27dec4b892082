//! Fuzz homelab.yaml loading: any text either loads or gives located errors, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = homelab_cli::model::parse(Path::new("/fuzz/homelab.yaml"), text.to_owned());
});
