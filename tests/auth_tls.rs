//! Front-end authentication and TLS of the gRPC ingest, end to end: the
//! whole service from `app::start` (embedded broker, ingest, aggregator,
//! HTTP) on port 0, a real tonic client, and the responses topic read back
//! to prove that a refused call stored nothing.
//!
//! The certificates in `tests/data/tls/` are made by `tests/data/tls/make.sh`
//! (a test CA, a server certificate for localhost and 127.0.0.1, a client
//! certificate); their keys are test material only.
#![cfg(feature = "embedded-broker")]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fieldwatch::app::{self, Parts};
use fieldwatch::config::Config;
use fieldwatch::ingest::auth::token_hash;
use fieldwatch::ingest::{TlsConfig, TokenConfig};
use fieldwatch::instrument::DEMO_STUDY_ID;
use fieldwatch::kafka::KafkaConfig;
use fieldwatch::proto::v1::ingest_service_client::IngestServiceClient;
use fieldwatch::proto::v1::{self, SubmitRequest};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const CATI_TOKEN: &str = "token-of-cati-east-3c1f";
const WEB_TOKEN: &str = "token-of-web-panel-9d07";
/// Bounds each wait on the service: far above what it takes, so only a hang
/// fails a test.
const WAIT: Duration = Duration::from_secs(30);

use common::Service as Svc;

fn tokens(names: &[(&str, &str)]) -> Vec<TokenConfig> {
    names.iter().map(|(f, t)| TokenConfig { frontend: (*f).into(), sha256: token_hash(t) }).collect()
}

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls")
}

fn server_tls(client_ca: bool) -> TlsConfig {
    TlsConfig {
        cert_file: tls_dir().join("server.crt"),
        key_file: tls_dir().join("server.key"),
        client_ca_file: client_ca.then(|| tls_dir().join("ca.crt")),
        handshake_timeout_ms: 10_000,
    }
}

/// Everything on loopback and free ports, data in `dir`.
fn config(dir: &Path, tokens: Vec<TokenConfig>, tls: Option<TlsConfig>) -> Config {
    let mut c = common::loopback_config(dir);
    c.ingest.tokens = tokens;
    c.ingest.tls = tls;
    c
}

async fn plain_client(svc: &Svc) -> IngestServiceClient<Channel> {
    IngestServiceClient::connect(format!("http://{}", svc.grpc)).await.expect("connect")
}

/// A TLS channel trusting the test CA, presenting the client certificate
/// when `with_cert`.
async fn tls_channel(svc: &Svc, with_cert: bool) -> Result<Channel, tonic::transport::Error> {
    let read = |f: &str| std::fs::read(tls_dir().join(f)).expect("test certificate");
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.crt"))).domain_name("localhost");
    if with_cert {
        tls = tls.identity(Identity::from_pem(read("client.crt"), read("client.key")));
    }
    Endpoint::from_shared(format!("https://{}", svc.grpc))
        .expect("endpoint")
        .tls_config(tls)?
        .connect_timeout(WAIT)
        .connect()
        .await
}

fn valid(respondent: &str, submission: &str) -> v1::Submission {
    common::demo_interview(respondent, submission)
}

fn request(s: v1::Submission, token: Option<&str>) -> tonic::Request<SubmitRequest> {
    let mut r = tonic::Request::new(SubmitRequest { submission: Some(s), disposition: None });
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("ascii"));
    }
    r
}

/// Records in the responses topic.
fn stored_count(svc: &Svc) -> i64 {
    let k = KafkaConfig::default();
    common::topic_records(&k, &svc.bootstrap, &k.responses_topic, WAIT)
}

/// Interviews the aggregator has counted, once it has caught up with `n`.
async fn counted(svc: &Svc, n: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = svc.aggregator.merged(DEMO_STUDY_ID).interviews();
        if got >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scrape(svc: &Svc) -> String {
    reqwest::get(format!("http://{}/metrics", svc.http))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_token_or_with_a_wrong_one_are_unauthenticated_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::with_service(
        config(dir.path(), tokens(&[("cati-east", CATI_TOKEN)]), None),
        WAIT,
        |svc| async move {
            let mut client = plain_client(&svc).await;
            for (token, what) in
                [(None, "no token"), (Some("not-the-token"), "a wrong token"), (Some(""), "an empty token")]
            {
                let e = client.submit(request(valid("R-1", "S-1"), token)).await.expect_err(what);
                assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
            }
            // A stream is refused as a whole before any record is read.
            let records = futures::stream::iter([SubmitRequest {
                submission: Some(valid("R-2", "S-2")),
                disposition: None,
            }]);
            let e = client.submit_stream(records).await.expect_err("stream without a token");
            assert_eq!(e.code(), Code::Unauthenticated);

            assert_eq!(stored_count(&svc), 0, "nothing reached the responses topic");
            let metrics = scrape(&svc).await;
            assert!(
                metrics.contains(
                    r#"fieldwatch_ingest_requests_total{code="Unauthenticated",method="submit"} 3"#
                ),
                "{metrics}"
            );
            assert!(
                metrics.contains(
                    r#"fieldwatch_ingest_records_total{outcome="accepted",study="le-trafficking"} 0"#
                )
            );

            // The same interview with the right token goes through: the refusals
            // above were about the token, not the interview.
            client.submit(request(valid("R-1", "S-1"), Some(CATI_TOKEN))).await.expect("accepted");
            assert_eq!(stored_count(&svc), 1);
            assert_eq!(counted(&svc, 1).await, 1, "the aggregator counts exactly the accepted one");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_removed_from_the_config_is_unauthenticated_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let both = tokens(&[("cati-east", CATI_TOKEN), ("web-panel", WEB_TOKEN)]);
    let mut first = config(dir.path(), both, None);
    let bootstrap = common::with_service(first.clone(), WAIT, |svc| async move {
        let mut client = plain_client(&svc).await;
        client.submit(request(valid("R-1", "S-1"), Some(WEB_TOKEN))).await.expect("web-panel may submit");
        assert_eq!(counted(&svc, 1).await, 1);
        svc.bootstrap
    })
    .await;

    // The web panel's token is revoked: the restarted service (same data,
    // same broker address) no longer knows it.
    first.broker.listen = bootstrap.parse().expect("bootstrap is one address");
    first.ingest.tokens = tokens(&[("cati-east", CATI_TOKEN)]);
    // A fresh consumer group replays the topic from the start. With the old
    // group, the embedded broker sometimes still holds the previous member
    // after the restart and the rebalance waits out its session timeout
    // (45 s); that is not what this test is about.
    first.aggregate.group_id = "after-revocation".into();
    common::with_service(first, WAIT, |svc| async move {
        assert_eq!(counted(&svc, 1).await, 1, "the earlier interview is still counted");
        let mut client = plain_client(&svc).await;
        let e = client.submit(request(valid("R-2", "S-2"), Some(WEB_TOKEN))).await.expect_err("revoked");
        assert_eq!(e.code(), Code::Unauthenticated);
        assert_eq!(stored_count(&svc), 1, "the revoked front-end stored nothing");

        client.submit(request(valid("R-3", "S-3"), Some(CATI_TOKEN))).await.expect("cati-east still may");
        assert_eq!(stored_count(&svc), 2);
        assert_eq!(counted(&svc, 2).await, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_trusting_the_ca_connects_and_a_plaintext_client_gets_nothing_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), tokens(&[("cati-east", CATI_TOKEN)]), Some(server_tls(false)));
    common::with_service(config, WAIT, |svc| async move {
        let channel = tls_channel(&svc, false).await.expect("tls handshake with the configured certificate");
        let mut client = IngestServiceClient::new(channel);
        let e = client.submit(request(valid("R-1", "S-1"), None)).await.expect_err("tls is no token");
        assert_eq!(e.code(), Code::Unauthenticated);
        client.submit(request(valid("R-1", "S-1"), Some(CATI_TOKEN))).await.expect("accepted over tls");

        // Plaintext HTTP/2 to a TLS listener fails, whatever the token.
        let plain = Endpoint::from_shared(format!("http://{}", svc.grpc)).expect("endpoint").connect_lazy();
        let e = IngestServiceClient::new(plain)
            .submit(request(valid("R-2", "S-2"), Some(CATI_TOKEN)))
            .await
            .expect_err("plaintext is refused");
        assert_ne!(e.code(), Code::Ok);
        assert_eq!(stored_count(&svc), 1, "only the tls call stored its interview");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_presenting_a_certificate_get_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), tokens(&[("cati-east", CATI_TOKEN)]), Some(server_tls(true)));
    common::with_service(config, WAIT, |svc| async move {
        // Without a client certificate the handshake (TLS 1.3: the first
        // read after it) fails; either way no call gets through.
        if let Ok(channel) = tls_channel(&svc, false).await {
            let e = IngestServiceClient::new(channel)
                .submit(request(valid("R-1", "S-1"), Some(CATI_TOKEN)))
                .await
                .expect_err("no client certificate");
            assert_ne!(e.code(), Code::Ok);
        }
        assert_eq!(stored_count(&svc), 0);

        let channel = tls_channel(&svc, true).await.expect("mutual tls handshake");
        IngestServiceClient::new(channel)
            .submit(request(valid("R-1", "S-1"), Some(CATI_TOKEN)))
            .await
            .expect("accepted with a client certificate and a token");
        assert_eq!(stored_count(&svc), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_or_invalid_tls_files_fail_start_up_with_their_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = TlsConfig { cert_file: dir.path().join("nope.crt"), ..server_tls(false) };
    // A failed start shuts its embedded broker down, so the same data
    // directory is free for the next start.
    let e = app::start(config(dir.path(), tokens(&[("cati-east", CATI_TOKEN)]), Some(missing)), Parts::All)
        .await
        .err()
        .expect("a missing certificate fails start-up");
    assert!(format!("{e:#}").contains("nope.crt"), "{e:#}");

    // A key that is not the certificate's: caught at start-up, not at the
    // first handshake.
    let mismatched = TlsConfig { key_file: tls_dir().join("client.key"), ..server_tls(false) };
    let e =
        app::start(config(dir.path(), tokens(&[("cati-east", CATI_TOKEN)]), Some(mismatched)), Parts::All)
            .await
            .err()
            .expect("a key of another certificate fails start-up");
    assert!(format!("{e:#}").contains("invalid ingest tls certificate or key"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_ingest_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path(), Vec::new(), None);
    c.ingest.listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let e = app::start(c, Parts::All).await.err().expect("open ingest on 0.0.0.0 is refused");
    assert!(format!("{e:#}").contains("loopback"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_health_service_the_readiness_probe_asks_for_is_serving_without_a_token() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let dir = tempfile::tempdir().expect("tempdir");
    common::with_service(
        config(dir.path(), tokens(&[("cati-east", CATI_TOKEN)]), None),
        WAIT,
        |svc| async move {
            // What the chart's `grpc:` readiness probe asks (the kubelet sends no token).
            let channel =
                Endpoint::from_shared(format!("http://{}", svc.grpc)).expect("endpoint").connect_lazy();
            let status = HealthClient::new(channel)
                .check(HealthCheckRequest { service: "fieldwatch.v1.IngestService".into() })
                .await
                .expect("health answers")
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32);
        },
    )
    .await;
}
