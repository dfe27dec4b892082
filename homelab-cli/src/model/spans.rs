//! Where each value of a YAML document sits in its source text, so that errors found after
//! deserialisation (bad IP, VMID clash, missing secret) can still point at a line and column.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Byte offset of the first character.
    pub offset: usize,
    /// Length in bytes (at least 1 so that a caret is drawn).
    pub len: usize,
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.offset, s.len).into()
    }
}

/// Maps a dotted path (`talos.nodes[0].memory`) to the span of its value, and
/// `path#key` to the span of the mapping key itself.
#[derive(Debug, Default, Clone)]
pub struct SpanMap {
    spans: HashMap<String, Span>,
}

impl SpanMap {
    /// Index a YAML document. A document that does not parse yields an empty map (the
    /// deserialiser reports the syntax error with its own location).
    pub fn parse(source: &str) -> Self {
        let mut builder = Builder {
            source,
            char_to_byte: char_offsets(source),
            stack: Vec::new(),
            spans: HashMap::new(),
        };
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut builder, false).is_err() {
            return SpanMap::default();
        }
        SpanMap {
            spans: builder.spans,
        }
    }

    /// The span of the value at `path`, or of its closest ancestor that has one.
    pub fn value(&self, path: &str) -> Option<Span> {
        let mut p = path;
        loop {
            if let Some(s) = self.spans.get(p) {
                return Some(*s);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// The path of the value (or, with `true`, the mapping key) written at `offset`: the
    /// deepest one starting there, else the closest one starting before it.
    pub fn path_at(&self, offset: usize) -> Option<(&str, bool)> {
        let (path, _) = self
            .spans
            .iter()
            .filter(|(_, s)| s.offset <= offset)
            .max_by(|(pa, a), (pb, b)| {
                a.offset
                    .cmp(&b.offset)
                    .then(pa.len().cmp(&pb.len()))
                    .then(pb.cmp(pa))
            })?;
        Some(match path.strip_suffix("#key") {
            Some(p) => (p, true),
            None => (path.as_str(), false),
        })
    }

    /// The span of the key naming `path` (falls back to the value).
    pub fn key(&self, path: &str) -> Option<Span> {
        self.spans
            .get(&format!("{path}#key"))
            .copied()
            .or_else(|| self.value(path))
    }
}

/// Byte offset of every char index (plus one past the end).
fn char_offsets(source: &str) -> Vec<usize> {
    let mut v: Vec<usize> = source.char_indices().map(|(i, _)| i).collect();
    v.push(source.len());
    v
}

enum Frame {
    Map {
        path: String,
        /// The key just read, waiting for its value.
        key: Option<String>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

struct Builder<'a> {
    source: &'a str,
    char_to_byte: Vec<usize>,
    stack: Vec<Frame>,
    spans: HashMap<String, Span>,
}

impl Builder<'_> {
    fn byte(&self, mark: Marker) -> usize {
        self.char_to_byte
            .get(mark.index())
            .copied()
            .unwrap_or(self.source.len())
    }

    /// The path of the value that starts now, advancing the parent's position.
    /// `None` when the event is a mapping key.
    fn next_value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let start = self.byte(mark);
        match ev {
            Event::Scalar(text, ..) => match self.next_value_path() {
                Some(path) => {
                    let len = scalar_len(&self.source[start..]);
                    self.spans.insert(path, Span { offset: start, len });
                }
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let key_path = join(path, &text);
                        self.spans.insert(
                            format!("{key_path}#key"),
                            Span {
                                offset: start,
                                len: text.len().max(1),
                            },
                        );
                        *key = Some(text);
                    }
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.spans.insert(
                    path.clone(),
                    Span {
                        offset: start,
                        len: 1,
                    },
                );
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                if let Some(path) = self.next_value_path() {
                    self.spans.insert(
                        path,
                        Span {
                            offset: start,
                            len: 1,
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

/// Length of a scalar as written: up to the end of the line, minus a trailing comment.
fn scalar_len(rest: &str) -> usize {
    let line = rest.split(['\n', '\r']).next().unwrap_or("");
    let line = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let line = line.trim_end();
    // Inside a flow collection stop at the separator.
    let cut = if line.starts_with(['"', '\'']) {
        line.len()
    } else {
        line.find([',', ']', '}']).unwrap_or(line.len())
    };
    line[..cut].trim_end().len().max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_point_at_values_and_keys() {
        let src = "name: lab\ntalos:\n  nodes:\n    - name: cp-1\n      memory: 16GiB # ram\n  extensions: [a, b]\n";
        let m = SpanMap::parse(src);
        let s = m.value("talos.nodes[0].memory").unwrap();
        assert_eq!(&src[s.offset..s.offset + s.len], "16GiB");
        let k = m.key("talos.nodes[0].name").unwrap();
        assert_eq!(&src[k.offset..k.offset + k.len], "name");
        let e = m.value("talos.extensions[1]").unwrap();
        assert_eq!(&src[e.offset..e.offset + e.len], "b");
        // Unknown child falls back to the parent.
        let p = m.value("talos.nodes[0].cores").unwrap();
        assert_eq!(p, m.value("talos.nodes[0]").unwrap());
    }

    #[test]
    fn offsets_map_back_to_paths() {
        let src = "name: lab\ntalos:\n  nodes:\n    - name: cp-1\n      memory: 16GiB\n";
        let m = SpanMap::parse(src);
        let at = |needle: &str| m.path_at(src.find(needle).unwrap());
        assert_eq!(at("16GiB"), Some(("talos.nodes[0].memory", false)));
        assert_eq!(at("memory"), Some(("talos.nodes[0].memory", true)));
        // The item mapping and its first key start at the same place: the key wins.
        assert_eq!(at("name: cp-1"), Some(("talos.nodes[0].name", true)));
        assert_eq!(m.path_at(src.find("GiB").unwrap()), at("16GiB"));
        assert_eq!(at("lab"), Some(("name", false)));
    }

    #[test]
    fn multibyte_text_keeps_byte_offsets() {
        let src = "name: \"lä\"\nproxmox:\n  node: pvé\n";
        let m = SpanMap::parse(src);
        let s = m.value("proxmox.node").unwrap();
        assert_eq!(&src[s.offset..s.offset + s.len], "pvé");
    }
}
