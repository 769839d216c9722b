//! What the host's benchmarks share: the fake MISP's dataset for the seeded
//! workloads of `benches/support`, and the key it accepts.

use misp_enrich_host::fake::Dataset;
use serde_json::{Value, json};

use crate::support;

/// The fake MISP's API key (a benchmark's, never a real one).
pub const KEY: &str = "Bench0000000000000000000000000000000Key1";

/// Events the listed sources are spread over.
const EVENTS: u32 = 50;

/// A dataset listing every one of the first `sources` addresses that
/// `support::listed` accepts (one in five), spread over 50 events, so the
/// fake answers the workloads as the benches' in-memory MISP does.
pub fn dataset(sources: u32) -> Dataset {
    let events: Vec<Value> = (0..EVENTS)
        .map(|e| {
            let attributes: Vec<Value> = (0..sources)
                .filter(|i| support::listed(*i) && i % EVENTS == e)
                .map(|i| {
                    json!({"id": 100_000 + i, "uuid": format!("00000000-0000-4000-8000-{i:012}"),
                           "type": "ip-src", "category": "Network activity",
                           "value": support::public_addr(i).to_string(), "to_ids": true,
                           "timestamp": 1_700_000_000u32})
                })
                .collect();
            json!({"id": 1000 + e, "uuid": format!("10000000-0000-4000-8000-{e:012}"),
                   "info": format!("OSINT feed {e}"), "date": "2023-11-14", "threat_level_id": 3,
                   "published": true, "timestamp": 1_700_000_000u32,
                   "publish_timestamp": 1_700_000_000u32,
                   "orgc": {"id": 2, "name": "CIRCL",
                            "uuid": "55f6ea5e-2c60-40e5-964f-47a8950d210f"},
                   "attributes": attributes})
        })
        .collect();
    let doc = json!({"api_key": KEY, "number_style": "string", "events": events});
    Dataset::from_json(&doc.to_string()).expect("a valid dataset")
}
