//! MISP requests per 1000 records and the cache hit ratio, for each workload,
//! with batching on (batches of 100, and of 500 as the CLI feeds a busy log), off
//! (one `enrich` per record, cached) and for the naive design (one uncached
//! request per record). Counts, not times, so they are exact and repeatable:
//! `cargo bench --bench requests`.

mod support;

use misp_enrich::{Enricher, Settings};
use support::InMemoryMisp;

fn settings(uncached: bool) -> Settings {
    let extra = if uncached { r#","hit_ttl_secs":0,"miss_ttl_secs":0"# } else { "" };
    let json = format!(r#"{{"misp_url":"https://misp.example.org","api_key":"k"{extra}}}"#);
    Settings::from_json(&json).unwrap()
}

/// Records per `enrich-batch` call: 100 in the library benchmarks, 500 as the
/// CLI feeds a busy log.
fn batch_size(mode: &str) -> Option<usize> {
    match mode {
        "batched" => Some(100),
        "batched 500" => Some(500),
        _ => None,
    }
}

fn main() {
    println!(
        "| workload | mode | records | distinct sources | MISP requests | per 1000 records \
         | cache hit ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    let workloads = [
        ("realistic", support::realistic(10_000, 300)),
        ("all_distinct", support::all_distinct(10_000)),
        ("all_private", support::all_private(10_000)),
        ("large_50kb", support::large(200)),
    ];
    for (name, records) in &workloads {
        let distinct = records
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            .filter_map(|r| r["src_ip"].as_str().map(str::to_string))
            .collect::<std::collections::HashSet<_>>()
            .len();
        for mode in ["batched", "batched 500", "per record", "naive"] {
            let mut enricher =
                Enricher::new(settings(mode == "naive"), InMemoryMisp::new(records.len() as u32));
            if let Some(size) = batch_size(mode) {
                for batch in records.chunks(size) {
                    enricher.enrich_batch(batch);
                }
            } else {
                for record in records {
                    enricher.enrich(record);
                }
            }
            let stats = enricher.stats();
            let looked_up = stats.hits + stats.misses + stats.failures;
            let ratio =
                if looked_up == 0 { 0.0 } else { stats.cache_hits as f64 / looked_up as f64 };
            println!(
                "| {name} | {mode} | {} | {distinct} | {} | {:.1} | {:.1}% |",
                records.len(),
                stats.misp_requests,
                stats.misp_requests as f64 * 1000.0 / records.len() as f64,
                ratio * 100.0
            );
        }
    }
}
