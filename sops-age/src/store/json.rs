//! JSON store: order-preserving, duplicate keys kept, Go `encoding/json` output style.

use crate::error::{Error, Result};
use crate::value::{Item, Map, Value, json_float};

/// Parse any single JSON value.
pub(crate) fn parse_value(input: &[u8]) -> Result<Value> {
    let text =
        std::str::from_utf8(input).map_err(|e| err_at(input, e.valid_up_to(), "invalid UTF-8"))?;
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected data after the value"));
    }
    Ok(v)
}

/// Write a map as a JSON object (comments skipped).
pub(crate) fn emit_map(out: &mut String, m: &Map, unit: &str, depth: usize) {
    let entries: Vec<(&str, &Value)> = m.entries().collect();
    emit_entries(out, &entries, unit, depth);
}

/// Parse a JSON document whose root must be an object.
pub(crate) fn parse(input: &[u8]) -> Result<Map> {
    let text =
        std::str::from_utf8(input).map_err(|e| err_at(input, e.valid_up_to(), "invalid UTF-8"))?;
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    p.ws();
    if p.peek() != Some(b'{') {
        if p.peek().is_none() {
            return Err(Error::Unsupported("File cannot be completely empty".into()));
        }
        return Err(p.err("the top level of a JSON document must be an object"));
    }
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected data after the top-level object"));
    }
    match v {
        Value::Map(m) => Ok(m),
        _ => Err(p.err("the top level of a JSON document must be an object")),
    }
}

fn err_at(s: &[u8], pos: usize, msg: &str) -> Error {
    let before = &s[..pos.min(s.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    Error::Parse {
        format: "JSON",
        line,
        column,
        message: msg.to_owned(),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, msg: &str) -> Error {
        err_at(self.s, self.pos, msg)
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }
    fn expect(&mut self, b: u8) -> Result<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", b as char)))
        }
    }
    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > 512 {
            return Err(self.err("nesting too deep"));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut m = Map::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Value::Map(m));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.err("expected a string key"));
                    }
                    let k = self.string()?;
                    self.ws();
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    m.items.push(Item::Entry(k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Value::Map(m));
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Value::Seq(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::Seq(items));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expected a JSON value")),
        }
    }
    fn word(&mut self, w: &str, v: Value) -> Result<Value> {
        if self.s[self.pos..].starts_with(w.as_bytes()) {
            self.pos += w.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }
    fn number(&mut self) -> Result<Value> {
        let start = self.pos;
        let mut is_float = false;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => is_float = true,
                _ => break,
            }
            self.pos += 1;
        }
        let t = &self.text[start..self.pos];
        if !is_float {
            // Integers that fit int64 stay ints (what sops 3.13.2+ does; 3.11 reads both).
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::Int(i));
            }
        }
        t.parse::<f64>()
            .map(Value::Float)
            .map_err(|_| err_at(self.s, start, "invalid number"))
    }
    fn string(&mut self) -> Result<String> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.pos += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let ch = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.pos..].starts_with(b"\\u")
                            {
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(ch.unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                _ => return Err(self.err("unterminated string or control character in string")),
            }
        }
    }
    fn hex4(&mut self) -> Result<u32> {
        let h = self
            .text
            .get(self.pos..self.pos + 4)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("invalid \\u escape"))?;
        self.pos += 4;
        Ok(h)
    }
}

/// Go `json.Marshal` string escaping (HTML-safe).
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Indentation unit: `None` = one tab (sops' default), `Some(n)` = n spaces.
pub(crate) fn emit(map: &Map, metadata: Option<&Map>, indent: Option<usize>) -> String {
    let unit = match indent {
        None => "\t".to_owned(),
        Some(n) => " ".repeat(n),
    };
    let mut out = String::with_capacity(4096);
    let sops = metadata.map(|m| Value::Map(m.clone()));
    let entries: Vec<(&str, &Value)> = map
        .entries()
        .chain(sops.as_ref().map(|v| ("sops", v)))
        .collect();
    emit_entries(&mut out, &entries, &unit, 0);
    out.push('\n');
    out
}

fn newline(out: &mut String, unit: &str, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str(unit);
    }
}

fn emit_entries(out: &mut String, entries: &[(&str, &Value)], unit: &str, depth: usize) {
    if entries.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push('{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(out, unit, depth + 1);
        write_string(out, k);
        out.push_str(": ");
        emit_value(out, v, unit, depth + 1);
    }
    newline(out, unit, depth);
    out.push('}');
}

pub(crate) fn emit_value(out: &mut String, v: &Value, unit: &str, depth: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&json_float(*f)),
        Value::String(s) | Value::Time(s) => write_string(out, s),
        Value::Bytes(b) => write_string(out, &String::from_utf8_lossy(b)),
        Value::Comment(_) => out.push_str("null"),
        Value::Map(m) => {
            let entries: Vec<(&str, &Value)> = m.entries().collect();
            emit_entries(out, &entries, unit, depth);
        }
        Value::Seq(items) => {
            let items: Vec<&Value> = items
                .iter()
                .filter(|v| !matches!(v, Value::Comment(_)))
                .collect();
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, unit, depth + 1);
                emit_value(out, v, unit, depth + 1);
            }
            newline(out, unit, depth);
            out.push(']');
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_emit() {
        let m = parse(br#"{"a": 1, "a": [true, null, 1.5, "x<y"], "b": {}}"#).unwrap();
        assert_eq!(m.items.len(), 3);
        let out = emit(&m, None, None);
        assert_eq!(
            out,
            "{\n\t\"a\": 1,\n\t\"a\": [\n\t\ttrue,\n\t\tnull,\n\t\t1.5,\n\t\t\"x\\u003cy\"\n\t],\n\t\"b\": {}\n}\n"
        );
        assert!(parse(b"[1]").is_err());
        let e = parse(b"{\n \"a\": }").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
