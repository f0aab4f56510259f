//! The item kind of a survey row: its type and choice list, a scale's
//! points, a range's parameters, a constraint's bounds, and the yes/no
//! cells (`required`, `fieldwatch::constraint_hard`).

use std::collections::BTreeMap;

use super::sheet::{Row, Table};
use super::survey::{Choice, Lists};
use super::xpath;
use crate::instrument::model::{Direction, KindDef, MissingKind, OptionDef};

/// Types kept as text items (answers stored, never tabulated).
const AS_TEXT: &[&str] =
    &["text", "string", "date", "time", "datetime", "geopoint", "geotrace", "geoshape", "barcode"];

/// An XLSForm yes/no cell as text: `yes`/`no`, `true`/`false`,
/// `true()`/`false()`, `1`/`0`, `y`/`n` in any case (empty is no);
/// `None` for anything else. The one reader of such cells: `required`,
/// `fieldwatch::constraint_hard` and the front-ends' own booleans.
pub fn yes_no(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "true()" | "1" | "y" => Some(true),
        "no" | "false" | "false()" | "0" | "n" | "" => Some(false),
        _ => None,
    }
}

/// A yes/no column of a row: an Excel boolean or [`yes_no`] text.
pub(super) fn flag(row: &Row, key: &str) -> Result<bool, String> {
    let Some(v) = row.values.get(key) else { return Ok(false) };
    if let Some(b) = v.boolean {
        return Ok(b);
    }
    yes_no(&v.text).ok_or_else(|| format!("`{key}` must be yes or no, not `{}`", v.text))
}

/// Whether a question name is an XML name as XLSForm requires (ASCII
/// letters here; fieldwatch ids are ASCII).
pub(super) fn is_xml_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '-' | '.'))
}

/// Applies a constraint's bounds to the kind: numeric bounds become the
/// item's range, `count-selected(.) <= n` its most picks.
pub(super) fn apply_bounds(kind: &mut KindDef, b: xpath::Bounds) -> Result<(), String> {
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
pub(super) fn kind_of(
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

/// A count or number item's `missing_numbers`: the numeric codes of the
/// study's missing map that its `fieldwatch::missing_numbers` cell lists
/// (space-separated), none for `no`, and by default every numeric code
/// outside the item's range (a number the item accepts as a value, such as
/// 99 for an age up to 120, stays a value).
pub(super) fn missing_numbers(
    kind: &KindDef,
    cell: &str,
    missing: &BTreeMap<String, MissingKind>,
) -> Result<Vec<String>, String> {
    let (lo, hi) = match kind {
        KindDef::Count { min, max } => (Some(*min as f64), Some(*max as f64)),
        KindDef::Number { min, max } => (*min, *max),
        _ if cell.is_empty() => return Ok(Vec::new()),
        _ => {
            return Err(format!(
                "`fieldwatch::missing_numbers` applies to integer and decimal questions, not a {} item",
                kind.name()
            ));
        }
    };
    let numeric = |c: &str| c.trim().parse::<f64>().ok().filter(|n| n.is_finite());
    let cell = match yes_no(cell) {
        Some(false) if !cell.is_empty() => return Ok(Vec::new()),
        Some(true) => "",
        _ => cell,
    };
    if cell.is_empty() {
        let outside =
            |n: f64| lo.is_some_and(|l| n < l) || hi.is_some_and(|h| n > h) || (lo.is_none() && hi.is_none());
        return Ok(missing.keys().filter(|c| numeric(c).is_some_and(outside)).cloned().collect());
    }
    let mut out = Vec::new();
    for c in cell.split([' ', ',']).filter(|c| !c.is_empty()) {
        if !missing.contains_key(c) {
            return Err(format!(
                "`fieldwatch::missing_numbers`: `{c}` is not a code of the study's missing map"
            ));
        }
        if numeric(c).is_none() {
            return Err(format!("`fieldwatch::missing_numbers`: `{c}` is not a number"));
        }
        out.push(c.to_string());
    }
    Ok(out)
}
