//! The component in the wasmtime host next to the native library, in one run:
//! records per second on the realistic workload, cold (every source new to
//! the cache) and warm (every record a cache hit), against the in-process
//! fake MISP with no latency, so the figures are the enrichment's own cost.
//! Both faces answer in the same form (`enrich_changes`: the changed records,
//! `None` for the others, which the caller holds already); the library's
//! whole-record form (`enrich_batch`, which copies the unchanged ones) is
//! shown beside them. `cargo bench -p misp-enrich-host --bench component`.

#[path = "../../benches/support/mod.rs"]
mod support;

mod common;

use std::time::{Duration, Instant};

use common::KEY;
use misp_enrich_host::embedded;
use misp_enrich_host::fake::FakeMisp;
use misp_enrich_host::outbound::{Authority, Outbound, TimeoutCaps, Upstream};
use misp_enrich_host::runtime::Runtime;
use misp_enrich_host::secret::Secret;
use serde_json::json;

const URL: &str = "https://misp.bench.example";
const SOURCES: u32 = 300;
const RECORDS: usize = 10_000;
const BATCH: usize = 100;

/// Warm passes over the workload; each takes a few tens of milliseconds.
const WARM_PASSES: usize = 15;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn rate(records: usize, elapsed: Duration) -> String {
    format!("{:.0} k/s", records as f64 / elapsed.as_secs_f64() / 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let records = support::realistic(RECORDS, SOURCES);
    let runtime = Runtime::new(embedded::COMPONENT).expect("the embedded component loads");
    let fake = FakeMisp::new(common::dataset(SOURCES));
    let outbound = Outbound::new(
        Authority::from_url(URL).unwrap(),
        TimeoutCaps::new(Duration::from_secs(3), Duration::from_secs(5)),
        Upstream::Fake(fake.clone()),
    );
    let config = Secret::new(json!({"misp_url": URL, "api_key": KEY}).to_string());
    let mut component = runtime.enricher(&config, outbound).await.expect("an enricher");
    // Each face with its own cache.
    let mut changes =
        misp_enrich::Enricher::new(support::settings(), support::InMemoryMisp::new(SOURCES));
    let mut whole =
        misp_enrich::Enricher::new(support::settings(), support::InMemoryMisp::new(SOURCES));

    // One cold pass, then warm passes taken in turns, so that a burst of
    // load on the machine hits all three alike; medians are reported.
    let mut figures = Vec::new();
    for pass in std::iter::once("cold").chain(std::iter::repeat_n("warm", WARM_PASSES)) {
        let started = Instant::now();
        for batch in records.chunks(BATCH) {
            std::hint::black_box(component.enrich_changes(batch).await.expect("enrich-batch"));
        }
        let component_time = started.elapsed();
        let started = Instant::now();
        for batch in records.chunks(BATCH) {
            std::hint::black_box(changes.enrich_changes(batch));
        }
        let changes_time = started.elapsed();
        let started = Instant::now();
        for batch in records.chunks(BATCH) {
            std::hint::black_box(whole.enrich_batch(batch));
        }
        let whole_time = started.elapsed();
        figures.push((pass, [component_time, changes_time, whole_time]));
    }
    let stats = component.stats().await.expect("stats");
    println!(
        "| pass ({RECORDS} realistic records, batches of {BATCH}) | component in wasmtime \
         | native library | component / native | native, whole records |"
    );
    println!("|---|---|---|---|---|");
    for pass in ["cold", "warm"] {
        let runs: Vec<[Duration; 3]> =
            figures.iter().filter(|(p, _)| *p == pass).map(|(_, times)| *times).collect();
        let [component_time, changes_time, whole_time] =
            [0, 1, 2].map(|face| median(runs.iter().map(|times| times[face]).collect()));
        let label = if runs.len() > 1 {
            format!("{pass} (median of {})", runs.len())
        } else {
            pass.to_string()
        };
        println!(
            "| {label} | {} | {} | {:.0}% | {} |",
            rate(RECORDS, component_time),
            rate(RECORDS, changes_time),
            changes_time.as_secs_f64() / component_time.as_secs_f64() * 100.0,
            rate(RECORDS, whole_time),
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
