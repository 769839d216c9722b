//! A fake MISP that answers the two restSearch endpoints from a dataset.
//!
//! It imitates the parts of MISP 2.4/2.5 the enricher depends on, including
//! the traps documented in `misp-api.md`: a `Bearer` prefix or a wrong key
//! is a 403 (an HTML page unless `Accept: application/json`), a POST without
//! a JSON content type is a 400, a form-encoded body silently loses every
//! filter, and value syntax (`!`, `%`, `&&`, `||`) is interpreted. It also
//! records every request so tests can check what the component sent.
//!
//! The same [`FakeMisp`] serves two ways: in process, as the upstream of
//! [`crate::outbound::Upstream::Fake`], and over loopback TCP through
//! [`server::FakeServer`] (the hidden `misp-enrich fake-misp` subcommand).
//!
//! To show what an outage does to the records, a [`Fault`] can be switched
//! on (see [`fault`]): error statuses, a rate limit, broken bodies, silence,
//! a body cut short or too large, for every request or every other one.
//!
//! Limitation: only what the enricher can touch is imitated. There are no
//! users, roles, distribution levels or sharing groups (the key sees every
//! event), no search parameters in the URL (`/value:1.2.3.4`), no real rate
//! limiting (only [`Fault::RateLimited`]) and no other endpoints than the two
//! restSearch routes.

pub mod dataset;
pub mod fault;
pub mod filters;
pub mod search;
pub mod server;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Value, json};

pub use dataset::{Dataset, NumberStyle};
pub use fault::{Fault, Schedule, Served};
use filters::Filters;

/// One request as the fake received it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl fmt::Debug for RecordedRequest {
    /// Credentials are masked: test failure output is printed in CI logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| match n.as_str() {
                "authorization" | "x-misp-auth" => (n.as_str(), "***"),
                _ => (n.as_str(), v.as_str()),
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

/// The fake instance; clones share the dataset and the request log.
#[derive(Clone)]
pub struct FakeMisp {
    data: Arc<Dataset>,
    shared: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    log: Vec<RecordedRequest>,
    latency: Duration,
    forced_status: Option<StatusCode>,
    fault: Option<(Fault, Schedule)>,
    /// Requests since the fault was set, to apply its schedule.
    since_fault: u64,
}

impl FakeMisp {
    /// A fake serving `data`.
    pub fn new(data: Dataset) -> Self {
        FakeMisp { data: Arc::new(data), shared: Arc::default() }
    }

    /// The dataset it serves.
    pub fn dataset(&self) -> &Dataset {
        &self.data
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        // A panicking test thread must not hide the log from the others.
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared().log.clone()
    }

    /// Delays every answer, to exercise timeouts.
    pub fn set_latency(&self, latency: Duration) {
        self.shared().latency = latency;
    }

    /// The delay before an answer: the configured one, or [`fault::SILENT_HOLD`]
    /// while a [`Fault::Silent`] is set.
    ///
    /// Limitation: the in-process host asks for the latency before the
    /// request is counted, so in process a silent fault silences every
    /// request whatever its schedule; over TCP the schedule holds.
    pub fn latency(&self) -> Duration {
        let shared = self.shared();
        match shared.fault {
            Some((Fault::Silent, _)) => fault::SILENT_HOLD,
            _ => shared.latency,
        }
    }

    /// The delay set with [`FakeMisp::set_latency`], whatever the fault.
    pub(crate) fn configured_latency(&self) -> Duration {
        self.shared().latency
    }

    /// Misbehaves in this way on every request from now on; `None` restores
    /// normal service.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.set_fault_schedule(fault.map(|fault| (fault, Schedule::Always)));
    }

    /// Misbehaves in this way on the next request and every other one after
    /// it, serving the rest normally: a flaky MISP.
    pub fn set_flaky(&self, fault: Fault) {
        self.set_fault_schedule(Some((fault, Schedule::EveryOther)));
    }

    fn set_fault_schedule(&self, fault: Option<(Fault, Schedule)>) {
        let mut shared = self.shared();
        shared.fault = fault;
        shared.since_fault = 0;
    }

    /// The fault that hits the request being handled now, if any.
    fn next_fault(&self) -> Option<Fault> {
        let mut shared = self.shared();
        let ordinal = shared.since_fault;
        shared.since_fault += 1;
        let (fault, schedule) = shared.fault.as_ref()?;
        schedule.hits(ordinal).then(|| fault.clone())
    }

    /// Answers every request with this status (and MISP's error body for
    /// it), to exercise failure handling; `None` restores normal service.
    pub fn force_status(&self, status: Option<StatusCode>) {
        self.shared().forced_status = status;
    }

    /// Adds a request to the log without answering it.
    pub fn record(&self, request: &http::Request<Bytes>) {
        let recorded = RecordedRequest {
            method: request.method().to_string(),
            path: request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            headers: request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect(),
            body: request.body().clone(),
        };
        self.shared().log.push(recorded);
    }

    /// Records and answers one request, in process.
    pub fn handle(&self, request: &http::Request<Bytes>) -> Response<Bytes> {
        self.serve(request).in_process()
    }

    /// Records one request and decides how to serve it, fault included; the
    /// TCP server acts on connection-level faults that [`FakeMisp::handle`]
    /// can only approximate.
    pub fn serve(&self, request: &http::Request<Bytes>) -> Served {
        self.record(request);
        let forced = self.shared().forced_status;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let normal = || respond(&self.data, request, forced, now);
        match self.next_fault() {
            // A broken server or proxy fails before MISP checks the key.
            Some(fault) => {
                let reply = Reply { path: request.uri().path(), json: wants_json(request) };
                fault.serve(&reply, normal)
            }
            None => Served::Whole(normal()),
        }
    }
}

/// The two endpoints the fake serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Attributes,
    Events,
}

fn respond(
    data: &Dataset,
    request: &http::Request<Bytes>,
    forced: Option<StatusCode>,
    now: u64,
) -> Response<Bytes> {
    let path = request.uri().path();
    let reply = Reply { path, json: wants_json(request) };

    if !authenticated(data, request) {
        return reply.error(
            StatusCode::FORBIDDEN,
            "Authentication failed. Please make sure you pass the API key of an API enabled \
             user along in the Authorization header.",
        );
    }
    if let Some(status) = forced {
        return reply.error(status, status.canonical_reason().unwrap_or("Error"));
    }
    let (scope, format_in_path) = match path.trim_end_matches('/') {
        "/attributes/restSearch" => (Scope::Attributes, None),
        "/attributes/restSearch/json" => (Scope::Attributes, Some("json")),
        "/events/restSearch" => (Scope::Events, None),
        "/events/restSearch/json" => (Scope::Events, Some("json")),
        _ => return reply.error(StatusCode::NOT_FOUND, "Not Found"),
    };
    if request.method() != Method::POST {
        return reply.always_json(StatusCode::BAD_REQUEST, NO_TERMS);
    }

    let filters = match read_filters(request, now) {
        Ok(filters) => filters,
        Err(refusal) => return refusal.into_response(&reply),
    };
    let format = filters.return_format.as_deref().or(format_in_path).unwrap_or("json");
    if format != "json" {
        return reply.error(StatusCode::NOT_FOUND, "Not Found");
    }
    let found = match scope {
        Scope::Attributes => search::attributes(data, &filters),
        Scope::Events => search::events(data, &filters),
    };
    success(scope, found)
}

const NO_TERMS: &str =
    "Either specify the search terms in the url, or POST a json with the filter parameters.";

/// Why a body gave no filters.
enum Refusal {
    /// No JSON or form content type: PHP's `$_POST` is empty.
    NoBody,
    /// JSON content type with a body MISP's strict decoder rejects.
    InvalidJson(String),
}

impl Refusal {
    fn into_response(self, reply: &Reply) -> Response<Bytes> {
        match self {
            Refusal::NoBody => reply.always_json(StatusCode::BAD_REQUEST, NO_TERMS),
            Refusal::InvalidJson(why) => reply.error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!(
                    "Invalid JSON input. Make sure that the JSON input is a correctly formatted \
                     JSON string. This request has been blocked to avoid an unfiltered request. \
                     Error: {why}"
                ),
            ),
        }
    }
}

fn read_filters(request: &http::Request<Bytes>, now: u64) -> Result<Filters, Refusal> {
    let media = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/json") => match serde_json::from_slice::<Value>(request.body()) {
            Ok(Value::Object(map)) => Ok(Filters::from_json(&map, now)),
            Ok(_) => Ok(Filters::none()),
            Err(err) => Err(Refusal::InvalidJson(err.to_string())),
        },
        // PHP parses the JSON text as one mangled form-field name; none of
        // MISP's whitelisted names matches, so the search runs unfiltered.
        Some("application/x-www-form-urlencoded" | "multipart/form-data")
            if !request.body().is_empty() =>
        {
            Ok(Filters::none())
        }
        _ => Err(Refusal::NoBody),
    }
}

/// MISP's key check: `X-MISP-AUTH` wins over `Authorization`, values starting
/// `Basic` are ignored, and each comma-separated part must be exactly 40
/// alphanumerics. A `Bearer ` prefix therefore fails.
fn authenticated(data: &Dataset, request: &http::Request<Bytes>) -> bool {
    let headers = request.headers();
    let value = headers
        .get("x-misp-auth")
        .or_else(|| headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok());
    let Some(value) = value.filter(|v| !v.starts_with("Basic")) else {
        return false;
    };
    value.split(',').map(str::trim).any(|key| {
        key.len() == 40 && key.bytes().all(|b| b.is_ascii_alphanumeric()) && key == data.api_key
    })
}

fn wants_json(request: &http::Request<Bytes>) -> bool {
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
    accept.is_some_and(|a| a.contains("application/json"))
        || request.uri().path().ends_with(".json")
}

/// Builds error answers for one request.
struct Reply<'a> {
    path: &'a str,
    json: bool,
}

impl Reply<'_> {
    /// An exception-style error: JSON only when the client asked for it.
    fn error(&self, status: StatusCode, message: &str) -> Response<Bytes> {
        if self.json {
            return self.always_json(status, message);
        }
        let page = format!(
            "<!DOCTYPE html>\n<html>\n<head><title>MISP</title></head>\n<body>\n\
             <h2>{message}</h2>\n<p><strong>Error: </strong>{message}</p>\n</body>\n</html>\n"
        );
        build(status, "text/html; charset=UTF-8", Bytes::from(page))
    }

    /// Errors MISP always answers in JSON (400 "no body", 429).
    fn always_json(&self, status: StatusCode, message: &str) -> Response<Bytes> {
        let body = json!({"name": message, "message": message, "url": self.path});
        // PHP's json_encode escapes every slash; clients must cope.
        let text = body.to_string().replace('/', "\\/");
        build(status, "application/json", Bytes::from(text))
    }
}

fn success(scope: Scope, found: search::Found) -> Response<Bytes> {
    let mut response =
        build(StatusCode::OK, "application/json", Bytes::from(found.body.to_string()));
    let headers = response.headers_mut();
    headers.insert("x-result-count", HeaderValue::from(found.result_count));
    headers.insert("x-export-module-used", HeaderValue::from_static("json"));
    headers.insert("x-response-format", HeaderValue::from_static("json"));
    if let Some(skipped) = found.skipped {
        headers.insert("x-skipped-elements-count", HeaderValue::from(skipped));
    }
    if scope == Scope::Events {
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"misp.event.list.json\""),
        );
    }
    response
}

fn build(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
