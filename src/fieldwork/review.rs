//! Flagged interviews for review: which checks an interview raised and on
//! which items, under its pseudonymous respondent key and submission id.
//! Never a raw id, never an answer. [`crate::pipeline::apply`] makes them;
//! the aggregator publishes each one to
//! the quality topic (as JSON) and lists them in
//! `GET /api/v1/studies/{study}/flags`, filtered and paged here.

use serde::{Deserialize, Serialize};

use crate::quality::Check;

/// One raised check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlaggedCheck {
    /// The check.
    pub check: Check,
    /// The item's id in its form (`q6`), for item checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The item's canonical code, for item checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The instrument's message for the check (`constraint_violated`:
    /// the item's `constraint_message`); never request text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A flagged interview: the value of a quality-topic record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlaggedInterview {
    /// Study id.
    pub study: String,
    /// Form id.
    pub form: String,
    /// Submission id, as sent by the front-end.
    pub submission_id: String,
    /// The respondent key (HMAC pseudonym), never the raw id.
    pub respondent_key: String,
    /// The interviewer label (bounded as in metrics).
    pub interviewer: String,
    /// When ingest received the interview, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    /// The raised checks, item checks in form order first.
    pub checks: Vec<FlaggedCheck>,
    /// Partition of the interview's record in the responses topic.
    pub source_partition: i32,
    /// Offset of the interview's record in that partition.
    pub source_offset: i64,
}

/// Which flagged interviews to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagFilter {
    /// Only interviews that raised this check.
    pub check: Option<Check>,
    /// Only interviews of this form.
    pub form: Option<String>,
    /// Only interviews of this interviewer label.
    pub interviewer: Option<String>,
    /// Only interviews with a flag on this canonical item code (with
    /// `check`, a flag of that check on this item).
    pub item: Option<String>,
}

impl FlagFilter {
    /// Whether `f` passes.
    pub fn matches(&self, f: &FlaggedInterview) -> bool {
        let wanted = |x: &FlaggedCheck| {
            self.check.is_none_or(|c| x.check == c)
                && self.item.as_ref().is_none_or(|i| x.code.as_ref() == Some(i))
        };
        (self.check.is_none() && self.item.is_none() || f.checks.iter().any(wanted))
            && self.form.as_ref().is_none_or(|x| *x == f.form)
            && self.interviewer.as_ref().is_none_or(|x| *x == f.interviewer)
    }
}

/// Largest page size of the flags list.
pub const MAX_PER_PAGE: usize = 500;

/// One page of flagged interviews.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FlagPage {
    /// Flagged interviews passing the filter.
    pub total: usize,
    /// Page number, from 1.
    pub page: usize,
    /// Page size.
    pub per_page: usize,
    /// This page, ordered by receipt time, then submission id.
    pub flags: Vec<FlaggedInterview>,
}

/// The `page`-th page (from 1) of `per_page` (at most [`MAX_PER_PAGE`])
/// flagged interviews passing `filter`.
pub fn page<'a>(
    all: impl Iterator<Item = &'a FlaggedInterview>,
    filter: &FlagFilter,
    page: usize,
    per_page: usize,
) -> FlagPage {
    let page = page.max(1);
    let per_page = per_page.clamp(1, MAX_PER_PAGE);
    let hits = sorted(all, filter);
    let total = hits.len();
    let flags = hits.into_iter().skip((page - 1).saturating_mul(per_page)).take(per_page).cloned().collect();
    FlagPage { total, page, per_page, flags }
}

/// Every flagged interview passing `filter` on one page, in the order of
/// [`page`]: what `fieldwatch report` prints.
pub fn unpaged<'a>(all: impl Iterator<Item = &'a FlaggedInterview>, filter: &FlagFilter) -> FlagPage {
    let flags: Vec<FlaggedInterview> = sorted(all, filter).into_iter().cloned().collect();
    FlagPage { total: flags.len(), page: 1, per_page: flags.len().max(1), flags }
}

/// The flagged interviews passing `filter`, ordered by receipt time, then
/// submission id, then source.
fn sorted<'a>(
    all: impl Iterator<Item = &'a FlaggedInterview>,
    filter: &FlagFilter,
) -> Vec<&'a FlaggedInterview> {
    let mut hits: Vec<&FlaggedInterview> = all.filter(|f| filter.matches(f)).collect();
    hits.sort_by(|a, b| {
        a.received_at
            .cmp(&b.received_at)
            .then_with(|| a.submission_id.cmp(&b.submission_id))
            .then(a.source_partition.cmp(&b.source_partition))
            .then(a.source_offset.cmp(&b.source_offset))
    });
    hits
}
