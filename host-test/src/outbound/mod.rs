//! Where the component's HTTP requests may go, and how long they may take.
//!
//! The component reaches MISP through `wasi:http/outgoing-handler`; every
//! request lands in [`HttpHooks::send_request`]. There the host
//!
//! 1. refuses any request whose scheme, host and port differ from the
//!    configured MISP URL (`HttpRequestDenied`): record text is attacker
//!    controlled, so the host, not the component, bounds where it can send;
//! 2. clamps the connect, first-byte and between-bytes timeouts to the
//!    configured caps. The component's HTTP client sets only a connect
//!    timeout, and wasmtime's stock client waits 600 s for anything unset,
//!    which would stall a log pipeline for ten minutes per dead MISP;
//! 3. sends the request over the network ([`client`], TLS from [`tls`]) or
//!    answers it from the in-process [`FakeMisp`].

pub mod client;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::fake::FakeMisp;
use client::NetworkClient;

/// The one origin the component may talk to: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    scheme: Scheme,
    host: String,
    port: u16,
}

/// Why a MISP URL cannot be used as the allowed origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// Not a URL at all.
    #[error("misp_url {0:?} is not a valid URL")]
    Invalid(String),
    /// A host without a scheme, the most common slip.
    #[error("misp_url {0:?} has no scheme: did you mean \"https://{0}\"?")]
    NoScheme(String),
    /// A scheme other than http or https.
    #[error("misp_url {0:?} must start with https:// or http://")]
    Scheme(String),
}

impl Authority {
    /// The origin of a configured MISP URL; a sub-path (`/misp`) is allowed
    /// and ignored here, since only the origin decides where bytes go.
    pub fn from_url(url: &str) -> Result<Self, AuthorityError> {
        let uri: http::Uri = url.parse().map_err(|_| AuthorityError::Invalid(url.into()))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| AuthorityError::NoScheme(url.into()))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(AuthorityError::Scheme(url.into()));
        }
        Self::of(&uri).ok_or_else(|| AuthorityError::Invalid(url.into()))
    }

    /// The origin a request URI addresses, with the scheme's default port.
    fn of(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme()?.clone();
        let host = uri.host()?.to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        Some(Authority { scheme, host, port })
    }

    /// Whether this origin uses TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The host as written in a URL (IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Upper bounds for each phase of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutCaps {
    /// Name resolution, TCP connect and TLS handshake together.
    pub connect: Duration,
    /// From sending the request to the response head.
    pub first_byte: Duration,
    /// The longest pause between two chunks of the response body.
    pub between_bytes: Duration,
}

impl TimeoutCaps {
    /// Caps that follow the component's own settings: `connect_timeout_ms`
    /// for connecting and `response_timeout_ms` for everything after it.
    pub fn new(connect: Duration, response: Duration) -> Self {
        TimeoutCaps { connect, first_byte: response, between_bytes: response }
    }

    /// Each timeout the guest asked for, lowered to the cap, or the cap where
    /// the guest left it unset.
    pub fn clamp(&self, guest: Option<RequestOptions>) -> RequestOptions {
        let guest = guest.unwrap_or_default();
        let pick = |asked: Option<Duration>, cap: Duration| Some(asked.map_or(cap, |a| a.min(cap)));
        RequestOptions {
            connect_timeout: pick(guest.connect_timeout, self.connect),
            first_byte_timeout: pick(guest.first_byte_timeout, self.first_byte),
            between_bytes_timeout: pick(guest.between_bytes_timeout, self.between_bytes),
        }
    }
}

/// Where allowed requests are answered.
#[derive(Clone)]
pub enum Upstream {
    /// The real MISP over TCP (and TLS for https).
    Network(NetworkClient),
    /// An in-process fake; no socket is opened.
    Fake(FakeMisp),
}

/// The policy for one enricher: the allowed origin, the caps, the upstream.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Policy>,
}

struct Policy {
    allowed: Authority,
    caps: TimeoutCaps,
    upstream: Upstream,
}

impl Outbound {
    /// A policy that lets requests to `allowed` through to `upstream`.
    pub fn new(allowed: Authority, caps: TimeoutCaps, upstream: Upstream) -> Self {
        Outbound { inner: Arc::new(Policy { allowed, caps, upstream }) }
    }

    /// Decides and sends one request.
    async fn send(
        self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
        // The body is read before anything else, whatever the outcome: waki
        // calls `handle` first and writes the body afterwards, so answering
        // (or failing) before reading it makes the guest's write fail, and
        // the guest then reports "write failed" instead of the real error
        // code (connection refused, denied, ...).
        let (parts, body) = request.into_parts();
        let body = read_body(body).await?;
        let request = http::Request::from_parts(parts, body);

        let policy = &self.inner;
        if Authority::of(request.uri()).as_ref() != Some(&policy.allowed) {
            // Only the origin is logged: the path and query of a denied
            // request could carry anything the component was fed.
            let target = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(%target, "denied an outgoing request to an origin other than misp_url");
            return Err(HttpError::HttpRequestDenied);
        }
        let timeouts = policy.caps.clamp(options);
        tracing::trace!(method = %request.method(), path = request.uri().path(), ?timeouts, "send");
        match &policy.upstream {
            Upstream::Network(client) => client.send(request, &policy.allowed, timeouts).await,
            Upstream::Fake(fake) => answer_from_fake(fake, request, timeouts).await,
        }
    }
}

/// The future that drives a connection after the response head arrived.
pub type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// The largest request body the host forwards. The component's searches
/// carry at most a hundred addresses (a few kilobytes); the cap only bounds
/// the host's memory if a component goes wrong.
const MAX_REQUEST_BODY: usize = 1024 * 1024;

async fn read_body(mut body: WasiBody) -> Result<Bytes, HttpError> {
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if collected.len() + data.len() > MAX_REQUEST_BODY {
                return Err(HttpError::HttpRequestBodySize(None));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(collected))
}

/// Lets the in-process fake answer, under the same first-byte cap as the
/// network so that timeout handling can be tested without sockets.
async fn answer_from_fake(
    fake: &FakeMisp,
    request: http::Request<Bytes>,
    timeouts: RequestOptions,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let first_byte = timeouts.first_byte_timeout.unwrap_or(Duration::MAX);
    let latency = fake.latency();
    if latency > first_byte {
        fake.record(&request);
        tokio::time::sleep(first_byte).await;
        return Err(HttpError::ConnectionReadTimeout);
    }
    tokio::time::sleep(latency).await;
    let response = fake.handle(&request);
    let response =
        response.map(|bytes: Bytes| Full::new(bytes).map_err(|e| match e {}).boxed_unsync());
    let io: IoFuture = Box::new(async { Ok(()) });
    Ok((response, io))
}

/// The [`WasiHttpHooks`] of one store.
pub struct HttpHooks {
    outbound: Outbound,
}

impl HttpHooks {
    /// Hooks enforcing `outbound`.
    pub fn new(outbound: Outbound) -> Self {
        HttpHooks { outbound }
    }
}

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>
    {
        Box::new(self.outbound.clone().send(request, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unset_timeouts_become_the_caps() {
        let caps = TimeoutCaps::new(ms(3000), ms(5000));
        let got = caps.clamp(None);
        assert_eq!(got.connect_timeout, Some(ms(3000)));
        assert_eq!(got.first_byte_timeout, Some(ms(5000)));
        assert_eq!(got.between_bytes_timeout, Some(ms(5000)));
    }

    #[test]
    fn guest_timeouts_are_lowered_to_the_caps_but_never_raised() {
        let caps = TimeoutCaps::new(ms(3000), ms(5000));
        let guest = RequestOptions {
            connect_timeout: Some(ms(600_000)),
            first_byte_timeout: Some(ms(100)),
            between_bytes_timeout: None,
        };
        let got = caps.clamp(Some(guest));
        assert_eq!(got.connect_timeout, Some(ms(3000)));
        assert_eq!(got.first_byte_timeout, Some(ms(100)));
        assert_eq!(got.between_bytes_timeout, Some(ms(5000)));
    }

    #[test]
    fn authority_uses_the_scheme_default_port() {
        let a = Authority::from_url("https://MISP.example.org/misp").unwrap();
        assert_eq!(a, Authority::from_url("https://misp.example.org:443").unwrap());
        assert_ne!(a, Authority::from_url("http://misp.example.org").unwrap());
        assert_ne!(a, Authority::from_url("https://misp.example.org:8443").unwrap());
    }

    #[test]
    fn misp_url_without_scheme_gets_a_hint() {
        let err = Authority::from_url("misp.local").unwrap_err();
        assert_eq!(
            err.to_string(),
            "misp_url \"misp.local\" has no scheme: did you mean \"https://misp.local\"?"
        );
    }

    #[test]
    fn misp_url_with_another_scheme_is_refused() {
        let err = Authority::from_url("ftp://misp.local").unwrap_err();
        assert_eq!(
            err.to_string(),
            "misp_url \"ftp://misp.local\" must start with https:// or http://"
        );
    }
}
