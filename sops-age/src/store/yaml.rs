//! YAML store: yaml.v3-compatible scalar resolution, comments kept as tree items (as sops
//! does), multi-document streams, and a yaml.v3-style emitter (indent 4, indented
//! sequences, literal blocks for multi-line strings).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
#[cfg(test)]
use yaml_v3_emit::Style;
use yaml_v3_emit::{Emitter, Key, MapItem, Options, Quoting, SeqItem, Tree, View};

use crate::error::{Error, Result};
use crate::value::{
    Item, Map, Value, go_parse_float, go_parse_int_base0, parse_timestamp, yaml_float,
};

#[derive(Debug)]
struct Comment {
    idx: usize,
    line: usize,
    col: usize,
    text: String,
    trailing: bool,
}

/// Parse a YAML stream into one mapping per document.
pub(crate) fn parse(input: &[u8]) -> Result<Vec<Map>> {
    // Plain block mappings (most sops files) take the fast path; it refuses anything else.
    if let Ok(text) = std::str::from_utf8(input)
        && let Some(docs) = super::yaml_fast::parse(text.strip_prefix('\u{feff}').unwrap_or(text))
    {
        return Ok(docs);
    }
    parse_general(input)
}

/// Parse a YAML stream through saphyr's events (any YAML; comments, errors with positions).
pub(crate) fn parse_general(input: &[u8]) -> Result<Vec<Map>> {
    let text = std::str::from_utf8(input).map_err(|e| {
        let before = &input[..e.valid_up_to()];
        Error::Parse {
            format: "YAML",
            line: before.iter().filter(|b| **b == b'\n').count() + 1,
            column: 1,
            message: "invalid UTF-8".into(),
        }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut events: Vec<(Event<'_>, Span)> = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (e, span) = ev.map_err(|e| Error::Parse {
            format: "YAML",
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_owned(),
        })?;
        events.push((e, span));
    }
    let comments = scan_comments(text, &events);
    let mut b = Builder {
        comments,
        ci: 0,
        stack: Vec::new(),
        anchors: HashMap::new(),
        docs: Vec::new(),
        root: None,
    };
    for (ev, span) in events {
        b.event(ev, span)?;
    }
    if b.docs.is_empty() {
        if b.comments.is_empty() {
            return Err(Error::Unsupported("File cannot be completely empty".into()));
        }
        let mut m = Map::new();
        for c in b.comments.drain(..) {
            m.items.push(Item::Comment(c.text));
        }
        b.docs.push(m);
    } else if b.ci < b.comments.len() {
        let rest: Vec<Comment> = b.comments.drain(b.ci..).collect();
        if let Some(last) = b.docs.last_mut() {
            last.items
                .extend(rest.into_iter().map(|c| Item::Comment(c.text)));
        }
    }
    Ok(b.docs)
}

/// Find comments: `#` at line start or after whitespace, outside any scalar's span.
/// Only the `#` positions are visited; line, column and char index are counted forward
/// between them (spans are in chars, so non-ASCII text needs the char count).
fn scan_comments(text: &str, events: &[(Event<'_>, Span)]) -> Vec<Comment> {
    let mut masks = events.iter().filter_map(|(e, s)| match e {
        Event::Scalar(..) => Some((s.start.index(), s.end.index())),
        _ => None,
    });
    let mut mask = masks.next();
    let bytes = text.as_bytes();
    let ascii = text.is_ascii();
    let mut out = Vec::new();
    // cursor: byte position, its char index, its line, and the byte where its line starts
    let (mut pos, mut ci, mut line, mut line_start) = (0usize, 0usize, 1usize, 0usize);
    let mut skip_until = 0usize;
    for (hash, _) in text.match_indices('#') {
        if hash < skip_until {
            continue;
        }
        let between = &bytes[pos..hash];
        for (i, b) in between.iter().enumerate() {
            if *b == b'\n' {
                line += 1;
                line_start = pos + i + 1;
            }
        }
        ci += if ascii {
            hash - pos
        } else {
            text[pos..hash].chars().count()
        };
        pos = hash;
        let prev_ws = hash == 0 || matches!(bytes[hash - 1], b' ' | b'\t' | b'\r' | b'\n');
        if !prev_ws {
            continue;
        }
        while let Some((_, end)) = mask {
            if end <= ci {
                mask = masks.next();
            } else {
                break;
            }
        }
        if mask.is_some_and(|(s, e)| s <= ci && ci < e) {
            continue;
        }
        let prefix = &text[line_start..hash];
        let col = if ascii {
            prefix.len()
        } else {
            prefix.chars().count()
        };
        let trailing = prefix.bytes().any(|b| !matches!(b, b' ' | b'\t' | b'\r'));
        let end = text[hash..].find('\n').map_or(text.len(), |e| hash + e);
        out.push(Comment {
            idx: ci,
            line,
            col,
            text: text[hash + 1..end].trim_end_matches('\r').to_owned(),
            trailing,
        });
        skip_until = end;
    }
    out
}

enum Frame {
    Map {
        map: Map,
        key: Option<String>,
        keys: HashSet<String>,
        threshold: usize,
        anchor: usize,
        flow: bool,
    },
    Seq {
        items: Vec<Value>,
        threshold: usize,
        anchor: usize,
        flow: bool,
    },
}

struct Builder {
    comments: Vec<Comment>,
    ci: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    docs: Vec<Map>,
    root: Option<Value>,
}

fn perr(span: &Span, msg: impl Into<String>) -> Error {
    Error::Parse {
        format: "YAML",
        line: span.start.line(),
        column: span.start.col() + 1,
        message: msg.into(),
    }
}

impl Builder {
    fn push_comment(&mut self, text: String) {
        match self.stack.last_mut() {
            Some(Frame::Map { map, .. }) => map.items.push(Item::Comment(text)),
            Some(Frame::Seq { items, .. }) => items.push(Value::Comment(text)),
            None => {}
        }
    }

    /// Move pending comments positioned before `idx` into the current container.
    fn flush(&mut self, idx: usize, min_col: Option<usize>, trailing_only: bool) {
        if self.stack.is_empty() {
            return;
        }
        while self.ci < self.comments.len() {
            let c = &self.comments[self.ci];
            if c.idx >= idx
                || (trailing_only && !c.trailing)
                || min_col.is_some_and(|m| !c.trailing && c.col < m)
            {
                break;
            }
            let text = std::mem::take(&mut self.comments[self.ci].text);
            self.ci += 1;
            self.push_comment(text);
        }
    }

    /// Comments trailing the line `line` (`key: value # c`) go above the entry, as sops does.
    fn take_trailing(&mut self, line: usize) -> Vec<String> {
        let mut out = Vec::new();
        while self.ci < self.comments.len() {
            let c = &self.comments[self.ci];
            if !(c.trailing && c.line == line) {
                break;
            }
            out.push(std::mem::take(&mut self.comments[self.ci].text));
            self.ci += 1;
        }
        out
    }

    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<()> {
        let at = span.start.index();
        match ev {
            Event::Nothing | Event::StreamStart | Event::DocumentStart(_) => {}
            Event::DocumentEnd => {
                let root = self.root.take();
                let doc = match root {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Map(m)) => m,
                    Some(Value::Seq(_)) => {
                        return Err(perr(
                            &span,
                            "YAML documents that are sequences are not supported",
                        ));
                    }
                    Some(_) => {
                        return Err(perr(
                            &span,
                            "YAML documents that are values are not supported",
                        ));
                    }
                };
                self.docs.push(doc);
                // comments between documents belong to the document just closed
                let mut rest = Vec::new();
                while self.ci < self.comments.len() && self.comments[self.ci].idx < at {
                    rest.push(std::mem::take(&mut self.comments[self.ci].text));
                    self.ci += 1;
                }
                if let Some(d) = self.docs.last_mut() {
                    d.items.extend(rest.into_iter().map(Item::Comment));
                }
            }
            Event::StreamEnd => {}
            Event::MappingStart(anchor, _tag) => {
                self.flush(at, None, true);
                // block collections start with an empty span, flow ones span their `{`/`[`
                let flow = span.end.index() > at;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    key: None,
                    keys: HashSet::new(),
                    threshold: if flow { 0 } else { span.start.col() },
                    anchor,
                    flow,
                });
            }
            Event::SequenceStart(anchor, _tag) => {
                self.flush(at, None, true);
                let flow = span.end.index() > at;
                let col = span.start.col();
                let parent_col = match self.stack.last() {
                    Some(Frame::Map {
                        threshold,
                        flow: false,
                        ..
                    }) => Some(*threshold),
                    _ => None,
                };
                let threshold = if flow {
                    0
                } else if parent_col == Some(col) {
                    col + 1 // indentless sequence: comments at its column belong to the parent
                } else {
                    col
                };
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    threshold,
                    anchor,
                    flow,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let threshold = match self.stack.last() {
                    Some(Frame::Map { threshold, .. } | Frame::Seq { threshold, .. }) => *threshold,
                    None => return Err(perr(&span, "unbalanced end of collection")),
                };
                let is_root = self.stack.len() == 1;
                self.flush(at, if is_root { None } else { Some(threshold) }, false);
                let (value, anchor, flow) = match self.stack.pop() {
                    Some(Frame::Map {
                        map,
                        anchor,
                        flow,
                        key,
                        ..
                    }) => {
                        if key.is_some() {
                            return Err(perr(&span, "mapping key without value"));
                        }
                        (Value::Map(map), anchor, flow)
                    }
                    Some(Frame::Seq {
                        items,
                        anchor,
                        flow,
                        ..
                    }) => (Value::Seq(items), anchor, flow),
                    None => return Err(perr(&span, "unbalanced end of collection")),
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                let line = if flow { Some(span.end.line()) } else { None };
                self.complete(value, line, &span)?;
            }
            Event::Scalar(v, style, anchor, tag) => {
                self.flush(at, None, false);
                let awaiting_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                if awaiting_key {
                    let key = scalar_key(v, style, tag.as_deref(), &span)?;
                    if let Some(Frame::Map {
                        key: slot, keys, ..
                    }) = self.stack.last_mut()
                    {
                        if !keys.insert(key.clone()) {
                            return Err(perr(
                                &span,
                                format!("mapping key {key:?} already defined"),
                            ));
                        }
                        *slot = Some(key);
                    }
                    return Ok(());
                }
                let value = scalar_value(v, style, tag.as_deref(), &span)?;
                if anchor != 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                self.complete(value, Some(span.end.line()), &span)?;
            }
            Event::Alias(id) => {
                self.flush(at, None, false);
                let value = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| perr(&span, "alias to an unknown anchor"))?;
                if let Some(Frame::Map {
                    key: slot @ None,
                    keys,
                    ..
                }) = self.stack.last_mut()
                {
                    let Value::String(k) = value else {
                        return Err(perr(&span, "Tree contains a non-string key"));
                    };
                    keys.insert(k.clone());
                    *slot = Some(k);
                    return Ok(());
                }
                self.complete(value, Some(span.start.line()), &span)?;
            }
        }
        Ok(())
    }

    fn complete(&mut self, value: Value, line: Option<usize>, span: &Span) -> Result<()> {
        let trailing = match line {
            Some(l) if !self.stack.is_empty() => self.take_trailing(l),
            _ => Vec::new(),
        };
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
            }
            Some(Frame::Map { map, key, .. }) => {
                let k = key
                    .take()
                    .ok_or_else(|| perr(span, "value without a key"))?;
                map.items.extend(trailing.into_iter().map(Item::Comment));
                map.items.push(Item::Entry(k, value));
            }
            Some(Frame::Seq { items, .. }) => {
                items.extend(trailing.into_iter().map(Value::Comment));
                items.push(value);
            }
        }
        Ok(())
    }
}

fn core_tag(tag: Option<&Tag>) -> Option<&str> {
    let t = tag?;
    if t.handle == "tag:yaml.org,2002:" || t.handle == "!!" {
        Some(t.suffix.as_str())
    } else {
        None
    }
}

fn scalar_key(
    v: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Tag>,
    span: &Span,
) -> Result<String> {
    if style != ScalarStyle::Plain || core_tag(tag) == Some("str") || core_tag(tag) == Some("merge")
    {
        return Ok(v.into_owned());
    }
    if v == "<<" {
        return Ok(v.into_owned());
    }
    match plain_typed(&v) {
        None => Ok(v.into_owned()),
        _ => Err(perr(span, format!("Tree contains a non-string key ({v})"))),
    }
}

fn scalar_value(
    v: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Tag>,
    span: &Span,
) -> Result<Value> {
    match core_tag(tag) {
        Some("str") => return Ok(Value::String(v.into_owned())),
        Some("binary") => {
            let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|e| perr(span, format!("invalid !!binary: {e}")))?;
            return Ok(match String::from_utf8(bytes) {
                Ok(s) => Value::String(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            });
        }
        Some("int" | "float" | "bool" | "null" | "timestamp") => {
            let r = resolve_plain(&v);
            return Ok(match (core_tag(tag), r) {
                (Some("float"), Value::Int(i)) => Value::Float(i as f64),
                (_, r) => r,
            });
        }
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(v.into_owned()));
    }
    Ok(plain_scalar_value(v))
}

/// The value of an untagged plain scalar.
pub(crate) fn plain_scalar_value(v: Cow<'_, str>) -> Value {
    match plain_typed(&v) {
        None => Value::String(v.into_owned()),
        Some(other) => other,
    }
}

/// Whether an untagged plain key resolves to a non-string ([`scalar_key`] refuses those).
pub(crate) fn plain_key_is_typed(k: &str) -> bool {
    k != "<<" && plain_typed(k).is_some()
}

/// yaml.v3's resolution of an untagged plain scalar.
pub(crate) fn resolve_plain(s: &str) -> Value {
    plain_typed(s).unwrap_or_else(|| Value::String(s.to_owned()))
}

/// The non-string value a plain scalar resolves to, or `None` for a string.
fn plain_typed(s: &str) -> Option<Value> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(Value::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(Value::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(Value::Float(f64::NAN)),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.') {
        let plain: Cow<'_, str> = if s.contains('_') {
            Cow::Owned(s.replace('_', ""))
        } else {
            Cow::Borrowed(s)
        };
        if let Some(i) = go_parse_int_base0(&plain) {
            return Some(Value::Int(i));
        }
        if yaml_v3_emit::scalar::is_yaml_float(&plain)
            && let Some(f) = go_parse_float(&plain)
        {
            return Some(Value::Float(f));
        }
        if first.is_ascii_digit()
            && let Some(t) = parse_timestamp(s)
        {
            return Some(Value::Time(t));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Emitter: the shared yaml.v3 emitter (`yaml-v3-emit`) walks the tree through this view.

type EntryFn = for<'a> fn(&'a Item) -> MapItem<'a, Value>;
type ItemFn = for<'a> fn(&'a Value) -> SeqItem<'a, Value>;

fn map_item(i: &Item) -> MapItem<'_, Value> {
    match i {
        // A merge key parsed from the input keeps its explicit tag, as sops writes it.
        Item::Entry(k, v) if k == "<<" => MapItem::Entry(Key::Raw(Cow::Borrowed("!!merge <<")), v),
        Item::Entry(k, v) => MapItem::Entry(Key::Str(k), v),
        Item::Comment(c) => MapItem::Comment(c),
    }
}

fn seq_item(v: &Value) -> SeqItem<'_, Value> {
    match v {
        // An encrypted comment is a sequence item in sops' output.
        Value::Comment(c) if crate::cipher::is_enc(c) => SeqItem::Raw(c),
        Value::Comment(c) => SeqItem::Comment(c),
        other => SeqItem::Node(other),
    }
}

impl Tree for Value {
    type Entries<'a> = std::iter::Map<std::slice::Iter<'a, Item>, EntryFn>;
    type Items<'a> = std::iter::Map<std::slice::Iter<'a, Value>, ItemFn>;

    fn view(&self) -> View<'_, Self> {
        match self {
            Value::Map(m) => View::Map(m.items.iter().map(map_item as EntryFn)),
            Value::Seq(s) => View::Seq(s.iter().map(seq_item as ItemFn)),
            Value::Null => View::Raw(Cow::Borrowed("null")),
            Value::Bool(b) => View::Raw(Cow::Borrowed(if *b { "true" } else { "false" })),
            Value::Int(i) => View::Raw(Cow::Owned(i.to_string())),
            Value::Float(f) => View::Raw(Cow::Owned(yaml_float(*f))),
            Value::Time(t) => View::Raw(Cow::Borrowed(t)),
            // Ciphertexts are printable ASCII without `: ` or ` #`: always plain.
            Value::String(s)
                if s.starts_with("ENC[AES256_GCM,data:") && s.ends_with(']') && s.is_ascii() =>
            {
                View::Raw(Cow::Borrowed(s))
            }
            // sops 3.11 writes the text `<<` as a tagged merge key even as a value
            // (checked against `sops decrypt`); yaml.v3's Marshal of a Go string would not.
            Value::String(s) if s == "<<" => View::Raw(Cow::Borrowed("!!merge <<")),
            Value::Comment(c) | Value::String(c) => View::Str(c),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => View::Str(s),
                Err(_) => View::Raw(Cow::Owned(format!(
                    "!!binary {}",
                    base64::engine::general_purpose::STANDARD.encode(b)
                ))),
            },
        }
    }
}

fn options(indent: usize) -> Options {
    Options {
        indent,
        quoting: Quoting::V3,
    }
}

/// Emit documents; with metadata, each document gets its own `sops:` block.
pub(crate) fn emit(docs: &[Map], metadata: Option<&Map>, indent: usize) -> String {
    let capacity = docs.iter().map(|d| d.items.len() * 64).sum::<usize>() + 4096;
    let mut e = Emitter::new(options(indent), capacity);
    let md = metadata.map(|m| Value::Map(m.clone()));
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            e.document_separator();
        }
        let sops = md.as_ref().map(|v| MapItem::Entry(Key::Str("sops"), v));
        e.root_mapping(doc.items.iter().map(map_item).chain(sops));
    }
    e.finish()
}

/// Emit a single value as a YAML document (for `--extract` of a subtree).
pub(crate) fn emit_value(v: &Value, indent: usize) -> String {
    let mut e = Emitter::new(options(indent), 256);
    e.document(v);
    e.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rt(src: &str) -> String {
        emit(&parse(src.as_bytes()).unwrap(), None, 4)
    }

    #[test]
    fn sops_style_output() {
        let src = "# top comment\na: 1 # trail\nlist:\n- x: 1\n  y: [1, 2]\n- - n1\n  - n2\n- plain\n# seq comment\n- \"quoted: yes\"\nmulti: |\n  line1\n  line2\nempty: \"\"\nnul: null\nemap: {}\neseq: []\nf: 1.50\nt: yes\nd: 2024-01-02\nbig: 1e6\nsp: \" lead\"\n";
        let expected = "# top comment\n# trail\na: 1\nlist:\n    - x: 1\n      \"y\":\n        - 1\n        - 2\n    - - n1\n      - n2\n    - plain\n    # seq comment\n    - 'quoted: yes'\nmulti: |\n    line1\n    line2\nempty: \"\"\nnul: null\nemap: {}\neseq: []\nf: 1.5\nt: \"yes\"\nd: 2024-01-02T00:00:00Z\nbig: 1e+06\nsp: ' lead'\n";
        assert_eq!(rt(src), expected);
    }

    #[test]
    fn nested_comments_belong_to_their_mapping() {
        let src = "a:\n    # inner\n    b: 1\n    # foot of a\n# head of c\nc: 2\n";
        let docs = parse(src.as_bytes()).unwrap();
        let Some(Value::Map(a)) = docs[0].get("a") else {
            panic!()
        };
        assert_eq!(a.items.len(), 3);
        assert_eq!(a.items[0], Item::Comment(" inner".into()));
        assert_eq!(a.items[2], Item::Comment(" foot of a".into()));
        assert_eq!(docs[0].items[1], Item::Comment(" head of c".into()));
        assert_eq!(rt(src), src);
    }

    #[test]
    fn multi_doc_and_errors() {
        let docs = parse(b"a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert!(parse(b"- 1\n- 2\n").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"1: x\n").is_err());
        let e = parse(b"a: [1\n").unwrap_err().to_string();
        assert!(e.contains("line"), "{e}");
        assert!(parse(b"a: 1\na: 2\n").is_err());
    }

    #[test]
    fn scalars_resolve_like_yaml_v3() {
        assert_eq!(resolve_plain("0x10"), Value::Int(16));
        assert_eq!(resolve_plain("1_000"), Value::Int(1000));
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(resolve_plain("yes"), Value::String("yes".into()));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert!(matches!(resolve_plain(".inf"), Value::Float(f) if f.is_infinite()));
        let style = |s| yaml_v3_emit::string_style(s, false, Quoting::V3);
        assert_eq!(style("123"), Style::DoubleQuoted);
        assert_eq!(style("a: b"), Style::SingleQuoted);
        assert_eq!(style("ENC[AES256_GCM,data:x,iv:y]"), Style::Plain);
        assert_eq!(style("tab\there"), Style::DoubleQuoted);
    }

    /// Outputs of `sops decrypt` (sops 3.11.0) for these values, byte for byte.
    #[test]
    fn edge_scalars_match_sops() {
        let src = "a: \"<<\"\nb: \"---x\"\nc: \"2001-02-30\"\nd: \"0xFFFFFFFFFFFFFFFF\"\ne: \"-0x8000000000000001\"\nf: \"? x\"\ng: \" lead\\nnext\\n\"\nh: \"2001-12-14 21:59:43.10\"\nj: \"1_000\"\nk: \"0o17\"\nl: \"08\"\nm: \"...\"\nn: \"x\\n\\n\"\no: \"12:30:00\"\n";
        let sops = "a: !!merge <<\nb: '---x'\nc: 2001-02-30\nd: \"0xFFFFFFFFFFFFFFFF\"\ne: -0x8000000000000001\nf: '? x'\ng: |4\n     lead\n    next\nh: \"2001-12-14 21:59:43.10\"\nj: \"1_000\"\nk: \"0o17\"\nl: \"08\"\nm: '...'\n\"n\": |+\n    x\n\no: \"12:30:00\"\n";
        assert_eq!(rt(src), sops);
        assert_eq!(rt(sops), sops);
    }

    #[test]
    fn anchors_and_block_scalars() {
        let src = "base: &b\n    x: 1\nother: *b\ntext: |-\n    no newline\nkeep: |+\n    two\n\n";
        let docs = parse(src.as_bytes()).unwrap();
        assert_eq!(docs[0].get("other"), docs[0].get("base"));
        assert_eq!(
            docs[0].get("text"),
            Some(&Value::String("no newline".into()))
        );
        assert_eq!(docs[0].get("keep"), Some(&Value::String("two\n\n".into())));
        assert_eq!(
            rt(src),
            "base:\n    x: 1\nother:\n    x: 1\ntext: no newline\nkeep: |+\n    two\n\n"
        );
    }
}
