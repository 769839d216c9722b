//! Reading the source address out of a record and writing MISP context onto it.
//!
//! Pipelines spell the same field several ways: Elasticsearch treats the flat
//! key `"source.address"` and the nested `{"source":{"address":..}}` as one
//! field, so both occur, and mixtures (`{"source.geo":..}` next to
//! `{"source":{..}}`) too. A field name is therefore matched against every
//! split of its dotted path, longest key first.
//!
//! Records are parsed with key order preserved, so an enriched record differs
//! from the original only by the added fields (and JSON whitespace).

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::address::is_lookup_candidate;
use crate::address::parse_source;
use crate::mapping::Enrichment;
use crate::settings::{FieldPath, OutputStyle, RecordSettings};

/// A record that is a JSON object, ready to be enriched.
pub type Object = Map<String, Value>;

/// Parses a record; `None` for anything that is not a JSON object, which the
/// caller returns unchanged. Duplicate keys keep the last value, as
/// Elasticsearch's own parser would if it accepted them.
// Limitation: records nested deeper than serde_json's 128 levels fail to
// parse and pass through unenriched; lifting the limit would let a record
// exhaust the stack, which in WASM is a trap.
pub fn parse(text: &str) -> Option<Object> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The parsed record and its source address, when the record is to be
/// looked up: an object with a globally routable address not in
/// `skip_networks`.
pub fn candidate(text: &str, settings: &RecordSettings) -> Option<(Object, IpAddr)> {
    let object = parse(text)?;
    let addr = find_source(&object, &settings.source_fields)?;
    is_lookup_candidate(addr, &settings.skip_networks).then_some((object, addr))
}

/// The first configured field that holds an address string, parsed and
/// canonicalised. Values that are not strings (numbers, arrays) never count.
pub fn find_source(record: &Object, fields: &[FieldPath]) -> Option<IpAddr> {
    fields.iter().find_map(|field| match lookup(record, &field.segments)? {
        Value::String(text) => parse_source(text),
        _ => None,
    })
}

/// Finds `segments` in `object`, trying each way of grouping the leading
/// segments into one dotted key.
fn lookup<'a>(object: &'a Object, segments: &[String]) -> Option<&'a Value> {
    (1..=segments.len()).rev().find_map(|taken| {
        let value = object.get(&segments[..taken].join("."))?;
        if taken == segments.len() {
            Some(value)
        } else {
            lookup(value.as_object()?, &segments[taken..])
        }
    })
}

/// Writes a hit: the MISP fields and the hit tag.
pub fn write_hit(record: &mut Object, hit: &Enrichment, settings: &RecordSettings) {
    write_fields(record, hit_fields(hit, settings), settings.output);
    add_tag(record, &settings.hit_tag);
}

/// The `misp.*` fields of a hit, in their documented order.
pub fn hit_fields(hit: &Enrichment, settings: &RecordSettings) -> Object {
    let mut fields = Object::new();
    fields.insert("event_id".into(), hit.event_id.clone().into());
    fields.insert("event_info".into(), hit.event_info.clone().into());
    fields.insert("threat_level_id".into(), hit.threat_level_id.into());
    fields.insert("threat_level".into(), hit.threat_level_name().into());
    if let Some(org) = &hit.org {
        fields.insert("org".into(), org.clone().into());
    }
    if let Some(updated) = hit.ioc_updated {
        fields.insert("ioc_updated".into(), updated.into());
    }
    if let Some(count) = hit.attribute_count {
        fields.insert("attribute_count".into(), count.into());
    }
    let url = format!("{}/events/view/{}", settings.event_url_base, hit.event_id);
    fields.insert("event_url".into(), url.into());
    fields
}

/// Writes a failed lookup: `misp.error` with a short reason and the failure
/// tag, and nothing that could be mistaken for a hit or a miss.
pub fn write_failure(record: &mut Object, reason: &str, settings: &RecordSettings) {
    write_fields(record, failure_fields(reason), settings.output);
    add_tag(record, &settings.failure_tag);
}

/// The `misp.*` fields of a failed lookup.
pub fn failure_fields(reason: &str) -> Object {
    let mut fields = Object::new();
    fields.insert("error".into(), reason.into());
    fields
}

/// Writes `fields` as `misp.*` in the configured style, merging into an
/// existing `misp` object.
pub fn write_fields(record: &mut Object, fields: Object, style: OutputStyle) {
    match style {
        OutputStyle::Nested => match record.get_mut("misp") {
            Some(Value::Object(existing)) => existing.extend(fields),
            _ => {
                record.insert("misp".into(), Value::Object(fields));
            }
        },
        OutputStyle::Dotted => {
            for (key, value) in fields {
                record.insert(format!("misp.{key}"), value);
            }
        }
    }
}

/// Appends `tag` to `tags`: creates the array, turns a single string into an
/// array that keeps it, and adds nothing twice. A `tags` of another type is
/// the pipeline's own business and is left alone.
pub fn add_tag(record: &mut Object, tag: &str) {
    let tags = record.entry("tags").or_insert(Value::Null);
    match tags {
        Value::Null => *tags = Value::Array(vec![tag.into()]),
        Value::String(existing) if existing != tag => {
            *tags = Value::Array(vec![std::mem::take(existing).into(), tag.into()]);
        }
        Value::Array(list) if !list.iter().any(|t| t.as_str() == Some(tag)) => {
            list.push(tag.into());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> RecordSettings {
        let json = format!(r#"{{"misp_url":"https://misp.example.org","api_key":"k"{extra}}}"#);
        crate::Settings::from_json(&json).unwrap().records
    }

    fn source_of(record: &str) -> Option<String> {
        let fields = settings("").source_fields;
        find_source(&parse(record).unwrap(), &fields).map(|a| a.to_string())
    }

    fn hit() -> Enrichment {
        Enrichment {
            event_id: "1342".into(),
            event_info: "OSINT SSH brute force feed".into(),
            threat_level_id: 3,
            org: Some("CIRCL".into()),
            ioc_updated: Some(1_651_234_567),
            attribute_count: Some(4512),
        }
    }

    #[test]
    fn flat_and_nested_spellings_are_the_same_field() {
        assert_eq!(source_of(r#"{"source.address":"45.133.1.7"}"#).unwrap(), "45.133.1.7");
        assert_eq!(source_of(r#"{"source":{"address":"45.133.1.7"}}"#).unwrap(), "45.133.1.7");
        assert_eq!(source_of(r#"{"honeypot":{"src_ip":"45.133.1.7"}}"#).unwrap(), "45.133.1.7");
        assert_eq!(source_of(r#"{"src_endpoint.ip":"2a01:4f8::1"}"#).unwrap(), "2a01:4f8::1");
    }

    #[test]
    fn mixed_spellings_of_a_deeper_path_are_found() {
        let fields = vec![FieldPath {
            name: "a.b.c".into(),
            segments: vec!["a".into(), "b".into(), "c".into()],
        }];
        for text in [
            r#"{"a":{"b.c":"45.133.1.7"}}"#,
            r#"{"a.b":{"c":"45.133.1.7"}}"#,
            r#"{"a":{"b":{"c":"45.133.1.7"}}}"#,
        ] {
            let found = find_source(&parse(text).unwrap(), &fields);
            assert_eq!(found.unwrap().to_string(), "45.133.1.7", "{text}");
        }
    }

    #[test]
    fn fields_are_tried_in_order() {
        let record = r#"{"peerIP":"8.8.8.8","src_ip":"45.133.1.7"}"#;
        assert_eq!(source_of(record).unwrap(), "45.133.1.7");
    }

    #[test]
    fn non_string_and_non_address_values_do_not_count() {
        assert_eq!(source_of(r#"{"src_ip":758382855}"#), None);
        assert_eq!(source_of(r#"{"src_ip":["45.133.1.7"]}"#), None);
        assert_eq!(source_of(r#"{"src_ip":"!45.133.1.7"}"#), None);
        assert_eq!(
            source_of(r#"{"src_ip":"google.com","source.ip":"45.133.1.7"}"#).unwrap(),
            "45.133.1.7"
        );
    }

    #[test]
    fn only_objects_are_records() {
        for text in ["[]", "\"45.133.1.7\"", "12", "null", "{", "", "{\"a\":1} x"] {
            assert!(parse(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn hit_is_written_nested_after_existing_keys() {
        let mut record =
            parse(r#"{"eventid":"cowrie.session.connect","src_ip":"45.133.1.7"}"#).unwrap();
        write_hit(&mut record, &hit(), &settings(""));
        assert_eq!(
            Value::Object(record).to_string(),
            concat!(
                r#"{"eventid":"cowrie.session.connect","src_ip":"45.133.1.7","misp":{"#,
                r#""event_id":"1342","event_info":"OSINT SSH brute force feed","#,
                r#""threat_level_id":3,"threat_level":"Low","org":"CIRCL","#,
                r#""ioc_updated":1651234567,"attribute_count":4512,"#,
                r#""event_url":"https://misp.example.org/events/view/1342"},"tags":["misp_hit"]}"#
            )
        );
    }

    #[test]
    fn hit_is_written_dotted_when_configured() {
        let mut record = parse(r#"{"src_ip":"45.133.1.7"}"#).unwrap();
        write_hit(&mut record, &hit(), &settings(r#","output":"dotted""#));
        let keys: Vec<&str> = record.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "src_ip",
                "misp.event_id",
                "misp.event_info",
                "misp.threat_level_id",
                "misp.threat_level",
                "misp.org",
                "misp.ioc_updated",
                "misp.attribute_count",
                "misp.event_url",
                "tags"
            ]
        );
    }

    #[test]
    fn tags_become_an_array_that_keeps_what_was_there() {
        let s = settings("");
        let cases = [
            (r#"{"tags":"cowrie"}"#, r#"["cowrie","misp_hit"]"#),
            (r#"{"tags":["a"]}"#, r#"["a","misp_hit"]"#),
            (r#"{"tags":["misp_hit"]}"#, r#"["misp_hit"]"#),
            (r#"{"tags":null}"#, r#"["misp_hit"]"#),
            (r#"{"tags":7}"#, "7"),
        ];
        for (input, tags) in cases {
            let mut record = parse(input).unwrap();
            write_hit(&mut record, &hit(), &s);
            assert_eq!(record["tags"].to_string(), tags, "{input}");
        }
    }

    #[test]
    fn failure_adds_reason_and_tag_only() {
        let mut record = parse(r#"{"src_ip":"45.133.1.7","tags":"x"}"#).unwrap();
        write_failure(&mut record, "timeout", &settings(""));
        assert_eq!(
            Value::Object(record).to_string(),
            concat!(
                r#"{"src_ip":"45.133.1.7","tags":["x","_misp_lookup_failure"],"#,
                r#""misp":{"error":"timeout"}}"#
            )
        );
    }

    #[test]
    fn existing_misp_object_is_extended() {
        let mut record = parse(r#"{"misp":{"note":"kept"}}"#).unwrap();
        write_failure(&mut record, "http_403", &settings(""));
        assert_eq!(record["misp"].to_string(), r#"{"note":"kept","error":"http_403"}"#);
    }
}
