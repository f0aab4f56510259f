//! Toplines: per item, overall or by one segment dimension — valid n,
//! distribution, mean, low/middle/high box shares honouring the scale's
//! direction, multi-select shares per respondent who answered, and missing
//! counts by kind. Cells under the study's minimum n are suppressed.

use serde::Serialize;

use super::{ItemCounts, StudyState};
use crate::instrument::{Direction, KindDef, Study};
use crate::quality::Missing;

/// Toplines of a study.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Toplines {
    /// Study id.
    pub study: String,
    /// The dimension results are broken down by, if any.
    pub by: Option<String>,
    /// Cells with fewer valid answers than this are suppressed.
    pub min_cell_size: u32,
    /// One group overall, or one per value of `by`.
    pub groups: Vec<Group>,
}

/// The toplines of one segment (or of everyone).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Group {
    /// `all`, or the dimension value code (`other`, `unknown` included).
    pub segment: String,
    /// Label of the segment value.
    pub label: String,
    /// Counted interviews.
    pub interviews: u64,
    /// Counted interviews by form id.
    pub interviews_by_form: Vec<(String, u64)>,
    /// One entry per canonical item that is not free text.
    pub items: Vec<ItemTopline>,
}

/// One item's toplines in one group.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ItemTopline {
    /// Canonical code.
    pub code: String,
    /// Kind name.
    pub kind: &'static str,
    /// Wording.
    pub text: String,
    /// Valid answers: the denominator of every share.
    pub valid_n: u64,
    /// `valid_n` is below the minimum cell size: the distribution, mean and
    /// boxes are withheld.
    pub suppressed: bool,
    /// Per category, for scales and choice items.
    pub distribution: Vec<Category>,
    /// Mean of valid values for scales, counts and numbers.
    pub mean: Option<f64>,
    /// Box shares for scales.
    pub boxes: Option<Boxes>,
    /// Missing answers by kind.
    pub missing: MissingCounts,
    /// Values excluded by quality flags.
    pub excluded: u64,
}

/// One category of a distribution.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Category {
    /// Value code (scale point or option code).
    pub value: String,
    /// Label.
    pub label: String,
    /// Answers (respondents picking it, for multi-selects).
    pub count: u64,
    /// `count / valid_n`.
    pub share: f64,
    /// Ranked items: share of respondents who ranked it first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_share: Option<f64>,
}

/// Low / middle / high box shares, in the item's declared direction:
/// `high` is always "more" of what the item measures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Boxes {
    /// Share in the "less" box.
    pub low: f64,
    /// Share in the middle.
    pub middle: f64,
    /// Share in the "more" box.
    pub high: f64,
}

/// Missing answers by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MissingCounts {
    /// Required, relevant, blank.
    pub nonresponse: u64,
    /// Optional, relevant, blank.
    pub blank: u64,
    /// Hidden by skip logic.
    pub skipped: u64,
    /// "Don't know".
    pub dont_know: u64,
    /// Refused.
    pub refused: u64,
    /// Not applicable.
    pub not_applicable: u64,
}

/// Errors computing toplines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopError {
    /// `by` names no dimension of the study.
    #[error("study `{study}` has no dimension `{dim}`")]
    UnknownDimension {
        /// The study.
        study: String,
        /// The requested dimension.
        dim: String,
    },
}

/// Computes toplines overall (`by = None`) or by one dimension.
pub fn toplines(study: &Study, state: &StudyState, by: Option<&str>) -> Result<Toplines, TopError> {
    let groups = match by {
        None => vec![group(study, state, "all".into(), "All respondents".into(), |_| true)],
        Some(dim_name) => {
            let di = study.dim(dim_name).ok_or_else(|| TopError::UnknownDimension {
                study: study.id().to_string(),
                dim: dim_name.to_string(),
            })?;
            let dim = &study.dims[di];
            (0..dim.slots())
                .filter_map(|v| {
                    let g = group(
                        study,
                        state,
                        dim.value_name(v).to_string(),
                        dim.labels.get(v).cloned().unwrap_or_else(|| dim.value_name(v).to_string()),
                        |key| key.get(di).is_some_and(|&k| usize::from(k) == v),
                    );
                    // Declared values always appear; `other` / `unknown` only when used.
                    (v < dim.values.len() || g.interviews > 0).then_some(g)
                })
                .collect()
        }
    };
    Ok(Toplines {
        study: study.id().to_string(),
        by: by.map(str::to_string),
        min_cell_size: study.def.reporting.min_cell_size,
        groups,
    })
}

fn group(
    study: &Study,
    state: &StudyState,
    segment: String,
    label: String,
    pick: impl Fn(&[u16]) -> bool,
) -> Group {
    let mut sum: Vec<ItemCounts> = vec![ItemCounts::default(); study.codes.len()];
    let mut by_form = vec![0u64; study.forms.len()];
    for (key, cell) in &state.cells {
        if !pick(key) {
            continue;
        }
        for (a, b) in by_form.iter_mut().zip(&cell.interviews) {
            *a += b;
        }
        for (a, b) in sum.iter_mut().zip(&cell.items) {
            a.valid += b.valid;
            super::add_vec(&mut a.categories, &b.categories);
            super::add_vec(&mut a.first, &b.first);
            a.sum += b.sum;
            for (x, y) in a.missing.iter_mut().zip(b.missing) {
                *x += y;
            }
            a.excluded += b.excluded;
        }
    }
    let min_n = u64::from(study.def.reporting.min_cell_size);
    let items = study
        .codes
        .iter()
        .zip(&sum)
        .filter(|(info, _)| !matches!(info.kind, KindDef::Text))
        .map(|(info, c)| item_topline(info, c, min_n))
        .collect();
    Group {
        segment,
        label,
        interviews: by_form.iter().sum(),
        interviews_by_form: study.forms.iter().map(|f| f.id.clone()).zip(by_form).collect(),
        items,
    }
}

fn share(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

fn item_topline(info: &crate::instrument::CodeInfo, c: &ItemCounts, min_n: u64) -> ItemTopline {
    let suppressed = c.valid < min_n;
    let m = |k: Missing| c.missing[k.index()];
    let missing = MissingCounts {
        nonresponse: m(Missing::Nonresponse),
        blank: m(Missing::Blank),
        skipped: m(Missing::Skipped),
        dont_know: m(Missing::DontKnow),
        refused: m(Missing::Refused),
        not_applicable: m(Missing::NotApplicable),
    };
    let ranked = matches!(info.kind, KindDef::MultiSelect { ranked: true, .. });
    let distribution = if suppressed {
        Vec::new()
    } else {
        info.categories
            .iter()
            .enumerate()
            .map(|(k, (value, label))| {
                let count = c.categories.get(k).copied().unwrap_or(0);
                Category {
                    value: value.clone(),
                    label: label.clone(),
                    count,
                    share: share(count, c.valid),
                    first_share: ranked.then(|| share(c.first.get(k).copied().unwrap_or(0), c.valid)),
                }
            })
            .collect()
    };
    let numeric = matches!(info.kind, KindDef::Scale { .. } | KindDef::Count { .. } | KindDef::Number { .. });
    let mean = (numeric && !suppressed && c.valid > 0).then(|| c.sum / c.valid as f64);
    let boxes = match &info.kind {
        KindDef::Scale { min, max, direction, box_size, .. } if !suppressed && c.valid > 0 => {
            let points = usize::try_from(max - min + 1).unwrap_or(0);
            let b = box_size.map(|b| b as usize).unwrap_or((points.saturating_sub(1)) / 2).min(points / 2);
            let at = |k: usize| c.categories.get(k).copied().unwrap_or(0);
            let bottom: u64 = (0..b).map(at).sum();
            let top: u64 = (points - b..points).map(at).sum();
            let middle: u64 = (b..points - b).map(at).sum();
            let (low, high) = match direction {
                Direction::Ascending => (bottom, top),
                Direction::Descending => (top, bottom),
            };
            Some(Boxes {
                low: share(low, c.valid),
                middle: share(middle, c.valid),
                high: share(high, c.valid),
            })
        }
        _ => None,
    };
    ItemTopline {
        code: info.code.clone(),
        kind: info.kind.name(),
        text: info.text.clone(),
        valid_n: c.valid,
        suppressed,
        distribution,
        mean,
        boxes,
        missing,
        excluded: c.excluded,
    }
}

impl Toplines {
    /// The toplines as a plain-text table, one block per group.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let pct = |s: f64| format!("{:.0}%", s * 100.0);
        for g in &self.groups {
            let _ = writeln!(
                out,
                "== {} / {} ({}) — {} interviews",
                self.study, g.segment, g.label, g.interviews
            );
            for it in &g.items {
                let _ = write!(out, "{:<40} n={:<5}", it.code, it.valid_n);
                if it.suppressed {
                    let _ = write!(out, " suppressed (n < {})", self.min_cell_size);
                } else {
                    if let Some(b) = it.boxes {
                        let _ = write!(out, " low {} mid {} high {}", pct(b.low), pct(b.middle), pct(b.high));
                    }
                    if let Some(m) = it.mean {
                        let _ = write!(out, " mean {m:.2}");
                    }
                    if it.boxes.is_none() {
                        for c in &it.distribution {
                            let _ = write!(out, " {} {}", c.value, pct(c.share));
                        }
                    }
                }
                let ms = it.missing;
                let missing =
                    ms.nonresponse + ms.blank + ms.skipped + ms.dont_know + ms.refused + ms.not_applicable;
                if missing > 0 {
                    let _ = write!(
                        out,
                        " | missing: nonresp {} blank {} skip {} dk {} ref {} na {}",
                        ms.nonresponse, ms.blank, ms.skipped, ms.dont_know, ms.refused, ms.not_applicable
                    );
                }
                if it.excluded > 0 {
                    let _ = write!(out, " | excluded {}", it.excluded);
                }
                out.push('\n');
            }
            out.push('\n');
        }
        out
    }
}
