//! `CheckQuota`: quota-full screening answered from the aggregator's
//! study-wide view, so every instance gives the study-wide answer and says
//! how fresh it is. The counting is [`crate::results::quotas::check`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::IngestError;
use crate::aggregate::LiveState;
use crate::instrument::Catalog;
use crate::proto::v1::{CheckQuotaRequest, CheckQuotaResponse, QuotaCellStatus};

/// Answers one check; `aggregator` is `None` in a process that runs none.
pub(super) fn check(
    catalog: &Catalog,
    aggregator: Option<&Arc<LiveState>>,
    request: &CheckQuotaRequest,
) -> Result<CheckQuotaResponse, IngestError> {
    let study = catalog.get(&request.study).ok_or(IngestError::UnknownStudy)?;
    let aggregator = aggregator.ok_or(IngestError::NoAggregator)?;
    let view = aggregator.view();
    let values: BTreeMap<String, String> =
        request.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let answer = crate::results::quotas::check(study, &view.study(study.id()), &values)?;
    let freshness = view.freshness();
    let as_of = chrono::DateTime::parse_from_rfc3339(&freshness.as_of)
        .ok()
        .map(|t| std::time::SystemTime::from(t).into());
    Ok(CheckQuotaResponse {
        allowed: answer.allowed,
        cells: answer
            .cells
            .into_iter()
            .map(|(quota, c)| QuotaCellStatus {
                quota,
                values: c.values,
                achieved: c.achieved,
                target: c.target,
                cap: c.cap,
                full: c.full,
                closed: c.closed,
                remaining: c.remaining,
            })
            .collect(),
        complete: freshness.complete,
        as_of,
        lag_records: freshness.lag_records,
    })
}
