//! Property tests: no workbook, however broken, makes the importer panic.

use proptest::prelude::*;

use super::*;

/// Cell contents drawn from what XLSForm sheets hold, plus noise.
fn cell() -> impl Strategy<Value = Cell> {
    let words = prop::sample::select(vec![
        "type",
        "name",
        "label",
        "required",
        "relevant",
        "constraint",
        "list_name",
        "choices",
        "survey",
        "select_one l",
        "select_multiple l",
        "rank l",
        "integer",
        "decimal",
        "text",
        "begin group",
        "end group",
        "begin repeat",
        "end repeat",
        "range",
        "start",
        "end",
        "note",
        "yes",
        "true()",
        "${a}",
        "${b} > 1",
        ". >= 0 and . <= 5",
        "count-selected(.) <= 2",
        "selected(${a}, 'x')",
        "not(",
        ")",
        "a",
        "b",
        "l",
        "x",
        "1",
        "dk",
        "fieldwatch::scale",
        "fieldwatch::code",
        "ascending",
        "label::Fr (fr)",
        "form_id",
        "fieldwatch::missing",
        "dk=dont_know",
        "or_other",
        "${a} + ${b} * 2 > 1",
        "if(${a} > 1, ${b}, 0) = 2",
        "today() >= date('2024-01-01')",
        "${a} mod 2 = -1",
        "fieldwatch::constraint_hard",
        "fieldwatch::missing_numbers",
        "-99",
        "quota",
        "dimensions",
        "values",
        "target",
        "cap",
        "fieldwatch::dimensions",
        "a:attribute",
    ]);
    prop_oneof![
        4 => words.prop_map(|w| Cell::Text(w.to_string())),
        2 => Just(Cell::Empty),
        1 => any::<f64>().prop_map(Cell::Number),
        1 => any::<bool>().prop_map(Cell::Bool),
        1 => ".{0,12}".prop_map(Cell::Text),
        1 => Just(Cell::Error("#DIV/0!".into())),
    ]
}

fn sheet() -> impl Strategy<Value = Sheet> {
    (
        prop::sample::select(vec!["survey", "choices", "settings", "Survey", "quotas", "other"]),
        prop::collection::vec(prop::collection::vec(cell(), 0..8), 0..12),
    )
        .prop_map(|(name, rows)| Sheet { name: name.into(), rows })
}

fn workbook() -> impl Strategy<Value = Workbook> {
    prop::collection::vec(sheet(), 0..4).prop_map(|sheets| Workbook { file: "fuzz.xlsx".into(), sheets })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_generated_workbook_makes_the_importer_panic(books in prop::collection::vec(workbook(), 0..3)) {
        match import(&books, None) {
            Ok(def) => prop_assert!(crate::instrument::Study::from_def(def).is_ok()),
            Err(p) => prop_assert!(!p.is_empty()),
        }
    }

    #[test]
    fn no_expression_makes_the_parser_panic(src in ".{0,64}") {
        if let Ok(x) = super::xpath::parse(&src) {
            let _ = super::xpath::to_condition(&x, "a", &|_| None);
            let _ = super::xpath::bounds(&x);
        }
    }
}
