//! Unit tests of the XLSForm rules added to the subset: arithmetic, `if()`,
//! `today()`, `=` on a select_multiple, hard constraints, sentinel numbers,
//! the `quotas` sheet and problems placed after assembly. Each runs the
//! imported study through validation and the checks where the rule is
//! about answers.

use super::*;
use crate::instrument::model::{FormDef, ItemDef, KindDef, MissingKind, QuotaCellDef};
use crate::instrument::{Catalog, Study};
use crate::validate::{Limits, Rule, Submission, Value, validate};

fn grid(rows: &[&[&str]]) -> Vec<Vec<Cell>> {
    rows.iter()
        .map(|r| {
            r.iter().map(|c| if c.is_empty() { Cell::Empty } else { Cell::Text(c.to_string()) }).collect()
        })
        .collect()
}

fn book(file: &str, sheets: &[(&str, &[&[&str]])]) -> Workbook {
    Workbook {
        file: file.into(),
        sheets: sheets.iter().map(|(n, rows)| Sheet { name: (*n).into(), rows: grid(rows) }).collect(),
    }
}

const CHOICES: &[&[&str]] = &[
    &["list_name", "name", "label"],
    &["col", "red", "Red"],
    &["col", "blue", "Blue"],
    &["region", "west", "West"],
    &["region", "east", "East"],
];

fn one(survey: &[&[&str]]) -> Result<FormDef, Vec<XlsProblem>> {
    let def = import(&[book("f.xlsx", &[("survey", survey), ("choices", CHOICES)])], Some("demo"))?;
    Ok(def.forms.into_iter().next().expect("one form"))
}

fn item<'a>(f: &'a FormDef, id: &str) -> &'a ItemDef {
    f.items.iter().find(|i| i.id == id).unwrap_or_else(|| panic!("no item {id}"))
}

/// The imported study, loaded as the service loads it.
fn catalog(books: &[Workbook]) -> Catalog {
    let def = import(books, Some("demo")).expect("imports");
    let mut c = Catalog::default();
    c.insert(Study::from_def(def).expect("compiles"));
    c
}

fn submission(form: &str, answers: &str, completed_at: Option<&str>) -> Submission {
    let mut s: Submission = serde_json::from_str(&format!(
        r#"{{"study":"demo","form":"{form}","respondent_id":"r1","submission_id":"s1","answers":{answers}}}"#
    ))
    .expect("json");
    s.completed_at = completed_at.map(str::to_string);
    s
}

#[test]
fn rule_arithmetic_if_today_and_date_translate_with_xpath_precedence() {
    let f = one(&[
        &["type", "name", "label", "relevant", "constraint"],
        &["integer", "a", "A", "", ""],
        &["integer", "b", "B", "", ". <= ${a} div 2 + 1"],
        &["text", "c", "C", "${a} + ${b} * 2 > 10 and if(${a} > 1, ${b}, 0) != 3", ""],
        &["text", "d", "D", "-${a} < 0 and ${a} mod 2 = 0", ""],
        &["text", "e", "E", "today() >= date('2024-01-01')", ""],
        &["text", "f", "F", "'2024-06-01' > today()", ""],
    ])
    .expect("valid");
    assert_eq!(item(&f, "f").relevant.as_deref(), Some("19875 > today()"), "a date string is a day");
    let p = one(&[&["type", "name", "label", "relevant"], &["text", "g", "G", "today() = 'soon'"]])
        .expect_err("not a date");
    assert!(p[0].message.contains("is not a date"), "{}", p[0].message);
    assert_eq!(item(&f, "b").constraint.as_deref(), Some("b <= ((a / 2) + 1)"));
    assert_eq!(item(&f, "c").relevant.as_deref(), Some("(a + (b * 2)) > 10 and if(a > 1, b, 0) != 3"));
    assert_eq!(item(&f, "d").relevant.as_deref(), Some("(-a) < 0 and (a % 2) == 0"));
    assert_eq!(item(&f, "e").relevant.as_deref(), Some("today() >= 19723"));
}

#[test]
fn rule_today_is_the_interviews_own_date_in_checks_and_validation() {
    let c = catalog(&[book(
        "f.xlsx",
        &[
            (
                "survey",
                &[
                    &["type", "name", "label", "relevant"],
                    &["integer", "a", "A", ""],
                    &["integer", "late", "Asked from 2024-06-01", "today() >= date('2024-06-01')"],
                ],
            ),
            ("settings", &[&["form_id"], &["f"]]),
        ],
    )]);
    let study = c.get("demo").expect("study");
    let run = |at: &str| {
        let rec = validate(&c, &submission("f", r#"{"a": 1, "late": 2}"#, Some(at)), &Limits::default())
            .expect("valid");
        crate::quality::check(study, &rec).flags.iter().map(|f| f.check.as_str()).collect::<Vec<_>>()
    };
    assert!(run("2024-06-01T00:30:00Z").is_empty(), "asked on the day");
    assert_eq!(run("2024-05-31T23:30:00Z"), vec!["answered_when_hidden"], "hidden the day before");
}

#[test]
fn rule_equals_on_a_select_multiple_is_its_whole_value_as_in_odk() {
    let c = catalog(&[book(
        "f.xlsx",
        &[
            (
                "survey",
                &[
                    &["type", "name", "label", "relevant"],
                    &["select_multiple col", "sm", "Colours", ""],
                    &["integer", "why", "Only red?", "${sm} = 'red'"],
                ],
            ),
            ("choices", CHOICES),
            ("settings", &[&["form_id"], &["f"]]),
        ],
    )]);
    let study = c.get("demo").expect("study");
    assert_eq!(study.def.forms[0].items[1].relevant.as_deref(), Some("sm == \"red\""));
    let hidden = |answers: &str| {
        let rec = validate(&c, &submission("f", answers, None), &Limits::default()).expect("valid");
        crate::quality::check(study, &rec).flags.iter().any(|f| f.check.as_str() == "answered_when_hidden")
    };
    assert!(!hidden(r#"{"sm": ["red"], "why": 1}"#), "only red: shown");
    assert!(hidden(r#"{"sm": ["red", "blue"], "why": 1}"#), "red among others: not equal, hidden");
}

#[test]
fn rule_fieldwatch_constraint_hard_makes_validation_reject_with_the_message() {
    let survey: &[&[&str]] = &[
        &["type", "name", "label", "constraint", "constraint_message", "fieldwatch::constraint_hard"],
        &["integer", "adults", "Adults", ". >= 1 and . <= 20", "", "yes"],
        &["integer", "workers", "Workers", ". <= ${adults}", "At most the adults", "TRUE()"],
        &["integer", "kids", "Kids", ". <= ${adults} * 4", "", ""],
    ];
    let f = one(survey).expect("valid");
    let adults = item(&f, "adults");
    assert!(adults.constraint_hard);
    assert_eq!(adults.constraint.as_deref(), Some("adults >= 1 and adults <= 20"), "bounds kept whole");
    assert_eq!(adults.kind, KindDef::Count { min: 1, max: 20 }, "and still the range");
    assert!(item(&f, "workers").constraint_hard);
    assert!(!item(&f, "kids").constraint_hard, "no column value: soft");

    let c = catalog(&[book("f.xlsx", &[("survey", survey), ("settings", &[&["form_id"], &["f"]])])]);
    let limits = Limits::default();
    let err =
        validate(&c, &submission("f", r#"{"adults": 2, "workers": 3}"#, None), &limits).expect_err("hard");
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!((err[0].field.as_str(), err[0].rule), ("answers.workers", Rule::Constraint));
    assert_eq!(err[0].message, "At most the adults");
    assert!(
        validate(&c, &submission("f", r#"{"adults": 2, "workers": 2, "kids": 99}"#, None), &limits).is_ok()
    );
    let err = validate(&c, &submission("f", r#"{"adults": 30}"#, None), &limits).expect_err("out of bounds");
    assert_eq!(err[0].message, "the answer breaks the item's constraint");
    // A missing code is not checked.
    assert!(
        validate(&c, &submission("f", r#"{"adults": 2, "workers": {"missing": "dk"}}"#, None), &limits)
            .is_ok()
    );
}

#[test]
fn rule_fieldwatch_constraint_hard_needs_a_constraint_and_a_yes_or_no() {
    let p = one(&[
        &["type", "name", "label", "constraint", "fieldwatch::constraint_hard"],
        &["integer", "a", "A", "", "yes"],
        &["integer", "b", "B", ". > 1", "sometimes"],
    ])
    .expect_err("problems");
    let at: Vec<(usize, Option<usize>)> = p.iter().map(|p| (p.row, p.column)).collect();
    assert_eq!(at, vec![(2, Some(4)), (3, Some(4))], "{p:?}");
    assert!(p[0].message.contains("needs a `constraint`"));
    assert!(p[1].message.contains("yes or no"));
}

#[test]
fn rule_sentinel_numbers_outside_the_range_are_missing_codes_not_values() {
    let survey: &[&[&str]] = &[
        &["type", "name", "label", "constraint", "fieldwatch::missing_numbers"],
        &["integer", "age", "Age", ". >= 0 and . <= 120", ""],
        &["decimal", "income", "Income", ". >= 0", "-99"],
        &["integer", "n", "N", ". >= 0 and . <= 10", "no"],
        &["text", "t", "T", "", ""],
    ];
    let f = one(survey).expect("valid");
    assert_eq!(item(&f, "age").missing_numbers, vec!["-99", "-999", "999"], "99 is an age");
    assert_eq!(item(&f, "income").missing_numbers, vec!["-99"]);
    assert!(item(&f, "n").missing_numbers.is_empty());
    assert!(item(&f, "t").missing_numbers.is_empty());

    let c = catalog(&[book("f.xlsx", &[("survey", survey), ("settings", &[&["form_id"], &["f"]])])]);
    let study = c.get("demo").expect("study");
    let rec =
        validate(&c, &submission("f", r#"{"age": 999, "income": -99, "n": 99}"#, None), &Limits::default())
            .expect("valid");
    assert_eq!(rec.answers[0], Value::Missing(MissingKind::DontKnow));
    assert_eq!(rec.answers[1], Value::Missing(MissingKind::Refused));
    assert_eq!(rec.answers[2], Value::Int(99), "no sentinels on n: a value, out of range");
    let flags: Vec<&str> =
        crate::quality::check(study, &rec).flags.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(flags, vec!["out_of_range"], "the sentinels are not out of range");
    let rec = validate(&c, &submission("f", r#"{"age": 99}"#, None), &Limits::default()).expect("valid");
    assert_eq!(rec.answers[0], Value::Int(99));
}

#[test]
fn rule_fieldwatch_missing_numbers_must_be_numeric_codes_of_the_map() {
    let p = one(&[
        &["type", "name", "label", "fieldwatch::missing_numbers"],
        &["integer", "a", "A", "-42"],
        &["integer", "b", "B", "dk"],
        &["select_one col", "c", "C", "-99"],
    ])
    .expect_err("problems");
    let at: Vec<(usize, Option<usize>)> = p.iter().map(|p| (p.row, p.column)).collect();
    assert_eq!(at, vec![(2, Some(3)), (3, Some(3)), (4, Some(3))], "{p:?}");
    assert!(p[0].message.contains("not a code"), "{}", p[0].message);
    assert!(p[1].message.contains("not a number"), "{}", p[1].message);
}

const QUOTA_SETTINGS: &[&[&str]] = &[&["form_id", "fieldwatch::dimensions"], &["f", "region:attribute"]];

#[test]
fn rule_a_quotas_sheet_gives_the_study_the_same_quotas_as_yaml() {
    let quotas: &[&[&str]] = &[
        &["quota", "dimensions", "values", "target", "cap"],
        &["region", "region", "west", "10", "12"],
        &["region", "region", "east", "8", ""],
    ];
    let survey: &[&[&str]] = &[&["type", "name", "label"], &["integer", "a", "A"]];
    let wb = |file: &str| {
        book(
            file,
            &[("survey", survey), ("choices", CHOICES), ("settings", QUOTA_SETTINGS), ("quotas", quotas)],
        )
    };
    let def = import(&[wb("f.xlsx")], Some("demo")).expect("imports");
    assert_eq!(def.quotas.len(), 1);
    assert_eq!(def.quotas[0].name, "region");
    assert_eq!(def.quotas[0].dimensions, vec!["region"]);
    assert_eq!(
        def.quotas[0].cells,
        vec![
            QuotaCellDef { values: vec!["west".into()], target: 10, cap: Some(12) },
            QuotaCellDef { values: vec!["east".into()], target: 8, cap: None },
        ]
    );
    let yaml = crate::yaml::to_string(&def).expect("yaml");
    let again = Study::from_yaml(&yaml).expect("the imported YAML loads");
    assert_eq!(again.quotas.len(), 1);
}

#[test]
fn rule_quotas_sheets_must_agree_and_their_cells_are_checked_at_their_row() {
    let survey: &[&[&str]] = &[&["type", "name", "label"], &["integer", "a", "A"]];
    let ok: &[&[&str]] = &[&["quota", "dimensions", "values", "target"], &["region", "region", "west", "10"]];
    let other: &[&[&str]] =
        &[&["quota", "dimensions", "values", "target"], &["region", "region", "west", "11"]];
    let settings2: &[&[&str]] = &[&["form_id"], &["g"]];
    let p = import(
        &[
            book(
                "1.xlsx",
                &[("survey", survey), ("choices", CHOICES), ("settings", QUOTA_SETTINGS), ("quotas", ok)],
            ),
            book("2.xlsx", &[("survey", survey), ("settings", settings2), ("quotas", other)]),
        ],
        Some("demo"),
    )
    .expect_err("differ");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].file.as_str(), p[0].sheet.as_str()), ("2.xlsx", "quotas"));
    assert!(p[0].message.contains("differ from those of 1.xlsx"));

    let bad: &[&[&str]] = &[
        &["quota", "dimensions", "values", "target"],
        &["region", "region", "west", "ten"],
        &["region", "region", "west east", "1"],
        &["region", "region", "north", "5"],
    ];
    let p = import(
        &[book(
            "1.xlsx",
            &[("survey", survey), ("choices", CHOICES), ("settings", QUOTA_SETTINGS), ("quotas", bad)],
        )],
        Some("demo"),
    )
    .expect_err("bad");
    let at: Vec<(usize, Option<usize>)> = p.iter().map(|p| (p.row, p.column)).collect();
    assert_eq!(at, vec![(2, Some(3)), (3, Some(2))], "row problems first: {p:?}");
    // With the row problems fixed, the undeclared value is found after
    // assembly and still placed at its row.
    let late: &[&[&str]] = &[
        &["quota", "dimensions", "values", "target"],
        &["region", "region", "west", "1"],
        &["region", "region", "north", "5"],
    ];
    let p = import(
        &[book(
            "1.xlsx",
            &[("survey", survey), ("choices", CHOICES), ("settings", QUOTA_SETTINGS), ("quotas", late)],
        )],
        Some("demo"),
    )
    .expect_err("undeclared");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].file.as_str(), p[0].sheet.as_str(), p[0].row), ("1.xlsx", "quotas", 3), "{p:?}");
    assert!(p[0].message.contains("`north`"));
}

#[test]
fn rule_problems_found_after_assembly_name_the_workbook_sheet_and_row() {
    let a: &[&[&str]] = &[&["type", "name", "label"], &["note", "hi", "Hi"], &["integer", "q", "Q"]];
    let b: &[&[&str]] = &[
        &["type", "name", "label", "fieldwatch::code"],
        &["text", "other", "O", ""],
        &["select_one col", "r", "R", "q"],
    ];
    let p = import(
        &[
            book("1.xlsx", &[("survey", a), ("settings", &[&["form_id"], &["one"]])]),
            book("2.xlsx", &[("survey", b), ("choices", CHOICES), ("settings", &[&["form_id"], &["two"]])]),
        ],
        Some("demo"),
    )
    .expect_err("codes cannot pool");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].file.as_str(), p[0].sheet.as_str(), p[0].row), ("2.xlsx", "survey", 3), "{p:?}");
    assert!(p[0].message.contains("code `q`"), "{}", p[0].message);
}
