//! Quotas: achieved against target per cell, and quota-full screening.
//!
//! A cell's achieved count is the number of counted interviews in the
//! segment cells of a [`StudyState`] whose values match the quota cell's, so
//! retries and duplicate respondents, which a state never counts, never
//! count here either; over a study-wide view it is the study-wide count.
//! [`quotas`] gives every cell's status, [`check`] answers whether a
//! respondent with given dimension values may still be interviewed. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::StudyState;
use crate::instrument::{Quota, QuotaCell, Study};

/// Errors of a quota check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The request names a dimension the study does not declare.
    #[error("the study declares no such dimension")]
    UnknownDimension,
    /// A quota's dimension has no value in the request.
    #[error("no value for dimension `{0}`, which a quota needs")]
    MissingValue(String),
}

/// One quota cell's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellStatus {
    /// One declared value per quota dimension.
    pub values: Vec<String>,
    /// Their labels.
    pub labels: Vec<String>,
    /// Counted interviews in the cell.
    pub achieved: u64,
    /// Counted interviews wanted.
    pub target: u64,
    /// The declared cap, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<u64>,
    /// Interviews the cell still takes: `cap` (else `target`) minus achieved, at least 0.
    pub remaining: u64,
    /// Achieved reached the target.
    pub full: bool,
    /// Achieved reached the cap (the target when no cap is declared): the
    /// cell takes no more interviews.
    pub closed: bool,
    /// Achieved as a share of the target (0..; above 1 when over target).
    pub progress: f64,
}

/// One quota's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaStatus {
    /// Quota name.
    pub name: String,
    /// Its dimensions, in the order of each cell's values.
    pub dimensions: Vec<String>,
    /// Sum of the cells' targets.
    pub target: u64,
    /// Sum of the cells' achieved counts.
    pub achieved: u64,
    /// Cells that reached their target.
    pub full_cells: usize,
    /// The cells, in definition order.
    pub cells: Vec<CellStatus>,
}

/// The answer of a quota check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaCheck {
    /// Every cell the respondent falls into still takes interviews.
    pub allowed: bool,
    /// Per quota, the cell the respondent falls into (quotas whose cells do
    /// not cover the respondent's values are left out: they do not limit).
    pub cells: Vec<(String, CellStatus)>,
}

/// Counted interviews in the segment cells matching `cell`.
pub fn achieved(quota: &Quota, cell: &QuotaCell, state: &StudyState) -> u64 {
    state
        .cells
        .iter()
        .filter(|(key, _)| cell.matches(&quota.dims, key))
        .flat_map(|(_, c)| c.interviews.iter())
        .sum()
}

fn cell_status(study: &Study, quota: &Quota, cell: &QuotaCell, state: &StudyState) -> CellStatus {
    let achieved = achieved(quota, cell, state);
    let dims = quota.dims.iter().map(|&d| &study.dims[d]);
    CellStatus {
        values: dims.clone().zip(&cell.values).map(|(d, &v)| d.value_name(v).to_string()).collect(),
        labels: dims.zip(&cell.values).map(|(d, &v)| d.labels.get(v).cloned().unwrap_or_default()).collect(),
        achieved,
        target: cell.target,
        cap: cell.cap,
        remaining: cell.limit.saturating_sub(achieved),
        full: achieved >= cell.target,
        closed: achieved >= cell.limit,
        progress: if cell.target == 0 { 0.0 } else { achieved as f64 / cell.target as f64 },
    }
}

/// Every quota's status over `state`.
pub fn quotas(study: &Study, state: &StudyState) -> Vec<QuotaStatus> {
    study
        .quotas
        .iter()
        .map(|q| {
            let cells: Vec<CellStatus> = q.cells.iter().map(|c| cell_status(study, q, c, state)).collect();
            QuotaStatus {
                name: q.name.clone(),
                dimensions: q.dims.iter().map(|&d| study.dims[d].name.clone()).collect(),
                target: cells.iter().map(|c| c.target).sum(),
                achieved: cells.iter().map(|c| c.achieved).sum(),
                full_cells: cells.iter().filter(|c| c.full).count(),
                cells,
            }
        })
        .collect()
}

/// Whether a respondent with `values` (dimension name → value code) may
/// still be interviewed: no cell they fall into is closed. Every dimension
/// some quota uses needs a value; dimensions no quota uses may be given.
pub fn check(
    study: &Study,
    state: &StudyState,
    values: &BTreeMap<String, String>,
) -> Result<QuotaCheck, QuotaError> {
    let mut index = vec![None; study.dims.len()];
    for (name, v) in values {
        let d = study.dims.iter().position(|d| &d.name == name).ok_or(QuotaError::UnknownDimension)?;
        index[d] = Some(study.dims[d].value_of(Some(v)));
    }
    let mut cells = Vec::new();
    for q in &study.quotas {
        let mut key = vec![u16::MAX; study.dims.len()];
        for &d in &q.dims {
            let v = index[d].ok_or_else(|| QuotaError::MissingValue(study.dims[d].name.clone()))?;
            key[d] = u16::try_from(v).unwrap_or(u16::MAX);
        }
        if let Some(cell) = q.cells.iter().find(|c| c.matches(&q.dims, &key)) {
            cells.push((q.name.clone(), cell_status(study, q, cell, state)));
        }
    }
    Ok(QuotaCheck { allowed: cells.iter().all(|(_, c)| !c.closed), cells })
}

/// The quotas as the `report` command's table: one line per cell.
pub fn to_table(study: &str, quotas: &[QuotaStatus]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for q in quotas {
        let _ = writeln!(
            out,
            "== {study} quota {} by {}: {} of {} ({} cells full)",
            q.name,
            q.dimensions.join(" x "),
            q.achieved,
            q.target,
            q.full_cells
        );
        let _ = writeln!(out, "{:<40} {:>9} {:>7} {:>5}  status", "cell", "achieved", "target", "cap");
        for c in &q.cells {
            let status = if c.closed {
                "closed".to_string()
            } else if c.full {
                "full".to_string()
            } else {
                format!("{} to go", c.remaining)
            };
            let cap = c.cap.map_or_else(|| "-".to_string(), |n| n.to_string());
            let _ = writeln!(
                out,
                "{:<40} {:>9} {:>7} {:>5}  {status}",
                c.values.join(" x "),
                c.achieved,
                c.target,
                cap
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::Catalog;
    use crate::quality;
    use crate::results::Applied;
    use crate::validate::{Limits, Submission, validate};

    const STUDY: &str = r#"
study: t
dimensions:
  - {name: position, source: attribute, values: [{code: a, label: Alpha}, {code: b}]}
  - {name: region, source: attribute, values: [{code: west}, {code: east}]}
forms:
  - id: f
    items:
      - {id: q1, code: know, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}}
quotas:
  - name: position
    dimensions: [position]
    cells:
      - {values: [a], target: 2}
      - {values: [b], target: 1, cap: 2}
  - name: pos_region
    dimensions: [position, region]
    cells:
      - {values: [a, west], target: 1}
"#;

    fn setup() -> (Catalog, StudyState) {
        let mut c = Catalog::default();
        c.insert(Study::from_yaml(STUDY).expect("valid"));
        (c, StudyState::new())
    }

    fn apply(
        cat: &Catalog,
        state: &mut StudyState,
        resp: &str,
        sub: &str,
        pos: &str,
        region: &str,
    ) -> Applied {
        let s: Submission = serde_json::from_value(serde_json::json!({
            "study": "t", "form": "f", "respondent_id": resp, "submission_id": sub,
            "attributes": {"position": pos, "region": region}, "answers": {"q1": 3},
        }))
        .expect("submission");
        let study = cat.get("t").expect("study");
        let rec = validate(cat, &s, &Limits::default()).expect("valid");
        state.apply(study, &rec, &quality::check(study, &rec))
    }

    fn values(pos: &str, region: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("position".into(), pos.into()), ("region".into(), region.into())])
    }

    #[test]
    fn retries_and_duplicate_respondents_never_count_toward_a_cell() {
        let (cat, mut state) = setup();
        let study = cat.get("t").expect("study");
        apply(&cat, &mut state, "r1", "s1", "a", "west");
        assert_eq!(apply(&cat, &mut state, "r1", "s1", "a", "west"), Applied::Retry);
        assert_eq!(apply(&cat, &mut state, "r1", "s2", "a", "west"), Applied::DuplicateRespondent);
        apply(&cat, &mut state, "r2", "s3", "a", "east");
        apply(&cat, &mut state, "r3", "s4", "zz", "east");
        let q = quotas(study, &state);
        assert_eq!(q[0].cells[0].achieved, 2);
        assert_eq!(q[0].cells[0].labels, vec!["Alpha".to_string()]);
        assert_eq!(q[0].cells[1].achieved, 0);
        assert_eq!(q[0].achieved, 2);
        assert_eq!(q[0].target, 3);
        assert_eq!(q[1].cells[0].achieved, 1);
        assert_eq!(state.interviews(), 3);
    }

    #[test]
    fn the_report_table_shows_each_cell_with_achieved_target_and_status() {
        let (cat, mut state) = setup();
        let study = cat.get("t").expect("study");
        apply(&cat, &mut state, "r1", "s1", "b", "east");
        let table = to_table("t", &quotas(study, &state));
        assert!(table.contains("== t quota position by position: 1 of 3 (1 cells full)"), "{table}");
        assert!(table.lines().any(|l| l.starts_with("a ") && l.ends_with("2 to go")), "{table}");
        assert!(table.lines().any(|l| l.starts_with("b ") && l.contains(" 2  full")), "{table}");
    }

    #[test]
    fn a_cell_is_full_and_closed_exactly_at_its_target_without_a_cap() {
        let (cat, mut state) = setup();
        let study = cat.get("t").expect("study");
        apply(&cat, &mut state, "r1", "s1", "a", "east");
        let c = check(study, &state, &values("a", "east")).expect("check");
        assert!(c.allowed);
        assert!(!c.cells[0].1.full);
        assert_eq!(c.cells[0].1.remaining, 1);
        apply(&cat, &mut state, "r2", "s2", "a", "east");
        let c = check(study, &state, &values("a", "east")).expect("check");
        assert!(!c.allowed);
        assert!(c.cells[0].1.full && c.cells[0].1.closed);
        assert_eq!(c.cells.len(), 1, "no pos_region cell covers a/east");
    }

    #[test]
    fn a_capped_cell_is_full_at_its_target_but_takes_interviews_up_to_its_cap() {
        let (cat, mut state) = setup();
        let study = cat.get("t").expect("study");
        apply(&cat, &mut state, "r1", "s1", "b", "east");
        let c = check(study, &state, &values("b", "east")).expect("check");
        assert!(c.cells[0].1.full && !c.cells[0].1.closed && c.allowed);
        apply(&cat, &mut state, "r2", "s2", "b", "west");
        let c = check(study, &state, &values("b", "west")).expect("check");
        assert!(c.cells[0].1.closed && !c.allowed);
        assert_eq!(c.cells[0].1.remaining, 0);
    }

    #[test]
    fn one_closed_cell_among_the_respondents_cells_refuses_the_interview() {
        let (cat, mut state) = setup();
        let study = cat.get("t").expect("study");
        apply(&cat, &mut state, "r1", "s1", "a", "west");
        let c = check(study, &state, &values("a", "west")).expect("check");
        assert_eq!(c.cells.len(), 2);
        assert!(!c.cells[0].1.closed && c.cells[1].1.closed);
        assert!(!c.allowed);
    }

    #[test]
    fn a_check_needs_every_quota_dimension_and_only_declared_ones() {
        let (cat, state) = setup();
        let study = cat.get("t").expect("study");
        let only_position = BTreeMap::from([("position".to_string(), "a".to_string())]);
        assert_eq!(check(study, &state, &only_position), Err(QuotaError::MissingValue("region".into())));
        let mut v = values("a", "west");
        v.insert("sex".into(), "m".into());
        assert_eq!(check(study, &state, &v), Err(QuotaError::UnknownDimension));
        // An undeclared value falls into no cell: no quota limits it.
        let c = check(study, &state, &values("zz", "west")).expect("check");
        assert!(c.allowed && c.cells.is_empty());
    }
}
