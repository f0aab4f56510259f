//! The I/O shell: workbook files into cell grids (calamine), and the
//! workbooks of an instrument directory grouped into studies.

use std::path::{Path, PathBuf};

use calamine::{Data, Reader, open_workbook_auto};

use super::{Cell, MAX_COLUMNS, MAX_ROWS, Sheet, Workbook, XlsProblem};
use crate::instrument::{Study, StudyDef};

/// File extensions read as XLSForm workbooks.
pub const WORKBOOK_EXTENSIONS: &[&str] = &["xlsx", "xlsm", "xls", "xlsb", "ods"];

/// Whether a path names a workbook (by extension, case-insensitive).
pub fn is_workbook(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| WORKBOOK_EXTENSIONS.iter().any(|w| e.eq_ignore_ascii_case(w)))
}

fn whole_file(path: &Path, message: String) -> XlsProblem {
    XlsProblem { file: path.display().to_string(), sheet: String::new(), row: 0, column: None, message }
}

/// Reads a workbook's sheets as cell grids. Sheets larger than
/// [`MAX_ROWS`] x [`MAX_COLUMNS`] are refused before their cells are copied.
pub fn read_workbook(path: &Path) -> Result<Workbook, XlsProblem> {
    let mut book =
        open_workbook_auto(path).map_err(|e| whole_file(path, format!("cannot read the workbook: {e}")))?;
    let mut sheets = Vec::new();
    for name in book.sheet_names() {
        let range = book
            .worksheet_range(&name)
            .map_err(|e| whole_file(path, format!("cannot read sheet `{name}`: {e}")))?;
        let (start_row, start_col) = range.start().map_or((0, 0), |(r, c)| (r as usize, c as usize));
        let (height, width) = range.get_size();
        if start_row + height > MAX_ROWS || start_col + width > MAX_COLUMNS {
            return Err(XlsProblem {
                file: path.display().to_string(),
                sheet: name.clone(),
                row: 0,
                column: None,
                message: format!(
                    "the sheet spans {} rows and {} columns, more than the {MAX_ROWS} x {MAX_COLUMNS} read",
                    start_row + height,
                    start_col + width
                ),
            });
        }
        let mut rows = vec![Vec::new(); start_row];
        for r in range.rows() {
            let mut cells = vec![Cell::Empty; start_col];
            cells.extend(r.iter().map(cell));
            rows.push(cells);
        }
        sheets.push(Sheet { name, rows });
    }
    Ok(Workbook { file: path.display().to_string(), sheets })
}

fn cell(d: &Data) -> Cell {
    match d {
        Data::Empty => Cell::Empty,
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => Cell::Text(s.clone()),
        Data::Int(i) => Cell::Number(*i as f64),
        Data::Float(f) => Cell::Number(*f),
        Data::Bool(b) => Cell::Bool(*b),
        Data::DateTime(d) => Cell::Number(d.as_f64()),
        Data::Error(e) => Cell::Error(e.to_string()),
    }
}

/// Reads workbooks and imports them as the forms of one study, in the
/// order given (`instrument import`).
pub fn import_files(paths: &[PathBuf], study: Option<&str>) -> Result<StudyDef, Vec<XlsProblem>> {
    let mut books = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        match read_workbook(p) {
            Ok(b) => books.push(b),
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    super::import(&books, study)
}

/// One study of [`load_studies`]: its workbook files and the compiled
/// study or every problem.
pub type LoadedStudy = (Vec<PathBuf>, Result<Study, Vec<XlsProblem>>);

/// The workbooks of an instrument directory (or named directly), grouped
/// by study ([`super::study_of`]) in path order, each group imported and
/// compiled. One entry per study: its files and the study or its problems.
pub fn load_studies(paths: &[PathBuf]) -> Vec<LoadedStudy> {
    // Per study key: its files, their workbooks and read problems.
    type Group = (String, Vec<PathBuf>, Vec<Workbook>, Vec<XlsProblem>);
    let mut groups: Vec<Group> = Vec::new();
    for p in paths {
        let (key, book, problem) = match read_workbook(p) {
            Ok(b) => (super::study_of(&b), Some(b), None),
            Err(e) => (format!("\u{0}{}", p.display()), None, Some(e)),
        };
        let at = match groups.iter().position(|g| g.0 == key) {
            Some(i) => i,
            None => {
                groups.push((key, Vec::new(), Vec::new(), Vec::new()));
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        g.1.push(p.clone());
        g.2.extend(book);
        g.3.extend(problem);
    }
    groups
        .into_iter()
        .map(|(_, files, books, problems)| {
            if !problems.is_empty() {
                return (files, Err(problems));
            }
            let study = super::import(&books, None).and_then(|def| {
                Study::from_def(def).map_err(|ps| {
                    ps.into_iter().map(|p| whole_file(&files[0], p.message)).collect::<Vec<_>>()
                })
            });
            (files, study)
        })
        .collect()
}

/// `instrument import`: the workbooks as one study's instrument YAML.
pub fn import_to_yaml(paths: &[PathBuf], study: Option<&str>) -> Result<String, Vec<XlsProblem>> {
    let def = import_files(paths, study)?;
    crate::yaml::to_string(&def).map_err(|e| {
        vec![XlsProblem {
            file: String::new(),
            sheet: String::new(),
            row: 0,
            column: None,
            message: format!("cannot write the instrument: {e}"),
        }]
    })
}
