//! The aggregator's settings (`[aggregate]` in the config file).

use serde::{Deserialize, Serialize};

/// Aggregator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Consumer group id: instances with the same id share the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// How often high watermarks (for lag and readiness) are read, in ms.
    #[serde(default = "default_watermark_interval_ms")]
    pub watermark_interval_ms: u64,
    /// How often changed partitions are snapshotted to the state topic (and
    /// their offsets committed), in ms. Bounds the records a restarted
    /// instance reads again.
    #[serde(default = "default_snapshot_interval_ms")]
    pub snapshot_interval_ms: u64,
    /// Consumer group session timeout, in ms: how long a crashed instance
    /// keeps its partitions before the group gives them to others.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
}

fn default_group_id() -> String {
    "fieldwatch-aggregator".into()
}
fn default_watermark_interval_ms() -> u64 {
    500
}
fn default_snapshot_interval_ms() -> u64 {
    5_000
}
fn default_session_timeout_ms() -> u64 {
    10_000
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            group_id: default_group_id(),
            watermark_interval_ms: default_watermark_interval_ms(),
            snapshot_interval_ms: default_snapshot_interval_ms(),
            session_timeout_ms: default_session_timeout_ms(),
        }
    }
}
