//! YAML in the shape Talos writes it: Go `yaml.v3` with 4-space indentation.
//!
//! serde_yaml_ng writes 2-space YAML, which would make our `secrets.yaml`, machine configs and
//! talosconfig differ byte-wise from talosctl's. This emitter reproduces the Go emitter's
//! layout and scalar quoting for the value shapes Talos documents contain.

use serde_yaml_ng::{Mapping, Value};

use crate::error::{Error, Result};

/// Serialise one document Go-style (4-space indent, compact sequences in mappings).
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Mapping(m) if !m.is_empty() => emit_mapping(&mut out, m, 0, 4),
        Value::Sequence(s) if !s.is_empty() => emit_sequence(&mut out, s, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
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

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Keys at column `key_col`; nested block values go to `child_col`.
fn emit_mapping(out: &mut String, m: &Mapping, key_col: usize, child_col: usize) {
    let mut first = true;
    for (k, v) in m {
        if !first {
            pad(out, key_col);
        }
        first = false;
        out.push_str(&inline(k));
        out.push(':');
        emit_value_after_key(out, v, child_col);
    }
}

fn emit_value_after_key(out: &mut String, v: &Value, child_col: usize) {
    match v {
        Value::Tagged(t) => emit_value_after_key(out, &t.value, child_col),
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            pad(out, child_col);
            emit_mapping(out, m, child_col, child_col + 4);
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            pad(out, child_col);
            emit_sequence(out, s, child_col);
        }
        Value::String(s) if s.contains('\n') && block_ok(s) => {
            emit_literal(out, s, child_col);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

/// Items with their dash at column `dash_col` (the caller has already padded the first one).
fn emit_sequence(out: &mut String, s: &[Value], dash_col: usize) {
    let mut first = true;
    for item in s {
        if !first {
            pad(out, dash_col);
        }
        first = false;
        out.push_str("- ");
        match item {
            Value::Mapping(m) if !m.is_empty() => {
                // Go yaml.v3: keys continue after "- ", their children sit at dash + 4.
                emit_mapping(out, m, dash_col + 2, dash_col + 4);
            }
            Value::Sequence(inner) if !inner.is_empty() => {
                emit_sequence(out, inner, dash_col + 2);
            }
            Value::String(st) if st.contains('\n') && block_ok(st) => {
                // "- |" then the block: remove the space we pushed after the dash.
                out.pop();
                emit_literal(out, st, dash_col + 4);
            }
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

/// A literal block can hold the string only when no line starts with a space (that would need
/// an indentation indicator) and it has no trailing blank lines or control characters.
fn block_ok(s: &str) -> bool {
    !s.starts_with(' ') && !s.ends_with("\n\n") && !s.chars().any(|c| c.is_control() && c != '\n')
}

fn emit_literal(out: &mut String, s: &str, col: usize) {
    out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
    for line in s.trim_end_matches('\n').split('\n') {
        if !line.is_empty() {
            pad(out, col);
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// A scalar or empty collection on one line.
fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s),
        Value::Mapping(_) => "{}".to_string(),
        Value::Sequence(_) => "[]".to_string(),
        Value::Tagged(t) => inline(&t.value),
    }
}

/// Quote a string scalar the way Go yaml.v3 does.
pub fn scalar(s: &str) -> String {
    if resolves_to_non_string(s) || s.chars().any(|c| c.is_control() || c == '\u{feff}') {
        return double_quoted(s);
    }
    if plain_allowed(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn double_quoted(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            '\0' => o.push_str("\\0"),
            c if c.is_control() || c == '\u{feff}' => {
                let n = c as u32;
                if n <= 0xff {
                    o.push_str(&format!("\\x{n:02X}"));
                } else {
                    o.push_str(&format!("\\u{n:04X}"));
                }
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn plain_allowed(s: &str) -> bool {
    if s.is_empty() || s.starts_with(' ') || s.ends_with(' ') {
        return false;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    if matches!(s, "-" | "?" | ":") || s.starts_with("- ") || s.starts_with("? ") {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.contains(":\t") {
        return false;
    }
    true
}

/// Whether Go yaml.v3 would read the plain text back as a non-string (bool, null, number,
/// timestamp, base-60 number), which forces double quotes.
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y",
        "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
        ".nan", ".NaN", ".NAN", "<<",
    ];
    if SPECIAL.contains(&s) {
        // "<<" is the merge key: yaml.v3 leaves it plain.
        return s != "<<";
    }
    is_int(s) || is_float(s) || is_timestamp(s) || is_base60(s)
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix('-')
        .or_else(|| s.strip_prefix('+'))
        .unwrap_or(s)
}

fn is_int(s: &str) -> bool {
    let t = strip_sign(s);
    let digits = |t: &str, radix: u32| {
        !t.is_empty() && t.chars().all(|c| c == '_' || c.is_digit(radix)) && !t.starts_with('_')
    };
    if let Some(h) = t.strip_prefix("0x") {
        return digits(h, 16);
    }
    if let Some(o) = t.strip_prefix("0o") {
        return digits(o, 8);
    }
    if let Some(b) = t.strip_prefix("0b") {
        return digits(b, 2);
    }
    digits(t, 10)
}

fn is_float(s: &str) -> bool {
    let t = strip_sign(s);
    let (mant, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    if let Some(e) = exp {
        let e = strip_sign(e);
        if e.is_empty() || !e.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    let mut parts = mant.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let ok = |x: &str| x.chars().all(|c| c.is_ascii_digit() || c == '_');
    match frac {
        Some(f) => ok(int) && ok(f) && !(int.is_empty() && f.is_empty()),
        None => exp.is_some() && !int.is_empty() && ok(int),
    }
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let rest = &s[5..];
    let mut it = rest.splitn(2, '-');
    let month = it.next().unwrap_or("");
    let day_and_more = it.next().unwrap_or("");
    let day: String = day_and_more
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let tail = &day_and_more[day.len()..];
    (1..=2).contains(&month.len())
        && month.chars().all(|c| c.is_ascii_digit())
        && (1..=2).contains(&day.len())
        && (tail.is_empty() || tail.starts_with(['T', 't', ' ']))
}

fn is_base60(s: &str) -> bool {
    let t = strip_sign(s);
    let mut parts = t.split(':');
    let head = parts.next().unwrap_or("");
    if head.is_empty() || !head.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    if !head.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return false;
    }
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        return false;
    }
    let last = rest.len() - 1;
    rest.iter().enumerate().all(|(i, p)| {
        let (num, frac) = match (i == last, p.split_once('.')) {
            (true, Some((n, f))) => (n, Some(f)),
            _ => (*p, None),
        };
        !num.is_empty()
            && num.len() <= 2
            && num.chars().all(|c| c.is_ascii_digit())
            && num.parse::<u32>().map(|n| n < 60).unwrap_or(false)
            && frac.is_none_or(|f| f.chars().all(|c| c.is_ascii_digit() || c == '_'))
    })
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
