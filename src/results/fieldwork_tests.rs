use crate::fieldwork::*;
use crate::instrument::Catalog;
use crate::instrument::Study;
use crate::quality::Checked;
use crate::quality::{Check, check};
use crate::results::{Applied, StudyState};
use crate::validate::validate;
use crate::validate::{Limits, Record, Rule};

const STUDY: &str = r#"
study: t
missing_codes: [{code: dk, kind: dont_know}, {code: rf, kind: refused}]
dimensions:
  - {name: position, source: form, values: [{code: a}, {code: b}]}
  - {name: region, source: attribute, values: [{code: west}, {code: east}]}
  - {name: interviewer, source: interviewer, values: [{code: int01}, {code: int02}, {code: int03}, {code: int04}]}
reporting: {straightlining_min_run: 3}
fieldwork: {speeder_ratio: 0.5, speeder_min_interviews: 4, outlier_min_interviews: 3}
forms:
  - id: fa
    segments: {position: a}
    items:
      - {id: q1, code: s1, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}, required: true}
      - {id: q2, code: s2, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}, required: true}
      - {id: q3, code: s3, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}, required: true}
      - {id: q4, code: yn, kind: yes_no, required: true}
  - id: fb
    segments: {position: b}
    items:
      - {id: q1, code: s1, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}}
"#;

fn study() -> Study {
    Study::from_yaml(STUDY).expect("valid")
}

fn catalog() -> Catalog {
    let mut c = Catalog::default();
    c.insert(study());
    c
}

fn disposition(case: &str, d: &str, time: &str, extra: &str) -> DispositionRecord {
    let line = format!(
        r#"{{"kind": "disposition", "study": "t", "case_id": "{case}", "disposition": "{d}", "time": "{time}"{extra}}}"#
    );
    let Ok(Line::Disposition(sub)) = parse_line(&line) else { panic!("a disposition line: {line}") };
    validate_disposition(&catalog(), &sub, &Limits::default()).expect("valid disposition")
}

/// An interview of form `fa` by `interviewer`, lasting `minutes`.
fn interview(resp: &str, interviewer: &str, minutes: u32, answers: &str) -> (Record, Checked) {
    let line = format!(
        r#"{{"study":"t","form":"fa","respondent_id":"{resp}","submission_id":"{resp}-1","interviewer":"{interviewer}",
            "started_at":"2024-05-01T10:00:00Z","completed_at":"2024-05-01T{:02}:{:02}:00Z",
            "attributes":{{"region":"west"}},"answers":{answers}}}"#,
        10 + minutes / 60,
        minutes % 60
    );
    let Ok(Line::Interview(sub)) = parse_line(&line) else { panic!("an interview line") };
    let rec = validate(&catalog(), &sub, &Limits::default()).expect("valid interview");
    let checked = check(&study(), &rec);
    (rec, checked)
}

fn counts(state: &StudyState) -> DispositionCounts {
    DispositionCounts::from(state.fieldwork.total())
}

#[test]
fn dispositions_parse_from_names_abbreviations_and_numeric_aapor_codes() {
    assert_eq!(Disposition::parse("non_contact"), Some(Disposition::NonContact));
    assert_eq!(Disposition::parse("NC"), Some(Disposition::NonContact));
    assert_eq!(Disposition::parse("1.1"), Some(Disposition::Complete));
    assert_eq!(Disposition::parse("1.2"), Some(Disposition::Partial));
    assert_eq!(Disposition::parse("2.112"), Some(Disposition::Refusal));
    assert_eq!(Disposition::parse("2.20"), Some(Disposition::NonContact));
    assert_eq!(Disposition::parse("2.31"), Some(Disposition::Other));
    assert_eq!(Disposition::parse("3.11"), Some(Disposition::UnknownHousehold));
    assert_eq!(Disposition::parse("3.21"), Some(Disposition::UnknownOther));
    assert_eq!(Disposition::parse("4.70"), Some(Disposition::NotEligible));
    for bad in ["", "2", "2.0", "3.0", "5.1", "1.x", "nc", "Complete"] {
        assert_eq!(Disposition::parse(bad), None, "{bad}");
    }
}

#[test]
fn a_line_without_kind_is_an_interview_and_unknown_kinds_are_errors() {
    assert!(matches!(
        parse_line(r#"{"study":"t","form":"fa","respondent_id":"r","submission_id":"s"}"#),
        Ok(Line::Interview(_))
    ));
    assert!(matches!(
        parse_line(r#"{"kind":"interview","study":"t","form":"fa","respondent_id":"r","submission_id":"s"}"#),
        Ok(Line::Interview(_))
    ));
    assert!(parse_line(r#"{"kind":"call","study":"t"}"#).is_err());
    assert!(
        parse_line(r#"{"kind":"disposition","study":"t","respondent_id":"r"}"#).is_err(),
        "unknown field"
    );
    // "kind" inside answers or attributes is no kind.
    assert!(matches!(
        parse_line(
            r#"{"study":"t","form":"fa","respondent_id":"r","submission_id":"s","attributes":{"kind":"x"}}"#
        ),
        Ok(Line::Interview(_))
    ));
}

#[test]
fn invalid_dispositions_get_one_violation_per_problem() {
    let sub = DispositionSubmission {
        study: "t".into(),
        case_id: String::new(),
        disposition: "maybe".into(),
        time: "yesterday".into(),
        form: Some("zz".into()),
        ..Default::default()
    };
    let v = validate_disposition(&catalog(), &sub, &Limits::default()).expect_err("invalid");
    let rules: Vec<(&str, Rule)> = v.iter().map(|v| (v.field.as_str(), v.rule)).collect();
    assert_eq!(
        rules,
        vec![
            ("case_id", Rule::Required),
            ("disposition", Rule::UnknownDisposition),
            ("time", Rule::BadTimestamp),
            ("form", Rule::UnknownForm)
        ]
    );
    let sub = DispositionSubmission { study: "nope".into(), ..sub };
    let v = validate_disposition(&catalog(), &sub, &Limits::default()).expect_err("invalid");
    assert!(v.iter().any(|v| v.rule == Rule::UnknownStudy));
    let none = DispositionSubmission { study: "t".into(), case_id: "c".into(), ..Default::default() };
    let v = validate_disposition(&catalog(), &none, &Limits::default()).expect_err("invalid");
    assert_eq!(v.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(), vec!["disposition", "time"]);
}

#[test]
fn dispositions_take_segments_from_form_attributes_and_interviewer() {
    let d = disposition(
        "c1",
        "refusal",
        "2024-05-01T10:00:00Z",
        r#", "form": "fb", "attributes": {"region": "east"}"#,
    );
    assert_eq!(d.segments, vec![1, 1, 5], "no interviewer: unknown (slot 5 of 4 declared)");
    let d = disposition("c1", "R", "2024-05-01T10:00:00Z", r#", "interviewer": "int02""#);
    assert_eq!(d.segments, vec![3, 3, 1], "no form, no region: unknown");
    assert_eq!(d.time, 1_714_557_600_000);
}

#[test]
fn only_the_latest_disposition_of_a_case_counts() {
    let s = study();
    let mut st = StudyState::new();
    assert!(st.apply_disposition(&s, &disposition("c1", "non_contact", "2024-05-01T10:00:00Z", "")));
    assert!(st.apply_disposition(&s, &disposition("c1", "non_contact", "2024-05-02T10:00:00Z", "")));
    assert!(st.apply_disposition(&s, &disposition("c1", "refusal", "2024-05-03T10:00:00Z", "")));
    // An older record arriving late changes nothing.
    assert!(!st.apply_disposition(&s, &disposition("c1", "non_contact", "2024-05-02T12:00:00Z", "")));
    assert_eq!(counts(&st), DispositionCounts { refusal: 1, ..Default::default() });
    // On equal times the later arrival wins.
    assert!(st.apply_disposition(&s, &disposition("c1", "other", "2024-05-03T10:00:00Z", "")));
    assert_eq!(counts(&st), DispositionCounts { other: 1, ..Default::default() });
    assert!(st.apply_disposition(&s, &disposition("c2", "not_eligible", "2024-05-01T10:00:00Z", "")));
    assert_eq!(counts(&st).cases(), 2);
    assert_eq!((st.fieldwork.records, st.fieldwork.superseded, st.fieldwork.cases()), (6, 1, 2));
}

#[test]
fn an_interview_completes_its_case_and_later_records_still_win() {
    let s = study();
    let mut st = StudyState::new();
    st.apply_disposition(&s, &disposition("r1", "non_contact", "2024-05-01T09:00:00Z", ""));
    let (rec, checked) = interview("r1", "int01", 30, r#"{"q1": 3, "q2": 4, "q3": 2, "q4": "yes"}"#);
    assert!(matches!(st.apply(&s, &rec, &checked), Applied::Counted { .. }));
    assert_eq!(counts(&st), DispositionCounts { complete: 1, ..Default::default() });
    // A retry of the interview changes nothing.
    assert_eq!(st.apply(&s, &rec, &checked), Applied::Retry);
    assert_eq!(counts(&st).cases(), 1);
    // The interview ended at 10:30: an earlier call record does not undo it.
    assert!(!st.apply_disposition(&s, &disposition("r1", "refusal", "2024-05-01T10:15:00Z", "")));
    assert_eq!(counts(&st).complete, 1);
    // A later one does (e.g. the interview turned out to be a partial).
    assert!(st.apply_disposition(&s, &disposition("r1", "partial", "2024-05-01T11:00:00Z", "")));
    assert_eq!(counts(&st), DispositionCounts { partial: 1, ..Default::default() });
    // The case keeps the interview's segments and interviewer until then.
    let by_region = st.fieldwork.by_dimension(&s, 1);
    assert_eq!(by_region[3][Disposition::Partial.index()], 1, "the disposition had no region");
}

#[test]
fn a_respondent_is_counted_once_whatever_dispositions_its_case_has_and_wherever_its_state_goes() {
    let s = study();
    let mut st = StudyState::new();
    // Call records before the interview do not make the respondent known.
    st.apply_disposition(&s, &disposition("r1", "non_contact", "2024-05-01T09:00:00Z", ""));
    let (first, checked) = interview("r1", "int01", 30, r#"{"q1": 3, "q2": 4, "q3": 2, "q4": "yes"}"#);
    assert!(matches!(st.apply(&s, &first, &checked), Applied::Counted { .. }));
    // A later disposition keeps it known: a second interview is a duplicate respondent.
    st.apply_disposition(&s, &disposition("r1", "partial", "2024-05-02T11:00:00Z", ""));
    let (mut again, checked) = interview("r1", "int01", 20, r#"{"q1": 1, "q2": 1, "q3": 1, "q4": "no"}"#);
    again.submission_id = "r1-2".into();
    assert_eq!(st.apply(&s, &again, &checked), Applied::DuplicateRespondent);
    // An interview older than its case's latest record changes no disposition
    // but is counted, and its respondent is known from then on.
    st.apply_disposition(&s, &disposition("r2", "refusal", "2024-05-03T10:00:00Z", ""));
    let (old, checked) = interview("r2", "int01", 25, r#"{"q1": 2, "q2": 2, "q3": 2, "q4": "no"}"#);
    assert!(matches!(st.apply(&s, &old, &checked), Applied::Counted { .. }));
    let (mut old_again, checked) =
        interview("r2", "int01", 26, r#"{"q1": 5, "q2": 5, "q3": 1, "q4": "yes"}"#);
    old_again.submission_id = "r2-2".into();
    assert_eq!(st.apply(&s, &old_again, &checked), Applied::DuplicateRespondent);
    assert_eq!((st.interviews(), st.duplicate_respondents, st.fieldwork.cases()), (2, 2, 2));
    // The marks travel through the persisted form and through a merge.
    let read = StudyState::from_wire(st.to_wire()).expect("reads back");
    assert_eq!(read, st);
    let mut merged = StudyState::new();
    merged.merge(&read);
    let (mut third, checked) = interview("r2", "int02", 40, r#"{"q1": 4, "q2": 4, "q3": 4, "q4": "yes"}"#);
    third.submission_id = "r2-3".into();
    assert_eq!(merged.apply(&s, &third, &checked), Applied::DuplicateRespondent);
    // A case that only had dispositions is not a respondent in the merge either.
    merged.apply_disposition(&s, &disposition("c9", "refusal", "2024-05-01T10:00:00Z", ""));
    let (fresh, checked) = interview("c9", "int02", 40, r#"{"q1": 4, "q2": 3, "q3": 4, "q4": "yes"}"#);
    assert!(matches!(merged.apply(&s, &fresh, &checked), Applied::Counted { .. }));
}

#[test]
fn merged_partitions_count_each_case_once() {
    let s = study();
    let mut a = StudyState::new();
    let mut b = StudyState::new();
    a.apply_disposition(&s, &disposition("c1", "non_contact", "2024-05-01T10:00:00Z", ""));
    a.apply_disposition(&s, &disposition("c1", "complete", "2024-05-02T10:00:00Z", ""));
    b.apply_disposition(&s, &disposition("c2", "refusal", "2024-05-01T10:00:00Z", ""));
    let mut m = StudyState::new();
    m.merge(&a);
    m.merge(&b);
    assert_eq!(counts(&m), DispositionCounts { complete: 1, refusal: 1, ..Default::default() });
    assert_eq!(m.fieldwork.cases(), 2);
}

#[test]
fn speeders_are_judged_against_the_exact_median_of_earlier_interviews() {
    let s = study();
    let mut st = StudyState::new();
    let answers = r#"{"q1": 3, "q2": 4, "q3": 2, "q4": "yes"}"#;
    // Four interviews of 30, 40, 50, 60 minutes: median 45, threshold 22.5.
    for (i, m) in [30, 40, 50, 60].into_iter().enumerate() {
        let (rec, checked) = interview(&format!("r{i}"), "int01", m, answers);
        assert_eq!(
            st.apply(&s, &rec, &checked),
            Applied::Counted { possible_duplicate: false, speeder: false }
        );
    }
    let (rec, checked) = interview("fast", "int02", 22, r#"{"q1": 1, "q2": 4, "q3": 2, "q4": "yes"}"#);
    assert_eq!(st.apply(&s, &rec, &checked), Applied::Counted { possible_duplicate: false, speeder: true });
    assert_eq!(st.flags.get(&(0, Check::Speeder, None)), Some(&1));
    let (rec, checked) = interview("ok", "int02", 23, r#"{"q1": 2, "q2": 4, "q3": 2, "q4": "yes"}"#);
    assert!(matches!(st.apply(&s, &rec, &checked), Applied::Counted { speeder: false, .. }));
    assert_eq!(st.fieldwork.durations[0].median(), Some(35.0 * 60.0));
    assert_eq!(st.fieldwork.interviewers["int02"].speeders, 1);
    let r = report(&s, &st.fieldwork, None).expect("report");
    assert_eq!(r.forms[0].median_duration_secs, Some(2100.0));
    assert_eq!(r.forms[0].speeder_threshold_secs, Some(1050.0));
    assert_eq!(r.forms[1].median_duration_secs, None);
}

#[test]
fn no_speeders_before_the_minimum_number_of_interviews() {
    let s = study();
    let mut st = StudyState::new();
    for (i, m) in [60, 60, 5].into_iter().enumerate() {
        let (rec, checked) = interview(&format!("r{i}"), "int01", m, &format!(r#"{{"q1": {}}}"#, i + 1));
        assert!(matches!(st.apply(&s, &rec, &checked), Applied::Counted { speeder: false, .. }));
    }
}

/// A crafted fieldwork: int01 and int02 interview well; int03 skips
/// required items, says "don't know" and speeds; int04 straightlines on
/// the scale ends.
fn crafted() -> StudyState {
    let s = study();
    let mut st = StudyState::new();
    let mut n = 0;
    let mut add = |st: &mut StudyState, who: &str, minutes: u32, answers: &str| {
        n += 1;
        let (rec, checked) = interview(&format!("{who}-{n}"), who, minutes, answers);
        st.apply(&s, &rec, &checked);
    };
    for k in 0..6 {
        add(&mut st, "int01", 40 + k, &format!(r#"{{"q1": {}, "q2": 3, "q3": 2, "q4": "yes"}}"#, 2 + k % 3));
        add(&mut st, "int02", 44 + k, &format!(r#"{{"q1": 3, "q2": {}, "q3": 4, "q4": "no"}}"#, 2 + k % 3));
    }
    for k in 0..4 {
        add(&mut st, "int03", 10 + k, r#"{"q1": {"missing": "dk"}, "q3": 3}"#);
        add(
            &mut st,
            "int04",
            45 + k,
            &format!(
                r#"{{"q1": {v}, "q2": {v}, "q3": {v}, "q4": "yes"}}"#,
                v = if k % 2 == 0 { 1 } else { 5 }
            ),
        );
    }
    st
}

#[test]
fn interviewer_outliers_stand_out_against_the_rest_on_a_crafted_dataset() {
    let s = study();
    let st = crafted();
    let r = report(&s, &st.fieldwork, Some("interviewer")).expect("report");
    let labels: Vec<&str> = r.groups.iter().map(|g| g.segment.as_str()).collect();
    assert_eq!(labels, vec!["int01", "int02", "int03", "int04"]);
    let q =
        |l: &str| r.groups.iter().find(|g| g.segment == l).and_then(|g| g.quality.clone()).expect("quality");
    let int03 = q("int03");
    assert_eq!(int03.outliers, vec!["speeding", "nonresponse", "dont_know"]);
    // 4 interviews x 4 asked items: q2 and q4 blank (nonresponse), q1 don't know.
    assert_eq!(int03.measures["nonresponse"].rate, Some(8.0 / 16.0));
    assert_eq!(int03.measures["nonresponse"].rest, Some(0.0));
    assert_eq!(int03.measures["dont_know"].rate, Some(4.0 / 16.0));
    assert_eq!(int03.measures["speeding"].rate, Some(1.0));
    let int04 = q("int04");
    assert_eq!(int04.outliers, vec!["straightlining", "extreme"]);
    assert_eq!(int04.measures["extreme"].rate, Some(1.0));
    // int01/int02: 36 scale answers, none at an end (q1 2..4, q2 3/2..4, q3 2/4); int03: q3 = 3.
    assert_eq!(int04.measures["extreme"].rest, Some(0.0));
    assert!(q("int01").outliers.is_empty() && q("int02").outliers.is_empty());
    // Every interview is a complete of its interviewer.
    assert_eq!(r.groups[2].counts.complete, 4);
    assert_eq!(r.groups.iter().map(|g| g.cases).sum::<u64>(), 20);
}

#[test]
fn interviewer_labels_come_from_the_instrument_and_other_ids_become_other() {
    let s = study();
    let mut st = StudyState::new();
    for (i, who) in ["int01", "int02", "Bad Id!", "int03", "int04", "int05", "int06"].into_iter().enumerate()
    {
        let (rec, checked) = interview(&format!("r{i}"), who, 30, &format!(r#"{{"q1": {}}}"#, i % 5 + 1));
        st.apply(&s, &rec, &checked);
    }
    st.apply_disposition(&s, &disposition("c9", "refusal", "2024-05-01T10:00:00Z", ""));
    let rows = interviewers::by_interviewer(&s, &st.fieldwork);
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    // The declared interviewers keep their labels; undeclared and hostile ids are `other`.
    assert_eq!(labels, vec!["int01", "int02", "int03", "int04", "other", "unknown"]);
    assert_eq!(rows[4].stats.interviews, 3);
    assert_eq!(rows[5].counts[Disposition::Refusal.index()], 1);
}

#[test]
fn partitions_merge_interviewer_rows_by_declared_label() {
    let s = study();
    let mut a = StudyState::new();
    let mut b = StudyState::new();
    for (st, who) in [(&mut a, ["int01", "int02", "int03"]), (&mut b, ["int04", "int05", "int01"])] {
        for (i, w) in who.into_iter().enumerate() {
            let (rec, checked) =
                interview(&format!("{w}-{i}-{}", who[0]), w, 30, &format!(r#"{{"q1": {}}}"#, i + 1));
            st.apply(&s, &rec, &checked);
        }
    }
    let mut m = StudyState::new();
    m.merge(&a);
    m.merge(&b);
    let rows = interviewers::by_interviewer(&s, &m.fieldwork);
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    // int05 is not declared: `other`.
    assert_eq!(labels, vec!["int01", "int02", "int03", "int04", "other"]);
    assert_eq!(rows[4].stats.interviews, 1);
}

#[test]
fn a_declared_interviewer_dimension_gives_the_labels() {
    let src = STUDY.replace(
        "  - {name: interviewer, source: interviewer, values: [{code: int01}, {code: int02}, {code: int03}, {code: int04}]}",
        "  - {name: staff, source: interviewer, values: [{code: int01, label: Ann}]}",
    );
    let s = Study::from_yaml(&src).expect("valid");
    let mut c = Catalog::default();
    c.insert(s.clone());
    let mut st = StudyState::new();
    for (i, who) in ["int01", "int02"].into_iter().enumerate() {
        let sub = serde_json::from_str(&format!(
            r#"{{"study":"t","form":"fa","respondent_id":"r{i}","submission_id":"s{i}","interviewer":"{who}","answers":{{"q1":{}}}}}"#,
            i + 1
        ))
        .expect("json");
        let rec = validate(&c, &sub, &Limits::default()).expect("valid");
        let checked = check(&s, &rec);
        st.apply(&s, &rec, &checked);
    }
    let r = report(&s, &st.fieldwork, Some("staff")).expect("by staff");
    let got: Vec<(&str, &str, u64)> =
        r.groups.iter().map(|g| (g.segment.as_str(), g.label.as_str(), g.cases)).collect();
    assert_eq!(got, vec![("int01", "Ann", 1), ("other", "other", 1)]);
    assert!(r.groups[0].quality.is_some());
    assert!(report(&s, &st.fieldwork, Some("interviewer")).is_ok());
}

#[test]
fn the_report_breaks_cases_down_by_a_declared_dimension() {
    let s = study();
    let mut st = StudyState::new();
    st.apply_disposition(&s, &disposition("c1", "complete", "2024-05-01T10:00:00Z", r#", "form": "fa""#));
    st.apply_disposition(&s, &disposition("c2", "refusal", "2024-05-01T10:00:00Z", r#", "form": "fb""#));
    st.apply_disposition(&s, &disposition("c3", "not_eligible", "2024-05-01T10:00:00Z", ""));
    let r = report(&s, &st.fieldwork, Some("position")).expect("report");
    let got: Vec<(&str, u64, Option<f64>)> =
        r.groups.iter().map(|g| (g.segment.as_str(), g.cases, g.rates.rr1)).collect();
    assert_eq!(got, vec![("a", 1, Some(1.0)), ("b", 1, Some(0.0)), ("unknown", 1, None)]);
    // Proportional e over the whole study: 2 eligible of 3 known.
    assert!((r.eligibility_estimate - 2.0 / 3.0).abs() < 1e-12);
    assert!(report(&s, &st.fieldwork, Some("nope")).is_err());
    assert!(r.to_table().contains("RR1 100.0%"));
}

#[test]
fn flags_for_review_name_checks_and_items_and_filter_and_page() {
    let s = study();
    let mut st = StudyState::new();
    let (rec, checked) = interview("r1", "int01", 30, r#"{"q1": 9}"#);
    let applied = st.apply(&s, &rec, &checked);
    let raised = crate::pipeline::raised(&s, &rec, &checked, applied);
    let names: Vec<(Check, Option<&str>)> = raised.iter().map(|c| (c.check, c.item.as_deref())).collect();
    assert_eq!(
        names,
        vec![
            (Check::OutOfRange, Some("q1")),
            (Check::ItemNonresponse, Some("q2")),
            (Check::ItemNonresponse, Some("q3")),
            (Check::ItemNonresponse, Some("q4"))
        ]
    );
    assert_eq!(raised[0].code.as_deref(), Some("s1"));
    assert!(crate::pipeline::raised(&s, &rec, &checked, st.apply(&s, &rec, &checked)).is_empty(), "a retry");
    let flagged = |sub: &str, form: &str, who: &str, check: Check| review::FlaggedInterview {
        study: "t".into(),
        form: form.into(),
        submission_id: sub.into(),
        respondent_key: "k".into(),
        interviewer: who.into(),
        received_at: Some(format!("2024-05-01T10:00:0{}Z", &sub[1..])),
        checks: vec![review::FlaggedCheck { check, item: None, code: None, message: None }],
        source_partition: 0,
        source_offset: 0,
    };
    let all = [
        flagged("s3", "fa", "int01", Check::Speeder),
        flagged("s1", "fa", "int02", Check::Straightlining),
        flagged("s2", "fb", "int01", Check::Speeder),
    ];
    let p = review::page(all.iter(), &review::FlagFilter::default(), 1, 2);
    assert_eq!((p.total, p.flags.len()), (3, 2));
    assert_eq!(p.flags.iter().map(|f| f.submission_id.as_str()).collect::<Vec<_>>(), vec!["s1", "s2"]);
    let p = review::page(all.iter(), &review::FlagFilter::default(), 2, 2);
    assert_eq!(p.flags.iter().map(|f| f.submission_id.as_str()).collect::<Vec<_>>(), vec!["s3"]);
    let speeders = review::FlagFilter { check: Some(Check::Speeder), ..Default::default() };
    assert_eq!(review::page(all.iter(), &speeders, 1, 50).total, 2);
    let f = review::FlagFilter {
        check: Some(Check::Speeder),
        form: Some("fa".into()),
        interviewer: Some("int01".into()),
        item: None,
    };
    assert_eq!(review::page(all.iter(), &f, 1, 50).flags[0].submission_id, "s3");
}

#[test]
fn fieldwork_settings_are_linted() {
    let bad = STUDY.replace(
        "fieldwork: {speeder_ratio: 0.5, speeder_min_interviews: 4, outlier_min_interviews: 3}",
        "fieldwork: {eligibility_estimate: 1.5, speeder_ratio: 1.2, outlier_ratio: 0.5, response_rate_target: 0}",
    );
    let problems = Study::from_yaml(&bad).expect_err("invalid");
    assert_eq!(problems.len(), 4, "{problems:?}");
    let fixed = STUDY.replace("fieldwork: {", "fieldwork: {eligibility_estimate: 0.8, ");
    let s = Study::from_yaml(&fixed).expect("valid");
    assert_eq!(s.def.fieldwork.eligibility_estimate, crate::instrument::EligibilityEstimate::Fixed(0.8));
    let p = STUDY.replace("fieldwork: {", "fieldwork: {eligibility_estimate: proportional, ");
    assert!(Study::from_yaml(&p).is_ok());
    assert!(
        Study::from_yaml(&STUDY.replace("fieldwork: {", "fieldwork: {eligibility_estimate: guess, "))
            .is_err()
    );
}
