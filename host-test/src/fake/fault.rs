//! Ways the fake MISP can misbehave, so tests can show what an outage does
//! to the records end to end.
//!
//! A [`Fault`] is switched on per [`FakeMisp`](super::FakeMisp), for every
//! request or for every other one ([`Schedule`]). HTTP-level faults (a
//! status, a rate limit, a body that is not a search result) are answered
//! the same way in process and over TCP. Connection-level faults (silence, a
//! body cut short, an endless body) need a socket to be real, so
//! [`super::server`] serves them over the wire with [`FaultBody`]; in
//! process they are approximated, as each variant documents.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::Reply;

/// How long a silent server holds a connection before dropping it. Longer
/// than the host's largest response cap (300 s), so the client always gives
/// up first, yet bounded so a forgotten connection task still ends.
pub const SILENT_HOLD: Duration = Duration::from_secs(301);

/// Bytes of each frame of an oversized body. Every frame is a cheap clone
/// of one buffer, so streaming tens of megabytes allocates only this much.
const OVERSIZED_FRAME: usize = 1024 * 1024;

/// How long a cut body waits, after its last byte, before it closes the
/// connection: ample for hyper to flush to a loopback peer.
const CUT_PAUSE: Duration = Duration::from_millis(50);

/// One way of failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with MISP's error body for it (JSON when asked for,
    /// otherwise an HTML page): 500, 502, 503, 403, ...
    Status(StatusCode),
    /// MISP's 429 `Rate limit exceeded.` with `X-Rate-Limit-Reset` set to
    /// this many seconds.
    RateLimited { reset_secs: u64 },
    /// A 200 labelled JSON whose body is not JSON at all, as from a broken
    /// proxy or a PHP notice printed before the output.
    Garbage,
    /// A 200 HTML error page, as a login redirect or a proxy's maintenance
    /// page delivers.
    HtmlPage,
    /// The request is read and never answered. In process the fake reports
    /// a latency of [`SILENT_HOLD`], which the host's response cap cuts.
    Silent,
    /// The normal answer, announced with its full `Content-Length` but cut
    /// off after half of it, then the connection closes. In process there
    /// is no connection to close: the half body arrives as if complete.
    Truncated,
    /// A 200 whose body runs to this many bytes of blanks. In process it is
    /// allocated whole, so keep it near the size under test.
    Oversized { bytes: u64 },
}

/// Which requests a fault hits, counted from the moment it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every request.
    Always,
    /// The first, third, fifth, ... request; the others are served normally.
    EveryOther,
}

impl Schedule {
    /// Whether the request with this 0-based ordinal fails.
    pub(super) fn hits(self, ordinal: u64) -> bool {
        match self {
            Schedule::Always => true,
            Schedule::EveryOther => ordinal.is_multiple_of(2),
        }
    }
}

/// What the fake does with one request.
pub enum Served {
    /// Answers with this response, whole.
    Whole(Response<Bytes>),
    /// Reads the request and says nothing.
    Silent,
    /// Sends the head of this response and `cut` bytes of its body, then
    /// closes the connection.
    Cut(Response<Bytes>, usize),
    /// A 200 whose body runs to this many bytes.
    Endless(u64),
}

impl Fault {
    /// What to serve instead of `normal`, the answer a healthy MISP gives.
    pub(super) fn serve(&self, reply: &Reply, normal: impl FnOnce() -> Response<Bytes>) -> Served {
        match self {
            Fault::Status(status) => {
                Served::Whole(reply.error(*status, status.canonical_reason().unwrap_or("Error")))
            }
            Fault::RateLimited { reset_secs } => Served::Whole(rate_limited(reply, *reset_secs)),
            Fault::Garbage => Served::Whole(plain(
                "application/json",
                "Warning: Undefined array key \"Event\" in /var/www/MISP/app/Model/Attribute.php\n\
                 \u{0}\u{1f}\u{8b} not json",
            )),
            Fault::HtmlPage => Served::Whole(plain(
                "text/html; charset=UTF-8",
                "<!DOCTYPE html>\n<html><head><title>Users - MISP</title></head>\n\
                 <body><form action=\"/users/login\" method=\"post\">\
                 <input name=\"data[User][email]\"></form></body></html>\n",
            )),
            Fault::Silent => Served::Silent,
            Fault::Truncated => {
                let response = normal();
                let cut = response.body().len() / 2;
                Served::Cut(response, cut)
            }
            Fault::Oversized { bytes } => Served::Endless(*bytes),
        }
    }
}

impl Served {
    /// The closest whole response for the in-process path, which has no
    /// connection to keep silent or to cut.
    pub(super) fn in_process(self) -> Response<Bytes> {
        match self {
            Served::Whole(response) => response,
            // Not reached through the host: it waits at most its 300 s cap,
            // less than the SILENT_HOLD latency a silent fault reports.
            Served::Silent => plain("text/plain", ""),
            Served::Cut(response, cut) => response.map(|body| body.slice(..cut)),
            Served::Endless(bytes) => {
                let len = usize::try_from(bytes).unwrap_or(usize::MAX);
                plain_bytes("application/json", Bytes::from(vec![b' '; len]))
            }
        }
    }
}

fn rate_limited(reply: &Reply, reset_secs: u64) -> Response<Bytes> {
    let mut response = reply.always_json(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded.");
    let headers = response.headers_mut();
    headers.insert("x-rate-limit-limit", HeaderValue::from(1000));
    headers.insert("x-rate-limit-remaining", HeaderValue::from(0));
    headers.insert("x-rate-limit-reset", HeaderValue::from(reset_secs));
    response
}

fn plain(content_type: &'static str, body: &'static str) -> Response<Bytes> {
    plain_bytes(content_type, Bytes::from_static(body.as_bytes()))
}

fn plain_bytes(content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A response body for the TCP server: whole, cut short, or long and cheap.
pub struct FaultBody {
    /// What the next frame sends (or a prefix of it).
    frame: Bytes,
    /// Bytes still to send.
    remaining: u64,
    /// Bytes the head announces, less those already sent.
    announced: u64,
    /// Whether the body fails once `remaining` is sent, which makes hyper
    /// close the connection short of the announced length.
    fails: bool,
    /// A pause before failing. hyper drops what it has buffered when a body
    /// fails; pausing lets it flush the head and the partial body first.
    pause: Option<Pin<Box<Sleep>>>,
}

impl FaultBody {
    /// The whole of `body`.
    pub fn whole(body: Bytes) -> Self {
        let len = body.len() as u64;
        FaultBody { frame: body, remaining: len, announced: len, fails: false, pause: None }
    }

    /// The first `cut` bytes of `body`, announced as all of it.
    pub fn cut(body: Bytes, cut: usize) -> Self {
        let announced = body.len() as u64;
        FaultBody {
            frame: body.slice(..cut),
            remaining: cut as u64,
            announced,
            fails: true,
            pause: Some(Box::pin(tokio::time::sleep(CUT_PAUSE))),
        }
    }

    /// `bytes` blanks, sent as clones of one buffer.
    pub fn endless(bytes: u64) -> Self {
        let frame = Bytes::from(vec![b' '; OVERSIZED_FRAME]);
        FaultBody { frame, remaining: bytes, announced: bytes, fails: false, pause: None }
    }
}

impl Body for FaultBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining > 0 {
            let len = self.frame.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            self.remaining -= len as u64;
            self.announced -= len as u64;
            return Poll::Ready(Some(Ok(Frame::data(self.frame.slice(..len)))));
        }
        if let Some(pause) = self.pause.as_mut()
            && pause.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        if std::mem::take(&mut self.fails) {
            let cut = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "body cut short");
            return Poll::Ready(Some(Err(cut)));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && !self.fails
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.announced)
    }
}
