//! Behaviour of the enricher against a scripted MISP: what is asked, how
//! often, and what each outcome writes.

mod common;

use std::time::Duration;

use common::{API_KEY, ManualClock, ScriptedMisp, enricher, ok, ok_fixture, status};
use misp_enrich::breaker::BreakerState;
use misp_enrich::{HttpResponse, Stats, TransportError};
use serde_json::{Value, json};

const ATTRIBUTES: &str = "/attributes/restSearch";
const EVENTS: &str = "/events/restSearch";

fn record(src: &str) -> String {
    json!({"eventid": "cowrie.login.failed", "src_ip": src, "session": "c0ffee000001"}).to_string()
}

fn misp_with(attributes: &str) -> ScriptedMisp {
    ScriptedMisp::default()
        .always(ATTRIBUTES, ok_fixture(attributes))
        .always(EVENTS, ok_fixture("events-metadata-2.5.json"))
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn a_batch_asks_once_for_each_distinct_address() {
    let misp = misp_with("attributes-2.4-strings.json");
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let records: Vec<String> =
        ["45.133.1.7", "193.32.162.50", "45.133.1.7", "45.133.1.7", "193.32.162.50"]
            .iter()
            .map(|ip| record(ip))
            .collect();
    let output = enricher.enrich_batch(&records);

    assert_eq!(output.len(), 5);
    let searches = misp.requests_to(ATTRIBUTES);
    assert_eq!(searches.len(), 1);
    assert_eq!(searches[0].values(), ["45.133.1.7", "193.32.162.50"]);
    assert_eq!(misp.requests_to(EVENTS).len(), 1);
    assert_eq!(
        enricher.stats(),
        Stats {
            records_seen: 5,
            hits: 3,
            misses: 2,
            failures: 0,
            skipped: 0,
            cache_hits: 3,
            misp_requests: 2,
            ..Stats::default()
        }
    );
}

#[test]
fn every_request_carries_the_key_and_json_headers() {
    let misp = misp_with("attributes-2.4-strings.json");
    enricher(&misp, &ManualClock::default(), "").enrich(&record("45.133.1.7"));
    let requests = misp.requests();
    assert_eq!(requests.len(), 2);
    for request in requests {
        assert_eq!(
            request.headers,
            [
                ("Authorization".to_string(), API_KEY.to_string()),
                ("Accept".into(), "application/json".into()),
                ("Content-Type".into(), "application/json".into()),
            ]
        );
    }
}

#[test]
fn answers_are_reused_until_their_ttl_expires() {
    let misp = misp_with("attributes-2.4-strings.json");
    let clock = ManualClock::default();
    let mut enricher = enricher(&misp, &clock, r#","hit_ttl_secs":100,"miss_ttl_secs":10"#);
    let hit = record("45.133.1.7");
    let miss = record("193.32.162.50");

    enricher.enrich_batch(&[&hit, &miss]);
    clock.advance(Duration::from_secs(9));
    enricher.enrich_batch(&[&hit, &miss]);
    assert_eq!(misp.requests_to(ATTRIBUTES).len(), 1, "both answers still cached");

    clock.advance(Duration::from_secs(1));
    enricher.enrich_batch(&[&hit, &miss]);
    let searches = misp.requests_to(ATTRIBUTES);
    assert_eq!(searches.len(), 2);
    assert_eq!(searches[1].values(), ["193.32.162.50"], "only the miss expired");

    clock.advance(Duration::from_secs(90));
    enricher.enrich_batch(&[&hit]);
    assert_eq!(misp.requests_to(ATTRIBUTES).last().unwrap().values(), ["45.133.1.7"]);
}

#[test]
fn single_record_enrich_uses_the_cache() {
    let misp = misp_with("attributes-2.4-strings.json");
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let first = enricher.enrich(&record("45.133.1.7"));
    let second = enricher.enrich(&record("45.133.1.7"));
    assert_eq!(first, second);
    assert_eq!(misp.requests_to(ATTRIBUTES).len(), 1);
    assert_eq!(enricher.stats().cache_hits, 1);
}

#[test]
fn failures_are_not_cached() {
    let misp = ScriptedMisp::default()
        .then(ATTRIBUTES, status(503, "<html>Service Unavailable</html>"))
        .then(ATTRIBUTES, status(502, "<html>Bad Gateway</html>"))
        .always(ATTRIBUTES, ok_fixture("attributes-2.4-strings.json"))
        .always(EVENTS, ok_fixture("events-metadata-2.4.json"));
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let input = record("45.133.1.7");

    let first = parsed(&enricher.enrich(&input));
    assert_eq!(first["misp"], json!({"error": "http_503"}));
    assert_eq!(first["tags"], json!(["_misp_lookup_failure"]));
    let second = parsed(&enricher.enrich(&input));
    assert_eq!(second["misp"], json!({"error": "http_502"}));
    let third = parsed(&enricher.enrich(&input));
    assert_eq!(third["misp"]["event_id"], "1342");
    assert_eq!(third["tags"], json!(["misp_hit"]));

    assert_eq!(misp.requests_to(ATTRIBUTES).len(), 3);
    let stats = enricher.stats();
    assert_eq!((stats.failures, stats.hits, stats.cache_hits), (2, 1, 0));
    assert_eq!((stats.failed_requests, stats.breaker_trips), (2, 0));
}

fn distinct_records(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| record(&format!("45.{}.{}.{}", 100 + i / 65536, i / 256 % 256, i % 256)))
        .collect()
}

#[test]
fn an_outage_costs_one_timeout_per_cooldown() {
    let misp = ScriptedMisp::default().always(ATTRIBUTES, Err(TransportError::Timeout));
    let clock = ManualClock::default();
    let mut enricher = enricher(&misp, &clock, "");
    let records = distinct_records(1000);

    let mut reasons = Vec::new();
    for batch in records.chunks(100) {
        for line in enricher.enrich_batch(batch) {
            reasons.push(parsed(&line)["misp"]["error"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(reasons.len(), 1000, "every record comes out");
    assert!(reasons[..100].iter().all(|r| r == "timeout"));
    assert!(reasons[100..].iter().all(|r| r == "unavailable"));
    assert_eq!(misp.requests().len(), 1, "one timeout, then no more requests");
    assert_eq!(enricher.stats().breaker, BreakerState::Open);

    clock.advance(Duration::from_secs(5));
    assert_eq!(enricher.stats().breaker, BreakerState::HalfOpen);
    enricher.enrich_batch(&records[..200]);
    assert_eq!(misp.requests().len(), 2, "one probe after the cool-down");
    clock.advance(Duration::from_secs(9));
    enricher.enrich_batch(&records[..200]);
    assert_eq!(misp.requests().len(), 2, "the cool-down doubled");
    clock.advance(Duration::from_secs(1));
    enricher.enrich_batch(&records[..200]);
    assert_eq!(misp.requests().len(), 3);
    assert_eq!(enricher.stats().breaker_trips, 3);
}

#[test]
fn a_successful_probe_closes_the_breaker() {
    let misp = ScriptedMisp::default()
        .then(ATTRIBUTES, Err(TransportError::ConnectionRefused))
        .always(ATTRIBUTES, ok_fixture("attributes-2.4-strings.json"))
        .always(EVENTS, ok_fixture("events-metadata-2.4.json"));
    let clock = ManualClock::default();
    let mut enricher = enricher(&misp, &clock, "");
    let failed = parsed(&enricher.enrich(&record("45.133.1.7")));
    assert_eq!(failed["misp"]["error"], "connection_refused");
    clock.advance(Duration::from_secs(5));
    let probed = parsed(&enricher.enrich(&record("45.133.1.7")));
    assert_eq!(probed["misp"]["event_id"], "1342");
    assert_eq!(enricher.stats().breaker, BreakerState::Closed);
    enricher.enrich(&record("193.32.162.50"));
    assert_eq!(misp.requests_to(ATTRIBUTES).len(), 3);
}

#[test]
fn a_flaky_misp_keeps_being_asked() {
    let mut misp = ScriptedMisp::default();
    for _ in 0..10 {
        misp = misp
            .then(ATTRIBUTES, status(500, "{}"))
            .then(ATTRIBUTES, ok_fixture("attributes-empty.json"));
    }
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let outputs: Vec<String> = distinct_records(20).iter().map(|r| enricher.enrich(r)).collect();
    assert_eq!(misp.requests().len(), 20);
    let failed = outputs.iter().filter(|o| o.contains("_misp_lookup_failure")).count();
    assert_eq!(failed, 10, "every other lookup fails, the rest are misses");
    assert_eq!(enricher.stats().breaker_trips, 0);
}

#[test]
fn rate_limiting_waits_for_the_reset_time() {
    let limited = HttpResponse::new(429, r#"{"name":"Rate limit exceeded.","message":"x"}"#)
        .with_header("X-Rate-Limit-Reset", "60");
    let misp = ScriptedMisp::default()
        .then(ATTRIBUTES, Ok(limited))
        .always(ATTRIBUTES, ok_fixture("attributes-empty.json"));
    let clock = ManualClock::default();
    let mut enricher = enricher(&misp, &clock, "");
    let first = parsed(&enricher.enrich(&record("45.133.1.7")));
    assert_eq!(first["misp"]["error"], "http_429");
    clock.advance(Duration::from_secs(59));
    let waiting = parsed(&enricher.enrich(&record("45.133.1.7")));
    assert_eq!(waiting["misp"]["error"], "unavailable");
    clock.advance(Duration::from_secs(1));
    assert_eq!(enricher.enrich(&record("45.133.1.7")), record("45.133.1.7"));
    assert_eq!(misp.requests().len(), 2);
}

#[test]
fn expired_answers_are_served_while_misp_fails() {
    let misp = ScriptedMisp::default()
        .then(ATTRIBUTES, ok_fixture("attributes-2.4-strings.json"))
        .always(ATTRIBUTES, Err(TransportError::Timeout))
        .always(EVENTS, ok_fixture("events-metadata-2.4.json"));
    let clock = ManualClock::default();
    let mut enricher =
        enricher(&misp, &clock, r#","hit_ttl_secs":60,"miss_ttl_secs":60,"max_stale_secs":600"#);
    let batch = [record("45.133.1.7"), record("193.32.162.50")];
    let fresh = enricher.enrich_batch(&batch);

    clock.advance(Duration::from_secs(300));
    let stale = enricher.enrich_batch(&batch);
    assert_eq!(stale, fresh, "the hit keeps its fields, the miss stays unchanged");
    assert_eq!(enricher.stats().stale_answers, 2);
    assert_eq!(misp.requests_to(ATTRIBUTES).len(), 2, "MISP was asked first");

    clock.advance(Duration::from_secs(400));
    let too_old = enricher.enrich_batch(&batch);
    assert_eq!(parsed(&too_old[0])["misp"], json!({"error": "timeout"}));
    assert_eq!(parsed(&too_old[1])["misp"], json!({"error": "timeout"}));
}

#[test]
fn a_failed_metadata_request_leaves_out_only_the_count() {
    let misp = ScriptedMisp::default()
        .always(ATTRIBUTES, ok_fixture("attributes-2.4-strings.json"))
        .then(EVENTS, status(500, "{}"))
        .always(EVENTS, ok_fixture("events-metadata-2.4.json"));
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let batch = [record("45.133.1.7"), record("193.32.162.50")];
    let first = enricher.enrich_batch(&batch);
    let hit = parsed(&first[0]);
    assert_eq!(hit["misp"]["event_id"], "1342");
    assert_eq!(hit["misp"].get("attribute_count"), None);
    assert_eq!(hit["tags"], json!(["misp_hit"]));
    assert_eq!(first[1], batch[1], "the miss is a miss");

    let second = enricher.enrich_batch(&batch);
    assert_eq!(parsed(&second[0])["misp"]["attribute_count"], 4512, "the hit was not cached");
    let searched: Vec<Vec<String>> =
        misp.requests_to(ATTRIBUTES).iter().map(|r| r.values()).collect();
    assert_eq!(searched, [vec!["45.133.1.7", "193.32.162.50"], vec!["45.133.1.7"]]);
}

#[test]
fn attribute_counts_are_cached_per_event() {
    // Both addresses of the composite fixture resolve to events 1555 and 1601;
    // a later batch with a new address in a known event asks no metadata.
    let misp = misp_with("attributes-composite.json");
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    enricher.enrich(&record("185.220.101.34"));
    enricher.enrich(&record("91.92.240.11"));
    let asked: Vec<Value> =
        misp.requests_to(EVENTS).iter().map(|r| r.body["eventid"].clone()).collect();
    assert_eq!(asked, [json!(["1555"]), json!(["1601"])]);

    enricher.enrich(&record("185.220.101.34"));
    assert_eq!(misp.requests_to(EVENTS).len(), 2);
}

/// A page of `n` attributes for `value` in event `event`.
fn page(value: &str, event: u64, n: usize) -> common::Reply {
    let attributes: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": i, "value": value, "timestamp": 1_600_000_000 + i as u64, "deleted": false,
                   "Event": {"id": event, "info": format!("event {event}"), "threat_level_id": 3}})
        })
        .collect();
    ok(json!({"response": {"Attribute": attributes}}).to_string())
}

#[test]
fn paging_continues_until_a_short_page() {
    let misp = ScriptedMisp::default()
        .then(ATTRIBUTES, page("45.133.1.7", 10, 500))
        .then(ATTRIBUTES, page("45.133.1.7", 10, 500))
        .then(ATTRIBUTES, page("193.32.162.50", 11, 3))
        .always(EVENTS, ok(r#"{"response":[]}"#));
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let output = enricher.enrich_batch(&[record("45.133.1.7"), record("193.32.162.50")]);

    let pages: Vec<Value> =
        misp.requests_to(ATTRIBUTES).iter().map(|r| r.body["page"].clone()).collect();
    assert_eq!(pages, [json!(1), json!(2), json!(3)]);
    for request in misp.requests_to(ATTRIBUTES) {
        assert_eq!(request.body["limit"], 500);
    }
    assert_eq!(parsed(&output[0])["misp"]["event_id"], "10");
    assert_eq!(parsed(&output[1])["misp"]["event_id"], "11", "not cut off by the busy address");
    assert_eq!(parsed(&output[1])["misp"].get("attribute_count"), None);
}

#[test]
fn a_page_longer_than_the_limit_is_taken_as_complete() {
    let misp = ScriptedMisp::default()
        .then(ATTRIBUTES, page("45.133.1.7", 10, 600))
        .always(EVENTS, ok(r#"{"response":[]}"#));
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let output = parsed(&enricher.enrich(&record("45.133.1.7")));
    assert_eq!(output["misp"]["event_id"], "10");
    assert_eq!(misp.requests_to(ATTRIBUTES).len(), 1);
}

#[test]
fn non_global_and_unparseable_sources_never_reach_misp() {
    let misp = misp_with("attributes-2.4-strings.json");
    let mut enricher =
        enricher(&misp, &ManualClock::default(), r#","skip_networks":["45.133.0.0/16"]"#);
    let inputs = [
        record("10.0.0.1"),
        record("::1"),
        record("100.64.3.2"),
        record("203.0.113.9"),
        record("45.133.1.7"),
        record("!45.133.1.7"),
        record("45.133.1.%"),
        record("1.2.3.4&&5.6.7.8"),
        record("1.2.3.4 "),
        json!({"src_ip": 16909060}).to_string(),
        json!({"src_ip": ["1.2.3.4"]}).to_string(),
        "not json".to_string(),
        "[1,2]".to_string(),
        r#"{"src_ip":"1.2.3.4""#.to_string(),
        "".to_string(),
    ];
    let output = enricher.enrich_batch(&inputs);
    assert_eq!(output, inputs, "every record comes back byte for byte");
    assert!(misp.requests().is_empty());
    assert_eq!(enricher.stats().skipped, inputs.len() as u64);
}

#[test]
fn only_canonical_addresses_are_sent() {
    let misp = ScriptedMisp::default()
        .always(ATTRIBUTES, ok_fixture("attributes-empty.json"))
        .always(EVENTS, ok(r#"{"response":[]}"#));
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    enricher.enrich_batch(&[
        record("::ffff:185.220.101.34"),
        record("2A01:04F8:0C17:2E3F:0000:0000:0000:0001"),
        record("185.220.101.34"),
    ]);
    let searches = misp.requests_to(ATTRIBUTES);
    assert_eq!(searches.len(), 1);
    assert_eq!(searches[0].values(), ["185.220.101.34", "2a01:4f8:c17:2e3f::1"]);
}

#[test]
fn a_miss_returns_the_record_unchanged() {
    let misp = misp_with("attributes-empty.json");
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let spaced = concat!(
        r#"{"eventid": "cowrie.session.closed", "src_ip": "193.32.162.50", "#,
        r#""duration": 30.96518325805664}"#
    );
    assert_eq!(enricher.enrich(spaced), spaced);
    assert_eq!(enricher.stats().misses, 1);
}

#[test]
fn enriched_records_keep_their_own_text() {
    let misp = misp_with("attributes-2.4-strings.json");
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let input = concat!(
        r#"{"zeta":1,"src_ip":"45.133.1.7","alpha":30.96518325805664,"#,
        r#""big":18446744073709551617,"nul":"a\u0000b","msg":"caf\u00e9"}"#
    );
    let output = enricher.enrich(input);
    let kept = &input[..input.len() - 1];
    assert!(output.starts_with(kept), "{output}");
    assert!(output[kept.len()..].starts_with(r#","misp":{"event_id":"1342""#), "{output}");
}

#[test]
fn dotted_output_writes_flat_keys() {
    let misp = misp_with("attributes-2.4-strings.json");
    let mut enricher = enricher(&misp, &ManualClock::default(), r#","output":"dotted""#);
    let output = parsed(&enricher.enrich(&record("45.133.1.7")));
    assert_eq!(output["misp.event_id"], "1342");
    assert_eq!(output["misp.threat_level"], "Low");
    assert_eq!(output["misp.event_url"], "https://misp.soc.example/events/view/1342");
    assert!(output.get("misp").is_none());
}

#[test]
fn failure_reasons_name_the_cause() {
    let cases: [(common::Reply, &str); 6] = [
        (Err(TransportError::Timeout), "timeout"),
        (Err(TransportError::ConnectionRefused), "connection_refused"),
        (Err(TransportError::Tls), "tls_error"),
        (status(429, r#"{"name":"Rate limit exceeded."}"#), "http_429"),
        (ok("<html>login</html>"), "bad_response"),
        (
            ok(r#"{"response":{"Attribute":[{"value":"45.133.1.7","Event":{"id":"1"}}]"#),
            "bad_response",
        ),
    ];
    for (reply, reason) in cases {
        let misp = ScriptedMisp::default().always(ATTRIBUTES, reply);
        let output =
            parsed(&enricher(&misp, &ManualClock::default(), "").enrich(&record("45.133.1.7")));
        assert_eq!(output["misp"], json!({"error": reason}));
        assert_eq!(output["tags"], json!(["_misp_lookup_failure"]));
    }
}

#[test]
fn large_batches_are_split_into_groups_of_addresses() {
    let misp = ScriptedMisp::default()
        .always(ATTRIBUTES, ok_fixture("attributes-empty.json"))
        .always(EVENTS, ok(r#"{"response":[]}"#));
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let records: Vec<String> =
        (0..250).map(|i| record(&format!("45.133.{}.{}", i / 200, i % 200 + 1))).collect();
    let output = enricher.enrich_batch(&records);
    assert_eq!(output, records);
    let sizes: Vec<usize> = misp.requests_to(ATTRIBUTES).iter().map(|r| r.values().len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
}

#[test]
fn changes_name_only_the_records_that_change() {
    let misp = misp_with("attributes-2.4-strings.json");
    let mut enricher = enricher(&misp, &ManualClock::default(), "");
    let records = [
        record("45.133.1.7"),
        record("193.32.162.50"),
        record("10.0.0.1"),
        "not json".to_string(),
        record("45.133.1.7"),
    ];
    let changes = enricher.enrich_changes(&records);

    let changed: Vec<bool> = changes.iter().map(Option::is_some).collect();
    assert_eq!(changed, [true, false, false, false, true]);
    let hit = parsed(changes[0].as_deref().unwrap());
    assert_eq!(hit["src_ip"], "45.133.1.7");
    assert_eq!(hit["tags"], json!(["misp_hit"]));
    assert_eq!(changes[4], changes[0]);
    // The whole-record form writes the same hits and hands the rest back as
    // they came.
    let full = enricher.enrich_batch(&records);
    assert_eq!(full[1..4], records[1..4]);
    assert_eq!(Some(&full[0]), changes[0].as_ref());
    assert_eq!(enricher.stats().skipped, 4);
}

#[test]
fn a_changed_answer_is_written_after_its_ttl() {
    let first = String::from_utf8(common::fixture("attributes-2.4-strings.json")).unwrap();
    let renamed = first.replace("OSINT - SSH brute-force sources (feed)", "Renamed feed");
    assert_ne!(first, renamed);
    let misp = ScriptedMisp::default()
        .then(ATTRIBUTES, ok(first))
        .always(ATTRIBUTES, ok(renamed))
        .always(EVENTS, ok_fixture("events-metadata-2.5.json"));
    let clock = ManualClock::default();
    let mut enricher = enricher(&misp, &clock, r#","hit_ttl_secs":100"#);
    let hit = record("45.133.1.7");

    let info = |text: &str| parsed(text)["misp"]["event_info"].clone();
    assert_eq!(info(&enricher.enrich(&hit)), "OSINT - SSH brute-force sources (feed)");
    assert_eq!(info(&enricher.enrich(&hit)), "OSINT - SSH brute-force sources (feed)");
    clock.advance(Duration::from_secs(100));
    // The refreshed answer is written, not the text rendered for the old one.
    assert_eq!(info(&enricher.enrich(&hit)), "Renamed feed");
    assert_eq!(misp.requests_to(ATTRIBUTES).len(), 2);
}
