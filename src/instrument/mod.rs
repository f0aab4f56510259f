//! The questionnaire (instrument): its model, loading and linting.
//!
//! An instrument is a YAML file ([`model::StudyDef`], documented in
//! `docs/instruments.md`). [`Study::from_yaml`] parses it, lints it and
//! compiles it into a [`Study`]: forms with indexed items, canonical item
//! codes shared across forms, resolved relevance conditions and segment
//! dimensions. Everything else in fieldwatch reads the compiled [`Study`].
//! Pure: no I/O here except [`Catalog::load_paths`], which reads files.

pub mod expr;
pub mod model;
pub mod xlsform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use expr::{Expr, ExprValue};
pub use model::{
    DimensionSource, Direction, EligibilityEstimate, EligibilityMethod, FieldworkDef, KindDef, MissingKind,
    OptionDef, ReportingDef, StudyDef,
};

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
        let def: StudyDef = serde_yaml::from_str(src).map_err(|e| {
            vec![Problem { line: e.location().map(|l| l.line()).unwrap_or(0), message: e.to_string() }]
        })?;
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

/// Line numbers of forms and items, found by scanning the text for `id:`
/// keys in document order (forms and items are the only mappings with `id`).
struct IdLines {
    forms: Vec<usize>,
    items: Vec<Vec<usize>>,
    dims: usize,
}

impl IdLines {
    fn scan(src: &str, def: &StudyDef) -> IdLines {
        let id_lines: Vec<usize> = src
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let t = l.trim_start().trim_start_matches("- ").trim_start();
                t.starts_with("id:")
            })
            .map(|(n, _)| n + 1)
            .collect();
        let expected: usize = def.forms.iter().map(|f| 1 + f.items.len()).sum();
        let mut forms = Vec::new();
        let mut items = Vec::new();
        let mut k = 0;
        for f in &def.forms {
            let take = |k: usize| if id_lines.len() == expected { id_lines[k] } else { 0 };
            forms.push(take(k));
            k += 1;
            let mut its = Vec::new();
            for _ in &f.items {
                its.push(take(k));
                k += 1;
            }
            items.push(its);
        }
        let dims = src.lines().position(|l| l.starts_with("dimensions:")).map(|n| n + 1).unwrap_or(0);
        IdLines { forms, items, dims }
    }
}

/// Whether a string may be a metric label value: 1 to 64 lowercase ASCII
/// letters, digits, `_` or `-`.
pub fn is_label_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_ident(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !matches!(s, "and" | "or" | "not" | "true" | "false")
}

/// Why two definitions of one code cannot pool, if they cannot.
fn incompatibility(a: &KindDef, b: &KindDef) -> Option<String> {
    if a.name() != b.name() {
        return Some(format!("kind `{}` here but `{}` on another form", b.name(), a.name()));
    }
    match (a, b) {
        (
            KindDef::Scale { min: a0, max: a1, direction: ad, .. },
            KindDef::Scale { min: b0, max: b1, direction: bd, .. },
        ) if (a0, a1, ad) != (b0, b1, bd) => {
            Some(format!("scale {b0}..{b1} ({bd:?}) here but {a0}..{a1} ({ad:?}) on another form"))
        }
        (KindDef::MultiSelect { ranked: ar, .. }, KindDef::MultiSelect { ranked: br, .. }) if ar != br => {
            Some("ranked on one form but not on another".into())
        }
        _ => None,
    }
}

fn compile(def: StudyDef, lines: &IdLines) -> Result<Study, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut p = |line: usize, message: String| problems.push(Problem { line, message });

    if !is_label_safe(&def.study) {
        p(1, format!("study id `{}` must be lowercase letters, digits, `_` or `-`", def.study));
    }
    let mut missing = HashMap::default();
    for m in &def.missing_codes {
        if missing.insert(m.code.clone(), m.kind).is_some() {
            p(0, format!("missing code `{}` is declared twice", m.code));
        }
    }

    lint_fieldwork(&def.fieldwork, &mut p);

    let mut dims = Vec::new();
    for d in &def.dimensions {
        let mut value_index = HashMap::default();
        for (i, v) in d.values.iter().enumerate() {
            if !is_label_safe(&v.code) || v.code == "other" || v.code == "unknown" {
                p(
                    lines.dims,
                    format!(
                        "dimension `{}` value `{}` must be lowercase letters, digits, `_` or `-` and not `other` or `unknown`",
                        d.name, v.code
                    ),
                );
            }
            if value_index.insert(v.code.clone(), i).is_some() {
                p(lines.dims, format!("dimension `{}` lists value `{}` twice", d.name, v.code));
            }
        }
        if !is_ident(&d.name) {
            p(lines.dims, format!("dimension name `{}` must be a lowercase identifier", d.name));
        }
        if dims.iter().any(|x: &Dim| x.name == d.name) {
            p(lines.dims, format!("dimension `{}` is declared twice", d.name));
        }
        dims.push(Dim {
            name: d.name.clone(),
            source: d.source,
            values: d.values.iter().map(|v| v.code.clone()).collect(),
            labels: d.values.iter().map(|v| v.label.clone()).collect(),
            value_index,
        });
    }

    let mut codes: Vec<CodeInfo> = Vec::new();
    let mut code_index: HashMap<String, usize> = HashMap::default();
    let mut form_index = HashMap::default();
    let mut forms = Vec::new();

    for (fi, f) in def.forms.iter().enumerate() {
        let fline = lines.forms[fi];
        if form_index.insert(f.id.clone(), fi).is_some() {
            p(fline, format!("form id `{}` is used twice", f.id));
        }
        if !is_label_safe(&f.id) {
            p(fline, format!("form id `{}` must be lowercase letters, digits, `_` or `-`", f.id));
        }
        let mut fixed_segments = Vec::new();
        for (dname, dval) in &f.segments {
            match dims.iter().position(|d| &d.name == dname) {
                None => p(fline, format!("form `{}` sets unknown dimension `{dname}`", f.id)),
                Some(di) if dims[di].source != DimensionSource::Form => p(
                    fline,
                    format!("form `{}` sets dimension `{dname}`, which is not sourced from the form", f.id),
                ),
                Some(di) => match dims[di].value_index.get(dval) {
                    Some(&vi) => fixed_segments.push((di, vi)),
                    None => {
                        p(fline, format!("form `{}`: `{dval}` is not a value of dimension `{dname}`", f.id))
                    }
                },
            }
        }
        for (di, d) in dims.iter().enumerate() {
            if d.source == DimensionSource::Form && !fixed_segments.iter().any(|(x, _)| *x == di) {
                p(fline, format!("form `{}` does not set dimension `{}`", f.id, d.name));
            }
        }

        let mut item_index = HashMap::default();
        let mut seen_codes: HashMap<&str, &str> = HashMap::default();
        let mut items = Vec::new();
        for (ii, it) in f.items.iter().enumerate() {
            let line = lines.items[fi][ii];
            if !is_ident(&it.id) {
                p(line, format!("item id `{}` must be a lowercase identifier such as `q23`", it.id));
            }
            if item_index.insert(it.id.clone(), ii).is_some() {
                p(line, format!("form `{}`: item id `{}` is used twice", f.id, it.id));
            }
            if let Some(other) = seen_codes.insert(&it.code, &it.id) {
                p(
                    line,
                    format!("form `{}`: code `{}` is used by both `{other}` and `{}`", f.id, it.code, it.id),
                );
            }
            if !is_label_safe(&it.code) {
                p(line, format!("item code `{}` must be lowercase letters, digits, `_` or `-`", it.code));
            }
            lint_kind(&it.kind, &it.id, line, &mut p);

            let code = match code_index.get(&it.code) {
                Some(&c) => {
                    if let Some(why) = incompatibility(&codes[c].kind, &it.kind) {
                        p(line, format!("code `{}` (item `{}` of form `{}`): {why}", it.code, it.id, f.id));
                    }
                    // Options another form adds extend the pooled list.
                    for cat in it.kind.categories() {
                        if !codes[c].categories.iter().any(|(v, _)| *v == cat.0) {
                            codes[c].categories.push(cat);
                        }
                    }
                    c
                }
                None => {
                    code_index.insert(it.code.clone(), codes.len());
                    codes.push(CodeInfo {
                        code: it.code.clone(),
                        kind: it.kind.clone(),
                        text: it.text.clone(),
                        categories: it.kind.categories(),
                        value_rank: Vec::new(),
                    });
                    codes.len() - 1
                }
            };
            // The pooled list holds every option of this item by now.
            let categories = it
                .kind
                .categories()
                .into_iter()
                .filter_map(|(v, _)| {
                    let k = codes[code].categories.iter().position(|(p, _)| *p == v)?;
                    Some((v, u32::try_from(k).ok()?))
                })
                .collect();
            items.push(Item {
                id: it.id.clone(),
                code,
                text: it.text.clone(),
                kind: it.kind.clone(),
                required: it.required,
                relevant: None,
                deps: Vec::new(),
                constraint: None,
                constraint_message: it.constraint_message.clone().unwrap_or_default(),
                categories,
            });
        }

        // Resolve conditions once every id of the form is known.
        for (ii, it) in f.items.iter().enumerate() {
            let line = lines.items[fi][ii];
            let Some(src) = &it.constraint else { continue };
            match Expr::parse(src) {
                Err(e) => p(line, format!("item `{}`: constraint: {e}", it.id)),
                Ok(mut e) => {
                    let mut ok = true;
                    for r in e.refs_mut() {
                        match item_index.get(&r.id) {
                            Some(&i) => r.index = i,
                            None => {
                                ok = false;
                                p(
                                    line,
                                    format!("item `{}`: constraint refers to unknown item `{}`", it.id, r.id),
                                );
                            }
                        }
                    }
                    if ok {
                        items[ii].constraint = Some(e);
                    }
                }
            }
        }
        for (ii, it) in f.items.iter().enumerate() {
            let line = lines.items[fi][ii];
            let Some(src) = &it.relevant else { continue };
            match Expr::parse(src) {
                Err(e) => p(line, format!("item `{}`: {e}", it.id)),
                Ok(mut e) => {
                    let mut ok = true;
                    for r in e.refs_mut() {
                        match item_index.get(&r.id) {
                            Some(&i) => r.index = i,
                            None => {
                                ok = false;
                                p(
                                    line,
                                    format!("item `{}`: condition refers to unknown item `{}`", it.id, r.id),
                                );
                            }
                        }
                    }
                    if ok {
                        items[ii].deps = e.item_indexes();
                        items[ii].relevant = Some(e);
                    }
                }
            }
        }
        for cycle in find_cycles(&items) {
            let ids: Vec<&str> = cycle.iter().map(|&i| items[i].id.as_str()).collect();
            p(
                lines.items[fi][cycle[0]],
                format!("form `{}`: relevance conditions form a cycle: {}", f.id, ids.join(" -> ")),
            );
        }
        forms.push(Form { id: f.id.clone(), title: f.title.clone(), items, fixed_segments, item_index });
    }
    if def.forms.is_empty() {
        p(0, "the study has no forms".into());
    }
    for c in &mut codes {
        let mut by_value: Vec<usize> = (0..c.categories.len()).collect();
        by_value.sort_by(|&a, &b| c.categories[a].0.cmp(&c.categories[b].0));
        c.value_rank = vec![0; by_value.len()];
        for (rank, &k) in by_value.iter().enumerate() {
            c.value_rank[k] = u32::try_from(rank).unwrap_or(u32::MAX);
        }
    }

    if problems.is_empty() {
        Ok(Study { def, forms, codes, dims, form_index, code_index, missing })
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

fn lint_fieldwork(f: &FieldworkDef, p: &mut impl FnMut(usize, String)) {
    let share = |x: f64| (0.0..=1.0).contains(&x);
    if let EligibilityEstimate::Fixed(e) = f.eligibility_estimate
        && !share(e)
    {
        p(0, format!("fieldwork.eligibility_estimate {e} must be between 0 and 1 (or `proportional`)"));
    }
    if let Some(t) = f.response_rate_target
        && !(t > 0.0 && t <= 1.0)
    {
        p(0, format!("fieldwork.response_rate_target {t} must be above 0 and at most 1"));
    }
    if !(0.0..1.0).contains(&f.speeder_ratio) {
        p(0, format!("fieldwork.speeder_ratio {} must be at least 0 and below 1", f.speeder_ratio));
    }
    if !share(f.outlier_min_difference) {
        p(
            0,
            format!("fieldwork.outlier_min_difference {} must be between 0 and 1", f.outlier_min_difference),
        );
    }
    if !(f.outlier_ratio > 1.0 && f.outlier_ratio.is_finite()) {
        p(0, format!("fieldwork.outlier_ratio {} must be above 1", f.outlier_ratio));
    }
}

fn lint_kind(kind: &KindDef, id: &str, line: usize, p: &mut impl FnMut(usize, String)) {
    match kind {
        KindDef::Scale { min, max, labels, box_size, .. } => {
            if min >= max {
                p(line, format!("item `{id}`: scale min {min} must be below max {max}"));
            }
            if labels.is_empty() {
                p(line, format!("item `{id}`: scale has no labels (label at least both ends)"));
            } else if !labels.contains_key(min) || !labels.contains_key(max) {
                p(line, format!("item `{id}`: scale labels must include both ends ({min} and {max})"));
            }
            if let Some(k) = labels.keys().find(|k| *k < min || *k > max) {
                p(line, format!("item `{id}`: label for {k} is outside the scale"));
            }
            if let Some(b) = box_size {
                let points = (max - min + 1).max(0) as u32;
                if *b == 0 || 2 * b > points {
                    p(line, format!("item `{id}`: box_size {b} does not fit a {points}-point scale"));
                }
            }
        }
        KindDef::SingleChoice { options } | KindDef::MultiSelect { options, .. } => {
            if options.is_empty() {
                p(line, format!("item `{id}`: no options"));
            }
            let mut seen = std::collections::HashSet::new();
            for o in options {
                if !is_label_safe(&o.code) {
                    p(
                        line,
                        format!(
                            "item `{id}`: option code `{}` must be lowercase letters, digits, `_` or `-`",
                            o.code
                        ),
                    );
                }
                if !seen.insert(&o.code) {
                    p(line, format!("item `{id}`: option `{}` is listed twice", o.code));
                }
            }
            if let KindDef::MultiSelect { max_picks: Some(0), .. } = kind {
                p(line, format!("item `{id}`: max_picks must be at least 1"));
            }
        }
        KindDef::Count { min, max } if min > max => {
            p(line, format!("item `{id}`: count min {min} is above max {max}"))
        }
        KindDef::Number { min: Some(a), max: Some(b) } if a > b => {
            p(line, format!("item `{id}`: number min {a} is above max {b}"))
        }
        _ => {}
    }
}

/// Cycles in the relevance graph (item -> items its condition reads), each
/// reported once, starting at its first item.
fn find_cycles(items: &[Item]) -> Vec<Vec<usize>> {
    let edges: Vec<Vec<usize>> =
        items.iter().map(|i| i.relevant.as_ref().map(|e| e.item_indexes()).unwrap_or_default()).collect();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut state = vec![0u8; items.len()];
    let mut cycles = Vec::new();
    fn dfs(
        n: usize,
        edges: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        state[n] = 1;
        stack.push(n);
        for &m in &edges[n] {
            if state[m] == 1 {
                let start = stack.iter().position(|&x| x == m).unwrap_or(0);
                let mut c = stack[start..].to_vec();
                c.push(m);
                out.push(c);
            } else if state[m] == 0 {
                dfs(m, edges, state, stack, out);
            }
        }
        stack.pop();
        state[n] = 2;
    }
    for n in 0..items.len() {
        if state[n] == 0 {
            dfs(n, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
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
mod tests {
    use super::*;

    const SMALL: &str = r#"
study: demo
missing_codes:
  - {code: dk, kind: dont_know}
dimensions:
  - name: position
    source: form
    values: [{code: a}, {code: b}]
forms:
  - id: fa
    segments: {position: a}
    items:
      - id: q1
        code: know
        kind: scale
        min: 1
        max: 5
        labels: {1: Not, 5: Very}
      - id: q2
        code: tf
        kind: yes_no
        relevant: q1 >= 3
  - id: fb
    segments: {position: b}
    items:
      - id: q7
        code: know
        kind: scale
        min: 1
        max: 5
        labels: {1: Not, 5: Very}
"#;

    #[test]
    fn a_small_study_compiles_and_pools_codes_across_forms() {
        let s = Study::from_yaml(SMALL).expect("valid");
        assert_eq!(s.codes.len(), 2);
        let fa = &s.forms[s.form("fa").expect("fa")];
        let fb = &s.forms[s.form("fb").expect("fb")];
        assert_eq!(fa.items[0].code, fb.items[0].code);
        assert_eq!(s.missing_kind("dk"), Some(MissingKind::DontKnow));
        assert_eq!(fa.fixed_segments, vec![(0, 0)]);
    }

    #[test]
    fn problems_carry_the_line_of_their_item() {
        let broken = SMALL.replace("relevant: q1 >= 3", "relevant: q9 >= 3");
        let problems = Study::from_yaml(&broken).expect_err("broken");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("unknown item `q9`"));
        let line = broken.lines().position(|l| l.contains("id: q2")).expect("q2") + 1;
        assert_eq!(problems[0].line, line);
    }

    #[test]
    fn incompatible_kinds_for_one_code_are_reported() {
        let broken = SMALL.replacen("max: 5\n        labels: {1: Not, 5: Very}\n\"#", "", 1).replace(
            "      - id: q7\n        code: know\n        kind: scale",
            "      - id: q7\n        code: know\n        kind: scale_x",
        );
        assert!(Study::from_yaml(&broken).is_err());
        let yes_no = SMALL.replace(
            "      - id: q7\n        code: know\n        kind: scale\n        min: 1\n        max: 5\n        labels: {1: Not, 5: Very}",
            "      - id: q7\n        code: know\n        kind: yes_no",
        );
        let problems = Study::from_yaml(&yes_no).expect_err("incompatible");
        assert!(problems[0].message.contains("kind `yes_no` here but `scale`"), "{problems:?}");
    }

    #[test]
    fn cycles_duplicates_and_unlabelled_scales_are_reported() {
        let broken = SMALL
            .replace(
                "labels: {1: Not, 5: Very}\n      - id: q2",
                "labels: {}\n        relevant: answered(q2)\n      - id: q2",
            )
            .replace("id: q7", "id: q1");
        let problems = Study::from_yaml(&broken).expect_err("broken");
        let all: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(all.iter().any(|m| m.contains("no labels")), "{all:?}");
        assert!(all.iter().any(|m| m.contains("cycle")), "{all:?}");
    }

    #[test]
    fn the_demo_study_is_valid() {
        let c = Catalog::demo();
        let s = c.get(DEMO_STUDY_ID).expect("demo");
        assert_eq!(s.forms.len(), 4);
    }
}
