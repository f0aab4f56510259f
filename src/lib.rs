//! fieldwatch: live results and live data quality for survey fieldwork.
//!
//! Survey front-ends (CATI, CAPI, web) submit each completed or partial
//! interview over gRPC. fieldwatch validates it against the study's
//! questionnaire (the instrument), publishes it to Kafka, and an aggregator
//! keeps live results — answer distributions, box shares, response rates —
//! and quality checks — missing items, out-of-range values, duplicate
//! respondents, skip-logic violations, straightlining — exposed as
//! Prometheus metrics, a JSON API and a live page.
//!
//! The core is pure and shared by every path: the same functions validate,
//! check and tabulate an interview in the gRPC ingest, in the Kafka
//! aggregator and in the offline `report` command, so live numbers and
//! offline numbers cannot drift apart.
//!
//! Modules:
//! - [`instrument`]: questionnaire model, YAML loading and linting; [`instrument::Study::from_yaml`]; XLSForm import, [`instrument::xlsform::import`].
//! - [`validate`]: hard validation of a submission against its form; [`validate::validate`].
//! - [`quality`]: soft checks on an accepted record; [`quality::check`].
//! - [`results`]: mergeable counts and toplines; [`results::StudyState`], [`results::toplines`].
//! - [`fieldwork`]: case dispositions, AAPOR rates, interviewer quality, flags for review; [`fieldwork::report`].
//! - [`report`]: the offline `report` command over a JSONL file; [`report::run`].
//! - [`synth`]: deterministic synthetic interviews for benches and load tests; [`synth::interviews`].
//! - [`proto`]: the gRPC API (`fieldwatch.v1`) and its conversion to and from JSONL submissions; [`proto::v1`].
//! - [`ingest`]: gRPC ingest server, auth, load shedding, Kafka publisher; [`ingest::serve`].
//! - [`kafka`]: Kafka client settings and topic creation; [`kafka::KafkaConfig`], [`kafka::ensure_topics`].
//! - [`broker`]: configured brokers or the in-process tansu broker (feature `embedded-broker`); [`broker::bootstrap_or_embedded`].
//! - [`aggregate`]: consumer-group aggregator with per-partition state and its metrics; [`aggregate::run`].
//! - [`http`]: `/metrics`, the JSON API, health and the live page; [`http::serve`].
//! - [`config`]: the typed configuration file and environment overrides; [`config::Config::load`].
//! - [`submit`]: the `submit` gRPC client; [`submit::run`].
//! - [`restore_bench`]: `bench-restore`, time to ready after a restart with many interviews; [`restore_bench::run`].
//! - [`bench`]: the `bench` command: producer, ingest, latency and aggregator figures on one broker; [`bench::run`].
//! - [`app`]: start-up wiring of `serve`, `ingest` and `aggregate`; [`app::start`], [`app::run`].

#![warn(missing_docs)]

pub mod aggregate;
pub mod app;
pub mod bench;
pub mod broker;
pub mod config;
pub mod fieldwork;
pub mod http;
pub mod ingest;
pub mod instrument;
pub mod kafka;
pub mod proto;
pub mod quality;
pub mod report;
pub mod restore_bench;
pub mod results;
pub mod submit;
pub mod synth;
pub mod validate;
