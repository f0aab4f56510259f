//! Prometheus export of fieldwork: cases per disposition (overall, per
//! declared segment and per interviewer), the study's `e` and response-rate
//! target, interviewer quality counts, the forms' median durations and the
//! quality publisher's outcomes. The AAPOR rates are recording rules over
//! these counts (`deploy/prometheus/fieldwork-rules.yaml`), so they sum
//! correctly over aggregator instances. Label values come from the
//! instrument, from enums, or are bounded interviewer labels
//! ([`crate::fieldwork::interviewers`]).

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::metrics::{AddCount, counter, gauge as int_gauge};

use crate::fieldwork::interviewers::by_interviewer;
use crate::fieldwork::summary::INTERVIEWER;
use crate::fieldwork::{Counts, Disposition, DispositionCounts, rates};
use crate::instrument::{EligibilityEstimate, Study};
use crate::results::StudyState;

/// The fieldwork metric families of one scrape.
pub struct FieldworkMetrics {
    dispositions: IntGaugeVec,
    eligibility: GaugeVec,
    target: GaugeVec,
    median: GaugeVec,
    interviews: IntGaugeVec,
    timed: IntGaugeVec,
    duration: IntGaugeVec,
    speeders: IntGaugeVec,
    asked: IntGaugeVec,
    missing: IntGaugeVec,
    straightlining: IntGaugeVec,
    scale: IntGaugeVec,
    extreme: IntGaugeVec,
    quality: IntCounterVec,
}

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

const SI: &[&str] = &["study", "interviewer"];

impl FieldworkMetrics {
    /// Registers the families into `reg` (a registry made for one scrape).
    pub fn register(reg: &Registry) -> prometheus::Result<FieldworkMetrics> {
        Ok(FieldworkMetrics {
            dispositions: int_gauge(
                reg,
                "fieldwatch_dispositions",
                "Cases by latest AAPOR final disposition, overall (dimension=\"all\"), per declared segment and per interviewer (dimension=\"interviewer\").",
                &["study", "disposition", "dimension", "segment"],
            )?,
            eligibility: gauge(
                reg,
                "fieldwatch_fieldwork_eligibility_estimate",
                "e, the estimated eligible share of unknown-eligibility cases (method fixed: from the instrument; proportional: from this instance's cases).",
                &["study", "method"],
            )?,
            target: gauge(
                reg,
                "fieldwatch_fieldwork_response_rate_target",
                "The study's target response rate (RR1), from the instrument.",
                &["study"],
            )?,
            median: gauge(
                reg,
                "fieldwatch_form_duration_median_seconds",
                "Exact median duration of the form's timed counted interviews in the partitions owned.",
                &["study", "form"],
            )?,
            interviews: int_gauge(
                reg,
                "fieldwatch_interviewer_interviews",
                "Counted interviews per interviewer.",
                SI,
            )?,
            timed: int_gauge(
                reg,
                "fieldwatch_interviewer_timed_interviews",
                "Counted interviews with both timestamps per interviewer.",
                SI,
            )?,
            duration: int_gauge(
                reg,
                "fieldwatch_interviewer_duration_seconds",
                "Sum of the durations of the timed interviews per interviewer.",
                SI,
            )?,
            speeders: int_gauge(
                reg,
                "fieldwatch_interviewer_speeders",
                "Interviews much shorter than their form's median (check speeder) per interviewer.",
                SI,
            )?,
            asked: int_gauge(
                reg,
                "fieldwatch_interviewer_items_asked",
                "Items asked (not skipped by relevance) in counted interviews per interviewer: the denominator of item rates.",
                SI,
            )?,
            missing: int_gauge(
                reg,
                "fieldwatch_interviewer_item_missing",
                "Items asked but not answered per interviewer, by kind (nonresponse, dont_know, refused).",
                &["study", "interviewer", "kind"],
            )?,
            straightlining: int_gauge(
                reg,
                "fieldwatch_interviewer_straightlining",
                "Interviews flagged straightlining per interviewer.",
                SI,
            )?,
            scale: int_gauge(
                reg,
                "fieldwatch_interviewer_scale_answers",
                "Valid scale answers per interviewer.",
                SI,
            )?,
            extreme: int_gauge(
                reg,
                "fieldwatch_interviewer_extreme_answers",
                "Valid scale answers at either end of their scale per interviewer.",
                SI,
            )?,
            quality: counter(
                reg,
                "fieldwatch_quality_records_total",
                "Flagged interviews for the quality topic by outcome (published, replayed: already published by an earlier owner, failed), since this process started.",
                &["outcome"],
            )?,
        })
    }

    fn counts(&self, study: &str, dimension: &str, segment: &str, c: &Counts) {
        for d in Disposition::ALL {
            self.dispositions
                .with_label_values(&[study, d.as_str(), dimension, segment])
                .add_u64(c[d.index()]);
        }
    }

    /// Exports one study's merged state.
    pub fn export(&self, study: &Study, state: &StudyState) {
        let sid = study.id();
        let fw = &state.fieldwork;
        let cfg = &study.def.fieldwork;
        let total = fw.total();
        // Every disposition of every segment slot (declared values, `other`,
        // `unknown`) appears from the start, even at zero: the rate rules and
        // alerts see the series at once, and no input can add a series.
        self.counts(sid, "all", "all", &total);
        for (di, d) in study.dims.iter().enumerate() {
            for (v, c) in fw.by_dimension(study, di).iter().enumerate() {
                self.counts(sid, &d.name, d.value_name(v), c);
            }
        }
        let mut rows = by_interviewer(study, fw);
        // Likewise every interviewer label the instrument allows, at zero when unused.
        let allowed: Vec<String> = crate::fieldwork::interviewers::declared_dim(study)
            .map(|d| (0..d.slots()).map(|v| d.value_name(v).to_string()).collect())
            .unwrap_or_else(|| vec!["other".to_string(), "unknown".to_string()]);
        for label in allowed {
            if !rows.iter().any(|r| r.label == label) {
                rows.push(crate::fieldwork::interviewers::InterviewerRow {
                    label,
                    counts: Counts::default(),
                    stats: Default::default(),
                });
            }
        }
        let own_dimension = study.dim(INTERVIEWER).is_none();
        for r in &rows {
            let l = [sid, r.label.as_str()];
            if own_dimension {
                self.counts(sid, INTERVIEWER, &r.label, &r.counts);
            }
            let s = &r.stats;
            self.interviews.with_label_values(&l).add_u64(s.interviews);
            self.timed.with_label_values(&l).add_u64(s.timed);
            self.duration.with_label_values(&l).add_u64(s.duration_secs);
            self.speeders.with_label_values(&l).add_u64(s.speeders);
            self.asked.with_label_values(&l).add_u64(s.asked);
            for (kind, n) in
                [("nonresponse", s.nonresponse), ("dont_know", s.dont_know), ("refused", s.refused)]
            {
                self.missing.with_label_values(&[sid, r.label.as_str(), kind]).add_u64(n);
            }
            self.straightlining.with_label_values(&l).add_u64(s.straightlining);
            self.scale.with_label_values(&l).add_u64(s.scale_answers);
            self.extreme.with_label_values(&l).add_u64(s.extreme_answers);
        }
        let (method, e) = match cfg.eligibility_estimate {
            EligibilityEstimate::Fixed(e) => ("fixed", e),
            est @ EligibilityEstimate::Method(_) => {
                ("proportional", rates::eligibility(est, &DispositionCounts::from(total)))
            }
        };
        self.eligibility.with_label_values(&[sid, method]).set(e);
        if let Some(t) = cfg.response_rate_target {
            self.target.with_label_values(&[sid]).set(t);
        }
        for (f, d) in study.forms.iter().zip(&fw.durations) {
            if let Some(m) = d.median() {
                self.median.with_label_values(&[sid, &f.id]).set(m);
            }
        }
    }

    /// Exports the quality publisher's counters.
    pub fn export_quality(&self, counters: &crate::aggregate::flag_publisher::QualityCounters) {
        for (outcome, n) in counters.values() {
            self.quality.with_label_values(&[outcome]).inc_by(n);
        }
    }
}
