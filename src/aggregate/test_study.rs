//! A small study, a live state for it and its envelopes, for the
//! aggregator's unit tests.

use std::sync::Arc;

use prost::Message as _;

use super::LiveState;
use crate::instrument::{Catalog, Study};
use crate::proto::v1;

/// Study `t`: form `fa` with a 1–5 scale item `q1` and a yes/no item `q2`.
const STUDY: &str = r#"
study: t
reporting: {min_cell_size: 1, straightlining_min_run: 0, fingerprint_min_answers: 2}
forms:
  - id: fa
    items:
      - {id: q1, code: know, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}}
      - {id: q2, code: tf, kind: yes_no}
"#;

/// A live state for study `t`, owning no partition yet.
pub(super) fn live() -> Arc<LiveState> {
    let mut c = Catalog::default();
    c.insert(Study::from_yaml(STUDY).expect("valid"));
    LiveState::new(Arc::new(c), Default::default())
}

/// The envelope ingest would write for an interview of form `fa` of
/// `study` with these answers, received at `at_secs`.
pub(super) fn envelope(
    study: &str,
    respondent: &str,
    submission: &str,
    answers: serde_json::Value,
    at_secs: i64,
) -> Vec<u8> {
    let sub: crate::validate::Submission = serde_json::from_value(serde_json::json!({
        "study": study, "form": "fa", "respondent_id": respondent, "submission_id": submission,
        "answers": answers,
    }))
    .expect("submission");
    v1::Envelope::of_submission(sub.into(), Some(prost_types::Timestamp { seconds: at_secs, nanos: 0 }), "")
        .encode_to_vec()
}
