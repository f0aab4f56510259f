//! The tonic service: one record's path is authenticate -> take an
//! in-flight slot (or shed) -> validate -> pseudonymise -> publish -> reply.
//!
//! Shutdown, in order: the caller's signal fires -> health turns NOT_SERVING
//! -> tonic stops accepting connections and streams stop reading records ->
//! open calls finish (within the grace period) -> the producer is flushed ->
//! [`IngestServer::run`] returns.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_health::ServingStatus;
use tracing::{debug, info, warn};

use super::IngestConfig;
use super::admission::{Admission, AdmissionLayer, Frontend};
use super::auth::Authenticator;
use super::error::IngestError;
use super::metrics::{IngestMetrics, Method, study_label};
use super::pseudonym::{Pseudonymizer, record_key};
use super::publisher::{Published, Publisher};
use crate::conn::{ConnLimits, ConnMetrics};
use crate::instrument::Catalog;
use crate::proto::v1::ingest_service_server::{IngestService, IngestServiceServer};
use crate::proto::v1::{
    CheckQuotaRequest, CheckQuotaResponse, Envelope, FieldViolation, GetInstrumentRequest, Instrument,
    SubmitDispositionRequest, SubmitDispositionResponse, SubmitRequest, SubmitResponse, SubmitResult,
};
use crate::proto::{ENVELOPE_VERSION, v1};
use crate::validate::{self, Limits, Rule, Violation};

/// A configured ingest server, ready to [`run`](IngestServer::run).
#[derive(Debug)]
pub struct IngestServer {
    shared: Arc<Shared>,
    /// Tells calls that shutdown has begun. The receivers live in
    /// [`Shared`] (cloned into every stream task); `run` sends `true` when
    /// the caller's shutdown signal fires. Never sent otherwise.
    draining: watch::Sender<bool>,
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

/// What every call needs.
#[derive(Debug)]
struct Shared {
    catalog: Arc<Catalog>,
    limits: Limits,
    pseudonymizer: Pseudonymizer,
    auth: Authenticator,
    publisher: Publisher,
    metrics: IngestMetrics,
    /// In-flight interviews over all calls: a permit is held from before
    /// validation until the reply (after the delivery report or its
    /// timeout). `try_acquire` only: when none is left the interview is shed
    /// with RESOURCE_EXHAUSTED instead of queueing. Never closed; at
    /// shutdown the permits come back as calls finish.
    inflight: Arc<Semaphore>,
    /// Most interviews of one stream in flight at once (see
    /// [`IngestConfig::stream_window`]).
    stream_window: usize,
    /// Caps on a rejection's error details (`ingest.max_error_violations`,
    /// `ingest.max_error_detail_bytes`).
    details: super::error::DetailLimits,
    /// `true` once shutdown has begun; the sender is [`IngestServer::draining`].
    draining: watch::Receiver<bool>,
    /// The aggregator whose study-wide view answers `CheckQuota`; set once
    /// by [`IngestServer::with_quotas_from`] before serving (empty when the
    /// process runs no aggregator).
    quotas: std::sync::OnceLock<Arc<crate::aggregate::LiveState>>,
    /// Publishes that failed in a row; reset by a success or a good probe.
    publish_failures: AtomicU32,
    /// Whether ingest can publish (see [`IngestServer::health`]). The
    /// receivers are the gRPC health task in `run` and `/readyz`.
    healthy: watch::Sender<bool>,
}

/// Publishes failing in a row that make ingest not ready.
pub const UNHEALTHY_AFTER_FAILURES: u32 = 3;

/// How often the broker is probed for ingest health, and how long a probe
/// may take.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// An in-flight slot; gives its permit back and lowers the gauge on drop.
struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

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
    /// [`UNHEALTHY_AFTER_FAILURES`] publishes failed in a row or when a
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
            warn!(error = %e, "producer did not flush before shutdown");
        }
        info!("ingest stopped");
        served
    }
}

/// The `IngestService` implementation.
#[derive(Debug, Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl Shared {
    /// The caller's front-end: as the admission layer found it before the
    /// body was read, or from the metadata when the call did not pass
    /// through the layer.
    fn frontend<T>(&self, request: &Request<T>) -> Result<String, IngestError> {
        match request.extensions().get::<Frontend>() {
            Some(Frontend(name)) => Ok(name.clone()),
            None => self.auth.identify(request.metadata()),
        }
    }

    /// Records a publish outcome for health.
    fn published_ok(&self, ok: bool) {
        if ok {
            self.publish_failures.store(0, Ordering::Relaxed);
            self.healthy.send_if_modified(|h| !std::mem::replace(h, true));
        } else if self.publish_failures.fetch_add(1, Ordering::Relaxed) + 1 >= UNHEALTHY_AFTER_FAILURES {
            self.healthy.send_if_modified(|h| std::mem::replace(h, false));
        }
    }

    /// Records a broker probe for health: an unreachable broker is
    /// unhealthy at once; a reachable one clears earlier failures.
    fn probed(&self, reachable: bool) {
        if reachable {
            self.published_ok(true);
        } else {
            self.publish_failures.store(UNHEALTHY_AFTER_FAILURES, Ordering::Relaxed);
            self.healthy.send_if_modified(|h| std::mem::replace(h, false));
        }
    }

    /// Takes an in-flight slot or sheds.
    fn slot(&self) -> Result<Slot, IngestError> {
        match self.inflight.clone().try_acquire_owned() {
            Ok(permit) => {
                let gauge = self.metrics.inflight().clone();
                gauge.inc();
                Ok(Slot { _permit: permit, gauge })
            }
            Err(_) => {
                self.metrics.shed();
                Err(IngestError::Overloaded)
            }
        }
    }

    /// One interview, from request to reply.
    async fn ingest(
        &self,
        frontend: &str,
        submission: Option<v1::Submission>,
    ) -> Result<SubmitResponse, IngestError> {
        if *self.draining.borrow() {
            return Err(IngestError::ShuttingDown);
        }
        let _slot = self.slot()?;
        let Some(submission) = submission else {
            return Err(IngestError::MissingSubmission);
        };
        // The label is the loaded study's own id or `unknown`, never the request string.
        let study = study_label(&self.catalog, &submission.study);
        // Counts and sizes first, on the message as decoded: nothing is
        // converted, parsed or copied for a submission over the limits.
        if let Err(violations) = crate::proto::check_size(&submission, &self.limits) {
            self.metrics.rejected(study, &violations);
            debug!(study, problems = violations.len(), "submission rejected before conversion");
            return Err(IngestError::from_violations(violations));
        }
        // The message moves into the validated form and back: its strings
        // and values are never copied (an accepted submission carries no
        // free-form JSON, so the way back is exact).
        let plain = validate::Submission::from(submission);
        if let Err(violations) = validate::validate(&self.catalog, &plain, &self.limits) {
            self.metrics.rejected(study, &violations);
            debug!(study, problems = violations.len(), "submission rejected");
            return Err(IngestError::from_violations(violations));
        }
        let submission = v1::Submission::from(plain);

        let respondent_key = self.pseudonymizer.key(&submission.respondent_id);
        let key = record_key(study, &respondent_key);
        let received_at = SystemTime::now();
        let submission_id = submission.submission_id.clone();
        let envelope = Envelope {
            version: ENVELOPE_VERSION,
            received_at: Some(received_at.into()),
            frontend: frontend.to_string(),
            // The raw respondent id is dropped here and goes no further.
            submission: Some(v1::Submission { respondent_id: respondent_key, ..submission }),
            disposition: None,
        };
        let published = self.publish(study, &key, &envelope).await?;
        Ok(submit_response(submission_id, received_at, published))
    }

    /// Publishes an accepted envelope under `key` and counts the outcome.
    async fn publish(&self, study: &str, key: &str, envelope: &Envelope) -> Result<Published, IngestError> {
        let published = self.publisher.publish(key, envelope).await;
        self.metrics.producer_queue(self.publisher.queued());
        self.published_ok(published.is_ok());
        match published {
            Ok(published) => {
                self.metrics.published(published.took.as_secs_f64());
                self.metrics.accepted(study);
                Ok(published)
            }
            Err(e) => {
                if let IngestError::Publish { reason, .. } = &e {
                    self.metrics.publish_failed(*reason);
                    warn!(study, reason = reason.as_str(), error = %e, "publish failed");
                }
                Err(e)
            }
        }
    }

    /// One case outcome, from request to reply: validated like an
    /// interview, the case id pseudonymised with the respondent HMAC, and
    /// published under the case's record key, so it shares the partition of
    /// the case's interview.
    async fn ingest_disposition(
        &self,
        frontend: &str,
        disposition: Option<v1::Disposition>,
    ) -> Result<(SystemTime, Published), IngestError> {
        if *self.draining.borrow() {
            return Err(IngestError::ShuttingDown);
        }
        let _slot = self.slot()?;
        let Some(disposition) = disposition else {
            return Err(IngestError::Invalid {
                violations: vec![Violation {
                    field: "disposition".into(),
                    rule: Rule::Required,
                    message: "disposition is required".into(),
                }],
            });
        };
        let plain = crate::fieldwork::DispositionSubmission::from(disposition.clone());
        let study = study_label(&self.catalog, &plain.study);
        if let Err(violations) = crate::fieldwork::validate_disposition(&self.catalog, &plain, &self.limits) {
            self.metrics.rejected(study, &violations);
            debug!(study, problems = violations.len(), "disposition rejected");
            return Err(IngestError::from_violations(violations));
        }
        drop(plain);
        let case_key = self.pseudonymizer.key(&disposition.case_id);
        let key = record_key(study, &case_key);
        let received_at = SystemTime::now();
        let envelope = Envelope {
            version: ENVELOPE_VERSION,
            received_at: Some(received_at.into()),
            frontend: frontend.to_string(),
            submission: None,
            // The raw case id is dropped here and goes no further.
            disposition: Some(v1::Disposition { case_id: case_key, ..disposition }),
        };
        let published = self.publish(study, &key, &envelope).await?;
        Ok((received_at, published))
    }

    /// A `SubmitRequest`: an interview, or a case outcome.
    async fn ingest_request(
        &self,
        frontend: &str,
        request: SubmitRequest,
    ) -> Result<SubmitResponse, IngestError> {
        match request {
            SubmitRequest { submission: None, disposition: Some(d) } => {
                let (received_at, published) = self.ingest_disposition(frontend, Some(d)).await?;
                Ok(submit_response(String::new(), received_at, published))
            }
            SubmitRequest { submission, disposition: None } => self.ingest(frontend, submission).await,
            SubmitRequest { submission: Some(_), disposition: Some(_) } => Err(IngestError::Invalid {
                violations: vec![Violation {
                    field: "disposition".into(),
                    rule: Rule::TooMany,
                    message: "a request carries a submission or a disposition, not both".into(),
                }],
            }),
        }
    }

    /// One record of a stream, as its result.
    async fn ingest_record(&self, frontend: &str, index: u64, request: SubmitRequest) -> SubmitResult {
        match self.ingest_request(frontend, request).await {
            Ok(response) => SubmitResult {
                index,
                accepted: true,
                violations: Vec::new(),
                code: 0,
                message: String::new(),
                read_token: response.read_token,
            },
            Err(e) => {
                let status = e.to_status_with(&self.details);
                SubmitResult {
                    index,
                    accepted: false,
                    violations: e.violations().into_iter().map(field_violation).collect(),
                    code: status.code() as i32,
                    message: status.message().to_string(),
                    read_token: String::new(),
                }
            }
        }
    }
}

/// The reply for a stored record: where it went and its read token.
fn submit_response(submission_id: String, received_at: SystemTime, published: Published) -> SubmitResponse {
    let token = crate::read_token::ReadToken { partition: published.partition, offset: published.offset };
    SubmitResponse {
        submission_id,
        received_at: Some(received_at.into()),
        partition: published.partition,
        offset: published.offset,
        read_token: token.to_string(),
    }
}

/// The one path from "a front-end submits one record" to its reply,
/// shared by gRPC, gRPC-Web and the HTTP intake routes: authenticate,
/// take an in-flight slot or shed, validate, pseudonymise, publish, wait
/// for the broker's acknowledgement, count.
#[derive(Debug, Clone)]
pub struct Intake {
    shared: Arc<Shared>,
}

impl Intake {
    /// The loaded studies.
    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// The caller's front-end name from its `authorization` header, or
    /// `Unauthenticated`.
    pub fn identify(&self, metadata: &tonic::metadata::MetadataMap) -> Result<String, IngestError> {
        self.shared.auth.identify(metadata)
    }

    /// Submits one interview or disposition for `frontend`; returns once
    /// the broker acknowledged it.
    pub async fn submit(
        &self,
        frontend: &str,
        request: SubmitRequest,
    ) -> Result<SubmitResponse, IngestError> {
        self.shared.ingest_request(frontend, request).await
    }

    /// Most records of one request in flight at once (`ingest.stream_window`).
    pub fn window(&self) -> usize {
        self.shared.stream_window
    }

    /// Counts a finished request of `method` with the gRPC `code` its
    /// outcome maps to.
    pub fn count_request(&self, method: Method, code: Code, seconds: f64) {
        self.shared.metrics.request(method, code, seconds);
    }
}

fn field_violation(v: Violation) -> FieldViolation {
    FieldViolation { field: v.field, rule: v.rule.as_str().to_string(), message: v.message }
}

#[tonic::async_trait]
impl IngestService for Service {
    async fn submit(&self, request: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let start = Instant::now();
        let result = match self.shared.frontend(&request) {
            Ok(frontend) => self.shared.ingest_request(&frontend, request.into_inner()).await,
            Err(e) => Err(e),
        };
        let code = result.as_ref().map_or_else(IngestError::code, |_| Code::Ok);
        self.shared.metrics.request(Method::Submit, code, start.elapsed().as_secs_f64());
        result.map(Response::new).map_err(|e| e.to_status_with(&self.shared.details))
    }

    async fn submit_disposition(
        &self,
        request: Request<SubmitDispositionRequest>,
    ) -> Result<Response<SubmitDispositionResponse>, Status> {
        let start = Instant::now();
        let result = match self.shared.frontend(&request) {
            Ok(frontend) => self
                .shared
                .ingest_disposition(&frontend, request.into_inner().disposition)
                .await
                .map(|(t, _)| t),
            Err(e) => Err(e),
        };
        let code = result.as_ref().map_or_else(IngestError::code, |_| Code::Ok);
        self.shared.metrics.request(Method::SubmitDisposition, code, start.elapsed().as_secs_f64());
        result
            .map(|t| Response::new(SubmitDispositionResponse { received_at: Some(t.into()) }))
            .map_err(|e| e.to_status_with(&self.shared.details))
    }

    type SubmitStreamStream = ReceiverStream<Result<SubmitResult, Status>>;

    async fn submit_stream(
        &self,
        request: Request<Streaming<SubmitRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let start = Instant::now();
        let frontend = match self.shared.frontend(&request) {
            Ok(f) => f,
            Err(e) => {
                self.shared.metrics.request(Method::SubmitStream, e.code(), start.elapsed().as_secs_f64());
                return Err(e.to_status_with(&self.shared.details));
            }
        };
        // Results on their way to the client. Bounded by the stream window:
        // when the client reads slowly, the task below stops reading
        // records. The receiver is the response body tonic sends; when the
        // client goes away sends fail and the task ends. The task drops the
        // sender when it is done, which ends the response.
        let (tx, rx) = mpsc::channel(self.shared.stream_window);
        tokio::spawn(run_stream(self.shared.clone(), frontend, request.into_inner(), tx, start));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_instrument(
        &self,
        request: Request<GetInstrumentRequest>,
    ) -> Result<Response<Instrument>, Status> {
        let start = Instant::now();
        let result = self.shared.frontend(&request).and_then(|_| {
            let study = &request.get_ref().study;
            self.shared
                .catalog
                .get(study)
                .map(|s| Instrument::from(s.as_ref()))
                .ok_or(IngestError::UnknownStudy)
        });
        let code = result.as_ref().map_or_else(IngestError::code, |_| Code::Ok);
        self.shared.metrics.request(Method::GetInstrument, code, start.elapsed().as_secs_f64());
        result.map(Response::new).map_err(|e| e.to_status_with(&self.shared.details))
    }

    async fn check_quota(
        &self,
        request: Request<CheckQuotaRequest>,
    ) -> Result<Response<CheckQuotaResponse>, Status> {
        let start = Instant::now();
        let result = self.shared.auth.identify(request.metadata()).and_then(|_| {
            super::quota::check(&self.shared.catalog, self.shared.quotas.get(), request.get_ref())
        });
        let code = result.as_ref().map_or_else(IngestError::code, |_| Code::Ok);
        self.shared.metrics.request(Method::CheckQuota, code, start.elapsed().as_secs_f64());
        result.map(Response::new).map_err(|e| e.to_status_with(&self.shared.details))
    }
}

/// Resolves once shutdown has begun (at once if it already has).
async fn until_draining(draining: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which happens only after shutdown.
    let _ = draining.wait_for(|d| *d).await.map(|_| ());
}

/// Reads a stream's records, ingests up to `stream_window` of them at once
/// and sends their results in request order.
async fn run_stream(
    shared: Arc<Shared>,
    frontend: String,
    mut inbound: Streaming<SubmitRequest>,
    tx: mpsc::Sender<Result<SubmitResult, Status>>,
    start: Instant,
) {
    let mut draining = shared.draining.clone();
    // Records being ingested, oldest first; results leave in this order.
    let mut pending = FuturesOrdered::new();
    let mut next_index: u64 = 0;
    let mut reading = true;
    // How the stream ends when not with OK.
    let mut end: Option<Status> = None;
    let mut client_gone = false;
    loop {
        tokio::select! {
            biased;
            Some(result) = pending.next(), if !pending.is_empty() => {
                if tx.send(Ok(result)).await.is_err() {
                    client_gone = true;
                    break;
                }
            }
            // Shutdown: read no more, finish what is pending, then end with
            // UNAVAILABLE so the client resends records without a result.
            () = until_draining(&mut draining), if reading => {
                reading = false;
                end = Some(IngestError::ShuttingDown.to_status());
            }
            message = inbound.message(), if reading && pending.len() < shared.stream_window => {
                match message {
                    Ok(Some(request)) => {
                        let index = next_index;
                        next_index += 1;
                        let shared = shared.clone();
                        let frontend = frontend.clone();
                        pending.push_back(async move { shared.ingest_record(&frontend, index, request).await });
                    }
                    Ok(None) => reading = false,
                    Err(status) => {
                        reading = false;
                        end = Some(status);
                    }
                }
            }
            else => break,
        }
    }
    let code = match (&end, client_gone) {
        (_, true) => Code::Cancelled,
        (Some(status), false) => status.code(),
        (None, false) => Code::Ok,
    };
    if let Some(status) = end
        && !client_gone
    {
        let _ = tx.send(Err(status)).await;
    }
    debug!(records = next_index, code = ?code, "stream finished");
    shared.metrics.request(Method::SubmitStream, code, start.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn server(max_inflight: usize) -> (IngestServer, prometheus::Registry) {
        let mut kafka = rdkafka::ClientConfig::new();
        // Nothing listens there; these tests never get as far as publishing.
        kafka.set("bootstrap.servers", "127.0.0.1:9");
        let publisher = Publisher::new(&kafka, "t", Duration::from_millis(100)).expect("producer");
        let config = IngestConfig {
            hmac_key: Some("unit-test-key-0123456789".into()),
            max_inflight,
            ..IngestConfig::default()
        };
        let registry = prometheus::Registry::new();
        let s = IngestServer::new(config, Arc::new(Catalog::demo()), publisher, &registry).expect("server");
        (s, registry)
    }

    #[tokio::test]
    async fn a_record_beyond_the_inflight_limit_is_shed_and_counted() {
        let (s, registry) = server(1);
        let held = s.shared.slot().expect("the one slot");
        assert_eq!(s.shared.metrics.inflight().get(), 1);
        let e = s.shared.ingest("anonymous", Some(v1::Submission::default())).await.expect_err("shed");
        assert_eq!(e.code(), Code::ResourceExhausted);
        drop(held);
        assert_eq!(s.shared.metrics.inflight().get(), 0);
        let shed = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "fieldwatch_ingest_shed_records_total")
            .map(|f| f.get_metric()[0].get_counter().get_value());
        assert_eq!(shed, Some(1.0));
        // With the slot back, the record is validated (and rejected) instead.
        let e = s.shared.ingest("anonymous", Some(v1::Submission::default())).await.expect_err("invalid");
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn once_draining_new_records_are_unavailable() {
        let (s, _registry) = server(4);
        s.draining.send_replace(true);
        let e = s.shared.ingest("anonymous", Some(v1::Submission::default())).await.expect_err("draining");
        assert_eq!(e.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn a_request_without_a_submission_is_invalid() {
        let (s, _registry) = server(4);
        let e = s.shared.ingest("anonymous", None).await.expect_err("invalid");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(e.violations()[0].field, "submission");
    }
}
