//! [`StudyState`] to and from its persisted form
//! (`proto/fieldwatch/state/v1/state.proto`, message `StudyState`), for
//! partition snapshots. Pure and deterministic: maps and sets are written
//! sorted, so the same state always gives the same bytes.

use std::collections::{HashMap, HashSet};

use super::{Cell, ItemCounts, StudyState};
use crate::fieldwork::FieldworkState;
pub use crate::fieldwork::wire::WireError;
use crate::fieldwork::wire::{entries, le, pack_keys, segments_in, segments_out, to_array};
use crate::proto::state as pb;
use crate::quality::Check;

/// Size of one entry of [`pb::StudyState::fingerprints`]: hash and count.
const FINGERPRINT_BYTES: usize = 16 + 4;

fn unpack_keys(bytes: &[u8], field: &'static str) -> Result<HashSet<u128>, WireError> {
    let entries = entries(bytes, 16, field)?;
    let mut out = HashSet::with_capacity(entries.len());
    out.extend(entries.map(|e| u128::from_le_bytes(le(e, 0))));
    Ok(out)
}

impl StudyState {
    /// The persisted form.
    pub fn to_wire(&self) -> pb::StudyState {
        let mut cells: Vec<(&Vec<u16>, &Cell)> = self.cells.iter().collect();
        cells.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut fingerprints: Vec<(u128, u32)> = self.fingerprints.iter().map(|(k, n)| (*k, *n)).collect();
        fingerprints.sort_unstable();
        let mut packed = Vec::with_capacity(fingerprints.len() * FINGERPRINT_BYTES);
        for (k, n) in fingerprints {
            packed.extend_from_slice(&k.to_le_bytes());
            packed.extend_from_slice(&n.to_le_bytes());
        }
        pb::StudyState {
            cells: cells
                .into_iter()
                .map(|(key, c)| pb::Cell {
                    segments: segments_out(key),
                    interviews: c.interviews.clone(),
                    items: c
                        .items
                        .iter()
                        .map(|i| pb::ItemCounts {
                            valid: i.valid,
                            categories: i.categories.clone(),
                            first: i.first.clone(),
                            sum: i.sum,
                            missing: i.missing.to_vec(),
                            excluded: i.excluded,
                        })
                        .collect(),
                })
                .collect(),
            flags: self
                .flags
                .iter()
                .map(|((form, check, code), n)| pb::FlagCount {
                    form: u32::try_from(*form).unwrap_or(u32::MAX),
                    check: check.as_str().to_string(),
                    code: code.map(|c| u32::try_from(c).unwrap_or(u32::MAX)),
                    count: *n,
                })
                .collect(),
            retries: self.retries,
            duplicate_respondents: self.duplicate_respondents,
            fieldwork: Some(self.fieldwork.to_wire()),
            seen_submissions: pack_keys(self.seen_submissions.iter().copied()),
            respondents: pack_keys(self.respondents.iter().copied()),
            fingerprints: packed,
        }
    }

    /// Reads the persisted form.
    pub fn from_wire(w: pb::StudyState) -> Result<StudyState, WireError> {
        let mut st = StudyState::new();
        for c in w.cells {
            let items = c
                .items
                .into_iter()
                .map(|i| {
                    Ok(ItemCounts {
                        valid: i.valid,
                        categories: i.categories,
                        first: i.first,
                        sum: i.sum,
                        missing: to_array(&i.missing, "items.missing")?,
                        excluded: i.excluded,
                    })
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            st.cells.insert(segments_in(&c.segments)?, Cell { interviews: c.interviews, items });
        }
        for f in w.flags {
            let check = Check::ALL
                .into_iter()
                .find(|c| c.as_str() == f.check)
                .ok_or_else(|| WireError::UnknownCheck(f.check.clone()))?;
            st.flags.insert((f.form as usize, check, f.code.map(|c| c as usize)), f.count);
        }
        st.retries = w.retries;
        st.duplicate_respondents = w.duplicate_respondents;
        st.fieldwork = w.fieldwork.map(FieldworkState::from_wire).transpose()?.unwrap_or_default();
        st.seen_submissions = unpack_keys(&w.seen_submissions, "seen_submissions")?;
        st.respondents = unpack_keys(&w.respondents, "respondents")?;
        let fps = entries(&w.fingerprints, FINGERPRINT_BYTES, "fingerprints")?;
        let mut fingerprints = HashMap::with_capacity(fps.len());
        fingerprints.extend(fps.map(|e| (u128::from_le_bytes(le(e, 0)), u32::from_le_bytes(le(e, 16)))));
        st.fingerprints = fingerprints;
        Ok(st)
    }
}
