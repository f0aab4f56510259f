//! Start-up wiring for the long-running commands: `serve` (everything in
//! one process, on the embedded broker unless `kafka.brokers` is set),
//! `ingest` and `aggregate` (each alone, against external brokers).
//!
//! One shutdown path: the signal flips a watch channel every part listens
//! to; ingest drains its calls and flushes the producer first, then the
//! aggregator stops consuming, then HTTP, then the embedded broker. Every
//! Kafka client is gone before the broker stops (the claims writer and
//! reader end with the last `Claims`, the aggregator waits for its view
//! builder and watermark reader), so a stop logs no `AllBrokersDown` error
//! (`tests/logs.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aggregate::{self, LiveState};
use crate::config::Config;
use crate::http::{self, AppState};
use crate::ingest::{self, Publisher};
use crate::instrument::Catalog;
use crate::kafka;

/// Which parts a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// Ingest, aggregator and HTTP (and the embedded broker if no brokers are configured).
    All,
    /// gRPC ingest (and HTTP for its metrics).
    Ingest,
    /// The aggregator and HTTP.
    Aggregate,
}

/// A running process: its addresses and how to stop it.
pub struct Running {
    /// Bound gRPC address (ingest), if running.
    pub grpc_addr: Option<SocketAddr>,
    /// True when the gRPC listener speaks TLS (`ingest.tls`).
    pub grpc_tls: bool,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Kafka bootstrap servers in use.
    pub bootstrap: String,
    /// The aggregator's shared state, if running.
    pub aggregator: Option<Arc<LiveState>>,
    /// Flipped to true to stop every part. Receivers: the shutdown futures
    /// of ingest, aggregator and HTTP.
    stop: watch::Sender<bool>,
    ingest: Option<JoinHandle<Result<(), ingest::IngestError>>>,
    aggregate: Option<JoinHandle<Result<(), aggregate::AggregateError>>>,
    http: JoinHandle<Result<(), http::HttpError>>,
    /// The brokers in use; stops the embedded one, if started, at shutdown.
    broker: Option<crate::broker::Bootstrap>,
}

/// Runs the HTTP server's future on a runtime of its own (two worker
/// threads named `name`, so one can answer 429 while the other renders),
/// so a storm of reads (rendering `/metrics`, serialising flags) takes
/// those threads and never the workers that run ingest and the aggregator
/// (the embedded broker has threads of its own). The returned task of the calling
/// runtime ends with the server (the same stop signal ends both); the
/// thread then drops its runtime, closing what connections remain.
fn spawn_isolated(
    name: &str,
    server: impl std::future::Future<Output = Result<(), http::HttpError>> + Send + 'static,
) -> anyhow::Result<JoinHandle<Result<(), http::HttpError>>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    // Carries the server's result back; dropped unsent only if the thread panicked.
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = done.send(rt.block_on(server));
        })
        .context("starting the HTTP thread")?;
    Ok(tokio::spawn(async move {
        result.await.unwrap_or_else(|_| {
            Err(http::HttpError::Serve(std::io::Error::other("the HTTP thread stopped unexpectedly")))
        })
    }))
}

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        // Resolves when `true` is sent or the sender is dropped.
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Loads the configured instruments, or the built-in demo study.
pub fn load_catalog(config: &Config) -> anyhow::Result<Catalog> {
    if config.instruments.is_empty() {
        Ok(Catalog::demo())
    } else {
        Catalog::load_paths(&config.instruments).context("loading instruments")
    }
}

/// Starts the parts of `parts` and returns once they are listening.
pub async fn start(config: Config, parts: Parts) -> anyhow::Result<Running> {
    let catalog = Arc::new(load_catalog(&config)?);

    if config.kafka.brokers.is_none() && parts != Parts::All {
        bail!("kafka.brokers must be set (FIELDWATCH__KAFKA__BROKERS) for `ingest` and `aggregate`");
    }
    let broker = crate::broker::bootstrap_or_embedded(
        &config.kafka,
        config.kafka.brokers.as_deref(),
        config.broker.listen,
        &config.data_dir.join("broker"),
    )
    .await?;
    let bootstrap = broker.servers().to_owned();
    match start_parts(config, parts, catalog, bootstrap).await {
        Ok(mut running) => {
            running.broker = Some(broker);
            Ok(running)
        }
        Err(e) => {
            // A part failed to start (a bad TLS file, a port in use): stop
            // the broker properly so its port and database are free again.
            broker.shutdown().await;
            Err(e)
        }
    }
}

/// Starts the parts on a reachable broker; [`start`] adds the embedded one.
async fn start_parts(
    mut config: Config,
    parts: Parts,
    catalog: Arc<Catalog>,
    bootstrap: String,
) -> anyhow::Result<Running> {
    kafka::ensure_topics(&config.kafka, &bootstrap).await.context("creating topics")?;

    let registry = prometheus::Registry::new();
    let (stop, stop_rx) = watch::channel(false);
    let ready = Arc::new(AtomicBool::new(false));

    let shared = matches!(parts, Parts::All | Parts::Aggregate)
        .then(|| LiveState::new(catalog.clone(), config.ingest.limits));
    let mut grpc_addr = None;
    let mut ingest_health = None;
    let ingest_task = if matches!(parts, Parts::All | Parts::Ingest) {
        if parts == Parts::All && config.kafka.brokers.is_none() && config.ingest.use_demo_key_if_unset() {
            tracing::warn!(
                "no ingest.hmac_key configured: using the public demo key; respondent keys are not secret"
            );
        }
        config.ingest.validate().context("ingest configuration")?;
        if config.ingest.tokens.is_empty() && !config.ingest.listen.ip().is_loopback() {
            bail!(
                "ingest.tokens is empty: without tokens ingest only listens on loopback; configure tokens to listen on {}",
                config.ingest.listen
            );
        }
        if config.ingest.tokens.is_empty() {
            tracing::warn!("no front-end tokens configured: ingest is open, on loopback only");
        }
        if config.ingest.tls.is_none() && !config.ingest.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %config.ingest.listen,
                "ingest.tls is not set: bearer tokens cross the network in clear unless a proxy terminates tls"
            );
        }
        let publisher =
            Publisher::from_kafka(&config.kafka, &bootstrap, config.ingest.study_wide_submission_ids)
                .context("creating the producer")?;
        // Built here, not inside the spawned task, so a bad TLS file or
        // config fails start-up instead of a task nobody waits on yet.
        let mut server =
            ingest::IngestServer::new(config.ingest.clone(), catalog.clone(), publisher, &registry)
                .context("setting up ingest")?;
        if let Some(shared) = &shared {
            server = server.with_quotas_from(shared.clone());
        }
        ingest_health = Some(server.health());
        let listener = ingest::bind(config.ingest.listen).await.context("binding the gRPC address")?;
        grpc_addr = Some(listener.local_addr().context("gRPC address")?);
        Some(tokio::spawn(server.run(listener, stopped(&stop_rx))))
    } else {
        None
    };

    let aggregate_task = shared.clone().map(|shared| {
        let kafka = config.kafka.clone();
        let mut agg = config.aggregate.clone();
        // `serve` is the only consumer of its topics: it takes every partition itself.
        agg.assign_all = parts == Parts::All;
        let bootstrap = bootstrap.clone();
        let stop = stopped(&stop_rx);
        tokio::spawn(async move { aggregate::run(&kafka, &bootstrap, &agg, shared, stop).await })
    });

    let http_listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding the HTTP address {}", config.http.listen))?;
    let http_addr = http_listener.local_addr().context("HTTP address")?;
    let state = AppState {
        registry,
        aggregator: shared.clone(),
        catalog,
        ready: ready.clone(),
        ingest_health,
        read_wait: config.http.read_wait(),
    };
    let http_server =
        http::serve(http_listener, state, &config.http, stopped(&stop_rx)).context("setting up http")?;
    let http_task = spawn_isolated("fieldwatch-http", http_server)?;
    ready.store(true, Ordering::Relaxed);

    Ok(Running {
        grpc_addr,
        grpc_tls: config.ingest.tls.is_some(),
        http_addr,
        bootstrap,
        aggregator: shared,
        stop,
        ingest: ingest_task,
        aggregate: aggregate_task,
        http: http_task,
        broker: None,
    })
}

/// Waits for one part's task until `deadline`; records how it failed, if it did.
async fn join_part<E: std::fmt::Display>(
    name: &str,
    task: JoinHandle<Result<(), E>>,
    deadline: tokio::time::Instant,
    failures: &mut Vec<String>,
) {
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => failures.push(format!("{name}: {e}")),
        Ok(Err(e)) => failures.push(format!("{name} task: {e}")),
        Err(_) => failures.push(format!("{name} did not stop in time")),
    }
}

impl Running {
    /// Stops every part in order and waits for them, within `grace`.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        let mut failures = Vec::new();
        // In shutdown order: ingest drains and flushes first, then the
        // aggregator saves its partitions, then HTTP.
        if let Some(t) = self.ingest {
            join_part("ingest", t, deadline, &mut failures).await;
        }
        if let Some(t) = self.aggregate {
            join_part("aggregator", t, deadline, &mut failures).await;
        }
        join_part("http", self.http, deadline, &mut failures).await;
        if let Some(b) = self.broker {
            b.shutdown().await;
        }
        if failures.is_empty() { Ok(()) } else { bail!(failures.join("; ")) }
    }

    /// Resolves when every owned partition has caught up (or `timeout` passes).
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let Some(a) = &self.aggregator else { return true };
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if a.caught_up() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `parts` until a signal, printing the addresses once listening.
pub async fn run(config: Config, parts: Parts) -> anyhow::Result<()> {
    let grace = config.ingest.shutdown_grace() * 2 + Duration::from_secs(5);
    let running = start(config, parts).await?;
    let mut line = String::from("fieldwatch ready:");
    if let Some(g) = running.grpc_addr {
        let scheme = if running.grpc_tls { "https" } else { "http" };
        line.push_str(&format!(" grpc={scheme}://{g}"));
    }
    line.push_str(&format!(" http=http://{} kafka={}", running.http_addr, running.bootstrap));
    // The one line users and scripts wait for; stdout on purpose.
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
    tracing::info!(http = %running.http_addr, "started");
    signal().await;
    tracing::info!("shutting down");
    running.shutdown(grace).await
}
