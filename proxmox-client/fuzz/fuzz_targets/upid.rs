//! Fuzz UPID parsing: no panic, and a parsed UPID prints back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxmox_client::Upid;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = s.parse::<Upid>() {
        let printed = u.to_string();
        let again: Upid = printed.parse().expect("a printed UPID parses");
        assert_eq!(again.to_string(), printed);
    }
});
