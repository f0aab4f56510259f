//! Unit tests of the ingest settings.

use super::*;

#[test]
fn an_empty_config_takes_every_default_but_needs_a_key() {
    let c: IngestConfig = crate::yaml::from_str("{}").expect("parse");
    assert_eq!(c, IngestConfig::default());
    assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
    assert_eq!((c.max_inflight, c.stream_window), (2048, 256));
    assert!(matches!(c.validate(), Err(IngestError::Config(m)) if m.contains("hmac_key")));
}

#[test]
fn unknown_keys_are_errors() {
    assert!(crate::yaml::from_str::<IngestConfig>("max_in_flight: 3").is_err());
}

#[test]
fn the_key_comes_from_the_environment_and_the_demo_key_only_when_asked() {
    let mut c = IngestConfig::default();
    c.apply_env(|k| (k == HMAC_KEY_ENV).then(|| "0123456789abcdef-from-env".to_string()));
    assert_eq!(c.hmac_key.as_deref(), Some("0123456789abcdef-from-env"));
    assert!(!c.use_demo_key_if_unset());
    let mut d = IngestConfig::default();
    assert!(d.use_demo_key_if_unset());
    assert!(d.validate().is_ok());
}

#[test]
fn tls_takes_paths_and_a_default_handshake_timeout() {
    let c: IngestConfig = crate::yaml::from_str("tls: {cert_file: /c.pem, key_file: /k.pem}").expect("parse");
    let tls = c.tls.expect("tls");
    assert_eq!(tls.cert_file, PathBuf::from("/c.pem"));
    assert_eq!(tls.client_ca_file, None);
    assert_eq!(tls.handshake_timeout_ms, 10_000);
    assert!(
        crate::yaml::from_str::<IngestConfig>("tls: {cert_file: /c.pem}").is_err(),
        "key_file is required"
    );
}

#[test]
fn an_unreadable_certificate_is_named_in_the_error() {
    let tls = TlsConfig {
        cert_file: PathBuf::from("/nonexistent/cert.pem"),
        key_file: PathBuf::from("/nonexistent/key.pem"),
        client_ca_file: None,
        handshake_timeout_ms: 1,
    };
    let e = tls.load().expect_err("no such file");
    assert!(matches!(&e, IngestError::TlsFile { path, .. } if path.ends_with("cert.pem")), "{e}");
}

#[test]
fn short_keys_bad_tokens_and_zero_limits_are_all_reported() {
    let c = IngestConfig {
        hmac_key: Some("short".into()),
        max_inflight: 0,
        tokens: vec![TokenConfig { frontend: "web".into(), sha256: "nothex".into() }],
        ..IngestConfig::default()
    };
    let Err(IngestError::Config(m)) = c.validate() else { panic!("expected a config error") };
    assert!(m.contains("hmac_key") && m.contains("max_inflight") && m.contains("sha256"), "{m}");
}
