//! The wasmtime side: compiling the component and running enrichers.
//!
//! [`Runtime`] compiles the component once and keeps a pre-linked
//! [`EnricherComponentPre`], so creating an [`Enricher`] only instantiates it
//! (tens of microseconds) into a store of its own. Each store carries the
//! [`Outbound`] policy that decides where the component's HTTP requests go;
//! see [`crate::outbound`].
//!
//! Errors are split as the host/guest boundary suggests: a configuration the
//! component refuses comes back as [`HostError::Rejected`] with the
//! component's own text, while a trap (a bug on one side or the other) is
//! [`HostError::Trap`] with the full wasmtime cause for the log.
//!
//! Limitation: the component's CPU time is not bounded. Its waiting is (every
//! HTTP phase is capped in [`crate::outbound`]), but a component stuck in a
//! loop would hold the pipeline; bounding that needs epoch interruption with
//! a ticker thread, left out until a component bug makes it worth its cost.

use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::{HttpHooks, Outbound};
use crate::secret::Secret;

wasmtime::component::bindgen!({
    path: "../wit/enrich.wit",
    world: "enricher-component",
    exports: { default: async },
});

use exports::misp_enrich::enrich::enrichment::{BreakerState as WitBreaker, Stats as WitStats};

/// What went wrong between the host and the component.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The component bytes are not a valid component, or it imports something
    /// this host does not provide.
    #[error("cannot load the component: {0:#}")]
    Load(wasmtime::Error),
    /// This binary was built without the component and no other was given.
    #[error(
        "this binary has no embedded component (its build could not compile one); \
         build it with `cargo build --release --target wasm32-wasip2` and pass --component"
    )]
    NoEmbeddedComponent,
    /// The component refused the configuration; the text names the setting.
    #[error("invalid configuration: {0}")]
    Rejected(String),
    /// The component trapped or a host call failed underneath it.
    #[error("the component failed: {0:#}")]
    Trap(wasmtime::Error),
}

/// Counters an enricher has kept since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every record passed in.
    pub records_seen: u64,
    /// Records MISP knows the source of.
    pub hits: u64,
    /// Records MISP does not know the source of.
    pub misses: u64,
    /// Records whose lookup failed.
    pub failures: u64,
    /// Records not looked up (not an object, no or no global source address).
    pub skipped: u64,
    /// Looked-up records answered from the cache.
    pub cache_hits: u64,
    /// Records answered from an expired cache entry because MISP failed.
    pub stale_answers: u64,
    /// HTTP requests sent to MISP.
    pub misp_requests: u64,
    /// Of those, the ones that failed.
    pub failed_requests: u64,
    /// The circuit breaker in front of MISP now.
    pub breaker: Breaker,
    /// How often the breaker has opened.
    pub breaker_trips: u64,
}

/// The state of the component's circuit breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Breaker {
    /// Lookups go to MISP.
    #[default]
    Closed,
    /// MISP looked down; lookups fail fast until the cool-down ends.
    Open,
    /// The cool-down ended; the next request probes MISP.
    HalfOpen,
}

impl std::fmt::Display for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Breaker::Closed => "closed",
            Breaker::Open => "open",
            Breaker::HalfOpen => "half-open",
        })
    }
}

impl Stats {
    /// Converts the component's record once, at the boundary.
    fn from_wit(stats: WitStats) -> Self {
        Stats {
            records_seen: stats.records_seen,
            hits: stats.hits,
            misses: stats.misses,
            failures: stats.failures,
            skipped: stats.skipped,
            cache_hits: stats.cache_hits,
            stale_answers: stats.stale_answers,
            misp_requests: stats.misp_requests,
            failed_requests: stats.failed_requests,
            breaker: match stats.breaker {
                WitBreaker::Closed => Breaker::Closed,
                WitBreaker::Open => Breaker::Open,
                WitBreaker::HalfOpen => Breaker::HalfOpen,
            },
            breaker_trips: stats.breaker_trips,
        }
    }

    /// Records that needed an answer from MISP or the cache.
    pub fn looked_up(&self) -> u64 {
        self.hits + self.misses + self.failures
    }

    /// Share of looked-up records answered from the cache, 0 when none were.
    pub fn cache_hit_ratio(&self) -> f64 {
        match self.looked_up() {
            0 => 0.0,
            n => self.cache_hits as f64 / n as f64,
        }
    }
}

/// The per-store state: WASI, wasi:http and the outbound policy.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: HttpHooks,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// A compiled and linked component, ready to create enrichers.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    pre: EnricherComponentPre<HostState>,
}

impl Runtime {
    /// Compiles component bytes (a `.wasm` component) and links it.
    pub fn new(component: &[u8]) -> Result<Self, HostError> {
        if component.is_empty() {
            return Err(HostError::NoEmbeddedComponent);
        }
        let engine = Engine::new(&wasmtime::Config::new()).map_err(HostError::Load)?;
        let component = Component::new(&engine, component).map_err(HostError::Load)?;
        Self::from_component(engine, &component)
    }

    /// Links an already compiled component; tests compile once per binary
    /// and share it, since compiling costs far more than linking.
    pub fn from_component(engine: Engine, component: &Component) -> Result<Self, HostError> {
        let mut linker = Linker::<HostState>::new(&engine);
        // std in the component pulls wasi:cli, wasi:io, wasi:clocks and
        // wasi:random besides wasi:http, so all of WASI p2 is linked; raw
        // sockets stay unusable because the WasiCtx below enables none.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(HostError::Load)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(HostError::Load)?;
        let pre = linker.instantiate_pre(component).map_err(HostError::Load)?;
        let pre = EnricherComponentPre::new(pre).map_err(HostError::Load)?;
        Ok(Runtime { engine, pre })
    }

    /// The engine, for compiling further components with the same settings.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Instantiates the component and creates one enricher from `config`
    /// (the JSON document the component reads), sending its HTTP through
    /// `outbound`.
    pub async fn enricher(
        &self,
        config: &Secret,
        outbound: Outbound,
    ) -> Result<Enricher, HostError> {
        let state = HostState {
            // Stderr is inherited so that a panic message from the component
            // reaches the operator; stdout is left out because it carries
            // the enriched records.
            wasi: WasiCtx::builder().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: HttpHooks::new(outbound),
        };
        let mut store = Store::new(&self.engine, state);
        let bindings = self.pre.instantiate_async(&mut store).await.map_err(HostError::Trap)?;
        let created = bindings
            .misp_enrich_enrich_enrichment()
            .enricher()
            .call_create(&mut store, config.expose())
            .await
            .map_err(HostError::Trap)?;
        let handle = created.map_err(HostError::Rejected)?;
        tracing::debug!("component instantiated and configured");
        Ok(Enricher { store, bindings, handle })
    }
}

/// One enricher inside its own store: one configuration, cache and counters.
pub struct Enricher {
    store: Store<HostState>,
    bindings: EnricherComponent,
    handle: ResourceAny,
}

impl Enricher {
    /// Enriches one record.
    pub async fn enrich(&mut self, record: &str) -> Result<String, HostError> {
        let guest = self.bindings.misp_enrich_enrich_enrichment().enricher();
        guest.call_enrich(&mut self.store, self.handle, record).await.map_err(HostError::Trap)
    }

    /// Enriches a batch; the result has the same length and order.
    pub async fn enrich_batch(&mut self, records: &[String]) -> Result<Vec<String>, HostError> {
        let changes = self.enrich_changes(records).await?;
        // `None` means the record stays as it was: the caller's copy is it.
        Ok(records
            .iter()
            .zip(changes)
            .map(|(record, change)| change.unwrap_or_else(|| record.clone()))
            .collect())
    }

    /// Enriches a batch as the component answers: the enriched record, or
    /// `None` for a record that stays exactly as it was, which the caller
    /// already holds and need not copy.
    pub async fn enrich_changes(
        &mut self,
        records: &[String],
    ) -> Result<Vec<Option<String>>, HostError> {
        let guest = self.bindings.misp_enrich_enrich_enrichment().enricher();
        let started = std::time::Instant::now();
        let answers = guest
            .call_enrich_batch(&mut self.store, self.handle, records)
            .await
            .map_err(HostError::Trap)?;
        tracing::trace!(records = records.len(), elapsed = ?started.elapsed(), "enrich-batch");
        if answers.len() != records.len() {
            // The WIT promises one answer per input; a component breaking
            // that would silently shift every later record onto another.
            return Err(HostError::Trap(wasmtime::Error::msg(format!(
                "enrich-batch returned {} answers for {} inputs",
                answers.len(),
                records.len()
            ))));
        }
        Ok(answers)
    }

    /// The counters since creation.
    pub async fn stats(&mut self) -> Result<Stats, HostError> {
        let guest = self.bindings.misp_enrich_enrich_enrichment().enricher();
        let stats =
            guest.call_stats(&mut self.store, self.handle).await.map_err(HostError::Trap)?;
        Ok(Stats::from_wit(stats))
    }
}
