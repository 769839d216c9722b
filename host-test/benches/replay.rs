//! End-to-end replay: every face of misp-enrich over the same seeded
//! workloads, against one loopback MISP (the fake, served over HTTP on
//! 127.0.0.1) that holds every answer back by a fixed latency, next to the
//! naive design (one uncached lookup per record) as the baseline.
//!
//! Each face runs in a child process of its own, so its peak memory is its
//! own and no cache or allocator state carries over; the parent serves the
//! fake MISP and counts the requests each child made. Modes:
//! - `native`: the library's enricher, batches of the CLI's default size;
//! - `component`: the component in the wasmtime host, batches likewise;
//! - `component-single`: the component with one `enrich` call per record
//!   (batching off, cache on);
//! - `module`: the Fluent Bit module through the ABI harness, on a snapshot
//!   synced from the same MISP first (the sync is timed apart);
//! - `naive`: the library with both cache lifetimes at zero and one
//!   `enrich` per record.
//!
//! Per-record latency is the duration of the call that returned the record:
//! the whole batch's for batched modes (a record waits for its batch), the
//! record's own otherwise. Records per second count from the first call to
//! the last, after instantiation.
//!
//! `cargo bench -p misp-enrich-host --bench replay [-- --latency-ms 2
//! --records 5000]`.

#[path = "../../benches/support/mod.rs"]
mod support;

mod common;

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use common::KEY;
use misp_enrich::Settings;
use misp_enrich::settings::RecordSettings;
use misp_enrich::splice::Located;
use misp_enrich_host::embedded;
use misp_enrich_host::fake::FakeMisp;
use misp_enrich_host::fake::server::FakeServer;
use misp_enrich_host::fluent_bit::FluentBitModule;
use misp_enrich_host::outbound::client::NetworkClient;
use misp_enrich_host::outbound::{Authority, Outbound, TimeoutCaps, Upstream, tls};
use misp_enrich_host::pipeline::Batching;
use misp_enrich_host::runtime::Runtime;
use misp_enrich_host::secret::Secret;
use misp_enrich_host::sync::NetworkTransport;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Parser)]
#[command(about = "End-to-end replay of the seeded workloads against a loopback MISP")]
struct Args {
    /// How long the loopback MISP holds back every answer.
    #[arg(long, default_value_t = 2)]
    latency_ms: u64,
    /// Records per workload (the 50 KB workload uses one in 25 of them).
    #[arg(long, default_value_t = 5000)]
    records: usize,
    /// Records per batch for the batched modes (the CLI's default).
    #[arg(long, default_value_t = Batching::default().batch_size)]
    batch: usize,
    /// Runs one mode on one workload and prints its figures as JSON (how
    /// the parent runs each face in a process of its own).
    #[arg(long, hide = true, requires_all = ["workload", "url"])]
    mode: Option<Mode>,
    #[arg(long, hide = true)]
    workload: Option<Workload>,
    #[arg(long, hide = true)]
    url: Option<String>,
    /// The snapshot file of a million addresses, for `module1m`.
    #[arg(long, hide = true)]
    snapshot: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Native,
    Component,
    ComponentSingle,
    Module,
    /// The module on a snapshot of a million addresses, for its memory.
    Module1m,
    Naive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Realistic,
    AllDistinct,
    AllPrivate,
    Large50kb,
}

impl Workload {
    fn records(self, records: usize) -> Vec<String> {
        match self {
            Workload::Realistic => support::realistic(records, 300),
            Workload::AllDistinct => support::all_distinct(records),
            Workload::AllPrivate => support::all_private(records),
            Workload::Large50kb => support::large(records / 25),
        }
    }
}

/// What a child reports.
#[derive(Debug, Serialize, Deserialize)]
struct Figures {
    records: usize,
    seconds: f64,
    median_us: f64,
    p99_us: f64,
    /// Looked-up records answered from the cache, when the face counts it.
    cache_hit_ratio: Option<f64>,
    hits: u64,
    peak_rss_kib: Option<u64>,
    /// The module's linear memory after the run.
    module_memory_kib: Option<u64>,
    /// Time to sync the snapshot, and its requests, for the module.
    sync_seconds: Option<f64>,
    sync_requests: Option<usize>,
}

/// Per-record latencies, in the order records were answered.
#[derive(Default)]
struct Latencies(Vec<Duration>);

impl Latencies {
    fn record(&mut self, elapsed: Duration, records: usize) {
        self.0.extend(std::iter::repeat_n(elapsed, records));
    }

    fn percentile(&mut self, p: f64) -> f64 {
        self.0.sort_unstable();
        let at = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(at).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    match (args.mode, args.workload, &args.url) {
        (Some(mode), Some(workload), Some(url)) => {
            let figures = child(mode, workload, url, &args)?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
        _ => parent(&args),
    }
}

/// Generous caps: the loopback MISP answers within milliseconds, and a
/// timeout would turn a slow run into failures instead of figures.
fn caps() -> TimeoutCaps {
    TimeoutCaps::new(Duration::from_secs(5), Duration::from_secs(30))
}

/// Runs one face on one workload in this process and measures it.
fn child(mode: Mode, workload: Workload, url: &str, args: &Args) -> Result<Figures> {
    let records = workload.records(args.records);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut latencies = Latencies::default();
    let mut figures = Figures {
        records: records.len(),
        seconds: 0.0,
        median_us: 0.0,
        p99_us: 0.0,
        cache_hit_ratio: None,
        hits: 0,
        peak_rss_kib: None,
        module_memory_kib: None,
        sync_seconds: None,
        sync_requests: None,
    };
    let started;
    match mode {
        Mode::Native | Mode::Naive => {
            let mut config = json!({"misp_url": url, "api_key": KEY});
            if mode == Mode::Naive {
                config["hit_ttl_secs"] = json!(0);
                config["miss_ttl_secs"] = json!(0);
            }
            let settings = Settings::from_json(&config.to_string())?;
            let mut enricher = misp_enrich::Enricher::new(settings, transport(url, &runtime)?);
            started = Instant::now();
            if mode == Mode::Naive {
                for record in &records {
                    let call = Instant::now();
                    black_box(enricher.enrich(record));
                    latencies.record(call.elapsed(), 1);
                }
            } else {
                for batch in records.chunks(args.batch) {
                    let call = Instant::now();
                    black_box(enricher.enrich_batch(batch));
                    latencies.record(call.elapsed(), batch.len());
                }
            }
            figures.seconds = started.elapsed().as_secs_f64();
            let stats = enricher.stats();
            let looked_up = stats.hits + stats.misses + stats.failures;
            figures.hits = stats.hits;
            figures.cache_hit_ratio =
                (looked_up > 0).then(|| stats.cache_hits as f64 / looked_up as f64);
        }
        Mode::Component | Mode::ComponentSingle => {
            let single = mode == Mode::ComponentSingle;
            runtime.block_on(async {
                let host = Runtime::new(embedded::COMPONENT)?;
                let tls = tls::client_config(None)?;
                let outbound = Outbound::new(
                    Authority::from_url(url)?,
                    caps(),
                    Upstream::Network(NetworkClient::new(tls)),
                );
                let config = Secret::new(json!({"misp_url": url, "api_key": KEY}).to_string());
                let mut enricher = host.enricher(&config, outbound).await?;
                let started = Instant::now();
                if single {
                    for record in &records {
                        let call = Instant::now();
                        black_box(enricher.enrich(record).await?);
                        latencies.record(call.elapsed(), 1);
                    }
                } else {
                    for batch in records.chunks(args.batch) {
                        let call = Instant::now();
                        black_box(enricher.enrich_batch(batch).await?);
                        latencies.record(call.elapsed(), batch.len());
                    }
                }
                figures.seconds = started.elapsed().as_secs_f64();
                let stats = enricher.stats().await?;
                figures.hits = stats.hits;
                figures.cache_hit_ratio = Some(stats.cache_hit_ratio());
                anyhow::Ok(())
            })?;
        }
        Mode::Module | Mode::Module1m => {
            let dir = tempfile_dir()?;
            let snapshot = dir.join("misp.snapshot");
            if mode == Mode::Module1m {
                let big = args.snapshot.as_ref().context("module1m needs --snapshot")?;
                std::fs::copy(big, &snapshot)?;
            } else {
                let synced = Instant::now();
                let settings =
                    Settings::from_json(&json!({"misp_url": url, "api_key": KEY}).to_string())?;
                let mut transport = transport(url, &runtime)?;
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
                let (text, stats) =
                    misp_enrich::sync::take_snapshot(&settings, &mut transport, now)?;
                std::fs::write(&snapshot, text)?;
                figures.sync_seconds = Some(synced.elapsed().as_secs_f64());
                figures.sync_requests = Some(stats.requests);
            }
            std::fs::write(dir.join("misp-enrich.json"), r#"{"snapshot":"misp.snapshot"}"#)?;
            let module = FluentBitModule::from_bytes(embedded::FLUENT_BIT_MODULE)?;
            let mut section = module.section(&[dir.as_path()])?;
            started = Instant::now();
            for record in &records {
                let call = Instant::now();
                let out = section.call("cowrie", record)?.context("the module dropped a record")?;
                if out.contains("\"misp_hit\"") {
                    figures.hits += 1;
                }
                latencies.record(call.elapsed(), 1);
            }
            figures.seconds = started.elapsed().as_secs_f64();
            figures.module_memory_kib = Some(section.memory_size() as u64 / 1024);
            std::fs::remove_dir_all(&dir)?;
        }
    }
    figures.median_us = latencies.percentile(0.5);
    figures.p99_us = latencies.percentile(0.99);
    figures.peak_rss_kib = peak_rss_kib();
    Ok(figures)
}

/// The library's transport to `url` over the host's HTTP client.
fn transport(url: &str, runtime: &tokio::runtime::Runtime) -> Result<NetworkTransport> {
    let client = NetworkClient::new(tls::client_config(None)?);
    Ok(NetworkTransport::new(client, Authority::from_url(url)?, caps(), runtime.handle().clone()))
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("misp-enrich-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The process's peak resident memory, where the platform tells it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One child's run and the MISP requests it made.
struct Run {
    mode: Mode,
    figures: Figures,
    requests: usize,
}

/// Serves the loopback MISP, runs every face in a child process and prints
/// the tables.
fn parent(args: &Args) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let fake = FakeMisp::new(common::dataset(args.records as u32));
    fake.set_latency(Duration::from_millis(args.latency_ms));
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let server = runtime.block_on(FakeServer::start(fake.clone(), loopback))?;
    let url = server.url();
    let exe = std::env::current_exe()?;
    // Written here, so that making it does not count in a child's memory.
    let big_snapshot = tempfile_dir()?.join("1m.snapshot");
    std::fs::write(&big_snapshot, support::snapshot_text(1_000_000))?;

    println!(
        "Loopback MISP at {url}, {} ms added to every answer; {} records per workload \
         (50 KB: {}), batches of {}.\n",
        args.latency_ms,
        args.records,
        args.records / 25,
        args.batch
    );
    let workloads =
        [Workload::Realistic, Workload::AllDistinct, Workload::AllPrivate, Workload::Large50kb];
    let mut memory = Vec::new();
    for workload in workloads {
        let mut runs = Vec::new();
        let mut modes =
            vec![Mode::Naive, Mode::Native, Mode::Component, Mode::ComponentSingle, Mode::Module];
        if workload == Workload::Realistic {
            modes.push(Mode::Module1m);
        }
        for mode in modes {
            let before = fake.requests().len();
            let figures = run_child(&exe, mode, workload, &url, &big_snapshot, args)?;
            let requests = fake.requests().len() - before - figures.sync_requests.unwrap_or(0);
            runs.push(Run { mode, figures, requests });
        }
        print_table(workload, &runs, new_addresses(&workload.records(args.records)));
        if workload == Workload::Realistic {
            memory = runs;
        }
    }
    print_memory(&memory);
    std::fs::remove_dir_all(big_snapshot.parent().context("a temporary directory")?)?;
    Ok(())
}

fn run_child(
    exe: &Path,
    mode: Mode,
    workload: Workload,
    url: &str,
    snapshot: &Path,
    args: &Args,
) -> Result<Figures> {
    let name = |value: &dyn ValueEnumName| value.name();
    let output = Command::new(exe)
        .args(["--mode", &name(&mode), "--workload", &name(&workload), "--url", url])
        .args(["--records", &args.records.to_string(), "--batch", &args.batch.to_string()])
        .arg("--snapshot")
        .arg(snapshot)
        .output()
        .context("cannot start a child run")?;
    if !output.status.success() {
        bail!(
            "{mode:?} on {workload:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout.lines().last().context("a child run printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

/// A value's name on the command line.
trait ValueEnumName {
    fn name(&self) -> String;
}

impl<T: ValueEnum> ValueEnumName for T {
    fn name(&self) -> String {
        self.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
    }
}

fn label(mode: Mode) -> &'static str {
    match mode {
        Mode::Naive => "naive: one uncached lookup per record (baseline)",
        Mode::Native => "native library, batched",
        Mode::Component => "component in wasmtime, batched",
        Mode::ComponentSingle => "component, one record per call (batching off)",
        Mode::Module => "Fluent Bit module (snapshot)",
        Mode::Module1m => "Fluent Bit module, 1M-address snapshot",
    }
}

/// The distinct addresses of `records` that are looked up: each is new to
/// a fresh cache once.
fn new_addresses(records: &[String]) -> usize {
    let settings = RecordSettings::default();
    let addresses: HashSet<IpAddr> = records
        .iter()
        .filter_map(|text| match misp_enrich::splice::locate(text, &settings) {
            Located::Append { addr, .. } => Some(addr),
            Located::Skip | Located::Unknown => None,
        })
        .collect();
    addresses.len()
}

fn print_table(workload: Workload, runs: &[Run], new_addresses: usize) {
    println!("### {} ({new_addresses} addresses to look up)\n", workload.name());
    println!(
        "| face | records/s | × naive | latency median | p99 | MISP requests per 1000 \
         records | per 100 new addresses | cache hit ratio | hits |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let rate = |f: &Figures| f.records as f64 / f.seconds.max(1e-9);
    let naive = runs.iter().find(|run| run.mode == Mode::Naive).map(|run| rate(&run.figures));
    for run in runs.iter().filter(|run| run.mode != Mode::Module1m) {
        let f = &run.figures;
        let ratio = naive.map_or("–".into(), |naive| format!("{:.1}×", rate(f) / naive));
        let ratio_cache = f.cache_hit_ratio.map_or("–".into(), |r| format!("{:.1}%", r * 100.0));
        let requests = run.requests as f64 * 1000.0 / f.records as f64;
        let per_new = match new_addresses {
            0 => "–".to_string(),
            n => format!("{:.1}", run.requests as f64 * 100.0 / n as f64),
        };
        let sync = match (f.sync_seconds, f.sync_requests) {
            (Some(s), Some(n)) => format!(" (sync first: {s:.2} s, {n} requests)"),
            _ => String::new(),
        };
        println!(
            "| {}{sync} | {:.0} | {ratio} | {} | {} | {requests:.1} | {per_new} | {ratio_cache} \
             | {} |",
            label(run.mode),
            rate(f),
            micros(f.median_us),
            micros(f.p99_us),
            f.hits
        );
    }
    println!();
}

fn micros(us: f64) -> String {
    if us >= 1000.0 { format!("{:.1} ms", us / 1000.0) } else { format!("{us:.0} µs") }
}

fn print_memory(runs: &[Run]) {
    println!("### peak memory (realistic workload)\n");
    println!("| process | peak resident memory | module linear memory |");
    println!("|---|---|---|");
    let mib =
        |kib: Option<u64>| kib.map_or("–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    for run in runs {
        println!(
            "| {} | {} | {} |",
            label(run.mode),
            mib(run.figures.peak_rss_kib),
            mib(run.figures.module_memory_kib)
        );
    }
}
