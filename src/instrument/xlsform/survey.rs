//! Survey rows into items: types, groups, `or_other`, choices, required,
//! relevance and constraints (`docs/xlsform.md` has the table).

use std::collections::{BTreeMap, HashMap};

use super::MAX_EXPRESSION_CHARS;
use super::sheet::{Problems, Row, Table};
use super::xpath::{self, RefKind, X};
use crate::instrument::model::{Direction, ItemDef, KindDef, MissingKind, OptionDef};

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
/// Types kept as text items (answers stored, never tabulated).
const AS_TEXT: &[&str] =
    &["text", "string", "date", "time", "datetime", "geopoint", "geotrace", "geoshape", "barcode"];

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

/// Whether a `required` cell says yes: an Excel boolean, `yes`, `true`,
/// `true()` or 1.
fn required(row: &Row) -> Result<bool, String> {
    let Some(v) = row.values.get("required") else { return Ok(false) };
    if let Some(b) = v.boolean {
        return Ok(b);
    }
    match v.text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "true()" | "1" | "y" => Ok(true),
        "no" | "false" | "false()" | "0" | "n" | "" => Ok(false),
        other => Err(format!("`required` must be yes or no, not `{other}`")),
    }
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
            return Survey { items: Vec::new(), missing_used };
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
        // condition checked as `constraint_violated`.
        let mut constraint = None;
        if let Some((x, col)) = parse_expr(r, "constraint", p) {
            match xpath::bounds(&x) {
                Ok(b) => {
                    if let Err(e) = apply_bounds(&mut kind, b) {
                        p.at(&sheet, r.row, col, format!("`constraint` `{}`: {e}", r.get("constraint")));
                    }
                }
                Err(_) => constraint = Some((x, col)),
            }
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
        let req = required(r).unwrap_or_else(|e| {
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
                _ => RefKind::Other,
            };
            (pd.item.id.clone(), k)
        })
        .collect();
    let lookup = |n: &str| kinds.get(n).copied();
    let mut items = Vec::new();
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
        items.push(pd.item);
    }
    Survey { items, missing_used }
}

/// Whether a question name is an XML name as XLSForm requires (ASCII
/// letters here; fieldwatch ids are ASCII).
fn is_xml_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '-' | '.'))
}

/// Applies a constraint's bounds to the kind: numeric bounds become the
/// item's range, `count-selected(.) <= n` its most picks.
fn apply_bounds(kind: &mut KindDef, b: xpath::Bounds) -> Result<(), String> {
    match kind {
        KindDef::Count { min, max } => {
            if let Some((v, strict)) = b.min {
                *min = if strict { v.floor() as i64 + 1 } else { v.ceil() as i64 };
            }
            if let Some((v, strict)) = b.max {
                *max = if strict { v.ceil() as i64 - 1 } else { v.floor() as i64 };
            }
        }
        KindDef::Number { min, max } => {
            if let Some((v, _)) = b.min {
                *min = Some(v);
            }
            if let Some((v, _)) = b.max {
                *max = Some(v);
            }
        }
        KindDef::MultiSelect { max_picks, .. } if b.min.is_none() && b.max.is_none() => {
            if let Some(n) = b.max_picks {
                if n < 1.0 || n.fract() != 0.0 {
                    return Err("the most picks must be a whole number of at least 1".into());
                }
                *max_picks = Some(n as u32);
            }
        }
        _ => return Err(format!("bounds do not apply to a {} item", kind.name())),
    }
    if b.max_picks.is_some() && !matches!(kind, KindDef::MultiSelect { .. }) {
        return Err("`count-selected(.)` applies only to select_multiple and rank".into());
    }
    Ok(())
}

/// The kind of a question type, and whether it adds an `or_other` question.
fn kind_of(
    ty: &str,
    r: &Row,
    t: &Table,
    lists: &Lists,
    missing: &BTreeMap<String, MissingKind>,
    missing_used: &mut Vec<String>,
) -> Result<(KindDef, bool), String> {
    let words: Vec<&str> = ty.split(' ').collect();
    let (base, list, or_other) = match words.as_slice() {
        [b] => (*b, None, false),
        [b, l] => (*b, Some(*l), false),
        [b, l, "or_other"] => (*b, Some(*l), true),
        ["select", "one", l] => ("select_one", Some(*l), false),
        ["select", "all", "that", "apply", l] => ("select_multiple", Some(*l), false),
        _ => return Err(format!("type `{ty}` is not an XLSForm type fieldwatch reads")),
    };
    let _ = t;
    let need_list = |list: Option<&str>| -> Result<&Vec<Choice>, String> {
        let l = list.ok_or_else(|| format!("type `{base}` needs a choice list"))?;
        lists.get(l).ok_or_else(|| format!("choice list `{l}` is not on the choices sheet"))
    };
    let options = |choices: &Vec<Choice>, missing_used: &mut Vec<String>| -> Vec<OptionDef> {
        let mut out = Vec::new();
        for c in choices {
            if missing.contains_key(&c.name) {
                if !missing_used.contains(&c.name) {
                    missing_used.push(c.name.clone());
                }
                continue;
            }
            out.push(OptionDef { code: c.name.clone(), label: c.label.clone() });
        }
        if or_other {
            out.push(OptionDef { code: "other".into(), label: "Other".into() });
        }
        out
    };
    let kind = match base {
        "select_one" | "select1" => {
            let choices = need_list(list)?;
            let mut raw: Vec<&str> = choices.iter().map(|c| c.name.as_str()).collect();
            raw.sort_unstable();
            let opts = options(choices, missing_used);
            let scale = r.get("fieldwatch::scale");
            if !scale.is_empty() {
                if or_other {
                    return Err("a scale cannot be `or_other`".into());
                }
                scale_of(&opts, scale, r.get("fieldwatch::box_size"))?
            } else {
                let mut codes: Vec<&str> = opts.iter().map(|o| o.code.as_str()).collect();
                codes.sort_unstable();
                // yes/no/na is a kind of its own (`na` an option, not the
                // missing code); yes/no stays yes/no when missing codes go.
                match (raw.as_slice(), codes.as_slice()) {
                    (["na", "no", "yes"], _) if !or_other => KindDef::YesNoNa,
                    (_, ["no", "yes"]) if !or_other => KindDef::YesNo,
                    _ => KindDef::SingleChoice { options: opts },
                }
            }
        }
        "select_multiple" | "rank" => {
            if base == "rank" && or_other {
                return Err("`rank` cannot be `or_other`".into());
            }
            let choices = need_list(list)?;
            KindDef::MultiSelect {
                options: options(choices, missing_used),
                ranked: base == "rank",
                max_picks: None,
            }
        }
        "select_one_from_file" | "select_multiple_from_file" | "select_one_external" => {
            return Err(format!("type `{base}` is not supported: its choices are in another file"));
        }
        "integer" | "int" if list.is_none() => KindDef::Count { min: i64::MIN, max: i64::MAX },
        "decimal" if list.is_none() => KindDef::Number { min: None, max: None },
        "range" if list.is_none() => range_of(r.get("parameters"))?,
        b if AS_TEXT.contains(&b) && list.is_none() => KindDef::Text,
        "image" | "audio" | "video" | "file" | "background-audio" => {
            return Err(format!("type `{base}` is not supported: fieldwatch takes no files"));
        }
        _ => return Err(format!("type `{ty}` is not an XLSForm type fieldwatch reads")),
    };
    if or_other && !matches!(kind, KindDef::SingleChoice { .. } | KindDef::MultiSelect { .. }) {
        return Err("`or_other` applies only to select_one and select_multiple".into());
    }
    Ok((kind, or_other))
}

/// A select_one with `fieldwatch::scale`: whole-number choice names from
/// min to max, labels where a choice's label is more than its number.
fn scale_of(opts: &[OptionDef], direction: &str, box_size: &str) -> Result<KindDef, String> {
    let direction = match direction.to_ascii_lowercase().as_str() {
        "ascending" | "yes" | "true" => Direction::Ascending,
        "descending" => Direction::Descending,
        other => return Err(format!("`fieldwatch::scale` must be ascending or descending, not `{other}`")),
    };
    let mut points = Vec::new();
    let mut labels = BTreeMap::new();
    for o in opts {
        let p: i64 =
            o.code.parse().map_err(|_| format!("scale choice `{}` is not a whole number", o.code))?;
        points.push(p);
        if !o.label.is_empty() && o.label != o.code {
            labels.insert(p, o.label.clone());
        }
    }
    let (Some(&min), Some(&max)) = (points.iter().min(), points.iter().max()) else {
        return Err("a scale needs choices".into());
    };
    if points.len() as i64 != max - min + 1 {
        return Err(format!("scale choices must be every whole number from {min} to {max}"));
    }
    let box_size = match box_size {
        "" => None,
        b => Some(b.parse().map_err(|_| format!("`fieldwatch::box_size` `{b}` is not a whole number"))?),
    };
    Ok(KindDef::Scale { min, max, labels, direction, box_size })
}

/// A `range` question: `start`, `end` and `step` parameters; whole numbers
/// make a count, else a number.
fn range_of(params: &str) -> Result<KindDef, String> {
    let mut v: BTreeMap<&str, f64> = BTreeMap::new();
    for part in params.split([' ', ';', ',']).filter(|s| !s.is_empty()) {
        let (k, x) =
            part.split_once('=').ok_or_else(|| format!("range parameter `{part}` is not key=value"))?;
        let x: f64 = x.trim().parse().map_err(|_| format!("range parameter `{part}` is not a number"))?;
        if !x.is_finite() {
            return Err(format!("range parameter `{part}` is not a number"));
        }
        v.insert(k.trim(), x);
    }
    let start = v.get("start").copied().unwrap_or(1.0);
    let end = v.get("end").copied().unwrap_or(10.0);
    let step = v.get("step").copied().unwrap_or(1.0);
    let (lo, hi) = if start <= end { (start, end) } else { (end, start) };
    if [lo, hi, step].iter().all(|x| x.fract() == 0.0 && x.abs() < 1e15) {
        Ok(KindDef::Count { min: lo as i64, max: hi as i64 })
    } else {
        Ok(KindDef::Number { min: Some(lo), max: Some(hi) })
    }
}
