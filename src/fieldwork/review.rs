//! Flagged interviews for review: which checks an interview raised and on
//! which items, under its pseudonymous respondent key and submission id.
//! Never a raw id, never an answer. The aggregator publishes each one to
//! the quality topic (as JSON) and lists them in
//! `GET /api/v1/studies/{study}/flags`, filtered and paged here.

use serde::{Deserialize, Serialize};

use crate::instrument::Study;
use crate::quality::{Check, Checked};
use crate::results::Applied;
use crate::validate::Record;

/// One raised check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// The checks an applied interview raised: its item and interview checks
/// and, from the partition's history, duplicates and speeding. A retry
/// raises none.
pub fn raised(study: &Study, rec: &Record, checked: &Checked, applied: Applied) -> Vec<FlaggedCheck> {
    let form = study.forms.get(rec.form);
    let mut out = Vec::new();
    let mut push = |check: Check, item: Option<usize>| {
        let it = item.and_then(|i| form.and_then(|f| f.items.get(i)));
        out.push(FlaggedCheck {
            check,
            item: it.map(|it| it.id.clone()),
            code: it.and_then(|it| study.codes.get(it.code)).map(|c| c.code.clone()),
            message: it
                .filter(|it| check == Check::ConstraintViolated && !it.constraint_message.is_empty())
                .map(|it| it.constraint_message.clone()),
        });
    };
    match applied {
        Applied::Retry => {}
        Applied::DuplicateRespondent => push(Check::DuplicateRespondent, None),
        Applied::Counted { possible_duplicate, speeder } => {
            for f in &checked.flags {
                push(f.check, f.item);
            }
            if possible_duplicate {
                push(Check::PossibleDuplicate, None);
            }
            if speeder {
                push(Check::Speeder, None);
            }
        }
    }
    out
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
}

impl FlagFilter {
    /// Whether `f` passes.
    pub fn matches(&self, f: &FlaggedInterview) -> bool {
        self.check.is_none_or(|c| f.checks.iter().any(|x| x.check == c))
            && self.form.as_ref().is_none_or(|x| *x == f.form)
            && self.interviewer.as_ref().is_none_or(|x| *x == f.interviewer)
    }
}

/// Largest page size of the flags list.
pub const MAX_PER_PAGE: usize = 500;

/// One page of flagged interviews.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    let mut hits: Vec<&FlaggedInterview> = all.filter(|f| filter.matches(f)).collect();
    hits.sort_by(|a, b| {
        a.received_at
            .cmp(&b.received_at)
            .then_with(|| a.submission_id.cmp(&b.submission_id))
            .then(a.source_partition.cmp(&b.source_partition))
            .then(a.source_offset.cmp(&b.source_offset))
    });
    let total = hits.len();
    let flags = hits.into_iter().skip((page - 1).saturating_mul(per_page)).take(per_page).cloned().collect();
    FlagPage { total, page, per_page, flags }
}
