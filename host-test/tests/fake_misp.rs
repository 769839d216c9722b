//! The fake MISP on its own: each test pins one documented MISP behaviour
//! (see `misp-api.md`), so the fake stays faithful as it grows.

mod common;

use bytes::Bytes;
use common::dataset;
use http::{Request, Response, StatusCode};
use misp_enrich_host::fake::{FakeMisp, NumberStyle};
use serde_json::{Value, json};

fn fake() -> FakeMisp {
    FakeMisp::new(dataset())
}

fn key() -> String {
    dataset().api_key
}

/// A request with the three headers a well-behaved client sends.
fn post(path: &str) -> http::request::Builder {
    Request::post(path)
        .header("authorization", key())
        .header("accept", "application/json")
        .header("content-type", "application/json")
}

fn send(fake: &FakeMisp, path: &str, body: Value) -> Response<Bytes> {
    let request = post(path).body(Bytes::from(body.to_string())).unwrap();
    fake.handle(&request)
}

/// JSON text for a snapshot, rendered by serde_json rather than insta's own
/// serializer, which would depend on serde_json's feature set (with
/// `arbitrary_precision` it shows a private number representation).
fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

fn json_of(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

/// The values of an attributes-scope answer.
fn values(response: &Response<Bytes>) -> Vec<String> {
    let body = json_of(response);
    body["response"]["Attribute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["value"].as_str().unwrap().to_owned())
        .collect()
}

fn search(body: Value) -> Vec<String> {
    values(&send(&fake(), "/attributes/restSearch", body))
}

#[test]
fn bearer_prefixed_key_is_refused() {
    let request = Request::post("/attributes/restSearch")
        .header("authorization", format!("Bearer {}", key()))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body(Bytes::from(r#"{"value":["45.133.1.7"]}"#))
        .unwrap();
    let response = fake().handle(&request);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(json_of(&response)["name"].as_str().unwrap().starts_with("Authentication failed."));
    assert_eq!(json_of(&response)["url"], "/attributes/restSearch");
    assert!(std::str::from_utf8(response.body()).unwrap().contains(r#""url":"\/attributes"#));
}

#[test]
fn wrong_key_without_accept_gets_an_html_page() {
    let request = Request::post("/attributes/restSearch")
        .header("authorization", "A".repeat(40))
        .header("content-type", "application/json")
        .body(Bytes::from("{}"))
        .unwrap();
    let response = fake().handle(&request);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["content-type"], "text/html; charset=UTF-8");
    assert!(response.body().starts_with(b"<!DOCTYPE html>"));
}

#[test]
fn post_without_json_content_type_is_a_400_in_json() {
    let request = Request::post("/attributes/restSearch")
        .header("authorization", key())
        .body(Bytes::from(r#"{"value":["45.133.1.7"]}"#))
        .unwrap();
    let response = fake().handle(&request);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/json");
}

#[test]
fn form_encoded_body_drops_every_filter() {
    let request = Request::post("/attributes/restSearch")
        .header("authorization", key())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from(r#"{"value":["45.133.1.7"]}"#))
        .unwrap();
    let response = fake().handle(&request);
    assert_eq!(response.status(), StatusCode::OK);
    // Every live attribute of the dataset (15 of 17), not only the one asked for.
    assert_eq!(values(&response).len(), 15);
}

#[test]
fn malformed_json_is_a_405() {
    let request = post("/attributes/restSearch").body(Bytes::from("{\"value\":")).unwrap();
    let response = fake().handle(&request);
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(json_of(&response)["message"].as_str().unwrap().starts_with("Invalid JSON input"));
}

#[test]
fn last_filters_on_publication_so_old_feeds_and_drafts_vanish() {
    let everything = search(json!({"value": ["45.133.1.7", "80.94.95.81"]}));
    assert_eq!(everything.len(), 4);
    // Published 2019-2023, the draft never: nothing is "from the last 30 days".
    assert!(search(json!({"value": ["45.133.1.7", "80.94.95.81"], "last": "30d"})).is_empty());
    let since_2021 = search(json!({"value": ["45.133.1.7"], "last": 1_609_459_200}));
    assert_eq!(since_2021.len(), 2, "events 2201 and 3105");
}

#[test]
fn category_narrows_to_network_activity() {
    let all = search(json!({"value": ["45.133.1.7", "103.78.12.9"]}));
    assert_eq!(all.len(), 4);
    let network =
        search(json!({"value": ["45.133.1.7", "103.78.12.9"], "category": "Network activity"}));
    assert_eq!(network, ["45.133.1.7", "45.133.1.7"]);
}

#[test]
fn composite_values_match_either_half() {
    assert_eq!(search(json!({"value": ["185.220.101.34"]})), ["185.220.101.34|22"]);
    assert_eq!(search(json!({"value": ["22"]})), ["185.220.101.34|22"]);
    assert_eq!(search(json!({"value": ["141.98.11.60"]})), ["cnc.mirai-scan.net|141.98.11.60"]);
}

#[test]
fn deleted_attributes_are_hidden_unless_asked_for() {
    assert!(search(json!({"value": ["193.32.162.15"]})).is_empty());
    assert_eq!(search(json!({"value": ["193.32.162.15"], "deleted": 1})), ["193.32.162.15"]);
}

#[test]
fn ipv6_is_matched_canonically() {
    let found = search(json!({"value": ["2a01:4f8:c17:9b1::2"]}));
    assert_eq!(found, ["2a01:04f8:0c17:09b1:0000:0000:0000:0002"]);
}

#[test]
fn like_and_not_syntax_is_interpreted() {
    let like = search(json!({"value": ["45.133.%"], "type": ["ip-src"]}));
    assert_eq!(like.len(), 3, "a % value matches every 45.133.x address");
    let not = search(json!({"value": ["!45.133.1.7"], "type": ["ip-src"]}));
    assert!(!not.is_empty() && !not.contains(&"45.133.1.7".to_owned()));
}

#[test]
fn type_list_excludes_text_attributes() {
    assert_eq!(search(json!({"value": ["167.94.138.44"]})), ["167.94.138.44"]);
    assert!(search(json!({"value": ["167.94.138.44"], "type": ["ip-src", "ip-dst"]})).is_empty());
}

#[test]
fn warninglist_enforcement_hides_and_counts() {
    let response = send(
        &fake(),
        "/attributes/restSearch",
        json!({"value": ["8.8.8.8"], "enforceWarninglist": 1}),
    );
    assert!(values(&response).is_empty());
    assert_eq!(response.headers()["x-skipped-elements-count"], "1");
}

#[test]
fn include_context_gives_the_rich_event() {
    let response = send(
        &fake(),
        "/attributes/restSearch",
        json!({"value": ["218.92.0.112"], "includeContext": true}),
    );
    let attribute = &json_of(&response)["response"]["Attribute"][0];
    insta::assert_snapshot!(pretty(attribute));
}

#[test]
fn plain_search_gives_the_slim_event_without_threat_level() {
    let response = send(&fake(), "/attributes/restSearch", json!({"value": ["218.92.0.112"]}));
    let event = &json_of(&response)["response"]["Attribute"][0]["Event"];
    let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["id", "info", "org_id", "orgc_id", "uuid", "distribution", "publish_timestamp"]
    );
}

#[test]
fn event_metadata_has_attribute_count_but_no_attributes() {
    let response = send(
        &fake(),
        "/events/restSearch",
        json!({"returnFormat": "json", "eventid": ["1342", "3105"], "metadata": true}),
    );
    assert_eq!(response.headers()["x-result-count"], "2");
    let body = json_of(&response);
    let events = body["response"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["Event"]["attribute_count"], "4", "the deleted one is not counted");
    assert!(events[0]["Event"].get("Attribute").is_none());
    insta::assert_snapshot!(pretty(&events[1]));
}

#[test]
fn integer_style_renders_ids_as_numbers() {
    let mut data = dataset();
    data.number_style = NumberStyle::Integer;
    let response = send(
        &FakeMisp::new(data),
        "/attributes/restSearch",
        json!({"value": ["218.92.0.112"], "includeContext": 1}),
    );
    let attribute = &json_of(&response)["response"]["Attribute"][0];
    assert_eq!(attribute["id"], 900101);
    assert_eq!(attribute["Event"]["threat_level_id"], 3);
    assert_eq!(attribute["to_ids"], true);
}

#[test]
fn paging_and_result_count_follow_misp() {
    let fake = fake();
    let page = |n: u64| {
        send(
            &fake,
            "/attributes/restSearch",
            json!({"value": ["45.133.1.7"], "limit": 2, "page": n}),
        )
    };
    let first = page(1);
    assert_eq!(values(&first).len(), 2);
    assert_eq!(first.headers()["x-result-count"], "3", "a full limited page reports one more");
    let second = page(2);
    assert_eq!(values(&second).len(), 1);
    assert_eq!(second.headers()["x-result-count"], "1");
    let third = page(3);
    assert!(values(&third).is_empty());
    assert_eq!(third.headers()["x-result-count"], "1", "an empty page reports 1");
}

#[test]
fn empty_attribute_answer_keeps_the_envelope() {
    let response = send(&fake(), "/attributes/restSearch", json!({"value": ["179.43.180.106"]}));
    assert_eq!(json_of(&response), json!({"response": {"Attribute": []}}));
}

#[test]
fn unknown_return_format_and_path_are_404() {
    let response = send(&fake(), "/attributes/restSearch", json!({"returnFormat": "stix9"}));
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = send(&fake(), "/attributes/search", json!({}));
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[test]
fn every_request_is_recorded_with_masked_debug() {
    let fake = fake();
    send(&fake, "/attributes/restSearch", json!({"value": ["45.133.1.7"]}));
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("Authorization"), Some(key().as_str()));
    assert_eq!(requests[0].json().unwrap()["value"][0], "45.133.1.7");
    assert!(!format!("{:?}", requests[0]).contains(&key()));
}
