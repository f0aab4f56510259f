//! The gRPC API (`proto/fieldwatch/v1/`) as Rust types, and the lossless
//! conversion between its `Submission` and [`crate::validate::Submission`]
//! (the JSONL form).
//!
//! Both directions are total: every JSONL line has a message (a value of no
//! known kind travels as `Answer.other_json`), and every message has a
//! JSONL line.

use crate::instrument::{DimensionSource, Direction, KindDef, Study};

pub mod envelope;
use crate::validate;

/// Generated code for package `fieldwatch.v1`.
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod v1 {
    tonic::include_proto!("fieldwatch.v1");

    /// The encoded file descriptor set of the package, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fieldwatch_descriptor");
}

/// Generated code for package `fieldwatch.state.v1`: the persisted
/// partition state (`proto/fieldwatch/state/v1/state.proto`), not part of
/// the gRPC API. Conversions live beside the types they persist
/// ([`crate::results::wire`], [`crate::fieldwork::wire`]).
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod state {
    include!(concat!(env!("OUT_DIR"), "/fieldwatch.state.v1.rs"));
}

use v1::answer::Value as PbValue;

/// The codec of every generated client and server: prost's, except that a
/// message that does not decode is INVALID_ARGUMENT (the caller sent
/// something that is not a `fieldwatch.v1` message; retrying it cannot
/// help) instead of prost's INTERNAL. See the error contract in
/// `proto/fieldwatch/v1/fieldwatch.proto`.
pub mod codec {
    use tonic::Status;
    use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
    use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

    /// [`ProstCodec`] with decode errors mapped to INVALID_ARGUMENT.
    #[derive(Debug, Clone, Default)]
    pub struct StrictCodec<T, U>(ProstCodec<T, U>);

    impl<T, U> Codec for StrictCodec<T, U>
    where
        T: prost::Message + Send + 'static,
        U: prost::Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = ProstEncoder<T>;
        type Decoder = StrictDecoder<U>;

        fn encoder(&mut self) -> Self::Encoder {
            self.0.encoder()
        }

        fn decoder(&mut self) -> Self::Decoder {
            StrictDecoder(self.0.decoder())
        }
    }

    /// [`ProstDecoder`] with decode errors mapped to INVALID_ARGUMENT.
    #[derive(Debug, Clone, Default)]
    pub struct StrictDecoder<U>(ProstDecoder<U>);

    impl<U: prost::Message + Default> Decoder for StrictDecoder<U> {
        type Item = U;
        type Error = Status;

        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
            self.0.decode(buf).map_err(|_| Status::invalid_argument("the message is not valid protobuf"))
        }

        fn buffer_settings(&self) -> BufferSettings {
            self.0.buffer_settings()
        }
    }
}

/// Version of [`v1::Envelope`] written by this build.
pub const ENVELOPE_VERSION: u32 = 1;

impl v1::Envelope {
    /// The envelope of an accepted submission, as ingest writes it: this
    /// build's [`ENVELOPE_VERSION`], the receipt time and the frontend that
    /// sent it. The submission's respondent id is already pseudonymised.
    pub fn of_submission(
        submission: v1::Submission,
        received_at: Option<prost_types::Timestamp>,
        frontend: &str,
    ) -> v1::Envelope {
        v1::Envelope { submission: Some(submission), ..v1::Envelope::stamped(received_at, frontend) }
    }

    /// The envelope of an accepted case disposition, as ingest writes it
    /// ([`v1::Envelope::of_submission`]); its case id is already
    /// pseudonymised.
    pub fn of_disposition(
        disposition: v1::Disposition,
        received_at: Option<prost_types::Timestamp>,
        frontend: &str,
    ) -> v1::Envelope {
        v1::Envelope { disposition: Some(disposition), ..v1::Envelope::stamped(received_at, frontend) }
    }

    /// An envelope of this build's version with its receipt time and
    /// frontend, and nothing in it yet.
    fn stamped(received_at: Option<prost_types::Timestamp>, frontend: &str) -> v1::Envelope {
        v1::Envelope {
            version: ENVELOPE_VERSION,
            received_at,
            frontend: frontend.to_owned(),
            submission: None,
            disposition: None,
        }
    }
}

impl From<validate::Submission> for v1::Submission {
    fn from(s: validate::Submission) -> Self {
        v1::Submission {
            study: s.study,
            form: s.form,
            respondent_id: s.respondent_id,
            submission_id: s.submission_id,
            started_at: s.started_at,
            completed_at: s.completed_at,
            interviewer: s.interviewer,
            attributes: s.attributes,
            answers: s.answers.into_iter().map(|(k, a)| (k, a.into())).collect(),
        }
    }
}

impl From<v1::Submission> for validate::Submission {
    fn from(s: v1::Submission) -> Self {
        validate::Submission {
            study: s.study,
            form: s.form,
            respondent_id: s.respondent_id,
            submission_id: s.submission_id,
            started_at: s.started_at,
            completed_at: s.completed_at,
            interviewer: s.interviewer,
            attributes: s.attributes,
            answers: s.answers.into_iter().map(|(k, a)| (k, a.into())).collect(),
        }
    }
}

impl From<&v1::Submission> for validate::Submission {
    fn from(s: &v1::Submission) -> Self {
        s.clone().into()
    }
}

/// Longest answer key (item id) a message may carry, in bytes: item ids
/// are short identifiers.
pub const MAX_ITEM_ID_BYTES: usize = 128;

/// Counts and sizes of a decoded message, checked before anything is
/// converted, parsed or copied: more answers, attributes or choices than
/// `limits` allow, or a text, code or free-form value longer than
/// `limits.max_text_chars`, is refused here. It stops at the first problem
/// of each kind, so its cost is bounded by the limits too.
pub fn check_size(s: &v1::Submission, limits: &validate::Limits) -> Result<(), Vec<validate::Violation>> {
    use validate::{Rule, Violation};
    let mut out = Vec::new();
    if s.answers.len() > limits.max_answers {
        out.push(Violation::new(
            "answers",
            Rule::TooMany,
            format!("at most {} answers are allowed", limits.max_answers),
        ));
        // Nothing inside is looked at: the count alone refuses it.
        return Err(out);
    }
    if s.attributes.len() > limits.max_attributes {
        out.push(Violation::new(
            "attributes",
            Rule::TooMany,
            format!("at most {} attributes are allowed", limits.max_attributes),
        ));
    }
    // A string of more than 4 bytes per allowed character is too long
    // whatever it holds; shorter ones are counted in characters.
    let too_long = |t: &str| t.len() > limits.max_text_chars && t.chars().count() > limits.max_text_chars;
    for (id, answer) in &s.answers {
        let field = || {
            if id.len() <= MAX_ITEM_ID_BYTES { format!("answers.{id}") } else { "answers".to_string() }
        };
        if id.len() > MAX_ITEM_ID_BYTES {
            out.push(Violation::new("answers", Rule::TooLong, "an answer key is too long"));
            break;
        }
        let problem = match &answer.value {
            Some(PbValue::Text(t) | PbValue::OtherJson(t) | PbValue::Missing(t)) if too_long(t) => {
                Some((Rule::TooLong, "the value is too long".to_string()))
            }
            Some(PbValue::Choices(l)) if l.values.len() > limits.max_choices => {
                Some((Rule::TooMany, format!("at most {} choices are allowed", limits.max_choices)))
            }
            Some(PbValue::Ranked(r)) if r.ranks.len() > limits.max_choices => {
                Some((Rule::TooMany, format!("at most {} choices are allowed", limits.max_choices)))
            }
            Some(PbValue::Choices(l)) if l.values.iter().any(|c| too_long(c)) => {
                Some((Rule::TooLong, "a choice is too long".to_string()))
            }
            Some(PbValue::Ranked(r)) if r.ranks.keys().any(|c| too_long(c)) => {
                Some((Rule::TooLong, "a choice is too long".to_string()))
            }
            _ => None,
        };
        if let Some((rule, message)) = problem {
            out.push(Violation::new(field(), rule, message));
            if out.len() >= crate::ingest::error::MAX_DETAIL_VIOLATIONS {
                break;
            }
        }
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

impl From<validate::Answer> for v1::Answer {
    fn from(a: validate::Answer) -> Self {
        let value = match a {
            validate::Answer::Blank => None,
            validate::Answer::Integer(i) => Some(PbValue::Integer(i)),
            validate::Answer::Number(f) => Some(PbValue::Number(f)),
            validate::Answer::Text(s) => Some(PbValue::Text(s)),
            validate::Answer::Choices(values) => Some(PbValue::Choices(v1::StringList { values })),
            validate::Answer::Ranked(r) => Some(PbValue::Ranked(v1::RankedChoices { ranks: r.ranked })),
            validate::Answer::Missing(m) => Some(PbValue::Missing(m.missing)),
            validate::Answer::Other(json) => Some(PbValue::OtherJson(json.to_string())),
        };
        v1::Answer { value }
    }
}

impl From<v1::Answer> for validate::Answer {
    fn from(a: v1::Answer) -> Self {
        match a.value {
            None => validate::Answer::Blank,
            Some(PbValue::Integer(i)) => validate::Answer::Integer(i),
            Some(PbValue::Number(f)) => validate::Answer::Number(f),
            Some(PbValue::Text(s)) => validate::Answer::Text(s),
            Some(PbValue::Choices(l)) => validate::Answer::Choices(l.values),
            Some(PbValue::Ranked(r)) => validate::Answer::Ranked(validate::RankedAnswer { ranked: r.ranks }),
            Some(PbValue::Missing(code)) => {
                validate::Answer::Missing(validate::MissingAnswer { missing: code })
            }
            Some(PbValue::OtherJson(s)) => validate::Answer::other_json(s),
        }
    }
}

impl From<&Study> for v1::Instrument {
    fn from(study: &Study) -> Self {
        let def = &study.def;
        v1::Instrument {
            study: def.study.clone(),
            title: def.title.clone(),
            // Plain data with string keys: serialising it cannot fail.
            yaml: crate::yaml::to_string(def).unwrap_or_default(),
            missing_codes: def
                .missing_codes
                .iter()
                .map(|m| v1::MissingCode {
                    code: m.code.clone(),
                    kind: m.kind.as_str().to_string(),
                    label: m.label.clone(),
                })
                .collect(),
            dimensions: def
                .dimensions
                .iter()
                .map(|d| v1::Dimension {
                    name: d.name.clone(),
                    source: match d.source {
                        DimensionSource::Form => "form",
                        DimensionSource::Attribute => "attribute",
                        DimensionSource::Interviewer => "interviewer",
                    }
                    .to_string(),
                    values: d
                        .values
                        .iter()
                        .map(|v| v1::Category { value: v.code.clone(), label: v.label.clone() })
                        .collect(),
                })
                .collect(),
            forms: def
                .forms
                .iter()
                .map(|f| v1::FormSummary {
                    id: f.id.clone(),
                    title: f.title.clone(),
                    items: f.items.iter().map(item_summary).collect(),
                })
                .collect(),
        }
    }
}

fn item_summary(it: &crate::instrument::model::ItemDef) -> v1::ItemSummary {
    let (min, max) = match &it.kind {
        KindDef::Scale { min, max, .. } | KindDef::Count { min, max } => {
            (Some(*min as f64), Some(*max as f64))
        }
        KindDef::Number { min, max } => (*min, *max),
        _ => (None, None),
    };
    let (ranked, max_picks) = match &it.kind {
        KindDef::MultiSelect { ranked, max_picks, .. } => (*ranked, *max_picks),
        _ => (false, None),
    };
    let direction = match &it.kind {
        KindDef::Scale { direction: Direction::Ascending, .. } => "ascending",
        KindDef::Scale { direction: Direction::Descending, .. } => "descending",
        _ => "",
    };
    v1::ItemSummary {
        id: it.id.clone(),
        code: it.code.clone(),
        text: it.text.clone(),
        kind: it.kind.name().to_string(),
        required: it.required,
        relevant: it.relevant.clone(),
        categories: it
            .kind
            .categories()
            .into_iter()
            .map(|(value, label)| v1::Category { value, label })
            .collect(),
        min,
        max,
        ranked,
        max_picks,
        direction: direction.to_string(),
    }
}

impl From<crate::fieldwork::DispositionSubmission> for v1::Disposition {
    fn from(d: crate::fieldwork::DispositionSubmission) -> Self {
        v1::Disposition {
            study: d.study,
            case_id: d.case_id,
            disposition: d.disposition,
            time: d.time,
            interviewer: d.interviewer,
            form: d.form,
            attributes: d.attributes,
        }
    }
}

impl From<v1::Disposition> for crate::fieldwork::DispositionSubmission {
    fn from(d: v1::Disposition) -> Self {
        crate::fieldwork::DispositionSubmission {
            study: d.study,
            case_id: d.case_id,
            disposition: d.disposition,
            time: d.time,
            interviewer: d.interviewer,
            form: d.form,
            attributes: d.attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"study": "le-trafficking", "form": "investigator", "respondent_id": "R-0001",
 "submission_id": "R-0001-1", "started_at": "2005-03-01T10:00:00Z",
 "completed_at": "2005-03-01T10:52:00Z", "interviewer": "int03",
 "attributes": {"region": "southeast"},
 "answers": {"q6": 4, "q7": 2.5, "q12": "yes", "q3": "law_enforcement",
             "q15": ["brothel", "massage_parlor"],
             "q32": {"ranked": {"housing": 1, "medical": 2}},
             "q40": {"missing": "dk"}, "q4": "modern day slavery", "q24": null,
             "q50": true, "q51": [[1]]}}"#;

    #[test]
    fn a_jsonl_line_survives_the_trip_through_protobuf_unchanged() {
        let sub: validate::Submission = serde_json::from_str(LINE).expect("json");
        let pb: v1::Submission = sub.clone().into();
        let bytes = prost::Message::encode_to_vec(&pb);
        let decoded: v1::Submission = prost::Message::decode(bytes.as_slice()).expect("decode");
        assert_eq!(decoded, pb);
        let back: validate::Submission = decoded.into();
        assert_eq!(back, sub);
        assert_eq!(serde_json::to_value(&back).ok(), serde_json::to_value(&sub).ok());
    }

    #[test]
    fn every_answer_kind_maps_to_its_own_oneof_case() {
        let sub: validate::Submission = serde_json::from_str(LINE).expect("json");
        let pb: v1::Submission = sub.into();
        let case = |id: &str| pb.answers.get(id).and_then(|a| a.value.clone());
        assert_eq!(case("q6"), Some(PbValue::Integer(4)));
        assert_eq!(case("q7"), Some(PbValue::Number(2.5)));
        assert_eq!(case("q12"), Some(PbValue::Text("yes".into())));
        assert!(matches!(case("q15"), Some(PbValue::Choices(l)) if l.values.len() == 2));
        assert!(matches!(case("q32"), Some(PbValue::Ranked(r)) if r.ranks.get("medical") == Some(&2)));
        assert_eq!(case("q40"), Some(PbValue::Missing("dk".into())));
        assert_eq!(case("q24"), None);
        assert_eq!(case("q50"), Some(PbValue::OtherJson("true".into())));
    }

    #[test]
    fn the_instrument_message_describes_the_demo_and_its_yaml_loads_back() {
        let catalog = crate::instrument::Catalog::demo();
        let study = catalog.get(crate::instrument::DEMO_STUDY_ID).expect("demo");
        let msg = v1::Instrument::from(study.as_ref());
        assert_eq!(msg.study, study.id());
        assert_eq!(msg.forms.len(), study.forms.len());
        let q6 = msg.forms[0].items.iter().find(|i| i.id == "q6").expect("q6");
        assert_eq!(q6.kind, "scale");
        assert_eq!(q6.categories.first().map(|c| c.value.as_str()), Some("1"));
        let again = Study::from_yaml(&msg.yaml).expect("the yaml loads");
        assert_eq!(again.forms.len(), study.forms.len());
        assert_eq!(again.codes.len(), study.codes.len());
    }

    #[test]
    fn a_disposition_line_survives_the_trip_through_protobuf_unchanged() {
        let line = r#"{"kind": "disposition", "study": "le-trafficking", "case_id": "LE-0001",
 "disposition": "non_contact", "time": "2005-03-01T10:00:00Z", "interviewer": "int03",
 "form": "investigator", "attributes": {"region": "southeast"}}"#;
        let Ok(crate::fieldwork::Line::Disposition(d)) =
            crate::fieldwork::parse_line(&line.replace('\n', ""))
        else {
            panic!("a disposition line")
        };
        let pb = v1::Disposition::from(d.clone());
        let bytes = prost::Message::encode_to_vec(&pb);
        let decoded: v1::Disposition = prost::Message::decode(bytes.as_slice()).expect("decode");
        assert_eq!(crate::fieldwork::DispositionSubmission::from(decoded), d);
    }

    #[test]
    fn counts_and_sizes_are_refused_before_any_conversion() {
        let limits = validate::Limits { max_answers: 3, max_text_chars: 10, ..validate::Limits::default() };
        let text = |t: &str| v1::Answer { value: Some(PbValue::Text(t.into())) };
        let mut s = v1::Submission::default();
        assert_eq!(check_size(&s, &limits), Ok(()));
        s.answers = (0..4).map(|i| (format!("q{i}"), text("x"))).collect();
        let v = check_size(&s, &limits).expect_err("too many answers");
        assert_eq!((v[0].field.as_str(), v[0].rule), ("answers", validate::Rule::TooMany));
        s.answers =
            [("q1".to_string(), text(&"é".repeat(10))), ("q2".to_string(), text(&"é".repeat(11)))].into();
        let v = check_size(&s, &limits).expect_err("too long");
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].field.as_str(), v[0].rule), ("answers.q2", validate::Rule::TooLong));
        let json = v1::Answer { value: Some(PbValue::OtherJson(format!("[{}]", "1,".repeat(100)))) };
        s.answers = [("q1".to_string(), json)].into();
        assert!(check_size(&s, &limits).is_err(), "free-form JSON is measured, never parsed");
        s.answers = [("q".repeat(MAX_ITEM_ID_BYTES + 1), text("x"))].into();
        let v = check_size(&s, &limits).expect_err("long key");
        assert_eq!(v[0].field, "answers", "a long key is not echoed");
    }

    #[test]
    fn other_json_that_does_not_parse_is_still_another_value() {
        let a = v1::Answer { value: Some(PbValue::OtherJson("not json".into())) };
        assert_eq!(
            validate::Answer::from(a),
            validate::Answer::Other(serde_json::Value::String("not json".into()))
        );
    }
}
