//! Hostile and broken input: attacker-written records and broken MISP
//! answers. Nothing may reach MISP that is not a canonical address, nothing may
//! panic, and every record comes out (unchanged where it cannot be enriched).

mod common;

use common::{ManualClock, ScriptedMisp, enricher, ok, ok_fixture};
use serde_json::{Value, json};

const ATTRIBUTES: &str = "/attributes/restSearch";
const EVENTS: &str = "/events/restSearch";

fn listening_misp() -> ScriptedMisp {
    ScriptedMisp::default()
        .always(ATTRIBUTES, ok_fixture("attributes-2.4-strings.json"))
        .always(EVENTS, ok_fixture("events-metadata-2.4.json"))
}

fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

#[test]
fn hostile_records_come_back_unchanged_and_never_reach_misp() {
    let long = "4".repeat(10 * 1024);
    let inputs = vec![
        json!({"src_ip": "%"}).to_string(),
        json!({"src_ip": "!45.133.1.7"}).to_string(),
        json!({"src_ip": "45.133.1.7&&8.8.8.8"}).to_string(),
        json!({"src_ip": "45.133.1.7||8.8.8.8"}).to_string(),
        json!({"src_ip": "45.133.1.7 "}).to_string(),
        json!({"src_ip": "\u{0}45.133.1.7"}).to_string(),
        json!({"src_ip": long}).to_string(),
        json!({"src_ip": 758382855}).to_string(),
        json!({"src_ip": ["45.133.1.7"]}).to_string(),
        json!({"src_ip": {"ip": "45.133.1.7"}}).to_string(),
        json!({"src_ip": null, "source": "45.133.1.7"}).to_string(),
        json!({"source": {"address": {"address": "45.133.1.7"}}}).to_string(),
        r#"{"src_ip":"\ud800"}"#.to_string(),
        nested(200, r#"{"src_ip":"45.133.1.7"}"#),
        "\u{feff}{}".to_string(),
        "{}".to_string(),
        "null".to_string(),
        "   ".to_string(),
    ];
    let misp = listening_misp();
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    assert_eq!(enricher.enrich_batch(&inputs), inputs);
    assert!(misp.requests().is_empty(), "{:?}", misp.requests());
}

#[test]
fn control_characters_and_escapes_survive_enrichment() {
    let misp = listening_misp();
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let input =
        r#"{"src_ip":"45.133.1.7","version":"\u0016\u0003\u0001\u0000\u00a5","x":"\u2028"}"#;
    let output: Value = serde_json::from_str(&enricher.enrich(input)).unwrap();
    let original: Value = serde_json::from_str(input).unwrap();
    assert_eq!(output["version"], original["version"]);
    assert_eq!(output["x"], original["x"]);
    assert_eq!(output["misp"]["event_id"], "1342");
}

#[test]
fn a_one_megabyte_record_is_enriched() {
    let misp = listening_misp();
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let input = json!({"src_ip": "45.133.1.7", "data": "A".repeat(1 << 20)}).to_string();
    let output = enricher.enrich(&input);
    assert!(output.starts_with(&input[..input.len() - 1]), "the record is kept whole");
    assert!(output.ends_with(r#""tags":["misp_hit"]}"#));
}

/// Found by fuzzing: serde_json's `arbitrary_precision` read an object whose
/// first key is its private number marker as a number, so the record passed
/// unenriched through one path and enriched through the other.
#[test]
fn serde_json_marker_keys_are_ordinary_keys() {
    let misp = listening_misp();
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    for input in [
        r#"{"$serde_json::private::Number":"x","src_ip":"45.133.1.7"}"#,
        r#"{"$serde_json::private::Number":"x","src_ip":"45.133.1.7","tags":[]}"#,
    ] {
        let output: Value = serde_json::from_str(&enricher.enrich(input)).unwrap();
        assert_eq!(output["misp"]["event_id"], "1342", "{input}");
        assert_eq!(output["$serde_json::private::Number"], "x");
    }
}

/// Found by fuzzing: a number beyond f64's range is well-formed JSON that
/// serde_json cannot hold as a value. The record keeps its text and is
/// enriched.
#[test]
fn numbers_beyond_f64_do_not_stop_enrichment() {
    let misp = listening_misp();
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let input = r#"{"src_ip":"45.133.1.7","src_port":501.2e3333}"#;
    let output = enricher.enrich(input);
    assert!(output.starts_with(r#"{"src_ip":"45.133.1.7","src_port":501.2e3333,"misp":{"#));
    assert!(output.ends_with(r#""tags":["misp_hit"]}"#));
}

/// Found by fuzzing: without serde_json's exact float parsing, a record that
/// needs the full parse (it has `tags`) could come back with a float's last
/// digit moved.
#[test]
fn floats_survive_the_full_parse_exactly() {
    let misp = listening_misp();
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let input = r#"{"src_ip":"45.133.1.7","n":555555555555555.555,"tags":[]}"#;
    let output: Value = serde_json::from_str(&enricher.enrich(input)).unwrap();
    let original: Value = serde_json::from_str(input).unwrap();
    assert_eq!(output["n"], original["n"]);
    assert_eq!(output["n"].to_string(), "555555555555555.56");
}

#[test]
fn duplicate_keys_look_up_the_last_value() {
    let misp = listening_misp();
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let output = enricher.enrich(r#"{"src_ip":"10.0.0.1","src_ip":"45.133.1.7"}"#);
    let values: Vec<String> =
        misp.requests_to(ATTRIBUTES).iter().flat_map(|request| request.values()).collect();
    assert_eq!(values, ["45.133.1.7"]);
    let kept = r#"{"src_ip":"10.0.0.1","src_ip":"45.133.1.7","misp":"#;
    assert!(output.starts_with(kept), "the record's text is kept: {output}");
}

/// MISP answers in every broken shape: none may panic, and none may pass for
/// a hit with made-up fields.
#[test]
fn broken_misp_answers_never_panic() {
    let deep = format!(
        r#"{{"response":{{"Attribute":[{{"value":"45.133.1.7","Event":{}}}]}}}}"#,
        nested(500, r#"{"id":"1"}"#)
    );
    let huge: Vec<Value> = (0..20_000).map(|i| json!({"value": format!("x{i}")})).collect();
    let bodies = vec![
        r#"{"response":{"Attribute":[{}]}}"#.to_string(),
        r#"{"response":{"Attribute":[{"value":null,"Event":null}]}}"#.to_string(),
        r#"{"response":{"Attribute":[{"value":"45.133.1.7","Event":{"id":-1}}]}}"#.to_string(),
        r#"{"response":{"Attribute":[{"value":"45.133.1.7","Event":{"id":1.5}}]}}"#.to_string(),
        r#"{"response":{"Attribute":[{"value":"45.133.1.7","Event":{"id":"1e3"}}]}}"#.to_string(),
        r#"{"response":{"Attribute":[{"value":"45.133.1.7","Event":[]}]}}"#.to_string(),
        r#"{"response":{"Attribute":[{"value":"45.133.1.7","timestamp":-5,
            "Event":{"id":"9","threat_level_id":{"x":1},"info":7,"Orgc":"CIRCL"}}]}}"#
            .to_string(),
        r#"{"response":{"Attribute":{"0":{}}}}"#.to_string(),
        r#"{"response":null}"#.to_string(),
        json!({"response": {"Attribute": huge}}).to_string(),
        deep,
        "[]".to_string(),
        String::new(),
    ];
    for body in bodies {
        let misp = ScriptedMisp::default()
            .always(ATTRIBUTES, ok(body.clone()))
            .always(EVENTS, ok(r#"{"response":[]}"#));
        let mut enricher = enricher(&misp, &ManualClock::default(), "");
        let output: Value =
            serde_json::from_str(&enricher.enrich(r#"{"src_ip":"45.133.1.7"}"#)).unwrap();
        let short = &body[..body.len().min(80)];
        match output.get("misp") {
            None => {}
            Some(misp) if misp.get("error").is_some() => {
                assert_eq!(misp.as_object().unwrap().len(), 1, "{short}");
            }
            Some(misp) => {
                let id = misp["event_id"].as_str().unwrap();
                assert!(id.chars().all(|c| c.is_ascii_digit()), "{short}");
            }
        }
    }
}

#[test]
fn wrongly_typed_fields_fall_back_to_safe_values() {
    let body = r#"{"response":{"Attribute":[{"value":"45.133.1.7","timestamp":"soon",
        "Event":{"id":"9","threat_level_id":{"x":1},"info":7,"Orgc":"CIRCL"}}]}}"#;
    let misp = ScriptedMisp::default()
        .always(ATTRIBUTES, ok(body))
        .always(EVENTS, ok(r#"{"response":[{"Event":{"id":"9","attribute_count":"many"}}]}"#));
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let output: Value =
        serde_json::from_str(&enricher.enrich(r#"{"src_ip":"45.133.1.7"}"#)).unwrap();
    assert_eq!(
        output["misp"],
        json!({"event_id": "9", "event_info": "", "threat_level_id": 4,
               "threat_level": "Undefined", "event_url": "https://misp.soc.example/events/view/9"})
    );
}
