//! [`StudyState`] to and from its persisted form
//! (`proto/fieldwatch/state/v1/state.proto`, message `StudyState`), for
//! partition snapshots. Pure and deterministic: maps and sets are written
//! sorted, so the same state always gives the same bytes.

use std::collections::{HashMap, HashSet};

use super::{Cell, Fingerprint, ItemCounts, Origin, StudyState};
use crate::fieldwork::FieldworkState;
pub use crate::fieldwork::wire::WireError;
use crate::fieldwork::wire::{entries, le, pack_keys, segments_in, segments_out, to_array};
use crate::proto::state as pb;
use crate::quality::Check;

/// Size of one entry of [`pb::StudyState::fingerprints`]: hash and count.
const FINGERPRINT_BYTES: usize = 16 + 4;
/// Size of one entry of [`pb::StudyState::fingerprint_firsts`]: received
/// at (ms), partition, offset, superseded.
const FIRST_BYTES: usize = 8 + 4 + 8 + 1;

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
        let mut fingerprints: Vec<(u128, Fingerprint)> =
            self.fingerprints.iter().map(|(k, f)| (*k, *f)).collect();
        fingerprints.sort_unstable_by_key(|(k, _)| *k);
        let mut packed = Vec::with_capacity(fingerprints.len() * FINGERPRINT_BYTES);
        let mut firsts = Vec::with_capacity(fingerprints.len() * FIRST_BYTES);
        for (k, f) in fingerprints {
            packed.extend_from_slice(&k.to_le_bytes());
            packed.extend_from_slice(&f.count.to_le_bytes());
            firsts.extend_from_slice(&f.first.received_at_ms.to_le_bytes());
            firsts.extend_from_slice(&f.first.partition.to_le_bytes());
            firsts.extend_from_slice(&f.first.offset.to_le_bytes());
            firsts.push(u8::from(f.superseded));
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
            respondents: pack_keys(self.fieldwork.interviewed_keys()),
            fingerprints: packed,
            fingerprint_firsts: firsts,
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
        for k in entries(&w.respondents, 16, "respondents")? {
            st.fieldwork.mark_interviewed(u128::from_le_bytes(le(k, 0)));
        }
        let fps = entries(&w.fingerprints, FINGERPRINT_BYTES, "fingerprints")?;
        // Format 4 kept no first copies: each fingerprint's first then
        // reads as the earliest possible one (so it is never flagged late).
        let mut firsts = if w.fingerprint_firsts.is_empty() {
            None
        } else {
            let f = entries(&w.fingerprint_firsts, FIRST_BYTES, "fingerprint_firsts")?;
            // One entry per fingerprint, or the two fields do not belong together.
            if f.len() != fps.len() {
                return Err(WireError::OutOfRange("fingerprint_firsts"));
            }
            Some(f)
        };
        let mut fingerprints = HashMap::with_capacity(fps.len());
        for e in fps {
            let (first, superseded) = match firsts.as_mut().and_then(|f| f.next()) {
                Some(x) => (
                    Origin {
                        received_at_ms: i64::from_le_bytes(le(x, 0)),
                        partition: i32::from_le_bytes(le(x, 8)),
                        offset: i64::from_le_bytes(le(x, 12)),
                    },
                    x[20] != 0,
                ),
                None => (Origin { received_at_ms: i64::MIN, partition: i32::MIN, offset: i64::MIN }, false),
            };
            let count = u32::from_le_bytes(le(e, 16));
            fingerprints.insert(u128::from_le_bytes(le(e, 0)), Fingerprint { count, first, superseded });
        }
        st.fingerprints = fingerprints;
        Ok(st)
    }
}
