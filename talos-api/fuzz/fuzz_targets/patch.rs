//! Fuzz Talos config patches: parse any text as a patch and apply it to a small machine
//! config; the result must emit as YAML that parses back to the same documents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_yaml_ng::Value;
use talos_api::patch::Patch;

/// Tags are dropped on output (as Go's encoder does) and NaN never equals itself: such
/// documents cannot be compared after a round trip.
fn comparable(v: &Value) -> bool {
    match v {
        Value::Tagged(_) => false,
        Value::Number(n) => !n.as_f64().is_some_and(f64::is_nan),
        Value::Sequence(s) => s.iter().all(comparable),
        Value::Mapping(m) => m.iter().all(|(k, v)| comparable(k) && comparable(v)),
        _ => true,
    }
}

const BASE: &str = "version: v1alpha1\nmachine:\n  type: controlplane\n  network:\n    interfaces:\n      - interface: eth0\n        addresses: [10.0.0.2/24]\ncluster:\n  clusterName: c\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(patch) = Patch::parse(text, "fuzz.yaml") else {
        return;
    };
    let mut docs = talos_api::yaml::parse_documents(BASE, "base").expect("base parses");
    if patch.apply(&mut docs).is_ok() {
        for doc in docs.iter().filter(|d| comparable(d)) {
            let out = talos_api::yaml::to_string(doc);
            let back = talos_api::yaml::parse_documents(&out, "emitted")
                .unwrap_or_else(|e| panic!("emitted YAML does not parse: {e}\n{out}"));
            let same = match back.as_slice() {
                [] => doc.is_null(),
                [b] => b == doc,
                _ => false,
            };
            assert!(same, "emit/parse round trip changed the document:\n{out}");
        }
    }
});
