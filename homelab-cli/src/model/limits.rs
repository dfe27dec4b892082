//! Hostile-input limits for the YAML files the CLI reads (homelab.yaml, environment
//! overlays, Talos patch files), checked before any YAML parser sees the text.
//!
//! libyaml (under `serde_yaml_ng`) re-scans its pending simple keys at every token, so
//! deeply nested flow collections (`[[[[...`) take quadratic time: 100k `[` kept a run busy
//! for minutes. [`check`] walks the text once, counting how deeply flow collections (`[`,
//! `{`) and same-line block entries (`- - -`) nest, and refuses a file past [`MAX_DEPTH`] at
//! the line and column where the limit is crossed; [`read`] refuses a file past
//! [`MAX_BYTES`] before reading it whole, and text that is not UTF-8 at the line and column
//! of its first bad byte. The scan is conservative: it understands quotes, comments and
//! block scalars well enough never to count a bracket inside them, and a well-formed
//! configuration is never near either limit.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::ConfigError;
use super::spans::Span;

/// The largest YAML file the CLI reads (a homelab.yaml is a few KiB).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// The deepest nesting accepted (a homelab.yaml nests fewer than 10 levels).
pub const MAX_DEPTH: usize = 64;

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file system said no.
    Io(std::io::Error),
    /// The content is refused (too large, not UTF-8), with its location.
    Refused(Box<ConfigError>),
}

/// Read a YAML file: at most [`MAX_BYTES`], UTF-8, within [`MAX_DEPTH`].
pub fn read(path: &Path) -> Result<String, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() > MAX_BYTES {
        return Err(ReadError::Refused(Box::new(
            ConfigError::new(
                path,
                Arc::new(String::new()),
                None,
                format!(
                    "{} is larger than {} MiB: not a configuration file",
                    path.display(),
                    MAX_BYTES / (1024 * 1024)
                ),
                "",
            )
            .with_help("check that -c/--config names the right file"),
        )));
    }
    let text = decode(path, bytes).map_err(ReadError::Refused)?;
    check(path, &text).map_err(ReadError::Refused)?;
    Ok(text)
}

/// `bytes` as text, or an error at the line and column of the first byte that is not UTF-8.
pub fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, Box<ConfigError>> {
    match String::from_utf8(bytes) {
        Ok(t) => Ok(t),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let bad = bytes.get(at).copied().unwrap_or_default();
            let good = String::from_utf8_lossy(&bytes[..at]);
            let line = good.matches('\n').count() + 1;
            let column = good
                .rfind('\n')
                .map_or(good.chars().count(), |i| good[i + 1..].chars().count())
                + 1;
            // Show the text up to the bad byte, then the rest with replacement characters,
            // so the caret lands on it.
            let shown = String::from_utf8_lossy(&bytes).into_owned();
            let (source, span) = excerpt(&shown, good.len());
            Err(Box::new(ConfigError::new(
                path,
                source,
                span,
                format!(
                    "{}:{line}:{column}: byte 0x{bad:02x} is not UTF-8: this is not a YAML text file",
                    path.display()
                ),
                "here",
            )
            .with_help("homelab.yaml is UTF-8 text; check that -c/--config names the right file")))
        }
    }
}

/// The text to show with a caret at `offset`, unless its line is too long to print (then
/// the message's line and column say where).
fn excerpt(text: &str, offset: usize) -> (Arc<String>, Option<Span>) {
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    if end - start > 400 || text.len() > MAX_BYTES {
        (Arc::new(String::new()), None)
    } else {
        (Arc::new(text.to_string()), Some(Span { offset, len: 1 }))
    }
}

/// Refuse text nested deeper than [`MAX_DEPTH`] (linear time, one pass).
pub fn check(path: &Path, text: &str) -> Result<(), Box<ConfigError>> {
    match deepest(text, MAX_DEPTH) {
        None => Ok(()),
        Some(offset) => {
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rfind('\n')
                .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
                + 1;
            let (source, span) = excerpt(text, offset);
            Err(Box::new(
                ConfigError::new(
                    path,
                    source,
                    span,
                    format!(
                        "{}:{line}:{column}: nested more than {MAX_DEPTH} levels deep",
                        path.display()
                    ),
                    "too deep",
                )
                .with_help("a configuration nests a few levels; check for unclosed `[` or `{`"),
            ))
        }
    }
}

/// The byte offset where nesting first exceeds `limit`, if it does.
fn deepest(text: &str, limit: usize) -> Option<usize> {
    let b = text.as_bytes();
    let n = b.len();
    let blank = |i: usize| i >= n || matches!(b[i], b' ' | b'\t' | b'\r' | b'\n');
    let mut i = 0;
    // Open flow collections.
    let mut flow = 0usize;
    // Block entries (`- `, `? `) opened on the current line.
    let mut entries = 0usize;
    // In block context: whether a value may start here (line start, after `- `, `: `).
    let mut value_start = true;
    let mut line_indent = 0usize;
    let mut at_line_start = true;
    // Inside a block scalar (`|`, `>`) whose parent line has this indentation.
    let mut block_scalar: Option<usize> = None;
    while i < n {
        if at_line_start {
            let start = i;
            while i < n && b[i] == b' ' {
                i += 1;
            }
            line_indent = i - start;
            at_line_start = false;
            entries = 0;
            if let Some(parent) = block_scalar {
                let empty = i >= n || b[i] == b'\n' || b[i] == b'\r';
                if empty || line_indent > parent {
                    // Content: skip the line.
                    while i < n && b[i] != b'\n' {
                        i += 1;
                    }
                    if i < n {
                        i += 1;
                        at_line_start = true;
                    }
                    continue;
                }
                block_scalar = None;
            }
            if flow == 0 {
                value_start = true;
            }
            continue;
        }
        let c = b[i];
        if c == b'\n' {
            i += 1;
            at_line_start = true;
            continue;
        }
        // A comment: `#` at a line start or after white space.
        if c == b'#' && (i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n')) {
            while i < n && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if flow > 0 {
            match c {
                b'[' | b'{' => {
                    flow += 1;
                    if flow + entries > limit {
                        return Some(i);
                    }
                }
                b']' | b'}' => {
                    flow -= 1;
                    if flow == 0 {
                        value_start = false;
                    }
                }
                b'"' | b'\'' => i = skip_quoted(b, i),
                _ => {}
            }
            i += 1;
            continue;
        }
        if value_start {
            match c {
                b' ' | b'\t' | b'\r' => {}
                b'-' | b'?' if blank(i + 1) => {
                    entries += 1;
                    if flow + entries > limit {
                        return Some(i);
                    }
                }
                b'[' | b'{' => {
                    flow = 1;
                    if flow + entries > limit {
                        return Some(i);
                    }
                }
                b'"' | b'\'' => {
                    i = skip_quoted(b, i);
                    value_start = false;
                }
                b'|' | b'>' => {
                    block_scalar = Some(line_indent);
                    while i < n && b[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                // Anchors, aliases and tags come before the value.
                b'&' | b'*' | b'!' => {
                    while i < n && !blank(i) {
                        i += 1;
                    }
                    continue;
                }
                _ => value_start = false,
            }
            i += 1;
            continue;
        }
        if c == b':' && blank(i + 1) {
            value_start = true;
        }
        i += 1;
    }
    None
}

/// The index of the quote closing the string that opens at `i` (or the end of the text).
fn skip_quoted(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        if q == b'"' && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            // `''` inside a single-quoted string is an escaped quote.
            if q == b'\'' && j + 1 < b.len() && b[j + 1] == b'\'' {
                j += 2;
                continue;
            }
            return j;
        }
        j += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn depth_error(text: &str) -> Option<usize> {
        deepest(text, 8)
    }

    #[test]
    fn ordinary_documents_pass() {
        let yaml = "a:\n  b: [1, [2, {c: [3]}]]\n  d:\n    - - x\n      - y\n  e: |\n    [[[[[[[[[[[[\n  f: \"[[[[[[[[[[[\"\n  g: '[[[[[[[[['' [[[[' # [[[[[[[[[[[\n  h: a[[[[[[[[[[[b\n";
        assert_eq!(depth_error(yaml), None);
        // The examples are far from the limit.
        for e in ["single-node", "multi-node", "services", "vm-fleet"] {
            let path = format!(
                "{}/../examples/{e}/homelab.yaml",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(deepest(&text, 8), None, "{path}");
        }
    }

    #[test]
    fn deep_flow_nesting_is_found_where_it_crosses_the_limit() {
        let yaml = format!("a: 1\nb: {}", "[".repeat(100));
        assert_eq!(depth_error(&yaml), Some(5 + 3 + 8));
        let yaml = format!("b: {}", "{a: ".repeat(20));
        assert!(depth_error(&yaml).is_some());
    }

    #[test]
    fn deep_block_entries_on_one_line_are_found() {
        let yaml = format!("a:\n  {}x\n", "- ".repeat(20));
        assert_eq!(depth_error(&yaml), Some(5 + 2 * 8));
    }

    #[test]
    fn a_block_scalar_ends_at_its_parent_indentation() {
        let yaml = format!("a: |\n  [[[[[[[[[[[[[\nb: {}", "[".repeat(20));
        assert!(depth_error(&yaml).is_some());
    }

    #[test]
    fn not_utf8_is_located() {
        let e = decode(Path::new("h.yaml"), b"name: a\nx: ab\xff\n".to_vec()).unwrap_err();
        assert!(e.to_string().contains("h.yaml:2:6: byte 0xff"), "{e}");
    }

    #[test]
    fn the_scan_is_linear() {
        // A million `[` are scanned in one pass (a quadratic scan would not finish).
        let yaml = format!("a: {}", "[".repeat(1_000_000));
        assert_eq!(deepest(&yaml, usize::MAX), None);
        assert!(deepest(&yaml, 64).is_some());
    }
}
