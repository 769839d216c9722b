//! The fake MISP over loopback TCP, for tests of the network path and for
//! trying the CLI by hand (`misp-enrich fake-misp`).
//!
//! HTTP/1.1, optionally over TLS (to test `--ca-file` with a private CA),
//! one task per connection, so a slow answer to one request never delays the
//! next one the way a single-threaded test server would. Connection-level
//! faults happen for real here: a silent fault holds the connection without
//! a word, a truncated one closes it mid-body, an oversized one streams.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::FakeMisp;
use super::fault::{FaultBody, SILENT_HOLD, Served};

/// A running server; dropping it stops accepting connections.
pub struct FakeServer {
    addr: SocketAddr,
    scheme: &'static str,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Binds `addr` (port 0 picks a free one) and starts serving `fake`
    /// over plain HTTP.
    pub async fn start(fake: FakeMisp, addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(fake, addr, None).await
    }

    /// Like [`FakeServer::start`], but over TLS with `tls`.
    pub async fn start_tls(
        fake: FakeMisp,
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        Self::start_with(fake, addr, Some(TlsAcceptor::from(tls))).await
    }

    async fn start_with(
        fake: FakeMisp,
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, fake, tls, stopped));
        Ok(FakeServer { addr, scheme, stop: Some(stop), task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure as `misp_url`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Serves until the task ends (for the CLI subcommand).
    pub async fn wait(mut self) {
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A TLS server configuration from a PEM certificate chain and key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let shown = |path: &Path, err: &dyn std::fmt::Display| format!("{}: {err}", path.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|err| shown(cert, &err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| shown(cert, &err))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|err| shown(key, &err))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|err| format!("TLS setup failed: {err}"))?;
    Ok(Arc::new(config))
}

async fn serve(
    listener: TcpListener,
    fake: FakeMisp,
    tls: Option<TlsAcceptor>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!("fake MISP accept failed: {err}");
                continue;
            }
        };
        let fake = fake.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, fake).await,
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => serve_connection(stream, fake).await,
                    Err(err) => tracing::debug!("fake MISP TLS handshake failed: {err}"),
                },
            }
        });
    }
}

async fn serve_connection<S>(stream: S, fake: FakeMisp)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| answer(fake.clone(), request));
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(err) = conn.await {
        tracing::debug!("fake MISP connection ended: {err}");
    }
}

/// Why a connection was closed without a (complete) answer.
#[derive(Debug, thiserror::Error)]
#[error("silent fault: held the connection for {SILENT_HOLD:?} without answering")]
struct HeldSilent;

async fn answer(
    fake: FakeMisp,
    request: http::Request<Incoming>,
) -> Result<http::Response<FaultBody>, HeldSilent> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let request = http::Request::from_parts(parts, body);
    let response = match fake.serve(&request) {
        Served::Silent => {
            // The client's timeout ends the exchange long before this; the
            // bound only keeps a forgotten connection from living forever.
            tokio::time::sleep(SILENT_HOLD).await;
            return Err(HeldSilent);
        }
        Served::Whole(response) => response.map(FaultBody::whole),
        Served::Cut(response, cut) => {
            let (mut parts, body) = response.into_parts();
            // Announced explicitly: hyper would otherwise take the length
            // from the body, which ends early.
            parts.headers.insert(http::header::CONTENT_LENGTH, body.len().into());
            http::Response::from_parts(parts, FaultBody::cut(body, cut))
        }
        Served::Endless(bytes) => {
            let mut response = http::Response::new(FaultBody::endless(bytes));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
    };
    let latency = fake.configured_latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    //! The connection-level faults as a raw client sees them on the wire.

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::fake::{Dataset, Fault};

    const REQUEST: &[u8] = b"POST /attributes/restSearch HTTP/1.1\r\nhost: misp\r\n\
        content-type: application/json\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}";

    async fn exchange(fault: Fault, wait: Duration) -> (String, usize) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/misp/demo.json");
        let data = Dataset::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
        let fake = FakeMisp::new(data);
        fake.set_fault(Some(fault));
        let server = FakeServer::start(fake.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream.write_all(REQUEST).await.unwrap();
        let mut received = Vec::new();
        // Bounded: a silent server is expected to run into it.
        let _ = tokio::time::timeout(wait, stream.read_to_end(&mut received)).await;
        assert_eq!(fake.requests().len(), 1, "the request is recorded whatever the fault");
        let text = String::from_utf8_lossy(&received);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_ascii_lowercase(), body.len())
    }

    fn content_length(head: &str) -> usize {
        let line = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap();
        line.trim().parse().unwrap()
    }

    #[tokio::test]
    async fn silent_fault_sends_nothing() {
        let (head, body) = exchange(Fault::Silent, Duration::from_millis(300)).await;
        assert_eq!((head.as_str(), body), ("", 0));
    }

    #[tokio::test]
    async fn truncated_fault_closes_before_the_announced_length() {
        let (head, body) = exchange(Fault::Truncated, Duration::from_secs(5)).await;
        assert!(head.starts_with("http/1.1 "), "{head}");
        let announced = content_length(&head);
        assert!(body > 0 && body < announced, "{body} of {announced} bytes");
    }

    #[tokio::test]
    async fn oversized_fault_streams_the_whole_length() {
        let bytes = 3 * 1024 * 1024 + 5;
        let (head, body) = exchange(Fault::Oversized { bytes }, Duration::from_secs(10)).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(content_length(&head) as u64, bytes);
        assert_eq!(body as u64, bytes);
    }
}
