//! Errors from reading the YAML itself (before any value is checked), told in kubeha's
//! words: the field path, the place in the file, and what is allowed there. The YAML
//! library's own phrasing (Rust types, its option names, its API) never reaches the user.

use serde_saphyr::{
    Error as YamlError,
    budget::BudgetBreach,
    granit_parser::{Event, Parser},
};

use crate::grammar::shown;

/// The largest cluster file kubeha reads: a real one is a few kilobytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// A YAML-level problem: where it is and what to say.
pub(crate) struct SyntaxProblem {
    pub line: u64,
    pub column: u64,
    pub offset: Option<usize>,
    pub message: String,
}

/// Translates a parse error of the cluster file `src`.
pub(crate) fn translate(e: &YamlError, src: &str) -> SyntaxProblem {
    let loc = e.location();
    let (line, column) = loc.map_or((0, 0), |l| (l.line(), l.column()));
    let offset = loc
        .and_then(|l| l.span().byte_offset().map(|o| o as usize))
        .or_else(|| crate::resolve::offset_of(src, line, column));
    let field = field_at(src, line, column);
    let message = describe(e, field.as_deref(), src);
    SyntaxProblem {
        line,
        column,
        offset,
        message,
    }
}

/// The innermost error (snippet and alias wrappers removed).
fn innermost(e: &YamlError) -> &YamlError {
    match e {
        YamlError::WithSnippet { error, .. } => innermost(error),
        YamlError::AliasError { error, .. } => innermost(error),
        other => other,
    }
}

/// `type` as a user of the cluster file would say it.
fn in_words(expected: &str) -> String {
    let e = expected.trim();
    if e.starts_with("struct ") || e == "a map" || e == "map" {
        "a mapping of fields (key: value lines)".into()
    } else if e.starts_with("a sequence") || e == "sequence" || e.starts_with("a vec") {
        "a list".into()
    } else if e.contains("string") || e.contains("str") {
        "a single value".into()
    } else if let Some(range) = int_range(e) {
        range
    } else if e.contains("bool") {
        "true or false".into()
    } else {
        "a different kind of value".into()
    }
}

/// "a whole number from 0 to 65535" for integer type names.
fn int_range(ty: &str) -> Option<String> {
    let ty = ty.trim_start_matches("a ").trim_start_matches("an ");
    let (lo, hi): (i128, i128) = match ty {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    };
    Some(format!("a whole number from {lo} to {hi}"))
}

/// Serde's "found" half (`map`, `sequence`, `string "x"`), short.
fn found_words(unexpected: &str) -> String {
    let u = unexpected.trim();
    if u.starts_with("map") {
        "a mapping".into()
    } else if u.starts_with("seq") {
        "a list".into()
    } else if let Some(rest) = u.split_once(' ').map(|(_, r)| r) {
        shown(rest)
    } else {
        shown(u)
    }
}

fn at(field: Option<&str>) -> String {
    field.map_or_else(String::new, |f| format!("{f}: "))
}

fn budget_words(b: &BudgetBreach) -> String {
    match b {
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => {
            "the file holds far more values than a cluster file can (over 250000)".into()
        }
        BudgetBreach::Depth { .. } => "the file is nested far deeper than a cluster file".into(),
        BudgetBreach::Aliases { .. } | BudgetBreach::Anchors { .. } => {
            "the file uses far more YAML anchors or aliases than a cluster file".into()
        }
        BudgetBreach::ScalarBytes { .. } => {
            "the values in the file are far larger than a cluster file's".into()
        }
        BudgetBreach::Documents { .. } => "the file holds many YAML documents".into(),
        _ => "the file is far larger or more complex than a cluster file".into(),
    }
}

fn describe(e: &YamlError, field: Option<&str>, src: &str) -> String {
    let f = at(field);
    let whole = field.unwrap_or("this value");
    match innermost(e) {
        YamlError::SerdeUnknownField {
            field: name,
            expected,
            ..
        } => {
            let parent = field
                .and_then(|p| p.rsplit_once('.').map(|(a, _)| a.to_string()))
                .map_or_else(|| "the top level".to_string(), |p| format!("'{p}'"));
            let close = expected
                .iter()
                .find(|x| x.eq_ignore_ascii_case(name))
                .map(|x| format!("; did you mean '{x}'?"))
                .unwrap_or_default();
            format!(
                "unknown field '{}' in {parent}{close} (fields allowed there: {})",
                shown(name),
                expected.join(", ")
            )
        }
        YamlError::SerdeMissingField { field: name, .. } => match field {
            Some(p) => format!("{p} lacks the required field '{name}'"),
            None => format!("the required top-level field '{name}' is missing"),
        },
        YamlError::DuplicateMappingKey { key, .. } => match (field, key) {
            (Some(p), _) => format!(
                "{p} is given twice in the same mapping; keep one (YAML does not say which would count)"
            ),
            (None, Some(k)) => format!(
                "'{}' is given twice in the same mapping; keep one (YAML does not say which would count)",
                shown(k)
            ),
            (None, None) => "a key is given twice in the same mapping; keep one".into(),
        },
        YamlError::MultipleDocuments { .. } => {
            "the file holds more than one YAML document ('---' starts another); a cluster file is one document: remove the extra '---' and what follows, or split it into separate files".into()
        }
        YamlError::NullIntoString { .. } | YamlError::InvalidCharNull { .. } => {
            format!("{whole} is empty; give it a value (or remove the line)")
        }
        YamlError::InvalidScalar { ty, .. } => {
            format!("{f}expected {}", in_words(ty))
        }
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | YamlError::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => format!(
            "{f}expected {}, found {}",
            in_words(expected),
            found_words(unexpected)
        ),
        YamlError::SerdeInvalidLength { len, .. } => {
            format!("{f}{len} entries is not a usable number of entries here")
        }
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "{f}unknown value '{}'; use one of {}",
            shown(variant),
            expected.join(", ")
        ),
        YamlError::Unexpected { expected, .. } => format!("{f}expected {}", in_words(expected)),
        YamlError::Eof { .. } => "the file ends in the middle of a value".into(),
        YamlError::Budget { breach, .. } => format!(
            "{}; this is not a cluster file (a real one has a few hundred lines)",
            budget_words(breach)
        ),
        YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasExpansionLimitExceeded { .. }
        | YamlError::AliasReplayStackDepthExceeded { .. }
        | YamlError::AliasReplayCounterOverflow { .. } => {
            "YAML aliases here expand to far more than a cluster file holds; write the values out"
                .into()
        }
        YamlError::UnknownAnchor { .. } => {
            format!("{f}this alias ('*name') refers to no anchor ('&name') defined before it")
        }
        YamlError::MergeValueNotMapOrSeqOfMaps { .. } | YamlError::MergeKeyNotAllowed { .. } => {
            format!("{f}a YAML merge ('<<') must name a mapping")
        }
        YamlError::InvalidBinaryBase64 { .. }
        | YamlError::BinaryNotUtf8 { .. }
        | YamlError::TaggedScalarCannotDeserializeIntoString { .. }
        | YamlError::BytesNotSupportedMissingBinaryTag { .. } => {
            format!("{f}write this value as plain text, without a YAML tag ('!!…')")
        }
        YamlError::InvalidUtf8Input => "the file is not UTF-8 text".into(),
        YamlError::IOError { .. } => "the file could not be read to its end".into(),
        YamlError::QuotingRequired { value, .. } => {
            format!("{f}put '{}' in quotes", shown(value))
        }
        YamlError::IndentationError { .. } => {
            format!("{f}the indentation here does not line up with the lines around it")
        }
        other => {
            // The YAML parser's own description of malformed YAML (an unclosed bracket, a
            // tab for indentation): plain YAML terms, first clause only, located.
            let text = other.to_string();
            let first = text.lines().next().unwrap_or("invalid YAML");
            let first = first.split(" at line ").next().unwrap_or(first);
            let first = first.split(';').next().unwrap_or(first).trim();
            let _ = src;
            format!("{f}invalid YAML: {}", shown_long(first))
        }
    }
}

/// Like [`shown`] but for a sentence, which may be longer than a value.
fn shown_long(s: &str) -> String {
    if s.chars().count() <= 160 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(160).collect();
        t.push('…');
        t
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        want_key: bool,
    },
    Seq {
        path: String,
        index: usize,
    },
}

/// The dotted field path (`nodes[2].ssh.port`) of the YAML node at or just before the
/// 1-based `line`/`column`, found by walking the parser's events up to that place.
pub(crate) fn field_at(src: &str, line: u64, column: u64) -> Option<String> {
    if line == 0 {
        return None;
    }
    let target = (line as usize, column.max(1) as usize);
    let mut stack: Vec<Frame> = Vec::new();
    let mut best: Option<String> = None;
    let mut parser = Parser::new_from_str(src);
    while let Some(Ok((event, span))) = parser.next_event() {
        let here = (span.start.line(), span.start.col() + 1);
        let is_node = matches!(
            event,
            Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
                | Event::Alias(_)
        );
        if is_node && here > target {
            break;
        }
        // Path of this node, and whether it is a mapping key.
        let (path, is_key) = match stack.last_mut() {
            None => (String::new(), false),
            Some(Frame::Seq { path, index }) => (format!("{path}[{index}]"), false),
            Some(Frame::Map {
                path,
                key,
                want_key,
            }) => {
                if *want_key {
                    let k = match &event {
                        Event::Scalar(v, ..) => v.to_string(),
                        _ => "?".into(),
                    };
                    *key = Some(k.clone());
                    (join(path, &k), true)
                } else {
                    (join(path, key.as_deref().unwrap_or("?")), false)
                }
            }
        };
        match event {
            Event::Scalar(..) | Event::Alias(_) => {
                if is_node {
                    best = Some(path);
                }
                if is_key {
                    if let Some(Frame::Map { want_key, .. }) = stack.last_mut() {
                        *want_key = false;
                    }
                } else {
                    finish(&mut stack);
                }
            }
            Event::MappingStart(..) => {
                best = Some(path.clone());
                stack.push(Frame::Map {
                    path,
                    key: None,
                    want_key: true,
                });
            }
            Event::SequenceStart(..) => {
                best = Some(path.clone());
                stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                finish(&mut stack);
            }
            _ => {}
        }
    }
    best.filter(|p| !p.is_empty())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A value node ended: the enclosing mapping now wants a key, a list its next item.
fn finish(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { want_key, .. }) => *want_key = true,
        Some(Frame::Seq { index, .. }) => *index += 1,
        None => {}
    }
}

/// How many characters of a source line an error shows around the place it points at.
const EXCERPT_WIDTH: usize = 120;

/// The part of a cluster file an error shows: the source with only the lines around the
/// problem kept, each cut to a sane width with an ellipsis, other lines emptied (so line
/// numbers stay right), and where the problem is within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    pub text: String,
    /// Byte offset of the problem in `text`.
    pub offset: usize,
    /// Length in bytes of the value to underline (at least 1, within its line).
    pub len: usize,
}

/// An [`Excerpt`] of `src` around byte `offset`: a 40 KB line prints as a line of about
/// [`EXCERPT_WIDTH`] characters, whatever the file holds.
pub fn excerpt(src: &str, offset: usize) -> Excerpt {
    let offset = offset.min(src.len());
    let offset = (0..=offset)
        .rev()
        .find(|o| src.is_char_boundary(*o))
        .unwrap_or(0);
    let line_start = src[..offset].rfind('\n').map_or(0, |p| p + 1);
    let target = src[..offset].matches('\n').count();
    let mut text = String::with_capacity(target + 4 * EXCERPT_WIDTH);
    let (mut new_offset, mut len) = (0, 1);
    for (i, line) in src.split('\n').enumerate() {
        if i > target + 1 {
            break;
        }
        if i > 0 {
            text.push('\n');
        }
        if i + 1 < target {
            continue;
        }
        if i == target {
            // Keep a window of the line around the column, marking what was cut.
            let chars: Vec<char> = line.chars().collect();
            let col = src[line_start..offset].chars().count().min(chars.len());
            let from = if chars.len() <= EXCERPT_WIDTH {
                0
            } else {
                col.saturating_sub(EXCERPT_WIDTH / 3)
            };
            let to = (from + EXCERPT_WIDTH).min(chars.len()).max(col);
            if from > 0 {
                text.push('…');
            }
            let before: String = chars[from..col].iter().collect();
            let after: String = chars[col..to].iter().collect();
            new_offset = text.len() + before.len();
            text.push_str(&before);
            text.push_str(&after);
            len = after
                .find(['\n', ',', '}', ']'])
                .unwrap_or(after.len())
                .max(1);
            if to < chars.len() {
                text.push('…');
            }
        } else {
            let cut: String = line.chars().take(EXCERPT_WIDTH).collect();
            let more = cut.len() < line.len();
            text.push_str(&cut);
            if more {
                text.push('…');
            }
        }
    }
    let len = len.min(text.len().saturating_sub(new_offset)).max(1);
    Excerpt {
        text,
        offset: new_offset,
        len,
    }
}

/// Where the first byte that is not UTF-8 sits: 1-based line and column, byte offset.
pub(crate) fn utf8_error_place(bytes: &[u8], valid_up_to: usize) -> (u64, u64, usize) {
    let before = &bytes[..valid_up_to];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count() as u64
        + 1;
    (line, column, valid_up_to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_block_and_flow_style() {
        let src = "name: x\nnodes:\n  - { name: a, address: 1.2.3.4, roles: [etcd] }\n  - name: b\n    ssh:\n      port: 99\n";
        assert_eq!(field_at(src, 1, 7).as_deref(), Some("name"));
        assert_eq!(field_at(src, 3, 42).as_deref(), Some("nodes[0].roles[0]"));
        assert_eq!(field_at(src, 3, 39).as_deref(), Some("nodes[0].roles"));
        assert_eq!(field_at(src, 3, 21).as_deref(), Some("nodes[0].address"));
        assert_eq!(field_at(src, 6, 13).as_deref(), Some("nodes[1].ssh.port"));
        assert_eq!(field_at(src, 6, 7).as_deref(), Some("nodes[1].ssh.port"));
    }

    #[test]
    fn excerpts_keep_line_numbers_and_cut_long_lines() {
        let long = "x".repeat(40_000);
        let src = format!("a: 1\nb: 2\nname: {long}\nc: 3\nd: 4\n");
        let off = src.find("xxx").unwrap_or_default() + 100;
        let e = excerpt(&src, off);
        assert!(e.text.len() < 400, "{} bytes", e.text.len());
        assert!(e.text.starts_with("\nb: 2\n…"), "{:?}", &e.text[..20]);
        assert!(
            e.text.ends_with("…\nc: 3"),
            "{:?}",
            &e.text[e.text.len() - 10..]
        );
        assert_eq!(e.text.matches('\n').count(), 3, "line 3 stays line 3");
        assert_eq!(&e.text[e.offset..e.offset + 1], "x");
        assert!(e.len <= 120, "{}", e.len);
        // A short file comes back whole where it matters, the value underlined.
        let src = "name: demo\nnodes: [a, b]\n";
        let e = excerpt(src, src.find("a,").unwrap_or_default());
        assert_eq!(e.text, "name: demo\nnodes: [a, b]\n");
        assert_eq!((&e.text[e.offset..e.offset + e.len]), "a");
        // Offsets past the end or inside a character are clamped, never a panic.
        let e = excerpt("é: ü", 4);
        assert!(e.text.is_char_boundary(e.offset));
        let _ = excerpt("", 10);
    }

    #[test]
    fn utf8_place() {
        let b: Vec<u8> = [&b"name: x\nbase"[..], &[0xff], b"Domain: y\n"].concat();
        let b = b.as_slice();
        let Err(err) = std::str::from_utf8(b) else {
            panic!("not UTF-8 on purpose")
        };
        assert_eq!(utf8_error_place(b, err.valid_up_to()), (2, 5, 12));
    }
}
