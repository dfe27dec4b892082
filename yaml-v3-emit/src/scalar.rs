//! How Go's encoder chooses a string's style and how each style is written.
//!
//! Two steps, as in Go:
//! 1. The encoder *requests* a style (go-yaml/yaml v3 `encode.go` `(*encoder).stringv`;
//!    yaml/go-yaml v4 `internal/libyaml/representer.go` `(*Representer).stringv` plus
//!    `desolver.go` `desolveScalar`): literal for multi-line text, quoted when the plain text
//!    would read back as another type or as a YAML 1.1 boolean/sexagesimal, plain otherwise.
//! 2. The emitter *downgrades* what the text cannot carry (v3 `emitterc.go`
//!    `yaml_emitter_analyze_scalar` and `yaml_emitter_select_scalar_style`): plain becomes
//!    single-quoted, single-quoted and literal become double-quoted.

use std::fmt::Write as _;

/// Which Go library's quoting to reproduce where v3 and v4 differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Quoting {
    /// `gopkg.in/yaml.v3` (sops, Talos): YAML 1.1 booleans (`yes`, `off`, ...) and
    /// sexagesimals (`12:30`) are double-quoted; `<<` is plain (the resolver's hint table has
    /// no entry for `<`, so `resolve` calls it a string).
    #[default]
    V3,
    /// `go.yaml.in/yaml/v4` (the Image Factory since Nov 2025): the representer asks for
    /// single quotes for those and for `<<` (`looksLikeMerge`).
    V4,
}

/// How a string scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Style {
    /// As is.
    Plain,
    /// `'...'` with `'` doubled.
    SingleQuoted,
    /// `"..."` with backslash escapes.
    DoubleQuoted,
    /// `|` block (with indentation and chomping indicators where the text needs them).
    Literal,
}

/// Why a style was chosen; callers that must know whether Go's output is certain (the
/// schematic ID) look at this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Plain text, or a literal block: nothing version-dependent.
    Natural,
    /// The emitter's analysis forced quotes on text the encoder asked to write plain
    /// (indicators, leading/trailing space, `: `, ` #`, control characters). The same
    /// libyaml code in v3 and v4.
    EmitterAnalysis,
    /// The plain text would resolve to null, bool, a number or a timestamp.
    ResolvesToNonString,
    /// A YAML 1.1 boolean, sexagesimal or `<<`: v3 and v4 quote these differently.
    Yaml11Compat,
    /// A multi-line string that needs an indentation or keep indicator, has a line starting
    /// with a tab, or that yaml/v4's `shouldUseLiteralStyle` refuses (whitespace only).
    LiteralHint,
}

/// Style chosen for `s` in block context. `simple_key`: `s` is a mapping key.
pub fn string_style(s: &str, simple_key: bool, quoting: Quoting) -> Style {
    style_with_reason(s, simple_key, quoting).0
}

/// [`string_style`] and why.
pub fn style_with_reason(s: &str, simple_key: bool, quoting: Quoting) -> (Style, Reason) {
    // Fast path: short printable ASCII with no indicator anywhere is plain unless it resolves.
    let b = s.as_bytes();
    if !b.is_empty()
        && b.iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'/' | b'=' | b'.' | b'+' | b'-')
        })
    {
        let first = b[0];
        let may_resolve = matches!(
            first,
            b'0'..=b'9'
                | b'+'
                | b'-'
                | b'.'
                | b'~'
                | b'n'
                | b'N'
                | b't'
                | b'T'
                | b'f'
                | b'F'
                | b'y'
                | b'Y'
                | b'o'
                | b'O'
        );
        let dashes = b.starts_with(b"---") || b.starts_with(b"...");
        let lone_dash = first == b'-' && b.len() == 1;
        if !dashes && !lone_dash {
            // Nothing in these bytes makes the emitter's analysis refuse plain or single
            // quotes, so the encoder's request stands.
            if !may_resolve {
                return (Style::Plain, Reason::Natural);
            }
            if is_old_bool(s) || is_base60_float(s) {
                return match quoting {
                    Quoting::V3 => (Style::DoubleQuoted, Reason::Yaml11Compat),
                    Quoting::V4 => (Style::SingleQuoted, Reason::Yaml11Compat),
                };
            }
            if resolves_to_non_string(s) {
                return (Style::DoubleQuoted, Reason::ResolvesToNonString);
            }
            return (Style::Plain, Reason::Natural);
        }
    }
    let a = analyze(s);
    let (requested, mut reason) = if s.contains('\n') {
        if quoting == Quoting::V4 && !v4_literal_ok(s) {
            (Style::DoubleQuoted, Reason::LiteralHint)
        } else {
            (Style::Literal, Reason::Natural)
        }
    } else if is_old_bool(s) || is_base60_float(s) || (quoting == Quoting::V4 && s == "<<") {
        let style = match quoting {
            Quoting::V3 => Style::DoubleQuoted,
            Quoting::V4 => Style::SingleQuoted,
        };
        (style, Reason::Yaml11Compat)
    } else if resolves_to_non_string(s) {
        (Style::DoubleQuoted, Reason::ResolvesToNonString)
    } else {
        (Style::Plain, Reason::Natural)
    };
    let mut style = requested;
    // yaml_emitter_select_scalar_style, block context (flow_level == 0).
    if simple_key && a.multiline {
        style = Style::DoubleQuoted;
    }
    if style == Style::Plain
        && (!a.block_plain_allowed || (s.is_empty() && simple_key) || a.multiline)
    {
        style = Style::SingleQuoted;
    }
    if style == Style::SingleQuoted && !a.single_quoted_allowed {
        style = Style::DoubleQuoted;
    }
    if style == Style::Literal && (!a.block_allowed || simple_key) {
        style = Style::DoubleQuoted;
    }
    // Not Go's choice: a final U+2028/U+2029 in a literal block is followed by the line
    // break that ends the scalar here, which a reader would keep under `+` chomping; such
    // strings are double-quoted instead (they read back the same either way).
    if style == Style::Literal && s.ends_with(['\u{2028}', '\u{2029}']) {
        style = Style::DoubleQuoted;
    }
    if style != requested && reason == Reason::Natural {
        reason = Reason::EmitterAnalysis;
    }
    if style == Style::Literal && needs_hint(s) {
        reason = Reason::LiteralHint;
    }
    (style, reason)
}

/// yaml/v4 `shouldUseLiteralStyle`: at least two bytes and one non-whitespace character.
fn v4_literal_ok(s: &str) -> bool {
    s.len() >= 2 && s.chars().any(|c| !c.is_whitespace())
}

/// A literal block whose text starts with a space or break needs an indentation indicator;
/// one ending in more than one break needs `+`. A first line starting with a tab gets an
/// indicator Go does not write (without it no reader can parse the block).
fn needs_hint(s: &str) -> bool {
    s.starts_with([' ', '\n'])
        || s.ends_with("\n\n")
        || s == "\n"
        || s.split('\n').any(|l| l.starts_with('\t'))
}

/// Write `s` in `style`. Literal lines go to column `block_indent`; `best_indent` is the
/// indentation indicator a literal block that starts with a space or break carries.
pub fn write_string(
    out: &mut String,
    s: &str,
    style: Style,
    block_indent: usize,
    best_indent: usize,
) {
    match style {
        Style::Plain => out.push_str(s),
        Style::SingleQuoted => {
            out.push('\'');
            for (i, part) in s.split('\'').enumerate() {
                if i > 0 {
                    out.push_str("''");
                }
                out.push_str(part);
            }
            out.push('\'');
        }
        Style::DoubleQuoted => double_quoted(out, s),
        Style::Literal => {
            // yaml_emitter_write_block_scalar_hints and yaml_emitter_write_literal_scalar:
            // any line break counts for the hints; a break other than `\n` (U+2028, U+2029:
            // the only ones a literal block may hold) is written as is, and the next content
            // is indented on the line it starts.
            out.push('|');
            // Go adds no indicator before a leading tab, and then no YAML reader (Go's
            // included) can tell the block's indentation: we add one there.
            if s.starts_with(|c: char| c == ' ' || c == '\t' || is_break(c)) {
                let _ = write!(out, "{best_indent}");
            }
            let mut rev = s.chars().rev();
            let body = match (rev.next(), rev.next()) {
                (Some(c), _) if !is_break(c) => {
                    out.push('-');
                    s
                }
                // [`string_style`] keeps other final breaks out of literal blocks.
                (Some(_), prev) => {
                    if prev.is_none_or(is_break) {
                        out.push('+');
                    }
                    &s[..s.len() - 1]
                }
                (None, _) => s,
            };
            for line in body.split('\n') {
                out.push('\n');
                let mut line_start = true;
                for c in line.chars() {
                    if is_break(c) {
                        out.push(c);
                        line_start = true;
                    } else {
                        if line_start {
                            crate::pad(out, block_indent);
                            line_start = false;
                        }
                        out.push(c);
                    }
                }
            }
        }
    }
}

/// `"..."` with libyaml's escapes (`yaml_emitter_write_double_quoted_scalar`).
fn double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if is_printable(c) => out.push(c),
            c => {
                let v = u32::from(c);
                let _ = if v <= 0xff {
                    write!(out, "\\x{v:02X}")
                } else if v <= 0xffff {
                    write!(out, "\\u{v:04X}")
                } else {
                    write!(out, "\\U{v:08X}")
                };
            }
        }
    }
    out.push('"');
}

/// libyaml's `is_printable`: excludes U+0085, U+FEFF and everything beyond the BMP.
fn is_printable(c: char) -> bool {
    matches!(u32::from(c), 0x0a | 0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfffd) && c != '\u{feff}'
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

/// Port of `yaml_emitter_analyze_scalar` (block context).
fn analyze(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = value.starts_with("---") || value.starts_with("...");
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break, mut previous_space, mut previous_break) =
        (false, false, false, false);
    let (mut line_breaks, mut special_characters, mut tab_characters) = (false, false, false);
    let mut preceded_by_whitespace = true;
    let mut it = value.chars().peekable();
    let mut first = true;
    while let Some(c) = it.next() {
        let next = it.peek().copied();
        let last = next.is_none();
        let followed_by_whitespace = next.is_none_or(is_blank);
        if first {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if c == '\t' {
            tab_characters = true;
        } else if !is_printable(c) {
            special_characters = true;
        }
        if c == ' ' {
            leading_space |= first;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= first;
            trailing_break |= last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blank(c) || is_break(c);
        first = false;
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || tab_characters || special_characters {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special_characters {
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// YAML 1.1 booleans the Go encoders refuse to write plain (`isOldBool`).
pub fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// `isBase60Float`: `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
pub fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    i += 1;
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        match (b.get(i), b.get(i + 1)) {
            (Some(b'0'..=b'5'), Some(d1)) if d1.is_ascii_digit() => i += 2,
            (Some(d), _) if d.is_ascii_digit() => i += 1,
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// Whether v3's `resolve("", s)` gives plain `s` a tag other than `!!str`: null, bool, int,
/// float or timestamp (`resolve.go`; only the first character's hint lets it try).
pub fn resolves_to_non_string(s: &str) -> bool {
    if matches!(
        s,
        "" | "~"
            | "null"
            | "Null"
            | "NULL"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | ".nan"
            | ".NaN"
            | ".NAN"
            | ".inf"
            | ".Inf"
            | ".INF"
            | "+.inf"
            | "+.Inf"
            | "+.INF"
            | "-.inf"
            | "-.Inf"
            | "-.INF"
    ) {
        return true;
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return false;
    }
    let owned;
    let plain = if s.contains('_') {
        owned = s.replace('_', "");
        owned.as_str()
    } else {
        s
    };
    is_go_int(plain) || is_yaml_float(plain) || (first.is_ascii_digit() && is_timestamp(s))
}

/// `strconv.ParseInt(s, 0, 64)`, or `ParseUint` for a non-negative value: Go's integer
/// syntax with its 64-bit range (a decimal beyond it still resolves, as a float).
fn is_go_int(s: &str) -> bool {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
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
        return false;
    }
    match u64::from_str_radix(digits, radix) {
        Ok(mag) => !neg || mag <= 1 << 63,
        Err(_) => false,
    }
}

/// Whether yaml.v3 resolves `s` as a float:
/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
pub fn is_yaml_float(s: &str) -> bool {
    let b = s.strip_prefix(['-', '+']).unwrap_or(s).as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - st
    };
    if b.first() == Some(&b'.') {
        i = 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// v3's `parseTimestamp`: `2006-1-2`, `2006-1-2 15:4:5.999999999` and the `T`/`t` forms with
/// a `Z` or `±hh:mm` zone, with Go's range checks (`time.Parse`).
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let year: u32 = s[..4].parse().unwrap_or(0);
    let mut p = 4;
    let sep_at = |p: usize, c: u8| b.get(p) == Some(&c);
    if !sep_at(p, b'-') {
        return false;
    }
    p += 1;
    let month = {
        let start = p;
        while p < b.len() && b[p].is_ascii_digit() && p - start < 2 {
            p += 1;
        }
        if p == start {
            return false;
        }
        s[start..p].parse::<u32>().unwrap_or(0)
    };
    if !sep_at(p, b'-') {
        return false;
    }
    p += 1;
    let two = |p: &mut usize| -> Option<u32> {
        let start = *p;
        while *p < b.len() && b[*p].is_ascii_digit() && *p - start < 2 {
            *p += 1;
        }
        if *p == start {
            return None;
        }
        s[start..*p].parse().ok()
    };
    let Some(day) = two(&mut p) else { return false };
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day < 1 || day > days {
        return false;
    }
    if p == b.len() {
        return true;
    }
    let sep = b[p];
    if !matches!(sep, b'T' | b't' | b' ') {
        return false;
    }
    p += 1;
    let Some(hour) = two(&mut p) else {
        return false;
    };
    if !sep_at(p, b':') {
        return false;
    }
    p += 1;
    let Some(min) = two(&mut p) else { return false };
    if !sep_at(p, b':') {
        return false;
    }
    p += 1;
    let Some(sec) = two(&mut p) else { return false };
    if hour > 23 || min > 59 || sec > 59 {
        return false;
    }
    if sep_at(p, b'.') {
        p += 1;
        let start = p;
        while p < b.len() && b[p].is_ascii_digit() {
            p += 1;
        }
        if p == start || p - start > 9 {
            return false;
        }
    }
    if p == b.len() {
        return sep == b' ';
    }
    match b[p] {
        b'Z' => p + 1 == b.len(),
        b'+' | b'-' => s[p + 1..].split_once(':').is_some_and(|(h, m)| {
            h.len() == 2
                && m.len() == 2
                && h.bytes().all(|c| c.is_ascii_digit())
                && m.bytes().all(|c| c.is_ascii_digit())
        }),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn st(s: &str) -> Style {
        string_style(s, false, Quoting::V3)
    }

    #[test]
    fn plain_double_and_single() {
        for plain in [
            "siderolabs/qemu-guest-agent",
            "net.ifnames=0",
            "console=ttyS0,115200",
            "-x",
            "a#b",
            "x:y",
            "?q",
            "NaN",
            "héllo",
            "0x",
            "1.2.3",
            "<<",
            "ENC[AES256_GCM,data:x,iv:y]",
        ] {
            assert_eq!(st(plain), Style::Plain, "{plain:?}");
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
            "",
            "a\tb",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "12:30",
            "1_000",
        ] {
            assert_eq!(st(dq), Style::DoubleQuoted, "{dq:?}");
        }
        for sq in [
            " lead", "trail ", "@x", "`x", "!x", "&x", "*x", "%x", "|x", ">x", "'sq", "\"dq", "[x",
            "]x", "{}", "}x", ",x", "key: val", "a #b", "- x", "? x", "---x", "-", ":",
        ] {
            assert_eq!(st(sq), Style::SingleQuoted, "{sq:?}");
        }
        assert_eq!(st("a\nb"), Style::Literal);
        assert_eq!(st("a \nb"), Style::DoubleQuoted);
        assert_eq!(st("a\tb\nc"), Style::Literal);
        assert_eq!(st("a\u{1}b\nc"), Style::DoubleQuoted);
        assert_eq!(string_style("a\nb", true, Quoting::V3), Style::DoubleQuoted);
    }

    #[test]
    fn v4_differs_only_for_yaml11_compat_and_whitespace_blocks() {
        for s in ["yes", "Off", "12:30", "<<"] {
            assert_eq!(
                style_with_reason(s, false, Quoting::V4),
                (Style::SingleQuoted, Reason::Yaml11Compat),
                "{s}"
            );
        }
        assert_eq!(string_style(" \n", false, Quoting::V4), Style::DoubleQuoted);
        assert_eq!(
            style_with_reason("{}", false, Quoting::V4),
            (Style::SingleQuoted, Reason::EmitterAnalysis)
        );
        assert_eq!(
            style_with_reason("true", false, Quoting::V4).1,
            Reason::ResolvesToNonString
        );
    }

    #[test]
    fn writers() {
        let w = |s: &str, style| {
            let mut o = String::new();
            write_string(&mut o, s, style, 8, 4);
            o
        };
        assert_eq!(w("'sq", Style::SingleQuoted), "'''sq'");
        assert_eq!(
            w("a\tb\u{7}\u{1F600}", Style::DoubleQuoted),
            "\"a\\tb\\a\\U0001F600\""
        );
        assert_eq!(w("a\n\nb\n", Style::Literal), "|\n        a\n\n        b");
        assert_eq!(w(" a\nb", Style::Literal), "|4-\n         a\n        b");
        assert_eq!(w("a\n\n", Style::Literal), "|+\n        a\n");
    }

    #[test]
    fn numbers_and_sexagesimals() {
        assert!(is_base60_float("12:30"));
        assert!(is_base60_float("1:2:3.5"));
        assert!(!is_base60_float("12:"));
        assert!(!is_base60_float("a:1"));
        assert!(is_yaml_float("1."));
        assert!(is_yaml_float(".5e-3"));
        assert!(!is_yaml_float("."));
        assert!(is_go_int("-0b101"));
        assert!(!is_go_int("0x"));
        assert!(is_timestamp("2001-1-2"));
        assert!(is_timestamp("2001-12-14t21:59:43.10-05:00"));
        assert!(is_timestamp("2001-12-14 21:59:43.10"));
        assert!(!is_timestamp("2001-123-2"));
        assert!(!is_timestamp("2001-02-30"));
        assert!(!is_timestamp("2001-01-01x"));
    }
}
