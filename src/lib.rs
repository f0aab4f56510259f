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
//! - [`pipeline`]: the one path from a decoded record to applied state and flags, shared by the aggregator and `report`; [`pipeline::apply`], which is [`pipeline::prepare`] (no state read) then [`pipeline::apply_prepared`].
//! - [`report`]: the offline `report` command over a JSONL file; [`report::run`].
//! - [`synth`]: deterministic synthetic interviews for benches and load tests; [`synth::interviews`].
//! - [`proto`]: the gRPC API (`fieldwatch.v1`) and its conversion to and from JSONL submissions; [`proto::v1`]; [`proto::envelope`] decodes a responses-topic record straight into the pipeline's types.
//! - [`ingest`]: gRPC ingest server, auth, load shedding, Kafka publisher; [`ingest::serve`].
//! - [`kafka`]: Kafka client settings and topic creation; [`kafka::KafkaConfig`], [`kafka::ensure_topics`].
//! - [`broker`]: configured brokers or the in-process tansu broker (feature `embedded-broker`); [`broker::bootstrap_or_embedded`].
//! - [`aggregate`]: consumer-group aggregator: offset rules, per-partition live state, snapshots, metrics; [`aggregate::run`], [`aggregate::LiveState`].
//! - [`http`]: `/metrics`, the JSON API, health and the live page; [`http::serve`].
//! - [`conn`]: connection cap, first-request and idle timeouts shared by the gRPC and HTTP listeners; [`conn::Listener`].
//! - [`read_token`]: read-your-writes tokens and whether the aggregator's view includes one; [`read_token::view_includes`].
//! - [`log`]: stderr logs as text or JSON lines (`log.format`); [`log::init`].
//! - [`config`]: the typed configuration file and environment overrides; [`config::Config::load`].
//! - [`submit`]: the `submit` gRPC client; [`submit::run`].
//! - [`bench`]: tools next to the product: `bench` (producer, ingest, latency and aggregator figures on one broker; [`bench::run`]) and `bench-restore` (time to ready after a restart; [`bench::restore::run`]).
//! - [`errors`]: an error shown with its whole cause chain, for `main` and log lines; [`errors::chain`].
//! - [`yaml`]: reading and writing YAML (instruments, config) with positions in errors; [`yaml::from_str`].
//! - [`app`]: start-up wiring of `serve`, `ingest` and `aggregate`; [`app::start`], [`app::run`].

#![warn(missing_docs)]

pub mod aggregate;
pub mod app;
pub mod bench;
pub mod broker;
pub mod config;
pub mod conn;
pub mod errors;
pub mod fieldwork;
pub mod http;
pub mod ingest;
pub mod instrument;
pub mod kafka;
pub mod log;
pub mod pipeline;
pub mod proto;
pub mod quality;
pub mod read_token;
pub mod report;
pub mod results;
pub mod submit;
pub mod synth;
pub mod validate;
pub mod yaml;
