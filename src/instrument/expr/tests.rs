//! Unit tests of the condition language.
use super::*;

fn resolved(src: &str, ids: &[&str]) -> Expr {
    let mut e = Expr::parse(src).expect("parses");
    for r in e.refs_mut() {
        r.index = ids.iter().position(|i| *i == r.id).expect("known id");
    }
    e
}

#[test]
fn comparisons_with_blank_items_are_false_both_ways() {
    let e = resolved("q1 == \"yes\"", &["q1"]);
    let ne = resolved("q1 != \"yes\"", &["q1"]);
    let blank = |_: usize| ExprValue::None;
    assert!(!e.eval(&blank));
    assert!(!ne.eval(&blank));
    assert!(e.eval(&|_| ExprValue::Str("yes")));
}

#[test]
fn a_flipped_comparison_holds_with_its_sides_swapped() {
    for op in [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge] {
        let e = resolved(&format!("q1 {op} 3"), &["q1"]);
        let swapped = resolved(&format!("3 {} q1", op.flip()), &["q1"]);
        for v in [2.0, 3.0, 4.0] {
            let value = |_: usize| ExprValue::Num(v);
            assert_eq!(e.eval(&value), swapped.eval(&value), "q1 {op} 3 with q1 = {v}");
        }
    }
}

#[test]
fn and_or_not_and_parentheses_follow_precedence() {
    let e = resolved("not answered(a) or (b >= 3 and selected(c, \"x\"))", &["a", "b", "c"]);
    let vals = |i: usize| match i {
        0 => ExprValue::Num(1.0),
        1 => ExprValue::Num(4.0),
        _ => ExprValue::Set(vec!["x", "y"]),
    };
    assert!(e.eval(&vals));
    let vals2 = |i: usize| match i {
        0 => ExprValue::Num(1.0),
        1 => ExprValue::Num(2.0),
        _ => ExprValue::Set(vec!["x"]),
    };
    assert!(!e.eval(&vals2));
}

#[test]
fn missing_codes_are_not_answers() {
    let e = resolved("answered(a)", &["a"]);
    let m = resolved("missing(a)", &["a"]);
    assert!(!e.eval(&|_| ExprValue::Missing));
    assert!(m.eval(&|_| ExprValue::Missing));
}

#[test]
fn a_long_flat_or_chain_within_the_term_limit_parses_flat_and_evaluates() {
    let src = vec!["a == 1"; MAX_CONDITION_TERMS / 2].join(" or ");
    let e = resolved(&src, &["a"]);
    assert!(matches!(&e, Expr::Or(t) if t.len() == MAX_CONDITION_TERMS / 2));
    assert!(e.eval(&|_| ExprValue::Num(1.0)));
    assert!(!e.eval(&|_| ExprValue::Num(2.0)));
}

#[test]
fn twenty_thousand_or_terms_are_refused_before_they_are_parsed() {
    let src = vec!["a == 1"; 20_000].join(" or ");
    let e = Expr::parse(&src).expect_err("too long");
    assert!(e.message.contains("longer than"), "{e}");
    assert!(e.to_string().len() < 300, "the error does not echo the whole condition");
    let terms = vec!["a"; MAX_CONDITION_TERMS + 1].join(" or ");
    assert!(terms.len() < MAX_CONDITION_CHARS);
    let e = Expr::parse(&terms).expect_err("too many terms");
    assert!(e.message.contains("more than 256 terms"), "{e}");
}

#[test]
fn nesting_past_the_depth_limit_is_refused_without_recursing_into_it() {
    let ok = format!("{}a{}", "(".repeat(MAX_CONDITION_DEPTH), ")".repeat(MAX_CONDITION_DEPTH));
    assert!(Expr::parse(&ok).is_ok());
    let deep = format!("{}a{}", "(".repeat(MAX_CONDITION_DEPTH + 1), ")".repeat(MAX_CONDITION_DEPTH + 1));
    let e = Expr::parse(&deep).expect_err("too deep");
    assert!(e.message.contains("deeper than 32"), "{e}");
    let nots = format!("{}a", "not ".repeat(1000));
    assert!(Expr::parse(&nots).expect_err("too deep").message.contains("deeper"));
    let parens = "(".repeat(100_000);
    assert!(Expr::parse(&parens).is_err());
}

#[test]
fn syntax_errors_give_a_column() {
    let e = Expr::parse("q1 == ").expect_err("incomplete");
    assert_eq!(e.column, 6);
    assert!(Expr::parse("q1 = 2").is_err());
    assert!(Expr::parse("(q1 > 2").is_err());
    assert!(Expr::parse("answered(\"x\")").is_err());
}

fn num(src: &str, vals: &[f64]) -> bool {
    let ids = ["a", "b", "c"];
    let e = resolved(src, &ids[..vals.len()]);
    let vals = vals.to_vec();
    e.eval(&move |i| ExprValue::Num(vals[i]))
}

#[test]
fn arithmetic_follows_xpath_precedence_and_unary_minus() {
    assert!(num("a + b * c == 7", &[1.0, 2.0, 3.0]));
    assert!(num("(a + b) * c == 9", &[1.0, 2.0, 3.0]));
    assert!(num("a - b - c == -4", &[1.0, 2.0, 3.0]), "left to right");
    assert!(num("a / b / c == 1", &[12.0, 4.0, 3.0]));
    assert!(num("a % b == 1", &[7.0, 3.0]));
    assert!(num("-a % b == -1", &[7.0, 3.0]), "the remainder has the dividend's sign");
    assert!(num("-a * -b == 6", &[2.0, 3.0]));
    assert!(num("a - -1 == 3", &[2.0]));
    assert!(num("a / 0 > 1000000", &[1.0]), "division by zero is infinity, as in XPath");
    assert!(num("a + 1 > b and b * 2 <= 6", &[3.0, 3.0]));
    assert!(matches!(Expr::parse("a + b - c").expect("parses"), Expr::Arith(_, rest) if rest.len() == 2));
}

#[test]
fn arithmetic_on_a_blank_or_missing_item_has_no_value() {
    let e = resolved("a + 1 > 0", &["a"]);
    let ne = resolved("a + 1 != 0", &["a"]);
    for v in [ExprValue::None, ExprValue::Missing] {
        assert!(!e.eval(&|_| v.clone()));
        assert!(!ne.eval(&|_| v.clone()));
    }
}

#[test]
fn if_picks_a_branch_by_its_condition() {
    let e = resolved("if(a > 10, b, 0) >= 5", &["a", "b"]);
    assert!(e.eval(&|i| ExprValue::Num([11.0, 5.0][i])));
    assert!(!e.eval(&|i| ExprValue::Num([9.0, 5.0][i])));
    let cond = resolved("if(a == \"x\", b > 1, true)", &["a", "b"]);
    assert!(cond.eval(&|i| if i == 0 { ExprValue::Str("y") } else { ExprValue::Num(0.0) }));
    assert!(!cond.eval(&|i| if i == 0 { ExprValue::Str("x") } else { ExprValue::Num(0.0) }));
}

#[test]
fn today_is_the_interview_date_in_days_and_has_no_value_without_one() {
    // 2024-03-05T10:00:00Z is day 19787.
    let day = days_of_millis(1_709_632_800_000);
    assert_eq!(day, 19_787);
    assert_eq!(days_of_millis(-1), -1, "before 1970 rounds down");
    let e = resolved("today() - a <= 30", &["a"]);
    let value = |_: usize| ExprValue::Num(19_760.0);
    assert!(e.eval_in(&Env { value: &value, today: Some(day) }));
    assert!(!e.eval_in(&Env { value: &value, today: Some(day + 10) }));
    assert!(!e.eval(&value), "no date: no value, the comparison is false");
    assert!(Expr::parse("today(1)").is_err());
}

#[test]
fn numbers_and_strings_compare_as_in_xpath() {
    let e = |src: &str, v: ExprValue<'static>| resolved(src, &["a"]).eval(&move |_| v.clone());
    assert!(e("a == 3", ExprValue::Str("3")), "a string compared with a number is its number");
    assert!(e("a == 3", ExprValue::Str(" 3.0 ")));
    assert!(e("a > 2", ExprValue::Str("3")));
    assert!(!e("a == 3", ExprValue::Str("x")), "NaN is equal to nothing");
    assert!(e("a != 3", ExprValue::Str("x")), "... and unequal to everything");
    assert!(e("a < \"10\"", ExprValue::Str("9")), "ordering compares numbers, not text");
    assert!(!e("a < \"b\"", ExprValue::Str("a")), "text has no order: NaN");
    assert!(e("a == \"3\"", ExprValue::Num(3.0)));
    assert!(e("(a > 1) == true", ExprValue::Num(3.0)));
    assert!(e("(a > 1) == 1", ExprValue::Num(3.0)), "a number against a boolean is its boolean");
}

#[test]
fn a_multi_select_equals_the_space_joined_picks() {
    let e = |src: &str, picks: Vec<&'static str>| {
        resolved(src, &["a"]).eval(&move |_| ExprValue::Set(picks.clone()))
    };
    assert!(e("a == \"x\"", vec!["x"]));
    assert!(!e("a == \"x\"", vec!["x", "y"]), "`=` is the whole value, not a pick");
    assert!(e("a == \"x y\"", vec!["x", "y"]));
    assert!(e("a != \"x\"", vec!["x", "y"]));
    assert!(e("selected(a, \"x\")", vec!["y", "x"]));
}

#[test]
fn unknown_functions_and_dangling_operators_are_syntax_errors() {
    assert!(Expr::parse("concat(a, b) == \"x\"").expect_err("unknown").message.contains("concat"));
    assert!(Expr::parse("a + == 1").is_err());
    assert!(Expr::parse("if(a, b)").is_err());
    let minus = format!("{}a", "-".repeat(MAX_CONDITION_DEPTH + 1));
    assert!(Expr::parse(&minus).expect_err("too deep").message.contains("deeper"));
    let ifs =
        format!("{}1{}", "if(true, ".repeat(MAX_CONDITION_DEPTH + 1), ", 0)".repeat(MAX_CONDITION_DEPTH + 1));
    assert!(Expr::parse(&ifs).expect_err("too deep").message.contains("deeper"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// `a + b * c - d` with whole numbers means what integer arithmetic says.
        #[test]
        fn sums_and_products_evaluate_like_integer_arithmetic(
            a in -1000i64..1000, b in -1000i64..1000, c in -1000i64..1000, d in 1i64..1000
        ) {
            let expected = a + b * c - a % d;
            let src = format!("a + b * c - a % {d} == {expected}");
            let e = resolved(&src, &["a", "b", "c"]);
            prop_assert!(e.eval(&|i| ExprValue::Num([a, b, c][i] as f64)), "{}", src);
        }

        /// Any text parses or fails, and a parsed condition evaluates, without panicking.
        #[test]
        fn any_condition_text_parses_and_evaluates_without_panic(src in "[a-c0-9 ()+*/%<>=!.,\"-]{0,60}|(if|today|not|and|or|true)[ a-c0-9()+,=-]{0,40}") {
            if let Ok(mut e) = Expr::parse(&src) {
                for r in e.refs_mut() {
                    r.index = 0;
                }
                let _ = e.eval_in(&Env { value: &|_| ExprValue::Num(1.0), today: Some(0) });
            }
        }
    }
}
