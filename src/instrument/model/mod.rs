//! The questionnaire model as it is written in YAML (`docs/instruments.md`).
//!
//! These types are the file format: they derive `Deserialize` with
//! `deny_unknown_fields` so a typo in an instrument is an error, not a silent
//! default. [`super::Study`] wraps a parsed [`StudyDef`] with the indexes the
//! validator, the checks and the results need.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod raw;

use raw::RawItem;

/// One study: its forms (questionnaire versions), missing codes, segment
/// dimensions and reporting rules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StudyDef {
    /// Study identifier used in submissions, metric labels and URLs
    /// (lowercase letters, digits, `_` and `-`).
    pub study: String,
    /// Human-readable title.
    #[serde(default)]
    pub title: String,
    /// Codes that stand for "don't know", "refused" and "not applicable".
    /// They are answers, distinct from a blank.
    #[serde(default)]
    pub missing_codes: Vec<MissingCodeDef>,
    /// Segment dimensions results can be broken down by. Only these, with
    /// these values, ever become metric labels.
    #[serde(default)]
    pub dimensions: Vec<DimensionDef>,
    /// Reporting and quality settings.
    #[serde(default)]
    pub reporting: ReportingDef,
    /// Fieldwork settings: AAPOR rates, speeders, interviewer quality
    /// (`docs/fieldwork.md`).
    #[serde(default)]
    pub fieldwork: FieldworkDef,
    /// Quotas: targets per cell over declared dimensions, steering fieldwork
    /// (`docs/instruments.md`, "Quotas").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<QuotaDef>,
    /// The questionnaire versions.
    pub forms: Vec<FormDef>,
}

/// A quota: cells over one or more declared dimensions, each with a target.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaDef {
    /// Quota name (a lowercase identifier), used in the API and as metric label value.
    pub name: String,
    /// The dimensions the cells are defined over, in the order of each cell's `values`.
    pub dimensions: Vec<String>,
    /// The cells.
    pub cells: Vec<QuotaCellDef>,
}

/// One quota cell: a declared value per quota dimension, a target and an optional cap.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaCellDef {
    /// One declared value per dimension of the quota, in its order.
    pub values: Vec<String>,
    /// Counted interviews wanted. The cell is full once it has this many.
    pub target: u64,
    /// Most counted interviews the cell may take (at least the target);
    /// without it, a full cell takes no more interviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<u64>,
}

/// A study-level missing code.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MissingCodeDef {
    /// The code submitted as `{"missing": CODE}`.
    pub code: String,
    /// What the code means.
    pub kind: MissingKind,
    /// Label for reports.
    #[serde(default)]
    pub label: String,
}

/// The kinds of missing answer that are answers (as opposed to blanks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingKind {
    /// "Don't know".
    DontKnow,
    /// The respondent refused to answer.
    Refused,
    /// The question does not apply to the respondent (their own judgement).
    NotApplicable,
}

impl MissingKind {
    /// Stable snake_case name, used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MissingKind::DontKnow => "dont_know",
            MissingKind::Refused => "refused",
            MissingKind::NotApplicable => "not_applicable",
        }
    }
}

/// A segment dimension.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionDef {
    /// Dimension name (`position`, `region`).
    pub name: String,
    /// Where the value comes from.
    pub source: DimensionSource,
    /// The allowed values. A submitted value outside this list is recorded
    /// as `other`, so hostile input cannot create new label values.
    pub values: Vec<DimensionValue>,
}

/// Where a segment value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DimensionSource {
    /// Fixed per form: each form's `segments` map gives it.
    Form,
    /// Submitted with the interview in `attributes`.
    Attribute,
    /// The interviewer id submitted with the interview.
    Interviewer,
}

/// One allowed value of a dimension.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionValue {
    /// The code submitted and used as label value.
    pub code: String,
    /// Label for reports.
    #[serde(default)]
    pub label: String,
}

/// Reporting and quality settings of a study.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportingDef {
    /// Cells (a segment's item) with fewer valid answers than this are
    /// suppressed in reports (disclosure control).
    #[serde(default = "default_min_cell_size")]
    pub min_cell_size: u32,
    /// Straightlining: this many or more consecutive scale items of a form
    /// answered with the same value raise a flag. 0 turns the check off.
    #[serde(default = "default_straightlining_min_run")]
    pub straightlining_min_run: u32,
    /// Possible duplicates: only interviews with at least this many
    /// substantive answers are fingerprinted.
    #[serde(default = "default_fingerprint_min_answers")]
    pub fingerprint_min_answers: u32,
}

impl Default for ReportingDef {
    fn default() -> Self {
        ReportingDef {
            min_cell_size: default_min_cell_size(),
            straightlining_min_run: default_straightlining_min_run(),
            fingerprint_min_answers: default_fingerprint_min_answers(),
        }
    }
}

fn default_min_cell_size() -> u32 {
    5
}
fn default_straightlining_min_run() -> u32 {
    8
}
fn default_fingerprint_min_answers() -> u32 {
    5
}

/// Fieldwork settings of a study (`fieldwork:`; see `docs/fieldwork.md`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldworkDef {
    /// The estimated share `e` of unknown-eligibility cases (UH, UO) that
    /// are eligible, used by RR3, RR4, REF2 and CON2: a number from 0 to 1,
    /// or `proportional` (the default): the share of eligible cases among
    /// the cases whose eligibility is known.
    #[serde(default)]
    pub eligibility_estimate: EligibilityEstimate,
    /// Target response rate (RR1) from 0 to 1, exported as
    /// `fieldwatch_fieldwork_response_rate_target` for the alert; none: no alert.
    #[serde(default)]
    pub response_rate_target: Option<f64>,
    /// Speeders: an interview shorter than this share of its form's median
    /// duration is flagged `speeder`. 0 turns the check off.
    #[serde(default = "default_speeder_ratio")]
    pub speeder_ratio: f64,
    /// Speeders are judged only once the form has this many timed interviews.
    #[serde(default = "default_speeder_min_interviews")]
    pub speeder_min_interviews: u32,
    /// An interviewer whose rate (nonresponse, don't know, refused,
    /// speeding, straightlining, extreme answers) is more than this many
    /// times the rate of the other interviewers is an outlier.
    #[serde(default = "default_outlier_ratio")]
    pub outlier_ratio: f64,
    /// ... and at least this much above it (a share: 0.05 is 5 percentage
    /// points), so that tiny rates are no outliers.
    #[serde(default = "default_outlier_min_difference")]
    pub outlier_min_difference: f64,
    /// Interviewers with fewer counted interviews are never outliers.
    #[serde(default = "default_outlier_min_interviews")]
    pub outlier_min_interviews: u32,
}

impl Default for FieldworkDef {
    fn default() -> Self {
        FieldworkDef {
            eligibility_estimate: EligibilityEstimate::default(),
            response_rate_target: None,
            speeder_ratio: default_speeder_ratio(),
            speeder_min_interviews: default_speeder_min_interviews(),
            outlier_ratio: default_outlier_ratio(),
            outlier_min_difference: default_outlier_min_difference(),
            outlier_min_interviews: default_outlier_min_interviews(),
        }
    }
}

fn default_speeder_ratio() -> f64 {
    0.5
}
fn default_speeder_min_interviews() -> u32 {
    10
}
fn default_outlier_ratio() -> f64 {
    2.0
}
fn default_outlier_min_difference() -> f64 {
    0.05
}
fn default_outlier_min_interviews() -> u32 {
    10
}

/// How `e`, the eligible share of unknown-eligibility cases, is set.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EligibilityEstimate {
    /// A fixed share from 0 to 1.
    Fixed(f64),
    /// Estimated from the cases whose eligibility is known.
    Method(EligibilityMethod),
}

impl Default for EligibilityEstimate {
    fn default() -> Self {
        EligibilityEstimate::Method(EligibilityMethod::Proportional)
    }
}

/// Methods of estimating `e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EligibilityMethod {
    /// (I+P+R+NC+O) / (I+P+R+NC+O+NE): eligible cases among those whose
    /// eligibility is known (AAPOR's "proportional allocation").
    Proportional,
}

/// One questionnaire version.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormDef {
    /// Form identifier used in submissions.
    pub id: String,
    /// Human-readable title.
    #[serde(default)]
    pub title: String,
    /// Values of the `form`-sourced dimensions for this form.
    #[serde(default)]
    pub segments: BTreeMap<String, String>,
    /// The form's items in order.
    pub items: Vec<ItemDef>,
}

/// One question (item) of a form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawItem")]
pub struct ItemDef {
    /// The item's id in this form's own numbering (`q23`, `q42a`); the key
    /// used in submissions and relevance conditions.
    pub id: String,
    /// Canonical item code: the same question on another form has the same
    /// code, and results pool by it.
    pub code: String,
    /// Question wording.
    pub text: String,
    /// What kind of answer the item takes, with its parameters.
    #[serde(flatten)]
    pub kind: KindDef,
    /// A relevant item left blank is item nonresponse.
    pub required: bool,
    /// Relevance (skip) condition over other items; the item is asked only
    /// when it holds. See `docs/instruments.md` for the language.
    pub relevant: Option<String>,
    /// A condition a substantive answer should meet (the item's own id is
    /// its answer); one that does not is flagged `constraint_violated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// What the `constraint_violated` flag says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint_message: Option<String>,
    /// The constraint is hard: validation rejects an answer that breaks it
    /// (rule `constraint`, with the `constraint_message`) instead of
    /// flagging it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub constraint_hard: bool,
    /// Count and number items: study missing codes that are numbers
    /// (`-99`, `999`) and that this item takes as raw numbers too, so the
    /// answer `-99` counts as that missing code, not as a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_numbers: Vec<String>,
}

/// The answer kinds and their parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KindDef {
    /// An integer scale from `min` to `max` with labelled points.
    Scale {
        /// Lowest point.
        min: i64,
        /// Highest point.
        max: i64,
        /// Labels by point; at least the two ends.
        #[serde(default)]
        labels: BTreeMap<i64, String>,
        /// Which end means "more" of what the item measures.
        #[serde(default)]
        direction: Direction,
        /// Points in each of the low and high boxes; default `(points - 1) / 2`.
        #[serde(default)]
        box_size: Option<u32>,
    },
    /// `yes` or `no`.
    YesNo,
    /// `yes`, `no` or `na` (not applicable as a substantive option).
    YesNoNa,
    /// One option code.
    SingleChoice {
        /// The allowed options.
        options: Vec<OptionDef>,
    },
    /// Several option codes, optionally ranked.
    MultiSelect {
        /// The allowed options.
        options: Vec<OptionDef>,
        /// Answers rank the picks (`{"option": rank}`, ranks 1..n).
        #[serde(default)]
        ranked: bool,
        /// Most options one answer may pick.
        #[serde(default)]
        max_picks: Option<u32>,
    },
    /// A whole-number count with bounds.
    Count {
        /// Smallest plausible count.
        #[serde(default)]
        min: i64,
        /// Largest plausible count.
        max: i64,
    },
    /// A number (may have decimals) with optional bounds.
    Number {
        /// Smallest plausible value.
        #[serde(default)]
        min: Option<f64>,
        /// Largest plausible value.
        #[serde(default)]
        max: Option<f64>,
    },
    /// Free text. Never aggregated, never a label.
    Text,
}

/// Which end of a scale means "more".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher values mean more (the usual case).
    #[default]
    Ascending,
    /// Lower values mean more (reverse-worded items).
    Descending,
}

/// An answer option of a choice item.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OptionDef {
    /// The code submitted.
    pub code: String,
    /// Label for reports.
    #[serde(default)]
    pub label: String,
}

impl KindDef {
    /// Stable name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            KindDef::Scale { .. } => "scale",
            KindDef::YesNo => "yes_no",
            KindDef::YesNoNa => "yes_no_na",
            KindDef::SingleChoice { .. } => "single_choice",
            KindDef::MultiSelect { .. } => "multi_select",
            KindDef::Count { .. } => "count",
            KindDef::Number { .. } => "number",
            KindDef::Text => "text",
        }
    }

    /// The categorical values an answer can count under, in report order:
    /// scale points, option codes, yes/no. Empty for counts, numbers and text.
    pub fn categories(&self) -> Vec<(String, String)> {
        match self {
            KindDef::Scale { min, max, labels, .. } => {
                (*min..=*max).map(|p| (p.to_string(), labels.get(&p).cloned().unwrap_or_default())).collect()
            }
            KindDef::YesNo => vec![("yes".into(), "Yes".into()), ("no".into(), "No".into())],
            KindDef::YesNoNa => vec![
                ("yes".into(), "Yes".into()),
                ("no".into(), "No".into()),
                ("na".into(), "Not applicable".into()),
            ],
            KindDef::SingleChoice { options } | KindDef::MultiSelect { options, .. } => {
                options.iter().map(|o| (o.code.clone(), o.label.clone())).collect()
            }
            KindDef::Count { .. } | KindDef::Number { .. } | KindDef::Text => Vec::new(),
        }
    }
}
