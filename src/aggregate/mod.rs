//! The aggregator: a consumer-group member on the responses topic that turns
//! each record into results with the pure core ([`crate::pipeline::apply`]:
//! validate → check → apply → flags) and keeps one state per partition it
//! owns.
//!
//! Exactness: a partition's state is a function of the partition's records
//! up to its next offset. Every `snapshot_interval_ms`, on revoke and at
//! shutdown, each changed partition's state is written with its next offset
//! to the state topic ([`snapshot`]) and only after that write is
//! acknowledged is the next offset committed to the group. When a partition
//! is assigned, the new owner restores the newest snapshot in the rebalance
//! callback, before the partition counts (or starts empty at offset 0 when
//! there is none). A record is applied only at the partition's next offset:
//! one below was applied already (skipped), one above means the consumer
//! position and the state disagree (the consumer seeks back to the next
//! offset). So a record is applied exactly once whatever restarts, and the
//! next offset is always `offset + 1` of the last applied record. These
//! rules live in [`offsets`]. A revoked
//! partition's state is dropped at once, so what an instance exports is the
//! sum over the partitions it owns now and the sum over instances is the
//! study total. Readiness: every owned partition's next offset has reached
//! the high watermark read after it was assigned.
//!
//! Envelopes carrying a case disposition update the study's fieldwork
//! state. Each flagged interview is kept for `GET .../flags` and handed to
//! [`flag_publisher`], which publishes it to the quality topic unless an
//! earlier owner of the partition already did (replays publish nothing
//! twice).
//!
//! Files: [`config`] (settings), [`offsets`] (the offset rules), [`outcome`]
//! (what happened to a record, a metric label), [`state`]
//! ([`LiveState`]: partition states and what the HTTP side reads),
//! [`record`] (a record's path into them: prepared on any thread, applied
//! in order under the lock), [`batch`] (a batch of records prepared on
//! every core while the loop's thread applies it), [`consumer`] (the
//! consumer loop, rebalances, snapshot cadence),
//! [`stall`] (rejoining when partitions stall), [`snapshot`] (the state
//! topic), [`flag_publisher`] (the quality topic), [`metrics`] and
//! [`fieldwork_metrics`] (the Prometheus export), [`view`] (the study-wide
//! view every JSON answer comes from, pure), `global` (which builds it
//! from the owned partitions and the state topic once per interval) and
//! `late` (possible duplicates across partitions, flagged after each build).

pub mod batch;
pub mod config;
pub mod consumer;
pub mod fieldwork_metrics;
pub mod flag_publisher;
pub(crate) mod global;
pub(crate) mod late;
pub mod metrics;
pub mod offsets;
pub mod outcome;
pub mod record;
pub mod snapshot;
pub mod stall;
pub mod state;
#[cfg(test)]
mod test_study;
pub mod view;

pub use config::AggregateConfig;
pub use consumer::run;
pub(crate) use consumer::save_snapshots;
pub use outcome::Outcome;
pub use record::PreparedRecord;
pub use state::{LiveState, PartitionState, PartitionStatus};

/// Errors of the aggregator.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// The consumer could not be created or subscribed.
    #[error("kafka consumer")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The snapshot store could not be set up.
    #[error("snapshot store")]
    Snapshot(#[from] snapshot::SnapshotError),
}
