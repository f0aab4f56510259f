//! Unit tests of loading, linting and compiling instruments.

use super::*;

const SMALL: &str = r#"
study: demo
missing_codes:
  - {code: dk, kind: dont_know}
dimensions:
  - name: position
    source: form
    values: [{code: a}, {code: b}]
forms:
  - id: fa
    segments: {position: a}
    items:
      - id: q1
        code: know
        kind: scale
        min: 1
        max: 5
        labels: {1: Not, 5: Very}
      - id: q2
        code: tf
        kind: yes_no
        relevant: q1 >= 3
  - id: fb
    segments: {position: b}
    items:
      - id: q7
        code: know
        kind: scale
        min: 1
        max: 5
        labels: {1: Not, 5: Very}
"#;

#[test]
fn a_small_study_compiles_and_pools_codes_across_forms() {
    let s = Study::from_yaml(SMALL).expect("valid");
    assert_eq!(s.codes.len(), 2);
    let fa = &s.forms[s.form("fa").expect("fa")];
    let fb = &s.forms[s.form("fb").expect("fb")];
    assert_eq!(fa.items[0].code, fb.items[0].code);
    assert_eq!(s.missing_kind("dk"), Some(MissingKind::DontKnow));
    assert_eq!(fa.fixed_segments, vec![(0, 0)]);
}

#[test]
fn problems_carry_the_line_of_their_item() {
    let broken = SMALL.replace("relevant: q1 >= 3", "relevant: q9 >= 3");
    let problems = Study::from_yaml(&broken).expect_err("broken");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("unknown item `q9`"));
    let line = broken.lines().position(|l| l.contains("id: q2")).expect("q2") + 1;
    assert_eq!(problems[0].line, line);
}

#[test]
fn incompatible_kinds_for_one_code_are_reported() {
    let broken = SMALL.replacen("max: 5\n        labels: {1: Not, 5: Very}\n\"#", "", 1).replace(
        "      - id: q7\n        code: know\n        kind: scale",
        "      - id: q7\n        code: know\n        kind: scale_x",
    );
    assert!(Study::from_yaml(&broken).is_err());
    let yes_no = SMALL.replace(
        "      - id: q7\n        code: know\n        kind: scale\n        min: 1\n        max: 5\n        labels: {1: Not, 5: Very}",
        "      - id: q7\n        code: know\n        kind: yes_no",
    );
    let problems = Study::from_yaml(&yes_no).expect_err("incompatible");
    assert!(problems[0].message.contains("kind `yes_no` here but `scale`"), "{problems:?}");
}

#[test]
fn cycles_duplicates_and_unlabelled_scales_are_reported() {
    let broken = SMALL
        .replace(
            "labels: {1: Not, 5: Very}\n      - id: q2",
            "labels: {}\n        relevant: answered(q2)\n      - id: q2",
        )
        .replace("id: q7", "id: q1");
    let problems = Study::from_yaml(&broken).expect_err("broken");
    let all: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert!(all.iter().any(|m| m.contains("no labels")), "{all:?}");
    assert!(all.iter().any(|m| m.contains("cycle")), "{all:?}");
}

#[test]
fn the_demo_study_is_valid() {
    let c = Catalog::demo();
    let s = c.get(DEMO_STUDY_ID).expect("demo");
    assert_eq!(s.forms.len(), 4);
}
