//! Publishes envelopes to the responses topic and waits for the broker.
//!
//! The producer comes from [`kafka::producer_config`] (idempotent,
//! `acks=all`, `message.timeout.ms` = the produce timeout).
//! [`Publisher::publish`] returns only once the delivery report says the
//! write is acknowledged, or fails with a bounded [`PublishFailure`] reason
//! that becomes UNAVAILABLE: there is no silent OK.

use std::time::{Duration, Instant};

use prost::Message;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::claims::Claims;
use super::error::{IngestError, PublishFailure};
use crate::kafka::{self, KafkaConfig};
use crate::proto::v1::Envelope;

/// How much longer than the produce timeout `publish` waits for the delivery
/// report. librdkafka reports a message it gave up on after
/// `message.timeout.ms`, so normally its report decides; this margin only
/// bounds the wait if the report never comes.
pub const DELIVERY_REPORT_MARGIN: Duration = Duration::from_secs(1);

/// Where the broker stored an acknowledged write, and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// From enqueueing to the delivery report.
    pub took: Duration,
    /// Partition of the responses topic the record went to.
    pub partition: i32,
    /// The record's offset in that partition. A view has applied it once
    /// the partition's next offset is above it (next offset = last + 1).
    pub offset: i64,
}

/// A Kafka producer bound to the responses topic.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    /// Longest wait for a delivery report before answering UNAVAILABLE: the
    /// produce timeout plus [`DELIVERY_REPORT_MARGIN`]. Should it ever
    /// expire first, the producer may still deliver the message; the
    /// client's retry carries the same submission id, counted once.
    timeout: Duration,
    /// The study-wide book of submission ids ([`Claims`]); none for a bare
    /// publisher made with [`Publisher::new`].
    claims: Option<Claims>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("topic", &self.topic).field("timeout", &self.timeout).finish()
    }
}

impl Publisher {
    /// The publisher for the responses topic of `config` on the cluster at
    /// `bootstrap`, with fieldwatch's producer settings; with `claims`
    /// (`ingest.study_wide_submission_ids`), it also keeps the study-wide
    /// book of submission ids ([`Claims`]: a producer and a reader of
    /// `config.claims_topic`), which nothing starts otherwise.
    pub fn from_kafka(config: &KafkaConfig, bootstrap: &str, claims: bool) -> Result<Publisher, IngestError> {
        let mut publisher = Publisher::new(
            &kafka::producer_config(config, bootstrap),
            &config.responses_topic,
            config.produce_timeout(),
        )?;
        if !claims {
            return Ok(publisher);
        }
        let claims = Claims::start(
            kafka::claims_producer_config(config, bootstrap).create().map_err(IngestError::Producer)?,
            &kafka::claims_reader_config(config, bootstrap),
            &config.claims_topic,
            publisher.timeout,
        )?;
        publisher.claims = Some(claims);
        Ok(publisher)
    }

    /// Creates the producer from a prepared client config whose
    /// `message.timeout.ms` is `produce_timeout`.
    pub fn new(
        config: &ClientConfig,
        topic: impl Into<String>,
        produce_timeout: Duration,
    ) -> Result<Publisher, IngestError> {
        let producer: FutureProducer = config.create().map_err(IngestError::Producer)?;
        Ok(Publisher {
            producer,
            topic: topic.into(),
            timeout: produce_timeout + DELIVERY_REPORT_MARGIN,
            claims: None,
        })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Messages in the producer waiting for a delivery report.
    pub fn queued(&self) -> i64 {
        i64::from(self.producer.in_flight_count())
    }

    /// Writes one envelope under `key` and waits for its delivery report,
    /// at most the configured timeout. Returns where it was stored and how
    /// long it took.
    pub async fn publish(&self, key: &str, envelope: &Envelope) -> Result<Published, IngestError> {
        let start = Instant::now();
        let payload = envelope.encode_to_vec();
        let record = FutureRecord::to(&self.topic).key(key).payload(payload.as_slice());
        let (partition, offset) = deliver(&self.producer, record, self.timeout).await?;
        Ok(Published { took: start.elapsed(), partition, offset })
    }

    /// This publisher without claims (`ingest.study_wide_submission_ids: false`).
    pub fn without_claims(mut self) -> Publisher {
        self.claims = None;
        self
    }

    /// The study-wide submission ids, when this publisher keeps them
    /// (made by [`Publisher::from_kafka`] with `claims`).
    pub fn claims(&self) -> Option<&Claims> {
        self.claims.as_ref()
    }

    /// Waits (blocking a pool thread) up to `timeout` for queued messages to
    /// be delivered; called once at shutdown after the server has drained.
    pub async fn flush(&self, timeout: Duration) -> Result<(), IngestError> {
        let producer = self.producer.clone();
        let result = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(IngestError::Publish { reason: PublishFailure::Timeout, source: Some(e) }),
            Err(_join) => Err(IngestError::Publish { reason: PublishFailure::Canceled, source: None }),
        }
    }

    /// Whether a broker answers a metadata request for the topic within
    /// `timeout` (blocking a pool thread meanwhile), and the claims stored
    /// at start have been read: the health probe of ingest, so a stopped
    /// broker shows even when nobody submits.
    pub async fn reachable(&self, timeout: Duration) -> bool {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let answered = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&topic), timeout).is_ok()
        })
        .await
        .unwrap_or(false);
        answered && self.claims.as_ref().is_none_or(Claims::caught_up)
    }
}

/// Sends one record and waits for its delivery report, at most `timeout`:
/// where it was stored (partition, offset), or why not.
pub(super) async fn deliver<K: rdkafka::message::ToBytes + ?Sized>(
    producer: &FutureProducer,
    record: FutureRecord<'_, K, [u8]>,
    timeout: Duration,
) -> Result<(i32, i64), IngestError> {
    // Enqueue without waiting: a full local queue (bounded by
    // `queue.buffering.max.messages`) means the broker is not keeping up,
    // which is answered at once rather than by piling up waiters.
    let delivery = producer.send_result(record).map_err(|(e, _)| {
        let reason = match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => PublishFailure::QueueFull,
            _ => PublishFailure::Broker,
        };
        IngestError::Publish { reason, source: Some(e) }
    })?;
    // Bounded wait for the delivery report; the other end is
    // librdkafka's delivery callback, which fires by `message.timeout.ms`
    // at the latest. At shutdown the server drains before the producer
    // is flushed, so reports still come.
    match tokio::time::timeout(timeout, delivery).await {
        Err(_) => Err(IngestError::Publish { reason: PublishFailure::Timeout, source: None }),
        Ok(Err(_canceled)) => Err(IngestError::Publish { reason: PublishFailure::Canceled, source: None }),
        Ok(Ok(Err((e, _message)))) => {
            let reason = match e {
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => PublishFailure::Timeout,
                _ => PublishFailure::Broker,
            };
            Err(IngestError::Publish { reason, source: Some(e) })
        }
        Ok(Ok(Ok(delivery))) => Ok((delivery.partition, delivery.offset)),
    }
}
