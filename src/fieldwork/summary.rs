//! The fieldwork report: cases by disposition and the AAPOR rates, overall
//! or by one dimension (a declared one, or `interviewer`), with each
//! interviewer's quality beside the rest (with their median durations), the
//! forms' median durations and the counted interviews per day.
//! `GET /api/v1/studies/{study}/fieldwork` and `fieldwatch report` show it.

use serde::Serialize;

use super::days::{InterviewsPerDay, per_day};
use super::interviewers::{self, InterviewerQuality, InterviewerStats, by_interviewer, quality};
use super::rates::{self, DispositionCounts, Rates};
use super::{Counts, FieldworkState};
use crate::instrument::{EligibilityEstimate, Study};

/// Errors of the fieldwork report.
#[derive(Debug, thiserror::Error)]
pub enum FieldworkError {
    /// `by` names no dimension of the study and is not `interviewer`.
    #[error("study `{study}` has no dimension `{dim}`")]
    UnknownDimension {
        /// The study.
        study: String,
        /// The requested dimension.
        dim: String,
    },
}

/// Name of the interviewer breakdown when no declared dimension has it.
pub const INTERVIEWER: &str = "interviewer";

/// The fieldwork report of a study.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldworkReport {
    /// Study id.
    pub study: String,
    /// The breakdown, if any.
    pub by: Option<String>,
    /// `e` used by RR3, RR4, REF2 and CON2.
    pub eligibility_estimate: f64,
    /// `fixed` or `proportional`.
    pub eligibility_method: &'static str,
    /// The study's target response rate (RR1), if set.
    pub response_rate_target: Option<f64>,
    /// One group overall, or one per value of `by`.
    pub groups: Vec<FieldworkGroup>,
    /// Median interview duration per form.
    pub forms: Vec<FormDurations>,
    /// Counted interviews per UTC day of their end (whatever `by` is).
    pub interviews_per_day: InterviewsPerDay,
    /// Disposition records and counted interviews applied.
    pub records: u64,
    /// Records older than their case's latest disposition (no effect).
    pub superseded: u64,
}

/// Cases and rates of one group.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldworkGroup {
    /// `all`, or the dimension value (`other`, `unknown` included).
    pub segment: String,
    /// Label of the value.
    pub label: String,
    /// Cases (latest disposition each).
    pub cases: u64,
    /// Cases by disposition.
    pub counts: DispositionCounts,
    /// The AAPOR rates.
    pub rates: Rates,
    /// Interviewer breakdowns: interview quality beside the other interviewers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<InterviewerQuality>,
}

/// Durations of one form's timed interviews.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FormDurations {
    /// Form id.
    pub form: String,
    /// Timed counted interviews.
    pub timed_interviews: usize,
    /// Their exact median duration in seconds.
    pub median_duration_secs: Option<f64>,
    /// Interviews shorter than this are speeders (once there are enough).
    pub speeder_threshold_secs: Option<f64>,
}

fn group(
    segment: &str,
    label: &str,
    counts: Counts,
    e: f64,
    quality: Option<InterviewerQuality>,
) -> FieldworkGroup {
    let counts = DispositionCounts::from(counts);
    FieldworkGroup {
        segment: segment.to_string(),
        label: label.to_string(),
        cases: counts.cases(),
        counts,
        rates: rates::rates(&counts, e),
        quality,
    }
}

/// The fieldwork report overall (`by = None`), by a declared dimension, or
/// by `interviewer`.
pub fn report(
    study: &Study,
    state: &FieldworkState,
    by: Option<&str>,
) -> Result<FieldworkReport, FieldworkError> {
    let cfg = &study.def.fieldwork;
    let overall = DispositionCounts::from(state.total());
    let e = rates::eligibility(cfg.eligibility_estimate, &overall);
    let dim = by.and_then(|b| study.dim(b));
    let groups = match (by, dim) {
        (None, _) => vec![group("all", "All cases", state.total(), e, None)],
        (Some(_), Some(di)) if study.dims[di].source != crate::instrument::DimensionSource::Interviewer => {
            let d = &study.dims[di];
            state
                .by_dimension(study, di)
                .into_iter()
                .enumerate()
                .filter(|(v, c)| *v < d.values.len() || c.iter().sum::<u64>() > 0)
                .map(|(v, c)| {
                    let label =
                        d.labels.get(v).filter(|l| !l.is_empty()).map_or(d.value_name(v), String::as_str);
                    group(d.value_name(v), label, c, e, None)
                })
                .collect()
        }
        (Some(b), _) if dim.is_some() || b == INTERVIEWER => {
            let rows = by_interviewer(study, state);
            let mut total = InterviewerStats::default();
            for r in &rows {
                total.add(&r.stats);
            }
            let declared = interviewers::declared_dim(study);
            rows.iter()
                .map(|r| {
                    let label = declared
                        .and_then(|d| {
                            d.values.iter().position(|v| *v == r.label).and_then(|i| d.labels.get(i))
                        })
                        .filter(|l| !l.is_empty())
                        .unwrap_or(&r.label);
                    let median = state.interviewer_median(&r.label);
                    group(&r.label, label, r.counts, e, Some(quality(&r.stats, &total, median, cfg)))
                })
                .collect()
        }
        (Some(b), _) => {
            return Err(FieldworkError::UnknownDimension {
                study: study.id().to_string(),
                dim: b.to_string(),
            });
        }
    };
    let forms = study
        .forms
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (timed, m) = state.durations.get(i).map_or((0, None), |d| (d.len(), d.median()));
            let enough = timed >= cfg.speeder_min_interviews.max(1) as usize && cfg.speeder_ratio > 0.0;
            FormDurations {
                form: f.id.clone(),
                timed_interviews: timed,
                median_duration_secs: m,
                speeder_threshold_secs: m.filter(|_| enough).map(|m| m * cfg.speeder_ratio),
            }
        })
        .collect();
    Ok(FieldworkReport {
        study: study.id().to_string(),
        by: by.map(str::to_string),
        eligibility_estimate: e,
        eligibility_method: match cfg.eligibility_estimate {
            EligibilityEstimate::Fixed(_) => "fixed",
            EligibilityEstimate::Method(_) => "proportional",
        },
        response_rate_target: cfg.response_rate_target,
        groups,
        forms,
        interviews_per_day: per_day(state),
        records: state.records,
        superseded: state.superseded,
    })
}

impl FieldworkReport {
    /// The report as a plain-text table: per group, cases by disposition
    /// (AAPOR symbols) and every rate.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let pct = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0));
        let _ = writeln!(
            out,
            "== {} fieldwork{} — e = {:.3} ({})",
            self.study,
            self.by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default(),
            self.eligibility_estimate,
            self.eligibility_method
        );
        for g in &self.groups {
            let c = &g.counts;
            let _ = writeln!(
                out,
                "{:<24} cases {:<5} I {} P {} R {} NC {} O {} UH {} UO {} NE {}",
                g.segment,
                g.cases,
                c.complete,
                c.partial,
                c.refusal,
                c.non_contact,
                c.other,
                c.unknown_household,
                c.unknown_other,
                c.not_eligible
            );
            let rates: Vec<String> =
                g.rates.named().iter().map(|(n, r)| format!("{n} {}", pct(*r))).collect();
            let _ = writeln!(out, "{:<24} {}", "", rates.join(" "));
            if let Some(q) = &g.quality {
                let measures: Vec<String> = q
                    .measures
                    .iter()
                    .map(|(n, m)| {
                        format!(
                            "{n} {} (rest {}){}",
                            pct(m.rate),
                            pct(m.rest),
                            if m.outlier { " !" } else { "" }
                        )
                    })
                    .collect();
                let median = q.median_duration_secs.map(|m| format!(", median {m:.0} s")).unwrap_or_default();
                let _ =
                    writeln!(out, "{:<24} {} interviews{median}: {}", "", q.interviews, measures.join(", "));
            }
        }
        let days = &self.interviews_per_day;
        if !days.days.is_empty() || days.undated > 0 {
            let undated =
                if days.undated > 0 { format!("; undated {}", days.undated) } else { String::new() };
            let _ = writeln!(out, "interviews per day ({} days{undated}):", days.days.len());
            for week in days.days.chunks(7) {
                let list: Vec<String> =
                    week.iter().map(|d| format!("{} {:>3}", d.date, d.interviews)).collect();
                let _ = writeln!(out, "  {}", list.join("  "));
            }
        }
        for f in &self.forms {
            if let Some(m) = f.median_duration_secs {
                let _ = writeln!(
                    out,
                    "form {:<20} {} timed interviews, median {:.0} s",
                    f.form, f.timed_interviews, m
                );
            }
        }
        out
    }
}
