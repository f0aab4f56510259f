//! What happened to one record in the aggregator: a metric label.

use crate::pipeline::Fate;

/// What happened to one record; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Counted into results.
    Applied,
    /// Same submission id as an earlier record: counted once.
    Retry,
    /// Same respondent as an earlier record: flagged, not counted.
    DuplicateRespondent,
    /// Decoded but failed validation against the current instrument.
    Invalid,
    /// Not a decodable envelope.
    DecodeError,
    /// A study no loaded instrument defines.
    UnknownStudy,
    /// An offset already applied (redelivery): skipped.
    Redelivered,
    /// A record of a partition this instance does not own (in flight during a rebalance).
    NotOwned,
    /// A record past the next offset: not applied; the consumer seeks back.
    Gap,
    /// A case disposition applied to the fieldwork state (superseded ones included).
    Disposition,
    /// The pure pipeline panicked on the record: counted, logged and
    /// skipped, so one poison record cannot stop the partition.
    Unprocessable,
}

impl Outcome {
    /// Every outcome, for pre-registering metric label values.
    pub const ALL: [Outcome; 11] = [
        Outcome::Applied,
        Outcome::Retry,
        Outcome::DuplicateRespondent,
        Outcome::Invalid,
        Outcome::DecodeError,
        Outcome::UnknownStudy,
        Outcome::Redelivered,
        Outcome::NotOwned,
        Outcome::Gap,
        Outcome::Disposition,
        Outcome::Unprocessable,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Retry => "retry",
            Outcome::DuplicateRespondent => "duplicate_respondent",
            Outcome::Invalid => "invalid",
            Outcome::DecodeError => "decode_error",
            Outcome::UnknownStudy => "unknown_study",
            Outcome::Redelivered => "redelivered",
            Outcome::NotOwned => "not_owned",
            Outcome::Gap => "gap",
            Outcome::Disposition => "disposition",
            Outcome::Unprocessable => "unprocessable",
        }
    }
}

impl From<&Fate> for Outcome {
    fn from(fate: &Fate) -> Outcome {
        match fate {
            Fate::Counted => Outcome::Applied,
            Fate::Retry => Outcome::Retry,
            Fate::DuplicateRespondent => Outcome::DuplicateRespondent,
            Fate::Disposition => Outcome::Disposition,
            Fate::Invalid(_) => Outcome::Invalid,
            Fate::Unprocessable => Outcome::Unprocessable,
        }
    }
}
