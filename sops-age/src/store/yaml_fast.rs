//! A fast path for the YAML shape sops files mostly have: block mappings of plain keys and
//! single-line plain values, nothing else. It builds the same tree the general parser
//! ([`super::yaml::parse`], saphyr events) builds, without its per-character scanner, and
//! gives up (`None`) on anything outside that subset so the general parser handles it,
//! errors included. The `sops:` metadata block (sequences, literal blocks) is parsed by the
//! general parser on its own and appended.
//!
//! Equivalence with the general parser is checked by unit tests here and by the `yaml` fuzz
//! target (`crate::fuzz::plain_round_trip` compares both on every input the fast path takes).

use std::borrow::Cow;
use std::collections::HashSet;

use crate::value::{Item, Map, Value};

/// A mapping being filled, and the column of its keys.
struct Open<'a> {
    indent: usize,
    map: Map,
    keys: HashSet<&'a str>,
    /// The key whose value is a nested mapping still being read.
    pending: Option<String>,
}

/// Parse `text` (BOM already removed) when it is entirely in the fast subset.
pub(crate) fn parse(text: &str) -> Option<Vec<Map>> {
    let bytes = text.as_bytes();
    // Comments, tabs and carriage returns need the general parser's position bookkeeping;
    // non-ASCII text its char-based columns; other control characters its errors.
    // (one branch-free pass the compiler vectorizes)
    let odd = bytes.iter().fold(0u8, |acc, &b| {
        // non-ASCII, `#`, and control characters other than the line feed (tab, CR, ...)
        acc | (b & 0x80)
            | u8::from(b == b'#')
            | u8::from(b < 0x20 && b != b'\n')
            | u8::from(b == 0x7f)
    });
    if odd != 0 {
        return None;
    }
    let (body, sops) = match find_top_level(text, "sops:") {
        Some(at) => (&text[..at], Some(&text[at..])),
        None => (text, None),
    };
    let mut doc = parse_body(body)?;
    if let Some(tail) = sops {
        let mut tail_docs = super::yaml::parse_general(tail.as_bytes()).ok()?;
        if tail_docs.len() != 1 {
            return None;
        }
        let tail = tail_docs.pop()?;
        let mut keys: HashSet<&str> = HashSet::with_capacity(doc.items.len());
        for item in &doc.items {
            if let Item::Entry(k, _) = item {
                keys.insert(k);
            }
        }
        if tail
            .items
            .iter()
            .any(|i| matches!(i, Item::Entry(k, _) if keys.contains(k.as_str())))
        {
            return None; // a duplicate key: let the general parser report it
        }
        doc.items.extend(tail.items);
    }
    Some(vec![doc])
}

/// Byte offset of a line that is exactly `line` at column 0 (not the first line).
fn find_top_level(text: &str, line: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(line) {
        let at = from + i;
        let end = at + line.len();
        if at > 0
            && text.as_bytes()[at - 1] == b'\n'
            && matches!(text.as_bytes().get(end), None | Some(b'\n'))
        {
            return Some(at);
        }
        from = end;
    }
    None
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')
}

/// A plain scalar the general scanner reads as exactly this text, ending at the line end:
/// no indicator first, no `: `, nothing special at the end. `v` is printable ASCII.
fn is_simple_value(v: &[u8]) -> bool {
    let Some((&first, rest)) = v.split_first() else {
        return false;
    };
    let first_ok = first.is_ascii_alphanumeric()
        || matches!(first, b'_' | b'.' | b'/' | b'+' | b'~' | b'$' | b'(' | b')')
        || (first == b'-'
            && rest
                .first()
                .is_some_and(|b| b.is_ascii_digit() || *b == b'.'));
    if !first_ok || matches!(v.last(), Some(b' ' | b':')) {
        return false;
    }
    // no `: ` (a nested mapping) anywhere; the bytes are printable ASCII ([`parse`] checked)
    let mut rest = v;
    while let Some(i) = rest.iter().position(|b| *b == b':') {
        if rest.get(i + 1) == Some(&b' ') {
            return false;
        }
        rest = &rest[i + 1..];
    }
    true
}

fn parse_body(body: &str) -> Option<Map> {
    let mut stack: Vec<Open<'_>> = Vec::new();
    for line in body.split('\n') {
        if line.is_empty() {
            continue;
        }
        let lb = line.as_bytes();
        let indent = lb.iter().take_while(|b| **b == b' ').count();
        let key_len = lb[indent..].iter().take_while(|b| is_key_byte(**b)).count();
        if key_len == 0 {
            return None;
        }
        let key_bytes = &lb[indent..indent + key_len];
        let first = key_bytes[0];
        if !(first.is_ascii_alphanumeric() || first == b'_') {
            return None;
        }
        let after = &lb[indent + key_len..];
        let value: Option<&str> = match after {
            [b':'] => None,
            [b':', b' ', rest @ ..] => {
                let start = rest.iter().take_while(|b| **b == b' ').count();
                let v = &rest[start..];
                if !is_simple_value(v) {
                    return None;
                }
                // (ASCII checked above: any byte offset is a char boundary)
                let at = line.len() - v.len();
                Some(&line[at..])
            }
            _ => return None,
        };
        let key = &line[indent..indent + key_len];
        // yaml.v3 resolves some plain keys to non-strings: the general parser refuses them.
        if super::yaml::plain_key_is_typed(key) {
            return None;
        }
        // Find or open the mapping this line belongs to.
        match stack.last() {
            None => {
                if indent != 0 {
                    return None;
                }
                stack.push(Open {
                    indent,
                    map: Map::new(),
                    keys: HashSet::new(),
                    pending: None,
                });
            }
            Some(top) if indent > top.indent => {
                // only right after `key:` (a nested mapping starts)
                top.pending.as_ref()?;
                stack.push(Open {
                    indent,
                    map: Map::new(),
                    keys: HashSet::new(),
                    pending: None,
                });
            }
            Some(_) => {
                close_until(&mut stack, indent)?;
            }
        }
        let top = stack.last_mut()?;
        if top.pending.is_some() {
            // `key:` followed by a sibling: its value is null
            let k = top.pending.take()?;
            top.map.items.push(Item::Entry(k, Value::Null));
        }
        if !top.keys.insert(key) {
            return None;
        }
        match value {
            Some(v) => {
                let val = super::yaml::plain_scalar_value(Cow::Borrowed(v));
                top.map.items.push(Item::Entry(key.to_owned(), val));
            }
            None => top.pending = Some(key.to_owned()),
        }
    }
    close_until(&mut stack, 0)?;
    let mut root = stack.pop()?;
    if !stack.is_empty() {
        return None;
    }
    if let Some(k) = root.pending.take() {
        root.map.items.push(Item::Entry(k, Value::Null));
    }
    Some(root.map)
}

/// Close the mappings deeper than `indent`, which must be the column of an open one.
fn close_until(stack: &mut Vec<Open<'_>>, indent: usize) -> Option<()> {
    while stack.last()?.indent > indent {
        let mut done = stack.pop()?;
        if let Some(k) = done.pending.take() {
            done.map.items.push(Item::Entry(k, Value::Null));
        }
        let parent = stack.last_mut()?;
        let k = parent.pending.take()?;
        parent.map.items.push(Item::Entry(k, Value::Map(done.map)));
    }
    (stack.last()?.indent == indent).then_some(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The fast path takes `src` and gives what the general parser gives.
    fn same(src: &str) {
        let fast = parse(src).unwrap_or_else(|| panic!("fast path refused {src:?}"));
        let general = super::super::yaml::parse_general(src.as_bytes()).unwrap();
        assert_eq!(fast, general, "{src:?}");
    }

    fn refused(src: &str) {
        assert!(parse(src).is_none(), "fast path took {src:?}");
    }

    #[test]
    fn simple_mappings_match_the_general_parser() {
        same("a: 1\nb: x\n");
        same("a: 1.5\nb: true\nc: null\nd: ~\ne: 2024-01-02\nf: 0x1F\ng: -3\nh: .5\n");
        same("top:\n  k1: v\n  k2: ENC[AES256_GCM,data:abc=,iv:x/y+,tag:z==,type:str]\nnext: 1\n");
        same("a:\n    b:\n        c: 1\n    d:\nz:\n");
        same("a:\n\n  b: 1\n\nc: 2");
        same("a: b c  d\nx: a:b\ny: v-1_2\n");
        same("a:\n  b:\n    c: 1\n  d: 2\ne:\n  f: 3\n");
    }

    #[test]
    fn the_sops_block_is_parsed_by_the_general_parser() {
        let src = "a:\n  b: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\nsops:\n  age:\n    - recipient: age1xyz\n      enc: |\n        -----BEGIN AGE ENCRYPTED FILE-----\n        abc\n        -----END AGE ENCRYPTED FILE-----\n  lastmodified: \"2024-01-01T00:00:00Z\"\n  version: 3.11.0\n";
        same(src);
        // a duplicate of a body key in the tail is the general parser's error to report
        refused("sops: 1\nx:\n  y: 1\nsops:\n  a: 1\n");
    }

    #[test]
    fn anything_else_goes_to_the_general_parser() {
        for src in [
            "",
            "# c\na: 1\n",
            "a: 1 # c\n",
            "a: 'q'\n",
            "a: \"q\"\n",
            "a: [1]\n",
            "a: {b: 1}\n",
            "a: &x 1\n",
            "a: *x\n",
            "a: !!str 1\n",
            "a: |\n  x\n",
            "a:\n- 1\n",
            "a:\n  - 1\n",
            "a: b\n  c\n",
            "a: b: c\n",
            "a: b:\n",
            "a: b \n",
            "1: x\n",
            "true: x\n",
            "a: 1\na: 2\n",
            " a: 1\n",
            "a:\n    b: 1\n  c: 2\n",
            "a: 1\n  b: 2\n",
            "---\na: 1\n",
            "a: 1\n---\nb: 2\n",
            "a:\tb\n",
            "a: b\r\n",
            "a: b\u{1}c\n",
            "a: b\u{7f}\n",
            "a: é\n",
            "? a\n: b\n",
            "a b: c\n",
            "a: -\n",
            "a: - x\n",
            "<<: x\n",
        ] {
            refused(src);
        }
    }
}
