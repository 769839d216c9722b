//! Each Cowrie fixture replayed through the component against the
//! in-process fake MISP: the enriched output is snapshotted, and every run
//! checks order, request hygiene and caching.

mod common;

use std::collections::BTreeMap;

use common::*;
use misp_enrich_host::fake::{FakeMisp, NumberStyle};
use serde_json::{Value, json};

/// Replays one fixture in batches of `batch` and checks the invariants that
/// hold for every log; returns the output and the fake for further checks.
async fn replay_fixture(name: &str, batch: usize) -> (Vec<String>, FakeMisp) {
    let input = fixture(name);
    let fake = FakeMisp::new(dataset());
    let mut enricher = fake_enricher(&fake, json!({})).await;
    let output = replay(&mut enricher, &input, batch).await;

    assert_same_records_in_order(&input, &output);
    let requests = fake.requests();
    assert_well_formed(&requests, &fake.dataset().api_key);
    for (address, times) in searches_per_address(&requests) {
        assert_eq!(times, 1, "{address} searched {times} times within its TTL");
    }
    (output, fake)
}

#[tokio::test]
async fn cowrie_1x_spaced_log_is_enriched() {
    let (output, _) = replay_fixture("cowrie/cowrie-1.x-spaced.ndjson", 4).await;
    insta::assert_snapshot!(output.join("\n"));
}

#[tokio::test]
async fn cowrie_2x_log_with_quirks_is_enriched() {
    let (output, _) = replay_fixture("cowrie/cowrie-2.x-quirks.ndjson", 5).await;
    insta::assert_snapshot!(output.join("\n"));
}

#[tokio::test]
async fn cowrie_3x_log_with_telnet_and_ipv6_is_enriched() {
    let (output, _) = replay_fixture("cowrie/cowrie-3.x-current.ndjson", 6).await;
    insta::assert_snapshot!(output.join("\n"));
}

#[tokio::test]
async fn renamed_fields_and_broken_lines_are_handled() {
    let (output, fake) = replay_fixture("cowrie/renamed-and-broken.ndjson", 100).await;
    insta::assert_snapshot!(output.join("\n"));

    // Private, documentation and malformed sources are never sent.
    let searched: Vec<String> = searches_per_address(&fake.requests()).into_keys().collect();
    for never in ["10.0.0.5", "192.168.1.20", "172.17.0.1", "203.0.113.5", "fe80::1"] {
        assert!(!searched.contains(&never.to_owned()), "{never} was sent to MISP");
    }
}

/// The outcome of each distinct source in the replay set, as a table a
/// reviewer can check against `fixtures/misp/demo.json`.
fn outcomes(input: &str, output: &[String]) -> BTreeMap<String, (usize, String)> {
    let mut table: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (before, after) in input.lines().zip(output) {
        let record: Value = serde_json::from_str(before).unwrap();
        let source = record["src_ip"].as_str().unwrap().to_owned();
        let outcome = match misp_of(after) {
            Some(misp) => hit_summary(&misp),
            None => "miss".to_owned(),
        };
        let entry = table.entry(source).or_insert((0, outcome.clone()));
        assert_eq!(entry.1, outcome, "one source, one outcome");
        entry.0 += 1;
    }
    table
}

#[tokio::test]
async fn replay_set_asks_each_address_once_and_mostly_hits_the_cache() {
    let input = fixture("cowrie/replay.ndjson");
    let fake = FakeMisp::new(dataset());
    let mut enricher = fake_enricher(&fake, json!({})).await;
    let output = replay(&mut enricher, &input, 500).await;
    assert_same_records_in_order(&input, &output);
    let requests = fake.requests();
    assert_well_formed(&requests, &fake.dataset().api_key);
    let searched = searches_per_address(&requests);
    assert_eq!(searched.len(), 85, "every distinct source looked up");
    assert!(searched.values().all(|&n| n == 1));

    let stats = enricher.stats().await.unwrap();
    assert_eq!(stats.records_seen, 3000);
    assert_eq!(stats.hits + stats.misses, 3000);
    assert_eq!(stats.misp_requests as usize, requests.len());
    assert_eq!(stats.cache_hits, 3000 - 85);

    // Known sources keep only hits, unknown ones only misses.
    let known: Vec<String> = outcomes(&input, &output)
        .into_iter()
        .filter(|(_, (_, outcome))| outcome != "miss")
        .map(|(source, (count, outcome))| format!("{source}: {count} records, {outcome}"))
        .collect();
    insta::assert_snapshot!(known.join("\n"));
    insta::assert_debug_snapshot!(stats);
}

#[tokio::test]
async fn same_records_again_are_answered_from_the_cache() {
    let input = fixture("cowrie/cowrie-3.x-current.ndjson");
    let fake = FakeMisp::new(dataset());
    let mut enricher = fake_enricher(&fake, json!({})).await;
    let first = replay(&mut enricher, &input, 100).await;
    let asked = fake.requests().len();
    let second = replay(&mut enricher, &input, 100).await;
    assert_eq!(first, second);
    assert_eq!(fake.requests().len(), asked, "no request within the TTL");
}

#[tokio::test]
async fn integer_ids_of_misp_25_give_the_same_output_as_strings() {
    let input = fixture("cowrie/cowrie-2.x-quirks.ndjson");
    let strings = FakeMisp::new(dataset());
    let mut data = dataset();
    data.number_style = NumberStyle::Integer;
    let integers = FakeMisp::new(data);

    let mut a = fake_enricher(&strings, json!({})).await;
    let mut b = fake_enricher(&integers, json!({})).await;
    assert_eq!(replay(&mut a, &input, 50).await, replay(&mut b, &input, 50).await);
}

#[tokio::test]
async fn one_by_one_and_batched_enrichment_agree() {
    let input = fixture("cowrie/renamed-and-broken.ndjson");
    let fake = FakeMisp::new(dataset());
    let mut batched = fake_enricher(&fake, json!({})).await;
    let expected = replay(&mut batched, &input, 100).await;

    let mut single = fake_enricher(&fake, json!({})).await;
    let mut got = Vec::new();
    for line in input.lines() {
        got.push(single.enrich(line).await.unwrap());
    }
    assert_eq!(got, expected);
}

#[tokio::test]
async fn warninglisted_resolver_is_a_miss_only_when_enforced() {
    let record = r#"{"eventid":"cowrie.session.connect","src_ip":"8.8.8.8"}"#;
    let fake = FakeMisp::new(dataset());
    let mut plain = fake_enricher(&fake, json!({})).await;
    let hit = plain.enrich(record).await.unwrap();
    assert_eq!(misp_of(&hit).unwrap()["event_id"], "1342");

    let mut enforcing = fake_enricher(&fake, json!({"enforce_warninglist": true})).await;
    assert_eq!(enforcing.enrich(record).await.unwrap(), record);
    let last = fake.requests().into_iter().rfind(|r| r.path == "/attributes/restSearch").unwrap();
    assert_eq!(last.json().unwrap()["enforceWarninglist"], true);
}

#[tokio::test]
async fn dotted_output_writes_flat_keys() {
    let record = r#"{"src_ip":"218.92.0.112"}"#;
    let fake = FakeMisp::new(dataset());
    let mut enricher = fake_enricher(&fake, json!({"output": "dotted"})).await;
    let out: Value = serde_json::from_str(&enricher.enrich(record).await.unwrap()).unwrap();
    assert_eq!(out["misp.event_id"], "1342");
    assert_eq!(out["misp.threat_level"], "Low");
    assert!(out.get("misp").is_none());
}
