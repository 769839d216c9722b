//! The component and the Fluent Bit module compiled into this binary, plus
//! the demo data.
//!
//! `build.rs` builds the root crate for `wasm32-wasip2` and `wasm32-wasip1`
//! and points `MISP_ENRICH_COMPONENT_WASM` and `MISP_ENRICH_FLUENT_BIT_WASM`
//! at the results, so `misp-enrich` ships as a single file that can also
//! write out the Fluent Bit module. When a build was impossible (a missing
//! target, or code that does not compile for it) the bytes are empty and the
//! user of those bytes says so; `--component` still works.

/// The component, or an empty slice when the build could not make one.
pub static COMPONENT: &[u8] = include_bytes!(env!("MISP_ENRICH_COMPONENT_WASM"));

/// The Fluent Bit filter module, or an empty slice when the build could not
/// make one.
pub static FLUENT_BIT_MODULE: &[u8] = include_bytes!(env!("MISP_ENRICH_FLUENT_BIT_WASM"));

/// The Cowrie log `misp-enrich demo` replays.
pub static DEMO_LOG: &str = include_str!("../../fixtures/cowrie/replay.ndjson");

/// The MISP dataset the demo's fake serves.
pub static DEMO_DATASET: &str = include_str!("../../fixtures/misp/demo.json");
