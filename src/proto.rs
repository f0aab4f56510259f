//! The gRPC API (`proto/fieldwatch/v1/`) as Rust types, and the lossless
//! conversion between its `Submission` and [`crate::validate::Submission`]
//! (the JSONL form).
//!
//! Both directions are total: every JSONL line has a message (a value of no
//! known kind travels as `Answer.other_json`), and every message has a
//! JSONL line.

use crate::instrument::{DimensionSource, Direction, KindDef, Study};
use crate::validate;

/// Generated code for package `fieldwatch.v1`.
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod v1 {
    tonic::include_proto!("fieldwatch.v1");

    /// The encoded file descriptor set of the package, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fieldwatch_descriptor");
}

use v1::answer::Value as PbValue;

/// Version of [`v1::Envelope`] written by this build.
pub const ENVELOPE_VERSION: u32 = 1;

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
            // Text that is not JSON is still "some other value": kept as a
            // JSON string so it is rejected as `wrong_kind` like the rest.
            Some(PbValue::OtherJson(s)) => {
                validate::Answer::Other(serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s)))
            }
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
    fn other_json_that_does_not_parse_is_still_another_value() {
        let a = v1::Answer { value: Some(PbValue::OtherJson("not json".into())) };
        assert_eq!(
            validate::Answer::from(a),
            validate::Answer::Other(serde_json::Value::String("not json".into()))
        );
    }
}
