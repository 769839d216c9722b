//! The fake MISP over loopback TCP, for tests of the network path and for
//! trying the CLI by hand (`misp-enrich fake-misp`).
//!
//! HTTP/1.1, optionally over TLS (to test `--ca-file` with a private CA),
//! one task per connection, so a slow answer to one request never delays the
//! next one the way a single-threaded test server would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
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

async fn answer(
    fake: FakeMisp,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let request = http::Request::from_parts(parts, body);
    let latency = fake.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(fake.handle(&request).map(Full::new))
}
