//! The aggregator's path for a record, from the bytes in the responses
//! topic to the partition's state: [`LiveState::prepare`] decodes the
//! envelope and runs the part of [`crate::pipeline`] that reads no state
//! (validate, check), outside the lock and on any thread;
//! [`LiveState::apply_batch`] then applies prepared records in order under
//! the lock, by the partition's offset rules ([`super::offsets`]). The
//! consumer loop prepares the records ready in its queue on several threads
//! while it applies them ([`super::batch`]); [`LiveState::apply_record`]
//! is one record's path.

use std::sync::Arc;

use super::flag_publisher::QualityRecord;
use super::offsets::Admit;
use super::state::Inner;
use super::{LiveState, Outcome};
use crate::fieldwork::DispositionSubmission;
use crate::instrument::Study;
use crate::pipeline;
use crate::proto::envelope::{self, EnvelopeRef};
use crate::validate::Submission;

/// When ingest received the record, in milliseconds since the Unix epoch.
pub(super) fn received_at_of(received_at: Option<&prost_types::Timestamp>) -> Option<i64> {
    received_at.and_then(|t| {
        chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            .map(|t| t.timestamp_millis())
    })
}

/// A record's payload prepared for applying ([`LiveState::prepare`]).
// Nearly every record is `Ready`: boxing it would allocate once more per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum PreparedRecord<'a> {
    /// Not an envelope, or one with neither an interview nor a disposition.
    DecodeError,
    /// An envelope of a study the catalog does not have.
    UnknownStudy,
    /// Validated and checked against its study.
    Ready {
        /// The record's study.
        study: &'a Arc<Study>,
        /// When ingest received it (milliseconds since the Unix epoch), if
        /// the envelope says.
        received_at_ms: Option<i64>,
        /// The pipeline's part that reads no state.
        prepared: pipeline::Prepared,
    },
}

/// A batch being applied: what was done so far and the partitions with a
/// gap, whose later records are left out.
#[derive(Default)]
pub(super) struct Applying {
    pub(super) done: Vec<Done>,
    gaps: Vec<i32>,
}

/// One record's result: its partition, offset, what happened and, for a
/// flagged interview, its quality record.
pub type Done = (i32, i64, Outcome, Option<QualityRecord>);

impl LiveState {
    /// Applies the record at `offset` of `partition`.
    pub fn apply(&self, partition: i32, offset: i64, payload: Option<&[u8]>) -> Outcome {
        self.apply_record(partition, offset, payload).0
    }

    /// Applies the record at `offset` of `partition`; returns what happened
    /// and, for a flagged interview, the record for the quality topic.
    pub fn apply_record(
        &self,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
    ) -> (Outcome, Option<QualityRecord>) {
        // Prepared before taking the lock.
        let prepared = self.prepare(payload);
        let mut g = self.lock();
        self.apply_locked(&mut g, partition, offset, &prepared)
    }

    /// Decodes, validates and checks a record's payload: all of its path
    /// that reads no state, so it runs without the lock, on any thread
    /// ([`LiveState::apply_batch`] applies it). Whether the record is then
    /// applied is decided by the partition's offsets when it is.
    pub fn prepare(&self, payload: Option<&[u8]>) -> PreparedRecord<'_> {
        let Some(bytes) = payload else {
            return PreparedRecord::DecodeError;
        };
        // As ingest writes it: validated from the bytes, nothing copied.
        if let Some(envelope) = envelope::decode_borrowed(bytes) {
            return self.prepare_envelope(envelope);
        }
        // Anything else is read as prost reads it (or is not an envelope).
        let Ok(envelope) = envelope::decode(bytes) else {
            return PreparedRecord::DecodeError;
        };
        self.prepare_envelope(EnvelopeRef {
            received_at: envelope.received_at,
            submission: envelope.submission.as_ref().map(Submission::borrowed),
            disposition: envelope.disposition,
        })
    }

    fn prepare_envelope(&self, envelope: EnvelopeRef<'_>) -> PreparedRecord<'_> {
        let received_at_ms = received_at_of(envelope.received_at.as_ref());
        let (study, prepared) = match (envelope.disposition, envelope.submission) {
            (Some(d), _) => {
                let d: DispositionSubmission = d.into();
                let Some(study) = self.catalog().get(&d.study) else {
                    return PreparedRecord::UnknownStudy;
                };
                (study, pipeline::prepare_disposition(study, &d, self.limits()))
            }
            (None, Some(sub)) => {
                let Some(study) = self.catalog().get(sub.study) else {
                    return PreparedRecord::UnknownStudy;
                };
                (study, pipeline::prepare_interview(study, &sub, self.limits()))
            }
            (None, None) => return PreparedRecord::DecodeError,
        };
        PreparedRecord::Ready { study, received_at_ms, prepared }
    }

    /// Applies prepared records, in order, under one lock; returns, for each
    /// record applied or skipped, its partition, offset, what happened and,
    /// for a flagged interview, its quality record. A record after an
    /// [`Outcome::Gap`] of its partition is left out, unread: the caller
    /// seeks the partition back, which drops the partition's records
    /// fetched before the seek, and the record comes again after it.
    pub fn apply_batch<'a>(
        &'a self,
        records: impl IntoIterator<Item = (i32, i64, PreparedRecord<'a>)>,
    ) -> Vec<Done> {
        let records: Vec<_> = records.into_iter().collect();
        let mut applying = Applying::default();
        self.apply_piece(&records, &mut applying);
        applying.done
    }

    /// Applies the next records of a batch under one lock, as
    /// [`LiveState::apply_batch`] does, the gaps found earlier in the batch
    /// included. The records are borrowed: the caller frees them, on the
    /// thread that prepared them ([`LiveState::process_batch`]).
    pub(super) fn apply_piece(&self, records: &[(i32, i64, PreparedRecord<'_>)], applying: &mut Applying) {
        let mut g = self.lock();
        for &(partition, offset, ref record) in records {
            if applying.gaps.contains(&partition) {
                continue;
            }
            let (outcome, flagged) = self.apply_locked(&mut g, partition, offset, record);
            if outcome == Outcome::Gap {
                applying.gaps.push(partition);
            }
            applying.done.push((partition, offset, outcome, flagged));
        }
    }

    fn apply_locked(
        &self,
        g: &mut Inner,
        partition: i32,
        offset: i64,
        prepared: &PreparedRecord<'_>,
    ) -> (Outcome, Option<QualityRecord>) {
        let (outcome, flagged) = self.apply_admitted(g, partition, offset, prepared);
        *g.outcomes.entry(outcome).or_default() += 1;
        (outcome, flagged)
    }

    fn apply_admitted(
        &self,
        g: &mut Inner,
        partition: i32,
        offset: i64,
        prepared: &PreparedRecord<'_>,
    ) -> (Outcome, Option<QualityRecord>) {
        let Some(ps) = g.partitions.get_mut(&partition) else {
            return (Outcome::NotOwned, None);
        };
        match ps.offsets.admit(offset) {
            Admit::Apply => {}
            Admit::Redelivered => return (Outcome::Redelivered, None),
            Admit::SeekBack(_) => return (Outcome::Gap, None),
        }
        let (study, received_at_ms, prepared) = match prepared {
            PreparedRecord::DecodeError => return (Outcome::DecodeError, None),
            PreparedRecord::UnknownStudy => return (Outcome::UnknownStudy, None),
            PreparedRecord::Ready { study, received_at_ms, prepared } => (*study, *received_at_ms, prepared),
        };
        let state = ps.studies.entry(study.id().to_string()).or_default();
        let source = pipeline::Source { partition, offset, received_at_ms };
        let step = pipeline::apply_prepared(study, state, prepared, source);
        let outcome = Outcome::from(&step.fate);
        if outcome == Outcome::Unprocessable {
            tracing::error!(partition, offset, "record cannot be processed; skipped");
        }
        let Some(flagged) = step.flagged else {
            return (outcome, None);
        };
        ps.flagged.push(Arc::new(flagged.clone()));
        (outcome, Some(QualityRecord { generation: ps.generation, flagged, late: false }))
    }
}
