//! Kafka client settings shared by ingest (producer) and aggregator (consumer).
//!
//! fieldwatch talks to any Kafka-protocol cluster (Apache Kafka, Redpanda, MSK,
//! Strimzi) or to the embedded tansu broker of `crate::broker`. This module owns
//! the one place where librdkafka settings are chosen, so every client gets the
//! same guarantees: the producer is idempotent with `acks=all` (a reply is OK only
//! after the write is durable), the consumer never commits or stores an offset on
//! its own (the aggregator stores a record's offset only after its effect is in
//! partition state).
//!
//! Entry points: [`KafkaConfig`], [`producer_config`], [`consumer_config`],
//! [`ensure_topics`], [`wait_for_broker`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

/// Errors of the Kafka client helpers.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The `kafka` section of the configuration is inconsistent.
    #[error("invalid kafka config: {0}")]
    Config(String),
    /// librdkafka refused the client configuration.
    #[error("cannot create kafka client")]
    Client(#[source] RdKafkaError),
    /// The CreateTopics request as a whole failed.
    #[error("cannot create topics")]
    CreateTopics(#[source] RdKafkaError),
    /// The broker refused to create one topic (other than because it exists).
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        /// The topic that was refused.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// A start-up admin operation did not finish in time.
    #[error("{what} did not finish within {timeout:?}")]
    Timeout {
        /// The operation that timed out.
        what: &'static str,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// No broker answered a metadata request before the deadline.
    #[error("no kafka broker answered at {bootstrap} within {timeout:?}")]
    Unreachable {
        /// The bootstrap servers that were tried.
        bootstrap: String,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// The blocking metadata probe panicked or was cancelled.
    #[error("kafka metadata probe failed")]
    Probe(#[source] tokio::task::JoinError),
}

/// Where fieldwatch's records live in Kafka and how its clients connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers (`host:port,host:port`) of an existing Kafka-protocol
    /// cluster. Unset means `serve` starts the embedded broker and uses it.
    pub brokers: Option<String>,
    /// Topic of accepted interviews, keyed by study and pseudonymised respondent;
    /// the system of record, so it must have no retention limit.
    pub responses_topic: String,
    /// Topic of quality flags raised by the aggregator.
    pub quality_topic: String,
    /// Topic of aggregator partition snapshots (state + next offset), one
    /// partition per responses partition, compacted. Each consumer group
    /// needs its own.
    pub state_topic: String,
    /// Topic of submission id claims (one partition, no retention limit):
    /// keyed hashes only, read by every ingest instance so a submission id
    /// belongs to one respondent study-wide (`docs/submissions.md`).
    pub claims_topic: String,
    /// Partitions of each topic when fieldwatch creates it; the unit of
    /// aggregator parallelism. Existing topics are left as they are.
    pub partitions: u32,
    /// Replication factor of each topic when fieldwatch creates it (1 for the
    /// embedded broker, 3 for a production cluster).
    pub replication_factor: u16,
    /// How long ingest waits for the broker's acknowledgement of a record before
    /// it answers UNAVAILABLE; also librdkafka's `message.timeout.ms`, so a record
    /// the client gave up on is not delivered later behind the caller's back.
    pub produce_timeout_ms: u64,
    /// Bound on start-up admin work: waiting for the broker to answer and
    /// creating the topics. Start-up fails when it is exceeded.
    pub admin_timeout_ms: u64,
    /// Idempotent producers (`enable.idempotence`): the broker drops
    /// duplicates from the producer's own retries. Exactness does not rest on
    /// it (the aggregator counts a submission id once), but keep it on unless
    /// the broker mishandles it: tansu 0.6.0's storage panics when an
    /// idempotent producer bumps its epoch across a broker restart.
    pub idempotence: bool,
    /// Extra librdkafka properties for every client (TLS, SASL, tuning), e.g.
    /// `security.protocol: SASL_SSL`. They cannot override the settings
    /// fieldwatch's guarantees rest on (see [`PROTECTED_PROPERTIES`]).
    pub client_properties: BTreeMap<String, String>,
}

/// Default topic of accepted interviews.
pub const DEFAULT_RESPONSES_TOPIC: &str = "fieldwatch.responses.v1";
/// Default topic of quality flags.
pub const DEFAULT_QUALITY_TOPIC: &str = "fieldwatch.quality.v1";
/// Default topic of aggregator snapshots.
pub const DEFAULT_STATE_TOPIC: &str = "fieldwatch.state.v1";
/// Default topic of submission id claims.
pub const DEFAULT_CLAIMS_TOPIC: &str = "fieldwatch.claims.v1";

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            responses_topic: DEFAULT_RESPONSES_TOPIC.to_owned(),
            quality_topic: DEFAULT_QUALITY_TOPIC.to_owned(),
            state_topic: DEFAULT_STATE_TOPIC.to_owned(),
            claims_topic: DEFAULT_CLAIMS_TOPIC.to_owned(),
            partitions: 6,
            replication_factor: 1,
            produce_timeout_ms: 5_000,
            admin_timeout_ms: 15_000,
            idempotence: true,
            client_properties: BTreeMap::new(),
        }
    }
}

/// librdkafka properties that `client_properties` may not set: delivery
/// guarantees, offset handling and the addresses fieldwatch chooses itself.
pub const PROTECTED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "transactional.id",
];

impl KafkaConfig {
    /// Checks the fields against each other and against Kafka's limits.
    pub fn validate(&self) -> Result<(), KafkaError> {
        let bad = |m: String| Err(KafkaError::Config(m));
        for (field, topic) in [
            ("responses_topic", &self.responses_topic),
            ("quality_topic", &self.quality_topic),
            ("state_topic", &self.state_topic),
            ("claims_topic", &self.claims_topic),
        ] {
            if let Err(why) = check_topic_name(topic) {
                return bad(format!("{field} `{topic}` {why}"));
            }
        }
        let topics = [&self.responses_topic, &self.quality_topic, &self.state_topic, &self.claims_topic];
        if topics.iter().enumerate().any(|(i, t)| topics[..i].contains(t)) {
            return bad("responses_topic, quality_topic, state_topic and claims_topic must differ".to_owned());
        }
        if self.partitions == 0 || i32::try_from(self.partitions).is_err() {
            return bad(format!("partitions must be between 1 and {}", i32::MAX));
        }
        if self.replication_factor == 0 || i16::try_from(self.replication_factor).is_err() {
            return bad(format!("replication_factor must be between 1 and {}", i16::MAX));
        }
        // librdkafka accepts message.timeout.ms up to i32::MAX; 0 would mean "forever".
        if self.produce_timeout_ms == 0 || i32::try_from(self.produce_timeout_ms).is_err() {
            return bad(format!("produce_timeout_ms must be between 1 and {}", i32::MAX));
        }
        if self.admin_timeout_ms == 0 {
            return bad("admin_timeout_ms must be at least 1".to_owned());
        }
        if self.brokers.as_deref().is_some_and(|b| b.trim().is_empty()) {
            return bad("brokers must not be empty when set".to_owned());
        }
        if let Some(key) = self.client_properties.keys().find(|k| PROTECTED_PROPERTIES.contains(&k.as_str()))
        {
            return bad(format!("client_properties cannot set `{key}`"));
        }
        Ok(())
    }

    /// The produce timeout as a [`Duration`].
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms)
    }

    /// The start-up admin timeout as a [`Duration`].
    pub fn admin_timeout(&self) -> Duration {
        Duration::from_millis(self.admin_timeout_ms)
    }
}

/// Kafka's topic name rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic_name(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() || topic.len() > 249 {
        return Err("must have 1 to 249 characters");
    }
    if topic == "." || topic == ".." {
        return Err("cannot be `.` or `..`");
    }
    if !topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("may contain only ASCII letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

/// Settings every client shares; `client_properties` come last so they can tune
/// anything that is not protected (`validate` rejects protected keys).
fn base_config(config: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap)
        // The embedded broker advertises 127.0.0.1; without this librdkafka may
        // try `localhost` as ::1 first. Override it in client_properties for
        // IPv6-only clusters.
        .set("broker.address.family", "v4");
    for (key, value) in &config.client_properties {
        client.set(key, value);
    }
    client
}

/// Producer settings for ingest: idempotent, `acks=all`, lz4, no linger.
///
/// A delivery report arrives at the latest after `produce_timeout_ms`
/// (`message.timeout.ms`), so awaiting it is bounded; ingest maps a failed
/// report to UNAVAILABLE.
pub fn producer_config(config: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut client = base_config(config, bootstrap);
    client
        .set("enable.idempotence", if config.idempotence { "true" } else { "false" })
        .set("acks", "all")
        // Bounds the wait for the ack: the delivery future resolves with an
        // error after this long, and ingest answers UNAVAILABLE.
        .set("message.timeout.ms", config.produce_timeout_ms.to_string())
        .set("compression.type", "lz4");
    // Every reply waits for its ack, so a linger adds to every reply (5 ms,
    // librdkafka's default, was most of a unary call's median). Under load
    // records still batch: they accumulate while the idempotent producer has
    // its 5 requests in flight. Measured with `fieldwatch bench` (see
    // docs/benchmarks.md). Overridable through client_properties.
    if !config.client_properties.contains_key("linger.ms") {
        client.set("linger.ms", "0");
    }
    client
}

/// Consumer settings for the aggregator's group `group_id`.
///
/// Offsets are never committed or stored automatically: the aggregator stores
/// a record's offset (next offset = last applied + 1) only after the record's
/// effect is in partition state, and commits those stored offsets itself.
pub fn consumer_config(config: &KafkaConfig, bootstrap: &str, group_id: &str) -> ClientConfig {
    let mut client = base_config(config, bootstrap);
    client
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // The responses topic is the system of record: a new group starts at
        // the beginning.
        .set("auto.offset.reset", "earliest");
    // tansu holds every fetch for the full wait even when data is there; 50 ms
    // bounds the delay that adds to each poll. Overridable for real clusters.
    if !config.client_properties.contains_key("fetch.wait.max.ms") {
        client.set("fetch.wait.max.ms", "50");
    }
    client
}

/// Producer settings for ingest's claims: as [`producer_config`] but
/// uncompressed, since a claim is keyed hashes (random bytes that lz4 only
/// wraps in a frame the broker must unwrap). A producer of its own, so a
/// claim never queues behind the interviews on one connection.
pub fn claims_producer_config(config: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut client = producer_config(config, bootstrap);
    client.set("compression.type", "none");
    client
}

/// Consumer settings for ingest's reader of the claims topic: assigned, never
/// committing, and a short fetch wait, since a batch of claims waits for
/// the claims written before it by other instances.
pub fn claims_reader_config(config: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut client = consumer_config(config, bootstrap, "fieldwatch-claims-reader");
    if !config.client_properties.contains_key("fetch.wait.max.ms") {
        client.set("fetch.wait.max.ms", "20");
    }
    client
}

/// Creates fieldwatch's topics when they do not exist yet.
///
/// The responses topic is created without retention limit (`retention.ms=-1`).
/// Topics that already exist are left as they are, settings included. The whole operation is
/// bounded by `admin_timeout_ms`.
pub async fn ensure_topics(config: &KafkaConfig, bootstrap: &str) -> Result<(), KafkaError> {
    config.validate()?;
    let timeout = config.admin_timeout();
    let admin: AdminClient<DefaultClientContext> =
        base_config(config, bootstrap).create().map_err(KafkaError::Client)?;
    let partitions = i32::try_from(config.partitions).map_err(|_| KafkaError::Config("partitions".into()))?;
    let replication = i32::from(config.replication_factor);
    let topics = [
        // The system of record: never expire a record (Kafka's default is 7 days).
        // No `cleanup.policy` is set; tansu expires only topics that set one.
        NewTopic::new(&config.responses_topic, partitions, TopicReplication::Fixed(replication))
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1"),
        // Flags can be recomputed from the responses: the cluster's retention applies.
        NewTopic::new(&config.quality_topic, partitions, TopicReplication::Fixed(replication)),
        // Snapshots: only the newest per partition matters. Large records:
        // a snapshot is written in chunks of at most 256 KiB.
        NewTopic::new(&config.state_topic, partitions, TopicReplication::Fixed(replication))
            .set("cleanup.policy", "compact"),
        // Claims of submission ids: one partition, so every ingest reads
        // them in one order; kept as long as the responses.
        NewTopic::new(&config.claims_topic, 1, TopicReplication::Fixed(replication))
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1"),
    ];
    // The broker-side bound; the tokio timeout below also covers connecting.
    let options = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
    // Bounds the whole CreateTopics exchange; on expiry the admin client is
    // dropped, which abandons the request.
    let results = tokio::time::timeout(timeout, admin.create_topics(&topics, &options))
        .await
        .map_err(|_| KafkaError::Timeout { what: "creating topics", timeout })?
        .map_err(KafkaError::CreateTopics)?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic = %topic, partitions, "created topic"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %topic, "topic exists")
            }
            Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// Waits until a broker at `bootstrap` answers a metadata request, trying
/// again until `timeout` has passed.
///
/// `config` supplies `client_properties` (TLS, SASL) so this also works against
/// a secured cluster; pass `&KafkaConfig::default()` for a plain one.
pub async fn wait_for_broker(
    config: &KafkaConfig,
    bootstrap: &str,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let mut client = base_config(config, bootstrap);
    // Retry refused connections quickly while the broker is coming up
    // (librdkafka's default backoff grows to 10 s).
    client.set("reconnect.backoff.ms", "20").set("reconnect.backoff.max.ms", "200");
    let admin: AdminClient<DefaultClientContext> = client.create().map_err(KafkaError::Client)?;
    let unreachable = KafkaError::Unreachable { bootstrap: bootstrap.to_owned(), timeout };
    // Set when the caller stops waiting (this future is dropped), so the
    // blocking probe below ends within one attempt instead of at the deadline,
    // which would also hold up the runtime's shutdown.
    let abandoned = Arc::new(AtomicBool::new(false));
    let _abandon_on_drop = SetOnDrop(Arc::clone(&abandoned));
    // fetch_metadata blocks, so it runs on the blocking pool; the deadline bounds
    // the loop and each attempt, so the task ends by itself within `timeout`.
    let probe = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || abandoned.load(Ordering::Relaxed) {
                return false;
            }
            // One attempt waits at most 250 ms, so an abandoned probe ends soon;
            // the client keeps connecting between attempts, so a slow (TLS)
            // handshake still completes.
            match admin.inner().fetch_metadata(None, remaining.min(Duration::from_millis(250))) {
                Ok(metadata) if !metadata.brokers().is_empty() => return true,
                Ok(_) => tracing::debug!("metadata without brokers"),
                Err(e) => tracing::debug!(error = %crate::errors::chain(&e), "broker not answering yet"),
            }
            std::thread::sleep(Duration::from_millis(20).min(remaining));
        }
    });
    if probe.await.map_err(KafkaError::Probe)? { Ok(()) } else { Err(unreachable) }
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(client: &'a ClientConfig, key: &str) -> Option<&'a str> {
        client.get(key)
    }

    #[test]
    fn default_config_is_valid_and_uses_the_documented_topics() {
        let config = KafkaConfig::default();
        config.validate().expect("default is valid");
        assert_eq!(config.responses_topic, "fieldwatch.responses.v1");
        assert_eq!(config.quality_topic, "fieldwatch.quality.v1");
        assert_eq!(config.partitions, 6);
    }

    #[test]
    fn empty_yaml_section_gives_the_defaults() {
        let config: KafkaConfig = crate::yaml::from_str("{}").expect("parses");
        assert_eq!(config, KafkaConfig::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = crate::yaml::from_str::<KafkaConfig>("partitons: 3").expect_err("typo must fail");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn client_properties_cannot_weaken_delivery_guarantees() {
        let mut config = KafkaConfig::default();
        config.client_properties.insert("acks".into(), "1".into());
        let err = config.validate().expect_err("acks is protected");
        assert!(err.to_string().contains("`acks`"), "{err}");
    }

    #[test]
    fn invalid_topic_names_and_counts_are_rejected() {
        for change in [
            |c: &mut KafkaConfig| c.responses_topic = "bad topic".into(),
            |c: &mut KafkaConfig| c.quality_topic = c.responses_topic.clone(),
            |c: &mut KafkaConfig| c.partitions = 0,
            |c: &mut KafkaConfig| c.replication_factor = 0,
            |c: &mut KafkaConfig| c.produce_timeout_ms = 0,
            |c: &mut KafkaConfig| c.brokers = Some(" ".into()),
        ] {
            let mut config = KafkaConfig::default();
            change(&mut config);
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn producer_is_idempotent_with_acks_all_and_the_produce_timeout() {
        let mut config = KafkaConfig { produce_timeout_ms: 1234, ..KafkaConfig::default() };
        config.client_properties.insert("security.protocol".into(), "ssl".into());
        let client = producer_config(&config, "127.0.0.1:9092");
        assert_eq!(get(&client, "bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(get(&client, "enable.idempotence"), Some("true"));
        assert_eq!(get(&client, "acks"), Some("all"));
        assert_eq!(get(&client, "compression.type"), Some("lz4"));
        assert_eq!(get(&client, "linger.ms"), Some("0"));
        assert_eq!(get(&client, "message.timeout.ms"), Some("1234"));
        assert_eq!(get(&client, "broker.address.family"), Some("v4"));
        assert_eq!(get(&client, "security.protocol"), Some("ssl"));
    }

    #[test]
    fn consumer_never_commits_or_stores_offsets_by_itself() {
        let client = consumer_config(&KafkaConfig::default(), "127.0.0.1:9092", "aggregator");
        assert_eq!(get(&client, "group.id"), Some("aggregator"));
        assert_eq!(get(&client, "enable.auto.commit"), Some("false"));
        assert_eq!(get(&client, "enable.auto.offset.store"), Some("false"));
        assert_eq!(get(&client, "auto.offset.reset"), Some("earliest"));
        assert_eq!(get(&client, "fetch.wait.max.ms"), Some("50"));
    }

    #[tokio::test]
    async fn waiting_for_a_silent_broker_gives_up_at_the_timeout() {
        // Accepts connections (in the backlog) but never answers a request.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let bootstrap = silent.local_addr().expect("addr").to_string();
        let started = Instant::now();
        let err = wait_for_broker(&KafkaConfig::default(), &bootstrap, Duration::from_millis(300))
            .await
            .expect_err("nobody answers");
        assert!(matches!(err, KafkaError::Unreachable { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
