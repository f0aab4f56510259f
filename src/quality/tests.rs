//! Unit tests of the soft quality checks.

use super::*;
use crate::instrument::Catalog;
use crate::validate::{Limits, Submission, validate};

const STUDY: &str = r#"
study: t
missing_codes: [{code: dk, kind: dont_know}, {code: rf, kind: refused}, {code: na, kind: not_applicable}]
reporting: {straightlining_min_run: 3}
forms:
  - id: f
    items:
      - {id: q1, code: s1, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}, required: true}
      - {id: q2, code: s2, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}, relevant: q1 >= 3}
      - {id: q3, code: s3, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}, relevant: answered(q2)}
      - {id: q4, code: c, kind: single_choice, options: [{code: x}, {code: y}]}
      - {id: q5, code: r, kind: multi_select, ranked: true, max_picks: 2, options: [{code: x}, {code: y}, {code: z}]}
      - {id: q6, code: m, kind: multi_select, options: [{code: x}, {code: y}]}
      - {id: q7, code: n, kind: count, min: 0, max: 10}
      - {id: q8, code: yn, kind: yes_no_na}
"#;

fn run(answers: &str) -> (Checked, Record) {
    let mut c = Catalog::default();
    c.insert(crate::instrument::Study::from_yaml(STUDY).expect("valid"));
    let s: Submission = serde_json::from_str(&format!(
        r#"{{"study":"t","form":"f","respondent_id":"r","submission_id":"s","answers":{answers}}}"#
    ))
    .expect("json");
    let rec = validate(&c, &s, &Limits::default()).expect("valid");
    let study = c.get("t").expect("t").clone();
    (check(&study, &rec), rec)
}

fn checks(c: &Checked) -> Vec<(Check, Option<usize>)> {
    c.flags.iter().map(|f| (f.check, f.item)).collect()
}

#[test]
fn an_answer_that_breaks_its_constraint_is_flagged_and_still_counts() {
    let yaml = r#"
study: k
forms:
  - id: f
    items:
      - {id: a, code: a, kind: count, min: 0, max: 100}
      - {id: b, code: b, kind: count, min: 0, max: 100, constraint: b <= a, constraint_message: at most a}
"#;
    let mut c = Catalog::default();
    c.insert(crate::instrument::Study::from_yaml(yaml).expect("valid"));
    let study = c.get("k").expect("k").clone();
    let run = |answers: &str| {
        let s: Submission = serde_json::from_str(&format!(
            r#"{{"study":"k","form":"f","respondent_id":"r","submission_id":"s","answers":{answers}}}"#
        ))
        .expect("json");
        check(&study, &validate(&c, &s, &Limits::default()).expect("valid"))
    };
    let broken = run(r#"{"a": 3, "b": 5}"#);
    assert_eq!(checks(&broken), vec![(Check::ConstraintViolated, Some(1))]);
    assert_eq!(broken.status[1], Status::Valid, "soft: the value still counts");
    assert!(checks(&run(r#"{"a": 3, "b": 2}"#)).is_empty());
    // A blank `a` has no value: the comparison is false, as in XPath.
    assert_eq!(checks(&run(r#"{"b": 2}"#)), vec![(Check::ConstraintViolated, Some(1))]);
    assert_eq!(study.forms[0].items[1].constraint_message, "at most a");
    assert_eq!(Check::ConstraintViolated.as_str(), "constraint_violated");
    assert!(Check::ALL.contains(&Check::ConstraintViolated));
}

#[test]
fn required_blank_is_nonresponse_and_hidden_blank_is_a_skip() {
    let (c, _) = run("{}");
    assert_eq!(c.status[0], Status::Missing(Missing::Nonresponse));
    assert_eq!(c.status[1], Status::Missing(Missing::Skipped));
    assert_eq!(c.status[2], Status::Missing(Missing::Skipped), "hidden q2 hides q3 too");
    assert_eq!(c.status[3], Status::Missing(Missing::Blank));
    assert_eq!(checks(&c), vec![(Check::ItemNonresponse, Some(0))]);
}

#[test]
fn missing_codes_are_counted_by_kind_and_never_flagged() {
    let (c, _) = run(r#"{"q1": {"missing": "dk"}, "q4": {"missing": "rf"}, "q8": {"missing": "na"}}"#);
    assert_eq!(c.status[0], Status::Missing(Missing::DontKnow));
    assert_eq!(c.status[3], Status::Missing(Missing::Refused));
    assert_eq!(c.status[7], Status::Missing(Missing::NotApplicable));
    assert!(c.flags.is_empty());
}

#[test]
fn relevant_blank_optional_item_is_blank_not_skipped() {
    let (c, _) = run(r#"{"q1": 4}"#);
    assert_eq!(c.status[1], Status::Missing(Missing::Blank));
}

#[test]
fn answer_to_hidden_item_is_flagged_and_treated_as_a_skip() {
    let (c, _) = run(r#"{"q1": 2, "q2": 4}"#);
    assert_eq!(checks(&c), vec![(Check::AnsweredWhenHidden, Some(1))]);
    assert_eq!(c.status[1], Status::Missing(Missing::Skipped));
}

#[test]
fn out_of_range_and_unknown_options_exclude_only_that_item() {
    let (c, _) = run(r#"{"q1": 6, "q4": "w", "q7": 11, "q8": "maybe", "q6": ["x"]}"#);
    assert_eq!(
        checks(&c),
        vec![
            (Check::OutOfRange, Some(0)),
            (Check::UnknownOption, Some(3)),
            (Check::OutOfRange, Some(6)),
            (Check::UnknownOption, Some(7)),
        ]
    );
    assert_eq!(c.status[0], Status::Excluded);
    assert_eq!(c.status[5], Status::Valid);
}

#[test]
fn broken_rankings_are_flagged() {
    for bad in [r#"{"x": 1, "y": 1}"#, r#"{"x": 1, "y": 3}"#, r#"{"x": 2}"#, r#"{"x": 0, "y": 1}"#] {
        let (c, _) = run(&format!(r#"{{"q5": {{"ranked": {bad}}}}}"#));
        assert!(checks(&c).contains(&(Check::BrokenRanking, Some(4))), "{bad}");
    }
    let (c, _) = run(r#"{"q5": {"ranked": {"x": 2, "y": 1}}}"#);
    assert!(c.flags.iter().all(|f| f.check != Check::BrokenRanking));
    let (c, _) = run(r#"{"q5": ["x", "y", "z"]}"#);
    assert!(checks(&c).contains(&(Check::TooManyPicks, Some(4))));
    let (c, _) = run(r#"{"q6": ["x", "x"]}"#);
    assert!(checks(&c).contains(&(Check::DuplicatePick, Some(5))));
}

#[test]
fn straightlining_needs_the_configured_run_of_scale_items() {
    let (c, _) = run(r#"{"q1": 4, "q2": 4, "q3": 4}"#);
    assert!(checks(&c).contains(&(Check::Straightlining, None)));
    let (c, _) = run(r#"{"q1": 4, "q2": 4, "q3": 5}"#);
    assert!(!checks(&c).contains(&(Check::Straightlining, None)));
}
