//! A small YAML emitter that reproduces what Go's `yaml.v3`/`yaml/v4` `Marshal` writes for a
//! schematic: block style, 4-space indentation, sequences indented under their key, no line
//! folding, and the Go encoder's choice of scalar style.
//!
//! The scalar-style rules port the decisions of the Go encoder (`encode.go` `stringv`) and
//! of libyaml's emitter analysis (`emitterc.go` `yaml_emitter_analyze_scalar`,
//! `yaml_emitter_select_scalar_style`). Every string that ends up quoted is reported as an
//! [`Uncertainty`], because yaml.v3 and yaml/v4 quote some of them differently (spec part A).

use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::schematic::Uncertainty;

/// A document tree in the order it is emitted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Str(String),
    /// An integer already written in decimal.
    Int(String),
    Bool(bool),
    Float(f64),
    Null,
}

/// How a string scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` (keep exactly one trailing newline) or `|-` (strip: no trailing newline).
    Literal {
        strip: bool,
    },
}

/// Emit `root` (a mapping) and collect the reasons the output may differ from the factory's.
pub(crate) fn emit(root: &Node) -> (String, Vec<Uncertainty>) {
    let mut e = Emitter {
        out: String::with_capacity(256),
        uncertain: Vec::new(),
        path: Vec::new(),
    };
    match root {
        Node::Map(entries) if !entries.is_empty() => e.map(entries, 0, false),
        Node::Map(_) => e.out.push_str("{}\n"),
        other => {
            // Not produced by this crate; emitted as a lone scalar for completeness.
            let text = e.scalar_inline(other, 0);
            e.out.push_str(&text);
            e.out.push('\n');
        }
    }
    (e.out, e.uncertain)
}

struct Emitter {
    out: String,
    uncertain: Vec<Uncertainty>,
    path: Vec<String>,
}

/// The Go encoder aligns every nested block to the next multiple of the indent (4).
fn next_indent(indent: usize) -> usize {
    4 * ((indent + 4) / 4)
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

impl Emitter {
    fn field(&self) -> String {
        self.path.join(".")
    }

    fn note(&mut self, value: &str, reason: &'static str) {
        self.uncertain.push(Uncertainty {
            field: self.field(),
            value: value.to_owned(),
            reason,
        });
    }

    /// A block mapping whose keys sit at column `indent`. With `inline_first`, the cursor
    /// already stands at that column (right after a sequence's `- `).
    fn map(&mut self, entries: &[(String, Node)], indent: usize, inline_first: bool) {
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 || !inline_first {
                pad(&mut self.out, indent);
            }
            self.path.push(key.clone());
            let key_text = self.key_text(key);
            self.out.push_str(&key_text);
            self.out.push(':');
            match value {
                Node::Map(m) if m.is_empty() => self.out.push_str(" {}\n"),
                Node::Seq(s) if s.is_empty() => self.out.push_str(" []\n"),
                Node::Map(m) => {
                    self.out.push('\n');
                    self.map(m, next_indent(indent), false);
                }
                Node::Seq(s) => {
                    self.out.push('\n');
                    self.seq(s, next_indent(indent), false);
                }
                scalar => {
                    self.out.push(' ');
                    let text = self.scalar_inline(scalar, next_indent(indent));
                    self.out.push_str(&text);
                    self.out.push('\n');
                }
            }
            self.path.pop();
        }
    }

    /// A block sequence whose dashes sit at column `indent`.
    fn seq(&mut self, items: &[Node], indent: usize, inline_first: bool) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 || !inline_first {
                pad(&mut self.out, indent);
            }
            self.path.push(format!("[{i}]"));
            self.out.push('-');
            match item {
                Node::Map(m) if m.is_empty() => self.out.push_str(" {}\n"),
                Node::Seq(s) if s.is_empty() => self.out.push_str(" []\n"),
                Node::Map(m) => {
                    self.out.push(' ');
                    self.map(m, indent + 2, true);
                }
                Node::Seq(s) => {
                    self.out.push(' ');
                    self.seq(s, indent + 2, true);
                }
                scalar => {
                    self.out.push(' ');
                    let text = self.scalar_inline(scalar, indent + 2);
                    self.out.push_str(&text);
                    self.out.push('\n');
                }
            }
            self.path.pop();
        }
    }

    fn key_text(&mut self, key: &str) -> String {
        let style = string_style(key, true);
        if style != Style::Plain {
            self.note(
                key,
                "a mapping key that Go's YAML encoders may quote differently",
            );
        }
        if key.len() > 128 {
            self.note(key, "a mapping key longer than 128 characters");
        }
        write_string(key, style, 0)
    }

    /// A scalar as written after `key: ` or `- ` (without the final newline). A literal
    /// block's lines are indented to `block_indent`.
    fn scalar_inline(&mut self, node: &Node, block_indent: usize) -> String {
        match node {
            Node::Str(s) => {
                let style = string_style(s, false);
                match style {
                    Style::Plain | Style::Literal { .. } => {}
                    Style::SingleQuoted | Style::DoubleQuoted => self.note(
                        s,
                        "a string that must be quoted; yaml.v3 and yaml/v4 quote some strings differently",
                    ),
                }
                write_string(s, style, block_indent)
            }
            Node::Int(i) => i.clone(),
            Node::Bool(b) => b.to_string(),
            Node::Null => "null".to_owned(),
            Node::Float(f) => {
                self.note(
                    &f.to_string(),
                    "a floating-point value (Go formats floats its own way)",
                );
                go_float(*f)
            }
            Node::Map(_) | Node::Seq(_) => String::new(),
        }
    }
}

/// Format a float roughly as Go's `strconv.FormatFloat(f, 'g', -1, 64)` plus YAML's specials.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.to_owned()
    } else {
        format!("{f}")
    }
}

/// Render a string in the chosen style. `block_indent` is the column of a literal block's lines.
pub(crate) fn write_string(s: &str, style: Style, block_indent: usize) -> String {
    match style {
        Style::Plain => s.to_owned(),
        Style::SingleQuoted => format!("'{}'", s.replace('\'', "''")),
        Style::DoubleQuoted => double_quoted(s),
        Style::Literal { strip } => {
            let mut out = String::with_capacity(s.len() + 16);
            out.push_str(if strip { "|-" } else { "|" });
            let body = if strip {
                s
            } else {
                s.strip_suffix('\n').unwrap_or(s)
            };
            for line in body.split('\n') {
                out.push('\n');
                if !line.is_empty() {
                    pad(&mut out, block_indent);
                    out.push_str(line);
                }
            }
            out
        }
    }
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if is_printable(c) && c != '\u{feff}' => out.push(c),
            c => {
                let v = u32::from(c);
                if v <= 0xff {
                    let _ = write!(out, "\\x{v:02X}");
                } else if v <= 0xffff {
                    let _ = write!(out, "\\u{v:04X}");
                } else {
                    let _ = write!(out, "\\U{v:08X}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// libyaml's `is_printable` (note: characters outside the BMP are not "printable").
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

/// Port of `yaml_emitter_analyze_scalar` (block context only: schematics never use flow style).
fn analyze(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = value.chars().collect();
    let mut block_indicators = value.starts_with("---") || value.starts_with("...");
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break, mut previous_space, mut previous_break) =
        (false, false, false, false);
    let mut line_breaks = false;
    let mut special_characters = false;
    // Tabs forbid plain and single-quoted styles but, unlike other controls, not blocks.
    let mut tab_characters = false;
    let mut preceded_by_whitespace = true;
    let n = chars.len();
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = i + 1 >= n || is_blank(chars[i + 1]);
        if i == 0 {
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
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == n {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i + 1 == n {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blank(c) || is_break(c);
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

/// The style Go's encoder ends up with for a string in block context (`simple_key`: a
/// mapping key). Follows yaml/v4 where v3 differs (old booleans, sexagesimals and `<<` are
/// single-quoted rather than double-quoted); such strings are always reported as uncertain.
pub(crate) fn string_style(s: &str, simple_key: bool) -> Style {
    let a = analyze(s);
    let requested = if s.contains('\n') {
        Style::Literal {
            strip: !s.ends_with('\n'),
        }
    } else if is_old_bool(s) || is_base60_float(s) || s == "<<" {
        Style::SingleQuoted
    } else if resolves_to_non_string(s) {
        Style::DoubleQuoted
    } else {
        Style::Plain
    };
    let mut style = requested;
    if let Style::Literal { .. } = style {
        // Literal blocks that need an indentation or keep indicator are left to the
        // double-quoted style here (libyaml's hints there are easy to get subtly wrong).
        let needs_hint = s.starts_with([' ', '\n', '\r']) || s.ends_with("\n\n") || s == "\n";
        // yaml/v4 writes whitespace-only text double-quoted (`shouldUseLiteralStyle`), and a
        // line starting with a tab makes a literal block that YAML parsers reject.
        let awkward =
            s.chars().all(char::is_whitespace) || s.split('\n').any(|l| l.starts_with('\t'));
        if !a.block_allowed
            || simple_key
            || needs_hint
            || awkward
            || s.contains(['\r', '\u{85}', '\u{2028}', '\u{2029}'])
        {
            style = Style::DoubleQuoted;
        }
    }
    if style == Style::Plain
        && (!a.block_plain_allowed || a.multiline || (s.is_empty() && simple_key))
    {
        style = Style::SingleQuoted;
    }
    if style == Style::SingleQuoted && (!a.single_quoted_allowed || a.multiline) {
        style = Style::DoubleQuoted;
    }
    style
}

/// YAML 1.1 booleans that the Go encoders refuse to write plain.
fn is_old_bool(s: &str) -> bool {
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

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    i += 1;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        // [0-5]?[0-9]
        if i + 1 < b.len() && (b'0'..=b'5').contains(&b[i]) && b[i + 1].is_ascii_digit() {
            i += 2;
        } else if i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        } else {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// Whether Go's resolver gives the plain text a non-string type (null, bool, number,
/// timestamp, merge key). Errs towards "yes" for exotic numbers, which only makes the
/// string quoted and the offline ID reported as uncertain.
pub(crate) fn resolves_to_non_string(s: &str) -> bool {
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
            | "<<"
    ) {
        return true;
    }
    let Some(first) = s.chars().next() else {
        return true;
    };
    if !matches!(first, '+' | '-' | '.' | '0'..='9') {
        return false;
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    is_go_int(&plain) || is_yaml_float(&plain) || looks_like_timestamp(s)
}

/// `strconv.ParseInt(s, 0, 64)` syntax (ignoring overflow).
fn is_go_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    let digits_ok = |d: &str, radix: u32| !d.is_empty() && d.chars().all(|c| c.is_digit(radix));
    if let Some(h) = lower.strip_prefix("0x") {
        digits_ok(h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        digits_ok(o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        digits_ok(b, 2)
    } else {
        digits_ok(&lower, 10)
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Four digits, a dash, then a month and a day: the start of every timestamp Go accepts.
fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5].is_ascii_digit()
        && (b[6] == b'-' || (b[6].is_ascii_digit() && b.get(7) == Some(&b'-')))
}

/// The order in which yaml.v3 sorts string map keys (`sorter.go`): letters compare as
/// characters, runs of digits compare as numbers.
pub(crate) fn go_key_cmp(a: &str, b: &str) -> Ordering {
    if go_key_less(a, b) {
        Ordering::Less
    } else if go_key_less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

fn go_key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut digits = false;
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            digits = ar[i].is_ascii_digit();
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let (mut an, mut bn): (u128, u128) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .saturating_mul(10)
                .saturating_add(u128::from(u32::from(ar[ai]) - 48));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .saturating_mul(10)
                .saturating_add(u128::from(u32::from(br[bi]) - 48));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn styles_match_the_spec_examples() {
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
        ] {
            assert_eq!(string_style(plain, false), Style::Plain, "{plain:?}");
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
        ] {
            assert_eq!(string_style(dq, false), Style::DoubleQuoted, "{dq:?}");
        }
        for sq in [
            " lead", "trail ", "@x", "`x", "!x", "&x", "*x", "%x", "|x", ">x", "'sq", "\"dq", "[x",
            "]x", "{}", "}x", ",x", "key: val", "a #b", "- x", "? x", "yes", "no", "on", "off",
            "y", "n", "12:30", "<<",
        ] {
            assert_eq!(string_style(sq, false), Style::SingleQuoted, "{sq:?}");
        }
        assert_eq!(write_string("'sq", Style::SingleQuoted, 0), "'''sq'");
        assert_eq!(string_style("a\nb", false), Style::Literal { strip: true });
        assert_eq!(
            string_style("a\nb\n", false),
            Style::Literal { strip: false }
        );
        assert_eq!(string_style("a \nb", false), Style::DoubleQuoted);
        assert_eq!(write_string("a\tb", Style::DoubleQuoted, 0), "\"a\\tb\"");
        // A tab forbids plain and quoted-single styles, not a literal block.
        assert_eq!(
            string_style("a\tb\nc", false),
            Style::Literal { strip: true }
        );
        assert_eq!(string_style("a\u{1}b\nc", false), Style::DoubleQuoted);
    }

    #[test]
    fn literal_blocks_leave_blank_lines_unindented() {
        assert_eq!(
            write_string("a\n\nb\n", Style::Literal { strip: false }, 8),
            "|\n        a\n\n        b"
        );
    }

    #[test]
    fn go_key_order_compares_digit_runs_as_numbers() {
        let mut keys = vec!["b", "a10", "a2", "a", "B"];
        keys.sort_by(|a, b| go_key_cmp(a, b));
        assert_eq!(keys, ["B", "a", "a2", "a10", "b"]);
    }

    #[test]
    fn base60_and_numbers() {
        assert!(is_base60_float("12:30"));
        assert!(is_base60_float("1:2:3.5"));
        assert!(!is_base60_float("12:"));
        assert!(!is_base60_float("a:1"));
        assert!(is_yaml_float("1."));
        assert!(is_yaml_float(".5e-3"));
        assert!(!is_yaml_float("."));
        assert!(is_go_int("-0b101"));
        assert!(!is_go_int("0x"));
    }
}
