//! Unit tests of the XLSForm importer: one per rule of `docs/xlsform.md`,
//! each named after the rule, and property tests over generated grids.

use super::*;
use crate::instrument::model::{Direction, FormDef, ItemDef, KindDef, MissingKind};

fn grid(rows: &[&[&str]]) -> Vec<Vec<Cell>> {
    rows.iter()
        .map(|r| {
            r.iter().map(|c| if c.is_empty() { Cell::Empty } else { Cell::Text(c.to_string()) }).collect()
        })
        .collect()
}

fn book(file: &str, survey: &[&[&str]], choices: &[&[&str]], settings: &[&[&str]]) -> Workbook {
    let mut sheets = vec![Sheet { name: "survey".into(), rows: grid(survey) }];
    if !choices.is_empty() {
        sheets.push(Sheet { name: "choices".into(), rows: grid(choices) });
    }
    if !settings.is_empty() {
        sheets.push(Sheet { name: "settings".into(), rows: grid(settings) });
    }
    Workbook { file: file.into(), sheets }
}

const CHOICES: &[&[&str]] = &[
    &["list_name", "name", "label"],
    &["yn", "yes", "Yes"],
    &["yn", "no", "No"],
    &["col", "red", "Red"],
    &["col", "blue", "Blue"],
    &["col", "dk", "Don't know"],
    &["agree", "1", "Disagree"],
    &["agree", "2", "2"],
    &["agree", "3", "Agree"],
];

fn one(survey: &[&[&str]]) -> Result<FormDef, Vec<XlsProblem>> {
    let def = import(&[book("f.xlsx", survey, CHOICES, &[])], Some("demo"))?;
    Ok(def.forms.into_iter().next().expect("one form"))
}

fn item<'a>(f: &'a FormDef, id: &str) -> &'a ItemDef {
    f.items.iter().find(|i| i.id == id).unwrap_or_else(|| panic!("no item {id}"))
}

fn problems(survey: &[&[&str]]) -> Vec<XlsProblem> {
    one(survey).expect_err("problems expected")
}

#[test]
fn rule_headers_are_case_insensitive_with_xlsform_aliases_and_extra_columns_ignored() {
    let f = one(&[
        &["TYPE", "Name", "Label::English (en)", "Relevance", "bind::required", "my notes"],
        &["integer", "age", "Age?", "", "yes", "anything"],
        &["text", "why", "Why?", "${age} > 17", "", ""],
    ])
    .expect("valid");
    assert_eq!(item(&f, "age").text, "Age?");
    assert!(item(&f, "age").required);
    assert_eq!(item(&f, "why").relevant.as_deref(), Some("age > 17"));
}

#[test]
fn rule_required_takes_excel_booleans_yes_true_and_true_call() {
    let mut wb = book(
        "f.xlsx",
        &[
            &["type", "name", "label", "required"],
            &["text", "a", "A", "yes"],
            &["text", "b", "B", "true()"],
            &["text", "c", "C", "TRUE"],
            &["text", "d", "D", "no"],
            &["text", "e", "E", ""],
        ],
        &[],
        &[],
    );
    wb.sheets[0].rows.push(vec![
        Cell::Text("text".into()),
        Cell::Text("f".into()),
        Cell::Text("F".into()),
        Cell::Bool(true),
    ]);
    let def = import(&[wb], Some("demo")).expect("valid");
    let req: Vec<bool> = def.forms[0].items.iter().map(|i| i.required).collect();
    assert_eq!(req, vec![true, true, true, false, false, true]);
    let p = problems(&[&["type", "name", "label", "required"], &["text", "a", "A", "maybe"]]);
    assert_eq!((p[0].row, p[0].column), (2, Some(3)), "{p:?}");
}

#[test]
fn rule_select_one_is_a_single_choice_and_a_yes_no_list_is_yes_no() {
    let f =
        one(&[&["type", "name", "label"], &["select_one col", "c", "Colour"], &["select_one yn", "y", "Y?"]])
            .expect("valid");
    match &item(&f, "c").kind {
        KindDef::SingleChoice { options } => {
            let codes: Vec<&str> = options.iter().map(|o| o.code.as_str()).collect();
            // `dk` is a missing code of the default map, not an option.
            assert_eq!(codes, vec!["red", "blue"]);
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(item(&f, "y").kind, KindDef::YesNo);
}

#[test]
fn rule_select_multiple_and_rank_take_most_picks_from_count_selected() {
    let f = one(&[
        &["type", "name", "label", "constraint"],
        &["select_multiple col", "m", "M", "count-selected(.) <= 1"],
        &["rank col", "r", "R", ""],
    ])
    .expect("valid");
    assert!(matches!(item(&f, "m").kind, KindDef::MultiSelect { ranked: false, max_picks: Some(1), .. }));
    assert!(matches!(item(&f, "r").kind, KindDef::MultiSelect { ranked: true, max_picks: None, .. }));
}

#[test]
fn rule_or_other_adds_the_other_option_and_its_text_question_shown_when_picked() {
    let f = one(&[
        &["type", "name", "label"],
        &["select_one col or_other", "c", "C"],
        &["select_multiple col or_other", "m", "M"],
    ])
    .expect("valid");
    assert!(item(&f, "c").kind.categories().iter().any(|(v, _)| v == "other"));
    assert_eq!(item(&f, "c_other").kind, KindDef::Text);
    assert_eq!(item(&f, "c_other").relevant.as_deref(), Some("c == \"other\""));
    assert_eq!(item(&f, "m_other").relevant.as_deref(), Some("selected(m, \"other\")"));
}

#[test]
fn rule_constraint_bounds_give_integer_and_decimal_items_their_range() {
    let f = one(&[
        &["type", "name", "label", "constraint"],
        &["integer", "n", "N", ". >= 0 and . <= 120"],
        &["integer", "s", "S", ". > 0 and . < 10"],
        &["integer", "free", "F", ""],
        &["decimal", "d", "D", ". <= 2.5"],
    ])
    .expect("valid");
    assert_eq!(item(&f, "n").kind, KindDef::Count { min: 0, max: 120 });
    assert_eq!(item(&f, "s").kind, KindDef::Count { min: 1, max: 9 });
    assert_eq!(item(&f, "free").kind, KindDef::Number { min: None, max: None });
    assert_eq!(item(&f, "d").kind, KindDef::Number { min: None, max: Some(2.5) });
}

#[test]
fn rule_range_parameters_give_the_bounds() {
    let f = one(&[
        &["type", "name", "label", "parameters"],
        &["range", "r", "R", "start=0 end=10 step=1"],
        &["range", "h", "H", "start=0 end=1 step=0.5"],
    ])
    .expect("valid");
    assert_eq!(item(&f, "r").kind, KindDef::Count { min: 0, max: 10 });
    assert_eq!(item(&f, "h").kind, KindDef::Number { min: Some(0.0), max: Some(1.0) });
}

#[test]
fn rule_start_end_and_other_metadata_are_not_items_and_dates_and_geopoints_are_kept_as_text() {
    let f = one(&[
        &["type", "name", "label", "calculation"],
        &["start", "start", "", ""],
        &["end", "end", "", ""],
        &["deviceid", "deviceid", "", ""],
        &["note", "intro", "Hello", ""],
        &["calculate", "calc", "", "1 + 1"],
        &["date", "when", "When?", ""],
        &["geopoint", "where", "Where?", ""],
    ])
    .expect("valid");
    // XLSForm: a calculate needs its calculation.
    let p = problems(&[&["type", "name", "label"], &["calculate", "calc", ""]]);
    assert!(p[0].message.contains("no `calculation`"), "{p:?}");
    let ids: Vec<&str> = f.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec!["when", "where"]);
    assert!(f.items.iter().all(|i| i.kind == KindDef::Text));
}

#[test]
fn rule_groups_are_flattened_and_their_relevance_applies_to_members() {
    let f = one(&[
        &["type", "name", "label", "relevant"],
        &["integer", "age", "Age", ""],
        &["begin group", "adult", "Adults", "${age} >= 18"],
        &["select_one yn", "work", "Work?", ""],
        &["text", "job", "Job", "${work} = 'yes'"],
        &["end group", "", "", ""],
        &["text", "after", "After", ""],
    ])
    .expect("valid");
    assert_eq!(item(&f, "work").relevant.as_deref(), Some("age >= 18"));
    assert_eq!(item(&f, "job").relevant.as_deref(), Some("age >= 18 and work == \"yes\""));
    assert_eq!(item(&f, "after").relevant, None);
}

#[test]
fn rule_repeats_are_refused_naming_the_repeat_and_its_row() {
    let p = problems(&[
        &["type", "name", "label"],
        &["begin repeat", "household", "Members"],
        &["text", "member", "Name"],
        &["end repeat", "", ""],
    ]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].sheet.as_str(), p[0].row, p[0].column), ("survey", 2, Some(0)));
    assert!(p[0].message.contains("repeat `household`"), "{}", p[0].message);
}

#[test]
fn rule_select_one_from_file_and_unknown_types_are_refused() {
    let p = problems(&[
        &["type", "name", "label"],
        &["select_one_from_file towns.csv", "town", "Town"],
        &["frobnicate", "x", "X"],
        &["select_one nolist", "y", "Y"],
    ]);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].message.contains("another file"));
    assert!(p[1].message.contains("`frobnicate`"));
    assert!(p[2].message.contains("`nolist`"));
}

#[test]
fn rule_relevant_xpath_subset_becomes_fieldwatch_conditions() {
    let f = one(&[
        &["type", "name", "label", "relevant"],
        &["select_one col", "c", "C", ""],
        &["select_multiple col", "m", "M", ""],
        &["integer", "n", "N", ""],
        &["text", "a", "A", "selected(${c}, 'red') and not(selected(${m}, 'blue'))"],
        &["text", "b", "B", "${n} != '' or count-selected(${m}) > 0"],
        &["text", "d", "D", "(${n} > 1 or ${n} < -1) and string-length(${a}) = 0"],
    ])
    .expect("valid");
    assert_eq!(item(&f, "a").relevant.as_deref(), Some("c == \"red\" and not selected(m, \"blue\")"));
    assert_eq!(item(&f, "b").relevant.as_deref(), Some("(answered(n) or missing(n)) or answered(m)"));
    assert_eq!(item(&f, "d").relevant.as_deref(), Some("(n > 1 or n < -1) and not answered(a)"));
    // Every translation is a condition fieldwatch parses.
    for it in &f.items {
        if let Some(r) = &it.relevant {
            crate::instrument::Expr::parse(r).unwrap_or_else(|e| panic!("{r}: {e}"));
        }
    }
}

#[test]
fn rule_expressions_outside_the_subset_are_refused_with_sheet_row_and_column() {
    let p = problems(&[
        &["type", "name", "label", "relevant", "constraint"],
        &["integer", "n", "N", "", ""],
        &["text", "a", "A", "concat(${n}, 'x') = '1x'", ""],
        &["text", "b", "B", "${a} = 'x'", ""],
        &["text", "c", "C", "${nope} = 1", ""],
        &["integer", "d", "D", "", "regex(., '[0-9]')"],
        &["text", "e", "E", "${n} >", ""],
    ]);
    let at: Vec<(usize, Option<usize>)> = p.iter().map(|p| (p.row, p.column)).collect();
    assert_eq!(at, vec![(3, Some(3)), (4, Some(3)), (5, Some(3)), (6, Some(4)), (7, Some(3))], "{p:?}");
    assert!(p[0].message.contains("`concat()`"), "{}", p[0].message);
    assert!(p[1].message.contains("keeps no value"), "{}", p[1].message);
    assert!(p[2].message.contains("`${nope}`"));
    assert_eq!(
        p[0].to_string().split(": ").take(2).collect::<Vec<_>>(),
        vec!["f.xlsx", "sheet survey row 3 column D"]
    );
}

#[test]
fn rule_a_constraint_beyond_bounds_becomes_a_constraint_violated_condition_with_its_message() {
    let f = one(&[
        &["type", "name", "label", "constraint", "constraint_message"],
        &["integer", "adults", "Adults", ". >= 0 and . <= 20", ""],
        &["integer", "workers", "Workers", ". <= ${adults}", "No more workers than adults"],
    ])
    .expect("valid");
    assert_eq!(item(&f, "adults").constraint, None, "bounds only: the item's range");
    assert_eq!(item(&f, "workers").constraint.as_deref(), Some("workers <= adults"));
    assert_eq!(item(&f, "workers").constraint_message.as_deref(), Some("No more workers than adults"));
}

#[test]
fn rule_fieldwatch_scale_column_makes_a_scale_with_its_direction() {
    let f = one(&[
        &["type", "name", "label", "fieldwatch::scale", "fieldwatch::box_size"],
        &["select_one agree", "q", "Q", "descending", "1"],
    ])
    .expect("valid");
    match &item(&f, "q").kind {
        KindDef::Scale { min: 1, max: 3, labels, direction: Direction::Descending, box_size: Some(1) } => {
            // A label that is only the point's number leaves the point unlabelled.
            assert_eq!(labels.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        }
        k => panic!("{k:?}"),
    }
    let p = problems(&[
        &["type", "name", "label", "fieldwatch::scale"],
        &["select_one col", "q", "Q", "ascending"],
    ]);
    assert!(p[0].message.contains("not a whole number"), "{p:?}");
}

#[test]
fn rule_the_default_missing_map_turns_dont_know_and_refused_choices_into_missing_codes() {
    let def = import(
        &[book("f.xlsx", &[&["type", "name", "label"], &["select_one col", "c", "C"]], CHOICES, &[])],
        None,
    )
    .expect("valid");
    let codes: Vec<(&str, MissingKind)> =
        def.missing_codes.iter().map(|m| (m.code.as_str(), m.kind)).collect();
    let expected: Vec<(&str, MissingKind)> = DEFAULT_MISSING_MAP.to_vec();
    assert_eq!(codes, expected);
    // Without fieldwatch::study or form_id the study is named after the file.
    assert_eq!(def.study, "f");
}

#[test]
fn rule_the_fieldwatch_missing_setting_overrides_the_default_map() {
    let def = import(
        &[book(
            "f.xlsx",
            &[&["type", "name", "label"], &["select_one col", "c", "C"]],
            CHOICES,
            &[&["form_id", "fieldwatch::missing"], &["f", "dk=dont_know x9=refused"]],
        )],
        None,
    )
    .expect("valid");
    let codes: Vec<&str> = def.missing_codes.iter().map(|m| m.code.as_str()).collect();
    assert_eq!(codes, vec!["dk", "x9"]);
    let p = import(
        &[book(
            "f.xlsx",
            &[&["type", "name", "label"], &["text", "t", "T"]],
            &[],
            &[&["fieldwatch::missing"], &["dk=maybe"]],
        )],
        None,
    )
    .expect_err("bad kind");
    assert_eq!((p[0].sheet.as_str(), p[0].row, p[0].column), ("settings", 2, Some(0)), "{p:?}");
}

#[test]
fn rule_several_workbooks_are_the_forms_of_one_study_pooled_by_code_with_dimensions_and_segments() {
    let settings = |id: &'static str, seg: &'static str| -> Vec<Vec<&'static str>> {
        vec![vec!["form_id", "fieldwatch::dimensions", "fieldwatch::segments"], vec![id, "role:form", seg]]
    };
    let choices: &[&[&str]] = &[
        &["list_name", "name", "label"],
        &["yn", "yes", "Yes"],
        &["yn", "no", "No"],
        &["role", "a", "A"],
        &["role", "b", "B"],
    ];
    let sa = settings("fa", "role=a");
    let sb = settings("fb", "role=b");
    let sa: Vec<&[&str]> = sa.iter().map(|r| r.as_slice()).collect();
    let sb: Vec<&[&str]> = sb.iter().map(|r| r.as_slice()).collect();
    let a = book(
        "a.xlsx",
        &[&["type", "name", "label", "fieldwatch::code"], &["select_one yn", "q1", "Q", "tf"]],
        choices,
        &sa,
    );
    let b = book(
        "b.xlsx",
        &[&["type", "name", "label", "fieldwatch::code"], &["select_one yn", "q7", "Q", "tf"]],
        choices,
        &sb,
    );
    let def = import(&[a, b], Some("two")).expect("valid");
    let study = crate::instrument::Study::from_def(def).expect("compiles");
    assert_eq!(study.codes.len(), 1);
    assert_eq!(study.forms.len(), 2);
    assert_eq!(study.dims[0].values, vec!["a", "b"]);
    assert_eq!(study.forms[1].fixed_segments, vec![(0, 1)]);
}

#[test]
fn rule_every_problem_of_every_workbook_is_reported_at_once() {
    let a = book(
        "a.xlsx",
        &[
            &["type", "name", "label", "required"],
            &["text", "x", "X", "sometimes"],
            &["text", "x", "X again", ""],
            &["begin group", "g", "", ""],
        ],
        &[],
        &[&["form_id"], &["Bad Id"]],
    );
    let b = book("b.xlsx", &[&["type", "label"], &["text", "no name column"]], &[], &[]);
    let p = import(&[a, b], Some("s")).expect_err("broken");
    let files: Vec<&str> = p.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(files, vec!["a.xlsx", "a.xlsx", "a.xlsx", "a.xlsx", "b.xlsx"], "{p:#?}");
}

#[test]
fn rule_relevance_cycles_and_pooling_conflicts_are_reported_by_the_study_lint() {
    let p = problems(&[
        &["type", "name", "label", "relevant"],
        &["integer", "a", "A", "${b} > 1"],
        &["integer", "b", "B", "${a} > 1"],
    ]);
    assert!(p.iter().any(|p| p.message.contains("cycle")), "{p:?}");
}

#[test]
fn a_workbook_without_a_survey_sheet_or_with_empty_sheets_is_a_problem_not_a_panic() {
    let empty =
        Workbook { file: "e.xlsx".into(), sheets: vec![Sheet { name: "Survey".into(), rows: vec![] }] };
    assert!(import(&[empty], None).is_err());
    let none = Workbook { file: "n.xlsx".into(), sheets: vec![] };
    let p = import(&[none], None).expect_err("no survey");
    assert!(p[0].message.contains("no `survey` sheet"));
    assert!(import(&[], None).is_err());
}

#[test]
fn column_names_follow_spreadsheet_letters() {
    assert_eq!(column_name(0), "A");
    assert_eq!(column_name(25), "Z");
    assert_eq!(column_name(26), "AA");
    assert_eq!(column_name(701), "ZZ");
    assert_eq!(column_name(702), "AAA");
}

#[test]
fn deeply_nested_expressions_are_refused_before_recursing() {
    let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let p = problems(&[&["type", "name", "label", "relevant"], &["text", "a", "A", &deep]]);
    assert!(p[0].message.contains("longer than") || p[0].message.contains("nested"), "{p:?}");
    let deep = format!("{}1 = 1{}", "not(".repeat(100), ")".repeat(100));
    let p = problems(&[&["type", "name", "label", "relevant"], &["text", "a", "A", &deep]]);
    assert!(p[0].message.contains("nested"), "{p:?}");
}
