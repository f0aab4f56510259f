//! Unit tests of hard validation.
use super::*;
use crate::instrument::KindDef;

const STUDY: &str = r#"
study: t
missing_codes: [{code: dk, kind: dont_know}]
dimensions:
  - {name: region, source: attribute, values: [{code: west}, {code: east}]}
forms:
  - id: f
    items:
      - {id: q1, code: s, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}}
      - {id: q2, code: c, kind: single_choice, options: [{code: x}, {code: y}]}
      - {id: q3, code: m, kind: multi_select, options: [{code: x}, {code: y}]}
      - {id: q4, code: r, kind: multi_select, ranked: true, options: [{code: x}, {code: y}]}
      - {id: q5, code: t, kind: text}
      - {id: q6, code: n, kind: number}
"#;

fn catalog() -> Catalog {
    let mut c = Catalog::default();
    c.insert(Study::from_yaml(STUDY).expect("valid"));
    c
}

fn sub(answers: &str) -> Submission {
    let mut s: Submission = serde_json::from_str(&format!(
        r#"{{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{answers}}}"#
    ))
    .expect("json");
    s.attributes.insert("region".into(), "west".into());
    s
}

fn rules(r: Result<Record, Vec<Violation>>) -> Vec<(String, Rule)> {
    r.err().unwrap_or_default().into_iter().map(|v| (v.field, v.rule)).collect()
}

#[test]
fn accepts_every_kind_and_keeps_out_of_range_values_for_the_checks() {
    let r = validate(
            &catalog(),
            &sub(r#"{"q1": 9, "q2": "z", "q3": ["x","y"], "q4": {"ranked": {"x": 1, "y": 1}}, "q5": "hi", "q6": 2.5}"#),
            &Limits::default(),
        )
        .expect("valid");
    assert_eq!(r.answers[0], Value::Int(9));
    assert_eq!(r.answers[1], Value::Code(Opt::Unknown("z".into())));
    assert_eq!(r.answers[3], Value::Ranked(vec![(Opt::Known(0), 1), (Opt::Known(1), 1)]));
    assert_eq!(r.answers[4], Value::Text);
    assert_eq!(r.segments, vec![0]);
}

#[test]
fn rejects_answer_to_item_missing_from_form() {
    assert_eq!(
        rules(validate(&catalog(), &sub(r#"{"q99": 1}"#), &Limits::default())),
        vec![("answers.q99".into(), Rule::UnknownItem)]
    );
}

#[test]
fn rejects_values_of_the_wrong_kind_one_violation_each() {
    let got = rules(validate(
        &catalog(),
        &sub(r#"{"q1": "four", "q2": 3, "q3": "x", "q5": 5, "q6": true}"#),
        &Limits::default(),
    ));
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got.iter().all(|(_, r)| *r == Rule::WrongKind));
}

#[test]
fn rejects_unknown_study_form_and_missing_ids() {
    let mut s = sub("{}");
    s.respondent_id.clear();
    s.submission_id.clear();
    s.form = "nope".into();
    let got = rules(validate(&catalog(), &s, &Limits::default()));
    assert!(got.contains(&("respondent_id".into(), Rule::Required)));
    assert!(got.contains(&("submission_id".into(), Rule::Required)));
    assert!(got.contains(&("form".into(), Rule::UnknownForm)));
    s.study = "nope".into();
    assert!(
        rules(validate(&catalog(), &s, &Limits::default())).contains(&("study".into(), Rule::UnknownStudy))
    );
}

#[test]
fn rejects_completion_before_start_and_bad_timestamps() {
    let mut s = sub("{}");
    s.started_at = Some("2024-01-01T10:00:00Z".into());
    s.completed_at = Some("2024-01-01T09:00:00Z".into());
    assert_eq!(
        rules(validate(&catalog(), &s, &Limits::default())),
        vec![("completed_at".into(), Rule::CompletedBeforeStarted)]
    );
    s.completed_at = Some("yesterday".into());
    assert_eq!(
        rules(validate(&catalog(), &s, &Limits::default())),
        vec![("completed_at".into(), Rule::BadTimestamp)]
    );
    s.completed_at = Some("2024-01-01T10:30:00+00:00".into());
    assert_eq!(validate(&catalog(), &s, &Limits::default()).map(|r| r.duration_secs), Ok(Some(1800)));
}

#[test]
fn refuses_numbers_whose_sum_could_overflow() {
    let s = Study::from_yaml(
        "study: numbers\nforms:\n  - id: f\n    items:\n      - {id: n, code: amount, kind: number}\n",
    )
    .expect("a study with a number item");
    let item = &s.forms[0].items[0];
    assert!(matches!(item.kind, KindDef::Number { .. }));
    let limits = Limits::default();
    for bad in [1e308, -1e308, MAX_NUMBER * 2.0, f64::INFINITY] {
        assert!(typed(&s, item, Answer::Number(bad).borrowed(), &limits).is_err(), "{bad}");
    }
    assert_eq!(typed(&s, item, Answer::Number(MAX_NUMBER).borrowed(), &limits), Ok(Value::Num(MAX_NUMBER)));
    assert!(MAX_NUMBER * 2.0 * (u64::MAX as f64) < f64::MAX, "a sum of 2^64 answers stays finite");
}

#[test]
fn refuses_placeholder_years_0000_and_9999_in_timestamps() {
    for (started, completed) in
        [("0000-01-01T00:00:00Z", "2024-01-01T10:30:00Z"), ("2024-01-01T10:00:00Z", "9999-12-31T23:59:59Z")]
    {
        let mut s = sub("{}");
        s.started_at = Some(started.into());
        s.completed_at = Some(completed.into());
        assert_eq!(rules(validate(&catalog(), &s, &Limits::default())).len(), 1, "{started} {completed}");
    }
    assert!(parse_timestamp("2005-03-01T10:00:00Z").is_some());
    assert!(parse_timestamp("1899-12-31T23:59:59Z").is_none());
}

#[test]
fn rejects_oversize_input() {
    let limits = Limits { max_answers: 2, max_text_chars: 3, ..Limits::default() };
    assert_eq!(
        rules(validate(&catalog(), &sub(r#"{"q1":1,"q2":"x","q5":"y"}"#), &limits)),
        vec![("answers".into(), Rule::TooMany)]
    );
    assert_eq!(
        rules(validate(&catalog(), &sub(r#"{"q5":"long"}"#), &limits)),
        vec![("answers.q5".into(), Rule::TooLong)]
    );
}

#[test]
fn missing_codes_are_answers_and_unknown_ones_are_rejected() {
    let r = validate(&catalog(), &sub(r#"{"q1": {"missing": "dk"}}"#), &Limits::default()).expect("ok");
    assert_eq!(r.answers[0], Value::Missing(MissingKind::DontKnow));
    assert_eq!(
        rules(validate(&catalog(), &sub(r#"{"q1": {"missing": "zz"}}"#), &Limits::default())),
        vec![("answers.q1".into(), Rule::UnknownMissingCode)]
    );
}

#[test]
fn undeclared_segment_values_become_other() {
    let mut s = sub("{}");
    s.attributes.insert("region".into(), "mars".into());
    let r = validate(&catalog(), &s, &Limits::default()).expect("ok");
    assert_eq!(r.segments, vec![2]);
    s.attributes.clear();
    assert_eq!(validate(&catalog(), &s, &Limits::default()).expect("ok").segments, vec![3]);
}
