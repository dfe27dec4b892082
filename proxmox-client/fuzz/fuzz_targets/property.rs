//! Fuzz property strings: every typed parser, and print -> parse -> print is stable.
#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use proxmox_client::property::{
    EfiDisk, HostPci, IpConfig, LxcDevice, LxcFeatures, LxcMountPoint, LxcNet, PciMapEntry,
    QemuDisk, QemuNet, Serial,
};

fn stable<T: FromStr + Display>(s: &str) {
    if let Ok(v) = s.parse::<T>() {
        let printed = v.to_string();
        let again = printed
            .parse::<T>()
            .unwrap_or_else(|_| panic!("{printed:?} (printed from {s:?}) does not parse"));
        assert_eq!(again.to_string(), printed, "printing is not stable for {s:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = proxmox_client::property::parse_pairs("fuzz", s, Some("model"));
    let _ = proxmox_client::property::parse_bool("fuzz", s);
    stable::<QemuNet>(s);
    stable::<QemuDisk>(s);
    stable::<EfiDisk>(s);
    stable::<IpConfig>(s);
    stable::<HostPci>(s);
    stable::<Serial>(s);
    stable::<LxcMountPoint>(s);
    stable::<LxcNet>(s);
    stable::<LxcFeatures>(s);
    stable::<LxcDevice>(s);
    stable::<PciMapEntry>(s);
});
