//! The component in the wasmtime host next to the native library, in one run:
//! records per second on the realistic workload, cold (every source new to
//! the cache) and warm (every record a cache hit), against the in-process
//! fake MISP with no latency, so the figures are the enrichment's own cost.
//! `cargo bench -p misp-enrich-host --bench component`.

#[path = "../../benches/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use misp_enrich_host::embedded;
use misp_enrich_host::fake::{Dataset, FakeMisp};
use misp_enrich_host::outbound::{Authority, Outbound, TimeoutCaps, Upstream};
use misp_enrich_host::runtime::Runtime;
use misp_enrich_host::secret::Secret;
use serde_json::{Value, json};

const KEY: &str = "Bench0000000000000000000000000000000Key1";
const URL: &str = "https://misp.bench.example";
const SOURCES: u32 = 300;
const RECORDS: usize = 10_000;
const BATCH: usize = 100;

/// A dataset listing every source `support::listed` accepts, in 50 events.
fn dataset() -> Dataset {
    let events: Vec<Value> = (0..50u32)
        .map(|e| {
            let attributes: Vec<Value> = (0..SOURCES)
                .filter(|i| support::listed(*i) && i % 50 == e)
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

fn rate(records: usize, elapsed: Duration) -> String {
    format!("{:.0} k/s", records as f64 / elapsed.as_secs_f64() / 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let records = support::realistic(RECORDS, SOURCES);
    let runtime = Runtime::new(embedded::COMPONENT).expect("the embedded component loads");
    let fake = FakeMisp::new(dataset());
    let outbound = Outbound::new(
        Authority::from_url(URL).unwrap(),
        TimeoutCaps::new(Duration::from_secs(3), Duration::from_secs(5)),
        Upstream::Fake(fake.clone()),
    );
    let config = Secret::new(json!({"misp_url": URL, "api_key": KEY}).to_string());
    let mut component = runtime.enricher(&config, outbound).await.expect("an enricher");
    let mut native =
        misp_enrich::Enricher::new(support::settings(), support::InMemoryMisp::new(SOURCES));

    let mut figures = Vec::new();
    for pass in ["cold", "warm"] {
        let started = Instant::now();
        for batch in records.chunks(BATCH) {
            component.enrich_batch(batch).await.expect("enrich-batch");
        }
        let component_time = started.elapsed();
        let started = Instant::now();
        for batch in records.chunks(BATCH) {
            std::hint::black_box(native.enrich_batch(batch));
        }
        let native_time = started.elapsed();
        figures.push((pass, component_time, native_time));
    }
    let stats = component.stats().await.expect("stats");
    println!("| pass | component in wasmtime | native library | component / native |");
    println!("|---|---|---|---|");
    for (pass, component_time, native_time) in figures {
        println!(
            "| {pass} ({RECORDS} realistic records, batches of {BATCH}) | {} | {} | {:.0}% |",
            rate(RECORDS, component_time),
            rate(RECORDS, native_time),
            native_time.as_secs_f64() / component_time.as_secs_f64() * 100.0
        );
    }
    println!(
        "component: {} hits, {} misses, {} MISP requests, cache hit ratio {:.1}%",
        stats.hits,
        stats.misses,
        stats.misp_requests,
        stats.cache_hit_ratio() * 100.0
    );
}
