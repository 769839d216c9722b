//! The seam between the enrichment logic and whatever carries HTTP.
//!
//! The core never performs I/O itself: the component plugs in `wasi:http`,
//! tests plug in a scripted MISP, and a native host could plug in any client.
//! Errors are classified into the short reasons written as `misp.error`, so
//! an analyst can tell a timeout from a refused key without the host's logs.

use std::time::{Duration, Instant};

use crate::misp::HttpRequest;

/// An HTTP answer, any status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lowercase. Only the few the core reads need be kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response without headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse { status, headers: Vec::new(), body: body.into() }
    }

    /// Adds a header (name lowercased).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why no HTTP answer arrived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Connect, first byte or body took longer than allowed.
    #[error("timed out")]
    Timeout,
    /// Nothing listens at MISP's address.
    #[error("connection refused")]
    ConnectionRefused,
    /// MISP's host name did not resolve.
    #[error("name resolution failed")]
    Dns,
    /// The TLS handshake failed, e.g. an untrusted certificate.
    #[error("TLS failed")]
    Tls,
    /// The host refused to send the request.
    #[error("request denied by the host")]
    Denied,
    /// The body exceeded the size the transport accepts.
    #[error("response too large")]
    TooLarge,
    /// Anything else; the text is for logs, not for records.
    #[error("transport failed: {0}")]
    Other(String),
}

impl TransportError {
    /// The short reason written as `misp.error`.
    pub fn reason(&self) -> &'static str {
        match self {
            TransportError::Timeout => "timeout",
            TransportError::ConnectionRefused => "connection_refused",
            TransportError::Dns => "dns_error",
            TransportError::Tls => "tls_error",
            TransportError::Denied => "denied",
            TransportError::TooLarge => "response_too_large",
            TransportError::Other(_) => "transport_error",
        }
    }
}

/// Sends one request and waits for the whole answer.
pub trait Transport {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError>;
}

/// Time since an arbitrary start, never going backwards; cache expiry is
/// measured with it.
pub trait Clock {
    fn now(&self) -> Duration;
}

/// The platform's monotonic clock (`wasi:clocks/monotonic-clock` in WASM).
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}
