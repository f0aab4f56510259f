//! Survey rows into items: types, groups, `or_other`, choices, required,
//! relevance and constraints (`docs/xlsform.md` has the table).

use std::collections::{BTreeMap, HashMap};

use super::MAX_EXPRESSION_CHARS;
use super::kinds::{self, apply_bounds, is_xml_name, kind_of};
use super::sheet::{Problems, Row, Table};
use super::xpath::{self, RefKind, X};
use crate::instrument::model::{ItemDef, KindDef, MissingKind};

/// One choice of a list.
#[derive(Debug, Clone)]
pub(super) struct Choice {
    pub name: String,
    pub label: String,
}

/// The choices sheet: lists by name, in sheet order.
pub(super) type Lists = BTreeMap<String, Vec<Choice>>;

/// Types that carry no answer fieldwatch keeps: metadata and display rows.
const IGNORED: &[&str] = &[
    "start",
    "end",
    "today",
    "deviceid",
    "username",
    "simserial",
    "subscriberid",
    "phonenumber",
    "email",
    "audit",
    "note",
    "calculate",
    "hidden",
    "start-geopoint",
    "acknowledge",
];
/// The language the importer reads labels in.
pub(super) struct Labels {
    pub language: String,
}

impl Labels {
    /// A row's label: `label`, else `label::<default language>`, else the
    /// first `label::...` column.
    pub fn of(&self, row: &Row) -> String {
        let plain = row.get("label");
        if !plain.is_empty() {
            return plain.to_string();
        }
        if !self.language.is_empty()
            && let Some(v) = row.values.get(&format!("label::{}", self.language))
        {
            return v.text.clone();
        }
        row.values
            .iter()
            .find(|(k, _)| k.starts_with("label::"))
            .map_or(String::new(), |(_, v)| v.text.clone())
    }

    /// A row's constraint message, chosen like its label.
    pub fn message(&self, row: &Row) -> String {
        let plain = row.get("constraint_message");
        if !plain.is_empty() {
            return plain.to_string();
        }
        if let Some(v) = row.values.get(&format!("constraint_message::{}", self.language)) {
            return v.text.clone();
        }
        row.values
            .iter()
            .find(|(k, _)| k.starts_with("constraint_message::"))
            .map_or(String::new(), |(_, v)| v.text.clone())
    }
}

/// Reads the choices sheet.
pub(super) fn lists(t: &Table, labels: &Labels, p: &mut Problems<'_>) -> Lists {
    let mut out: Lists = BTreeMap::new();
    for key in ["list_name", "name"] {
        if !t.rows.is_empty() && !t.columns.contains_key(key) {
            p.at(&t.sheet, 1, None, format!("the choices sheet has no `{key}` column"));
            return out;
        }
    }
    for r in &t.rows {
        let (list, name) = (r.get("list_name"), r.get("name"));
        if list.is_empty() || name.is_empty() {
            let key = if list.is_empty() { "list_name" } else { "name" };
            p.at(&t.sheet, r.row, r.col(t, key), format!("a choice without `{key}`"));
            continue;
        }
        let choices = out.entry(list.to_string()).or_default();
        if choices.iter().any(|c| c.name == name) {
            p.at(&t.sheet, r.row, r.col(t, "name"), format!("list `{list}` has choice `{name}` twice"));
            continue;
        }
        choices.push(Choice { name: name.to_string(), label: labels.of(r) });
    }
    out
}

/// What the survey sheet yields for one form.
pub(super) struct Survey {
    pub items: Vec<ItemDef>,
    /// The sheet row of each item (an `or_other` text item: its select's row).
    pub rows: Vec<usize>,
    /// Missing codes the form's choice lists use, in first-use order.
    pub missing_used: Vec<String>,
}

/// A parsed expression with the column it came from.
type Located = (X, Option<usize>);

/// A parsed survey row that becomes an item, before relevance is translated.
struct Pending {
    row: usize,
    item: ItemDef,
    /// Own relevance plus the enclosing groups', as parsed XPath with its column.
    relevant: Vec<(X, Option<usize>)>,
    /// For an `or_other` text item: the select it belongs to.
    other_of: Option<String>,
    /// A constraint that is more than bounds, with its column.
    constraint: Option<(X, Option<usize>)>,
}

/// Reads the survey sheet of one form.
pub(super) fn read(
    t: &Table,
    lists: &Lists,
    labels: &Labels,
    missing: &BTreeMap<String, MissingKind>,
    p: &mut Problems<'_>,
) -> Survey {
    let sheet = t.sheet.clone();
    let mut pending: Vec<Pending> = Vec::new();
    let mut missing_used: Vec<String> = Vec::new();
    // Open groups: name, row, parsed relevance.
    let mut groups: Vec<(String, usize, Option<Located>)> = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for key in ["type", "name"] {
        if !t.rows.is_empty() && !t.columns.contains_key(key) {
            p.at(&sheet, 1, None, format!("the survey sheet has no `{key}` column"));
            return Survey { items: Vec::new(), rows: Vec::new(), missing_used };
        }
    }
    let parse_expr = |r: &Row, key: &str, p: &mut Problems<'_>| -> Option<(X, Option<usize>)> {
        let src = r.get(key);
        if src.is_empty() {
            return None;
        }
        let col = r.col(t, key);
        if src.chars().count() > MAX_EXPRESSION_CHARS {
            p.at(&sheet, r.row, col, format!("`{key}` is longer than {MAX_EXPRESSION_CHARS} characters"));
            return None;
        }
        match xpath::parse(src) {
            Ok(x) => Some((x, col)),
            Err(e) => {
                p.at(&sheet, r.row, col, format!("`{key}` `{src}`: {e}"));
                None
            }
        }
    };
    for r in &t.rows {
        let ty = r.get("type").split_whitespace().collect::<Vec<_>>().join(" ");
        let ty_l = ty.to_ascii_lowercase();
        let name = r.get("name").to_string();
        let type_col = r.col(t, "type");
        match ty_l.as_str() {
            "" => {
                p.at(&sheet, r.row, type_col, "a row without `type`");
                continue;
            }
            "begin group" | "begin_group" => {
                let rel = parse_expr(r, "relevant", p);
                groups.push((name, r.row, rel));
                continue;
            }
            "end group" | "end_group" => {
                if groups.pop().is_none() {
                    p.at(&sheet, r.row, type_col, "`end group` without a `begin group`");
                }
                continue;
            }
            "begin repeat" | "begin_repeat" => {
                p.at(
                    &sheet,
                    r.row,
                    type_col,
                    format!(
                        "repeat `{name}` is not supported: fieldwatch has no rosters (see docs/xlsform.md)"
                    ),
                );
                groups.push((name, r.row, None));
                continue;
            }
            "end repeat" | "end_repeat" => {
                groups.pop();
                continue;
            }
            _ => {}
        }
        let word = ty_l.split(' ').next().unwrap_or("");
        if IGNORED.contains(&word) && !ty_l.contains(' ') {
            if word == "calculate" && r.get("calculation").is_empty() {
                p.at(
                    &sheet,
                    r.row,
                    r.col(t, "calculation"),
                    format!("calculate `{name}` has no `calculation`"),
                );
            }
            continue;
        }
        if name.is_empty() {
            p.at(&sheet, r.row, r.col(t, "name"), format!("a `{ty}` question without `name`"));
            continue;
        }
        if !is_xml_name(&name) {
            p.at(
                &sheet,
                r.row,
                r.col(t, "name"),
                format!("name `{name}` must start with a letter or `_` and hold only letters, digits, `_`, `-` and `.`"),
            );
            continue;
        }
        if let Some(first) = names.insert(name.clone(), r.row) {
            p.at(&sheet, r.row, r.col(t, "name"), format!("name `{name}` is already used on row {first}"));
            continue;
        }
        let kind = match kind_of(&ty_l, r, t, lists, missing, &mut missing_used) {
            Ok(k) => k,
            Err(e) => {
                p.at(&sheet, r.row, type_col, e);
                continue;
            }
        };
        let (kind, or_other) = kind;
        let mut kind = kind;
        // Bounds on `.` become the item's range; anything else is a
        // condition checked as `constraint_violated`. A hard constraint is
        // kept whole as the condition validation enforces.
        let hard = kinds::flag(r, "fieldwatch::constraint_hard").unwrap_or_else(|e| {
            p.at(&sheet, r.row, r.col(t, "fieldwatch::constraint_hard"), e);
            false
        });
        let mut constraint = None;
        if let Some((x, col)) = parse_expr(r, "constraint", p) {
            match xpath::bounds(&x) {
                Ok(b) => {
                    if let Err(e) = apply_bounds(&mut kind, b) {
                        p.at(&sheet, r.row, col, format!("`constraint` `{}`: {e}", r.get("constraint")));
                    }
                    if hard {
                        constraint = Some((x, col));
                    }
                }
                Err(_) => constraint = Some((x, col)),
            }
        }
        if hard && constraint.is_none() {
            p.at(
                &sheet,
                r.row,
                r.col(t, "fieldwatch::constraint_hard"),
                "`fieldwatch::constraint_hard` needs a `constraint`",
            );
        }
        // An integer without an upper bound is a number (a count needs one);
        // with one, its lower bound defaults to 0 as a count's does.
        if let KindDef::Count { min, max } = &mut kind {
            if *max == i64::MAX {
                kind = KindDef::Number { min: (*min != i64::MIN).then_some(*min as f64), max: None };
            } else if *min == i64::MIN {
                *min = 0;
            }
        }
        let missing_numbers = kinds::missing_numbers(&kind, r.get("fieldwatch::missing_numbers"), missing)
            .unwrap_or_else(|e| {
                p.at(&sheet, r.row, r.col(t, "fieldwatch::missing_numbers"), e);
                Vec::new()
            });
        let req = kinds::flag(r, "required").unwrap_or_else(|e| {
            p.at(&sheet, r.row, r.col(t, "required"), e);
            false
        });
        let code = match r.get("fieldwatch::code") {
            "" => name.clone(),
            c => c.to_string(),
        };
        let mut relevant: Vec<(X, Option<usize>)> = groups.iter().filter_map(|g| g.2.clone()).collect();
        relevant.extend(parse_expr(r, "relevant", p));
        let text = labels.of(r);
        let message = labels.message(r);
        pending.push(Pending {
            row: r.row,
            item: ItemDef {
                id: name.clone(),
                code: code.clone(),
                text,
                kind,
                required: req,
                relevant: None,
                constraint: None,
                constraint_message: (constraint.is_some() && !message.is_empty()).then_some(message),
                constraint_hard: hard && constraint.is_some(),
                missing_numbers,
            },
            relevant,
            other_of: None,
            constraint,
        });
        if or_other {
            let other = format!("{name}_other");
            names.insert(other.clone(), r.row);
            pending.push(Pending {
                row: r.row,
                item: ItemDef {
                    id: other.clone(),
                    code: format!("{code}_other"),
                    text: "Specify other.".into(),
                    kind: KindDef::Text,
                    required: false,
                    relevant: None,
                    constraint: None,
                    constraint_message: None,
                    constraint_hard: false,
                    missing_numbers: Vec::new(),
                },
                relevant: Vec::new(),
                other_of: Some(name.clone()),
                constraint: None,
            });
        }
    }
    for (name, row, _) in &groups {
        p.at(&sheet, *row, None, format!("group `{name}` is never closed with `end group`"));
    }
    // Relevance, now that every question's kind is known.
    let kinds: HashMap<String, RefKind> = pending
        .iter()
        .map(|pd| {
            let k = match &pd.item.kind {
                KindDef::MultiSelect { .. } => RefKind::Multi,
                KindDef::SingleChoice { .. } | KindDef::YesNo | KindDef::YesNoNa => RefKind::Single,
                KindDef::Scale { .. } => RefKind::Scale,
                KindDef::Text => RefKind::Text,
                _ => RefKind::Other,
            };
            (pd.item.id.clone(), k)
        })
        .collect();
    let lookup = |n: &str| kinds.get(n).copied();
    let mut items = Vec::new();
    let mut rows = Vec::new();
    for mut pd in pending {
        let mut parts = Vec::new();
        if let Some(of) = &pd.other_of {
            parts.push(match kinds.get(of) {
                Some(RefKind::Multi) => format!("selected({of}, \"other\")"),
                _ => format!("{of} == \"other\""),
            });
        }
        for (x, col) in &pd.relevant {
            let unknown: Vec<String> =
                xpath::refs(x).into_iter().filter(|n| !kinds.contains_key(n)).collect();
            if !unknown.is_empty() {
                p.at(
                    &sheet,
                    pd.row,
                    *col,
                    format!(
                        "`relevant` refers to `${{{}}}`, which is not a question of this form",
                        unknown[0]
                    ),
                );
                continue;
            }
            match xpath::to_condition(x, &pd.item.id, &lookup) {
                Ok(c) if matches!(x, X::Or(..)) && (pd.relevant.len() > 1 || pd.other_of.is_some()) => {
                    parts.push(format!("({c})"))
                }
                Ok(c) => parts.push(c),
                Err(e) => p.at(&sheet, pd.row, *col, format!("`relevant`: {e}")),
            }
        }
        if !parts.is_empty() {
            pd.item.relevant = Some(parts.join(" and "));
        }
        if let Some((x, col)) = &pd.constraint {
            let unknown: Vec<String> =
                xpath::refs(x).into_iter().filter(|n| !kinds.contains_key(n)).collect();
            if let Some(u) = unknown.first() {
                p.at(
                    &sheet,
                    pd.row,
                    *col,
                    format!("`constraint` refers to `${{{u}}}`, which is not a question of this form"),
                );
            } else {
                match xpath::to_condition(x, &pd.item.id, &lookup) {
                    Ok(c) => pd.item.constraint = Some(c),
                    Err(e) => p.at(&sheet, pd.row, *col, format!("`constraint`: {e}")),
                }
            }
        }
        rows.push(pd.row);
        items.push(pd.item);
    }
    Survey { items, rows, missing_used }
}
