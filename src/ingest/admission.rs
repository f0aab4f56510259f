//! Admission: what a gRPC call must pass before its body is read.
//!
//! A tower layer in front of every service on the ingest port:
//! 1. A call to `fieldwatch.v1.IngestService` is authenticated from its
//!    headers; without a valid token it is answered UNAUTHENTICATED at once
//!    and its body is never read (health and reflection stay open). The
//!    front-end's name travels to the handler as a [`Frontend`] extension.
//! 2. The call's body is metered message by message, from each message's
//!    5-byte gRPC header, before the message's bytes are buffered: a
//!    message declared larger than `max_message_bytes` is INVALID_ARGUMENT;
//!    otherwise its size is drawn from the connection's byte budget and the
//!    global one, and if either is spent the call is RESOURCE_EXHAUSTED.
//!    The bytes go back when the next message starts or the body ends.
//! 3. The call counts as a request in progress on its connection (see
//!    [`crate::conn`]) until its response is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::TlsConnectInfo;

use super::IngestError;
use super::auth::Authenticator;
use super::metrics::{IngestMetrics, Method};
use crate::conn::{ConnHandle, RequestGuard};

/// Path prefix of the calls that need a token.
const INGEST_PATH: &str = "/fieldwatch.v1.IngestService/";

/// The authenticated front-end of a call, put into its extensions by the
/// admission layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend(pub String);

/// Why admission refused a call: the `reason` label of
/// `fieldwatch_ingest_refused_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Unauthenticated,
    TooLarge,
    ConnectionBytes,
    GlobalBytes,
}

impl Refusal {
    const ALL: [Refusal; 4] =
        [Refusal::Unauthenticated, Refusal::TooLarge, Refusal::ConnectionBytes, Refusal::GlobalBytes];

    fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::TooLarge => "message_too_large",
            Refusal::ConnectionBytes => "connection_bytes",
            Refusal::GlobalBytes => "global_bytes",
        }
    }
}

/// The admission rules, shared by every connection.
#[derive(Debug)]
pub struct Admission {
    auth: Authenticator,
    max_message_bytes: usize,
    /// Bytes of request messages in flight over all connections: a message
    /// takes its declared size (plus its 5-byte header) from here when its
    /// header arrives and gives it back when the next message starts or the
    /// body ends. `try_acquire` only: a call that finds it spent is refused
    /// with RESOURCE_EXHAUSTED, never queued. Never closed.
    global_bytes: Arc<Semaphore>,
    refused: prometheus::IntCounterVec,
    inflight_bytes: prometheus::IntGauge,
    /// Per-method call counts, so refused calls show with their code like
    /// the calls the handlers answer.
    calls: Option<IngestMetrics>,
}

impl Admission {
    /// The rules, with their metrics registered into `registry`.
    pub fn new(
        auth: Authenticator,
        max_message_bytes: usize,
        global_bytes: usize,
        calls: Option<IngestMetrics>,
        registry: &prometheus::Registry,
    ) -> Result<Admission, prometheus::Error> {
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "fieldwatch_ingest_refused_calls_total",
                "gRPC calls refused before their body was read, by reason.",
            ),
            &["reason"],
        )?;
        for r in Refusal::ALL {
            refused.with_label_values(&[r.as_str()]);
        }
        let inflight_bytes = prometheus::IntGauge::new(
            "fieldwatch_ingest_inflight_request_bytes",
            "Bytes of request messages being received, over all connections.",
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(inflight_bytes.clone()))?;
        Ok(Admission {
            auth,
            max_message_bytes,
            global_bytes: Arc::new(Semaphore::new(global_bytes)),
            refused,
            inflight_bytes,
            calls,
        })
    }

    fn refuse(&self, reason: Refusal) {
        self.refused.with_label_values(&[reason.as_str()]).inc();
    }
}

/// The layer; see the module docs.
#[derive(Debug, Clone)]
pub struct AdmissionLayer(pub Arc<Admission>);

impl<S> tower_layer::Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> AdmissionService<S> {
        AdmissionService { inner, admission: self.0.clone() }
    }
}

/// The service the layer makes.
#[derive(Debug, Clone)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Arc<Admission>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> tower_service::Service<http::Request<Body>> for AdmissionService<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let admission = self.admission.clone();
        let conn = req
            .extensions()
            .get::<ConnHandle>()
            .or_else(|| req.extensions().get::<TlsConnectInfo<ConnHandle>>().map(TlsConnectInfo::get_ref))
            .cloned();
        let guard = conn.as_ref().map(ConnHandle::begin);
        if req.uri().path().starts_with(INGEST_PATH) {
            match admission.auth.identify_headers(req.headers()) {
                Ok(frontend) => {
                    req.extensions_mut().insert(Frontend(frontend));
                }
                Err(e) => {
                    // Answered from the headers: the body is dropped unread.
                    admission.refuse(Refusal::Unauthenticated);
                    if let (Some(calls), Some(method)) = (&admission.calls, method_of(req.uri().path())) {
                        calls.request(method, e.code(), 0.0);
                    }
                    let response = e.to_status().into_http::<Body>();
                    return Box::pin(async move {
                        drop(guard);
                        Ok(response)
                    });
                }
            }
        }
        // Only gRPC (and binary gRPC-Web) bodies are length-prefixed
        // messages to meter; the HTTP intake routes on this port (JSON,
        // NDJSON, KoboToolbox) bound their bodies themselves
        // (`ingest.max_http_body_bytes`), and base64 gRPC-Web text is
        // decoded further in.
        let framed =
            req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
                ct.starts_with("application/grpc") && !ct.starts_with("application/grpc-web-text")
            });
        let req = if !framed {
            req
        } else {
            req.map(|body| {
                Body::new(Metered {
                    inner: body,
                    admission: admission.clone(),
                    conn_budget: conn.as_ref().map(|c| c.budget().clone()),
                    header: [0; 5],
                    header_len: 0,
                    remaining: 0,
                    held: Vec::new(),
                    held_bytes: 0,
                    failed: false,
                })
            })
        };
        // The usual swap: call the instance that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(req).await?;
            Ok(response.map(|body| Body::new(Tracked { inner: body, _guard: guard })))
        })
    }
}

/// The ingest method a path calls.
fn method_of(path: &str) -> Option<Method> {
    match path.strip_prefix(INGEST_PATH)? {
        "Submit" => Some(Method::Submit),
        "SubmitStream" => Some(Method::SubmitStream),
        "GetInstrument" => Some(Method::GetInstrument),
        "SubmitDisposition" => Some(Method::SubmitDisposition),
        _ => None,
    }
}

/// A request body metered message by message (see the module docs).
struct Metered {
    inner: Body,
    admission: Arc<Admission>,
    conn_budget: Option<Arc<Semaphore>>,
    /// The current message's gRPC header as far as it has arrived.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
    /// Permits of the current message (global and connection).
    held: Vec<OwnedSemaphorePermit>,
    held_bytes: usize,
    failed: bool,
}

impl Metered {
    fn release(&mut self) {
        self.held.clear();
        self.admission.inflight_bytes.sub(self.held_bytes as i64);
        self.held_bytes = 0;
    }

    /// Takes the budget of a message of `len` bytes, or refuses it.
    fn start_message(&mut self, len: usize) -> Result<(), Status> {
        self.release();
        let a = &self.admission;
        if len > a.max_message_bytes {
            a.refuse(Refusal::TooLarge);
            return Err(IngestError::MessageTooLarge(a.max_message_bytes).to_status());
        }
        let want = u32::try_from(len + 5).unwrap_or(u32::MAX);
        if let Some(budget) = &self.conn_budget {
            match budget.clone().try_acquire_many_owned(want) {
                Ok(p) => self.held.push(p),
                Err(_) => {
                    a.refuse(Refusal::ConnectionBytes);
                    return Err(IngestError::BytesExhausted("this connection").to_status());
                }
            }
        }
        match a.global_bytes.clone().try_acquire_many_owned(want) {
            Ok(p) => self.held.push(p),
            Err(_) => {
                a.refuse(Refusal::GlobalBytes);
                self.held.clear();
                return Err(IngestError::BytesExhausted("the server").to_status());
            }
        }
        self.held_bytes = want as usize;
        a.inflight_bytes.add(self.held_bytes as i64);
        Ok(())
    }

    /// Follows the gRPC framing through one chunk of body bytes.
    fn meter(&mut self, mut rest: &[u8]) -> Result<(), Status> {
        while !rest.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(rest.len());
                self.remaining -= n;
                rest = &rest[n..];
                continue;
            }
            let n = (5 - self.header_len).min(rest.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&rest[..n]);
            self.header_len += n;
            rest = &rest[n..];
            if self.header_len == 5 {
                self.header_len = 0;
                let len =
                    u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                let len = len as usize;
                self.start_message(len)?;
                self.remaining = len;
            }
        }
        Ok(())
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.release();
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.meter(data)
                {
                    this.failed = true;
                    this.release();
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => {
                this.release();
                Poll::Ready(other)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its call counted as in progress on its
/// connection until it is dropped.
struct Tracked {
    inner: Body,
    _guard: Option<RequestGuard>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn admission(global: usize) -> Arc<Admission> {
        let auth = Authenticator::new(&[]).expect("open");
        Arc::new(Admission::new(auth, 100, global, None, &prometheus::Registry::new()).expect("metrics"))
    }

    fn framed(len: u32, payload: usize) -> Bytes {
        let mut b = vec![0u8];
        b.extend_from_slice(&len.to_be_bytes());
        b.extend(std::iter::repeat_n(7u8, payload));
        Bytes::from(b)
    }

    fn metered(a: &Arc<Admission>, conn: Option<Arc<Semaphore>>, chunks: Vec<Bytes>) -> Metered {
        let stream = futures::stream::iter(chunks.into_iter().map(|c| Ok::<_, Status>(Frame::data(c))));
        Metered {
            inner: Body::new(http_body_util::StreamBody::new(stream)),
            admission: a.clone(),
            conn_budget: conn,
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            held: Vec::new(),
            held_bytes: 0,
            failed: false,
        }
    }

    #[tokio::test]
    async fn a_message_declared_too_large_is_refused_from_its_header() {
        let a = admission(1000);
        let mut body = metered(&a, None, vec![framed(101, 0)]);
        let e = body.frame().await.expect("a frame").expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn budgets_are_taken_per_message_and_given_back_when_the_next_starts() {
        let a = admission(1000);
        let conn = Arc::new(Semaphore::new(200));
        // A header split over two chunks, then a second message.
        let mut all = framed(90, 90).to_vec();
        all.extend_from_slice(&framed(60, 60));
        let chunks = [&all[..3], &all[3..94], &all[94..]].map(Bytes::copy_from_slice).to_vec();
        let mut body = metered(&a, Some(conn.clone()), chunks);
        body.frame().await.expect("frame").expect("ok");
        assert_eq!(conn.available_permits(), 200, "no budget before the header is whole");
        body.frame().await.expect("frame").expect("ok");
        assert_eq!(conn.available_permits(), 200 - 95);
        assert_eq!(a.global_bytes.available_permits(), 1000 - 95);
        body.frame().await.expect("frame").expect("ok");
        assert_eq!(conn.available_permits(), 200 - 65, "the first message's bytes are back");
        assert!(body.frame().await.is_none());
        assert_eq!(conn.available_permits(), 200);
        assert_eq!(a.global_bytes.available_permits(), 1000);
    }

    #[tokio::test]
    async fn a_spent_budget_is_resource_exhausted() {
        let a = admission(150);
        let conn = Arc::new(Semaphore::new(1000));
        let mut first = metered(&a, Some(conn.clone()), vec![framed(90, 10)]);
        first.frame().await.expect("frame").expect("ok");
        let mut second = metered(&a, Some(conn.clone()), vec![framed(90, 10)]);
        let e = second.frame().await.expect("frame").expect_err("global budget spent");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(conn.available_permits(), 1000 - 95, "the refused message holds nothing");
        drop(first);
        assert_eq!(a.global_bytes.available_permits(), 150);
    }
}
