//! Connection guards shared by the gRPC and the HTTP listener: a cap on
//! open connections, a deadline for the first request, an idle timeout,
//! and closing idle connections at once when shutdown begins.
//!
//! [`Listener`] accepts sockets and wraps each in a [`Guarded`] stream.
//! The stream closes its connection (an I/O error to the server reading
//! it) when no request is in progress and
//! - no request arrived within `header_timeout` of the accept (slowloris,
//!   a half-finished handshake, a silent client), or
//! - the last request ended `idle_timeout` ago, or
//! - shutdown has begun and it never sent a request (connections that did
//!   are closed by the server's graceful shutdown, after their last
//!   response is flushed).
//!
//! Bytes a client trickles in do not count as activity: only requests do.
//! A request is in progress from its headers until its response is done;
//! whoever serves requests marks them with [`ConnHandle::begin`] (the gRPC
//! admission layer and the HTTP middleware). Each connection also carries a
//! byte budget ([`ConnHandle::budget`]) the gRPC admission layer draws on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections open at once; one more is accepted and closed at
    /// once (so the process never runs out of file descriptors and its
    /// probes keep working).
    pub max_connections: usize,
    /// Longest a new connection may take to send its first request.
    pub header_timeout: Duration,
    /// How long a connection with no request in progress stays open after
    /// its last request ended.
    pub idle_timeout: Duration,
    /// Bytes of request messages one connection may have in flight (see
    /// the gRPC admission layer); unused on the HTTP port.
    pub connection_bytes: usize,
}

/// Connection metrics of one listener (`port` is `ingest` or `http`).
#[derive(Debug, Clone)]
pub struct ConnMetrics {
    open: prometheus::IntGauge,
    refused: prometheus::IntCounter,
    timed_out: prometheus::IntCounter,
}

impl ConnMetrics {
    /// Registers `fieldwatch_{port}_connections`,
    /// `fieldwatch_{port}_connections_refused_total` and
    /// `fieldwatch_{port}_connections_timed_out_total` into `registry`.
    pub fn register(registry: &prometheus::Registry, port: &str) -> Result<ConnMetrics, prometheus::Error> {
        let open = prometheus::IntGauge::new(
            format!("fieldwatch_{port}_connections"),
            format!("Connections open on the {port} port."),
        )?;
        let refused = prometheus::IntCounter::new(
            format!("fieldwatch_{port}_connections_refused_total"),
            format!("Connections to the {port} port closed at once because the connection cap was reached."),
        )?;
        let timed_out = prometheus::IntCounter::new(
            format!("fieldwatch_{port}_connections_timed_out_total"),
            format!("Connections to the {port} port closed for sending no request in time or idling."),
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(timed_out.clone()))?;
        Ok(ConnMetrics { open, refused, timed_out })
    }

    /// Metrics registered nowhere (tests).
    pub fn unregistered(port: &str) -> ConnMetrics {
        ConnMetrics::register(&prometheus::Registry::new(), port).unwrap_or_else(|_| unreachable!())
    }
}

/// Accepts connections up to the cap and guards each.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    limits: ConnLimits,
    /// One permit per open connection, held by its [`Guarded`] stream and
    /// given back when the stream is dropped. `try_acquire` only: a
    /// connection over the cap is closed, never queued.
    slots: Arc<Semaphore>,
    /// `true` once shutdown has begun; every stream watches it.
    draining: watch::Receiver<bool>,
    metrics: ConnMetrics,
}

impl Listener {
    /// Guards the connections of `inner`. `draining` turns `true` when
    /// shutdown begins (the sender belongs to the server's shutdown path).
    pub fn new(
        inner: TcpListener,
        limits: ConnLimits,
        draining: watch::Receiver<bool>,
        metrics: ConnMetrics,
    ) -> Listener {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        Listener { inner, limits, slots, draining, metrics }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }

    /// The next connection within the cap. Connections over the cap are
    /// closed and counted; accept errors (out of file descriptors) are
    /// logged and retried after a pause instead of spinning.
    pub async fn accept(&self) -> (Guarded, std::net::SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                self.metrics.refused.inc();
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            return (
                Guarded::new(stream, slot, self.limits, self.draining.clone(), self.metrics.clone()),
                addr,
            );
        }
    }

    /// The accepted connections as a stream (for tonic's
    /// `serve_with_incoming_shutdown`); it never yields an error.
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<Guarded>> + Send + 'static {
        futures::stream::unfold(self, |l| async move {
            let (conn, _) = l.accept().await;
            Some((Ok(conn), l))
        })
    }
}

impl axum::serve::Listener for Listener {
    type Io = Guarded;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Guarded, std::net::SocketAddr) {
        Listener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// What the request side knows of a connection: requests in progress,
/// when the last one ended, and its byte budget.
#[derive(Debug)]
struct ConnState {
    limits: ConnLimits,
    accepted: Instant,
    active: AtomicUsize,
    /// When the last request ended; `None` before the first one.
    last_done: std::sync::Mutex<Option<Instant>>,
    budget: Arc<Semaphore>,
}

impl ConnState {
    /// Whether a request has ever started on the connection.
    fn served(&self) -> bool {
        self.active.load(Ordering::SeqCst) > 0
            || self.last_done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some()
    }

    /// When the connection is to be closed if no request starts before.
    fn deadline(&self) -> Instant {
        match *self.last_done.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(t) => t + self.limits.idle_timeout,
            None => self.accepted + self.limits.header_timeout,
        }
    }
}

/// A handle on a connection for the code serving its requests; also its
/// tonic connect info (a request extension).
#[derive(Debug, Clone)]
pub struct ConnHandle(Arc<ConnState>);

impl ConnHandle {
    /// Marks a request in progress until the guard is dropped: the
    /// connection is not closed for idling meanwhile.
    pub fn begin(&self) -> RequestGuard {
        self.0.active.fetch_add(1, Ordering::SeqCst);
        RequestGuard(self.0.clone())
    }

    /// The connection's byte budget (permits are bytes).
    pub fn budget(&self) -> &Arc<Semaphore> {
        &self.0.budget
    }
}

/// A request in progress on a connection (see [`ConnHandle::begin`]).
#[derive(Debug)]
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last_done.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A guarded connection: a TCP stream that fails its next read once the
/// connection has idled past its deadline or shutdown has begun.
pub struct Guarded {
    io: TcpStream,
    state: Arc<ConnState>,
    /// Wakes the connection's task at its deadline.
    timer: Pin<Box<Sleep>>,
    /// Resolves when shutdown begins.
    drain: Pin<Box<dyn Future<Output = ()> + Send>>,
    draining: bool,
    metrics: ConnMetrics,
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").field("io", &self.io).finish_non_exhaustive()
    }
}

impl Guarded {
    fn new(
        io: TcpStream,
        slot: OwnedSemaphorePermit,
        limits: ConnLimits,
        mut draining: watch::Receiver<bool>,
        metrics: ConnMetrics,
    ) -> Guarded {
        let accepted = Instant::now();
        let state = Arc::new(ConnState {
            limits,
            accepted,
            active: AtomicUsize::new(0),
            last_done: std::sync::Mutex::new(None),
            budget: Arc::new(Semaphore::new(limits.connection_bytes)),
        });
        metrics.open.inc();
        let drain = Box::pin(async move {
            // An error means the sender is gone, which happens only after shutdown.
            let _ = draining.wait_for(|d| *d).await;
        });
        Guarded {
            io,
            timer: Box::pin(tokio::time::sleep_until(accepted + limits.header_timeout)),
            state,
            drain,
            draining: false,
            metrics,
            _slot: slot,
        }
    }

    /// The handle the request side uses.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle(self.state.clone())
    }

    /// An error when the connection must close now; otherwise arms the
    /// timer so the task is woken at the deadline.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if !self.draining && self.drain.as_mut().poll(cx).is_ready() {
            self.draining = true;
        }
        loop {
            let busy = self.state.active.load(Ordering::SeqCst) > 0;
            if busy {
                // Look again one idle period from now (or when I/O wakes us).
                let next = Instant::now() + self.state.limits.idle_timeout;
                self.timer.as_mut().reset(next);
                let _ = self.timer.as_mut().poll(cx);
                return None;
            }
            // A connection that never got as far as a request (a slowloris,
            // a silent client) would hold the server's graceful shutdown up:
            // it is closed at once. One that served requests is left to the
            // server's own graceful shutdown, which flushes the last
            // response before closing.
            if self.draining && !self.state.served() {
                return Some(io::Error::new(io::ErrorKind::ConnectionAborted, "server shutting down"));
            }
            let deadline = self.state.deadline();
            if Instant::now() >= deadline {
                self.metrics.timed_out.inc();
                return Some(io::Error::new(io::ErrorKind::TimedOut, "connection idle past its timeout"));
            }
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.metrics.open.dec();
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = ConnHandle;

    fn connect_info(&self) -> ConnHandle {
        self.handle()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>> for ConnHandle {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> ConnHandle {
        stream.io().handle()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            max_connections: 2,
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            connection_bytes: 1024,
        }
    }

    async fn listener(draining: watch::Receiver<bool>) -> (Listener, std::net::SocketAddr, ConnMetrics) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let metrics = ConnMetrics::unregistered("test");
        (Listener::new(tcp, limits(), draining, metrics.clone()), addr, metrics)
    }

    #[tokio::test]
    async fn a_connection_that_sends_no_request_is_closed_at_the_header_timeout_however_it_trickles() {
        let (_tx, rx) = watch::channel(false);
        let (l, addr, metrics) = listener(rx).await;
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (mut conn, _) = l.accept().await;
        let start = Instant::now();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            loop {
                if let Err(e) = conn.read(&mut buf).await {
                    return e.kind();
                }
            }
        });
        for _ in 0..10 {
            if client.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let kind = reader.await.expect("reader");
        assert_eq!(kind, io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
        assert_eq!(metrics.timed_out.get(), 1);
    }

    #[tokio::test]
    async fn a_request_in_progress_keeps_the_connection_and_its_end_starts_the_idle_timeout() {
        let (_tx, rx) = watch::channel(false);
        let (l, addr, _metrics) = listener(rx).await;
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (mut conn, _) = l.accept().await;
        let request = conn.handle().begin();
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(800), conn.read(&mut buf)).await;
        assert!(read.is_err(), "still open past the header timeout while a request runs");
        let ended = Instant::now();
        drop(request);
        let e = conn.read(&mut buf).await.expect_err("closed once idle");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(ended.elapsed() >= Duration::from_millis(600), "{:?}", ended.elapsed());
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once_and_idle_ones_close_when_draining() {
        let (tx, rx) = watch::channel(false);
        let (l, addr, metrics) = listener(rx).await;
        let _a = TcpStream::connect(addr).await.expect("connect");
        let _b = TcpStream::connect(addr).await.expect("connect");
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let (mut first, _) = l.accept().await;
        let (_second, _) = l.accept().await;
        let accept_more = tokio::spawn(async move {
            let _third = l.accept().await;
        });
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.expect("closed");
        assert!(matches!(n, Ok(0) | Err(_)), "the third connection is closed: {n:?}");
        assert_eq!(metrics.refused.get(), 1);
        accept_more.abort();
        tx.send_replace(true);
        let e = tokio::time::timeout(Duration::from_millis(200), first.read(&mut buf))
            .await
            .expect("closed at once")
            .expect_err("an error");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    }
}
