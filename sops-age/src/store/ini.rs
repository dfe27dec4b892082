//! INI store (gopkg.in/ini.v1 style): sections of string keys, `;` comments, aligned `=`.

use crate::error::{Error, Result};
use crate::value::{Item, Map, Value};

/// Parse INI into a map of section name → map of keys. Keys before any header go to
/// `DEFAULT`.
pub(crate) fn parse(input: &[u8]) -> Result<Map> {
    let text = std::str::from_utf8(input).map_err(|_| Error::Parse {
        format: "INI",
        line: 1,
        column: 1,
        message: "invalid UTF-8".into(),
    })?;
    let mut root = Map::new();
    let mut current: (String, Map) = ("DEFAULT".to_owned(), Map::new());
    let mut pending: Vec<String> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with(';') || line.starts_with('#') {
            pending.push(line.trim_start_matches([';', '#', ' ']).to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or_else(|| Error::Parse {
                format: "INI",
                line: n + 1,
                column: 1,
                message: format!("unclosed section header {line:?}"),
            })?;
            let done = std::mem::replace(&mut current, (name.trim().to_owned(), Map::new()));
            if done.0 != "DEFAULT" || !done.1.items.is_empty() {
                root.push(done.0, Value::Map(done.1));
            }
            current.1.items.extend(pending.drain(..).map(Item::Comment));
            continue;
        }
        let idx = line.find(['=', ':']).ok_or_else(|| Error::Parse {
            format: "INI",
            line: n + 1,
            column: 1,
            message: format!("expected key = value, found {line:?}"),
        })?;
        let key = line[..idx].trim().to_owned();
        let value = unquote(line[idx + 1..].trim());
        current.1.push(key, Value::String(value));
        current.1.items.extend(pending.drain(..).map(Item::Comment));
    }
    current.1.items.extend(pending.drain(..).map(Item::Comment));
    if current.0 != "DEFAULT" || !current.1.items.is_empty() {
        root.push(current.0, Value::Map(current.1));
    }
    Ok(root)
}

fn unquote(v: &str) -> String {
    for q in ["\"\"\"", "\"", "'", "`"] {
        if v.len() >= 2 * q.len() && v.starts_with(q) && v.ends_with(q) {
            return v[q.len()..v.len() - q.len()].to_owned();
        }
    }
    // inline comment
    match v.find([';', '#']) {
        Some(i) if i > 0 && v.as_bytes()[i - 1] == b' ' => v[..i].trim_end().to_owned(),
        Some(0) => String::new(),
        _ => v.to_owned(),
    }
}

fn quote(v: &str) -> String {
    if v.contains('\n') || v.contains('`') {
        format!("\"\"\"{v}\"\"\"")
    } else if v.contains(['#', ';']) {
        format!("`{v}`")
    } else if v.trim() != v {
        format!("\"{v}\"")
    } else {
        v.to_owned()
    }
}

fn write_section(out: &mut String, name: &str, items: &[Item], first: &mut bool) -> Result<()> {
    if !*first {
        out.push('\n');
    }
    *first = false;
    let width = items
        .iter()
        .filter_map(|i| match i {
            Item::Entry(k, _) => Some(k.chars().count()),
            Item::Comment(_) => None,
        })
        .max()
        .unwrap_or(0);
    // Comments before the first key become the section comment; later ones the comment of
    // the key they follow (written above it, as ini.v1 does).
    let mut section_comments = Vec::new();
    let mut idx = 0;
    while let Some(Item::Comment(c)) = items.get(idx) {
        section_comments.push(c);
        idx += 1;
    }
    for c in &section_comments {
        out.push_str("; ");
        out.push_str(c);
        out.push('\n');
    }
    if name != "DEFAULT" {
        out.push('[');
        out.push_str(name);
        out.push_str("]\n");
    }
    while idx < items.len() {
        let Item::Entry(k, v) = &items[idx] else {
            idx += 1;
            continue;
        };
        idx += 1;
        while let Some(Item::Comment(c)) = items.get(idx) {
            out.push_str("; ");
            out.push_str(c);
            out.push('\n');
            idx += 1;
        }
        let s = crate::store::dotenv::scalar_text(v).ok_or_else(|| {
            Error::Unsupported(format!(
                "cannot write [{name}] {k:?} to INI: nested mappings or lists are not supported"
            ))
        })?;
        out.push_str(k);
        for _ in k.chars().count()..width {
            out.push(' ');
        }
        out.push_str(" = ");
        out.push_str(&quote(&s));
        out.push('\n');
    }
    Ok(())
}

/// Emit INI; the metadata (flattened, newlines as `\n`) goes into a last `[sops]` section.
pub(crate) fn emit(root: &Map, metadata: Option<&[(String, String)]>) -> Result<String> {
    let mut out = String::with_capacity(4096);
    let mut first = true;
    for item in &root.items {
        match item {
            Item::Entry(name, Value::Map(sec)) => {
                write_section(&mut out, name, &sec.items, &mut first)?;
            }
            Item::Entry(name, _) => {
                return Err(Error::Unsupported(format!(
                    "INI needs sections at the top level; {name:?} is not a section"
                )));
            }
            Item::Comment(_) => {}
        }
    }
    if let Some(md) = metadata {
        let items: Vec<Item> = md
            .iter()
            .map(|(k, v)| Item::Entry(k.clone(), Value::String(v.replace('\n', "\\n"))))
            .collect();
        write_section(&mut out, "sops", &items, &mut first)?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ini_round_trip() {
        let src = "top = 1\n[s1]\n; c1\nk = v\nlonger_key = v2\n\n[s2]\nz=1\n";
        let m = parse(src.as_bytes()).unwrap();
        let out = emit(&m, None).unwrap();
        assert_eq!(
            out,
            "top = 1\n\n[s1]\n; c1\nk          = v\nlonger_key = v2\n\n[s2]\nz = 1\n"
        );
    }
}
