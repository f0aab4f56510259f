//! Prometheus export of the aggregator's results.
//!
//! Results are exported from the merged state of the partitions owned at
//! scrape time, into a registry made for that scrape: a revoked partition
//! stops counting at once, and summing a series over instances gives the
//! study total. Because those counts move with partition ownership (a
//! rebalance takes them from one instance and gives them to another), they
//! are gauges, named without `_total`: a `_total` series never goes down on
//! an instance, and only the per-process counters (records read, quality
//! records published) are counters. Every label value comes from the instrument (study, form,
//! item codes, option codes, dimension values) or from an enum; nothing from
//! a request reaches a label.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{LiveState, Outcome};
use crate::instrument::{KindDef, Study};
use crate::quality::Missing;
use crate::results::StudyState;

pub(super) fn counter(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Adds a count to a gauge holding a count of the partitions owned now.
pub(super) trait AddCount {
    /// Adds `n` (saturating at `i64::MAX`).
    fn add_u64(&self, n: u64);
}

impl AddCount for prometheus::IntGauge {
    fn add_u64(&self, n: u64) {
        self.add(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

pub(super) fn gauge(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Builds a registry holding the aggregator's results and progress as of now.
pub fn scrape(shared: &LiveState) -> prometheus::Result<Registry> {
    let reg = Registry::new();
    let interviews =
        gauge(&reg, "fieldwatch_interviews", "Counted interviews by study and form.", &["study", "form"])?;
    let segments = gauge(
        &reg,
        "fieldwatch_segment_interviews",
        "Counted interviews by study and declared segment dimension value.",
        &["study", "dimension", "segment"],
    )?;
    let answers = gauge(
        &reg,
        "fieldwatch_answers",
        "Valid answers by canonical item and value (multi-select: respondents picking the option), overall (dimension=\"all\") and per declared segment.",
        &["study", "item", "value", "dimension", "segment"],
    )?;
    let valid = gauge(
        &reg,
        "fieldwatch_item_valid",
        "Valid answers by canonical item: the denominator of shares.",
        &["study", "item", "dimension", "segment"],
    )?;
    let missing = gauge(
        &reg,
        "fieldwatch_item_missing",
        "Missing answers by canonical item and kind (nonresponse, blank, skipped, dont_know, refused, not_applicable).",
        &["study", "item", "kind"],
    )?;
    let excluded = gauge(
        &reg,
        "fieldwatch_item_excluded",
        "Answers excluded from results by a quality flag (out of range, unknown option, broken ranking).",
        &["study", "item"],
    )?;
    let flags = gauge(
        &reg,
        "fieldwatch_quality_flags",
        "Quality flags by study, form, check and canonical item (item=\"none\" for interview-level checks).",
        &["study", "form", "check", "item"],
    )?;
    let dups = gauge(
        &reg,
        "fieldwatch_duplicates",
        "Duplicates by kind: retry (same submission id, counted once), respondent (same respondent, new submission), possible (identical answers: the possible-duplicate flags raised in the owned partitions, so the sum over instances is the study's).",
        &["study", "kind"],
    )?;
    let records = counter(
        &reg,
        "fieldwatch_aggregator_records_total",
        "Records read from the responses topic by outcome, since this process started.",
        &["outcome"],
    )?;
    let lag = gauge(
        &reg,
        "fieldwatch_aggregator_lag_records",
        "Records between the next offset and the high watermark, per owned partition.",
        &["partition"],
    )?;
    let owned = gauge(
        &reg,
        "fieldwatch_aggregator_partitions_owned",
        "Partitions of the responses topic this instance owns.",
        &[],
    )?;
    let caught_up = gauge(
        &reg,
        "fieldwatch_aggregator_caught_up",
        "1 when every owned partition has been read up to its high watermark.",
        &[],
    )?;

    let quota_achieved = gauge(
        &reg,
        "fieldwatch_quota_achieved_interviews",
        "Counted interviews in a quota cell (cell = its values joined by `,`), over the partitions owned now.",
        &["study", "quota", "cell"],
    )?;
    let quota_target = gauge(
        &reg,
        "fieldwatch_quota_target_interviews",
        "Target of a quota cell (the same on every instance).",
        &["study", "quota", "cell"],
    )?;
    let fieldwork = super::fieldwork_metrics::FieldworkMetrics::register(&reg)?;
    // The owned partitions' merge, precomputed with the view (issue 15: no
    // merge under the aggregator's lock per scrape), while this instance
    // still owns exactly those partitions; right after a rebalance, until
    // the next view, the live merge, so sums over instances stay exact.
    let view = shared.view();
    let ownership = shared.ownership();
    for study in shared.catalog().studies() {
        let merged_live;
        let owned = view.owned_study(study.id(), &ownership);
        let state: &StudyState = match &owned {
            Some(s) => s,
            None => {
                merged_live = shared.merged(study.id());
                &merged_live
            }
        };
        export_study(
            study,
            state,
            &interviews,
            &segments,
            &answers,
            &valid,
            &missing,
            &excluded,
            &flags,
            &dups,
        );
        fieldwork.export(study, state);
        export_quotas(study, state, &quota_achieved, &quota_target);
    }
    fieldwork.export_quality(shared.quality_counters());
    let outcomes = shared.outcomes();
    for o in Outcome::ALL {
        records.with_label_values(&[o.as_str()]).inc_by(outcomes.get(&o).copied().unwrap_or(0));
    }
    let parts = shared.partitions();
    owned.with_label_values(&[] as &[&str]).set(parts.len() as i64);
    for p in &parts {
        lag.with_label_values(&[p.partition.to_string().as_str()]).set(p.unread().unwrap_or(0));
    }
    caught_up.with_label_values(&[] as &[&str]).set(i64::from(shared.caught_up()));
    Ok(reg)
}

/// Quota cells: achieved over the owned partitions, and the target. Label
/// values are the quota's name and the cell's declared values.
fn export_quotas(study: &Study, state: &StudyState, achieved: &IntGaugeVec, target: &IntGaugeVec) {
    for q in crate::results::quotas::quotas(study, state) {
        for c in &q.cells {
            let cell = c.values.join(",");
            achieved.with_label_values(&[study.id(), &q.name, &cell]).add_u64(c.achieved);
            target.with_label_values(&[study.id(), &q.name, &cell]).add_u64(c.target);
        }
    }
}

/// (dimension, segment, `Some((dimension index, value index))` to select; `None` = everyone).
type Group<'a> = (&'a str, &'a str, Option<(usize, usize)>);

#[allow(clippy::too_many_arguments)]
fn export_study(
    study: &Study,
    state: &StudyState,
    interviews: &IntGaugeVec,
    segments: &IntGaugeVec,
    answers: &IntGaugeVec,
    valid: &IntGaugeVec,
    missing: &IntGaugeVec,
    excluded: &IntGaugeVec,
    flags: &IntGaugeVec,
    dups: &IntGaugeVec,
) {
    let sid = study.id();
    // Every form and every segment slot (declared values, `other`,
    // `unknown`) appears from the start, even at zero: the series set is
    // fixed by the instrument, so no input can add a series, and dashboards
    // and alerts see every series from the first scrape.
    let mut by_form = vec![0u64; study.forms.len()];
    for cell in state.cells.values() {
        for (a, b) in by_form.iter_mut().zip(&cell.interviews) {
            *a += b;
        }
    }
    for (f, n) in study.forms.iter().zip(&by_form) {
        interviews.with_label_values(&[sid, &f.id]).add_u64(*n);
    }
    for (di, d) in study.dims.iter().enumerate() {
        let mut per_value = vec![0u64; d.slots()];
        for (key, cell) in &state.cells {
            if let Some(slot) = key.get(di).and_then(|&v| per_value.get_mut(usize::from(v))) {
                *slot += cell.interviews.iter().sum::<u64>();
            }
        }
        for (v, n) in per_value.iter().enumerate() {
            segments.with_label_values(&[sid, &d.name, d.value_name(v)]).add_u64(*n);
        }
    }

    // Item counts: overall, and per value of each dimension.
    for (ci, info) in study.codes.iter().enumerate() {
        if matches!(info.kind, KindDef::Text) {
            continue;
        }
        // (dimension, segment, which dimension index must equal which value); None = overall.
        let mut groups: Vec<Group<'_>> = vec![("all", "all", None)];
        for (di, d) in study.dims.iter().enumerate() {
            for v in 0..d.slots() {
                groups.push((&d.name, d.value_name(v), Some((di, v))));
            }
        }
        for (dim, seg, sel) in &groups {
            let pick = |k: &[u16]| sel.is_none_or(|(di, v)| k.get(di).is_some_and(|&x| usize::from(x) == v));
            let mut n_valid = 0u64;
            let mut cats = vec![0u64; info.categories.len()];
            for (key, cell) in &state.cells {
                if !pick(key) {
                    continue;
                }
                if let Some(c) = cell.items.get(ci) {
                    n_valid += c.valid;
                    for (a, b) in cats.iter_mut().zip(&c.categories) {
                        *a += b;
                    }
                }
            }
            valid.with_label_values(&[sid, &info.code, dim, seg]).add_u64(n_valid);
            for ((value, _), n) in info.categories.iter().zip(&cats) {
                answers.with_label_values(&[sid, &info.code, value, dim, seg]).add_u64(*n);
            }
        }
        let mut miss = [0u64; 6];
        let mut excl = 0u64;
        for cell in state.cells.values() {
            if let Some(c) = cell.items.get(ci) {
                for (a, b) in miss.iter_mut().zip(c.missing) {
                    *a += b;
                }
                excl += c.excluded;
            }
        }
        for m in Missing::ALL {
            missing.with_label_values(&[sid, &info.code, m.as_str()]).add_u64(miss[m.index()]);
        }
        excluded.with_label_values(&[sid, &info.code]).add_u64(excl);
    }

    for ((form, check, code), n) in &state.flags {
        let form = study.forms.get(*form).map(|f| f.id.as_str()).unwrap_or("unknown");
        let item = code.and_then(|c| study.codes.get(c)).map(|c| c.code.as_str()).unwrap_or("none");
        flags.with_label_values(&[sid, form, check.as_str(), item]).add_u64(*n);
    }
    dups.with_label_values(&[sid, "retry"]).add_u64(state.retries);
    dups.with_label_values(&[sid, "respondent"]).add_u64(state.duplicate_respondents);
    // The flags raised in the owned partitions (late ones included): a sum
    // over instances is exact and equals the possible-duplicate flags.
    dups.with_label_values(&[sid, "possible"]).add_u64(state.possible_duplicate_flags());
}
