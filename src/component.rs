//! The WASI component: the `misp-enrich:enrich/enrichment` exports over the
//! core [`Enricher`], with MISP reached through `wasi:http` (via `waki`).
//!
//! This layer only converts: WIT strings and records in, the core's types in
//! between, strings out. Errors cross the boundary once, as text, in
//! `create`; record-level failures travel inside the records.

use std::cell::RefCell;
use std::time::Duration;

use crate::breaker::BreakerState;
use crate::enricher::{Enricher, Stats};
use crate::misp::HttpRequest;
use crate::settings::Settings;
use crate::transport::{HttpResponse, Transport, TransportError};

use exports::misp_enrich::enrich::enrichment::{self, Guest, GuestEnricher};

wit_bindgen::generate!({
    world: "enricher-component",
    path: "wit",
});

/// The most of a MISP answer that is read. A page of 500 attributes with
/// event context is under a megabyte; a hostile or broken server must not
/// make the component buffer without bound.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Response headers the core reads (rate limiting).
const KEPT_HEADERS: &[&str] = &["x-rate-limit-reset", "retry-after"];
/// Read granularity for response bodies.
const READ_CHUNK: u64 = 64 * 1024;

/// `wasi:http` through `waki`.
///
/// Limitation: waki can only ask for a connect timeout; the first-byte and
/// between-bytes limits (`response_timeout_ms`) must be enforced by the host,
/// which the bundled wasmtime host does by clamping every timeout.
///
/// Limitation: waki starts the request before it writes the body, so a host
/// that fails a request at once (refused, denied) can make the body write fail
/// first and the reason read `transport_error`; the bundled host reads the
/// whole body before it decides. A body that stalls midway also reads as
/// `transport_error`, because waki reports stream errors as text without the
/// `wasi:http` error code.
struct WasiHttp {
    client: waki::Client,
    connect_timeout: Duration,
}

impl Transport for WasiHttp {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let mut builder = self.client.post(&request.url).connect_timeout(self.connect_timeout);
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let response = builder.body(request.body.clone()).send().map_err(classify)?;
        let status = response.status_code();
        let mut answer = HttpResponse::new(status, Vec::new());
        for name in KEPT_HEADERS {
            if let Some(value) = response.header(*name).and_then(|v| v.to_str().ok()) {
                answer = answer.with_header(name, value);
            }
        }

        let mut body = Vec::new();
        while let Some(chunk) = response.chunk(READ_CHUNK).map_err(classify)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TransportError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        answer.body = body;
        Ok(answer)
    }
}

/// Maps a `wasi:http` error code to the core's reasons. The text of other
/// errors comes from the HTTP stack, never from the request headers, so it
/// holds no key.
fn classify(err: anyhow::Error) -> TransportError {
    use waki::ErrorCode as E;
    match err.downcast_ref::<E>() {
        Some(
            E::ConnectionTimeout
            | E::ConnectionReadTimeout
            | E::ConnectionWriteTimeout
            | E::HttpResponseTimeout
            | E::DnsTimeout,
        ) => TransportError::Timeout,
        Some(E::ConnectionRefused) => TransportError::ConnectionRefused,
        Some(E::DnsError(_) | E::DestinationNotFound) => TransportError::Dns,
        Some(E::TlsProtocolError | E::TlsCertificateError | E::TlsAlertReceived(_)) => {
            TransportError::Tls
        }
        Some(E::HttpRequestDenied) => TransportError::Denied,
        Some(code) => TransportError::Other(format!("{code:?}")),
        None => TransportError::Other(err.to_string()),
    }
}

struct Component;

impl Guest for Component {
    type Enricher = ComponentEnricher;
}

/// One enricher per resource; `RefCell` because WIT methods take `&self` and
/// a component instance is single-threaded.
struct ComponentEnricher(RefCell<Enricher<WasiHttp>>);

impl GuestEnricher for ComponentEnricher {
    fn create(config: String) -> Result<enrichment::Enricher, String> {
        let settings = Settings::from_json(&config).map_err(|err| err.to_string())?;
        let transport =
            WasiHttp { client: waki::Client::new(), connect_timeout: settings.connect_timeout };
        let enricher = Enricher::new(settings, transport);
        Ok(enrichment::Enricher::new(ComponentEnricher(RefCell::new(enricher))))
    }

    fn enrich(&self, record: String) -> String {
        self.0.borrow_mut().enrich(&record)
    }

    fn enrich_batch(&self, records: Vec<String>) -> Vec<Option<String>> {
        self.0.borrow_mut().enrich_changes(&records)
    }

    fn stats(&self) -> enrichment::Stats {
        stats_to_wit(self.0.borrow().stats())
    }
}

fn stats_to_wit(stats: Stats) -> enrichment::Stats {
    enrichment::Stats {
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
            BreakerState::Closed => enrichment::BreakerState::Closed,
            BreakerState::Open => enrichment::BreakerState::Open,
            BreakerState::HalfOpen => enrichment::BreakerState::HalfOpen,
        },
        breaker_trips: stats.breaker_trips,
    }
}

export!(Component);
