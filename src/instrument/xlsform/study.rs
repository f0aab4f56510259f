//! Settings and assembly: each workbook is one form; study-wide settings
//! (`fieldwatch::` columns of the settings sheet) must agree between the
//! workbooks that set them.

use std::collections::BTreeMap;
use std::path::Path;

use super::quotas;
use super::sheet::{self, Problems, Row, Table};
use super::survey::{self, Labels, Lists};
use super::{Workbook, XlsProblem};
use crate::instrument::compile::{IdLines, compile};
use crate::instrument::is_label_safe;
use crate::instrument::model::{
    DimensionDef, DimensionSource, DimensionValue, EligibilityEstimate, EligibilityMethod, FieldworkDef,
    FormDef, MissingCodeDef, MissingKind, ReportingDef, StudyDef,
};

/// The missing-code map used when a study sets no `fieldwatch::missing`:
/// choice names and sentinel numbers real forms use for "don't know" and
/// "refused" (`docs/xlsform.md`).
pub const DEFAULT_MISSING_MAP: &[(&str, MissingKind)] = &[
    ("dk", MissingKind::DontKnow),
    ("dnk", MissingKind::DontKnow),
    ("dont_know", MissingKind::DontKnow),
    ("pnta", MissingKind::Refused),
    ("refused", MissingKind::Refused),
    ("prefer_not_to_answer", MissingKind::Refused),
    ("-999", MissingKind::DontKnow),
    ("999", MissingKind::DontKnow),
    ("-99", MissingKind::Refused),
    ("99", MissingKind::Refused),
];

/// Study-wide `fieldwatch::` settings; any other `fieldwatch::` setting is an error.
const STUDY_KEYS: &[&str] = &[
    "study",
    "study_title",
    "dimensions",
    "missing",
    "min_cell_size",
    "straightlining_min_run",
    "fingerprint_min_answers",
    "eligibility_estimate",
    "response_rate_target",
    "speeder_ratio",
    "speeder_min_interviews",
    "outlier_ratio",
    "outlier_min_difference",
    "outlier_min_interviews",
];
/// Per-form `fieldwatch::` settings.
const FORM_KEYS: &[&str] = &["segments"];
/// `fieldwatch::` columns of the survey sheet.
const SURVEY_KEYS: &[&str] = &["code", "scale", "box_size", "constraint_hard", "missing_numbers"];

/// The settings row of a workbook (empty when there is none).
fn settings(wb: &Workbook, p: &mut Problems<'_>) -> (Table, Option<Row>) {
    match sheet::find(wb, "settings") {
        Some(s) => {
            let t = sheet::table(s, p);
            let row = t.rows.first().cloned();
            (t, row)
        }
        None => (Table { sheet: "settings".into(), columns: BTreeMap::new(), rows: Vec::new() }, None),
    }
}

fn file_stem(file: &str) -> String {
    Path::new(file).file_stem().map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned())
}

/// The study a workbook belongs to (see [`super::study_of`]).
pub(super) fn study_key(wb: &Workbook) -> String {
    let mut p = Problems::new(&wb.file);
    let (_, row) = settings(wb, &mut p);
    let get = |k: &str| row.as_ref().map(|r| r.get(k).to_string()).unwrap_or_default();
    [get("fieldwatch::study"), get("form_id")]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| file_stem(&wb.file))
}

/// Where a study-wide setting was first given.
struct Setting {
    value: String,
    file: String,
    sheet: String,
    row: usize,
    col: Option<usize>,
}

/// Parses `code=kind code=kind ...`.
fn missing_map(src: &str) -> Result<Vec<(String, MissingKind)>, String> {
    let mut out = Vec::new();
    for part in src.split([' ', ',', ';']).filter(|s| !s.is_empty()) {
        let (code, kind) = part.split_once('=').ok_or_else(|| format!("`{part}` is not code=kind"))?;
        let kind = match kind {
            "dont_know" => MissingKind::DontKnow,
            "refused" => MissingKind::Refused,
            "not_applicable" => MissingKind::NotApplicable,
            k => return Err(format!("`{k}` is not a missing kind (dont_know, refused, not_applicable)")),
        };
        out.push((code.to_string(), kind));
    }
    Ok(out)
}

fn default_label(k: MissingKind) -> &'static str {
    match k {
        MissingKind::DontKnow => "Don't know",
        MissingKind::Refused => "Refused",
        MissingKind::NotApplicable => "Not applicable",
    }
}

/// Reads every workbook as a form and assembles the study.
pub(super) fn assemble(wbs: &[Workbook], study: Option<&str>) -> Result<StudyDef, Vec<XlsProblem>> {
    let mut all: Vec<XlsProblem> = Vec::new();
    if wbs.is_empty() {
        return Err(vec![XlsProblem {
            file: String::new(),
            sheet: String::new(),
            row: 0,
            column: None,
            message: "no workbooks to import".into(),
        }]);
    }
    // Study-wide settings first: the missing map shapes every choice list.
    let mut study_set: BTreeMap<&str, Setting> = BTreeMap::new();
    let mut rows = Vec::new();
    for wb in wbs {
        let mut p = Problems::new(&wb.file);
        let (t, row) = settings(wb, &mut p);
        if let Some(r) = &row {
            for (key, v) in &r.values {
                let Some(k) = key.strip_prefix("fieldwatch::") else { continue };
                if FORM_KEYS.contains(&k) {
                    continue;
                }
                let Some(&k) = STUDY_KEYS.iter().find(|s| **s == k) else {
                    p.at(&t.sheet, r.row, Some(v.col), format!("unknown setting `{key}`"));
                    continue;
                };
                match study_set.get(k) {
                    Some(first) if first.value != v.text => p.at(
                        &t.sheet,
                        r.row,
                        Some(v.col),
                        format!("`{key}` is `{}` here but `{}` in {}", v.text, first.value, first.file),
                    ),
                    Some(_) => {}
                    None => {
                        study_set.insert(
                            k,
                            Setting {
                                value: v.text.clone(),
                                file: wb.file.clone(),
                                sheet: t.sheet.clone(),
                                row: r.row,
                                col: Some(v.col),
                            },
                        );
                    }
                }
            }
        }
        all.extend(p.list);
        rows.push((t, row));
    }
    let at = |s: &Setting, message: String| XlsProblem {
        file: s.file.clone(),
        sheet: s.sheet.clone(),
        row: s.row,
        column: s.col,
        message,
    };
    let missing: Vec<(String, MissingKind)> = match study_set.get("missing") {
        None => DEFAULT_MISSING_MAP.iter().map(|(c, k)| (c.to_string(), *k)).collect(),
        Some(s) => missing_map(&s.value).unwrap_or_else(|e| {
            all.push(at(s, format!("`fieldwatch::missing`: {e}")));
            Vec::new()
        }),
    };
    let missing_kinds: BTreeMap<String, MissingKind> = missing.iter().cloned().collect();

    let mut forms = Vec::new();
    let mut dimensions = Vec::new();
    // Where each form came from, for problems found after assembly.
    let mut places: Vec<FormPlace> = Vec::new();
    let mut quota_sheets: Vec<(String, quotas::SheetQuotas)> = Vec::new();
    for (wb, (settings_t, srow)) in wbs.iter().zip(&rows) {
        let mut p = Problems::new(&wb.file);
        let get = |k: &str| srow.as_ref().map(|r| r.get(k).to_string()).unwrap_or_default();
        let form_id = match get("form_id") {
            s if s.is_empty() => file_stem(&wb.file),
            s => s,
        };
        if !is_label_safe(&form_id) {
            let (row, col) = srow.as_ref().map_or((0, None), |r| (r.row, r.col(settings_t, "form_id")));
            p.at(
                &settings_t.sheet,
                row,
                col,
                format!("form id `{form_id}` must be lowercase letters, digits, `_` or `-` (set `form_id`)"),
            );
        }
        let labels = Labels { language: get("default_language") };
        let lists: Lists = match sheet::find(wb, "choices") {
            Some(s) => survey::lists(&sheet::table(s, &mut p), &labels, &mut p),
            None => Lists::new(),
        };
        let Some(survey_sheet) = sheet::find(wb, "survey") else {
            p.at("", 0, None, "the workbook has no `survey` sheet");
            all.extend(p.list);
            continue;
        };
        let st = sheet::table(survey_sheet, &mut p);
        for (key, &col) in &st.columns {
            if let Some(k) = key.strip_prefix("fieldwatch::")
                && !SURVEY_KEYS.contains(&k)
            {
                p.at(&st.sheet, 1, Some(col), format!("unknown column `{key}`"));
            }
        }
        let sv = survey::read(&st, &lists, &labels, &missing_kinds, &mut p);
        if st.rows.is_empty() {
            p.at(&st.sheet, 0, None, "the survey sheet has no questions");
        }
        // Dimensions: from the workbook that first declared them, values
        // from its choice list of the same name.
        if let Some(s) = study_set.get("dimensions")
            && s.file == wb.file
        {
            for part in s.value.split([' ', ',', ';']).filter(|x| !x.is_empty()) {
                let (name, source) = part.split_once(':').unwrap_or((part, "form"));
                let source = match source {
                    "form" => DimensionSource::Form,
                    "attribute" => DimensionSource::Attribute,
                    "interviewer" => DimensionSource::Interviewer,
                    other => {
                        p.at(
                            &s.sheet,
                            s.row,
                            s.col,
                            format!("dimension source `{other}` is not form, attribute or interviewer"),
                        );
                        continue;
                    }
                };
                let Some(values) = lists.get(name) else {
                    p.at(
                        &s.sheet,
                        s.row,
                        s.col,
                        format!("dimension `{name}` has no choice list `{name}` with its values"),
                    );
                    continue;
                };
                let values = values
                    .iter()
                    .map(|c| DimensionValue { code: c.name.clone(), label: c.label.clone() })
                    .collect();
                dimensions.push(DimensionDef { name: name.to_string(), source, values });
            }
        }
        let mut segments = BTreeMap::new();
        for part in get("fieldwatch::segments").split([' ', ',', ';']).filter(|x| !x.is_empty()) {
            match part.split_once('=') {
                Some((d, v)) => {
                    segments.insert(d.to_string(), v.to_string());
                }
                None => {
                    let (row, col) = srow
                        .as_ref()
                        .map_or((0, None), |r| (r.row, r.col(settings_t, "fieldwatch::segments")));
                    p.at(&settings_t.sheet, row, col, format!("segment `{part}` is not dimension=value"));
                }
            }
        }
        if let Some(q) = quotas::read(wb, &mut p) {
            quota_sheets.push((wb.file.clone(), q));
        }
        places.push(FormPlace {
            file: wb.file.clone(),
            settings: (settings_t.sheet.clone(), srow.as_ref().map_or(0, |r| r.row)),
            survey: st.sheet.clone(),
            item_rows: sv.rows,
        });
        forms.push(FormDef { id: form_id, title: get("form_title"), segments, items: sv.items });
        let _ = sv.missing_used;
        p.list.sort_by(|a, b| (&a.sheet, a.row, a.column).cmp(&(&b.sheet, b.row, b.column)));
        all.extend(p.list);
    }

    let mut reporting = ReportingDef::default();
    let mut fieldwork = FieldworkDef::default();
    let num = |key: &str, all: &mut Vec<XlsProblem>| -> Option<f64> {
        let s = study_set.get(key)?;
        match s.value.parse::<f64>() {
            Ok(x) if x.is_finite() => Some(x),
            _ => {
                all.push(at(s, format!("`fieldwatch::{key}` `{}` is not a number", s.value)));
                None
            }
        }
    };
    let whole =
        |x: f64| if x >= 0.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX) { Some(x as u32) } else { None };
    for (key, slot) in [
        ("min_cell_size", &mut reporting.min_cell_size),
        ("straightlining_min_run", &mut reporting.straightlining_min_run),
        ("fingerprint_min_answers", &mut reporting.fingerprint_min_answers),
        ("speeder_min_interviews", &mut fieldwork.speeder_min_interviews),
        ("outlier_min_interviews", &mut fieldwork.outlier_min_interviews),
    ] {
        if let Some(x) = num(key, &mut all) {
            match whole(x) {
                Some(n) => *slot = n,
                None => all.push(at(&study_set[key], format!("`fieldwatch::{key}` must be a whole number"))),
            }
        }
    }
    for (key, slot) in [
        ("speeder_ratio", &mut fieldwork.speeder_ratio),
        ("outlier_ratio", &mut fieldwork.outlier_ratio),
        ("outlier_min_difference", &mut fieldwork.outlier_min_difference),
    ] {
        if let Some(x) = num(key, &mut all) {
            *slot = x;
        }
    }
    fieldwork.response_rate_target = num("response_rate_target", &mut all);
    if let Some(s) = study_set.get("eligibility_estimate") {
        fieldwork.eligibility_estimate = if s.value == "proportional" {
            EligibilityEstimate::Method(EligibilityMethod::Proportional)
        } else {
            EligibilityEstimate::Fixed(num("eligibility_estimate", &mut all).unwrap_or(0.0))
        };
    }

    let id = study
        .map(str::to_string)
        .or_else(|| study_set.get("study").map(|s| s.value.clone()))
        .or_else(|| forms.first().map(|f: &FormDef| f.id.clone()))
        .unwrap_or_default();
    let title = study_set
        .get("study_title")
        .map(|s| s.value.clone())
        .or_else(|| forms.first().map(|f| f.title.clone()))
        .unwrap_or_default();
    let missing_codes = missing
        .iter()
        .map(|(code, kind)| MissingCodeDef {
            code: code.clone(),
            kind: *kind,
            label: default_label(*kind).to_string(),
        })
        .collect();
    let quota_sheet = quotas::agree(&quota_sheets, &mut all);
    let def = StudyDef {
        study: id,
        title,
        missing_codes,
        dimensions,
        reporting,
        fieldwork,
        forms,
        quotas: quota_sheet.as_ref().map(|(_, q)| q.quotas.clone()).unwrap_or_default(),
    };
    if !all.is_empty() {
        return Err(all);
    }
    // The study's own rules (pooling, labels, cycles, quotas) on the
    // assembled definition, each placed at the cell it came from.
    let lines = IdLines::numbered(&def);
    if let Err(problems) = compile(def.clone(), &lines) {
        let places =
            Places { forms: &places, dims: study_set.get("dimensions"), quotas: quota_sheet.as_ref() };
        let files: Vec<&str> = wbs.iter().map(|w| w.file.as_str()).collect();
        return Err(problems.into_iter().map(|p| places.locate(&lines, &def, p, &files)).collect());
    }
    Ok(def)
}

/// Where one form's parts are in its workbook.
struct FormPlace {
    file: String,
    /// The settings sheet and its row (0: none).
    settings: (String, usize),
    survey: String,
    item_rows: Vec<usize>,
}

/// Where the parts of an assembled study came from.
struct Places<'a> {
    forms: &'a [FormPlace],
    dims: Option<&'a Setting>,
    quotas: Option<&'a (String, quotas::SheetQuotas)>,
}

impl Places<'_> {
    /// A problem of the assembled study at its workbook, sheet, row and
    /// column where it has one; else at every file of the study.
    fn locate(
        &self,
        lines: &IdLines,
        def: &StudyDef,
        p: crate::instrument::Problem,
        files: &[&str],
    ) -> XlsProblem {
        let at = |file: &str, sheet: &str, row: usize, column: Option<usize>| XlsProblem {
            file: file.to_string(),
            sheet: sheet.to_string(),
            row,
            column,
            message: p.message.clone(),
        };
        for (fi, place) in self.forms.iter().enumerate() {
            if lines.form(fi) == Some(p.line) {
                return at(&place.file, &place.settings.0, place.settings.1, None);
            }
            let rows = lines.items_of(fi);
            if let Some(ii) = rows.iter().position(|&l| l == p.line) {
                let row = place.item_rows.get(ii).copied().unwrap_or(0);
                return at(&place.file, &place.survey, row, None);
            }
        }
        if p.line == lines.dims_line()
            && let Some(s) = self.dims
        {
            return at(&s.file, &s.sheet, s.row, s.col);
        }
        if p.line == lines.quotas_line()
            && let Some((file, q)) = self.quotas
        {
            // `quota `NAME` ... [v1, v2]`: the cell's row, else the quota's first.
            let named = def.quotas.iter().position(|x| p.message.contains(&format!("quota `{}`", x.name)));
            let row = named.map_or(0, |qi| {
                let cell = def.quotas[qi]
                    .cells
                    .iter()
                    .position(|c| p.message.contains(&format!("[{}]", c.values.join(", "))))
                    .unwrap_or(0);
                q.rows.get(qi).and_then(|r| r.get(cell)).copied().unwrap_or(0)
            });
            return at(file, &q.sheet, row, None);
        }
        at(&files.join(", "), "", 0, None)
    }
}
