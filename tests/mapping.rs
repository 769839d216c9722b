//! Snapshot tests: the same Cowrie records enriched against each MISP answer
//! in `fixtures/responses/`. Each snapshot was checked value by value against
//! its fixture (see the comments on each test for what to look for).

mod common;

use common::{ManualClock, ScriptedMisp, enricher, ok_fixture, status};

const ATTRIBUTES: &str = "/attributes/restSearch";
const EVENTS: &str = "/events/restSearch";

/// One record per way an address can arrive (`fixtures/records/sources.ndjson`):
/// raw Cowrie SSH, spaced 1.5-era JSON with an uncompressed IPv6 source, a
/// Telnet `::ffff:` source, nested and flat ECS `source.address`, then a
/// private source. Only the first five are looked up.
fn records() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/records/sources.ndjson");
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

fn replay(attributes: common::Reply, events: &str) -> String {
    let misp =
        ScriptedMisp::default().always(ATTRIBUTES, attributes).always(EVENTS, ok_fixture(events));
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    enricher.enrich_batch(&records()).join("\n")
}

/// 45.133.1.7 → event 1342 (Low, CIRCL, 4512 attributes, updated 1651234567);
/// the IPv6 source, written uncompressed, → event 1407 (Medium, 87
/// attributes); everything else misses and is unchanged.
#[test]
fn misp_2_4_string_typed_answer() {
    insta::assert_snapshot!(replay(
        ok_fixture("attributes-2.4-strings.json"),
        "events-metadata-2.4.json"
    ));
}

#[test]
fn misp_2_5_integer_typed_answer_maps_identically() {
    let v25 = replay(ok_fixture("attributes-2.5-integers.json"), "events-metadata-2.5.json");
    let v24 = replay(ok_fixture("attributes-2.4-strings.json"), "events-metadata-2.4.json");
    assert_eq!(v25, v24);
}

/// 45.133.1.7 is listed by five events: 1188 (High) only through a deleted
/// attribute, 1502 and 1499 (High, same timestamp), 1601 (Medium, newer),
/// 1342 (Low). Expect 1502: most severe, tie broken by the higher id; its
/// matching attribute is the composite `45.133.1.7|2222`.
#[test]
fn several_events_pick_the_most_severe() {
    insta::assert_snapshot!(replay(
        ok_fixture("attributes-multi-event.json"),
        "events-metadata-2.4.json"
    ));
}

/// The Telnet source `::ffff:185.220.101.34` matches `185.220.101.34|23`
/// (event 1555, whose count is null, so no attribute_count); the nested
/// `source.address` 91.92.240.11 matches the `domain|ip` attribute of event
/// 1601 in "Payload delivery"; its string `tags` becomes an array.
#[test]
fn composite_values_match_either_half() {
    insta::assert_snapshot!(replay(
        ok_fixture("attributes-composite.json"),
        "events-metadata-2.5.json"
    ));
}

#[test]
fn empty_answer_leaves_every_record_byte_for_byte() {
    let output = replay(ok_fixture("attributes-empty.json"), "events-metadata-2.4.json");
    assert_eq!(output, records().join("\n"));
}

/// Every looked-up record carries the failure tag and `misp.error`; the
/// private source is untouched; no hit field appears anywhere.
#[test]
fn forbidden_json_answer_is_a_failure() {
    let output = replay(status(403, common::fixture("error-403.json")), "events-metadata-2.4.json");
    assert!(!output.contains("misp_hit") && !output.contains("event_id"));
    insta::assert_snapshot!(output);
}

#[test]
fn forbidden_html_answer_is_the_same_failure() {
    let html = replay(status(403, common::fixture("error-403.html")), "events-metadata-2.4.json");
    let json = replay(status(403, common::fixture("error-403.json")), "events-metadata-2.4.json");
    assert_eq!(html, json);
}

#[test]
fn garbage_with_status_200_is_a_bad_response() {
    let output = replay(ok_fixture("garbage.bin"), "events-metadata-2.4.json");
    let lines: Vec<&str> = output.lines().collect();
    let records = records();
    assert_eq!(lines.len(), records.len());
    for line in &lines[..5] {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["misp"], serde_json::json!({"error": "bad_response"}), "{line}");
    }
    assert_eq!(lines[5], records[5]);
}
