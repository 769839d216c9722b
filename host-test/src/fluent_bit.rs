//! Runs the Fluent Bit filter module the way Fluent Bit's `wasm` filter does
//! (4.2 and later, `event_format json`), so tests exercise the real ABI and
//! the real build without Fluent Bit.
//!
//! What Fluent Bit does, and so what this harness does:
//!
//! 1. one instance per `[FILTER]` section, kept for the life of the process,
//!    with each of the section's `accessible_paths` preopened under its own
//!    name, read and write, and no arguments or environment;
//! 2. `_initialize` called once after instantiation, when exported;
//! 3. per record, the tag and the record's JSON text copied into module
//!    memory through the module's own `malloc`, each followed by a NUL the
//!    length leaves out;
//! 4. the filter function called with six 32-bit arguments;
//! 5. the returned pointer checked to address a NUL-terminated string lying
//!    wholly inside linear memory, and that string copied out;
//! 6. both copies freed with the module's `free`.
//!
//! An empty string or a NULL pointer drops the record. Where Fluent Bit
//! would drop a record and log an error (a trap, a pointer outside memory,
//! an answer that is not a JSON object) the harness returns a
//! [`FilterError`] instead, so a test fails loudly. As in Fluent Bit, the
//! instance stays in use after a trap.
//!
//! Limitation: records are passed as given. Fluent Bit hands the module its
//! own compact re-serialisation of the record (no spaces, non-ASCII as `\u`
//! escapes), so fixture lines with unusual spacing test more than Fluent Bit
//! would ever send.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use wasmtime::Result;
use wasmtime::error::Context;
use wasmtime::{Engine, Linker, Memory, Module, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The export Fluent Bit is configured to call (`function_name`).
pub const FILTER_FUNCTION: &str = "misp_enrich_filter";

/// The largest stderr kept per instance; the module writes a line or two at
/// start-up and on snapshot trouble, never per record.
const STDERR_CAPACITY: usize = 1024 * 1024;

/// `(tag, tag_len, time_sec, time_nsec, record, record_len) -> *const u8`.
type FilterFn = TypedFunc<(u32, u32, u32, u32, u32, u32), u32>;

/// Why a record did not come back as a record.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The module's `malloc` returned NULL or an address outside memory.
    #[error("the module could not allocate {0} bytes for a copy")]
    Allocation(usize),
    /// A tag or record longer than a 32-bit length can say.
    #[error("{0} bytes do not fit the 32-bit ABI")]
    TooLong(usize),
    /// The call trapped; Fluent Bit logs the exception and drops the record.
    #[error("the filter trapped: {0}")]
    Trap(String),
    /// The answer is not a NUL-terminated string inside linear memory;
    /// Fluent Bit says "returned value is invalid" and drops the record.
    #[error("the filter returned {0:#x}, which is no string inside its memory")]
    BadPointer(u32),
    /// The answer is not a JSON object; Fluent Bit says "invalid JSON
    /// format" and drops the record.
    #[error("the filter returned something other than a JSON object: {0:?}")]
    NotAnObject(String),
}

/// The compiled module, ready to be instantiated once per filter section.
pub struct FluentBitModule {
    engine: Engine,
    module: Module,
    linker: Linker<WasiP1Ctx>,
}

impl FluentBitModule {
    /// Compiles the module at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| path.display().to_string())
    }

    /// Compiles a module from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        wasmtime::ensure!(!bytes.is_empty(), "the Fluent Bit module is empty (was it built?)");
        let engine = Engine::default();
        let module = Module::new(&engine, bytes).context("cannot compile the module")?;
        let mut linker = Linker::new(&engine);
        // Preview 1 only: Fluent Bit's WAMR offers nothing else.
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx)?;
        Ok(FluentBitModule { engine, module, linker })
    }

    /// One filter section: an instance with `accessible_paths` preopened
    /// under their own names, `_initialize` already called.
    ///
    /// It must not be used on a thread that drives a Tokio runtime: WASI
    /// preview 1 runs its file system calls to completion on one.
    pub fn section(&self, accessible_paths: &[&Path]) -> Result<FilterSection> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone());
        for dir in accessible_paths {
            let guest = dir.to_str().context("an accessible path is not UTF-8")?;
            wasi.preopened_dir(dir, guest, FsPerms::ReadWrite)
                .with_context(|| format!("{}: cannot preopen", dir.display()))?;
        }
        let mut store = Store::new(&self.engine, wasi.build_p1());
        let instance = self.linker.instantiate(&mut store, &self.module)?;
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ()).context("_initialize trapped")?;
        }
        let memory = instance.get_memory(&mut store, "memory").context("no exported memory")?;
        // Fluent Bit falls back to WAMR's own small heap when there is no
        // allocator; this module exports one, and these tests hold it to that.
        let malloc = instance.get_typed_func(&mut store, "malloc").context("no malloc export")?;
        let free = instance.get_typed_func(&mut store, "free").context("no free export")?;
        let filter = instance
            .get_typed_func(&mut store, FILTER_FUNCTION)
            .with_context(|| format!("no {FILTER_FUNCTION} export of type 6 x i32 -> i32"))?;
        Ok(FilterSection { store, memory, malloc, free, filter, stderr })
    }
}

/// One filter section's instance.
pub struct FilterSection {
    store: Store<WasiP1Ctx>,
    memory: Memory,
    malloc: TypedFunc<u32, u32>,
    free: TypedFunc<u32, ()>,
    filter: FilterFn,
    stderr: MemoryOutputPipe,
}

impl FilterSection {
    /// Runs one record through the filter, stamped with the current time;
    /// `None` when the module dropped it.
    pub fn call(&mut self, tag: &str, record: &str) -> Result<Option<String>, FilterError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        // Fluent Bit truncates the seconds to 32 bits as well.
        self.call_at(tag, record, now.as_secs() as u32, now.subsec_nanos())
    }

    /// Runs one record through the filter with an explicit event time.
    pub fn call_at(
        &mut self,
        tag: &str,
        record: &str,
        time_sec: u32,
        time_nsec: u32,
    ) -> Result<Option<String>, FilterError> {
        let (tag_ptr, tag_len) = self.copy_in(tag.as_bytes())?;
        let copied = self.copy_in(record.as_bytes());
        let (record_ptr, record_len) = match copied {
            Ok(copy) => copy,
            Err(err) => {
                self.release(tag_ptr);
                return Err(err);
            }
        };
        let answer = self.invoke((tag_ptr, tag_len, time_sec, time_nsec, record_ptr, record_len));
        self.release(tag_ptr);
        self.release(record_ptr);
        answer
    }

    /// Calls the filter with a NULL record pointer and the record's real
    /// length, as Fluent Bit does when it could not copy the record into
    /// module memory.
    pub fn call_with_null_record(
        &mut self,
        tag: &str,
        record_len: u32,
    ) -> Result<Option<String>, FilterError> {
        let (tag_ptr, tag_len) = self.copy_in(tag.as_bytes())?;
        let answer = self.invoke((tag_ptr, tag_len, 0, 0, 0, record_len));
        self.release(tag_ptr);
        answer
    }

    /// What the module wrote to stderr so far (Fluent Bit's own stderr in a
    /// real deployment).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }

    /// Bytes of linear memory the instance holds: it never shrinks, so a
    /// leak per record shows here.
    pub fn memory_size(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    fn invoke(
        &mut self,
        args: (u32, u32, u32, u32, u32, u32),
    ) -> Result<Option<String>, FilterError> {
        let answer = self
            .filter
            .call(&mut self.store, args)
            .map_err(|trap| FilterError::Trap(format!("{trap:#}")))?;
        let text = self.read_c_string(answer)?;
        if text.is_empty() {
            return Ok(None);
        }
        if is_json_object(&text) { Ok(Some(text)) } else { Err(FilterError::NotAnObject(text)) }
    }

    /// Copies `bytes` plus a NUL into memory from the module's `malloc`;
    /// returns the address and the length without the NUL.
    fn copy_in(&mut self, bytes: &[u8]) -> Result<(u32, u32), FilterError> {
        let len = u32::try_from(bytes.len()).map_err(|_| FilterError::TooLong(bytes.len()))?;
        let size = len.checked_add(1).ok_or(FilterError::TooLong(bytes.len()))?;
        let ptr = self
            .malloc
            .call(&mut self.store, size)
            .map_err(|trap| FilterError::Trap(format!("malloc: {trap:#}")))?;
        let start = ptr as usize;
        let memory = self.memory.data_mut(&mut self.store);
        let Some(target) = memory.get_mut(start..start + bytes.len() + 1).filter(|_| ptr != 0)
        else {
            return Err(FilterError::Allocation(size as usize));
        };
        let (text, nul) = target.split_at_mut(bytes.len());
        text.copy_from_slice(bytes);
        nul[0] = 0;
        Ok((ptr, len))
    }

    fn release(&mut self, ptr: u32) {
        // A failing free is the module's bug; Fluent Bit ignores it as well,
        // and the answer has already been copied out.
        let _ = self.free.call(&mut self.store, ptr);
    }

    /// The string at `ptr`, which must end with a NUL inside memory; NULL
    /// reads as empty, which drops the record.
    fn read_c_string(&self, ptr: u32) -> Result<String, FilterError> {
        if ptr == 0 {
            return Ok(String::new());
        }
        let memory = self.memory.data(&self.store);
        let tail = memory.get(ptr as usize..).ok_or(FilterError::BadPointer(ptr))?;
        let len = tail.iter().position(|b| *b == 0).ok_or(FilterError::BadPointer(ptr))?;
        // Fluent Bit copies bytes; its JSON parser then refuses invalid
        // UTF-8, which the object check after this catches as well.
        Ok(String::from_utf8_lossy(&tail[..len]).into_owned())
    }
}

/// Whether `text` is one JSON object, at any depth: Fluent Bit's parser has
/// no nesting limit, so neither may this check.
pub fn is_json_object(text: &str) -> bool {
    if !text.trim_start().starts_with('{') {
        return false;
    }
    let mut parser = serde_json::Deserializer::from_str(text);
    parser.disable_recursion_limit();
    serde::de::IgnoredAny::deserialize(&mut parser).is_ok() && parser.end().is_ok()
}
