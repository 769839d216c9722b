//! The Fluent Bit filter module: the same enrichment from a MISP snapshot,
//! since Fluent Bit gives WASM filters no network.
//!
//! [`filter`] does the work and builds natively for tests; [`settings`] reads
//! the module's configuration.
//! The C ABI that Fluent Bit calls lives in `abi`, built only for
//! `wasm32-wasip1`.

pub mod filter;
pub mod settings;

#[cfg(all(target_arch = "wasm32", target_env = "p1"))]
mod abi;
