//! The questionnaire (instrument): its model, loading and linting.
//!
//! An instrument is a YAML file ([`model::StudyDef`], documented in
//! `docs/instruments.md`). [`Study::from_yaml`] parses it, lints it and
//! compiles it into a [`Study`]: forms with indexed items, canonical item
//! codes shared across forms, resolved relevance conditions and segment
//! dimensions. Everything else in fieldwatch reads the compiled [`Study`].
//! Pure: no I/O here except [`Catalog::load_paths`], which reads files.

pub mod cli;
mod compile;
pub mod expr;
pub mod model;
pub mod quota;
pub mod xlsform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use compile::{IdLines, compile};
pub use expr::{Expr, ExprValue};
pub use model::{
    DimensionSource, Direction, EligibilityEstimate, EligibilityMethod, FieldworkDef, KindDef, MissingKind,
    OptionDef, QuotaCellDef, QuotaDef, ReportingDef, StudyDef,
};
pub use quota::{Quota, QuotaCell};

/// The indexes of a compiled study: keys come from the instrument, lookups
/// from submissions. Nothing a submission sends is ever inserted (no hash
/// flooding), so a fast non-cryptographic hash keeps per-answer lookups cheap.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// An option code of an answer, resolved against its item once, at
/// validation: the index of the category in the canonical item's pooled
/// list ([`CodeInfo::categories`]), or the code as sent when the item does
/// not list it (kept so the checks flag it and conditions see it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Opt {
    /// A listed option: index into [`CodeInfo::categories`].
    Known(u32),
    /// A code the item does not list.
    Unknown(Box<str>),
}

/// The seed study, built in as the demo.
pub const DEMO_STUDY_YAML: &str = include_str!("../../config/instruments/le-trafficking.yaml");
/// Id of the built-in demo study.
pub const DEMO_STUDY_ID: &str = "le-trafficking";

/// One problem found in an instrument file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, 0 when unknown.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Errors loading instruments.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has problems; each is listed with its line.
    #[error("{}", format_problems(path, problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// XLSForm workbooks have problems; each is listed with its file,
    /// sheet, row and column.
    #[error("{}", xlsform::format_problems(problems))]
    Workbook {
        /// Every problem found.
        problems: Vec<xlsform::XlsProblem>,
    },
    /// No loaded study has this id.
    #[error("unknown study `{study}` (loaded: {loaded})")]
    UnknownStudy {
        /// The id asked for.
        study: String,
        /// The ids of the loaded studies, comma-separated.
        loaded: String,
    },
    /// Two files define the same study.
    #[error("study `{study}` is defined twice ({first} and {second})")]
    DuplicateStudy {
        /// The study id.
        study: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
}

/// Formats problems as `file:line: message`, one per line.
pub fn format_problems(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}:{}: {}", path.display(), p.line, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A compiled study.
#[derive(Debug, Clone)]
pub struct Study {
    /// The definition as written.
    pub def: StudyDef,
    /// Forms, in file order.
    pub forms: Vec<Form>,
    /// Canonical items (codes), in first-seen order.
    pub codes: Vec<CodeInfo>,
    /// Segment dimensions.
    pub dims: Vec<Dim>,
    /// Quotas over the dimensions.
    pub quotas: Vec<Quota>,
    form_index: HashMap<String, usize>,
    code_index: HashMap<String, usize>,
    missing: HashMap<String, MissingKind>,
}

/// A compiled form.
#[derive(Debug, Clone)]
pub struct Form {
    /// Form id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Items in form order.
    pub items: Vec<Item>,
    /// `(dimension, value)` indexes fixed by the form.
    pub fixed_segments: Vec<(usize, usize)>,
    item_index: HashMap<String, usize>,
}

/// A compiled item.
#[derive(Debug, Clone)]
pub struct Item {
    /// Id in the form's numbering.
    pub id: String,
    /// Index into [`Study::codes`].
    pub code: usize,
    /// Question wording.
    pub text: String,
    /// Kind and parameters.
    pub kind: KindDef,
    /// Blank while relevant is item nonresponse.
    pub required: bool,
    /// Resolved relevance condition.
    pub relevant: Option<Expr>,
    /// Indexes of the items the relevance condition reads (computed once).
    pub deps: Vec<usize>,
    /// Resolved constraint: a substantive answer should meet it
    /// (`constraint_violated` otherwise).
    pub constraint: Option<Expr>,
    /// What the `constraint_violated` flag says (empty: nothing).
    pub constraint_message: String,
    /// The constraint is enforced by validation (rule `constraint`).
    pub constraint_hard: bool,
    /// Raw numbers that stand for missing codes on this count or number
    /// item (`-99` → refused), from its `missing_numbers`.
    pub missing_numbers: Vec<(f64, MissingKind)>,
    /// Option code (scale point as text) -> index into the canonical
    /// item's pooled categories ([`CodeInfo::categories`]).
    categories: HashMap<String, u32>,
}

/// A canonical item shared across forms.
#[derive(Debug, Clone)]
pub struct CodeInfo {
    /// The code.
    pub code: String,
    /// Kind (from the first form that uses it; lint makes the others agree).
    pub kind: KindDef,
    /// Wording (from the first form).
    pub text: String,
    /// `(value, label)` categories in report order.
    pub categories: Vec<(String, String)>,
    /// Per category, its place among the categories sorted by value: an
    /// order of picks that does not depend on the report order.
    pub value_rank: Vec<u32>,
}

/// A compiled segment dimension.
#[derive(Debug, Clone)]
pub struct Dim {
    /// Name.
    pub name: String,
    /// Where values come from.
    pub source: DimensionSource,
    /// Value codes; index `values.len()` is `other` (not declared) and
    /// `values.len() + 1` is `unknown` (not given).
    pub values: Vec<String>,
    /// Labels by value index.
    pub labels: Vec<String>,
    value_index: HashMap<String, usize>,
}

impl Dim {
    /// Index of a submitted value: declared, `other` or `unknown`.
    pub fn value_of(&self, v: Option<&str>) -> usize {
        match v {
            None | Some("") => self.unknown(),
            Some(v) => self.value_index.get(v).copied().unwrap_or(self.values.len()),
        }
    }
    /// Index of `other`.
    pub fn other(&self) -> usize {
        self.values.len()
    }
    /// Index of `unknown`.
    pub fn unknown(&self) -> usize {
        self.values.len() + 1
    }
    /// Label value for an index: the code, `other` or `unknown`.
    pub fn value_name(&self, i: usize) -> &str {
        match self.values.get(i) {
            Some(v) => v,
            None if i == self.values.len() => "other",
            None => "unknown",
        }
    }
    /// Number of value slots including `other` and `unknown`.
    pub fn slots(&self) -> usize {
        self.values.len() + 2
    }
}

impl Item {
    /// Index into the canonical item's pooled categories of a value code
    /// (scale point as text, option code), if the item lists it.
    pub fn category(&self, value: &str) -> Option<usize> {
        self.categories.get(value).map(|&k| k as usize)
    }

    /// Resolves an option code sent for this item.
    pub fn option(&self, code: &str) -> Opt {
        match self.categories.get(code) {
            Some(&k) => Opt::Known(k),
            None => Opt::Unknown(code.into()),
        }
    }
}

impl CodeInfo {
    /// The code an option of this item stands for: its category's value,
    /// or the unlisted code as sent.
    pub fn option_code<'a>(&'a self, opt: &'a Opt) -> &'a str {
        match opt {
            Opt::Known(k) => self.categories.get(*k as usize).map_or("", |(v, _)| v),
            Opt::Unknown(s) => s,
        }
    }
}

impl Form {
    /// Index of an item by id.
    pub fn item(&self, id: &str) -> Option<usize> {
        self.item_index.get(id).copied()
    }
}

impl Study {
    /// The id.
    pub fn id(&self) -> &str {
        &self.def.study
    }
    /// Index of a form by id.
    pub fn form(&self, id: &str) -> Option<usize> {
        self.form_index.get(id).copied()
    }
    /// Index of a canonical code.
    pub fn code(&self, code: &str) -> Option<usize> {
        self.code_index.get(code).copied()
    }
    /// Kind of a missing code.
    pub fn missing_kind(&self, code: &str) -> Option<MissingKind> {
        self.missing.get(code).copied()
    }
    /// Index of a dimension by name.
    pub fn dim(&self, name: &str) -> Option<usize> {
        self.dims.iter().position(|d| d.name == name)
    }

    /// Parses, lints and compiles an instrument. Every problem found is
    /// returned with its line.
    pub fn from_yaml(src: &str) -> Result<Study, Vec<Problem>> {
        let def: StudyDef =
            crate::yaml::from_str(src).map_err(|e| vec![Problem { line: e.line, message: e.message }])?;
        let lines = IdLines::scan(src, &def);
        compile(def, &lines)
    }

    /// Lints and compiles a definition built in code (the XLSForm
    /// importer); problems carry no line.
    pub fn from_def(def: StudyDef) -> Result<Study, Vec<Problem>> {
        let lines = IdLines::scan("", &def);
        compile(def, &lines)
    }
}

/// Whether a string may be a metric label value: 1 to 64 lowercase ASCII
/// letters, digits, `_` or `-`.
pub fn is_label_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The loaded studies, by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    studies: BTreeMap<String, Arc<Study>>,
}

impl Catalog {
    /// A catalog holding only the built-in demo study.
    pub fn demo() -> Catalog {
        let mut c = Catalog::default();
        // The demo instrument is linted by a unit test; a failure here is a build defect.
        #[allow(clippy::expect_used)]
        let s = Study::from_yaml(DEMO_STUDY_YAML).expect("built-in demo study is valid");
        c.studies.insert(s.id().to_string(), Arc::new(s));
        c
    }

    /// Loads instrument files and the `.yaml`/`.yml` files of directories;
    /// XLSForm workbooks among them are imported, those of one study
    /// together ([`xlsform::load_studies`]).
    pub fn load_paths(paths: &[PathBuf]) -> Result<Catalog, LoadError> {
        let mut c = Catalog::default();
        let mut origin: HashMap<String, PathBuf> = HashMap::default();
        let (books, yamls): (Vec<PathBuf>, Vec<PathBuf>) =
            expand_paths(paths)?.into_iter().partition(|p| xlsform::is_workbook(p));
        for (files, study) in xlsform::load_studies(&books) {
            let study = study.map_err(|problems| LoadError::Workbook { problems })?;
            let path = files.into_iter().next().unwrap_or_default();
            if let Some(first) = origin.get(study.id()) {
                return Err(LoadError::DuplicateStudy {
                    study: study.id().to_string(),
                    first: first.clone(),
                    second: path,
                });
            }
            origin.insert(study.id().to_string(), path);
            c.studies.insert(study.id().to_string(), Arc::new(study));
        }
        for path in yamls {
            let src = std::fs::read_to_string(&path)
                .map_err(|source| LoadError::Read { path: path.clone(), source })?;
            let study = Study::from_yaml(&src)
                .map_err(|problems| LoadError::Invalid { path: path.clone(), problems })?;
            if let Some(first) = origin.get(study.id()) {
                return Err(LoadError::DuplicateStudy {
                    study: study.id().to_string(),
                    first: first.clone(),
                    second: path,
                });
            }
            origin.insert(study.id().to_string(), path);
            c.studies.insert(study.id().to_string(), Arc::new(study));
        }
        Ok(c)
    }

    /// The studies of `paths`, or the built-in demo study when there are none.
    pub fn load_or_demo(paths: &[PathBuf]) -> Result<Catalog, LoadError> {
        if paths.is_empty() { Ok(Catalog::demo()) } else { Catalog::load_paths(paths) }
    }

    /// A study by id, or an error naming the loaded ones.
    pub fn study(&self, id: &str) -> Result<&Arc<Study>, LoadError> {
        self.get(id).ok_or_else(|| LoadError::UnknownStudy {
            study: id.to_owned(),
            loaded: self.studies().map(|s| s.id()).collect::<Vec<_>>().join(", "),
        })
    }

    /// A study by id.
    pub fn get(&self, id: &str) -> Option<&Arc<Study>> {
        self.studies.get(id)
    }

    /// All studies in id order.
    pub fn studies(&self) -> impl Iterator<Item = &Arc<Study>> {
        self.studies.values()
    }

    /// Adds a study (replacing one with the same id).
    pub fn insert(&mut self, s: Study) {
        self.studies.insert(s.id().to_string(), Arc::new(s));
    }
}

/// Files named directly, plus the `.yaml`/`.yml` files and XLSForm
/// workbooks of named directories (sorted).
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|source| LoadError::Read { path: p.clone(), source })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    matches!(f.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
                        || xlsform::is_workbook(f)
                })
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
