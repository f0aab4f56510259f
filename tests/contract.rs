//! The documented contract of answers in the toplines (docs/api.md,
//! "What counts"): an empty multi-select, the two N/A encodings, and an
//! answer to an item its relevance condition hides. Offline, through the
//! same functions as the live aggregator (`report::tally`, `toplines`).

use fieldwatch::instrument::{Catalog, DEMO_STUDY_ID};
use fieldwatch::report;
use fieldwatch::results::toplines::{ItemTopline, toplines};
use fieldwatch::validate::Limits;
use serde_json::json;

/// The investigator-form interviews with the given answers, tallied, and
/// the overall toplines of canonical item `code`.
fn topline(answers: &[serde_json::Value], code: &str) -> ItemTopline {
    let catalog = Catalog::demo();
    let study = catalog.get(DEMO_STUDY_ID).expect("demo");
    let lines: String = answers
        .iter()
        .enumerate()
        .map(|(n, a)| {
            json!({"study": DEMO_STUDY_ID, "form": "investigator", "respondent_id": format!("R-{n}"),
                   "submission_id": format!("S-{n}"), "answers": a})
            .to_string()
                + "\n"
        })
        .collect();
    let tally = report::tally(study, lines.as_bytes(), &Limits::default()).expect("tally");
    assert!(tally.errors.is_empty(), "every line is valid: {:?}", tally.errors);
    let t = toplines(study, &tally.state, None).expect("toplines");
    t.groups[0].items.iter().find(|i| i.code == code).cloned().expect("item")
}

fn count(item: &ItemTopline, value: &str) -> u64 {
    item.distribution.iter().find(|c| c.value == value).map_or(0, |c| c.count)
}

/// `n` copies of each answer, in turn: enough interviews that no cell is
/// below the demo's minimum cell size (5).
fn times(n: usize, answers: &[serde_json::Value]) -> Vec<serde_json::Value> {
    answers.iter().flat_map(|a| std::iter::repeat_n(a.clone(), n)).collect()
}

#[test]
fn an_empty_multi_select_is_an_answer_that_picks_nothing() {
    let item = topline(&times(5, &[json!({"q2": []}), json!({"q2": ["spanish"]}), json!({})]), "languages");
    assert_eq!(item.valid_n, 10, "`[]` is in the denominator, a blank is not");
    assert_eq!(count(&item, "spanish"), 5);
    let spanish = item.distribution.iter().find(|c| c.value == "spanish").expect("spanish");
    assert!((spanish.share - 0.5).abs() < 1e-9, "shares are per respondent who answered");
}

#[test]
fn na_as_an_option_is_in_the_denominator_and_the_missing_code_is_not() {
    let option =
        topline(&times(5, &[json!({"q42a": "na"}), json!({"q42a": "yes"})]), "ta_understanding_issue");
    assert_eq!(option.valid_n, 10);
    assert_eq!((count(&option, "na"), count(&option, "yes")), (5, 5));
    let missing = topline(
        &times(5, &[json!({"q42a": {"missing": "na"}}), json!({"q42a": "yes"})]),
        "ta_understanding_issue",
    );
    assert_eq!(missing.valid_n, 5, "`{{\"missing\": \"na\"}}` is left out of the denominator");
    assert_eq!(missing.missing.not_applicable, 5);
    assert_eq!(count(&missing, "yes"), 5);
}

#[test]
fn an_answer_to_a_hidden_item_is_not_in_the_toplines() {
    // q14_adult is asked only when some victims were counted in q13.
    let hidden = topline(&[json!({"q14_adult": 3})], "victims_adult");
    assert_eq!(hidden.valid_n, 0);
    assert_eq!(hidden.missing.skipped, 1);
    let shown = topline(&[json!({"q13_male": 4, "q14_adult": 3})], "victims_adult");
    assert_eq!(shown.valid_n, 1);
}
