//! XLSForm import: questionnaires written as ODK/KoboToolbox/SurveyCTO
//! workbooks become a fieldwatch instrument (`docs/xlsform.md`).
//!
//! The importer is pure: [`import`] takes the cell grids of one or more
//! workbooks ([`Workbook`]) and returns the [`StudyDef`] they describe, or
//! every problem found, each with its file, sheet, row and column. Several
//! workbooks are the forms of one study and pool by canonical item code
//! (`fieldwatch::code`, default the question `name`). The thin shell in
//! [`read`] turns workbook files into cell grids with calamine and groups
//! the workbooks of a directory by study.
//!
//! Layout: [`sheet`] finds sheets and header columns (aliases,
//! case-insensitive); [`xpath`] parses the XPath subset of `relevant` and
//! `constraint`; [`survey`] turns survey rows into items; [`study`] reads
//! the settings and assembles the study.

mod kinds;
mod quotas;
pub mod read;
mod sheet;
mod study;
mod survey;
mod xpath;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod tests;

use std::fmt;

use super::StudyDef;

pub use kinds::yes_no;
pub use read::{WORKBOOK_EXTENSIONS, is_workbook, load_studies, read_workbook};
pub use study::DEFAULT_MISSING_MAP;

/// Most rows read from one sheet: a sheet with more is refused before its
/// cells are converted (real questionnaires have a few hundred).
pub const MAX_ROWS: usize = 20_000;
/// Most columns read from one sheet.
pub const MAX_COLUMNS: usize = 512;
/// Longest expression (`relevant`, `constraint`) accepted, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 4_096;
/// Deepest nesting of an expression (parentheses, operators, calls); deeper
/// is refused before the parser recurses further.
pub const MAX_EXPRESSION_DEPTH: usize = 64;

/// One cell of a sheet, as the spreadsheet holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value.
    Empty,
    /// A string.
    Text(String),
    /// A number (Excel stores every number as a float).
    Number(f64),
    /// A boolean (`TRUE`/`FALSE` in Excel).
    Bool(bool),
    /// A formula error such as `#DIV/0!`.
    Error(String),
}

/// One sheet: `rows[r][c]` is the cell at 0-based row `r` and column `c`
/// (row 0 is the sheet's row 1, column 0 its column A).
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    /// The sheet's name as written in the workbook.
    pub name: String,
    /// The cells, row by row; rows may be ragged.
    pub rows: Vec<Vec<Cell>>,
}

/// One workbook: its file name (for problems) and its sheets.
#[derive(Debug, Clone, PartialEq)]
pub struct Workbook {
    /// The file the workbook came from, as shown in problems.
    pub file: String,
    /// The sheets in workbook order.
    pub sheets: Vec<Sheet>,
}

/// One problem found in a workbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlsProblem {
    /// The file.
    pub file: String,
    /// The sheet, empty when the problem is about the whole workbook.
    pub sheet: String,
    /// 1-based row, 0 when the problem is about the whole sheet.
    pub row: usize,
    /// 0-based column, if the problem is in one cell.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for XlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if !self.sheet.is_empty() {
            write!(f, ": sheet {}", self.sheet)?;
            if self.row > 0 {
                write!(f, " row {}", self.row)?;
            }
            if let Some(c) = self.column {
                write!(f, " column {}", column_name(c))?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Formats problems one per line.
pub fn format_problems(problems: &[XlsProblem]) -> String {
    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
}

/// The spreadsheet name of a 0-based column: 0 is `A`, 26 is `AA`.
pub fn column_name(mut c: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Imports workbooks as the forms of one study, in the order given (the
/// first form's wording and option order lead in reports). `study` sets the
/// study id; without it the id comes from the `fieldwatch::study` setting,
/// else from the first form's id. Returns every problem found, sorted by
/// file, sheet and row.
pub fn import(workbooks: &[Workbook], study: Option<&str>) -> Result<StudyDef, Vec<XlsProblem>> {
    study::assemble(workbooks, study)
}

/// The study a workbook belongs to when it sits in an instrument directory:
/// its `fieldwatch::study` setting, else its form id (`form_id`, else the
/// file name without extension).
pub fn study_of(workbook: &Workbook) -> String {
    study::study_key(workbook)
}
