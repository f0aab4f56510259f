//! Ingest errors and the one place that turns them into gRPC statuses.
//!
//! [`IngestError::to_status`] is the only mapping to [`tonic::Status`]; a
//! stream's per-record [`SubmitResult`](crate::proto::v1::SubmitResult)
//! takes its code and message from it too, so unary and streaming calls
//! can never disagree.

use std::time::Duration;

use prost::Message;
use tonic::{Code, Status};

use crate::validate::{Rule, Violation};

/// Default of `ingest.max_error_violations`: most field violations listed
/// in a status's `BadRequest` detail; the message and an `ErrorInfo` detail
/// give the total. A stream's `SubmitResult` lists all of them.
pub const MAX_DETAIL_VIOLATIONS: usize = 50;

/// Default of `ingest.max_error_detail_bytes`: most bytes of encoded
/// `BadRequest` detail in a status. With the message, the base64 of the
/// `grpc-status-details-bin` trailer and the response's other headers the
/// whole status stays under [`CLIENT_METADATA_SOFT_LIMIT`], so a rejection
/// never arrives as RESOURCE_EXHAUSTED (which says "retry").
pub const MAX_DETAIL_BYTES: usize = 4 * 1024;

/// The metadata size above which gRPC core clients (grpcio, C++, Ruby, PHP)
/// start refusing a response: between this soft limit (8 KiB) and the hard
/// one (16 KiB) each response is refused at random, with a chance growing
/// towards the hard limit, as RESOURCE_EXHAUSTED. Sizes count each header's
/// name and value (base64 for `-bin`) plus 32 bytes, as HTTP/2 does.
pub const CLIENT_METADATA_SOFT_LIMIT: usize = 8 * 1024;

/// The accepted range of `ingest.max_error_violations`.
pub const DETAIL_VIOLATIONS_RANGE: std::ops::RangeInclusive<usize> = 1..=1000;

/// The accepted range of `ingest.max_error_detail_bytes`: room for one
/// violation at least (two texts of [`MAX_VIOLATION_TEXT_BYTES`]), and at
/// most what keeps the base64 trailer, the `ErrorInfo`, the message and the
/// response's other headers under [`CLIENT_METADATA_SOFT_LIMIT`].
pub const DETAIL_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=5 * 1024;

/// The caps on the error details of one status (`ingest.max_error_violations`,
/// `ingest.max_error_detail_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetailLimits {
    /// Most violations listed.
    pub violations: usize,
    /// Most bytes of encoded `BadRequest`.
    pub bytes: usize,
}

impl Default for DetailLimits {
    fn default() -> DetailLimits {
        DetailLimits { violations: MAX_DETAIL_VIOLATIONS, bytes: MAX_DETAIL_BYTES }
    }
}

/// Longest field name or description in a listed violation, in bytes
/// (field names carry request keys, which may be long).
const MAX_VIOLATION_TEXT_BYTES: usize = 200;

/// Why an ingest call or the server failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The submission cannot be stored meaningfully: one violation per problem.
    #[error("the submission is invalid ({} problems)", violations.len())]
    Invalid {
        /// Every problem found by [`crate::validate::validate`].
        violations: Vec<Violation>,
    },
    /// The only problem is that the study is not loaded.
    #[error("no such study is loaded")]
    UnknownStudy,
    /// The request carries no submission at all.
    #[error("the request has no submission")]
    MissingSubmission,
    /// A quota check's values do not fit the study's quotas.
    #[error(transparent)]
    Quota(#[from] crate::results::quotas::QuotaError),
    /// A quota check reached a process that runs no aggregator.
    #[error("this process runs no aggregator to answer quota checks")]
    NoAggregator,
    /// Tokens are configured and the call has no valid bearer token.
    #[error("a valid bearer token is required")]
    Unauthenticated,
    /// The request message is declared larger than `max_message_bytes`.
    #[error("the message is larger than {0} bytes")]
    MessageTooLarge(usize),
    /// The connection's or the server's budget of request bytes in flight
    /// is spent (the argument says which).
    #[error("{0} has too many request bytes in flight; retry later")]
    BytesExhausted(&'static str),
    /// Every in-flight slot is taken; the record was shed.
    #[error("the server is at its in-flight limit; retry later")]
    Overloaded,
    /// The server is shutting down and takes no more records.
    #[error("the server is shutting down; retry later")]
    ShuttingDown,
    /// The broker did not acknowledge the write.
    #[error("the broker did not take the write ({reason}); retry later")]
    Publish {
        /// Bounded reason, also the metric label.
        reason: PublishFailure,
        /// The Kafka error, when there is one (not for timeouts).
        #[source]
        source: Option<rdkafka::error::KafkaError>,
    },
    /// The Kafka producer could not be created.
    #[error("cannot create the kafka producer")]
    Producer(#[source] rdkafka::error::KafkaError),
    /// The configuration is inconsistent.
    #[error("invalid ingest config: {0}")]
    Config(String),
    /// A TLS certificate, key or CA file cannot be read.
    #[error("cannot read tls file {path}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate, key or client CA is not usable.
    #[error("invalid ingest tls certificate or key")]
    Tls(#[source] tonic::transport::Error),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("grpc server failed")]
    Serve(#[source] tonic::transport::Error),
    /// The server did not drain within the shutdown grace period.
    #[error("open calls did not finish within the {0:?} shutdown grace period")]
    DrainTimeout(Duration),
}

/// Why a publish failed: a bounded set, used as the `reason` label of
/// `fieldwatch_ingest_publish_failures_total` and in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishFailure {
    /// No delivery report within the configured timeout.
    Timeout,
    /// The producer's local queue is full (the broker is not keeping up).
    QueueFull,
    /// The broker or client reported an error for the message.
    Broker,
    /// The producer dropped the message without a report (shutting down).
    Canceled,
}

impl PublishFailure {
    /// Every reason, for pre-registering label values.
    pub const ALL: [PublishFailure; 4] = [
        PublishFailure::Timeout,
        PublishFailure::QueueFull,
        PublishFailure::Broker,
        PublishFailure::Canceled,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishFailure::Timeout => "timeout",
            PublishFailure::QueueFull => "queue_full",
            PublishFailure::Broker => "broker",
            PublishFailure::Canceled => "canceled",
        }
    }
}

impl std::fmt::Display for PublishFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl IngestError {
    /// The error for a submission that failed validation: NOT_FOUND when
    /// the only problem is an unknown study, else every violation.
    pub fn from_violations(violations: Vec<Violation>) -> IngestError {
        match violations.as_slice() {
            [only] if only.rule == Rule::UnknownStudy => IngestError::UnknownStudy,
            _ => IngestError::Invalid { violations },
        }
    }

    /// The violations to report: all of them for an invalid submission, the
    /// one `study` violation for an unknown study, none otherwise.
    pub fn violations(&self) -> Vec<Violation> {
        match self {
            IngestError::Invalid { violations } => violations.clone(),
            IngestError::UnknownStudy => vec![Violation {
                field: "study".into(),
                rule: Rule::UnknownStudy,
                message: "no such study is loaded".into(),
            }],
            IngestError::MissingSubmission => vec![Violation {
                field: "submission".into(),
                rule: Rule::Required,
                message: "submission is required".into(),
            }],
            IngestError::MessageTooLarge(_) => {
                vec![Violation { field: "request".into(), rule: Rule::TooLong, message: self.to_string() }]
            }
            _ => Vec::new(),
        }
    }

    /// The gRPC status code of this error.
    pub fn code(&self) -> Code {
        match self {
            IngestError::Invalid { .. }
            | IngestError::MissingSubmission
            | IngestError::Quota(_)
            | IngestError::MessageTooLarge(_) => Code::InvalidArgument,
            IngestError::UnknownStudy => Code::NotFound,
            IngestError::Unauthenticated => Code::Unauthenticated,
            IngestError::Overloaded | IngestError::BytesExhausted(_) => Code::ResourceExhausted,
            IngestError::ShuttingDown | IngestError::Publish { .. } | IngestError::NoAggregator => {
                Code::Unavailable
            }
            IngestError::Producer(_)
            | IngestError::Config(_)
            | IngestError::TlsFile { .. }
            | IngestError::Tls(_)
            | IngestError::Bind { .. }
            | IngestError::Serve(_)
            | IngestError::DrainTimeout(_) => Code::Internal,
        }
    }

    /// The one mapping from ingest errors to gRPC statuses. Invalid
    /// submissions, and an unknown study (NOT_FOUND), carry a
    /// `google.rpc.BadRequest` with one field violation per problem, as a
    /// stream's `SubmitResult` does. The message is this error's own text,
    /// which never echoes request strings.
    ///
    /// At most [`MAX_DETAIL_VIOLATIONS`] violations (and
    /// [`MAX_DETAIL_BYTES`] of them) are listed; the message says how many
    /// there are in all and how many are listed. [`IngestError::to_status_with`]
    /// takes the configured caps.
    pub fn to_status(&self) -> Status {
        self.to_status_with(&DetailLimits::default())
    }

    /// [`IngestError::to_status`] with the caps of `ingest.max_error_violations`
    /// and `ingest.max_error_detail_bytes`.
    pub fn to_status_with(&self, caps: &DetailLimits) -> Status {
        let code = self.code();
        let message = self.to_string();
        if code != Code::InvalidArgument && code != Code::NotFound {
            return Status::new(code, message);
        }
        let violations = self.violations();
        let listed = listed_violations(&violations, caps);
        // The message inside the details must equal the status message
        // (grpcio's rpc_status checks it).
        let message = if listed.len() < violations.len() {
            format!("{message}; the first {} are listed", listed.len())
        } else {
            message
        };
        let details = status_details(code, &message, listed, violations.len());
        Status::with_details(code, message, details.into())
    }
}

impl From<IngestError> for Status {
    fn from(e: IngestError) -> Status {
        e.to_status()
    }
}

/// The violations a status lists: in order, until `caps.violations` or
/// `caps.bytes` is reached, with long texts cut.
fn listed_violations(
    violations: &[Violation],
    caps: &DetailLimits,
) -> Vec<tonic_types::pb::bad_request::FieldViolation> {
    let mut listed = Vec::new();
    let mut bytes = 0;
    for v in violations.iter().take(caps.violations) {
        let fv = tonic_types::pb::bad_request::FieldViolation {
            field: cut(&v.field),
            description: cut(&v.message),
            reason: v.rule.as_str().to_string(),
            localized_message: None,
        };
        // Field tag, length prefix and the message itself.
        let size = fv.encoded_len() + 4;
        if bytes + size > caps.bytes {
            break;
        }
        bytes += size;
        listed.push(fv);
    }
    listed
}

/// Encodes a `google.rpc.Status` carrying a `google.rpc.BadRequest` with
/// the `listed` violations and a `google.rpc.ErrorInfo` (reason
/// `INVALID_SUBMISSION`) whose `violations` metadata is the `total`.
///
/// Built from tonic-types' `pb` messages rather than
/// `ErrorDetails::with_bad_request`, because tonic-types 0.14's conversion
/// drops `FieldViolation.reason`, where the rule goes. Clients read it back
/// with `tonic_types::StatusExt::get_details_bad_request` as usual.
fn status_details(
    code: Code,
    message: &str,
    listed: Vec<tonic_types::pb::bad_request::FieldViolation>,
    total: usize,
) -> Vec<u8> {
    use tonic_types::pb;
    let info = pb::ErrorInfo {
        reason: "INVALID_SUBMISSION".into(),
        domain: "fieldwatch".into(),
        metadata: [
            ("violations".to_string(), total.to_string()),
            ("listed".to_string(), listed.len().to_string()),
        ]
        .into(),
    };
    let bad_request = pb::BadRequest { field_violations: listed };
    pb::Status {
        code: code as i32,
        message: message.to_string(),
        details: vec![
            prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.BadRequest".into(),
                value: bad_request.encode_to_vec(),
            },
            prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: info.encode_to_vec(),
            },
        ],
    }
    .encode_to_vec()
}

/// `s`, cut to [`MAX_VIOLATION_TEXT_BYTES`] at a character boundary.
fn cut(s: &str) -> String {
    if s.len() <= MAX_VIOLATION_TEXT_BYTES {
        return s.to_string();
    }
    let mut end = MAX_VIOLATION_TEXT_BYTES - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    fn violation(field: &str, rule: Rule) -> Violation {
        Violation { field: field.into(), rule, message: format!("{field} is wrong") }
    }

    /// Headers a rejection carries besides the status's own: `:status`,
    /// `date`, and the CORS layer's `vary`, `access-control-expose-headers`
    /// and, with origins configured, `access-control-allow-origin` (333
    /// bytes measured by grpcio without origins; room for a 90-byte origin).
    const OTHER_RESPONSE_HEADERS: usize = 512;

    /// The size gRPC clients count for the status's metadata: name, value
    /// (base64 for `-bin`, as sent) and 32 bytes per header, plus the
    /// response's other headers.
    fn metadata_size(status: &Status) -> usize {
        let trailer = status.clone().into_http::<()>();
        let own: usize =
            trailer.headers().iter().map(|(k, v)| k.as_str().len() + v.as_bytes().len() + 32).sum();
        own + OTHER_RESPONSE_HEADERS
    }

    #[test]
    fn invalid_submissions_carry_one_field_violation_per_problem_with_its_rule() {
        let e = IngestError::from_violations(vec![
            violation("answers.q6", Rule::WrongKind),
            violation("respondent_id", Rule::Required),
        ]);
        let status = e.to_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("bad request details");
        let got: Vec<_> =
            bad.field_violations.iter().map(|f| (f.field.as_str(), f.reason.as_str())).collect();
        assert_eq!(got, vec![("answers.q6", "wrong_kind"), ("respondent_id", "required")]);
        assert_eq!(bad.field_violations[0].description, "answers.q6 is wrong");
    }

    #[test]
    fn an_unknown_study_alone_is_not_found_but_with_other_problems_is_invalid() {
        let alone = IngestError::from_violations(vec![violation("study", Rule::UnknownStudy)]);
        assert_eq!(alone.to_status().code(), Code::NotFound);
        let bad = alone.to_status().get_details_bad_request().expect("details on NOT_FOUND too");
        assert_eq!(bad.field_violations[0].field, "study");
        assert_eq!(bad.field_violations[0].reason, "unknown_study");
        let more = IngestError::from_violations(vec![
            violation("study", Rule::UnknownStudy),
            violation("respondent_id", Rule::Required),
        ]);
        assert_eq!(more.to_status().code(), Code::InvalidArgument);
    }

    #[test]
    fn five_hundred_long_violations_fit_the_8_kib_soft_limit_and_say_how_many_there_are() {
        let long_id = "x".repeat(5000);
        let violations: Vec<Violation> =
            (0..500).map(|i| violation(&format!("answers.{long_id}{i}"), Rule::UnknownItem)).collect();
        let status = IngestError::from_violations(violations).to_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        let size = metadata_size(&status);
        assert!(size < CLIENT_METADATA_SOFT_LIMIT, "metadata of {size} bytes");
        let bad = status.get_details_bad_request().expect("bad request details");
        assert!(!bad.field_violations.is_empty() && bad.field_violations.len() <= MAX_DETAIL_VIOLATIONS);
        assert!(bad.field_violations[0].field.len() <= MAX_VIOLATION_TEXT_BYTES);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.metadata.get("violations").map(String::as_str), Some("500"));
        assert!(status.message().contains("500 problems"), "{}", status.message());
        assert!(status.message().contains("are listed"), "{}", status.message());
        let inner = <tonic_types::pb::Status as prost::Message>::decode(status.details()).expect("details");
        assert_eq!(inner.message, status.message(), "grpcio requires the two messages to match");
    }

    #[test]
    fn configured_caps_list_fewer_or_more_and_the_largest_still_fit_8_kib() {
        let long_id = "y".repeat(300);
        let violations: Vec<Violation> =
            (0..2000).map(|i| violation(&format!("answers.{long_id}{i}"), Rule::UnknownItem)).collect();
        let e = IngestError::from_violations(violations);
        let listed = |caps: &DetailLimits| {
            let status = e.to_status_with(caps);
            let size = metadata_size(&status);
            (status.get_details_bad_request().expect("details").field_violations.len(), size)
        };
        assert_eq!(listed(&DetailLimits { violations: 3, bytes: MAX_DETAIL_BYTES }).0, 3);
        let (by_default, size) = listed(&DetailLimits::default());
        assert!(by_default > 0 && by_default <= MAX_DETAIL_VIOLATIONS);
        assert!(size < CLIENT_METADATA_SOFT_LIMIT, "the default caps: {size} bytes");
        let widest =
            DetailLimits { violations: *DETAIL_VIOLATIONS_RANGE.end(), bytes: *DETAIL_BYTES_RANGE.end() };
        let (n, size) = listed(&widest);
        assert!(n > by_default, "a larger byte cap lists more ({n})");
        assert!(
            size < CLIENT_METADATA_SOFT_LIMIT,
            "the widest caps keep the metadata under the clients' 8 KiB soft limit ({size} bytes)"
        );
        let narrowest = DetailLimits { violations: 1, bytes: *DETAIL_BYTES_RANGE.start() };
        assert_eq!(listed(&narrowest).0, 1, "the smallest byte cap still lists one violation");
    }

    #[test]
    fn broker_trouble_and_shedding_are_retryable_codes() {
        let e = IngestError::Publish { reason: PublishFailure::Timeout, source: None };
        assert_eq!(e.to_status().code(), Code::Unavailable);
        assert_eq!(IngestError::Overloaded.to_status().code(), Code::ResourceExhausted);
        assert_eq!(IngestError::Unauthenticated.to_status().code(), Code::Unauthenticated);
    }

    #[test]
    fn error_detail_caps_default_to_50_and_4_kib_and_must_stay_in_range() {
        let ok = crate::ingest::IngestConfig {
            hmac_key: Some("unit-test-key-0123456789".into()),
            ..crate::ingest::IngestConfig::default()
        };
        assert_eq!(ok.detail_limits(), DetailLimits { violations: 50, bytes: 4 * 1024 });
        assert!(ok.validate().is_ok());
        for (violations, bytes, bad) in [
            (0, 4096, "max_error_violations"),
            (1001, 4096, "max_error_violations"),
            (50, 1023, "max_error_detail_bytes"),
            (50, 5 * 1024 + 1, "max_error_detail_bytes"),
        ] {
            let c = crate::ingest::IngestConfig {
                max_error_violations: violations,
                max_error_detail_bytes: bytes,
                ..ok.clone()
            };
            let Err(IngestError::Config(m)) = c.validate() else {
                panic!("{violations}/{bytes} must be refused")
            };
            assert!(m.contains(bad), "{m}");
        }
        let edges = crate::ingest::IngestConfig {
            max_error_violations: 1000,
            max_error_detail_bytes: 5 * 1024,
            ..ok
        };
        assert!(edges.validate().is_ok());
        let parsed: crate::ingest::IngestConfig =
            serde_json::from_str(r#"{"max_error_violations": 7, "max_error_detail_bytes": 2048}"#)
                .expect("parses");
        assert_eq!(parsed.detail_limits(), DetailLimits { violations: 7, bytes: 2048 });
    }
}
