//! Ingest metrics, registered into a registry the caller passes in.
//!
//! Label values come only from enums ([`Method`], [`tonic::Code`],
//! [`Rule`], [`PublishFailure`]) or from the loaded instruments (study ids);
//! a study that is not loaded is labelled `unknown`, so hostile requests
//! cannot grow the number of series. Every combination is registered at
//! start, so rates exist (at zero) before the first event.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use tonic::Code;

use crate::instrument::Catalog;
use crate::validate::{Rule, Violation};

use super::error::PublishFailure;

/// Label value for a study that is not loaded.
pub const UNKNOWN_STUDY: &str = "unknown";

/// The RPC methods and HTTP intake routes, as the `method` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `IngestService.Submit`.
    Submit,
    /// `IngestService.SubmitStream`.
    SubmitStream,
    /// `IngestService.GetInstrument`.
    GetInstrument,
    /// `IngestService.SubmitDisposition`.
    SubmitDisposition,
    /// `IngestService.CheckQuota`.
    CheckQuota,
    /// `POST /api/v1/studies/{study}/submissions` (JSON or NDJSON over HTTP).
    HttpSubmissions,
    /// `POST /api/v1/studies/{study}/kobo` (a KoboToolbox REST service).
    HttpKobo,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 7] = [
        Method::Submit,
        Method::SubmitStream,
        Method::GetInstrument,
        Method::SubmitDisposition,
        Method::CheckQuota,
        Method::HttpSubmissions,
        Method::HttpKobo,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Submit => "submit",
            Method::SubmitStream => "submit_stream",
            Method::GetInstrument => "get_instrument",
            Method::SubmitDisposition => "submit_disposition",
            Method::CheckQuota => "check_quota",
            Method::HttpSubmissions => "http_submissions",
            Method::HttpKobo => "http_kobo",
        }
    }
}

/// The gRPC code names used as the `code` label (as in grpc-go's
/// `grpc_code`).
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Codes the ingest service returns, pre-registered per method.
const CODES: [Code; 8] = [
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::Unauthenticated,
    Code::ResourceExhausted,
    Code::Unavailable,
    Code::Internal,
    Code::Cancelled,
];

/// The ingest metrics.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    requests: IntCounterVec,
    records: IntCounterVec,
    rejections: IntCounterVec,
    duration: HistogramVec,
    publish_failures: IntCounterVec,
    kobo_ignored: IntCounterVec,
    shed: IntCounter,
    inflight: IntGauge,
    inflight_limit: IntGauge,
    producer_queue: IntGauge,
    publish_duration: Histogram,
}

impl IngestMetrics {
    /// Creates the metrics and registers them into `registry`, with every
    /// label combination for the catalog's studies.
    pub fn register(
        registry: &Registry,
        catalog: &Catalog,
        inflight_limit: usize,
    ) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "fieldwatch_ingest_requests_total",
                "Ingest calls finished (RPCs and HTTP posts), by method and gRPC code (HTTP: the code its status maps from).",
            ),
            &["method", "code"],
        )?;
        let records = IntCounterVec::new(
            Opts::new(
                "fieldwatch_ingest_records_total",
                "Interviews validated, by study and outcome (accepted = stored, rejected = invalid).",
            ),
            &["study", "outcome"],
        )?;
        let rejections = IntCounterVec::new(
            Opts::new(
                "fieldwatch_ingest_rejections_total",
                "Field violations of rejected interviews, by study and rule.",
            ),
            &["study", "rule"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "fieldwatch_ingest_request_duration_seconds",
                "Time to answer an ingest call (a stream: until its last result), by method.",
            ),
            &["method"],
        )?;
        let publish_failures = IntCounterVec::new(
            Opts::new(
                "fieldwatch_ingest_publish_failures_total",
                "Interviews the broker did not acknowledge (answered UNAVAILABLE), by reason.",
            ),
            &["reason"],
        )?;
        let kobo_ignored = IntCounterVec::new(
            Opts::new(
                "fieldwatch_ingest_kobo_ignored_keys_total",
                "Keys of KoboToolbox posts left out because they name no item of the form (calculate fields, *_other texts, notes, repeats), by study.",
            ),
            &["study"],
        )?;
        let shed = IntCounter::new(
            "fieldwatch_ingest_shed_records_total",
            "Interviews refused with RESOURCE_EXHAUSTED because the in-flight limit was reached.",
        )?;
        let inflight =
            IntGauge::new("fieldwatch_ingest_inflight", "Interviews being validated or published now.")?;
        let inflight_limit_g = IntGauge::new(
            "fieldwatch_ingest_inflight_limit",
            "Most interviews in flight at once; more are shed with RESOURCE_EXHAUSTED.",
        )?;
        let producer_queue = IntGauge::new(
            "fieldwatch_ingest_producer_queue_messages",
            "Messages in the Kafka producer's queue awaiting a delivery report (sampled per publish).",
        )?;
        let publish_duration = Histogram::with_opts(HistogramOpts::new(
            "fieldwatch_ingest_publish_duration_seconds",
            "Time from handing an interview to the producer to its delivery report.",
        ))?;

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(publish_failures.clone()))?;
        registry.register(Box::new(kobo_ignored.clone()))?;
        registry.register(Box::new(shed.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(inflight_limit_g.clone()))?;
        registry.register(Box::new(producer_queue.clone()))?;
        registry.register(Box::new(publish_duration.clone()))?;

        inflight_limit_g.set(i64::try_from(inflight_limit).unwrap_or(i64::MAX));
        for m in Method::ALL {
            duration.with_label_values(&[m.as_str()]);
            for c in CODES {
                requests.with_label_values(&[m.as_str(), code_label(c)]);
            }
        }
        let studies = catalog.studies().map(|s| s.id()).chain([UNKNOWN_STUDY]);
        for s in catalog.studies() {
            kobo_ignored.with_label_values(&[s.id()]);
        }
        for s in studies {
            for outcome in ["accepted", "rejected"] {
                records.with_label_values(&[s, outcome]);
            }
            for r in Rule::ALL {
                rejections.with_label_values(&[s, r.as_str()]);
            }
        }
        for r in PublishFailure::ALL {
            publish_failures.with_label_values(&[r.as_str()]);
        }
        Ok(IngestMetrics {
            requests,
            records,
            rejections,
            duration,
            publish_failures,
            kobo_ignored,
            shed,
            inflight,
            inflight_limit: inflight_limit_g,
            producer_queue,
            publish_duration,
        })
    }

    /// Counts a finished RPC and its duration.
    pub fn request(&self, method: Method, code: Code, seconds: f64) {
        self.requests.with_label_values(&[method.as_str(), code_label(code)]).inc();
        self.duration.with_label_values(&[method.as_str()]).observe(seconds);
    }

    /// Counts a stored interview. `study` must be a study label (see
    /// [`study_label`]).
    pub fn accepted(&self, study: &str) {
        self.records.with_label_values(&[study, "accepted"]).inc();
    }

    /// Counts a rejected interview and each of its violations.
    pub fn rejected(&self, study: &str, violations: &[Violation]) {
        self.records.with_label_values(&[study, "rejected"]).inc();
        for v in violations {
            self.rejections.with_label_values(&[study, v.rule.as_str()]).inc();
        }
    }

    /// Counts a publish the broker did not acknowledge.
    pub fn publish_failed(&self, reason: PublishFailure) {
        self.publish_failures.with_label_values(&[reason.as_str()]).inc();
    }

    /// Records how long a successful publish took.
    pub fn published(&self, seconds: f64) {
        self.publish_duration.observe(seconds);
    }

    /// Counts keys of a KoboToolbox post that named no item of the form.
    /// `study` must be a study label (see [`study_label`]).
    pub fn kobo_keys_ignored(&self, study: &str, keys: usize) {
        self.kobo_ignored.with_label_values(&[study]).inc_by(u64::try_from(keys).unwrap_or(u64::MAX));
    }

    /// Counts a shed interview.
    pub fn shed(&self) {
        self.shed.inc();
    }

    /// The in-flight gauge (moved by [`super::intake`]'s permit guard).
    pub fn inflight(&self) -> &IntGauge {
        &self.inflight
    }

    /// The configured in-flight limit.
    pub fn inflight_limit(&self) -> i64 {
        self.inflight_limit.get()
    }

    /// Sets the sampled producer queue depth.
    pub fn producer_queue(&self, messages: i64) {
        self.producer_queue.set(messages);
    }
}

/// The `study` label of a submitted study id: the loaded study's own id, or
/// [`UNKNOWN_STUDY`]. The returned value never comes from the request.
pub fn study_label<'a>(catalog: &'a Catalog, study: &str) -> &'a str {
    catalog.get(study).map(|s| s.id()).unwrap_or(UNKNOWN_STUDY)
}

#[cfg(test)]
mod tests {
    use prometheus::Encoder;

    use super::*;

    fn render(r: &Registry) -> String {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new().encode(&r.gather(), &mut buf).expect("encode");
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn an_unloaded_study_is_labelled_unknown_not_by_its_request_string() {
        let catalog = Catalog::demo();
        let r = Registry::new();
        let m = IngestMetrics::register(&r, &catalog, 8).expect("register");
        m.rejected(study_label(&catalog, "evil\"study"), &[]);
        let text = render(&r);
        assert!(
            text.contains(r#"fieldwatch_ingest_records_total{outcome="rejected",study="unknown"} 1"#),
            "{text}"
        );
        assert!(!text.contains("evil"));
        assert!(
            text.contains(r#"fieldwatch_ingest_records_total{outcome="accepted",study="le-trafficking"} 0"#)
        );
        assert!(text.contains("fieldwatch_ingest_inflight_limit 8"));
    }

    #[test]
    fn rejections_are_counted_per_rule() {
        let catalog = Catalog::demo();
        let r = Registry::new();
        let m = IngestMetrics::register(&r, &catalog, 8).expect("register");
        let v = |rule| Violation { field: "x".into(), rule, message: String::new() };
        m.rejected("le-trafficking", &[v(Rule::WrongKind), v(Rule::WrongKind), v(Rule::Required)]);
        let text = render(&r);
        assert!(
            text.contains(
                r#"fieldwatch_ingest_rejections_total{rule="wrong_kind",study="le-trafficking"} 2"#
            )
        );
        assert!(
            text.contains(r#"fieldwatch_ingest_rejections_total{rule="required",study="le-trafficking"} 1"#)
        );
    }
}
