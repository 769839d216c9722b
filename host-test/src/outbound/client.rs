//! A minimal HTTP/1.1 client for requests the policy allowed.
//!
//! wasmtime's stock client cannot be used as is: it trusts only the built-in
//! roots (no private CA) and is compiled out with the trimmed features. This
//! one opens a connection per request, which fits the traffic: the component
//! asks MISP once per batch of new addresses, a few requests per second at
//! most, and a fresh connection avoids reusing one a proxy silently dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Sleep, sleep, timeout};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use super::{Authority, IoFuture};

/// Sends requests over TCP, with TLS for https origins.
#[derive(Clone)]
pub struct NetworkClient {
    tls: Arc<rustls::ClientConfig>,
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

impl NetworkClient {
    /// A client using `tls` for https origins.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        NetworkClient { tls }
    }

    /// Sends `request` to `origin`, every phase bounded by `timeouts` (which
    /// the policy has already clamped, so each is set).
    pub async fn send(
        &self,
        request: http::Request<Bytes>,
        origin: &Authority,
        timeouts: RequestOptions,
    ) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
        let connect_limit = timeouts.connect_timeout.unwrap_or(Duration::MAX);
        let stream = timeout(connect_limit, self.connect(origin))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);

        // The request line carries only path and query; scheme and authority
        // there are meant for proxies.
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut request = request.map(Full::new);
        *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;

        let first_byte = timeouts.first_byte_timeout.unwrap_or(Duration::MAX);
        let response = timeout(first_byte, sender.send_request(request))
            .await
            .map_err(|_| HttpError::ConnectionReadTimeout)??;
        let gap = timeouts.between_bytes_timeout.unwrap_or(Duration::MAX);
        let response = response.map(|body| PacedBody::new(body, gap).boxed_unsync());

        let io: IoFuture = Box::new(async move {
            match driver.await {
                Ok(result) => result.map_err(HttpError::from),
                Err(join) => Err(HttpError::InternalError(Some(join.to_string()))),
            }
        });
        Ok((response, io))
    }

    async fn connect(&self, origin: &Authority) -> Result<Box<dyn Stream>, HttpError> {
        // Brackets belong to the URL syntax of an IPv6 literal, not to the
        // address that is resolved or checked against the certificate.
        let host = origin.host().trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((host, origin.port())).await.map_err(HttpError::Connect)?;
        // Requests are small and answered at once; Nagle would only add delay.
        let _ = tcp.set_nodelay(true);
        if !origin.is_https() {
            return Ok(Box::new(tcp));
        }
        let name = ServerName::try_from(host.to_owned()).map_err(|_| HttpError::DnsError {
            rcode: Some("invalid dns name".into()),
            info_code: None,
        })?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(HttpError::Tls)?;
        Ok(Box::new(tls))
    }
}

/// A response body that fails when the server pauses longer than `gap`
/// between two frames, so a MISP that stalls mid-body cannot hold a batch.
struct PacedBody {
    inner: hyper::body::Incoming,
    gap: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl PacedBody {
    fn new(inner: hyper::body::Incoming, gap: Duration) -> Self {
        PacedBody { inner, gap, deadline: Box::pin(sleep(gap)) }
    }
}

impl Body for PacedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // checked_add: an uncapped gap must not overflow the clock.
                if let Some(next) = tokio::time::Instant::now().checked_add(self.gap) {
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(HttpError::from(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
