//! [`FieldworkState`] to and from its persisted form
//! (`proto/fieldwatch/state/v1/state.proto`, message `Fieldwork`), for
//! partition snapshots; and the packed byte layouts the persisted states
//! share. Pure.
//!
//! Encoding is deterministic: groups, cases and interviewers are written
//! in sorted order, so the same state always gives the same bytes.

use std::collections::HashMap;

use super::{Case, CountKey, Counts, Disposition, Durations, FieldworkState, InterviewerStats};
use crate::proto::state as pb;

/// Errors reading a persisted state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// A packed field's length is not a whole number of entries.
    #[error("packed field `{0}` has a partial entry")]
    PartialEntry(&'static str),
    /// A value does not fit its type, or an index points nowhere.
    #[error("`{0}` is out of range")]
    OutOfRange(&'static str),
    /// A quality check name this build does not know.
    #[error("unknown quality check `{0}`")]
    UnknownCheck(String),
}

/// Size of one case in [`pb::Fieldwork::cases`]: key, disposition, time, group.
const CASE_BYTES: usize = 16 + 1 + 8 + 4;

/// Packs 128-bit keys as 16 little-endian bytes each, sorted.
pub(crate) fn pack_keys(keys: impl Iterator<Item = u128>) -> Vec<u8> {
    let mut keys: Vec<u128> = keys.collect();
    keys.sort_unstable();
    let mut out = Vec::with_capacity(keys.len() * 16);
    for k in keys {
        out.extend_from_slice(&k.to_le_bytes());
    }
    out
}

/// Reads the entries of a packed field of `size`-byte entries.
pub(crate) fn entries<'a>(
    bytes: &'a [u8],
    size: usize,
    field: &'static str,
) -> Result<std::slice::ChunksExact<'a, u8>, WireError> {
    if !bytes.len().is_multiple_of(size) {
        return Err(WireError::PartialEntry(field));
    }
    Ok(bytes.chunks_exact(size))
}

/// The little-endian integer in `N` bytes of `b` from `at`.
pub(crate) fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

/// Fills a fixed array from a repeated field (shorter: the rest stays 0).
pub(crate) fn to_array<const N: usize>(v: &[u64], field: &'static str) -> Result<[u64; N], WireError> {
    if v.len() > N {
        return Err(WireError::OutOfRange(field));
    }
    let mut out = [0u64; N];
    out[..v.len()].copy_from_slice(v);
    Ok(out)
}

/// A segment key as persisted.
pub(crate) fn segments_out(key: &[u16]) -> Vec<u32> {
    key.iter().map(|&v| u32::from(v)).collect()
}

/// A persisted segment key.
pub(crate) fn segments_in(key: &[u32]) -> Result<Vec<u16>, WireError> {
    key.iter().map(|&v| u16::try_from(v).map_err(|_| WireError::OutOfRange("segments"))).collect()
}

impl FieldworkState {
    /// The persisted form.
    pub fn to_wire(&self) -> pb::Fieldwork {
        // Groups in key order; every case's group is among them.
        let mut keys: Vec<&CountKey> = self.counts.keys().collect();
        for c in self.cases.values() {
            if let Some(k) = self.group(c.group)
                && !self.counts.contains_key(k)
            {
                keys.push(k);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let index: HashMap<&CountKey, u32> =
            keys.iter().enumerate().map(|(i, k)| (*k, u32::try_from(i).unwrap_or(u32::MAX))).collect();
        let groups = keys
            .iter()
            .map(|k| pb::CaseGroup {
                segments: segments_out(&k.0),
                interviewer: k.1.clone(),
                counts: self.counts.get(*k).map(|c| c.to_vec()).unwrap_or_default(),
            })
            .collect();

        let mut cases: Vec<(&u128, &Case)> = self.cases.iter().collect();
        cases.sort_unstable_by_key(|(k, _)| **k);
        let mut packed = Vec::with_capacity(cases.len() * CASE_BYTES);
        for (k, c) in cases {
            let group = self.group(c.group).and_then(|g| index.get(g)).copied().unwrap_or(u32::MAX);
            packed.extend_from_slice(&k.to_le_bytes());
            packed.push(c.disposition.index() as u8);
            packed.extend_from_slice(&c.time.to_le_bytes());
            packed.extend_from_slice(&group.to_le_bytes());
        }

        pb::Fieldwork {
            groups,
            cases: packed,
            interviewers: self
                .interviewers
                .iter()
                .map(|(label, s)| pb::InterviewerStats {
                    label: label.clone(),
                    interviews: s.interviews,
                    timed: s.timed,
                    duration_secs: s.duration_secs,
                    speeders: s.speeders,
                    asked: s.asked,
                    nonresponse: s.nonresponse,
                    dont_know: s.dont_know,
                    refused: s.refused,
                    straightlining: s.straightlining,
                    scale_answers: s.scale_answers,
                    extreme_answers: s.extreme_answers,
                    durations: self
                        .interviewer_durations
                        .get(label)
                        .map(Durations::sorted)
                        .unwrap_or_default(),
                })
                .collect(),
            durations: self.durations.iter().map(|d| pb::FormDurations { secs: d.sorted() }).collect(),
            records: self.records,
            superseded: self.superseded,
            days: self.days.iter().map(|(&day, &interviews)| pb::DayCount { day, interviews }).collect(),
        }
    }

    /// Reads the persisted form.
    pub fn from_wire(w: pb::Fieldwork) -> Result<FieldworkState, WireError> {
        let mut st = FieldworkState::default();
        let mut ids = Vec::with_capacity(w.groups.len());
        for g in w.groups {
            let key: CountKey = (segments_in(&g.segments)?, g.interviewer);
            let counts: Counts = to_array(&g.counts, "groups.counts")?;
            // A group only some case names (no counts entry) has none.
            if !g.counts.is_empty() {
                st.counts.insert(key.clone(), counts);
            }
            ids.push(st.intern(key));
        }
        st.cases.reserve(w.cases.len() / CASE_BYTES);
        for c in entries(&w.cases, CASE_BYTES, "cases")? {
            let disposition = *Disposition::ALL
                .get(usize::from(c[16]))
                .ok_or(WireError::OutOfRange("cases.disposition"))?;
            let time = i64::from_le_bytes(le(c, 17));
            let group = ids
                .get(u32::from_le_bytes(le(c, 25)) as usize)
                .copied()
                .ok_or(WireError::OutOfRange("cases.group"))?;
            // A case is marked interviewed from the study's respondent keys
            // (`results::wire`), read after the fieldwork.
            let case = Case { disposition, time, group, interviewed: false };
            st.cases.insert(u128::from_le_bytes(le(c, 0)), case);
        }
        st.interviewers = w
            .interviewers
            .into_iter()
            .map(|mut s| {
                if !s.durations.is_empty() {
                    let d = Durations::from_vec(std::mem::take(&mut s.durations));
                    st.interviewer_durations.insert(s.label.clone(), d);
                }
                let stats = InterviewerStats {
                    interviews: s.interviews,
                    timed: s.timed,
                    duration_secs: s.duration_secs,
                    speeders: s.speeders,
                    asked: s.asked,
                    nonresponse: s.nonresponse,
                    dont_know: s.dont_know,
                    refused: s.refused,
                    straightlining: s.straightlining,
                    scale_answers: s.scale_answers,
                    extreme_answers: s.extreme_answers,
                };
                (s.label, stats)
            })
            .collect();
        st.durations = w.durations.into_iter().map(|d| Durations::from_vec(d.secs)).collect();
        st.records = w.records;
        st.superseded = w.superseded;
        for d in w.days {
            *st.days.entry(d.day).or_default() += d.interviews;
        }
        Ok(st)
    }
}
