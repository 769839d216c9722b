//! misp-enrich: MISP threat-intel context for honeypot log records.
//!
//! A record flows through the crate like this:
//!
//! 1. [`record`] parses it (key order preserved) and finds the source address
//!    under any configured field name, flat or nested;
//! 2. [`address`] keeps only a real, globally routable address, canonicalised,
//!    because MISP interprets search syntax inside values;
//! 3. [`enricher`] answers from the [`cache`] or asks MISP through a
//!    [`transport::Transport`], with requests and response parsing in [`misp`];
//! 4. [`mapping`] picks the most severe event and [`record`] writes `misp.*`
//!    and the hit tag, or the failure tag and `misp.error`.
//!
//! Configuration is read by [`config`] and validated into [`settings`]. The
//! WASI component adapter lives in `component` and is built only for
//! `wasm32-wasip2`; everything else builds and is tested natively.

pub mod address;
pub mod breaker;
pub mod cache;
pub mod config;
pub mod enricher;
pub mod fluent_bit;
pub mod mapping;
pub mod misp;
pub mod record;
pub mod scan;
pub mod secret;
pub mod settings;
pub mod snapshot;
pub mod splice;
pub mod sync;
pub mod transport;

#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
mod component;

pub use config::{Config, ConfigError};
pub use enricher::{Enricher, LookupError, Stats};
pub use settings::Settings;
pub use transport::{Clock, HttpResponse, Transport, TransportError};
