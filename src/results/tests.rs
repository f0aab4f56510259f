use proptest::prelude::*;

use super::*;
use crate::instrument::{Catalog, Study};
use crate::quality::check;
use crate::validate::{Limits, Submission, validate};

const STUDY: &str = r#"
study: t
missing_codes: [{code: dk, kind: dont_know}]
dimensions:
  - {name: position, source: form, values: [{code: a}, {code: b}]}
  - {name: region, source: attribute, values: [{code: west}, {code: east}]}
reporting: {min_cell_size: 2, straightlining_min_run: 0, fingerprint_min_answers: 2}
forms:
  - id: fa
    segments: {position: a}
    items:
      - {id: q1, code: know, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}}
      - {id: q2, code: comm, kind: scale, min: 1, max: 5, labels: {1: hard, 5: easy}, direction: descending}
      - {id: q3, code: svc, kind: multi_select, ranked: true, options: [{code: housing}, {code: medical}]}
      - {id: q4, code: tf, kind: yes_no}
  - id: fb
    segments: {position: b}
    items:
      - {id: q9, code: know, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}}
      - {id: q10, code: tf, kind: yes_no}
"#;

fn study() -> Study {
    Study::from_yaml(STUDY).expect("valid")
}

fn rec(study: &Study, form: &str, resp: &str, sub: &str, region: &str, answers: &str) -> (Record, Checked) {
    let mut c = Catalog::default();
    c.insert(study.clone());
    let s: Submission = serde_json::from_str(&format!(
        r#"{{"study":"t","form":"{form}","respondent_id":"{resp}","submission_id":"{sub}","attributes":{{"region":"{region}"}},"answers":{answers}}}"#
    ))
    .expect("json");
    let r = validate(&c, &s, &Limits::default()).expect("valid");
    let ch = check(study, &r);
    (r, ch)
}

fn item<'a>(t: &'a Toplines, group: &str, code: &str) -> &'a toplines::ItemTopline {
    t.groups
        .iter()
        .find(|g| g.segment == group)
        .and_then(|g| g.items.iter().find(|i| i.code == code))
        .expect("item")
}

#[test]
fn retries_count_once_and_duplicate_respondents_are_flagged_not_counted() {
    let s = study();
    let mut st = StudyState::new();
    let (r1, c1) = rec(&s, "fa", "r1", "s1", "west", r#"{"q1": 4}"#);
    assert_eq!(st.apply(&s, &r1, &c1), Applied::Counted { possible_duplicate: false, speeder: false });
    assert_eq!(st.apply(&s, &r1, &c1), Applied::Retry);
    let (r2, c2) = rec(&s, "fa", "r1", "s2", "west", r#"{"q1": 1}"#);
    assert_eq!(st.apply(&s, &r2, &c2), Applied::DuplicateRespondent);
    assert_eq!(st.interviews(), 1);
    assert_eq!(st.retries, 1);
    assert_eq!(st.duplicate_respondents, 1);
    assert_eq!(st.flags.get(&(0, Check::DuplicateRespondent, None)), Some(&1));
}

#[test]
fn identical_answers_under_another_respondent_are_possible_duplicates() {
    let s = study();
    let mut st = StudyState::new();
    let (r1, c1) = rec(&s, "fa", "r1", "s1", "west", r#"{"q1": 4, "q2": 2, "q4": "yes"}"#);
    let (r2, c2) = rec(&s, "fa", "r2", "s2", "west", r#"{"q1": 4, "q2": 2, "q4": "yes"}"#);
    st.apply(&s, &r1, &c1);
    assert_eq!(st.apply(&s, &r2, &c2), Applied::Counted { possible_duplicate: true, speeder: false });
    assert_eq!(st.interviews(), 2);
    assert_eq!(st.possible_duplicates(), 1);
}

#[test]
fn forms_pool_by_code_and_reverse_items_put_the_low_end_in_the_high_box() {
    let s = study();
    let mut st = StudyState::new();
    for (i, (form, ans)) in [
        ("fa", r#"{"q1": 5, "q2": 1, "q4": "yes"}"#),
        ("fa", r#"{"q1": 4, "q2": 2, "q4": "no"}"#),
        ("fa", r#"{"q1": 3, "q2": 5, "q4": "yes"}"#),
        ("fb", r#"{"q9": 1, "q10": "no"}"#),
    ]
    .iter()
    .enumerate()
    {
        let (r, c) = rec(&s, form, &format!("r{i}"), &format!("s{i}"), "west", ans);
        st.apply(&s, &r, &c);
    }
    let t = toplines(&s, &st, None).expect("toplines");
    let know = item(&t, "all", "know");
    assert_eq!(know.valid_n, 4);
    assert_eq!(know.mean, Some(13.0 / 4.0));
    let b = know.boxes.expect("boxes");
    assert_eq!((b.low, b.middle, b.high), (0.25, 0.25, 0.5));
    let comm = item(&t, "all", "comm").boxes.expect("boxes");
    assert!((comm.high - 2.0 / 3.0).abs() < 1e-12, "1 and 2 are 'more challenging': {comm:?}");
    let by = toplines(&s, &st, Some("position")).expect("by position");
    assert_eq!(item(&by, "a", "tf").distribution[0].share, 2.0 / 3.0);
    assert!(item(&by, "b", "tf").suppressed, "one answer is under min n 2");
    assert!(item(&by, "b", "tf").distribution.is_empty());
    assert!(toplines(&s, &st, Some("nope")).is_err());
}

#[test]
fn multi_select_shares_are_per_respondent_who_answered() {
    let s = study();
    let mut st = StudyState::new();
    for (i, ans) in [
        r#"{"q3": {"ranked": {"housing": 1, "medical": 2}}}"#,
        r#"{"q3": ["medical"]}"#,
        r#"{"q3": {"missing": "dk"}}"#,
        r#"{}"#,
    ]
    .iter()
    .enumerate()
    {
        let (r, c) = rec(&s, "fa", &format!("r{i}"), &format!("s{i}"), "east", ans);
        st.apply(&s, &r, &c);
    }
    let t = toplines(&s, &st, None).expect("toplines");
    let svc = item(&t, "all", "svc");
    assert_eq!(svc.valid_n, 2);
    assert_eq!(svc.distribution[0].share, 0.5);
    assert_eq!(svc.distribution[1].share, 1.0);
    assert_eq!(svc.distribution[0].first_share, Some(0.5));
    assert_eq!(svc.missing.dont_know, 1);
    assert_eq!(svc.missing.blank, 1);
}

#[test]
fn out_of_range_values_are_excluded_but_the_rest_of_the_interview_counts() {
    let s = study();
    let mut st = StudyState::new();
    let (r, c) = rec(&s, "fa", "r1", "s1", "west", r#"{"q1": 9, "q4": "yes"}"#);
    st.apply(&s, &r, &c);
    let t = toplines(&s, &st, None).expect("toplines");
    assert_eq!(item(&t, "all", "know").valid_n, 0);
    assert_eq!(item(&t, "all", "know").excluded, 1);
    assert_eq!(item(&t, "all", "tf").valid_n, 1);
    assert_eq!(st.flags.get(&(0, Check::OutOfRange, Some(0))), Some(&1));
}

fn arb_answers() -> impl Strategy<Value = (u8, String)> {
    (
        0u8..2,
        prop::option::of(0i64..8),
        prop::option::of(0i64..7),
        prop::option::of(prop::sample::select(vec!["yes", "no", "maybe"])),
        prop::option::of(prop::collection::vec(prop::sample::select(vec!["housing", "medical", "x"]), 0..3)),
    )
        .prop_map(|(form, a, b, c, d)| {
            let mut parts = Vec::new();
            let (k1, k4) = if form == 0 { ("q1", "q4") } else { ("q9", "q10") };
            if let Some(a) = a {
                parts.push(format!(r#""{k1}": {a}"#));
            }
            if let Some(c) = c {
                parts.push(format!(r#""{k4}": "{c}""#));
            }
            if form == 0 {
                if let Some(b) = b {
                    parts.push(format!(r#""q2": {b}"#));
                }
                if let Some(d) = d {
                    parts.push(format!(r#""q3": {}"#, serde_json::to_string(&d).expect("json")));
                }
            }
            (form, format!("{{{}}}", parts.join(",")))
        })
}

proptest! {
    #[test]
    fn merging_partition_states_in_any_order_gives_the_same_toplines(
        records in prop::collection::vec((arb_answers(), 0u8..3, 0u8..20, 0u8..2), 1..40),
        order in Just(()).prop_perturb(|_, mut rng| { let mut v: Vec<usize> = (0..4).collect(); for i in (1..4).rev() { v.swap(i, rng.random_range(0..=i)); } v }),
    ) {
        let s = study();
        let mut whole = StudyState::new();
        let mut parts = [StudyState::new(), StudyState::new(), StudyState::new(), StudyState::new()];
        for ((form, ans), region, resp, retry) in &records {
            let form = if *form == 0 { "fa" } else { "fb" };
            let region = ["west", "east", "north"][*region as usize];
            // partition by respondent, as the Kafka key does
            let sub = format!("s{resp}-{retry}");
            let (r, c) = rec(&s, form, &format!("r{resp}"), &sub, region, ans);
            whole.apply(&s, &r, &c);
            parts[*resp as usize % 4].apply(&s, &r, &c);
        }
        let mut merged = StudyState::new();
        for i in &order {
            merged.merge(&parts[*i]);
        }
        for by in [None, Some("position"), Some("region")] {
            prop_assert_eq!(toplines(&s, &merged, by).expect("t"), toplines(&s, &whole, by).expect("t"));
        }
        prop_assert_eq!(merged.interviews(), whole.interviews());
        prop_assert_eq!(merged.retries, whole.retries);
        prop_assert_eq!(merged.possible_duplicates(), whole.possible_duplicates());
    }
}

#[test]
fn fingerprints_order_picks_by_code_whatever_the_order_sent_or_listed() {
    let s = Study::from_yaml(
        r#"
study: t
forms:
  - id: f
    items:
      - {id: m, code: m, kind: multi_select, options: [{code: zeta}, {code: alpha}, {code: mid}]}
      - {id: r, code: r, kind: multi_select, ranked: true, options: [{code: zeta}, {code: alpha}, {code: mid}]}
"#,
    )
    .expect("valid");
    let item = |id: &str| &s.forms[0].items[s.forms[0].item(id).expect("item")];
    let bytes = |id: &str, v: &Value| {
        let mut out = Vec::new();
        value_hash(&s.codes[item(id).code], item(id).code, v, &mut out);
        out
    };
    let opt = |id: &str, c: &str| item(id).option(c);
    let a = Value::Choices(vec![opt("m", "mid"), opt("m", "zeta"), opt("m", "alpha")]);
    let b = Value::Choices(vec![opt("m", "alpha"), opt("m", "mid"), opt("m", "zeta")]);
    assert_eq!(bytes("m", &a), bytes("m", &b));
    assert_eq!(&bytes("m", &a)[4..], b"alpha\0mid\0zeta\0\xff");
    let r = Value::Ranked(vec![(opt("r", "zeta"), 1), (opt("r", "alpha"), 2)]);
    let mut want = 1u32.to_le_bytes().to_vec();
    want.extend_from_slice(b"alpha");
    want.extend_from_slice(&2i64.to_le_bytes());
    want.extend_from_slice(b"zeta");
    want.extend_from_slice(&1i64.to_le_bytes());
    want.push(0xff);
    assert_eq!(bytes("r", &r), want);
}
