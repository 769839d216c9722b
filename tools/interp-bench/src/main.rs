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
//! Build the module first (`cargo build --release --target wasm32-wasip1`),
//! then `cargo run --release` here (or `just bench`).

#[path = "../../../benches/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use misp_enrich::fluent_bit::filter::Filter;
use misp_enrich::fluent_bit::settings::ModuleSettings;
use wasmi::{Engine, Linker, Memory, Module, Store, TypedFunc};
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
    fn new(wasm: &Path, dir: &Path) -> Result<Self> {
        let engine = Engine::default();
        let module = Module::new(&engine, std::fs::read(wasm)?)?;
        let mut linker = Linker::<WasiCtx>::new(&engine);
        wasmi_wasi::add_to_linker(&mut linker, |ctx| ctx)?;
        let preopen = Dir::open_ambient_dir(dir, ambient_authority())?;
        let guest = dir.to_str().context("directory is not UTF-8")?;
        let wasi = WasiCtxBuilder::new().inherit_stderr().preopened_dir(preopen, guest)?.build();
        let mut store = Store::new(&engine, wasi);
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

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = root.join("target/wasm32-wasip1/release/misp_enrich.wasm");
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

    let workloads = [
        ("realistic", support::realistic(2000, 300)),
        ("all_private", support::all_private(2000)),
        ("large_50kb", support::large(50)),
    ];
    println!("| workload | interpreted (wasmi) µs/record | native µs/record | ratio |");
    println!("|---|---|---|---|");
    for (name, records) in &workloads {
        let mut module = Interpreted::new(&wasm, &dir)?;
        let started = Instant::now();
        for record in records {
            module.call(record)?;
        }
        let interpreted = per_record_us(started.elapsed(), records.len());

        let settings = ModuleSettings::from_json(r#"{"snapshot":"misp.snapshot"}"#, &dir)?;
        let mut filter = Filter::new(settings);
        let mut out = String::new();
        let started = Instant::now();
        for _ in 0..10 {
            for record in records {
                filter.process(record, &mut out);
            }
        }
        let native = per_record_us(started.elapsed(), records.len() * 10);
        println!("| {name} | {interpreted:.1} | {native:.2} | {:.0}× |", interpreted / native);
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
