//! Benchmark workloads and an in-memory MISP, shared by the benchmarks.
//!
//! Every workload comes from a fixed seed, so two runs measure the same
//! records. The realistic one follows what public Cowrie data shows: a few
//! hundred sources a day, heavy-tailed (a handful of scanners send most
//! events), 94–98% of events from a source already seen.

#![allow(dead_code, reason = "each benchmark binary uses a different part")]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use misp_enrich::misp::{Attribute, EventContext, HttpRequest};
use misp_enrich::snapshot::SnapshotBuilder;
use misp_enrich::{HttpResponse, Settings, Transport, TransportError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

pub const SEED: u64 = 0x6d69_7370;

/// A globally routable IPv4 address for index `i` (never in a special block).
pub fn public_addr(i: u32) -> IpAddr {
    // 45.0.0.0/8 and 91.0.0.0/8 hold no special-purpose block.
    let base = if i.is_multiple_of(2) { 45u32 << 24 } else { 91u32 << 24 };
    IpAddr::V4(Ipv4Addr::from(base + 1 + (i / 2) % 0x00ff_fffe))
}

/// A Cowrie event of a common kind from `src`.
pub fn cowrie_record(rng: &mut ChaCha8Rng, src: &str, session: u64) -> String {
    let kinds = ["cowrie.session.connect", "cowrie.login.failed", "cowrie.command.input"];
    let eventid = kinds[rng.random_range(0..kinds.len())];
    json!({
        "eventid": eventid,
        "username": "root",
        "password": "123456",
        "message": format!("login attempt [root/123456] failed"),
        "sensor": "sensor-fra-1",
        "timestamp": "2025-12-23T16:50:25.483597Z",
        "src_ip": src,
        "session": format!("{session:012x}"),
        "protocol": "ssh",
        "uuid": "6a1e4c8e-6e2b-11ef-9d3c-0242ac120002",
    })
    .to_string()
}

/// `n` records over `sources` addresses with a heavy tail (Zipf, s = 1.2).
pub fn realistic(n: usize, sources: u32) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let weights: Vec<f64> = (1..=sources).map(|rank| 1.0 / f64::from(rank).powf(1.2)).collect();
    let total: f64 = weights.iter().sum();
    (0..n)
        .map(|i| {
            let mut pick = rng.random::<f64>() * total;
            let mut index = 0;
            while index + 1 < weights.len() && pick >= weights[index] {
                pick -= weights[index];
                index += 1;
            }
            let src = public_addr(index as u32).to_string();
            cowrie_record(&mut rng, &src, i as u64 / 6)
        })
        .collect()
}

/// `n` records, each from a new address: the worst case for the cache.
pub fn all_distinct(n: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    (0..n).map(|i| cowrie_record(&mut rng, &public_addr(i as u32).to_string(), i as u64)).collect()
}

/// `n` records from private addresses: never looked up.
pub fn all_private(n: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    (0..n)
        .map(|i| cowrie_record(&mut rng, &format!("10.0.{}.{}", i / 250 % 250, i % 250 + 1), 1))
        .collect()
}

/// `n` records of about 50 KB (a long command input), from few sources.
pub fn large(n: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    (0..n)
        .map(|i| {
            let mut record: Value = serde_json::from_str(&cowrie_record(
                &mut rng,
                &public_addr(i as u32 % 20).to_string(),
                1,
            ))
            .unwrap();
            record["input"] = Value::String("echo QUJDREVG | base64 -d; ".repeat(1850));
            record.to_string()
        })
        .collect()
}

/// Whether MISP lists source `i`: one in five, like a sensor whose regular
/// scanners are mostly in feeds.
pub fn listed(i: u32) -> bool {
    i.is_multiple_of(5)
}

fn attribute_json(addr: IpAddr, i: u32) -> Value {
    json!({"id": i.to_string(), "type": "ip-src", "value": addr.to_string(),
           "timestamp": "1700000000", "deleted": false,
           "Event": {"id": (1000 + i % 50).to_string(), "info": "OSINT feed",
                     "threat_level_id": "3", "Orgc": {"name": "CIRCL"}}})
}

/// A MISP in memory that lists every address [`listed`] accepts among the
/// first `sources`, answering the component's searches without a network.
pub struct InMemoryMisp {
    listed: HashMap<IpAddr, u32>,
    pub requests: u64,
}

impl InMemoryMisp {
    pub fn new(sources: u32) -> Self {
        let listed = (0..sources).filter(|i| listed(*i)).map(|i| (public_addr(i), i)).collect();
        InMemoryMisp { listed, requests: 0 }
    }

    /// A MISP that lists every one of the first `sources` addresses.
    pub fn listing_all(sources: u32) -> Self {
        InMemoryMisp { listed: (0..sources).map(|i| (public_addr(i), i)).collect(), requests: 0 }
    }
}

impl Transport for InMemoryMisp {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.requests += 1;
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        if request.url.ends_with("/events/restSearch") {
            let events: Vec<Value> = body["eventid"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| json!({"Event": {"id": id, "attribute_count": "500"}}))
                .collect();
            return Ok(HttpResponse::new(200, json!({"response": events}).to_string()));
        }
        let attributes: Vec<Value> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| {
                let addr: IpAddr = v.as_str()?.parse().ok()?;
                self.listed.get(&addr).map(|i| attribute_json(addr, *i))
            })
            .collect();
        let answer = json!({"response": {"Attribute": attributes}});
        Ok(HttpResponse::new(200, answer.to_string()))
    }
}

pub fn settings() -> Settings {
    Settings::from_json(r#"{"misp_url":"https://misp.example.org","api_key":"k"}"#).unwrap()
}

/// A snapshot text listing `count` addresses over 2000 events.
pub fn snapshot_text(count: u32) -> String {
    let mut builder = SnapshotBuilder::default();
    let page: Vec<Attribute> = (0..count)
        .map(|i| Attribute {
            value: public_addr(i).to_string(),
            timestamp: Some(1_700_000_000 + i64::from(i % 1000)),
            event: EventContext {
                id: (1000 + i % 2000).to_string(),
                info: format!("OSINT feed {}", i % 2000),
                threat_level_id: (i % 4 + 1) as u8,
                org: Some("CIRCL".into()),
            },
        })
        .collect();
    builder.add(&page);
    for id in builder.event_ids() {
        builder.set_attribute_count(id, Some(500));
    }
    builder.write(1_733_230_000, "https://misp.example.org")
}
