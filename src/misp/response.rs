//! Reading MISP's answers, tolerant of the type drift between versions.
//!
//! MISP 2.4 (and 2.5 with stringified fetches) sends ids, counts, enums and
//! timestamps as JSON strings; 2.5 on newer PHP sends integers; the choice is
//! per instance, not per version. Every such field is read as string-or-number,
//! optional fields may be missing or `null`, and unknown fields are ignored.
//! An answer whose envelope is wrong (an HTML login page, a proxy error, an
//! error object) is refused as a whole, so it can never pass for "no hit".

use serde_json::Value;

/// The envelope was not the one MISP sends for a search.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected response from MISP: {0}")]
pub struct ResponseError(pub &'static str);

/// The event an attribute belongs to, from `includeContext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    /// Decimal event id.
    pub id: String,
    pub info: String,
    /// 1 (High) to 4 (Undefined); anything missing or out of range is 4.
    pub threat_level_id: u8,
    /// The creator organisation (`Orgc.name`), which synced copies keep.
    pub org: Option<String>,
}

/// One live (not deleted) attribute of a search result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute's value as MISP stores it, e.g. `1.2.3.4|22`.
    pub value: String,
    /// When the attribute last changed (unix seconds).
    pub timestamp: Option<i64>,
    pub event: EventContext,
}

/// A page of `attributes/restSearch`: the usable attributes, and how many
/// entries the page held in all, which decides whether another page follows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttributePage {
    pub attributes: Vec<Attribute>,
    pub entries: usize,
}

/// Parses an `attributes/restSearch` answer: `{"response":{"Attribute":[…]}}`.
/// `{"response":[]}`, which some MISP stand-ins send for an empty result, is
/// accepted as empty. Entries without a usable value or event are skipped;
/// deleted attributes never count.
pub fn parse_attributes(body: &[u8]) -> Result<AttributePage, ResponseError> {
    let root: Value = serde_json::from_slice(body).map_err(|_| ResponseError("not JSON"))?;
    let response = root.get("response").ok_or(ResponseError("no \"response\" member"))?;
    let entries = match response {
        Value::Array(list) if list.is_empty() => return Ok(AttributePage::default()),
        Value::Object(map) => match map.get("Attribute") {
            Some(Value::Array(list)) => list,
            _ => return Err(ResponseError("no \"Attribute\" list")),
        },
        _ => return Err(ResponseError("\"response\" is not an attribute list")),
    };
    Ok(AttributePage {
        attributes: entries.iter().filter_map(attribute).collect(),
        entries: entries.len(),
    })
}

/// Parses an `events/restSearch` metadata answer: `{"response":[{"Event":…}]}`
/// into `(event id, attribute_count)` pairs; the count may be `null`.
pub fn parse_event_counts(body: &[u8]) -> Result<Vec<(String, Option<u64>)>, ResponseError> {
    let root: Value = serde_json::from_slice(body).map_err(|_| ResponseError("not JSON"))?;
    let Some(Value::Array(events)) = root.get("response") else {
        return Err(ResponseError("no \"response\" event list"));
    };
    Ok(events
        .iter()
        .filter_map(|entry| {
            let event = entry.get("Event")?;
            let id = id_text(event.get("id")?)?;
            Some((id, event.get("attribute_count").and_then(unsigned)))
        })
        .collect())
}

fn attribute(entry: &Value) -> Option<Attribute> {
    if entry.get("deleted").is_some_and(truthy) {
        return None;
    }
    let event = entry.get("Event")?;
    let threat_level_id = event
        .get("threat_level_id")
        .and_then(unsigned)
        .filter(|level| (1..=4).contains(level))
        .unwrap_or(4) as u8;
    Some(Attribute {
        value: entry.get("value")?.as_str()?.to_string(),
        timestamp: entry.get("timestamp").and_then(unsigned).and_then(|t| i64::try_from(t).ok()),
        event: EventContext {
            id: id_text(event.get("id")?)?,
            info: event.get("info").and_then(Value::as_str).unwrap_or_default().to_string(),
            threat_level_id,
            org: event
                .get("Orgc")
                .and_then(|orgc| orgc.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string),
        },
    })
}

/// A non-negative integer given as a JSON number or a digit string.
fn unsigned(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// An id in canonical decimal form; it goes into the event URL, so nothing
/// else is accepted.
fn id_text(value: &Value) -> Option<String> {
    unsigned(value).map(|id| id.to_string())
}

/// MISP flags are booleans, or `0`/`1` as numbers or strings.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64() != Some(0),
        Value::String(s) => !matches!(s.as_str(), "" | "0" | "false"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_and_integer_typed_attributes_read_the_same() {
        let v24 =
            br#"{"response":{"Attribute":[{"id":"9","value":"45.133.1.7","timestamp":"1651234567",
            "deleted":false,"Event":{"id":"12","info":"feed","threat_level_id":"2",
            "Orgc":{"id":"1","name":"CIRCL"}}}]}}"#;
        let v25 =
            br#"{"response":{"Attribute":[{"id":9,"value":"45.133.1.7","timestamp":1651234567,
            "deleted":false,"Event":{"id":12,"info":"feed","threat_level_id":2,
            "Orgc":{"id":1,"name":"CIRCL"}}}]}}"#;
        let a = parse_attributes(v24).unwrap();
        assert_eq!(a, parse_attributes(v25).unwrap());
        assert_eq!(a.entries, 1);
        assert_eq!(
            a.attributes[0],
            Attribute {
                value: "45.133.1.7".into(),
                timestamp: Some(1_651_234_567),
                event: EventContext {
                    id: "12".into(),
                    info: "feed".into(),
                    threat_level_id: 2,
                    org: Some("CIRCL".into()),
                },
            }
        );
    }

    #[test]
    fn deleted_attributes_never_count_but_fill_the_page() {
        let body = br#"{"response":{"Attribute":[
            {"value":"45.133.1.7","deleted":true,"Event":{"id":"1"}},
            {"value":"45.133.1.7","deleted":"1","Event":{"id":"2"}},
            {"value":"45.133.1.7","deleted":0,"Event":{"id":"3"}}]}}"#;
        let page = parse_attributes(body).unwrap();
        assert_eq!(page.entries, 3);
        assert_eq!(page.attributes.len(), 1);
        assert_eq!(page.attributes[0].event.id, "3");
    }

    #[test]
    fn missing_optional_fields_get_safe_defaults() {
        let body = br#"{"response":{"Attribute":[{"value":"45.133.1.7","Event":{"id":"5",
            "threat_level_id":"9"}}]}}"#;
        let attribute = &parse_attributes(body).unwrap().attributes[0];
        assert_eq!(attribute.timestamp, None);
        assert_eq!(attribute.event.threat_level_id, 4);
        assert_eq!(attribute.event.info, "");
        assert_eq!(attribute.event.org, None);
    }

    #[test]
    fn entries_without_value_or_event_id_are_skipped() {
        let body = br#"{"response":{"Attribute":[{"value":"45.133.1.7"},
            {"value":7,"Event":{"id":"1"}},{"value":"45.133.1.7","Event":{"id":"../x"}},"junk"]}}"#;
        let page = parse_attributes(body).unwrap();
        assert_eq!((page.entries, page.attributes.len()), (4, 0));
    }

    #[test]
    fn empty_results_in_both_shapes() {
        assert_eq!(parse_attributes(br#"{"response":{"Attribute":[]}}"#).unwrap().entries, 0);
        assert_eq!(parse_attributes(br#"{"response":[]}"#).unwrap().entries, 0);
    }

    #[test]
    fn wrong_envelopes_are_errors_not_misses() {
        let cases: [(&[u8], &str); 5] = [
            (b"<html><body>Login</body></html>", "not JSON"),
            (
                br#"{"name":"Authentication failed.","message":"x","url":"\/x"}"#,
                "no \"response\" member",
            ),
            (br#"{"response":{"Event":[]}}"#, "no \"Attribute\" list"),
            (br#"{"response":[{"Attribute":{}}]}"#, "\"response\" is not an attribute list"),
            (br#"{"response":{"Attribute":[]"#, "not JSON"),
        ];
        for (body, reason) in cases {
            assert_eq!(parse_attributes(body), Err(ResponseError(reason)));
        }
    }

    #[test]
    fn event_counts_in_both_typings_and_null() {
        let body = br#"{"response":[{"Event":{"id":"12","attribute_count":"4512"}},
            {"Event":{"id":7,"attribute_count":33}},{"Event":{"id":"8","attribute_count":null}}]}"#;
        assert_eq!(
            parse_event_counts(body).unwrap(),
            [("12".into(), Some(4512)), ("7".into(), Some(33)), ("8".into(), None)]
        );
        assert!(parse_event_counts(br#"{"response":{"Attribute":[]}}"#).is_err());
    }
}
