//! Enriching a record without parsing it: find the source address with the
//! [`scan`](crate::scan) scanner and append the fields before the closing
//! brace.
//!
//! Most records are misses or repeats and need no parse at all; for hits, the
//! record's own text is kept and only the new fields are written. This is what
//! makes the Fluent Bit module affordable under an interpreter, and it spares
//! the component a parse and a re-serialisation per record. Whenever the
//! shortcut cannot be taken safely (the record already has `tags` or `misp`
//! fields, an escaped key, a value the scanner cannot judge), [`locate`]
//! answers [`Located::Unknown`] and the caller uses the full parser in
//! [`record`](crate::record), which writes the same fields in the same order.

use std::net::IpAddr;
use std::num::NonZeroUsize;

use serde_json::Value;

use crate::address::{is_lookup_candidate, parse_source};
use crate::record::Object;
use crate::scan::{self, Member};
use crate::settings::{FieldPath, OutputStyle, RecordSettings};

/// Hits whose appended text a caller keeps rendered: a sensor sees tens to
/// hundreds of sources a day, and each entry is a few hundred bytes.
pub const RENDERED_HITS: NonZeroUsize = NonZeroUsize::new(4096).unwrap();

/// Where a record stands, as far as the scanner can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located {
    /// Not looked up: no usable or no global source address.
    Skip,
    /// Looked up; fields can be appended before the brace at `close`. The
    /// object has at least one member (the source field), so what is
    /// appended starts with a comma.
    Append { addr: IpAddr, close: usize },
    /// Only the full parser can tell.
    Unknown,
}

/// Finds the record's source address by the component's rule (the first
/// configured field whose value is a string that parses as an address).
pub fn locate(text: &str, settings: &RecordSettings) -> Located {
    let Some((members, close)) = scan::object_members(text) else { return Located::Unknown };
    if members.iter().any(|m| m.key_escaped || writes_to(m.key, settings.output)) {
        return Located::Unknown;
    }
    match find_source(text, &members, &settings.source_fields) {
        Err(NeedsParse) => Located::Unknown,
        Ok(Some(addr)) if is_lookup_candidate(addr, &settings.skip_networks) => {
            Located::Append { addr, close }
        }
        Ok(_) => Located::Skip,
    }
}

/// What is appended to a record for `fields` (as `misp.*`) and `tag`: the
/// same for every record with the same outcome, so callers render it once per
/// answer and reuse it.
pub fn suffix(fields: Object, tag: &str, output: OutputStyle) -> String {
    let mut out = String::with_capacity(256);
    match output {
        OutputStyle::Nested => {
            out.push_str(",\"misp\":");
            out.push_str(&Value::Object(fields).to_string());
        }
        OutputStyle::Dotted => {
            for (key, value) in fields {
                out.push(',');
                out.push_str(&Value::String(format!("misp.{key}")).to_string());
                out.push(':');
                out.push_str(&value.to_string());
            }
        }
    }
    out.push_str(",\"tags\":[");
    out.push_str(&Value::String(tag.to_string()).to_string());
    out.push_str("]}");
    out
}

/// Writes `text` up to its closing brace at `close`, then `suffix`.
pub fn append(text: &str, close: usize, suffix: &str, out: &mut String) {
    out.reserve(close + suffix.len());
    out.push_str(text.get(..close).unwrap_or(text));
    out.push_str(suffix);
}

/// True when the record already has a key the enrichment writes, so the
/// fields must be merged rather than appended.
fn writes_to(key: &str, output: OutputStyle) -> bool {
    key == "tags"
        || match output {
            OutputStyle::Nested => key == "misp",
            OutputStyle::Dotted => key.starts_with("misp."),
        }
}

/// The scanner met something only the full parser can judge.
struct NeedsParse;

fn find_source(
    text: &str,
    members: &[Member<'_>],
    fields: &[FieldPath],
) -> Result<Option<IpAddr>, NeedsParse> {
    for field in fields {
        let Some(span) = find_span(text, members, &field.segments)? else { continue };
        if text.as_bytes().get(span.0) != Some(&b'"') {
            continue;
        }
        let value = scan::plain_string(text, span).ok_or(NeedsParse)?;
        if let Some(addr) = parse_source(value) {
            return Ok(Some(addr));
        }
    }
    Ok(None)
}

/// The value span of `segments`, trying each grouping of leading segments
/// into one dotted key, longest first (as the full parser's lookup does).
fn find_span(
    text: &str,
    members: &[Member<'_>],
    segments: &[String],
) -> Result<Option<(usize, usize)>, NeedsParse> {
    for taken in (1..=segments.len()).rev() {
        let (head, rest) = segments.split_at(taken);
        // With duplicate keys the last one counts, as in the full parser.
        let Some(member) = members.iter().rev().find(|m| dotted_eq(m.key, head)) else {
            continue;
        };
        if rest.is_empty() {
            return Ok(Some(member.value));
        }
        if text.as_bytes().get(member.value.0) != Some(&b'{') {
            continue;
        }
        let (inner, _) = scan::members_at(text, member.value.0).ok_or(NeedsParse)?;
        if inner.iter().any(|m| m.key_escaped) {
            return Err(NeedsParse);
        }
        if let Some(span) = find_span(text, &inner, rest)? {
            return Ok(Some(span));
        }
    }
    Ok(None)
}

/// `key == segments.join(".")` without building the joined string.
fn dotted_eq(key: &str, segments: &[String]) -> bool {
    let mut rest = key;
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            let Some(after) = rest.strip_prefix('.') else { return false };
            rest = after;
        }
        let Some(after) = rest.strip_prefix(segment.as_str()) else { return false };
        rest = after;
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RecordSettings {
        RecordSettings::default()
    }

    #[test]
    fn appendable_records_give_their_address_and_brace() {
        let text = r#"{"src_ip":"45.133.1.7"} "#;
        let located = locate(text, &settings());
        let addr = "45.133.1.7".parse().unwrap();
        assert_eq!(located, Located::Append { addr, close: 22 });
    }

    #[test]
    fn records_with_enrichment_keys_or_escapes_need_the_parser() {
        for text in [
            r#"{"src_ip":"45.133.1.7","tags":[]}"#,
            r#"{"src_ip":"45.133.1.7","misp":{}}"#,
            r#"{"src\u005fip":"45.133.1.7"}"#,
            r#"{"src_ip":"4\u0035.133.1.7"}"#,
            "[]",
        ] {
            assert_eq!(locate(text, &settings()), Located::Unknown, "{text}");
        }
    }

    #[test]
    fn non_candidates_are_skipped() {
        for text in [r#"{"src_ip":"10.0.0.1"}"#, r#"{"src_ip":7}"#, "{}", r#"{"a":"b"}"#] {
            assert_eq!(locate(text, &settings()), Located::Skip, "{text}");
        }
    }

    #[test]
    fn dotted_keys_match_without_joining() {
        let segments = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        assert!(dotted_eq("source.address", &segments("source.address")));
        assert!(!dotted_eq("source.addresses", &segments("source.address")));
        assert!(!dotted_eq("source", &segments("source.address")));
        assert!(!dotted_eq("sourceXaddress", &segments("source.address")));
    }
}
