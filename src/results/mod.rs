//! Results: mergeable counts per study and the toplines computed from them.
//!
//! [`StudyState`] applies validated, checked records: it recognises retries
//! (same submission id: counted once, never flagged), duplicate respondents
//! (same respondent, new submission id: flagged, the first one counts) and
//! possible duplicates (identical answers under another respondent), and
//! keeps counts per segment cell — every combination of the study's
//! dimension values — per canonical item and value. States of different
//! partitions merge by addition ([`StudyState::merge`]); because a
//! respondent's records always land on one partition, the merged state is the
//! state of the whole stream. [`toplines`] turns a state into the tables
//! project managers read. Pure.

pub mod flags;
pub mod quotas;
pub mod toplines;
pub mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

pub use toplines::{Toplines, toplines};

use crate::fieldwork::{DispositionRecord, FieldworkState};
use crate::instrument::{CodeInfo, KindDef, Opt, Study};
use crate::quality::{Check, Checked, Missing, Status};
use crate::validate::{Record, Value};

/// Counts for one canonical item in one segment cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemCounts {
    /// Valid answers (respondents who answered, for multi-selects).
    pub valid: u64,
    /// Per category of the code (scale point, option): answers, or
    /// respondents who picked it for multi-selects.
    pub categories: Vec<u64>,
    /// Ranked multi-selects: respondents who ranked the category first.
    pub first: Vec<u64>,
    /// Sum of valid numeric values (scales, counts, numbers).
    pub sum: f64,
    /// Missing answers by [`Missing::index`].
    pub missing: [u64; 6],
    /// Values excluded by a quality flag.
    pub excluded: u64,
}

/// Counts for one segment cell (one combination of dimension values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Counted interviews by form index.
    pub interviews: Vec<u64>,
    /// Per canonical code index.
    pub items: Vec<ItemCounts>,
}

/// What applying a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Counted. `possible_duplicate` when another respondent gave identical answers.
    Counted {
        /// Identical answers were seen under another respondent.
        possible_duplicate: bool,
        /// Much shorter than its form's median so far (see [`crate::fieldwork`]).
        speeder: bool,
    },
    /// The submission id was seen before: nothing changed but the retry count.
    Retry,
    /// The respondent was seen under another submission id: flagged, not counted.
    DuplicateRespondent,
}

/// Key of a flag counter: form index, check, canonical code index (if the flag is on an item).
pub type FlagKey = (usize, Check, Option<usize>);

/// The live (or offline) state of one study. Persisted in partition
/// snapshots through [`wire`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudyState {
    /// Segment key (value index per dimension) -> counts.
    pub cells: HashMap<Vec<u16>, Cell>,
    /// Quality flags raised on counted interviews, and duplicate-respondent flags.
    pub flags: BTreeMap<FlagKey, u64>,
    /// Retries: submissions seen again.
    pub retries: u64,
    /// Duplicate respondents: new submission ids for a respondent already counted.
    pub duplicate_respondents: u64,
    /// Case dispositions and interviewer quality (a counted interview is a
    /// complete for its case).
    pub fieldwork: FieldworkState,
    seen_submissions: HashSet<u128>,
    fingerprints: HashMap<u128, Fingerprint>,
    /// Possible duplicates whose fingerprints this state no longer holds:
    /// a summary's (see [`StudyState::summary`]), never a live state's.
    folded_duplicates: u64,
}

/// Where a record sits in the stream, for ordering copies of the same
/// answers across partitions: when ingest received it (Unix ms; 0
/// offline), then partition, then offset (offline: partition 0 and the line
/// number, so line order decides). Compared in that field order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// When ingest received the record, Unix milliseconds (0 when unknown).
    pub received_at_ms: i64,
    /// Responses partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// One answer fingerprint of a state: how many counted interviews gave
/// these answers and where the first of them sits. In a partition's state
/// `first` is the partition's first copy (the one left unflagged at apply)
/// and `superseded` says it was flagged later because a copy in another
/// partition came first study-wide (see [`late_duplicates`]).
/// In a merged state `first` is the earliest over the merged states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Counted interviews with these answers.
    pub count: u32,
    /// The first of them (the smallest [`Origin`]).
    pub first: Origin,
    /// The first one was flagged as a possible duplicate after the fact.
    pub superseded: bool,
}

/// Room for a record's fingerprint bytes ([`value_hash`] of each answer)
/// from the start: the demo study's longest form takes about 700.
const FINGERPRINT_BYTES: usize = 1024;

thread_local! {
    /// The fingerprint buffer of this thread's last interview, kept for the
    /// next: one buffer per thread that applies, instead of an allocation
    /// (and often a regrowth) per interview.
    static FINGERPRINT_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// An empty fingerprint buffer with room for [`FINGERPRINT_BYTES`]: this
/// thread's kept one ([`FINGERPRINT_BUF`]); [`finish_fingerprint`] hands
/// it back. A nested call gets a new one.
fn fingerprint_buf() -> Vec<u8> {
    let mut buf = FINGERPRINT_BUF.take();
    buf.clear();
    buf.reserve(FINGERPRINT_BYTES);
    buf
}

/// The fingerprint of an interview with `substantive` compared answers
/// whose bytes are `buf` (none below the study's minimum); keeps `buf` for
/// this thread's next [`fingerprint_buf`].
fn finish_fingerprint(study: &Study, substantive: u32, buf: Vec<u8>) -> Option<u128> {
    let hash = (substantive >= study.def.reporting.fingerprint_min_answers.max(1)).then(|| xxh3_128(&buf));
    FINGERPRINT_BUF.set(buf);
    hash
}

/// Appends the bytes that identify one valid answer to an interview's
/// fingerprint: the canonical code and the value, picks by their option
/// codes in code order, so the fingerprint depends neither on the order of
/// the picks nor on the order of the options in the instrument.
fn value_hash(info: &CodeInfo, code: usize, v: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(&(code as u32).to_le_bytes());
    match v {
        Value::Int(i) => out.extend_from_slice(&i.to_le_bytes()),
        Value::Num(n) => out.extend_from_slice(&n.to_bits().to_le_bytes()),
        Value::Code(c) => out.extend_from_slice(info.option_code(c).as_bytes()),
        Value::Choices(cs) => {
            sorted_picks(info, cs.iter().map(|c| (c, 0)), |c, _| {
                out.extend_from_slice(c.as_bytes());
                out.push(0);
            });
        }
        Value::Ranked(rs) => {
            sorted_picks(info, rs.iter().map(|(c, r)| (c, *r)), |c, r| {
                out.extend_from_slice(c.as_bytes());
                out.extend_from_slice(&r.to_le_bytes());
            });
        }
        Value::Text | Value::Blank | Value::Missing(_) => {}
    }
    out.push(0xff);
}

/// Calls `emit` with each `(code, rank)` pick in the order of `(code,
/// rank)`. Listed options sort by their precomputed value rank, on the
/// stack when there are few; any unlisted one sorts the codes themselves.
fn sorted_picks<'a>(
    info: &'a CodeInfo,
    picks: impl ExactSizeIterator<Item = (&'a Opt, i64)> + Clone,
    mut emit: impl FnMut(&str, i64),
) {
    const ON_STACK: usize = 32;
    let rank = |o: &Opt| match o {
        Opt::Known(k) => info.value_rank.get(*k as usize).copied(),
        Opt::Unknown(_) => None,
    };
    if picks.len() <= ON_STACK && picks.clone().all(|(o, _)| rank(o).is_some()) {
        let mut buf = [(0u32, 0i64, 0u32); ON_STACK];
        let mut n = 0;
        for (o, r) in picks {
            if let (Some(v), Opt::Known(k)) = (rank(o), o) {
                buf[n] = (v, r, *k);
                n += 1;
            }
        }
        buf[..n].sort_unstable();
        for (_, r, k) in &buf[..n] {
            emit(info.option_code(&Opt::Known(*k)), *r);
        }
    } else {
        let mut all: Vec<(&str, i64)> = picks.map(|(o, r)| (info.option_code(o), r)).collect();
        all.sort_unstable();
        for (c, r) in all {
            emit(c, r);
        }
    }
}

impl StudyState {
    /// An empty state.
    pub fn new() -> StudyState {
        StudyState::default()
    }

    /// Counted interviews in all cells and forms.
    pub fn interviews(&self) -> u64 {
        self.cells.values().flat_map(|c| c.interviews.iter()).sum()
    }

    /// Possible duplicates: interviews whose answers equal an earlier one's.
    /// Derived from the fingerprints, so it survives merging.
    pub fn possible_duplicates(&self) -> u64 {
        self.fingerprints.values().map(|f| u64::from(f.count.saturating_sub(1))).sum::<u64>()
            + self.folded_duplicates
    }

    /// Adds possible duplicates found outside this state's fingerprints: a
    /// summary's copies whose originals are in other partitions (the
    /// study-wide view counts them over every partition's fingerprints).
    pub fn add_folded_duplicates(&mut self, n: u64) {
        self.folded_duplicates += n;
    }

    /// Submission ids seen (counted, retried or duplicate).
    pub fn submissions_seen(&self) -> usize {
        self.seen_submissions.len()
    }

    /// Possible-duplicate flags raised (at apply, and late ones, see
    /// [`late_duplicates`]): additive over partitions, so a sum
    /// over instances is exact. Equals [`StudyState::possible_duplicates`]
    /// study-wide once every late flag is raised.
    pub fn possible_duplicate_flags(&self) -> u64 {
        self.flags.iter().filter(|((_, c, _), _)| *c == Check::PossibleDuplicate).map(|(_, n)| n).sum()
    }

    /// The answer fingerprints (hash -> entry).
    pub fn fingerprints(&self) -> &HashMap<u128, Fingerprint> {
        &self.fingerprints
    }

    /// The answer fingerprints as a list (hash, entry), in no particular
    /// order: what the study-wide view compares across partitions, at 48
    /// bytes a fingerprint where the map takes 77 to 98 (see
    /// [`late_duplicates`]).
    pub fn fingerprint_list(&self) -> Vec<(u128, Fingerprint)> {
        self.fingerprints.iter().map(|(k, f)| (*k, *f)).collect()
    }

    /// Flags the first copy of fingerprint `hash` (of form index `form`) as a
    /// possible duplicate after the fact; false (nothing changed) when the
    /// fingerprint is unknown or already superseded.
    pub fn supersede(&mut self, hash: u128, form: usize) -> bool {
        match self.fingerprints.get_mut(&hash) {
            Some(f) if !f.superseded => {
                f.superseded = true;
                *self.flags.entry((form, Check::PossibleDuplicate, None)).or_default() += 1;
                true
            }
            _ => false,
        }
    }

    /// The answer fingerprint of a record, as [`StudyState::apply`] keys it;
    /// none when it has too few substantive answers to be compared.
    pub fn fingerprint_of(study: &Study, rec: &Record, checked: &Checked) -> Option<u128> {
        let form = study.forms.get(rec.form)?;
        let mut fp = fingerprint_buf();
        let mut substantive = 0u32;
        for (i, item) in form.items.iter().enumerate() {
            let value = rec.answers.get(i).unwrap_or(&Value::Blank);
            if checked.status.get(i).copied() == Some(Status::Valid) && !matches!(value, Value::Text) {
                substantive += 1;
                value_hash(&study.codes[item.code], item.code, value, &mut fp);
            }
        }
        finish_fingerprint(study, substantive, fp)
    }

    /// Applies one validated and checked record from an unknown place in
    /// the stream ([`Origin::default`]).
    pub fn apply(&mut self, study: &Study, rec: &Record, checked: &Checked) -> Applied {
        self.apply_at(study, rec, checked, Origin::default())
    }

    /// Applies one validated and checked record found at `origin`.
    pub fn apply_at(&mut self, study: &Study, rec: &Record, checked: &Checked, origin: Origin) -> Applied {
        if !self.seen_submissions.insert(xxh3_128(rec.submission_id.as_bytes())) {
            self.retries += 1;
            return Applied::Retry;
        }
        // Respondent keys of counted interviews are kept on their cases
        // (`FieldworkState::interviewed`): the case map has every one anyway.
        let respondent = xxh3_128(rec.respondent.as_bytes());
        if self.fieldwork.interviewed(respondent) {
            self.duplicate_respondents += 1;
            *self.flags.entry((rec.form, Check::DuplicateRespondent, None)).or_default() += 1;
            return Applied::DuplicateRespondent;
        }
        let Some(form) = study.forms.get(rec.form) else {
            self.fieldwork.mark_interviewed(respondent);
            return Applied::Counted { possible_duplicate: false, speeder: false };
        };

        let key: Vec<u16> = rec.segments.iter().map(|&v| u16::try_from(v).unwrap_or(u16::MAX)).collect();
        let cell = self.cells.entry(key).or_default();
        if cell.interviews.len() < study.forms.len() {
            cell.interviews.resize(study.forms.len(), 0);
        }
        cell.interviews[rec.form] += 1;
        if cell.items.len() < study.codes.len() {
            cell.items.resize_with(study.codes.len(), ItemCounts::default);
        }

        let mut fp = fingerprint_buf();
        let mut substantive = 0u32;
        for (i, item) in form.items.iter().enumerate() {
            let counts = &mut cell.items[item.code];
            let info = &study.codes[item.code];
            let value = rec.answers.get(i).unwrap_or(&Value::Blank);
            match checked.status.get(i).copied().unwrap_or(Status::Missing(Missing::Blank)) {
                Status::Missing(m) => counts.missing[m.index()] += 1,
                Status::Excluded => counts.excluded += 1,
                Status::Valid => {
                    if counts.categories.len() < info.categories.len() {
                        counts.categories.resize(info.categories.len(), 0);
                    }
                    let cat = |o: &Opt| match o {
                        Opt::Known(k) => Some(*k as usize),
                        Opt::Unknown(_) => None,
                    };
                    match value {
                        Value::Int(x) => {
                            counts.sum += *x as f64;
                            if let KindDef::Scale { min, .. } = info.kind
                                && let Some(slot) =
                                    usize::try_from(x - min).ok().and_then(|s| counts.categories.get_mut(s))
                            {
                                *slot += 1;
                            }
                        }
                        Value::Num(x) => counts.sum += *x,
                        Value::Code(c) => {
                            if let Some(slot) = cat(c).and_then(|k| counts.categories.get_mut(k)) {
                                *slot += 1;
                            }
                        }
                        Value::Choices(cs) => {
                            for c in cs {
                                if let Some(slot) = cat(c).and_then(|k| counts.categories.get_mut(k)) {
                                    *slot += 1;
                                }
                            }
                        }
                        Value::Ranked(rs) => {
                            if counts.first.len() < info.categories.len() {
                                counts.first.resize(info.categories.len(), 0);
                            }
                            for (c, r) in rs {
                                if let Some(k) = cat(c).filter(|&k| k < counts.categories.len()) {
                                    counts.categories[k] += 1;
                                    if *r == 1 {
                                        counts.first[k] += 1;
                                    }
                                }
                            }
                        }
                        Value::Text | Value::Blank | Value::Missing(_) => {}
                    }
                    counts.valid += 1;
                    if !matches!(value, Value::Text) {
                        substantive += 1;
                        value_hash(info, item.code, value, &mut fp);
                    }
                }
            }
        }
        for f in &checked.flags {
            let code = f.item.and_then(|i| form.items.get(i)).map(|it| it.code);
            *self.flags.entry((rec.form, f.check, code)).or_default() += 1;
        }
        let mut possible_duplicate = false;
        if let Some(hash) = finish_fingerprint(study, substantive, fp) {
            let n = self.fingerprints.entry(hash).or_insert(Fingerprint {
                count: 0,
                first: origin,
                superseded: false,
            });
            n.count += 1;
            if n.count > 1 {
                possible_duplicate = true;
                *self.flags.entry((rec.form, Check::PossibleDuplicate, None)).or_default() += 1;
            }
        }
        let speeder = self.fieldwork.apply_interview(study, rec, checked);
        if speeder {
            *self.flags.entry((rec.form, Check::Speeder, None)).or_default() += 1;
        }
        Applied::Counted { possible_duplicate, speeder }
    }

    /// Applies a case's disposition; false when the case already has a
    /// later one (see [`FieldworkState::apply_disposition`]).
    pub fn apply_disposition(&mut self, study: &Study, d: &DispositionRecord) -> bool {
        self.fieldwork.apply_disposition(study, d)
    }

    /// A summary for reading (the study-wide view's part of one partition):
    /// every count, without the sets of seen submission ids, respondents,
    /// case keys and answer fingerprints, which only applying needs (the
    /// numbers of cases and possible duplicates are kept). The view
    /// compares fingerprints across partitions from
    /// [`StudyState::fingerprint_list`].
    pub fn counts_only(&self) -> StudyState {
        StudyState {
            cells: self.cells.clone(),
            flags: self.flags.clone(),
            retries: self.retries,
            duplicate_respondents: self.duplicate_respondents,
            fieldwork: self.fieldwork.without_case_keys(),
            seen_submissions: HashSet::new(),
            fingerprints: HashMap::new(),
            folded_duplicates: self.possible_duplicates(),
        }
    }

    /// [`StudyState::counts_only`] of a state no longer needed as a whole.
    pub fn into_counts_only(mut self) -> StudyState {
        self.folded_duplicates = self.possible_duplicates();
        self.seen_submissions = HashSet::new();
        self.fingerprints = HashMap::new();
        self.fieldwork.fold_case_keys();
        self
    }

    /// Adds another state (of other partitions) into this one.
    pub fn merge(&mut self, other: &StudyState) {
        self.merge_with(other, true);
    }

    /// Adds the counts of another state (of other partitions) into this
    /// one without its per-interview keys: the result is a summary, whose
    /// size does not grow with the interviews (but for durations, kept for
    /// exact medians). Possible duplicates and cases are added as numbers,
    /// so the copies of answers in two partitions merged this way are not
    /// recognised; the study-wide view adds them with
    /// [`StudyState::add_folded_duplicates`].
    pub fn merge_summary(&mut self, other: &StudyState) {
        self.merge_with(other, false);
    }

    fn merge_with(&mut self, other: &StudyState, keys: bool) {
        for (k, c) in &other.cells {
            let mine = self.cells.entry(k.clone()).or_default();
            add_vec(&mut mine.interviews, &c.interviews);
            if mine.items.len() < c.items.len() {
                mine.items.resize_with(c.items.len(), ItemCounts::default);
            }
            for (a, b) in mine.items.iter_mut().zip(&c.items) {
                a.valid += b.valid;
                add_vec(&mut a.categories, &b.categories);
                add_vec(&mut a.first, &b.first);
                a.sum += b.sum;
                for (x, y) in a.missing.iter_mut().zip(b.missing) {
                    *x += y;
                }
                a.excluded += b.excluded;
            }
        }
        for (k, n) in &other.flags {
            *self.flags.entry(*k).or_default() += n;
        }
        self.retries += other.retries;
        self.duplicate_respondents += other.duplicate_respondents;
        if !keys {
            self.folded_duplicates += other.possible_duplicates();
            self.fieldwork.merge_summary(&other.fieldwork);
            return;
        }
        self.folded_duplicates += other.folded_duplicates;
        self.seen_submissions.extend(&other.seen_submissions);
        for (k, f) in &other.fingerprints {
            match self.fingerprints.get_mut(k) {
                Some(m) => {
                    m.count += f.count;
                    m.first = m.first.min(f.first);
                    m.superseded |= f.superseded;
                }
                None => {
                    self.fingerprints.insert(*k, *f);
                }
            }
        }
        self.fieldwork.merge(&other.fieldwork);
    }
}

/// The fingerprints of a partition's state (its [`StudyState::fingerprint_list`])
/// whose first copy there is not the first study-wide (`earliest` gives a
/// fingerprint's first copy over every partition's state known, this one
/// included) and was not flagged yet: each is a possible duplicate of an
/// earlier copy in another partition, to flag late with
/// [`StudyState::supersede`]. In origin order. The earliest known copy can
/// only get earlier as more records are seen, so a fingerprint listed once
/// stays listed until superseded: every copy but the study-wide first is
/// flagged exactly once.
pub fn late_duplicates(
    fingerprints: &[(u128, Fingerprint)],
    earliest: impl Fn(u128) -> Option<Origin>,
) -> Vec<(u128, Origin)> {
    let mut out: Vec<(u128, Origin)> = fingerprints
        .iter()
        .filter(|(_, f)| !f.superseded && f.count > 0)
        .filter(|(k, f)| earliest(*k).is_some_and(|first| first < f.first))
        .map(|(k, f)| (*k, f.first))
        .collect();
    out.sort_unstable_by_key(|(_, o)| *o);
    out
}

fn add_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

#[cfg(test)]
mod tests;

/// Fieldwork through [`StudyState`]: dispositions, interviewer quality, speeders, flags.
#[cfg(test)]
mod fieldwork_tests;
