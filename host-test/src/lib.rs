//! Native host for the misp-enrich WASI component.
//!
//! The enrichment logic lives in the component (the root crate built for
//! `wasm32-wasip2`); this crate runs it under wasmtime and feeds it records.
//! Data flows like this:
//!
//! 1. [`pipeline`] reads NDJSON lines (a file, stdin, or a followed file)
//!    and groups them into batches;
//! 2. [`runtime::Enricher`] hands each batch to the component's
//!    `enrich-batch`, which asks MISP about addresses it has not cached;
//! 3. each of the component's HTTP requests comes back to the host through
//!    [`outbound`], which allows only the configured MISP origin, caps every
//!    timeout, and sends it over the network or to the in-process
//!    [`fake::FakeMisp`];
//! 4. [`pipeline`] writes the enriched lines in input order and
//!    [`summary::Summary`] reports the component's counters at the end.
//!
//! [`settings`] turns command-line flags and files into the component's JSON
//! configuration and the host's own limits; [`embedded`] holds the component
//! compiled into this binary.
//!
//! For Fluent Bit, whose `wasm` filter gives modules no network, two more
//! pieces: [`sync`] carries the core's snapshot sync over the same HTTP
//! client (`misp-enrich sync`), and [`fluent_bit`] runs the filter module the
//! way Fluent Bit does, so tests exercise its ABI without Fluent Bit.

pub mod embedded;
pub mod fake;
pub mod fluent_bit;
pub mod outbound;
pub mod pipeline;
pub mod runtime;
pub mod secret;
pub mod settings;
pub mod summary;
pub mod sync;
