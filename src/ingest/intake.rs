//! One record's path, shared by gRPC, gRPC-Web and the HTTP intake routes:
//! take an in-flight slot (or shed) -> check sizes -> validate ->
//! pseudonymise -> publish -> wait for the broker's acknowledgement ->
//! reply. The caller has authenticated already ([`Intake::identify`], or the
//! admission layer for gRPC).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tonic::{Code, Request};
use tracing::{debug, warn};

use super::admission::Frontend;
use super::auth::Authenticator;
use super::error::IngestError;
use super::metrics::{IngestMetrics, Method, study_label};
use super::pseudonym::{Pseudonymizer, record_key};
use super::publisher::{Published, Publisher};
use crate::instrument::Catalog;
use crate::proto::v1;
use crate::proto::v1::{Envelope, SubmitRequest, SubmitResponse};
use crate::validate::{self, Limits, Rule, Violation};

/// What every call needs.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) catalog: Arc<Catalog>,
    pub(super) limits: Limits,
    pub(super) pseudonymizer: Pseudonymizer,
    pub(super) auth: Authenticator,
    pub(super) publisher: Publisher,
    pub(super) metrics: IngestMetrics,
    /// In-flight interviews over all calls: a permit is held from before
    /// validation until the reply (after the delivery report or its
    /// timeout). `try_acquire` only: when none is left the interview is shed
    /// with RESOURCE_EXHAUSTED instead of queueing. Never closed; at
    /// shutdown the permits come back as calls finish.
    pub(super) inflight: Arc<Semaphore>,
    /// Most interviews of one stream in flight at once (see
    /// [`IngestConfig::stream_window`](super::IngestConfig::stream_window)).
    pub(super) stream_window: usize,
    /// Caps on a rejection's error details (`ingest.max_error_violations`,
    /// `ingest.max_error_detail_bytes`).
    pub(super) details: super::error::DetailLimits,
    /// `true` once shutdown has begun; the sender is
    /// [`IngestServer::draining`](super::IngestServer::draining).
    pub(super) draining: watch::Receiver<bool>,
    /// The aggregator whose study-wide view answers `CheckQuota`; set once
    /// by [`IngestServer::with_quotas_from`](super::IngestServer::with_quotas_from)
    /// before serving (empty when the process runs no aggregator).
    pub(super) quotas: std::sync::OnceLock<Arc<crate::aggregate::LiveState>>,
    /// Publishes that failed in a row; reset by a success or a good probe.
    pub(super) publish_failures: AtomicU32,
    /// Whether ingest can publish (see
    /// [`IngestServer::health`](super::IngestServer::health)). The receivers
    /// are the gRPC health task in `run` and `/readyz`.
    pub(super) healthy: watch::Sender<bool>,
}

/// Publishes failing in a row that make ingest not ready.
pub const UNHEALTHY_AFTER_FAILURES: u32 = 3;

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

impl Shared {
    /// The caller's front-end: as the admission layer found it before the
    /// body was read, or from the metadata when the call did not pass
    /// through the layer.
    pub(super) fn frontend<T>(&self, request: &Request<T>) -> Result<String, IngestError> {
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
    pub(super) fn probed(&self, reachable: bool) {
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
    pub(super) async fn ingest(
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
        if let Some(claims) = self.publisher.claims() {
            let claim = self.pseudonymizer.claim(study, &submission.submission_id, &respondent_key);
            let holds = claims.claim(claim).await;
            self.published_ok(holds.is_ok());
            match holds {
                Ok(true) => {}
                Ok(false) => {
                    let violations = vec![Violation::submission_id_taken()];
                    self.metrics.rejected(study, &violations);
                    debug!(study, "submission id used first by another respondent");
                    return Err(IngestError::from_violations(violations));
                }
                Err(e) => return Err(self.failed(study, e)),
            }
        }
        let key = record_key(study, &respondent_key);
        let received_at = SystemTime::now();
        let submission_id = submission.submission_id.clone();
        // The raw respondent id is dropped here and goes no further.
        let envelope = Envelope::of_submission(
            v1::Submission { respondent_id: respondent_key, ..submission },
            Some(received_at.into()),
            frontend,
        );
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
            Err(e) => Err(self.failed(study, e)),
        }
    }

    /// Counts and logs a failed publish (of a record or a claim).
    fn failed(&self, study: &str, e: IngestError) -> IngestError {
        if let IngestError::Publish { reason, .. } = &e {
            self.metrics.publish_failed(*reason);
            warn!(study, reason = reason.as_str(), error = %crate::errors::chain(&e), "publish failed");
        }
        e
    }

    /// One case outcome, from request to reply: validated like an
    /// interview, the case id pseudonymised with the respondent HMAC, and
    /// published under the case's record key, so it shares the partition of
    /// the case's interview.
    pub(super) async fn ingest_disposition(
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
        // The raw case id is dropped here and goes no further.
        let envelope = Envelope::of_disposition(
            v1::Disposition { case_id: case_key, ..disposition },
            Some(received_at.into()),
            frontend,
        );
        let published = self.publish(study, &key, &envelope).await?;
        Ok((received_at, published))
    }

    /// A `SubmitRequest`: an interview, or a case outcome.
    pub(super) async fn ingest_request(
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
}

/// The reply for a stored record: where it went and its read token.
pub(super) fn submit_response(
    submission_id: String,
    received_at: SystemTime,
    published: Published,
) -> SubmitResponse {
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
    pub(super) shared: Arc<Shared>,
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

    /// Counts `keys` of a KoboToolbox post to `study` left out because
    /// they name no item of the form; the label is the loaded study's id.
    pub fn kobo_keys_ignored(&self, study: &str, keys: usize) {
        if keys > 0 {
            let study = study_label(&self.shared.catalog, study);
            self.shared.metrics.kobo_keys_ignored(study, keys);
            debug!(study, keys, "kobo post: keys that name no item of the form left out");
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ingest::{IngestConfig, IngestServer};

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
