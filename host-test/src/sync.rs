//! Carrying the core's snapshot sync (`misp_enrich::sync`) to a MISP, and
//! writing the result safely.
//!
//! The core asks for pages through its blocking [`Transport`] trait. Two
//! transports plug in here: [`NetworkTransport`] sends over the same HTTP
//! client and TLS settings as `misp-enrich run` ([`crate::outbound`]), and
//! [`FakeTransport`] answers from the in-process [`FakeMisp`], so tests can
//! take a snapshot without a socket. [`write_atomically`] puts the snapshot
//! in place with a rename, so the Fluent Bit module, which reloads the file
//! whenever it changes, never sees half of one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use misp_enrich::misp::HttpRequest;
use misp_enrich::{HttpResponse, Transport, TransportError};
use tokio::runtime::Handle;
use wasmtime_wasi_http::Error as HttpError;

use crate::fake::FakeMisp;
use crate::outbound::client::NetworkClient;
use crate::outbound::{Authority, TimeoutCaps};

/// The wait for each sync request by default. A page holds up to 5,000
/// attributes with their event context, several megabytes that a busy MISP
/// may take tens of seconds to assemble; `run`'s 5 s would fail such pages.
pub const DEFAULT_SYNC_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest response body accepted. A full page is well under 20 MiB;
/// the cap bounds memory if a server (or something posing as MISP) streams
/// without end.
const MAX_RESPONSE_BODY: usize = 256 * 1024 * 1024;

/// A blocking transport over the host's HTTP client.
///
/// It runs each request on a Tokio runtime through `handle`, so it must be
/// used from a thread that is not driving that runtime (for example inside
/// `tokio::task::spawn_blocking`, or any plain thread).
pub struct NetworkTransport {
    client: NetworkClient,
    allowed: Authority,
    caps: TimeoutCaps,
    handle: Handle,
}

impl NetworkTransport {
    /// A transport that sends only to `allowed`, connecting within
    /// `caps.connect` and taking at most `caps.first_byte` for each whole
    /// response.
    pub fn new(
        client: NetworkClient,
        allowed: Authority,
        caps: TimeoutCaps,
        handle: Handle,
    ) -> Self {
        NetworkTransport { client, allowed, caps, handle }
    }

    async fn send_async(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let request = to_http(request)?;
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: Some(self.caps.connect),
            first_byte_timeout: Some(self.caps.first_byte),
            between_bytes_timeout: Some(self.caps.between_bytes),
        };
        let (response, io) =
            self.client.send(request, &self.allowed, options).await.map_err(classify)?;
        let (parts, body) = response.into_parts();
        let body = collect(body).await?;
        // The connection task ends once the body is read; its own error, if
        // any, already surfaced through the body.
        drop(io);
        Ok(from_http(parts, body))
    }
}

impl Transport for NetworkTransport {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        // The core builds every URL from misp_url; checking the origin again
        // keeps the key from ever going anywhere else.
        if Authority::from_url(&request.url).ok().as_ref() != Some(&self.allowed) {
            return Err(TransportError::Denied);
        }
        // The whole exchange, head and body, within the response timeout:
        // a server that trickles a page byte by byte must not hold a sync.
        let limit = self.caps.first_byte;
        let started = std::time::Instant::now();
        let answer = self.handle.block_on(async {
            tokio::time::timeout(limit, self.send_async(request))
                .await
                .unwrap_or(Err(TransportError::Timeout))
        });
        // The path only: logs say which endpoint, never a header value.
        let uri = request.url.parse::<http::Uri>().ok();
        let path = uri.as_ref().map_or("", |uri| uri.path());
        match &answer {
            Ok(response) => tracing::debug!(
                path,
                status = response.status,
                bytes = response.body.len(),
                elapsed = ?started.elapsed(),
                "sync request answered"
            ),
            Err(err) => {
                tracing::debug!(path, %err, elapsed = ?started.elapsed(), "sync request failed")
            }
        }
        answer
    }
}

/// A transport answered by the in-process fake MISP, honouring its latency
/// against a response timeout as the network transport would.
pub struct FakeTransport {
    fake: FakeMisp,
    response_timeout: Duration,
}

impl FakeTransport {
    /// A transport to `fake` with the default sync response timeout.
    pub fn new(fake: FakeMisp) -> Self {
        FakeTransport { fake, response_timeout: DEFAULT_SYNC_RESPONSE_TIMEOUT }
    }

    /// The same, with another response timeout.
    pub fn with_response_timeout(fake: FakeMisp, response_timeout: Duration) -> Self {
        FakeTransport { fake, response_timeout }
    }
}

impl Transport for FakeTransport {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let request = to_http(request)?;
        let latency = self.fake.latency();
        if latency > self.response_timeout {
            self.fake.record(&request);
            std::thread::sleep(self.response_timeout);
            return Err(TransportError::Timeout);
        }
        std::thread::sleep(latency);
        let (parts, body) = self.fake.handle(&request).into_parts();
        Ok(from_http(parts, body.to_vec()))
    }
}

fn to_http(request: &HttpRequest) -> Result<http::Request<Bytes>, TransportError> {
    let mut builder = http::Request::builder().method(request.method()).uri(&request.url);
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    // The error text names neither header values nor the URL's query, so the
    // key cannot leak through it.
    builder
        .body(Bytes::from(request.body.clone()))
        .map_err(|_| TransportError::Other("the request could not be built".into()))
}

fn from_http(parts: http::response::Parts, body: Vec<u8>) -> HttpResponse {
    let mut response = HttpResponse::new(parts.status.as_u16(), body);
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            response = response.with_header(name.as_str(), value);
        }
    }
    response
}

async fn collect(mut body: wasmtime_wasi_http::WasiBody) -> Result<Vec<u8>, TransportError> {
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(classify)?.into_data() {
            if collected.len() + data.len() > MAX_RESPONSE_BODY {
                return Err(TransportError::TooLarge);
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected)
}

/// The core's reason for each failure of the host's client.
fn classify(err: HttpError) -> TransportError {
    match err {
        HttpError::ConnectionTimeout
        | HttpError::ConnectionReadTimeout
        | HttpError::HttpResponseTimeout
        | HttpError::DnsTimeout => TransportError::Timeout,
        HttpError::ConnectionRefused => TransportError::ConnectionRefused,
        HttpError::Connect(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            TransportError::ConnectionRefused
        }
        // Limitation: a failed name resolution surfaces from the connect call
        // with no error kind of its own; the resolver's message ("failed to
        // lookup address information") is the only sign, so another libc's
        // wording would be reported as a generic transport error.
        HttpError::Connect(io) if io.to_string().contains("lookup") => TransportError::Dns,
        HttpError::DnsError { .. } => TransportError::Dns,
        HttpError::Tls(_)
        | HttpError::TlsProtocolError
        | HttpError::TlsCertificateError
        | HttpError::TlsAlertReceived { .. } => TransportError::Tls,
        HttpError::HttpRequestDenied => TransportError::Denied,
        other => TransportError::Other(format!("{other:?}")),
    }
}

/// Writes `contents` to `path` so that readers see the old file or the
/// complete new one, never a mix: a temporary file `PATH.tmp-<pid>` in the
/// same directory (a rename is atomic only within one file system), flushed
/// to disk, then renamed over `path`. On failure the temporary file is
/// removed and `path` is untouched.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_path(path);
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(contents)?;
        // Without the sync, a crash soon after the rename can leave a
        // renamed but empty file on some file systems.
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
        return written;
    }
    // Persist the rename itself; not every platform lets a directory be
    // opened and synced, and the file is in place either way.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// `PATH.tmp-<pid>`, beside `path`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("misp.snapshot");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_atomic_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way of the rename makes it fail.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "old").unwrap();
        assert!(write_atomically(&path, b"new").is_err());
        assert_eq!(std::fs::read_to_string(path.join("inside")).unwrap(), "old");
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn temporary_file_sits_beside_the_target() {
        let path = Path::new("/var/lib/enrich/misp.snapshot");
        let expected = format!("/var/lib/enrich/misp.snapshot.tmp-{}", std::process::id());
        assert_eq!(temporary_path(path), Path::new(&expected));
    }
}
