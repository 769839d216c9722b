//! Micro-benchmarks of the native library (divan): the enricher on each
//! workload against an in-memory MISP, the naive per-record uncached design
//! as the baseline, the Fluent Bit filter's record path, and snapshot loads
//! and lookups. Run with `just bench` or `cargo bench --bench core`.

mod support;

use std::hint::black_box;
use std::net::IpAddr;

use divan::Bencher;
use divan::counter::ItemsCount;
use misp_enrich::Enricher;
use misp_enrich::fluent_bit::filter::Filter;
use misp_enrich::fluent_bit::settings::ModuleSettings;
use misp_enrich::settings::Settings;
use misp_enrich::snapshot::Snapshot;
use support::{InMemoryMisp, public_addr};

fn main() {
    divan::main();
}

const RECORDS: usize = 10_000;
const SOURCES: u32 = 300;
const BATCH: usize = 100;

fn workload(name: &str) -> Vec<String> {
    match name {
        "realistic" => support::realistic(RECORDS, SOURCES),
        "all_distinct" => support::all_distinct(RECORDS),
        "all_private" => support::all_private(RECORDS),
        "large_50kb" => support::large(200),
        other => panic!("unknown workload {other}"),
    }
}

const WORKLOADS: &[&str] = &["realistic", "all_distinct", "all_private", "large_50kb"];

/// The enricher as the component uses it: batches of 100, a fresh cache per
/// run of the whole workload.
#[divan::bench(args = WORKLOADS, sample_count = 10, sample_size = 1)]
fn native_batched(bencher: Bencher, name: &str) {
    let records = workload(name);
    bencher
        .counter(ItemsCount::new(records.len()))
        .with_inputs(|| Enricher::new(support::settings(), InMemoryMisp::new(RECORDS as u32)))
        .bench_local_values(|mut enricher| {
            for batch in records.chunks(BATCH) {
                black_box(enricher.enrich_batch(batch));
            }
            enricher
        });
}

/// The naive design: one uncached MISP request per record.
#[divan::bench(args = ["realistic"], sample_count = 5, sample_size = 1)]
fn naive_per_record_uncached(bencher: Bencher, name: &str) {
    let records = workload(name);
    let json = r#"{"misp_url":"https://misp.example.org","api_key":"k","hit_ttl_secs":0,
        "miss_ttl_secs":0}"#;
    bencher
        .counter(ItemsCount::new(records.len()))
        .with_inputs(|| {
            let settings = Settings::from_json(json).unwrap();
            Enricher::new(settings, InMemoryMisp::new(RECORDS as u32))
        })
        .bench_local_values(|mut enricher| {
            for record in &records {
                black_box(enricher.enrich(record));
            }
            enricher
        });
}

/// The Fluent Bit filter's work per record, natively (the module runs the
/// same code interpreted; see BENCHMARKS.md for the interpreter estimate).
#[divan::bench(args = WORKLOADS, sample_count = 10, sample_size = 1)]
fn fluent_bit_filter(bencher: Bencher, name: &str) {
    let dir = std::env::temp_dir().join(format!("misp-enrich-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("misp.snapshot"), support::snapshot_text(SOURCES / 5)).unwrap();
    let settings = ModuleSettings::from_json(r#"{"snapshot":"misp.snapshot"}"#, &dir).unwrap();
    let mut filter = Filter::new(settings);
    let records = workload(name);
    let mut out = String::new();
    bencher.counter(ItemsCount::new(records.len())).bench_local(|| {
        for record in &records {
            filter.process(record, &mut out);
            black_box(&out);
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn snapshot_parse_100k(bencher: Bencher) {
    let text = support::snapshot_text(100_000);
    bencher.counter(ItemsCount::new(100_000usize)).bench(|| Snapshot::parse(&text).unwrap());
}

#[divan::bench]
fn snapshot_lookup_in_1m(bencher: Bencher) {
    let snapshot = Snapshot::parse(&support::snapshot_text(1_000_000)).unwrap();
    let probes: Vec<IpAddr> = (0..1000).map(|i| public_addr(i * 997)).collect();
    bencher.counter(ItemsCount::new(probes.len())).bench(|| {
        for addr in &probes {
            black_box(snapshot.lookup(*addr));
        }
    });
}
