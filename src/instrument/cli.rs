//! The `instrument` subcommands' work, for `main` to call: `check` lints
//! files and reports every problem with its file and line, `show` lays a
//! study's forms out as a table. (`import`, from XLSForm, belongs beside
//! them.)

use std::io::Write;
use std::path::PathBuf;

use super::{KindDef, LoadError, Study, expand_paths, format_problems};

/// Errors of [`check`].
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A named directory could not be listed.
    #[error("cannot list the instrument files")]
    List(#[from] LoadError),
    /// The output could not be written.
    #[error("cannot write the output")]
    Write(#[from] std::io::Error),
}

/// Loads and lints each instrument file (directories: their `.yaml`/`.yml`
/// files). Writes `file: ok (...)` to `out` for a good file, every problem
/// as `file:line: message` to `err` for a bad one. Returns whether all were
/// good.
pub fn check(files: &[PathBuf], out: &mut impl Write, err: &mut impl Write) -> Result<bool, CheckError> {
    let mut all_good = true;
    let (books, paths): (Vec<PathBuf>, Vec<PathBuf>) =
        expand_paths(files)?.into_iter().partition(|p| super::xlsform::is_workbook(p));
    for (files, study) in super::xlsform::load_studies(&books) {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        match study {
            Ok(s) => writeln!(out, "{}: ok ({})", names.join(", "), summary(&s))?,
            Err(problems) => {
                writeln!(err, "{}", super::xlsform::format_problems(&problems))?;
                all_good = false;
            }
        }
    }
    for path in paths {
        match std::fs::read_to_string(&path) {
            Err(e) => {
                writeln!(err, "{}: cannot read: {e}", path.display())?;
                all_good = false;
            }
            Ok(src) => match Study::from_yaml(&src) {
                Ok(s) => writeln!(out, "{}: ok ({})", path.display(), summary(&s))?,
                Err(problems) => {
                    writeln!(err, "{}", format_problems(&path, &problems))?;
                    all_good = false;
                }
            },
        }
    }
    Ok(all_good)
}

/// `study ID, N forms, N items, N codes`: what `check` says of a good instrument.
fn summary(s: &Study) -> String {
    format!(
        "study {}, {} forms, {} items, {} codes",
        s.id(),
        s.forms.len(),
        s.forms.iter().map(|f| f.items.len()).sum::<usize>(),
        s.codes.len()
    )
}

/// A study's forms as a table: per item its id, canonical code, kind,
/// whether required, its values and its relevance condition.
pub fn show(s: &Study) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "study {} — {}", s.id(), s.def.title);
    for f in &s.forms {
        let _ = writeln!(out, "\nform {} — {} ({} items)", f.id, f.title, f.items.len());
        let _ = writeln!(
            out,
            "{:<10} {:<36} {:<14} {:<4} {:<30} relevant",
            "item", "code", "kind", "req", "values"
        );
        for it in &f.items {
            let values = match &it.kind {
                KindDef::Scale { min, max, direction, .. } => {
                    format!("{min}..{max} {direction:?}").to_lowercase()
                }
                KindDef::Count { min, max } => format!("{min}..{max}"),
                KindDef::Number { min, max } => format!("{:?}..{:?}", min, max),
                KindDef::MultiSelect { options, ranked, max_picks } => format!(
                    "{} options{}{}",
                    options.len(),
                    if *ranked { ", ranked" } else { "" },
                    max_picks.map(|m| format!(", max {m}")).unwrap_or_default()
                ),
                KindDef::SingleChoice { options } => format!("{} options", options.len()),
                _ => String::new(),
            };
            let relevant = s
                .def
                .forms
                .iter()
                .find(|d| d.id == f.id)
                .and_then(|d| d.items.iter().find(|d| d.id == it.id))
                .and_then(|d| d.relevant.clone())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<10} {:<36} {:<14} {:<4} {:<30} {}",
                it.id,
                s.codes[it.code].code,
                it.kind.name(),
                if it.required { "yes" } else { "" },
                values,
                relevant
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::Catalog;

    #[test]
    fn show_lists_every_form_with_its_items() {
        let catalog = Catalog::demo();
        let study = catalog.study(crate::instrument::DEMO_STUDY_ID).expect("demo");
        let table = show(study);
        for f in &study.forms {
            assert!(table.contains(&format!("form {} — ", f.id)), "{table}");
        }
        let rows = table
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("form ") && !l.starts_with("item "))
            .count();
        assert_eq!(rows, 1 + study.forms.iter().map(|f| f.items.len()).sum::<usize>(), "{table}");
    }

    #[test]
    fn check_reports_a_good_file_on_out_and_a_bad_one_on_err() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let good = dir.join("config/instruments/le-trafficking.yaml");
        let bad = dir.join("tests/data/broken-instrument.yaml");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert!(check(std::slice::from_ref(&good), &mut out, &mut err).expect("writes"));
        assert!(String::from_utf8_lossy(&out).contains(": ok (study le-trafficking, 4 forms"));
        assert!(err.is_empty());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert!(!check(&[bad], &mut out, &mut err).expect("writes"));
        assert!(out.is_empty());
        assert_eq!(String::from_utf8_lossy(&err).lines().count(), 5);
    }
}
