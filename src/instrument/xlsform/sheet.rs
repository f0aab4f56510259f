//! Sheets as tables: the header row names the columns (case-insensitive,
//! with the aliases XLSForm allows), every later non-blank row is a record.

use std::collections::BTreeMap;

use super::{Cell, MAX_COLUMNS, MAX_ROWS, Sheet, Workbook, XlsProblem};

/// Collects problems of one workbook.
pub(super) struct Problems<'a> {
    pub file: &'a str,
    pub list: Vec<XlsProblem>,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a str) -> Self {
        Problems { file, list: Vec::new() }
    }
    /// A problem in a cell (`column: None` for a whole row or sheet).
    pub fn at(&mut self, sheet: &str, row: usize, column: Option<usize>, message: impl Into<String>) {
        self.list.push(XlsProblem {
            file: self.file.to_string(),
            sheet: sheet.to_string(),
            row,
            column,
            message: message.into(),
        });
    }
}

/// One value read from a cell, with where it was.
#[derive(Debug, Clone)]
pub(super) struct Value {
    /// 0-based column.
    pub col: usize,
    /// The cell as text (numbers without a trailing `.0`, booleans as
    /// `true`/`false`), trimmed.
    pub text: String,
    /// The cell held a boolean.
    pub boolean: Option<bool>,
}

/// One record of a table.
#[derive(Debug, Clone)]
pub(super) struct Row {
    /// 1-based sheet row.
    pub row: usize,
    /// Values by canonical column key (only non-empty cells).
    pub values: BTreeMap<String, Value>,
}

impl Row {
    /// The text of a column, empty when absent.
    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map_or("", |v| v.text.as_str())
    }
    /// The column index of a key, for problems (the key's header column
    /// when the cell is empty).
    pub fn col(&self, table: &Table, key: &str) -> Option<usize> {
        self.values.get(key).map(|v| v.col).or_else(|| table.columns.get(key).copied())
    }
}

/// A sheet read as a table.
#[derive(Debug, Clone)]
pub(super) struct Table {
    /// The sheet name as written.
    pub sheet: String,
    /// Canonical column key -> 0-based column.
    pub columns: BTreeMap<String, usize>,
    /// The records, blank rows left out.
    pub rows: Vec<Row>,
}

/// Finds a sheet by name, case-insensitively.
pub(super) fn find<'w>(wb: &'w Workbook, name: &str) -> Option<&'w Sheet> {
    wb.sheets.iter().find(|s| s.name.trim().eq_ignore_ascii_case(name))
}

/// The canonical key of a header: lowercase, spaces as `_`, XLSForm's
/// aliases resolved. `label::English (en)` keeps its language part.
pub(super) fn canonical_header(h: &str) -> String {
    let h = h.trim();
    let lower = h.to_ascii_lowercase();
    if let Some((head, rest)) = lower.split_once("::") {
        let head = head.trim().replace(' ', "_");
        let head = match head.as_str() {
            "caption" => "label",
            "bind" | "body" | "control" => return canonical_header(rest),
            other => other,
        };
        // Keep the language as written (case aside) for labels and hints.
        let rest = h.split_once("::").map_or("", |(_, r)| r).trim();
        return format!(
            "{head}::{}",
            if head == "fieldwatch" { rest.to_ascii_lowercase() } else { rest.into() }
        );
    }
    let key = lower.replace(' ', "_");
    let alias = match key.as_str() {
        "caption" => "label",
        "relevance" => "relevant",
        "jr:constraintmsg" | "constraint_msg" => "constraint_message",
        "jr:requiredmsg" => "required_message",
        "calculate" => "calculation",
        "list" | "list_name" | "listname" => "list_name",
        "value" => "name",
        "jr:choice_name" => "name",
        _ => return key,
    };
    alias.to_string()
}

/// Reads a cell as trimmed text.
pub(super) fn cell_text(c: &Cell) -> (String, Option<bool>) {
    match c {
        Cell::Empty => (String::new(), None),
        Cell::Text(s) => (s.trim().to_string(), None),
        Cell::Number(n) => (number_text(*n), None),
        Cell::Bool(b) => (b.to_string(), Some(*b)),
        Cell::Error(e) => (e.clone(), None),
    }
}

/// A number as a cell shows it: whole numbers without a fraction.
pub(super) fn number_text(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

/// Reads a sheet as a table. Problems: too many rows or columns, duplicate
/// headers, formula errors in cells of known columns.
pub(super) fn table(sheet: &Sheet, p: &mut Problems<'_>) -> Table {
    let mut t = Table { sheet: sheet.name.clone(), columns: BTreeMap::new(), rows: Vec::new() };
    if sheet.rows.len() > MAX_ROWS {
        p.at(
            &sheet.name,
            0,
            None,
            format!("the sheet has {} rows, more than the {MAX_ROWS} read", sheet.rows.len()),
        );
        return t;
    }
    let Some(header_at) = sheet.rows.iter().position(|r| r.iter().any(|c| !cell_text(c).0.is_empty())) else {
        return t;
    };
    let header = &sheet.rows[header_at];
    if header.len() > MAX_COLUMNS {
        p.at(&sheet.name, header_at + 1, None, format!("more than {MAX_COLUMNS} columns"));
        return t;
    }
    for (c, cell) in header.iter().enumerate() {
        let (h, _) = cell_text(cell);
        if h.is_empty() {
            continue;
        }
        let key = canonical_header(&h);
        if t.columns.insert(key.clone(), c).is_some() {
            p.at(&sheet.name, header_at + 1, Some(c), format!("column `{h}` appears twice (as `{key}`)"));
        }
    }
    for (r, cells) in sheet.rows.iter().enumerate().skip(header_at + 1) {
        let mut values = BTreeMap::new();
        for (key, &c) in &t.columns {
            let Some(cell) = cells.get(c) else { continue };
            if let Cell::Error(e) = cell {
                p.at(&sheet.name, r + 1, Some(c), format!("the cell holds the formula error `{e}`"));
                continue;
            }
            let (text, boolean) = cell_text(cell);
            if !text.is_empty() {
                values.insert(key.clone(), Value { col: c, text, boolean });
            }
        }
        if !values.is_empty() {
            t.rows.push(Row { row: r + 1, values });
        }
    }
    t
}
