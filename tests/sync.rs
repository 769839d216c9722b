//! Snapshots taken from a paging MISP: complete, consistent with what the
//! component writes for the same data, and never partial.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{ManualClock, settings};
use misp_enrich::misp::HttpRequest;
use misp_enrich::snapshot::Snapshot;
use misp_enrich::sync::{SYNC_PAGE_LIMIT, take_snapshot};
use misp_enrich::{Enricher, HttpResponse, Transport, TransportError};
use serde_json::{Value, json};

/// A MISP over a list of attributes that honours `value`, `limit`, `page`
/// and hides deleted attributes, like the real one.
struct DatasetMisp {
    attributes: Vec<Value>,
    requests: Vec<Value>,
    fail_on_page: Option<u64>,
}

fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from((45u32 << 24) + 1 + i))
}

impl DatasetMisp {
    /// `n` addresses; every 7th also in a second, more severe event; every
    /// 11th has a deleted attribute in an even more severe one; every 13th is
    /// a composite `ip|port` value.
    fn new(n: u32) -> Self {
        let mut attributes = Vec::new();
        for i in 0..n {
            let value = if i % 13 == 0 { format!("{}|22", addr(i)) } else { addr(i).to_string() };
            attributes.push(attribute(&value, 100 + i % 400, 3, 1_600_000_000 + i, false));
            if i % 7 == 0 {
                attributes.push(attribute(
                    &addr(i).to_string(),
                    9000 + i % 5,
                    2,
                    1_650_000_000,
                    false,
                ));
            }
            if i % 11 == 0 {
                attributes.push(attribute(&addr(i).to_string(), 9999, 1, 1_700_000_000, true));
            }
        }
        DatasetMisp { attributes, requests: Vec::new(), fail_on_page: None }
    }
}

fn attribute(value: &str, event: u32, level: u8, timestamp: u32, deleted: bool) -> Value {
    json!({"id": "1", "type": "ip-src", "category": "Network activity", "value": value,
           "timestamp": timestamp.to_string(), "deleted": deleted,
           "Event": {"id": event.to_string(), "info": format!("event {event}"),
                     "threat_level_id": level.to_string(), "Orgc": {"name": "CIRCL"}}})
}

impl Transport for DatasetMisp {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        self.requests.push(body.clone());
        if request.url.ends_with("/events/restSearch") {
            let events: Vec<Value> = body["eventid"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| json!({"Event": {"id": id, "attribute_count": "42"}}))
                .collect();
            return Ok(HttpResponse::new(200, json!({"response": events}).to_string()));
        }
        let page = body["page"].as_u64().unwrap();
        if self.fail_on_page == Some(page) {
            return Ok(HttpResponse::new(500, "<html>Internal Error</html>"));
        }
        let values: Option<Vec<&str>> =
            body["value"].as_array().map(|v| v.iter().map(|s| s.as_str().unwrap()).collect());
        let matching: Vec<&Value> = self
            .attributes
            .iter()
            .filter(|a| !a["deleted"].as_bool().unwrap_or(false))
            .filter(|a| match &values {
                None => true,
                Some(values) => {
                    a["value"].as_str().unwrap().split('|').any(|half| values.contains(&half))
                }
            })
            .collect();
        let limit = body["limit"].as_u64().unwrap() as usize;
        let start = (page as usize - 1) * limit;
        let page: Vec<&Value> = matching.iter().skip(start).take(limit).copied().collect();
        Ok(HttpResponse::new(200, json!({"response": {"Attribute": page}}).to_string()))
    }
}

#[test]
fn a_hundred_thousand_addresses_are_snapshotted() {
    let mut misp = DatasetMisp::new(100_000);
    let live = misp.attributes.iter().filter(|a| a["deleted"] == false).count();
    let (text, stats) = take_snapshot(&settings(""), &mut misp, 1_733_230_000).unwrap();

    assert_eq!(stats.attributes, live);
    assert_eq!(stats.pages, live / SYNC_PAGE_LIMIT + 1);
    assert_eq!(stats.addresses, 100_000);
    for request in &misp.requests {
        assert!(request.get("last").is_none() && request.get("category").is_none());
    }
    let snapshot = Snapshot::parse(&text).unwrap();
    assert_eq!(snapshot.len(), 100_000);
    assert_eq!(snapshot.source, "https://misp.example.org");

    let plain = snapshot.lookup(addr(1)).unwrap();
    assert_eq!((plain.event_id.as_str(), plain.threat_level_id), ("101", 3));
    assert_eq!(plain.attribute_count, Some(42));
    let severe = snapshot.lookup(addr(77)).unwrap();
    assert_eq!(severe.event_id, "9002", "listed twice: the Medium event wins over Low");
    let deleted = snapshot.lookup(addr(22)).unwrap();
    assert_eq!(deleted.event_id, "122", "the deleted High attribute never counts");
    assert!(snapshot.lookup(addr(13)).is_some(), "composite values are indexed");
    assert!(snapshot.lookup(addr(100_000)).is_none());
}

#[test]
fn the_snapshot_agrees_with_the_component() {
    let mut misp = DatasetMisp::new(2000);
    let (text, _) = take_snapshot(&settings(""), &mut misp, 1).unwrap();
    let snapshot = Snapshot::parse(&text).unwrap();

    let sample: Vec<u32> = (0..2000).step_by(7).chain([11, 13, 22, 77, 143, 1001]).collect();
    let records: Vec<String> =
        sample.iter().map(|i| json!({"src_ip": addr(*i).to_string()}).to_string()).collect();
    let mut enricher = Enricher::with_clock(
        settings(""),
        DatasetMisp::new(2000),
        Box::new(ManualClock::default()),
    );
    let enriched = enricher.enrich_batch(&records);
    for (i, output) in sample.iter().zip(enriched) {
        let output: Value = serde_json::from_str(&output).unwrap();
        let hit = snapshot.lookup(addr(*i)).unwrap();
        assert_eq!(output["misp"]["event_id"], hit.event_id.as_str(), "address {i}");
        assert_eq!(output["misp"]["threat_level_id"], hit.threat_level_id);
        assert_eq!(output["misp"]["ioc_updated"], hit.ioc_updated.unwrap());
        assert_eq!(output["misp"]["attribute_count"], hit.attribute_count.unwrap());
    }
}

#[test]
fn a_failed_page_fails_the_whole_snapshot() {
    let mut misp = DatasetMisp::new(12_000);
    misp.fail_on_page = Some(2);
    let err = take_snapshot(&settings(""), &mut misp, 1).unwrap_err();
    assert_eq!(err.reason(), "http_500");
}
