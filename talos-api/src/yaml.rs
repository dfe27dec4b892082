//! YAML in the shape Talos writes it: Go `yaml.v3` with 4-space indentation.
//!
//! serde_yaml_ng writes 2-space YAML, which would make our `secrets.yaml`, machine configs and
//! talosconfig differ byte-wise from talosctl's. This emitter reproduces the Go emitter's
//! layout and scalar quoting through the workspace's shared emitter (`yaml-v3-emit`).

use serde_yaml_ng::Value;
use yaml_v3_emit::{Options, Quoting};

use crate::error::{Error, Result};

/// Serialise one document Go-style (4-space indent, compact sequences in mappings).
pub fn to_string(value: &Value) -> String {
    yaml_v3_emit::to_string(value, Options::default())
}

/// Serialise several documents separated by `---` lines.
pub fn to_multi_doc_string(docs: &[Value]) -> String {
    docs.iter().map(to_string).collect::<Vec<_>>().join("---\n")
}

/// Parse every document of a (possibly multi-document) YAML text; `what` names the source in
/// errors. Empty documents are skipped.
pub fn parse_documents(text: &str, what: &str) -> Result<Vec<Value>> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(de).map_err(|e| Error::Yaml {
            what: what.to_string(),
            message: e.to_string(),
        })?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Quote a string scalar the way Go yaml.v3 does.
pub fn scalar(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let style = yaml_v3_emit::string_style(s, false, Quoting::V3);
    yaml_v3_emit::write_string(&mut out, s, style, 0, 4);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_go_yaml_v3() {
        for plain in [
            "siderolabs/qemu-guest-agent",
            "net.ifnames=0",
            "console=ttyS0,115200",
            "-x",
            "a#b",
            "x:y",
            "?q",
            "NaN",
            "https://base:6443",
            "0raF93qnkMvF-FZNuvyGozXNdLiT2FOWSlyBaW4PR-w=",
        ] {
            assert_eq!(scalar(plain), plain, "{plain}");
        }
        for dq in [
            "true",
            "false",
            "null",
            "~",
            "1",
            "0x10",
            "1.5",
            "1e3",
            "2001-01-01",
            ".inf",
            "12:30",
            "",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
        ] {
            assert_eq!(scalar(dq), format!("\"{dq}\""), "{dq}");
        }
        assert_eq!(scalar("a\tb"), "\"a\\tb\"");
        for (sq, want) in [
            ("{}", "'{}'"),
            ("key: val", "'key: val'"),
            ("- x", "'- x'"),
            ("'sq", "'''sq'"),
            (" lead", "' lead'"),
            ("a #b", "'a #b'"),
        ] {
            assert_eq!(scalar(sq), want, "{sq}");
        }
    }

    #[test]
    fn layout_matches_talos_output() {
        let src = "a:\n  b: 1\n  list: [x, z]\n  empty: []\n  emptymap: {}\n  items:\n    - name: PodSecurity\n      configuration:\n        apiVersion: v1\n        nested:\n          deep: \"\"\n    - level: Metadata\n  text: \"line1\\nline2\\n\"\n";
        let v: Value = serde_yaml_ng::from_str(src).unwrap();
        let want = "a:\n    b: 1\n    list:\n        - x\n        - z\n    empty: []\n    emptymap: {}\n    items:\n        - name: PodSecurity\n          configuration:\n            apiVersion: v1\n            nested:\n                deep: \"\"\n        - level: Metadata\n    text: |\n        line1\n        line2\n";
        assert_eq!(to_string(&v), want);
        let back: Value = serde_yaml_ng::from_str(want).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn parse_errors_name_the_source_and_line() {
        let err = parse_documents("a: b\n  c: [\n", "patch.yaml").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("patch.yaml: invalid YAML"), "{s}");
        assert!(s.contains("line"), "{s}");
    }
}
