//! A minimal scanner over JSON object text: finds member spans without
//! building values.
//!
//! Fluent Bit runs its module in an interpreter, where parsing a record into
//! `serde_json::Value` and writing it back costs about 68 µs; finding one
//! string member and appending fields costs a few. [`crate::splice`] builds
//! on it. The scanner checks the
//! structure it walks (brackets, strings, separators), so it only answers
//! for text that is a well-formed object at the levels it looked at; the
//! caller falls back to the full parser whenever the scanner declines.
//!
//! It is not a validator: scalars are checked by their characters, not their
//! grammar, and escapes inside strings are not checked. Records that are not
//! well-formed JSON in a place the scanner skips may therefore be enriched
//! and stay malformed, where the full parser would pass them unchanged.
//! Fluent Bit's records come from its own encoder and are always well
//! formed; the component's callers are expected to pass JSON lines.

use smallvec::SmallVec;

/// One member of an object: the key (raw text between the quotes) and the
/// byte range of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    pub key: &'a str,
    /// True when the key contains escapes, so `key` is not its value.
    pub key_escaped: bool,
    pub value: (usize, usize),
}

/// An object's members. Cowrie records have ten to twenty; kept inline up to
/// [`INLINE_MEMBERS`], a record's scan allocates nothing, which matters in the
/// Fluent Bit module where an allocation and its release cost about as many
/// instructions as scanning 200 bytes.
pub type Members<'a> = SmallVec<[Member<'a>; INLINE_MEMBERS]>;

/// Members held without allocating.
pub const INLINE_MEMBERS: usize = 24;

/// The members of the object spanning `text`, and the position of its
/// closing brace; `None` unless `text` is exactly one object (surrounding
/// whitespace allowed) whose top level is well formed.
pub fn object_members(text: &str) -> Option<(Members<'_>, usize)> {
    let bytes = text.as_bytes();
    let start = skip_ws(bytes, 0);
    let (members, end) = members_at(text, start)?;
    (skip_ws(bytes, end + 1) == bytes.len()).then_some((members, end))
}

/// Members of the object starting at `pos` (a `{`), and its closing brace.
pub fn members_at(text: &str, pos: usize) -> Option<(Members<'_>, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(pos) != Some(&b'{') {
        return None;
    }
    let mut members = Members::new();
    let mut i = skip_ws(bytes, pos + 1);
    if bytes.get(i) == Some(&b'}') {
        return Some((members, i));
    }
    loop {
        let (key_end, key_escaped) = string_end(bytes, i)?;
        let key = text.get(i + 1..key_end)?;
        i = skip_ws(bytes, key_end + 1);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(bytes, i + 1);
        let value_end = value_end(bytes, value_start)?;
        members.push(Member { key, key_escaped, value: (value_start, value_end) });
        i = skip_ws(bytes, value_end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => return Some((members, i)),
            _ => return None,
        }
    }
}

/// The content of a string value without escapes, or `None`.
pub fn plain_string(text: &str, (start, end): (usize, usize)) -> Option<&str> {
    let inner = text.get(start + 1..end.checked_sub(1)?)?;
    let quoted = text.as_bytes().get(start) == Some(&b'"');
    (quoted && !inner.contains('\\')).then_some(inner)
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Index of the closing quote of the string starting at `i`, and whether
/// it holds escapes.
fn string_end(bytes: &[u8], i: usize) -> Option<(usize, bool)> {
    if bytes.get(i) != Some(&b'"') {
        return None;
    }
    let mut escaped = false;
    let mut j = i + 1;
    loop {
        j = next_special(bytes, j);
        match bytes.get(j)? {
            b'"' => return Some((j, escaped)),
            b'\\' => {
                escaped = true;
                j += 2;
            }
            // Raw control characters are not valid JSON.
            _ => return None,
        }
    }
}

/// Index of the first quote, backslash or control character at or after
/// `j`, or the length of `bytes` when there is none.
///
/// String contents are most of a Cowrie record's bytes. Fluent Bit runs the
/// module in an interpreter, where every instruction is dispatched one by
/// one, so the test is made on eight bytes at once (the zero-byte test of
/// "Bit Twiddling Hacks" applied to three patterns); the lowest flagged byte
/// is always a true match, which is the only one used.
fn next_special(bytes: &[u8], mut j: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Most keys and values are short: a word read past the closing quote
    // (the record goes on after it) settles them in one step.
    while let Some(chunk) = bytes.get(j..).and_then(|rest| rest.first_chunk::<8>()) {
        let word = u64::from_le_bytes(*chunk);
        let quotes = word ^ (ONES * u64::from(b'"'));
        let backslashes = word ^ (ONES * u64::from(b'\\'));
        let flags = (quotes.wrapping_sub(ONES) & !quotes)
            | (backslashes.wrapping_sub(ONES) & !backslashes)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let flags = flags & HIGHS;
        if flags != 0 {
            return j + (flags.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while bytes.get(j).is_some_and(|b| !matches!(b, b'"' | b'\\' | 0..=0x1f)) {
        j += 1;
    }
    j
}

/// One past the end of the value starting at `i`. Nested containers are
/// skipped with a stack of the brackets they must close, strings by their
/// quotes; scalars run to the next separator.
fn value_end(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'"' => string_end(bytes, i).map(|(end, _)| end + 1),
        b'{' | b'[' => container_end(bytes, i),
        _ => scalar_end(bytes, i),
    }
}

/// A number, `true`, `false` or `null`, checked by its characters.
fn scalar_end(bytes: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while let Some(b) = bytes.get(j) {
        if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        j += 1;
    }
    let token = bytes.get(i..j)?;
    let number = token.first().is_some_and(|b| b.is_ascii_digit() || *b == b'-')
        && token
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    (number || matches!(token, b"true" | b"false" | b"null")).then_some(j)
}

fn container_end(bytes: &[u8], i: usize) -> Option<usize> {
    let mut closers: Vec<u8> = Vec::new();
    let mut j = i;
    loop {
        match bytes.get(j)? {
            b'{' => closers.push(b'}'),
            b'[' => closers.push(b']'),
            close @ (b'}' | b']') => {
                if closers.pop() != Some(*close) {
                    return None;
                }
                if closers.is_empty() {
                    return Some(j + 1);
                }
            }
            b'"' => j = string_end(bytes, j)?.0,
            _ => {}
        }
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Option<Vec<String>> {
        object_members(text).map(|(m, _)| m.iter().map(|m| m.key.to_string()).collect())
    }

    #[test]
    fn members_of_compact_and_spaced_objects() {
        assert_eq!(
            keys(r#"{"a":1,"b":"x","c":{"d":[1,{"e":"}"}]},"f":null}"#).unwrap(),
            ["a", "b", "c", "f"]
        );
        assert_eq!(keys("  { \"a\" : 1 , \"b\" : true }\n").unwrap(), ["a", "b"]);
        assert_eq!(keys("{}").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn value_spans_cover_the_value_text() {
        let text = r#"{"src_ip": "45.133.1.7", "n": -1.5e3, "o": {"k": "v"}}"#;
        let (members, end) = object_members(text).unwrap();
        assert_eq!(end, text.len() - 1);
        let values: Vec<&str> = members.iter().map(|m| &text[m.value.0..m.value.1]).collect();
        assert_eq!(values, ["\"45.133.1.7\"", "-1.5e3", "{\"k\": \"v\"}"]);
        assert_eq!(plain_string(text, members[0].value), Some("45.133.1.7"));
        assert_eq!(plain_string(text, members[1].value), None);
    }

    #[test]
    fn escapes_are_flagged() {
        let text = r#"{"s\u0072c_ip":"a\"b","x":"\u0000"}"#;
        let (members, _) = object_members(text).unwrap();
        assert!(members[0].key_escaped);
        assert_eq!(plain_string(text, members[0].value), None);
        assert_eq!(&text[members[1].value.0..members[1].value.1], r#""\u0000""#);
    }

    fn naive_special(bytes: &[u8], j: usize) -> usize {
        (j..bytes.len())
            .find(|&k| matches!(bytes[k], b'"' | b'\\' | 0..=0x1f))
            .unwrap_or(bytes.len())
    }

    #[test]
    fn word_scan_finds_the_first_special_byte_like_a_byte_loop() {
        // Every byte value at every position of short and word-crossing
        // buffers, over ASCII and over UTF-8 continuation bytes, with a
        // second special byte after it to catch a flag borrowed upwards.
        for filler in [b'a', 0xA9, 0x7F, 0x20] {
            for len in 0..20 {
                for pos in 0..len {
                    for value in 0..=255u8 {
                        let mut bytes = vec![filler; len];
                        bytes[pos] = value;
                        if pos + 3 < len {
                            bytes[pos + 3] = 0;
                        }
                        for start in 0..=len.min(3) {
                            assert_eq!(
                                next_special(&bytes, start),
                                naive_special(&bytes, start),
                                "{bytes:?} from {start}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn anything_but_one_object_is_declined() {
        for text in [
            "",
            "[]",
            "\"x\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1} {}",
            "{\"a\":1}x",
            "{\"a\":\"\n\"}",
            "{\"a\":[1,2}",
            "{'a':1}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":tru}",
            "{\"a\":[1}],\"b\":2}",
            "{\"a\":x1}",
        ] {
            assert_eq!(keys(text), None, "{text:?}");
        }
    }
}
