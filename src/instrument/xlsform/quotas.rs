//! The `quotas` sheet: the study's quotas (`docs/instruments.md`,
//! "Quotas"), one row per cell.
//!
//! | quota | dimensions | values | target | cap |
//! |---|---|---|---|---|
//! | position | position | investigator | 84 | |
//! | region_sex | region sex | west female | 20 | 25 |
//!
//! Rows with the same `quota` are the cells of one quota, in sheet order,
//! and must name the same `dimensions`; `values` gives one value per
//! dimension, in that order (space-separated). Quotas are study-wide: a
//! workbook of the study without the sheet adds none, and workbooks that
//! have it must agree.

use super::sheet::{self, Problems, Table};
use super::{Workbook, XlsProblem};
use crate::instrument::model::{QuotaCellDef, QuotaDef};

/// The quotas of one workbook's sheet, with the sheet row of each quota's
/// first cell and of every cell (for problems found later).
#[derive(Debug, Clone, Default)]
pub(super) struct SheetQuotas {
    /// The sheet name as written.
    pub sheet: String,
    /// The quotas in sheet order.
    pub quotas: Vec<QuotaDef>,
    /// Per quota (same order), the sheet row of each of its cells.
    pub rows: Vec<Vec<usize>>,
}

/// Reads a workbook's `quotas` sheet; `None` when it has none.
pub(super) fn read(wb: &Workbook, p: &mut Problems<'_>) -> Option<SheetQuotas> {
    let s = sheet::find(wb, "quotas")?;
    let t = sheet::table(s, p);
    let mut out = SheetQuotas { sheet: t.sheet.clone(), ..SheetQuotas::default() };
    for key in ["quota", "dimensions", "values", "target"] {
        if !t.rows.is_empty() && !t.columns.contains_key(key) {
            p.at(&t.sheet, 1, None, format!("the quotas sheet has no `{key}` column"));
            return Some(out);
        }
    }
    for r in &t.rows {
        let name = r.get("quota");
        if name.is_empty() {
            p.at(&t.sheet, r.row, r.col(&t, "quota"), "a quota cell without its `quota` name");
            continue;
        }
        let dims: Vec<String> = r.get("dimensions").split_whitespace().map(str::to_string).collect();
        let values: Vec<String> = r.get("values").split_whitespace().map(str::to_string).collect();
        if values.len() != dims.len() {
            p.at(
                &t.sheet,
                r.row,
                r.col(&t, "values"),
                format!("quota `{name}`: {} values for {} dimensions", values.len(), dims.len()),
            );
            continue;
        }
        let Some(target) = whole(&t, r, "target", p) else { continue };
        let cap = match r.get("cap") {
            "" => None,
            _ => match whole(&t, r, "cap", p) {
                Some(c) => Some(c),
                None => continue,
            },
        };
        let cell = QuotaCellDef { values, target, cap };
        match out.quotas.iter().position(|q| q.name == name) {
            Some(qi) if out.quotas[qi].dimensions != dims => p.at(
                &t.sheet,
                r.row,
                r.col(&t, "dimensions"),
                format!(
                    "quota `{name}` names dimensions `{}` here but `{}` on row {}",
                    dims.join(" "),
                    out.quotas[qi].dimensions.join(" "),
                    out.rows[qi][0]
                ),
            ),
            Some(qi) => {
                out.quotas[qi].cells.push(cell);
                out.rows[qi].push(r.row);
            }
            None => {
                out.quotas.push(QuotaDef { name: name.to_string(), dimensions: dims, cells: vec![cell] });
                out.rows.push(vec![r.row]);
            }
        }
    }
    Some(out)
}

/// A whole-number cell (`target`, `cap`), or a problem at it.
fn whole(t: &Table, r: &sheet::Row, key: &str, p: &mut Problems<'_>) -> Option<u64> {
    let text = r.get(key);
    match text.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            p.at(&t.sheet, r.row, r.col(t, key), format!("`{key}` `{text}` is not a whole number"));
            None
        }
    }
}

/// The study's quotas from its workbooks' sheets: the first sheet's, which
/// every other sheet must equal (a problem at a differing sheet otherwise).
pub(super) fn agree(
    sheets: &[(String, SheetQuotas)],
    all: &mut Vec<XlsProblem>,
) -> Option<(String, SheetQuotas)> {
    let (first_file, first) = sheets.first()?;
    for (file, q) in &sheets[1..] {
        if q.quotas != first.quotas {
            all.push(XlsProblem {
                file: file.clone(),
                sheet: q.sheet.clone(),
                row: 0,
                column: None,
                message: format!("the quotas differ from those of {first_file} (quotas are study-wide)"),
            });
        }
    }
    Some((first_file.clone(), first.clone()))
}
