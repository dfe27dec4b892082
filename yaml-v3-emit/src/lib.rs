//! Block YAML as Go's `yaml.v3` (and `yaml/v4`) `Marshal` writes it, byte for byte: the one
//! emitter behind sops-age's YAML store (sops 3.x interop), talos-factory's schematic IDs and
//! talos-api's machine configs and talosconfig.
//!
//! Layout follows go-yaml/yaml v3 `emitterc.go`: every nested block is indented to the next
//! multiple of the indentation (`yaml_emitter_increase_indent`, "\[Go\] This was changed so
//! that indentations are more regular"), sequences under a key are indented, a mapping or
//! sequence inside a sequence item continues after `- ` (content at dash + 2), empty
//! collections are written `{}`/`[]`, scalars are never folded. Scalar styles: [`scalar`].
//!
//! A document is any type implementing [`Tree`]; comments (sops keeps them as tree items)
//! are written as `#text` lines at the current indentation.

use std::borrow::Cow;
use std::iter::Peekable;

mod keys;
pub mod scalar;
#[cfg(feature = "serde_yaml_ng")]
mod serde_value;

pub use keys::go_key_cmp;
pub use scalar::{Quoting, Reason, Style, string_style, style_with_reason, write_string};

/// One entry of a mapping as the emitter sees it.
#[derive(Debug)]
pub enum MapItem<'a, T: ?Sized> {
    /// `key: value`.
    Entry(Key<'a>, &'a T),
    /// A `#` comment line (the text after `#`).
    Comment(&'a str),
}

/// A mapping key.
#[derive(Debug)]
pub enum Key<'a> {
    /// A string key, quoted by the key rules when it needs it.
    Str(&'a str),
    /// Written exactly as given (numbers, `!!merge <<`).
    Raw(Cow<'a, str>),
}

/// One item of a sequence as the emitter sees it.
#[derive(Debug)]
pub enum SeqItem<'a, T: ?Sized> {
    /// `- value`.
    Node(&'a T),
    /// A `#` comment line.
    Comment(&'a str),
    /// `- text` with the text written as is.
    Raw(&'a str),
}

/// What a node is, for the emitter.
#[derive(Debug)]
pub enum View<'a, T: Tree + ?Sized + 'a> {
    /// A mapping's entries in output order.
    Map(T::Entries<'a>),
    /// A sequence's items.
    Seq(T::Items<'a>),
    /// A string scalar, styled by [`string_style`].
    Str(&'a str),
    /// A scalar written as is: numbers, booleans, `null`, timestamps, tagged text.
    Raw(Cow<'a, str>),
}

/// A document tree the emitter can walk without copying it.
pub trait Tree {
    /// Iterator over a mapping's entries.
    type Entries<'a>: Iterator<Item = MapItem<'a, Self>>
    where
        Self: 'a;
    /// Iterator over a sequence's items.
    type Items<'a>: Iterator<Item = SeqItem<'a, Self>>
    where
        Self: 'a;
    /// This node's shape.
    fn view(&self) -> View<'_, Self>;
}

/// Emitter settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Indentation step (yaml.v3 `SetIndent`, 2..=9; 4 by default).
    pub indent: usize,
    /// Whose quoting to follow where yaml.v3 and yaml/v4 differ.
    pub quoting: Quoting,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            indent: 4,
            quoting: Quoting::V3,
        }
    }
}

/// Writes documents into a `String`.
#[derive(Debug)]
pub struct Emitter {
    out: String,
    best: usize,
    quoting: Quoting,
}

const SPACES: &str = "                                                                ";

pub(crate) fn pad(out: &mut String, mut n: usize) {
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        n -= k;
    }
}

impl Emitter {
    /// An emitter with room for `capacity` bytes.
    pub fn new(options: Options, capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
            best: options.indent.clamp(2, 9),
            quoting: options.quoting,
        }
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }

    /// Start the next document of a stream (`---`).
    pub fn document_separator(&mut self) {
        self.out.push_str("---\n");
    }

    /// Write one document whose root is `root`.
    pub fn document<T: Tree + ?Sized>(&mut self, root: &T) {
        match root.view() {
            View::Map(it) => self.root_mapping(it),
            View::Seq(it) => {
                let mut it = it.peekable();
                if it.peek().is_some() {
                    self.seq(it, 0, true);
                } else {
                    self.out.push_str("[]\n");
                }
            }
            other => {
                let indent = self.best;
                self.scalar(other, indent);
            }
        }
    }

    /// Write a document that is a mapping given by its entries (`{}` when there are none).
    pub fn root_mapping<'a, T, I>(&mut self, entries: I)
    where
        T: Tree + ?Sized + 'a,
        I: Iterator<Item = MapItem<'a, T>>,
    {
        let mut it = entries.peekable();
        if it.peek().is_some() {
            self.map(it, 0, true);
        } else {
            self.out.push_str("{}\n");
        }
    }

    fn next_indent(&self, cur: usize) -> usize {
        self.best * ((cur + self.best) / self.best)
    }

    /// Keys at column `indent`; with `inline_first` the cursor already stands there.
    fn map<'a, T, I>(&mut self, items: Peekable<I>, indent: usize, inline_first: bool)
    where
        T: Tree + ?Sized + 'a,
        I: Iterator<Item = MapItem<'a, T>>,
    {
        let mut first = inline_first;
        for item in items {
            if first {
                first = false;
            } else {
                pad(&mut self.out, indent);
            }
            match item {
                MapItem::Comment(c) => {
                    self.out.push('#');
                    self.out.push_str(c);
                    self.out.push('\n');
                }
                MapItem::Entry(Key::Str(k), v) if !is_simple_key(k) => {
                    self.explicit_entry(k, v, indent);
                }
                MapItem::Entry(k, v) => {
                    match k {
                        Key::Str(k) => {
                            let style = string_style(k, true, self.quoting);
                            write_string(&mut self.out, k, style, 0, self.best);
                        }
                        Key::Raw(k) => self.out.push_str(&k),
                    }
                    self.out.push(':');
                    self.value_after_key(v, indent);
                }
            }
        }
    }

    /// An entry whose key cannot be a simple key: `? key` on its own, then `: value` (go-yaml
    /// v3 `emitterc.go`, `yaml_emitter_emit_block_mapping_key` and `_value` when
    /// `yaml_emitter_check_simple_key` says no). The key is written as a value would be
    /// (a multi-line one as a literal block); a collection value starts on the `:` line,
    /// padded to its indentation.
    fn explicit_entry<T: Tree + ?Sized>(&mut self, k: &str, v: &T, indent: usize) {
        let ni = self.next_indent(indent);
        self.out.push_str("? ");
        self.scalar(View::<T>::Str(k), ni);
        pad(&mut self.out, indent);
        self.out.push(':');
        match v.view() {
            View::Map(it) => {
                let mut it = it.peekable();
                if it.peek().is_some() {
                    pad(&mut self.out, ni - indent - 1);
                    self.map(it, ni, true);
                } else {
                    self.out.push_str(" {}\n");
                }
            }
            View::Seq(it) => {
                let mut it = it.peekable();
                if it.peek().is_some() {
                    pad(&mut self.out, ni - indent - 1);
                    self.seq(it, ni, true);
                } else {
                    self.out.push_str(" []\n");
                }
            }
            other => {
                self.out.push(' ');
                self.scalar(other, ni);
            }
        }
    }

    fn value_after_key<T: Tree + ?Sized>(&mut self, v: &T, indent: usize) {
        let ni = self.next_indent(indent);
        match v.view() {
            View::Map(it) => {
                let mut it = it.peekable();
                if it.peek().is_some() {
                    self.out.push('\n');
                    pad(&mut self.out, ni);
                    self.map(it, ni, true);
                } else {
                    self.out.push_str(" {}\n");
                }
            }
            View::Seq(it) => {
                let mut it = it.peekable();
                if it.peek().is_some() {
                    self.out.push('\n');
                    pad(&mut self.out, ni);
                    self.seq(it, ni, true);
                } else {
                    self.out.push_str(" []\n");
                }
            }
            other => {
                self.out.push(' ');
                self.scalar(other, ni);
            }
        }
    }

    /// Dashes at column `indent`.
    fn seq<'a, T, I>(&mut self, items: Peekable<I>, indent: usize, inline_first: bool)
    where
        T: Tree + ?Sized + 'a,
        I: Iterator<Item = SeqItem<'a, T>>,
    {
        let mut first = inline_first;
        for item in items {
            if first {
                first = false;
            } else {
                pad(&mut self.out, indent);
            }
            let v = match item {
                SeqItem::Comment(c) => {
                    self.out.push('#');
                    self.out.push_str(c);
                    self.out.push('\n');
                    continue;
                }
                SeqItem::Raw(r) => {
                    self.out.push_str("- ");
                    self.out.push_str(r);
                    self.out.push('\n');
                    continue;
                }
                SeqItem::Node(v) => v,
            };
            match v.view() {
                View::Map(it) => {
                    let mut it = it.peekable();
                    match it.peek() {
                        None => self.out.push_str("- {}\n"),
                        Some(MapItem::Comment(_)) => {
                            // Keep leading comments inside the mapping: start it on the next line.
                            self.out.push_str("-\n");
                            pad(&mut self.out, indent + 2);
                            self.map(it, indent + 2, true);
                        }
                        Some(_) => {
                            self.out.push_str("- ");
                            self.map(it, indent + 2, true);
                        }
                    }
                }
                View::Seq(it) => {
                    let mut it = it.peekable();
                    if it.peek().is_some() {
                        self.out.push_str("- ");
                        self.seq(it, indent + 2, true);
                    } else {
                        self.out.push_str("- []\n");
                    }
                }
                other => {
                    self.out.push_str("- ");
                    // A literal block's indentation indicator counts from the dash's column.
                    self.scalar_with(other, indent + 2, 2);
                }
            }
        }
    }

    /// A scalar (or empty collection) and its newline; literal lines go to `block_indent`.
    fn scalar<T: Tree + ?Sized>(&mut self, v: View<'_, T>, block_indent: usize) {
        self.scalar_with(v, block_indent, self.best);
    }

    /// A scalar; a literal block's lines go to `block_indent`, which is `indicator` columns
    /// right of the indentation of the node that holds it.
    fn scalar_with<T: Tree + ?Sized>(
        &mut self,
        v: View<'_, T>,
        block_indent: usize,
        indicator: usize,
    ) {
        match v {
            View::Map(_) => self.out.push_str("{}"),
            View::Seq(_) => self.out.push_str("[]"),
            View::Raw(r) => self.out.push_str(&r),
            View::Str(s) => {
                let style = string_style(s, false, self.quoting);
                write_string(&mut self.out, s, style, block_indent, indicator);
            }
        }
        self.out.push('\n');
    }
}

/// Whether a string key can be written as a simple key: one line and at most 128 bytes
/// (go-yaml v3 `emitterc.go`, `yaml_emitter_check_simple_key`; its `multiline` is any line
/// break `yaml_emitter_analyze_scalar` sees).
fn is_simple_key(k: &str) -> bool {
    k.len() <= 128 && !k.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
}

/// A small owned tree, for callers without their own.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Entries in output order.
    Map(Vec<(String, Node)>),
    /// Items.
    Seq(Vec<Node>),
    /// A string.
    Str(String),
    /// Written as is (an integer, `true`, `null`, ...).
    Raw(String),
}

impl Tree for Node {
    type Entries<'a> = std::iter::Map<
        std::slice::Iter<'a, (String, Node)>,
        fn(&'a (String, Node)) -> MapItem<'a, Node>,
    >;
    type Items<'a> = std::iter::Map<std::slice::Iter<'a, Node>, fn(&'a Node) -> SeqItem<'a, Node>>;

    fn view(&self) -> View<'_, Self> {
        match self {
            Node::Map(m) => View::Map(
                m.iter()
                    .map(node_entry as fn(&(String, Node)) -> MapItem<'_, Node>),
            ),
            Node::Seq(s) => View::Seq(s.iter().map(node_item as fn(&Node) -> SeqItem<'_, Node>)),
            Node::Str(s) => View::Str(s),
            Node::Raw(r) => View::Raw(Cow::Borrowed(r)),
        }
    }
}

fn node_entry((k, v): &(String, Node)) -> MapItem<'_, Node> {
    MapItem::Entry(Key::Str(k), v)
}

fn node_item(n: &Node) -> SeqItem<'_, Node> {
    SeqItem::Node(n)
}

/// Emit one document with `options`.
pub fn to_string<T: Tree + ?Sized>(root: &T, options: Options) -> String {
    let mut e = Emitter::new(options, 256);
    e.document(root);
    e.finish()
}
