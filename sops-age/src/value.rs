//! The in-memory document tree shared by every store, and Go-compatible scalar formatting.

use zeroize::Zeroize;

/// One value of a document tree. Mapping and sequence order is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// YAML `null`/`~`, JSON `null`. Never encrypted and never part of the MAC.
    Null,
    /// A boolean (sops writes `True`/`False` as its plaintext).
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A string.
    String(String),
    /// A timestamp, kept in its canonical RFC 3339 form (Go `time.Time.MarshalText`).
    Time(String),
    /// Raw bytes (the binary store's payload; may be invalid UTF-8).
    Bytes(Vec<u8>),
    /// A comment inside a sequence (sops keeps comments as tree items).
    Comment(String),
    /// A mapping.
    Map(Map),
    /// A sequence.
    Seq(Vec<Value>),
}

/// One item of a mapping: a key/value entry or a comment line.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `key: value`.
    Entry(String, Value),
    /// A comment line (the text after the leading `#`).
    Comment(String),
}

/// An ordered mapping with comments; duplicate keys are kept as they came.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map {
    /// The items in document order.
    pub items: Vec<Item>,
}

impl Map {
    /// An empty mapping.
    pub fn new() -> Self {
        Map { items: Vec::new() }
    }

    /// The first value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().find_map(|i| match i {
            Item::Entry(k, v) if k == key => Some(v),
            _ => None,
        })
    }

    /// Mutable access to the first value stored under `key`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.items.iter_mut().find_map(|i| match i {
            Item::Entry(k, v) if k == key => Some(v),
            _ => None,
        })
    }

    /// Append an entry.
    pub fn push(&mut self, key: impl Into<String>, value: Value) {
        self.items.push(Item::Entry(key.into(), value));
    }

    /// Set `key` (replacing the first existing entry) or append it.
    pub fn insert(&mut self, key: &str, value: Value) {
        match self.get_mut(key) {
            Some(v) => *v = value,
            None => self.push(key, value),
        }
    }

    /// Remove every entry under `key`; returns whether one existed.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let pos = self
            .items
            .iter()
            .position(|i| matches!(i, Item::Entry(k, _) if k == key))?;
        match self.items.remove(pos) {
            Item::Entry(_, v) => Some(v),
            Item::Comment(_) => None,
        }
    }

    /// Iterate over the entries, skipping comments.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.items.iter().filter_map(|i| match i {
            Item::Entry(k, v) => Some((k.as_str(), v)),
            Item::Comment(_) => None,
        })
    }

    /// Whether the mapping has an entry under `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl Zeroize for Value {
    fn zeroize(&mut self) {
        match self {
            Value::String(s) | Value::Time(s) | Value::Comment(s) => s.zeroize(),
            Value::Bytes(b) => b.zeroize(),
            Value::Map(m) => m.zeroize(),
            Value::Seq(s) => {
                for v in s.iter_mut() {
                    v.zeroize();
                }
            }
            Value::Int(i) => i.zeroize(),
            Value::Float(f) => *f = 0.0,
            Value::Bool(b) => *b = false,
            Value::Null => {}
        }
    }
}

impl Zeroize for Map {
    fn zeroize(&mut self) {
        for item in self.items.iter_mut() {
            match item {
                // keys are written in plaintext in the file; only values are secret
                Item::Entry(_, v) => v.zeroize(),
                Item::Comment(c) => c.zeroize(),
            }
        }
    }
}

/// Go `strconv.FormatFloat(v, 'f', -1, 64)`: shortest round-trip digits, never an exponent.
pub fn go_float_plain(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// Decimal digits and exponent of the shortest round-trip representation:
/// `v = 0.d1d2d3... × 10^dp` with `digits = "d1d2d3..."`.
fn shortest_digits(v: f64) -> (bool, String, i32) {
    // `{:e}` prints the shortest round-trip digits as `d.ddde±x`.
    let s = format!("{:e}", v.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    (v.is_sign_negative(), digits, exp + 1)
}

/// Go `strconv.FormatFloat(v, 'g', -1, 64)` as yaml.v3 writes floats, with YAML's
/// `.inf`/`-.inf`/`.nan` for the special values.
pub fn yaml_float(v: f64) -> String {
    if v.is_nan() {
        return ".nan".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let (neg, digits, dp) = shortest_digits(v);
    let nd = digits.len() as i32;
    let mut eprec = 6;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        let mut out = String::new();
        if neg {
            out.push('-');
        }
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
        out
    } else {
        format!("{v}")
    }
}

/// Go `encoding/json` float formatting (what sops' JSON store writes).
pub fn json_float(v: f64) -> String {
    if !v.is_finite() {
        // json.Marshal refuses these; sops would fail. Keep something readable.
        return go_float_plain(v);
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let (neg, digits, dp) = shortest_digits(v);
        let exp = dp - 1;
        let mut out = String::new();
        if neg {
            out.push('-');
        }
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&exp.unsigned_abs().to_string());
        out
    } else {
        format!("{v}")
    }
}

/// Go `strconv.ParseBool`.
pub fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go `strconv.ParseFloat(s, 64)` (decimal forms, `Inf`/`NaN` words, underscores not allowed).
pub fn go_parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    match body.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => {
            return Some(if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Go `strconv.ParseInt(s, 0, 64)` with yaml.v3's underscore stripping done by the caller.
pub fn go_parse_int_base0(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(r) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, r)
    } else if let Some(r) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, r)
    } else if let Some(r) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, r)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            Some((mag as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(mag).ok()
    }
}

/// Parse a YAML timestamp the way yaml.v3 does and return Go's `MarshalText` form.
pub fn parse_timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.first().is_none_or(|c| !c.is_ascii_digit()) {
        return None;
    }
    let mut p = 0;
    let num = |p: &mut usize, min: usize, max: usize| -> Option<u32> {
        let start = *p;
        while *p < b.len() && b[*p].is_ascii_digit() && *p - start < max {
            *p += 1;
        }
        if *p - start < min {
            return None;
        }
        s[start..*p].parse().ok()
    };
    let year = num(&mut p, 4, 4)?;
    if b.get(p) != Some(&b'-') {
        return None;
    }
    p += 1;
    let month = num(&mut p, 1, 2)?;
    if b.get(p) != Some(&b'-') {
        return None;
    }
    p += 1;
    let day = num(&mut p, 1, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date = format!("{year:04}-{month:02}-{day:02}");
    if p == b.len() {
        return Some(format!("{date}T00:00:00Z"));
    }
    let sep = b[p];
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    p += 1;
    let hour = num(&mut p, 1, 2)?;
    if b.get(p) != Some(&b':') {
        return None;
    }
    p += 1;
    let min = num(&mut p, 1, 2)?;
    if b.get(p) != Some(&b':') {
        return None;
    }
    p += 1;
    let sec = num(&mut p, 1, 2)?;
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut frac = String::new();
    if b.get(p) == Some(&b'.') {
        p += 1;
        let start = p;
        while p < b.len() && b[p].is_ascii_digit() {
            p += 1;
        }
        if p == start || p - start > 9 {
            return None;
        }
        frac = s[start..p].trim_end_matches('0').to_owned();
    }
    let zone = if p == b.len() {
        if sep == b' ' {
            "Z".to_owned()
        } else {
            return None;
        }
    } else if sep != b' ' || b[p] == b'Z' || b[p] == b'+' || b[p] == b'-' {
        match b[p] {
            b'Z' if p + 1 == b.len() => "Z".to_owned(),
            b'+' | b'-' => {
                let rest = &s[p + 1..];
                let (h, m) = rest.split_once(':')?;
                if h.len() != 2 || m.len() != 2 {
                    return None;
                }
                let hh: u32 = h.parse().ok()?;
                let mm: u32 = m.parse().ok()?;
                if hh == 0 && mm == 0 {
                    "Z".to_owned()
                } else {
                    format!("{}{h}:{m}", b[p] as char)
                }
            }
            _ => return None,
        }
    } else {
        return None;
    };
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    Some(format!("{date}T{hour:02}:{min:02}:{sec:02}{frac}{zone}"))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_float_formats() {
        assert_eq!(go_float_plain(1.5), "1.5");
        assert_eq!(go_float_plain(1e10), "10000000000");
        assert_eq!(go_float_plain(1e23), "100000000000000000000000");
        assert_eq!(go_float_plain(f64::INFINITY), "+Inf");
        assert_eq!(go_float_plain(f64::NEG_INFINITY), "-Inf");
        assert_eq!(go_float_plain(f64::NAN), "NaN");
        assert_eq!(go_float_plain(0.1), "0.1");
        assert_eq!(yaml_float(1.5), "1.5");
        assert_eq!(yaml_float(1e6), "1e+06");
        assert_eq!(yaml_float(123456.0), "123456");
        assert_eq!(yaml_float(123456789.0), "1.23456789e+08");
        assert_eq!(yaml_float(0.0001), "0.0001");
        assert_eq!(yaml_float(0.00001), "1e-05");
        assert_eq!(json_float(1.0), "1");
        assert_eq!(json_float(1e21), "1e+21");
        assert_eq!(json_float(1e20), "100000000000000000000");
        assert_eq!(json_float(1e-7), "1e-7");
    }

    #[test]
    fn ints_and_times() {
        assert_eq!(go_parse_int_base0("0x1F"), Some(31));
        assert_eq!(go_parse_int_base0("0o17"), Some(15));
        assert_eq!(go_parse_int_base0("-12"), Some(-12));
        assert_eq!(go_parse_int_base0("12a"), None);
        assert_eq!(go_parse_int_base0("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(
            parse_timestamp("2024-01-02").as_deref(),
            Some("2024-01-02T00:00:00Z")
        );
        assert_eq!(
            parse_timestamp("2024-1-2 3:04:05.500").as_deref(),
            Some("2024-01-02T03:04:05.5Z")
        );
        assert_eq!(
            parse_timestamp("2024-01-02T03:04:05+02:00").as_deref(),
            Some("2024-01-02T03:04:05+02:00")
        );
        assert_eq!(parse_timestamp("2024-13-02"), None);
        assert_eq!(parse_timestamp("hello"), None);
        assert_eq!(go_parse_bool("True"), Some(true));
        assert_eq!(go_parse_float("1.50"), Some(1.5));
        assert_eq!(go_parse_float("abc"), None);
    }
}
