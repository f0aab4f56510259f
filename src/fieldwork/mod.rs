//! Fieldwork progress: case dispositions, AAPOR outcome rates and
//! interviewer quality (`docs/fieldwork.md`).
//!
//! A case is a sampled person, keyed like a respondent (the same HMAC
//! pseudonym). Its outcome is an AAPOR final disposition ([`Disposition`])
//! submitted on its own ([`DispositionSubmission`], validated into a
//! [`DispositionRecord`]) or implied by a counted interview, which is a
//! complete for its case. Only a case's latest disposition counts: a later
//! time wins, and on equal times the later arrival. [`FieldworkState`] keeps
//! the latest disposition per case, counts per segment cell and interviewer,
//! and per interviewer the quality counts of their interviews (duration,
//! speeders, item nonresponse, don't know, refused, straightlining, extreme
//! scale points). A case's records all land on one partition (same record
//! key), so states of different partitions merge by addition.
//!
//! - [`rates`]: AAPOR RR1–RR6, COOP1–COOP4, REF1–REF3, CON1–CON3 and `e`.
//! - [`interviewers`]: interviewer labels, quality counts, outliers.
//! - [`days`]: counted interviews per UTC day of their end.
//! - [`review`]: the flagged interviews listed for review.
//! - [`submission`]: a submitted disposition, the JSONL line, validation.
//! - [`summary`]: the fieldwork report of the JSON API and `report`.
//!
//! Pure: no I/O, no clocks.

pub mod days;
pub mod durations;
pub mod interviewers;
pub mod rates;
pub mod review;
pub mod submission;
pub mod summary;
pub mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

pub use durations::Durations;
pub use interviewers::InterviewerStats;
pub use rates::{DispositionCounts, Rates, rates};
pub use submission::{
    DispositionRecord, DispositionSubmission, Line, parse_line, validate_disposition, validate_disposition_in,
};
pub use summary::{FieldworkError, FieldworkReport, report};

use crate::instrument::Study;
use crate::quality::Checked;
use crate::validate::Record;

/// The AAPOR final disposition categories. Names are stable metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// I (1.1): complete interview.
    Complete,
    /// P (1.2): partial interview.
    Partial,
    /// R (2.1): refusal and break-off.
    Refusal,
    /// NC (2.2): non-contact.
    NonContact,
    /// O (2.3): other eligible non-interview.
    Other,
    /// UH (3.1): unknown if household / occupied unit (unknown eligibility).
    UnknownHousehold,
    /// UO (3.2–3.9): other unknown eligibility.
    UnknownOther,
    /// NE (4): not eligible.
    NotEligible,
}

/// Cases per disposition, indexed by [`Disposition::index`].
pub type Counts = [u64; 8];

impl Disposition {
    /// Every disposition in AAPOR order.
    pub const ALL: [Disposition; 8] = [
        Disposition::Complete,
        Disposition::Partial,
        Disposition::Refusal,
        Disposition::NonContact,
        Disposition::Other,
        Disposition::UnknownHousehold,
        Disposition::UnknownOther,
        Disposition::NotEligible,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Complete => "complete",
            Disposition::Partial => "partial",
            Disposition::Refusal => "refusal",
            Disposition::NonContact => "non_contact",
            Disposition::Other => "other",
            Disposition::UnknownHousehold => "unknown_household",
            Disposition::UnknownOther => "unknown_other",
            Disposition::NotEligible => "not_eligible",
        }
    }

    /// AAPOR's abbreviation (`I`, `P`, `R`, `NC`, `O`, `UH`, `UO`, `NE`).
    pub fn aapor(self) -> &'static str {
        match self {
            Disposition::Complete => "I",
            Disposition::Partial => "P",
            Disposition::Refusal => "R",
            Disposition::NonContact => "NC",
            Disposition::Other => "O",
            Disposition::UnknownHousehold => "UH",
            Disposition::UnknownOther => "UO",
            Disposition::NotEligible => "NE",
        }
    }

    /// Index into [`Disposition::ALL`] and [`Counts`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Reads a submitted disposition: a snake_case name (`non_contact`),
    /// an AAPOR abbreviation (`NC`) or a numeric AAPOR final disposition
    /// code with at least two levels (`2.20`, `2.111`, `4.7`).
    pub fn parse(s: &str) -> Option<Disposition> {
        if let Some(d) = Disposition::ALL.into_iter().find(|d| d.as_str() == s || d.aapor() == s) {
            return Some(d);
        }
        let (major, rest) = s.split_once('.')?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let minor = rest.as_bytes()[0] - b'0';
        match (major, minor) {
            ("1", 1) => Some(Disposition::Complete),
            ("1", 2) => Some(Disposition::Partial),
            ("2", 1) => Some(Disposition::Refusal),
            ("2", 2) => Some(Disposition::NonContact),
            ("2", 3..=9) => Some(Disposition::Other),
            ("3", 1) => Some(Disposition::UnknownHousehold),
            ("3", 2..=9) => Some(Disposition::UnknownOther),
            ("4", 1..=9) => Some(Disposition::NotEligible),
            _ => None,
        }
    }
}

/// The latest disposition of one case: 16 bytes, so a case costs 32 in
/// its map with the key (the state per interview, `docs/benchmarks.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Case {
    /// Time of the latest record (Unix ms); [`NO_TIME`] only for an
    /// interview without timestamps that was the case's first record
    /// (read through [`Case::time`]; an `Option<i64>` alone takes 16 bytes).
    time: i64,
    /// The case's segment key and interviewer label, interned: an index
    /// into [`FieldworkState::groups`]. A study has few distinct groups and
    /// many cases, so a case costs 4 bytes here instead of two heap
    /// allocations.
    group: u32,
    disposition: Disposition,
    /// A counted interview has this case's key as its respondent key: a
    /// later interview of the same respondent is a duplicate respondent.
    interviewed: bool,
}

// Held at 16 bytes: there is one case per interview.
const _: () = assert!(std::mem::size_of::<Case>() == 16);

/// [`Case::time`] when none is known. Sorts before every time, as `None`
/// does before `Some`.
const NO_TIME: i64 = i64::MIN;

impl Case {
    fn time(&self) -> Option<i64> {
        (self.time != NO_TIME).then_some(self.time)
    }
}

/// Key of a disposition count: segment key (value index per dimension) and
/// interviewer label.
pub type CountKey = (Vec<u16>, String);

/// The fieldwork state of one study (one partition's, or merged).
#[derive(Debug, Clone, Default)]
pub struct FieldworkState {
    /// Case key hash -> its latest disposition.
    cases: HashMap<u128, Case>,
    /// The distinct (segment key, interviewer label) groups of the cases,
    /// in order of first use; [`Case::group`] indexes it.
    groups: Vec<CountKey>,
    /// Group -> its index in `groups`.
    group_ids: HashMap<CountKey, u32>,
    /// Cases by their latest disposition, per segment cell and interviewer.
    pub counts: HashMap<CountKey, Counts>,
    /// Interviewer label -> quality counts of their counted interviews.
    pub interviewers: BTreeMap<String, InterviewerStats>,
    /// Per form index: durations in seconds of its timed counted
    /// interviews, with their exact median.
    pub durations: Vec<Durations>,
    /// Interviewer label -> durations in seconds of their timed counted
    /// interviews, for their exact median (see [`FieldworkState::interviewer_median`]).
    pub interviewer_durations: BTreeMap<String, Durations>,
    /// UTC day (days since 1970-01-01) -> counted interviews that ended
    /// that day (`ended_at`: `completed_at`, else `started_at`). An
    /// interview with neither timestamp has no day (see [`days`]).
    pub days: BTreeMap<i32, u64>,
    /// Disposition records and counted interviews applied.
    pub records: u64,
    /// Records older than their case's latest: they changed nothing.
    pub superseded: u64,
    /// Cases whose keys this state no longer holds: a summary's (see
    /// [`FieldworkState::without_case_keys`]), never a live state's.
    folded_cases: usize,
    /// Respondent keys of counted interviews that have no case here (none
    /// in practice: a counted interview makes its case, which carries
    /// [`Case::interviewed`]).
    interviewed_without_case: HashSet<u128>,
}

/// Equal when they hold the same cases, counts and durations, whatever
/// order their groups were first used in.
impl PartialEq for FieldworkState {
    fn eq(&self, other: &FieldworkState) -> bool {
        self.counts == other.counts
            && self.interviewers == other.interviewers
            && self.durations == other.durations
            && self.interviewer_durations == other.interviewer_durations
            && self.days == other.days
            && self.records == other.records
            && self.superseded == other.superseded
            && self.folded_cases == other.folded_cases
            && self.interviewed_without_case == other.interviewed_without_case
            && self.cases.len() == other.cases.len()
            && self.cases.iter().all(|(k, c)| {
                other.cases.get(k).is_some_and(|o| {
                    o.disposition == c.disposition
                        && o.time == c.time
                        && o.interviewed == c.interviewed
                        && other.group(o.group) == self.group(c.group)
                })
            })
    }
}

fn segment_key(segments: &[usize]) -> Vec<u16> {
    segments.iter().map(|&v| u16::try_from(v).unwrap_or(u16::MAX)).collect()
}

impl FieldworkState {
    /// Cases known (one per case key).
    pub fn cases(&self) -> usize {
        self.cases.len() + self.folded_cases
    }

    /// A copy without the case keys (the number of cases is kept): what
    /// reading needs, a few bytes per interview less. Cases are disjoint
    /// across partitions (a case's records share its key, so its
    /// partition), so such copies of partitions add up exactly.
    pub fn without_case_keys(&self) -> FieldworkState {
        FieldworkState {
            cases: HashMap::new(),
            groups: Vec::new(),
            group_ids: HashMap::new(),
            counts: self.counts.clone(),
            interviewers: self.interviewers.clone(),
            durations: self.durations.clone(),
            interviewer_durations: self.interviewer_durations.clone(),
            days: self.days.clone(),
            records: self.records,
            superseded: self.superseded,
            folded_cases: self.cases(),
            interviewed_without_case: HashSet::new(),
        }
    }

    /// Whether a counted interview had this respondent key (its hash).
    pub(crate) fn interviewed(&self, respondent: u128) -> bool {
        self.cases
            .get(&respondent)
            .map_or_else(|| self.interviewed_without_case.contains(&respondent), |c| c.interviewed)
    }

    /// Records that a counted interview had this respondent key (its
    /// hash), on its case, or aside when it has none.
    pub(crate) fn mark_interviewed(&mut self, respondent: u128) {
        match self.cases.get_mut(&respondent) {
            Some(c) => c.interviewed = true,
            None => {
                self.interviewed_without_case.insert(respondent);
            }
        }
    }

    /// The respondent keys (hashes) of counted interviews, in no order.
    pub(crate) fn interviewed_keys(&self) -> impl Iterator<Item = u128> + '_ {
        self.cases
            .iter()
            .filter(|(_, c)| c.interviewed)
            .map(|(k, _)| *k)
            .chain(self.interviewed_without_case.iter().copied())
    }

    /// Drops the case keys, keeping their number.
    pub fn fold_case_keys(&mut self) {
        self.folded_cases += self.cases.len();
        self.cases = HashMap::new();
        self.interviewed_without_case = HashSet::new();
        self.groups = Vec::new();
        self.group_ids = HashMap::new();
    }

    /// The index of a group, added if new.
    fn intern(&mut self, key: CountKey) -> u32 {
        if let Some(&id) = self.group_ids.get(&key) {
            return id;
        }
        let id = u32::try_from(self.groups.len()).unwrap_or(u32::MAX);
        self.groups.push(key.clone());
        self.group_ids.insert(key, id);
        id
    }

    fn group(&self, id: u32) -> Option<&CountKey> {
        self.groups.get(id as usize)
    }

    /// Makes `new` the case's disposition unless the case already has a
    /// later one. A record without a time counts as arriving after
    /// everything before it and keeps the case's time.
    /// `interview`: the record is a counted interview (marks the case
    /// [`Case::interviewed`], even when the record is older than the case's
    /// latest).
    fn update(
        &mut self,
        case: &str,
        key: CountKey,
        disposition: Disposition,
        time: Option<i64>,
        interview: bool,
    ) -> bool {
        self.records += 1;
        let hash = xxh3_128(case.as_bytes());
        let mut new = Case { disposition, time: time.unwrap_or(NO_TIME), group: 0, interviewed: interview };
        if let Some(old) = self.cases.get_mut(&hash) {
            old.interviewed |= interview;
            let old = *old;
            if let (Some(n), Some(o)) = (new.time(), old.time())
                && n < o
            {
                self.superseded += 1;
                return false;
            }
            if new.time == NO_TIME {
                new.time = old.time;
            }
            new.interviewed = old.interviewed;
            if let Some(old_key) = self.group(old.group).cloned()
                && let Some(c) = self.counts.get_mut(&old_key)
            {
                c[old.disposition.index()] = c[old.disposition.index()].saturating_sub(1);
            }
        }
        if !self.interviewed_without_case.is_empty() && self.interviewed_without_case.remove(&hash) {
            new.interviewed = true;
        }
        self.counts.entry(key.clone()).or_default()[disposition.index()] += 1;
        new.group = self.intern(key);
        self.cases.insert(hash, new);
        true
    }

    /// Applies a case's disposition. Returns false when the case already
    /// has a later one (the record changed nothing).
    pub fn apply_disposition(&mut self, study: &Study, d: &DispositionRecord) -> bool {
        let interviewer = self.interviewer_label_of(study, d.interviewer.as_deref());
        self.update(&d.case, (segment_key(&d.segments), interviewer), d.disposition, Some(d.time), false)
    }

    /// Applies a counted interview: a complete for its case (the respondent
    /// key is the case key) and its interviewer's quality counts. Returns
    /// whether it is a speeder.
    pub fn apply_interview(&mut self, study: &Study, rec: &Record, checked: &Checked) -> bool {
        let interviewer = self.interviewer_label_of(study, rec.interviewer.as_deref());
        let key = (segment_key(&rec.segments), interviewer.clone());
        self.update(&rec.respondent, key, Disposition::Complete, rec.ended_at, true);

        if let Some(day) = rec.ended_at.and_then(days::day_of) {
            *self.days.entry(day).or_default() += 1;
        }
        let cfg = &study.def.fieldwork;
        let mut speeder = false;
        if let Some(secs) = rec.duration_secs.and_then(|d| u32::try_from(d).ok()) {
            if self.durations.len() < study.forms.len() {
                self.durations.resize_with(study.forms.len(), Durations::default);
            }
            if let Some(durations) = self.durations.get_mut(rec.form) {
                speeder = interviewers::is_speeder(secs, durations, cfg);
                durations.insert(secs);
            }
            if study.forms.get(rec.form).is_some() {
                self.interviewer_durations.entry(interviewer.clone()).or_default().insert(secs);
            }
        }
        let stats = self.interviewers.entry(interviewer).or_default();
        if let Some(form) = study.forms.get(rec.form) {
            stats.add_interview(form, rec, checked, speeder);
        }
        speeder
    }

    /// The label of an interviewer id: a value of the study's dimension with
    /// `source: interviewer`, else `other` (`unknown` when none was given).
    /// Label values come only from the instrument: an interviewer id is a
    /// request string and never becomes a label by being seen.
    pub fn interviewer_label_of(&self, study: &Study, id: Option<&str>) -> String {
        if let Some(d) = interviewers::declared_dim(study) {
            return d.value_name(d.value_of(id)).to_string();
        }
        match id {
            None | Some("") => interviewers::UNKNOWN.to_string(),
            Some(_) => interviewers::OTHER.to_string(),
        }
    }

    /// Adds another state (of other partitions) into this one. Cases are
    /// disjoint across partitions; should one appear in both, the later
    /// record wins and the counts keep both.
    pub fn merge(&mut self, other: &FieldworkState) {
        self.folded_cases += other.folded_cases;
        self.merge_cases(other);
        self.merge_counts(other);
    }

    /// [`FieldworkState::merge`] without the case keys: their number is
    /// added (cases are disjoint across partitions).
    pub fn merge_summary(&mut self, other: &FieldworkState) {
        self.folded_cases += other.cases();
        self.merge_counts(other);
    }

    fn merge_cases(&mut self, other: &FieldworkState) {
        for (k, c) in &other.cases {
            match self.cases.get_mut(k) {
                Some(mine) if mine.time >= c.time => mine.interviewed |= c.interviewed,
                mine => {
                    let Some(key) = other.group(c.group).cloned() else { continue };
                    let interviewed = c.interviewed
                        || mine.is_some_and(|m| m.interviewed)
                        || self.interviewed_without_case.remove(k);
                    let group = self.intern(key);
                    self.cases.insert(*k, Case { group, interviewed, ..*c });
                }
            }
        }
        for k in &other.interviewed_without_case {
            self.mark_interviewed(*k);
        }
    }

    fn merge_counts(&mut self, other: &FieldworkState) {
        for (k, c) in &other.counts {
            let mine = self.counts.entry(k.clone()).or_default();
            for (a, b) in mine.iter_mut().zip(c) {
                *a += b;
            }
        }
        for (k, s) in &other.interviewers {
            self.interviewers.entry(k.clone()).or_default().add(s);
        }
        if self.durations.len() < other.durations.len() {
            self.durations.resize_with(other.durations.len(), Durations::default);
        }
        for (mine, theirs) in self.durations.iter_mut().zip(&other.durations) {
            mine.merge(theirs);
        }
        for (k, d) in &other.interviewer_durations {
            self.interviewer_durations.entry(k.clone()).or_default().merge(d);
        }
        for (day, n) in &other.days {
            *self.days.entry(*day).or_default() += n;
        }
        self.records += other.records;
        self.superseded += other.superseded;
    }

    /// Cases by disposition over every cell.
    pub fn total(&self) -> Counts {
        let mut out = Counts::default();
        for c in self.counts.values() {
            for (a, b) in out.iter_mut().zip(c) {
                *a += b;
            }
        }
        out
    }

    /// Cases by disposition per value slot of dimension `dim` (declared
    /// values, then `other` and `unknown`).
    pub fn by_dimension(&self, study: &Study, dim: usize) -> Vec<Counts> {
        let slots = study.dims.get(dim).map(|d| d.slots()).unwrap_or(0);
        let mut out = vec![Counts::default(); slots];
        for ((key, _), c) in &self.counts {
            if let Some(slot) = key.get(dim).and_then(|&v| out.get_mut(usize::from(v))) {
                for (a, b) in slot.iter_mut().zip(c) {
                    *a += b;
                }
            }
        }
        out
    }
}
