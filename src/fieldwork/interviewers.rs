//! Interviewer labels and quality: per interviewer, counts of their
//! interviews (duration, speeders, item nonresponse, don't know, refused,
//! straightlining, extreme scale points) and each rate compared with the
//! rate of all other interviewers together.
//!
//! Labels come from the instrument only: the declared values of a dimension
//! with `source: interviewer`; any other id counts as `other`, no id gives
//! `unknown`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Counts, Durations, FieldworkState};
use crate::instrument::{Dim, DimensionSource, FieldworkDef, Form, KindDef, Study};
use crate::quality::{Check, Checked, Missing, Status};
use crate::validate::{Record, Value};

/// Label of interviewers without a label of their own.
pub const OTHER: &str = "other";
/// Label of records without an interviewer.
pub const UNKNOWN: &str = "unknown";

/// Quality counts of one interviewer's counted interviews.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterviewerStats {
    /// Counted interviews.
    pub interviews: u64,
    /// Interviews with both timestamps (and a duration under 136 years).
    pub timed: u64,
    /// Sum of their durations in seconds.
    pub duration_secs: u64,
    /// Interviews flagged `speeder`.
    pub speeders: u64,
    /// Items asked: every item not skipped by its relevance condition.
    pub asked: u64,
    /// Items left blank although required (item nonresponse).
    pub nonresponse: u64,
    /// Items answered "don't know".
    pub dont_know: u64,
    /// Items refused.
    pub refused: u64,
    /// Interviews flagged `straightlining`.
    pub straightlining: u64,
    /// Valid scale answers.
    pub scale_answers: u64,
    /// Valid scale answers at either end of their scale.
    pub extreme_answers: u64,
}

impl InterviewerStats {
    /// Counts one counted interview of `form`.
    pub fn add_interview(&mut self, form: &Form, rec: &Record, checked: &Checked, speeder: bool) {
        self.interviews += 1;
        // The same durations the medians keep (see `FieldworkState::apply_interview`).
        if let Some(secs) = rec.duration_secs.and_then(|d| u32::try_from(d).ok()) {
            self.timed += 1;
            self.duration_secs += u64::from(secs);
        }
        self.speeders += u64::from(speeder);
        for (i, status) in checked.status.iter().enumerate() {
            match status {
                Status::Missing(Missing::Skipped) => continue,
                Status::Missing(Missing::Nonresponse) => self.nonresponse += 1,
                Status::Missing(Missing::DontKnow) => self.dont_know += 1,
                Status::Missing(Missing::Refused) => self.refused += 1,
                Status::Valid => {
                    if let (Some(KindDef::Scale { min, max, .. }), Some(Value::Int(v))) =
                        (form.items.get(i).map(|it| &it.kind), rec.answers.get(i))
                    {
                        self.scale_answers += 1;
                        self.extreme_answers += u64::from(v == min || v == max);
                    }
                }
                Status::Missing(_) | Status::Excluded => {}
            }
            self.asked += 1;
        }
        self.straightlining += u64::from(checked.flags.iter().any(|f| f.check == Check::Straightlining));
    }

    /// Adds another interviewer's (or partition's) counts.
    pub fn add(&mut self, o: &InterviewerStats) {
        self.interviews += o.interviews;
        self.timed += o.timed;
        self.duration_secs += o.duration_secs;
        self.speeders += o.speeders;
        self.asked += o.asked;
        self.nonresponse += o.nonresponse;
        self.dont_know += o.dont_know;
        self.refused += o.refused;
        self.straightlining += o.straightlining;
        self.scale_answers += o.scale_answers;
        self.extreme_answers += o.extreme_answers;
    }

    fn minus(&self, o: &InterviewerStats) -> InterviewerStats {
        InterviewerStats {
            interviews: self.interviews.saturating_sub(o.interviews),
            timed: self.timed.saturating_sub(o.timed),
            duration_secs: self.duration_secs.saturating_sub(o.duration_secs),
            speeders: self.speeders.saturating_sub(o.speeders),
            asked: self.asked.saturating_sub(o.asked),
            nonresponse: self.nonresponse.saturating_sub(o.nonresponse),
            dont_know: self.dont_know.saturating_sub(o.dont_know),
            refused: self.refused.saturating_sub(o.refused),
            straightlining: self.straightlining.saturating_sub(o.straightlining),
            scale_answers: self.scale_answers.saturating_sub(o.scale_answers),
            extreme_answers: self.extreme_answers.saturating_sub(o.extreme_answers),
        }
    }

    /// The quality rates: (name, numerator, denominator).
    pub fn measures(&self) -> [(&'static str, u64, u64); 6] {
        [
            ("speeding", self.speeders, self.timed),
            ("nonresponse", self.nonresponse, self.asked),
            ("dont_know", self.dont_know, self.asked),
            ("refused", self.refused, self.asked),
            ("straightlining", self.straightlining, self.interviews),
            ("extreme", self.extreme_answers, self.scale_answers),
        ]
    }
}

/// The study's dimension with `source: interviewer`, if it declares one.
pub fn declared_dim(study: &Study) -> Option<&Dim> {
    study.dims.iter().find(|d| d.source == DimensionSource::Interviewer)
}

/// Whether an interview of `secs` is a speeder given the durations of its
/// form's earlier timed interviews: shorter than `speeder_ratio` × their
/// exact median, once there are `speeder_min_interviews` of them.
pub fn is_speeder(secs: u32, earlier: &Durations, cfg: &FieldworkDef) -> bool {
    cfg.speeder_ratio > 0.0
        && earlier.len() >= cfg.speeder_min_interviews.max(1) as usize
        && earlier.median().is_some_and(|m| f64::from(secs) < cfg.speeder_ratio * m)
}

/// One interviewer label's cases and interview quality.
#[derive(Debug, Clone, PartialEq)]
pub struct InterviewerRow {
    /// The label.
    pub label: String,
    /// Cases by disposition.
    pub counts: Counts,
    /// Quality counts.
    pub stats: InterviewerStats,
}

/// Cases and quality per interviewer label, in label order (declared
/// values first when the study declares them), `other` and `unknown` last.
pub fn by_interviewer(study: &Study, state: &FieldworkState) -> Vec<InterviewerRow> {
    let mut rows: BTreeMap<String, (Counts, InterviewerStats)> = BTreeMap::new();
    for ((_, label), c) in &state.counts {
        let row = rows.entry(label.clone()).or_default();
        for (a, b) in row.0.iter_mut().zip(c) {
            *a += b;
        }
    }
    for (label, s) in &state.interviewers {
        rows.entry(label.clone()).or_default().1.add(s);
    }
    let declared = declared_dim(study);
    let rank = |l: &str| match declared.and_then(|d| d.values.iter().position(|v| v == l)) {
        Some(i) => (0, i),
        None if l == OTHER => (2, 0),
        None if l == UNKNOWN => (3, 0),
        None => (1, 0),
    };
    let mut out: Vec<InterviewerRow> =
        rows.into_iter().map(|(label, (counts, stats))| InterviewerRow { label, counts, stats }).collect();
    out.sort_by(|a, b| rank(&a.label).cmp(&rank(&b.label)).then(a.label.cmp(&b.label)));
    out
}

impl FieldworkState {
    /// The exact median duration in seconds of an interviewer label's timed
    /// counted interviews; none without any, and none when the durations
    /// kept are fewer than the interviews timed (a state restored from a
    /// format-4 snapshot, which kept only the sum): a median of a part
    /// would not be the interviewer's.
    pub fn interviewer_median(&self, label: &str) -> Option<f64> {
        let timed = self.interviewers.get(label).map_or(0, |s| s.timed);
        let d = self.interviewer_durations.get(label)?;
        (d.len() as u64 == timed).then(|| d.median()).flatten()
    }
}

/// One quality rate of an interviewer beside the rate of the rest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Measure {
    /// The interviewer's rate; `None` without a denominator.
    pub rate: Option<f64>,
    /// The rate of every other interviewer together.
    pub rest: Option<f64>,
    /// The rate is more than `fieldwork.outlier_ratio` times the rest's and
    /// at least `fieldwork.outlier_min_difference` above it, over at least
    /// `fieldwork.outlier_min_interviews` interviews.
    pub outlier: bool,
}

/// An interviewer's interview quality compared with the rest.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InterviewerQuality {
    /// Counted interviews.
    pub interviews: u64,
    /// Mean duration of timed interviews, in seconds.
    pub mean_duration_secs: Option<f64>,
    /// Exact median duration of timed interviews, in seconds; null without
    /// any, or while the durations of some are not known (see `docs/fieldwork.md`).
    pub median_duration_secs: Option<f64>,
    /// `speeding`, `nonresponse`, `dont_know`, `refused`, `straightlining`, `extreme`.
    pub measures: BTreeMap<&'static str, Measure>,
    /// Names of the measures that are outliers.
    pub outliers: Vec<&'static str>,
}

fn share(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// `row`'s quality beside `total - row`; `median` is the row's median
/// duration ([`FieldworkState::interviewer_median`]).
pub fn quality(
    row: &InterviewerStats,
    total: &InterviewerStats,
    median: Option<f64>,
    cfg: &FieldworkDef,
) -> InterviewerQuality {
    let rest = total.minus(row);
    let mut measures = BTreeMap::new();
    let mut outliers = Vec::new();
    for ((name, n, d), (_, rn, rd)) in row.measures().into_iter().zip(rest.measures()) {
        let rate = share(n, d);
        let rest = share(rn, rd);
        let outlier = row.interviews >= u64::from(cfg.outlier_min_interviews)
            && match (rate, rest) {
                (Some(r), Some(x)) => r > cfg.outlier_ratio * x && r - x >= cfg.outlier_min_difference,
                _ => false,
            };
        if outlier {
            outliers.push(name);
        }
        measures.insert(name, Measure { rate, rest, outlier });
    }
    InterviewerQuality {
        interviews: row.interviews,
        mean_duration_secs: share(row.duration_secs, row.timed),
        median_duration_secs: median,
        measures,
        outliers,
    }
}
