//! The ingest server: one listener for gRPC (the `IngestService` of
//! [`super::service`], health, reflection), gRPC-Web and the HTTP intake
//! routes of [`super::web`]; the broker probe that health follows; and the
//! shutdown. One record's path is in [`super::intake`].
//!
//! Shutdown, in order: the caller's signal fires -> health turns NOT_SERVING
//! -> tonic stops accepting connections and streams stop reading records ->
//! open calls finish (within the grace period) -> the producer is flushed ->
//! [`IngestServer::run`] returns.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tonic_health::ServingStatus;
use tracing::{info, warn};

use super::IngestConfig;
use super::admission::{Admission, AdmissionLayer};
use super::auth::Authenticator;
use super::error::IngestError;
use super::intake::{Intake, Shared};
use super::metrics::IngestMetrics;
use super::pseudonym::Pseudonymizer;
use super::publisher::Publisher;
use super::service::Service;
use crate::conn::{ConnLimits, ConnMetrics};
use crate::instrument::Catalog;
use crate::proto::v1;
use crate::proto::v1::ingest_service_server::IngestServiceServer;

/// A configured ingest server, ready to [`run`](IngestServer::run).
#[derive(Debug)]
pub struct IngestServer {
    pub(super) shared: Arc<Shared>,
    /// Tells calls that shutdown has begun. The receivers live in
    /// [`Shared`] (cloned into every stream task); `run` sends `true` when
    /// the caller's shutdown signal fires. Never sent otherwise.
    pub(super) draining: watch::Sender<bool>,
    max_message_bytes: usize,
    grace: std::time::Duration,
    /// TLS of the listener, loaded from `ingest.tls`; `None` is plaintext.
    tls: Option<tonic::transport::ServerTlsConfig>,
    /// Authentication and byte budgets before a call's body is read.
    admission: Arc<Admission>,
    /// Connection cap, first-call and idle timeouts of the listener.
    conn_limits: ConnLimits,
    conn_metrics: ConnMetrics,
    /// HTTP/2 settings: streams per connection, keepalive interval and
    /// timeout, maximum connection age.
    max_concurrent_streams: u32,
    keepalive: (Duration, Duration),
    max_connection_age: Duration,
    /// gRPC-Web, CORS and the HTTP intake routes on the same port.
    web: super::web::WebConfig,
}

/// How often the broker is probed for ingest health, and how long a probe
/// may take.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl IngestServer {
    /// Checks the config, registers the metrics into `registry` and prepares
    /// the service. Fails on an invalid config (see
    /// [`IngestConfig::validate`]) or a metric already registered.
    pub fn new(
        config: IngestConfig,
        catalog: Arc<Catalog>,
        publisher: Publisher,
        registry: &prometheus::Registry,
    ) -> Result<IngestServer, IngestError> {
        config.validate()?;
        let publisher = if config.study_wide_submission_ids { publisher } else { publisher.without_claims() };
        let key = config.hmac_key.as_deref().unwrap_or_default();
        let metrics = IngestMetrics::register(registry, &catalog, config.max_inflight)
            .map_err(|e| IngestError::Config(format!("cannot register ingest metrics: {e}")))?;
        let tls = config.tls.as_ref().map(|t| t.load()).transpose()?;
        let admission = Admission::new(
            Authenticator::new(&config.tokens)?,
            config.max_message_bytes,
            config.inflight_bytes,
            Some(metrics.clone()),
            registry,
        )
        .map_err(|e| IngestError::Config(format!("cannot register admission metrics: {e}")))?;
        let conn_metrics = ConnMetrics::register(registry, "ingest")
            .map_err(|e| IngestError::Config(format!("cannot register connection metrics: {e}")))?;
        let web = super::web::WebConfig::from_ingest(&config)?;
        let (draining_tx, draining_rx) = watch::channel(false);
        let shared = Shared {
            pseudonymizer: Pseudonymizer::new(key.as_bytes()),
            auth: Authenticator::new(&config.tokens)?,
            limits: config.limits,
            catalog,
            publisher,
            metrics,
            inflight: Arc::new(Semaphore::new(config.max_inflight)),
            stream_window: config.stream_window,
            details: config.detail_limits(),
            draining: draining_rx,
            quotas: std::sync::OnceLock::new(),
            publish_failures: AtomicU32::new(0),
            healthy: watch::Sender::new(true),
        };
        Ok(IngestServer {
            shared: Arc::new(shared),
            draining: draining_tx,
            max_message_bytes: config.max_message_bytes,
            grace: config.shutdown_grace(),
            tls,
            admission: Arc::new(admission),
            conn_limits: config.conn_limits(),
            conn_metrics,
            max_concurrent_streams: config.max_concurrent_streams,
            keepalive: (
                Duration::from_millis(config.keepalive_interval_ms),
                Duration::from_millis(config.keepalive_timeout_ms),
            ),
            max_connection_age: Duration::from_millis(config.max_connection_age_ms),
            web,
        })
    }

    /// Answers `CheckQuota` from `aggregator`'s study-wide view (in a
    /// process that runs one; without it `CheckQuota` is UNAVAILABLE).
    pub fn with_quotas_from(self, aggregator: Arc<crate::aggregate::LiveState>) -> IngestServer {
        // Set only here, before `run`; a second call keeps the first.
        let _ = self.shared.quotas.set(aggregator);
        self
    }

    /// Whether ingest can publish: `false` after
    /// [`UNHEALTHY_AFTER_FAILURES`](super::intake::UNHEALTHY_AFTER_FAILURES) publishes failed in a row or when a
    /// broker probe (every 2 s while running) gets no answer; `true` again
    /// once a probe or a publish succeeds. The gRPC health service follows
    /// it; `serve` wires it into `/readyz`.
    pub fn health(&self) -> watch::Receiver<bool> {
        self.shared.healthy.subscribe()
    }

    /// Serves gRPC on `listener` (ingest, health, reflection) until
    /// `shutdown` resolves, then shuts down in order and returns. Open calls
    /// get the grace period to finish; after it they are abandoned and
    /// [`IngestError::DrainTimeout`] is returned once the producer is flushed.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), IngestError> {
        let IngestServer {
            shared,
            draining,
            max_message_bytes,
            grace,
            tls,
            admission,
            conn_limits,
            conn_metrics,
            max_concurrent_streams,
            keepalive,
            max_connection_age,
            web,
        } = self;
        let addr = listener.local_addr().ok();
        // Connections over the cap are closed at accept; the others close
        // when they send no call in time, idle, or shutdown begins.
        let listener = crate::conn::Listener::new(listener, conn_limits, draining.subscribe(), conn_metrics);

        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_error = |e| IngestError::Config(format!("cannot build reflection: {e}"));
        let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
        let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
        let ingest = IngestServiceServer::new(Service { shared: shared.clone() })
            .max_decoding_message_size(max_message_bytes);
        // The same service answers gRPC-Web (HTTP/1.1 or 2); plain gRPC
        // passes through untouched.
        let ingest = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), ingest);

        // The listener is bound and the producer created: ready.
        health.set_serving::<IngestServiceServer<Service>>().await;

        // Health follows the publisher: a probe of the broker every
        // PROBE_INTERVAL, and failures in a row reported by `publish`. The
        // task ends when shutdown begins (health is NOT_SERVING from then).
        let mut healthy = shared.healthy.subscribe();
        let health_follow = health.clone();
        let probe_shared = shared.clone();
        let mut probe_draining = draining.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_INTERVAL);
            loop {
                tokio::select! {
                    () = until_draining(&mut probe_draining) => break,
                    _ = tick.tick() => {
                        let reachable = probe_shared.publisher.reachable(PROBE_TIMEOUT).await;
                        probe_shared.probed(reachable);
                    }
                    changed = healthy.changed() => {
                        if changed.is_err() || *probe_draining.borrow() {
                            break;
                        }
                        let serving = *healthy.borrow_and_update();
                        if serving {
                            info!("ingest can publish again: serving");
                            health_follow.set_serving::<IngestServiceServer<Service>>().await;
                            health_follow.set_service_status("", ServingStatus::Serving).await;
                        } else {
                            warn!("ingest cannot publish: not serving");
                            health_follow.set_not_serving::<IngestServiceServer<Service>>().await;
                            health_follow.set_service_status("", ServingStatus::NotServing).await;
                        }
                    }
                }
            }
        });

        let mut drained = draining.subscribe();
        let health_on_signal = health.clone();
        let signal = async move {
            shutdown.await;
            info!("ingest shutting down");
            health_on_signal.set_not_serving::<IngestServiceServer<Service>>().await;
            health_on_signal.set_service_status("", ServingStatus::NotServing).await;
            // Streams stop reading records; new records get UNAVAILABLE.
            draining.send_replace(true);
        };

        info!(addr = ?addr, tls = tls.is_some(), "ingest listening");
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            // Handshakes happen on accepted connections, before any call;
            // one that fails or times out closes that connection only.
            builder = builder.tls_config(tls).map_err(IngestError::Tls)?;
        }
        // HTTP/1.1 as well as HTTP/2 on the one port: gRPC-Web and the JSON
        // intake routes come over either (src/ingest/web.rs).
        let http_routes = super::web::routes(Intake { shared: shared.clone() }, &web);
        let server = builder
            // Bounds per connection, applied by hyper/h2: concurrent calls,
            // keepalive pings (a silent peer is dropped), and an age after
            // which the client is sent GOAWAY and reconnects (open calls get
            // the grace period).
            .max_concurrent_streams(max_concurrent_streams)
            .http2_keepalive_interval(Some(keepalive.0))
            .http2_keepalive_timeout(Some(keepalive.1))
            .max_connection_age(max_connection_age)
            .max_connection_age_grace(grace)
            .accept_http1(true)
            // CORS outside admission: a browser's preflight carries no token.
            .layer(web.cors_layer())
            .layer(AdmissionLayer(admission))
            .add_routes(tonic::service::Routes::from(http_routes))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ingest)
            .serve_with_incoming_shutdown(listener.into_stream(), signal);

        // The grace period starts when the signal has fired. If it runs out,
        // the server future is dropped: no new connections, and connection
        // tasks still open are left to the runtime's shutdown.
        let deadline = async move {
            until_draining(&mut drained).await;
            tokio::time::sleep(grace).await;
        };
        let served = tokio::select! {
            r = server => r.map_err(IngestError::Serve),
            () = deadline => Err(IngestError::DrainTimeout(grace)),
        };

        // Everything acknowledged has been answered; what is still queued
        // (timed-out writes) gets one more grace period to reach the broker.
        if let Err(e) = shared.publisher.flush(grace).await {
            warn!(error = %crate::errors::chain(&e), "producer did not flush before shutdown");
        }
        info!("ingest stopped");
        served
    }
}

/// Resolves once shutdown has begun (at once if it already has).
pub(super) async fn until_draining(draining: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which happens only after shutdown.
    let _ = draining.wait_for(|d| *d).await.map(|_| ());
}
