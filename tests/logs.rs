//! `fieldwatch serve` as a log collector sees it: stderr redirected to a
//! pipe carries no ANSI escape codes, and with `log.format: json` every line
//! is one JSON object.

#![cfg(feature = "embedded-broker")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Far above the start-up time on a loaded machine.
const WAIT: Duration = Duration::from_secs(120);

/// Starts `serve` on free ports with `env`, collects its stderr lines until
/// the `started` event, stops it, and returns the lines.
fn serve_stderr(env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_fieldwatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("serve")
        .env_remove("RUST_LOG")
        .env("FIELDWATCH__INGEST__LISTEN", "127.0.0.1:0")
        .env("FIELDWATCH__HTTP__LISTEN", "127.0.0.1:0")
        .env("FIELDWATCH__DATA_DIR", dir.path())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fieldwatch serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + WAIT;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let started = line.contains("started");
                lines.push(line);
                if started {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.iter().any(|l| l.contains("started")), "serve started within {WAIT:?}: {lines:#?}");
    lines
}

#[test]
fn redirected_text_logs_have_no_colour_codes_and_json_logs_are_one_object_per_line() {
    let text = serve_stderr(&[]);
    assert!(text.iter().all(|l| !l.contains('\u{1b}')), "no ANSI escapes: {text:#?}");
    assert!(text.iter().any(|l| l.contains(" INFO ")), "readable text lines: {text:#?}");

    let json = serve_stderr(&[("FIELDWATCH__LOG__FORMAT", "json")]);
    for line in &json {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(v["level"].is_string() && v["fields"].is_object() && v["timestamp"].is_string(), "{line}");
        assert!(!line.contains('\u{1b}'));
    }
    assert!(json.iter().any(|l| l.contains(r#""message":"started""#)), "{json:#?}");
}
