//! Memory of the two big structures, measured with a counting allocator:
//! the enricher's cache holding 100,000 answers (target ≤ 32 MiB) and a
//! loaded snapshot of 1,000,000 addresses (target ≤ 48 MiB). Prints one line
//! per figure; `cargo bench --bench memory`.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use misp_enrich::Enricher;
use misp_enrich::snapshot::Snapshot;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live =
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    // 100,000 distinct sources: the cache holds 100,000 answers (plus the
    // event counts), once with one source in five listed, once with all.
    let records = support::all_distinct(100_000);
    for misp in [support::InMemoryMisp::new(100_000), support::InMemoryMisp::listing_all(100_000)] {
        let before = LIVE.load(Ordering::Relaxed);
        let settings = misp_enrich::Settings::from_json(
            r#"{"misp_url":"https://misp.example.org","api_key":"k","cache_capacity":100000}"#,
        )
        .unwrap();
        let mut enricher = Enricher::new(settings, misp);
        for batch in records.chunks(100) {
            enricher.enrich_batch(batch);
        }
        let cache = LIVE.load(Ordering::Relaxed) - before;
        let stats = enricher.stats();
        println!(
            "cache with 100000 answers ({} hits, {} misses): {:.1} MiB retained",
            stats.hits,
            stats.misses,
            mib(cache)
        );
    }
    drop(records);

    let text = support::snapshot_text(1_000_000);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let snapshot = Snapshot::parse(&text).unwrap();
    let retained = LIVE.load(Ordering::Relaxed) - before;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    println!(
        "snapshot of {} addresses: {:.1} MiB retained, {:.1} MiB peak while loading \
         (file {:.1} MiB)",
        snapshot.len(),
        mib(retained),
        mib(peak),
        mib(text.len() as isize)
    );
}
