//! dotenv store: sops' deliberately naive `KEY=value` format.

use crate::error::{Error, Result};
use crate::value::{Item, Map, Value};

/// Parse dotenv text: split on `\n`, `#` lines are comments, split at the first `=`.
pub(crate) fn parse(input: &[u8]) -> Result<Map> {
    let text = std::str::from_utf8(input).map_err(|e| Error::Parse {
        format: "dotenv",
        line: input[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1,
        column: 1,
        message: "invalid UTF-8".into(),
    })?;
    let mut m = Map::new();
    for (n, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            m.items.push(Item::Comment(c.to_owned()));
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(Error::Parse {
                format: "dotenv",
                line: n + 1,
                column: 1,
                message: format!("invalid dotenv input line: {line:?} (expected KEY=value)"),
            });
        };
        m.push(k, Value::String(v.replace("\\n", "\n")));
    }
    Ok(m)
}

/// Emit dotenv: data lines, then the flattened metadata sorted alphabetically.
pub(crate) fn emit(m: &Map, metadata: Option<&[(String, String)]>) -> Result<String> {
    let mut out = String::with_capacity(4096);
    for item in &m.items {
        match item {
            Item::Comment(c) => {
                out.push('#');
                out.push_str(c);
                out.push('\n');
            }
            Item::Entry(k, v) => {
                let s = scalar_text(v).ok_or_else(|| {
                    Error::Unsupported(format!(
                        "cannot write key {k:?} to dotenv: its value is a mapping or list"
                    ))
                })?;
                out.push_str(k);
                out.push('=');
                out.push_str(&s.replace('\n', "\\n"));
                out.push('\n');
            }
        }
    }
    if let Some(md) = metadata {
        for (k, v) in md {
            out.push_str("sops_");
            out.push_str(k);
            out.push('=');
            out.push_str(&v.replace('\n', "\\n"));
            out.push('\n');
        }
    }
    Ok(out)
}

/// Stringify a scalar as sops does for dotenv/INI/exec-env (`ValToString`).
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::value::go_float_plain(*f),
        Value::String(s) | Value::Time(s) | Value::Comment(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Map(_) | Value::Seq(_) => return None,
    })
}
