//! The C ABI of Fluent Bit's `wasm` filter (json event format).
//!
//! Fluent Bit copies the tag and the record (JSON text, NUL-terminated) into
//! module memory, calls the exported function, and copies the NUL-terminated
//! string it returns; it never frees that string, so the module owns one
//! output buffer and reuses it. A trap drops the record and leaks the trapped
//! call's stack, and a handful of traps leave the instance unusable, so
//! nothing here may panic: no unwrap, no indexing, no `RefCell` borrowed twice.
//!
//! Configuration is `misp-enrich.json` in one of the `accessible_paths`
//! (Fluent Bit gives a module no arguments and no environment).

use std::cell::RefCell;
use std::path::PathBuf;

// Limitation: the exported `malloc` and `free` are wasi-libc's dlmalloc. In
// an interpreter a malloc/free pair costs about 2,500 fuel units whatever the
// size, and Fluent Bit makes two pairs per record (tag and record): about a
// fifth of a typical record's cost. A leaner allocator would mean replacing
// libc's own (calloc, realloc and the aligned forms too, which libc itself
// calls), not just these two exports.

use super::filter::Filter;
use super::settings::{CONFIG_FILE_NAME, ModuleSettings};

thread_local! {
    /// The filter, created on first use (or by `_initialize`).
    static FILTER: RefCell<Option<Filter>> = const { RefCell::new(None) };
    /// The output buffer handed to Fluent Bit.
    static OUTPUT: RefCell<String> = const { RefCell::new(String::new()) };
    /// The buffer for a record that is not UTF-8, handed back byte for byte.
    static RAW: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Fluent Bit's WAMR calls this once after instantiation; it loads the
/// configuration and the snapshot so the first record pays nothing.
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    FILTER.with_borrow_mut(|filter| {
        filter.get_or_insert_with(start);
    });
}

/// The filter function (`function_name misp_enrich_filter`).
#[unsafe(no_mangle)]
pub extern "C" fn misp_enrich_filter(
    _tag: *const u8,
    _tag_len: u32,
    _time_sec: u32,
    _time_nsec: u32,
    record: *const u8,
    record_len: u32,
) -> *const u8 {
    // Limitation: a NULL record means Fluent Bit could not copy the record
    // into module memory (it still calls); there is nothing to return, so the
    // record is dropped. Exporting malloc/free (see .cargo/config.toml) makes
    // Fluent Bit use this module's allocator, so this happens only when the
    // module itself is out of memory.
    if record.is_null() {
        return respond(|out| out.clear());
    }
    // SAFETY: Fluent Bit passes a non-NULL pointer to `record_len` bytes that
    // it copied into this module's linear memory and keeps alive for the call.
    let input = unsafe { std::slice::from_raw_parts(record, record_len as usize) };
    let Ok(text) = std::str::from_utf8(input) else {
        // Not UTF-8, so not JSON either: hand it back as it came.
        return RAW.with_borrow_mut(|raw| {
            raw.clear();
            raw.extend_from_slice(input);
            raw.push(0);
            raw.as_ptr()
        });
    };
    respond(|out| {
        FILTER.with_borrow_mut(|filter| {
            let filter = filter.get_or_insert_with(start);
            filter.process(text, out);
            if let Some(err) = filter.unreported_error() {
                eprintln!("misp-enrich: {err}; keeping the snapshot in use");
            }
        });
    })
}

/// Fills the output buffer, NUL-terminates it and returns its address, which
/// stays valid until the next call.
fn respond(fill: impl FnOnce(&mut String)) -> *const u8 {
    OUTPUT.with_borrow_mut(|out| {
        out.clear();
        fill(out);
        out.push('\0');
        out.as_ptr()
    })
}

/// Finds the configuration in the preopened directories and builds the
/// filter. Without a usable configuration the filter still runs with the
/// default record settings and no snapshot, so records flow and lookups are
/// marked failed instead of passing for misses.
fn start() -> Filter {
    let mut filter = match find_config() {
        Ok(settings) => Filter::new(settings),
        Err(err) => {
            eprintln!("misp-enrich: {err}; lookups are tagged as failed");
            Filter::unconfigured()
        }
    };
    if let Some(err) = filter.unreported_error() {
        eprintln!("misp-enrich: {err}");
    }
    filter
}

fn find_config() -> Result<ModuleSettings, String> {
    let dirs = preopened_dirs();
    for dir in &dirs {
        let path = dir.join(CONFIG_FILE_NAME);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return ModuleSettings::from_json(&text, dir)
                .map_err(|err| format!("{}: {err}", path.display()));
        }
    }
    Err(format!("no {CONFIG_FILE_NAME} in accessible_paths {dirs:?}"))
}

/// The directories Fluent Bit preopened (`accessible_paths`), by asking WASI
/// for the name of each preopened descriptor from 3 on.
fn preopened_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for fd in 3..64 {
        // SAFETY: `fd_prestat_get` only reads the descriptor table.
        let Ok(prestat) = (unsafe { wasi::fd_prestat_get(fd) }) else { break };
        if prestat.tag != wasi::PREOPENTYPE_DIR.raw() {
            continue;
        }
        // SAFETY: the tag says the union holds the directory variant.
        let len = unsafe { prestat.u.dir.pr_name_len };
        let mut name = vec![0u8; len];
        // SAFETY: `name` has exactly the length WASI reported for this name.
        let named = unsafe { wasi::fd_prestat_dir_name(fd, name.as_mut_ptr(), len) }.is_ok();
        if let (true, Ok(name)) = (named, String::from_utf8(name)) {
            dirs.push(PathBuf::from(name.trim_end_matches('\0')));
        }
    }
    dirs
}
