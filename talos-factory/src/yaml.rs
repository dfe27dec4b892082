//! The schematic's document tree, emitted by the shared Go-compatible emitter
//! (`yaml-v3-emit`) with yaml/v4's quoting (the factory marshals with `go.yaml.in/yaml/v4`,
//! image-factory `pkg/schematic/schematic.go` `Marshal`, whose `yaml.Marshal` runs with
//! `WithV3Defaults()`), and the list of values whose output is not certain.
//!
//! What the factory writes is certain for plain strings, literal blocks without hints,
//! strings the emitter's analysis forces into quotes (`'{}'`, `' lead'`, `'a: b'`, `"a\tb"`:
//! the same libyaml code in yaml.v3 and yaml/v4) and strings that would read back as another
//! type (`"true"`, `"1"`: both libraries double-quote them; v4's representer asks for double
//! quotes under its default `QuoteLegacy` preference, `internal/libyaml/yaml.go`). It is not
//! certain for YAML 1.1 booleans, sexagesimals and `<<` (v3 double-quotes, v4 single-quotes,
//! and self-hosted factories older than Nov 2025 still run v3), literal blocks that need an
//! indentation or keep indicator, floats, and keys that Go would write as complex keys.

use std::borrow::Cow;

use yaml_v3_emit::{Key, MapItem, Options, Quoting, Reason, SeqItem, Tree, View};

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

type EntryFn = for<'a> fn(&'a (String, Node)) -> MapItem<'a, Node>;
type ItemFn = for<'a> fn(&'a Node) -> SeqItem<'a, Node>;

fn entry((k, v): &(String, Node)) -> MapItem<'_, Node> {
    MapItem::Entry(Key::Str(k), v)
}

fn item(n: &Node) -> SeqItem<'_, Node> {
    SeqItem::Node(n)
}

impl Tree for Node {
    type Entries<'a> = std::iter::Map<std::slice::Iter<'a, (String, Node)>, EntryFn>;
    type Items<'a> = std::iter::Map<std::slice::Iter<'a, Node>, ItemFn>;

    fn view(&self) -> View<'_, Self> {
        match self {
            Node::Map(m) => View::Map(m.iter().map(entry as EntryFn)),
            Node::Seq(s) => View::Seq(s.iter().map(item as ItemFn)),
            Node::Str(s) => View::Str(s),
            Node::Int(i) => View::Raw(Cow::Borrowed(i)),
            Node::Bool(b) => View::Raw(Cow::Borrowed(if *b { "true" } else { "false" })),
            Node::Float(f) => View::Raw(Cow::Owned(go_float(*f))),
            Node::Null => View::Raw(Cow::Borrowed("null")),
        }
    }
}

const OPTIONS: Options = Options {
    indent: 4,
    quoting: Quoting::V4,
};

/// Emit `root` (a mapping) and collect the reasons the output may differ from the factory's.
pub(crate) fn emit(root: &Node) -> (String, Vec<Uncertainty>) {
    let mut uncertain = Vec::new();
    let mut path = Vec::new();
    collect(root, &mut path, &mut uncertain);
    (yaml_v3_emit::to_string(root, OPTIONS), uncertain)
}

/// Why Go's output for this string is not known for sure, if it is not.
pub(crate) fn uncertainty(s: &str, key: bool) -> Option<&'static str> {
    if key && s.len() > 128 {
        return Some("a mapping key longer than 128 characters");
    }
    match yaml_v3_emit::style_with_reason(s, key, OPTIONS.quoting).1 {
        Reason::Yaml11Compat => Some(
            "a YAML 1.1 boolean, sexagesimal or `<<`: yaml.v3 double-quotes it, yaml/v4 single-quotes it",
        ),
        Reason::LiteralHint => Some(
            "multi-line text that needs a block indicator or is whitespace only: Go's YAML libraries differ",
        ),
        _ => None,
    }
}

fn collect(node: &Node, path: &mut Vec<String>, out: &mut Vec<Uncertainty>) {
    let note = |out: &mut Vec<Uncertainty>, path: &[String], value: &str, reason| {
        out.push(Uncertainty {
            field: path.join("."),
            value: value.to_owned(),
            reason,
        });
    };
    match node {
        Node::Map(entries) => {
            for (k, v) in entries {
                path.push(k.clone());
                if let Some(reason) = uncertainty(k, true) {
                    note(out, path, k, reason);
                }
                collect(v, path, out);
                path.pop();
            }
        }
        Node::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                collect(v, path, out);
                path.pop();
            }
        }
        Node::Str(s) => {
            if let Some(reason) = uncertainty(s, false) {
                note(out, path, s, reason);
            }
        }
        Node::Float(f) => note(
            out,
            path,
            &f.to_string(),
            "a floating-point value (Go formats floats its own way)",
        ),
        Node::Int(_) | Node::Bool(_) | Node::Null => {}
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
