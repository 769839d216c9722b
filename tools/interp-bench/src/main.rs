//! The Fluent Bit module's per-record cost under a WebAssembly interpreter.
//!
//! Fluent Bit runs WASM filters in WAMR's interpreter (no JIT), where the
//! module's own instructions dominate; wasmtime compiles to native code and
//! hides that. This tool drives the module through `wasmi`, an interpreter,
//! the way Fluent Bit calls it (records copied in through the module's
//! `malloc`, NUL-terminated, the filter called, the answer read and the
//! copies freed), and prints the cost per record next to the same filter
//! code run natively, in one run.
//!
//! A second pass counts the fuel the interpreter burns per record (about one
//! unit per WebAssembly instruction executed): a figure that, unlike the
//! times, does not move with the machine's load, and that compares two
//! builds of the module exactly.
//!
//! Build the module first (`cargo build --release --target wasm32-wasip1`),
//! then `cargo run --release` here (or `just bench`); `--module` names
//! another build, `--workload` runs one workload (for `just callgrind`).

#[path = "../../../benches/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use misp_enrich::fluent_bit::filter::Filter;
use misp_enrich::fluent_bit::settings::ModuleSettings;
use wasmi::{Config, Engine, Linker, Memory, Module, Store, TypedFunc};
use wasmi_wasi::{Dir, WasiCtx, WasiCtxBuilder, ambient_authority};

type FilterFn = TypedFunc<(u32, u32, u32, u32, u32, u32), u32>;

struct Interpreted {
    store: Store<WasiCtx>,
    memory: Memory,
    malloc: TypedFunc<u32, u32>,
    free: TypedFunc<u32, ()>,
    filter: FilterFn,
}

impl Interpreted {
    /// The module instantiated in `dir`; with `metered`, every instruction
    /// burns fuel, which [`Interpreted::fuel_used`] reports.
    fn new(wasm: &Path, dir: &Path, metered: bool) -> Result<Self> {
        let mut config = Config::default();
        config.consume_fuel(metered);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, std::fs::read(wasm)?)?;
        let mut linker = Linker::<WasiCtx>::new(&engine);
        wasmi_wasi::add_to_linker(&mut linker, |ctx| ctx)?;
        let preopen = Dir::open_ambient_dir(dir, ambient_authority())?;
        let guest = dir.to_str().context("directory is not UTF-8")?;
        let wasi = WasiCtxBuilder::new().inherit_stderr().preopened_dir(preopen, guest)?.build();
        let mut store = Store::new(&engine, wasi);
        if metered {
            store.set_fuel(u64::MAX)?;
        }
        let instance = linker.instantiate_and_start(&mut store, &module)?;
        instance.get_typed_func::<(), ()>(&store, "_initialize")?.call(&mut store, ())?;
        Ok(Interpreted {
            memory: instance.get_memory(&store, "memory").context("no memory")?,
            malloc: instance.get_typed_func(&store, "malloc")?,
            free: instance.get_typed_func(&store, "free")?,
            filter: instance.get_typed_func(&store, "misp_enrich_filter")?,
            store,
        })
    }

    /// Fuel burnt since the instance was made (metered instances only).
    fn fuel_used(&self) -> Result<u64> {
        Ok(u64::MAX - self.store.get_fuel()?)
    }

    fn copy_in(&mut self, bytes: &[u8]) -> Result<u32> {
        let ptr = self.malloc.call(&mut self.store, bytes.len() as u32 + 1)?;
        if ptr == 0 {
            bail!("malloc returned NULL");
        }
        let memory = self.memory.data_mut(&mut self.store);
        let start = ptr as usize;
        memory[start..start + bytes.len()].copy_from_slice(bytes);
        memory[start + bytes.len()] = 0;
        Ok(ptr)
    }

    fn call(&mut self, record: &str) -> Result<usize> {
        let tag = self.copy_in(b"honeypot.cowrie")?;
        let rec = self.copy_in(record.as_bytes())?;
        let args = (tag, 15, 1_733_230_000, 0, rec, record.len() as u32);
        let out = self.filter.call(&mut self.store, args)?;
        self.free.call(&mut self.store, tag)?;
        self.free.call(&mut self.store, rec)?;
        let memory = self.memory.data(&self.store);
        let tail = memory.get(out as usize..).context("answer outside memory")?;
        tail.iter().position(|b| *b == 0).context("answer without NUL")
    }
}

fn per_record_us(elapsed: std::time::Duration, records: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / records as f64
}

#[derive(Parser)]
#[command(about = "The Fluent Bit module under the wasmi interpreter, next to native")]
struct Args {
    /// The module to drive; defaults to the release build in the target
    /// directory (`CARGO_TARGET_DIR`, else the project's `target/`).
    #[arg(long)]
    module: Option<PathBuf>,
    /// Run only this workload, interpreted, without the native and fuel
    /// passes (for instruction counts under callgrind: the records go
    /// through `replay`, which `--toggle-collect` can single out).
    #[arg(long, value_parser = ["realistic", "all_private", "large_50kb"])]
    workload: Option<String>,
    /// With --workload: run the filter code natively instead.
    #[arg(long, requires = "workload")]
    native: bool,
}

fn default_module() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("wasm32-wasip1/release/misp_enrich.wasm")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let wasm = args.module.unwrap_or_else(default_module);
    if !wasm.is_file() {
        bail!(
            "{}: build the module first (cargo build --release --target wasm32-wasip1)",
            wasm.display()
        );
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("misp-enrich-interp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("misp-enrich.json"), r#"{"snapshot":"misp.snapshot"}"#)?;
    std::fs::write(dir.join("misp.snapshot"), support::snapshot_text(60))?;
    let result = run(&wasm, &dir, args.workload.as_deref(), args.native);
    std::fs::remove_dir_all(&dir)?;
    result
}

/// Every record through the interpreted module, or through the filter
/// natively: the function callgrind counts.
#[inline(never)]
fn replay(module: Option<&mut Interpreted>, filter: &mut Filter, records: &[String]) -> Result<()> {
    let mut out = String::new();
    match module {
        Some(module) => {
            for record in records {
                module.call(record)?;
            }
        }
        None => {
            for record in records {
                filter.process(record, &mut out);
            }
        }
    }
    Ok(())
}

fn run(wasm: &Path, dir: &Path, only: Option<&str>, native: bool) -> Result<()> {
    let workloads = [
        ("realistic", support::realistic(2000, 300)),
        ("all_private", support::all_private(2000)),
        ("large_50kb", support::large(50)),
    ];
    if let Some(only) = only {
        let (_, records) =
            workloads.iter().find(|(name, _)| *name == only).context(only.to_owned())?;
        let settings = ModuleSettings::from_json(r#"{"snapshot":"misp.snapshot"}"#, dir)?;
        let mut filter = Filter::new(settings);
        let mut module = if native { None } else { Some(Interpreted::new(wasm, dir, false)?) };
        return replay(module.as_mut(), &mut filter, records);
    }
    println!("module: {}", wasm.display());
    println!(
        "| workload | interpreted (wasmi) µs/record | native µs/record | ratio \
         | fuel/record | fuel/byte |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, records) in &workloads {
        let mut module = Interpreted::new(wasm, dir, false)?;
        let started = Instant::now();
        for record in records {
            module.call(record)?;
        }
        let interpreted = per_record_us(started.elapsed(), records.len());

        let mut metered = Interpreted::new(wasm, dir, true)?;
        let before = metered.fuel_used()?;
        for record in records {
            metered.call(record)?;
        }
        let fuel = (metered.fuel_used()? - before) as f64;
        let bytes: usize = records.iter().map(String::len).sum();

        let settings = ModuleSettings::from_json(r#"{"snapshot":"misp.snapshot"}"#, dir)?;
        let mut filter = Filter::new(settings);
        let mut out = String::new();
        let started = Instant::now();
        for _ in 0..10 {
            for record in records {
                filter.process(record, &mut out);
            }
        }
        let native = per_record_us(started.elapsed(), records.len() * 10);
        println!(
            "| {name} | {interpreted:.1} | {native:.2} | {:.0}× | {:.0} | {:.1} |",
            interpreted / native,
            fuel / records.len() as f64,
            fuel / bytes as f64
        );
    }
    Ok(())
}
