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
    /// instance reads again. While more than 1,000 records are unread (a
    /// backlog being caught up), a save waits until it is read, at most
    /// one interval more.
    #[serde(default = "default_snapshot_interval_ms")]
    pub snapshot_interval_ms: u64,
    /// Consumer group session timeout, in ms: how long a crashed instance
    /// keeps its partitions before the group gives them to others.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// How often the study-wide view (what the JSON API and the live page
    /// answer) is rebuilt from the owned partitions and the other
    /// partitions' snapshots, in ms.
    #[serde(default = "default_view_interval_ms")]
    pub view_interval_ms: u64,
    /// Static group membership (`group.instance.id`): a stable id per
    /// instance, e.g. a StatefulSet pod name. An instance restarted under
    /// the same id within `session_timeout_ms` gets its partitions back
    /// without a rebalance. None: dynamic membership.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Not a configuration key: set by `serve`, the only consumer of its
    /// responses topic, which then assigns itself every partition instead
    /// of joining the consumer group, so a restarted `serve` owns its
    /// partitions at once (no session to wait out, no empty assignment).
    #[serde(skip)]
    pub assign_all: bool,
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
fn default_view_interval_ms() -> u64 {
    1_000
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            group_id: default_group_id(),
            watermark_interval_ms: default_watermark_interval_ms(),
            snapshot_interval_ms: default_snapshot_interval_ms(),
            session_timeout_ms: default_session_timeout_ms(),
            view_interval_ms: default_view_interval_ms(),
            instance_id: None,
            assign_all: false,
        }
    }
}
