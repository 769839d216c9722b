//! The restSearch filters the fake understands, read the way MISP reads them.
//!
//! MISP reads only whitelisted parameter names and ignores the rest, and it
//! interprets value syntax (`!` for NOT, `%` for LIKE, `&&` and `||` as list
//! separators) even though nothing escapes it. The fake does the same, so a
//! client that forwards raw record text shows the damage in tests.

use std::net::IpAddr;

use serde_json::{Map, Value};

/// One value term: exact (IPv6 canonicalised) or a SQL `LIKE` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Exact(String),
    Like(String),
}

impl Term {
    /// Classifies one term; `%` at either end makes a LIKE pattern.
    fn parse(text: &str) -> Term {
        if text.starts_with('%') || text.ends_with('%') {
            Term::Like(text.to_owned())
        } else {
            Term::Exact(canonical(text))
        }
    }

    /// Whether a stored value matches, case-insensitively as MySQL compares.
    pub fn matches(&self, stored: &str) -> bool {
        match self {
            Term::Exact(want) => canonical(stored).eq_ignore_ascii_case(want),
            Term::Like(pattern) => like(pattern.as_bytes(), stored.as_bytes()),
        }
    }
}

/// IPv6 addresses are compared in inet_ntop form; everything else as given.
fn canonical(text: &str) -> String {
    match text.parse::<IpAddr>() {
        Ok(addr @ IpAddr::V6(_)) => addr.to_string(),
        _ => text.to_owned(),
    }
}

/// SQL LIKE: `%` any run, `_` one character, ASCII case-insensitive.
fn like(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'%', rest)) => (0..=text.len()).any(|skip| like(rest, &text[skip..])),
        Some((&p, rest)) => match text.split_first() {
            Some((&t, tail)) if p == b'_' || p.eq_ignore_ascii_case(&t) => like(rest, tail),
            _ => false,
        },
    }
}

/// A parameter turned into OR, AND and NOT term lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermFilter {
    pub or: Vec<Term>,
    pub and: Vec<Term>,
    pub not: Vec<Term>,
}

impl TermFilter {
    /// Reads a string, list or `{"OR":..,"AND":..,"NOT":..}` parameter.
    fn parse(value: &Value) -> TermFilter {
        let mut filter = TermFilter::default();
        match value {
            Value::Object(map) => {
                for (key, list) in map {
                    let mut parsed = TermFilter::default();
                    for text in texts(list, false) {
                        parsed.push(&text);
                    }
                    match key.to_ascii_uppercase().as_str() {
                        "AND" => filter.and.extend(parsed.or),
                        "NOT" => filter.not.extend(parsed.or),
                        _ => filter.or.extend(parsed.or),
                    }
                    // A `!` inside any list still negates, NOT included:
                    // MISP applies no double negation.
                    filter.not.extend(parsed.not);
                }
            }
            other => {
                for text in texts(other, true) {
                    filter.push(&text);
                }
            }
        }
        filter
    }

    fn push(&mut self, text: &str) {
        match text.strip_prefix('!') {
            Some(rest) => self.not.push(Term::parse(rest)),
            None => self.or.push(Term::parse(text)),
        }
    }

    /// Whether any of the given stored values satisfies the filter.
    pub fn accepts(&self, stored: &[&str]) -> bool {
        let any = |term: &Term| stored.iter().any(|s| term.matches(s));
        (self.or.is_empty() || self.or.iter().any(any))
            && self.and.iter().all(any)
            && !self.not.iter().any(any)
    }
}

/// The strings in a parameter. Top-level strings are split on `||` and
/// `&&` as MISP does; array elements are taken whole.
fn texts(value: &Value, split: bool) -> Vec<String> {
    match value {
        Value::String(s) if split => s
            .split("||")
            .flat_map(|part| part.split("&&"))
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(items) => items.iter().flat_map(|item| texts(item, false)).collect(),
        _ => Vec::new(),
    }
}

/// Which soft-deleted attributes a search sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The default: only live attributes.
    Live,
    /// `deleted: 1` or `"only"`.
    Only,
    /// `deleted: [0, 1]`.
    Both,
}

/// An inclusive range of unix times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: u64,
    pub to: u64,
}

/// Every filter a restSearch request set, already interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    pub value: Option<TermFilter>,
    pub kind: Option<TermFilter>,
    pub category: Option<TermFilter>,
    pub event_id: Option<TermFilter>,
    /// From `last` or `publish_timestamp`: the event's publication time.
    pub published_within: Option<TimeRange>,
    pub deleted: Deleted,
    /// Whether `deleted` was given at all (events scope counts deleted
    /// attributes in its subqueries unless it was).
    pub deleted_given: bool,
    pub to_ids: Option<bool>,
    pub published: Option<bool>,
    pub include_context: bool,
    pub enforce_warninglist: bool,
    pub metadata: bool,
    pub limit: Option<usize>,
    pub page: Option<usize>,
    pub return_format: Option<String>,
}

impl Filters {
    /// No filter at all: what a form-encoded body leaves MISP with.
    pub fn none() -> Self {
        Filters {
            value: None,
            kind: None,
            category: None,
            event_id: None,
            published_within: None,
            deleted: Deleted::Live,
            deleted_given: false,
            to_ids: None,
            published: None,
            include_context: false,
            enforce_warninglist: false,
            metadata: false,
            limit: None,
            page: None,
            return_format: None,
        }
    }

    /// Reads a JSON request body; unknown names are ignored like MISP does.
    pub fn from_json(body: &Map<String, Value>, now: u64) -> Self {
        let mut filters = Filters::none();
        let get = |name: &str| body.get(name).filter(|v| !v.is_null());
        filters.value = get("value").map(TermFilter::parse);
        filters.kind = get("type").map(TermFilter::parse);
        filters.category = get("category").map(TermFilter::parse);
        filters.event_id = get("eventid").map(TermFilter::parse);
        filters.published_within =
            get("last").or_else(|| get("publish_timestamp")).map(|v| time_range(v, now));
        if let Some(deleted) = get("deleted") {
            filters.deleted = parse_deleted(deleted);
            filters.deleted_given = true;
        }
        filters.to_ids = get("to_ids").map(|v| v.as_str() != Some("exclude") && truthy(v));
        filters.published = get("published").map(truthy);
        filters.include_context = get("includeContext").is_some_and(truthy);
        filters.enforce_warninglist = get("enforceWarninglist").is_some_and(truthy);
        filters.metadata = get("metadata").is_some_and(truthy);
        filters.limit = get("limit").and_then(count).filter(|&n| n > 0);
        filters.page = get("page").and_then(count).filter(|&n| n > 0);
        filters.return_format = get("returnFormat").and_then(Value::as_str).map(str::to_owned);
        filters
    }
}

/// PHP truthiness for the flag-like parameters.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !(s.is_empty() || s == "0" || s.eq_ignore_ascii_case("false")),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn count(value: &Value) -> Option<usize> {
    match value {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn parse_deleted(value: &Value) -> Deleted {
    match value {
        Value::Array(items) => {
            let flags: Vec<bool> = items.iter().map(truthy).collect();
            match (flags.contains(&false), flags.contains(&true)) {
                (true, true) => Deleted::Both,
                (false, true) => Deleted::Only,
                _ => Deleted::Live,
            }
        }
        Value::String(s) if s == "only" => Deleted::Only,
        other if truthy(other) => Deleted::Only,
        _ => Deleted::Live,
    }
}

/// `last`-style time: a unix time, `<n>d|h|m|s` ago, an ISO date, or a
/// two-element `[older, newer]` range. Anything else resolves to one second
/// in the future, so it matches nothing, as MISP's `time()+1` fallback does.
///
/// Limitation: MISP hands other text to PHP's `strtotime()`, which also
/// understands phrases like `"yesterday"`; the fake treats those as
/// unparseable. No client of the fake sends them.
fn time_range(value: &Value, now: u64) -> TimeRange {
    if let Value::Array(items) = value
        && let [older, newer] = items.as_slice()
    {
        return TimeRange { from: point(older, now), to: point(newer, now) };
    }
    TimeRange { from: point(value, now), to: u64::MAX }
}

fn point(value: &Value, now: u64) -> u64 {
    let text = match value {
        Value::Number(n) => return n.as_u64().unwrap_or(now + 1),
        Value::String(s) => s.trim(),
        _ => return now + 1,
    };
    if let Ok(unix) = text.parse::<u64>() {
        return unix;
    }
    if let Some(ago) = relative(text) {
        return now.saturating_sub(ago);
    }
    iso_date(text).unwrap_or(now + 1)
}

/// `30d`, `12h`, `15m`, `10s` as seconds.
fn relative(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    let amount: u64 = text[..text.len() - 1].parse().ok()?;
    Some(amount * unit)
}

/// `YYYY-MM-DD` with an optional `THH:MM:SS` and `Z`, read as UTC.
fn iso_date(text: &str) -> Option<u64> {
    let (date, time) = text.split_once('T').unwrap_or((text, "00:00:00"));
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) =
        (t.next()??, t.next().flatten().unwrap_or(0), t.next().flatten().unwrap_or(0));
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(y, m, day);
    u64::try_from(days * 86_400 + hh * 3_600 + mm * 60 + ss).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// well-known algorithm, written out here).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filter(value: Value) -> TermFilter {
        TermFilter::parse(&value)
    }

    #[test]
    fn bang_prefix_negates() {
        let f = filter(json!(["!45.133.1.7"]));
        assert!(!f.accepts(&["45.133.1.7"]));
        assert!(f.accepts(&["8.8.8.8"]));
    }

    #[test]
    fn percent_makes_a_like_pattern() {
        let f = filter(json!(["45.133.%"]));
        assert!(f.accepts(&["45.133.1.7"]));
        assert!(!f.accepts(&["46.133.1.7"]));
    }

    #[test]
    fn top_level_strings_split_but_array_elements_do_not() {
        assert!(filter(json!("1.1.1.1&&8.8.8.8")).accepts(&["8.8.8.8"]));
        assert!(filter(json!("1.1.1.1||8.8.8.8")).accepts(&["8.8.8.8"]));
        assert!(!filter(json!(["1.1.1.1||8.8.8.8"])).accepts(&["8.8.8.8"]));
    }

    #[test]
    fn ipv6_values_match_in_canonical_form() {
        assert!(filter(json!(["2A01:4F8:0:0::1"])).accepts(&["2a01:4f8::1"]));
    }

    #[test]
    fn last_accepts_units_numbers_and_dates() {
        let now = 1_700_000_000;
        assert_eq!(point(&json!("30d"), now), now - 30 * 86_400);
        assert_eq!(point(&json!(1_600_000_000), now), 1_600_000_000);
        assert_eq!(point(&json!("2020-09-13T12:26:40Z"), now), 1_600_000_000);
        assert_eq!(point(&json!("yesterday-ish"), now), now + 1);
    }

    #[test]
    fn deleted_accepts_flags_only_and_both() {
        assert_eq!(parse_deleted(&json!(0)), Deleted::Live);
        assert_eq!(parse_deleted(&json!("only")), Deleted::Only);
        assert_eq!(parse_deleted(&json!([0, 1])), Deleted::Both);
    }
}
