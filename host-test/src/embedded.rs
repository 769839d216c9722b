//! The component compiled into this binary, plus the demo data.
//!
//! `build.rs` builds the root crate for `wasm32-wasip2` and points
//! `MISP_ENRICH_COMPONENT_WASM` at the result, so `misp-enrich` ships as a
//! single file. When that build was impossible (no wasm32-wasip2 target, or
//! the component does not compile) the bytes are empty and
//! [`crate::runtime::Runtime::new`] says so; `--component` still works.

/// The component, or an empty slice when the build could not make one.
pub static COMPONENT: &[u8] = include_bytes!(env!("MISP_ENRICH_COMPONENT_WASM"));

/// The Cowrie log `misp-enrich demo` replays.
pub static DEMO_LOG: &str = include_str!("../../fixtures/cowrie/replay.ndjson");

/// The MISP dataset the demo's fake serves.
pub static DEMO_DATASET: &str = include_str!("../../fixtures/misp/demo.json");
