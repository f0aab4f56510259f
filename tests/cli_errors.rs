//! The binary's errors as a user meets them: one `error:` line with the
//! whole cause chain, and a failing exit status.

use std::process::{Command, Output};

fn fieldwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldwatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run fieldwatch")
}

fn fails_with(args: &[&str], expected: &str) {
    let out = fieldwatch(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} must fail");
    assert!(stderr.lines().any(|l| l.starts_with("error: ") && l.contains(expected)), "{args:?}: {stderr}");
}

#[test]
fn a_missing_config_file_is_reported_with_its_reason() {
    fails_with(
        &["serve", "--config", "tests/data/no-such-config.yaml"],
        "cannot read config file tests/data/no-such-config.yaml: No such file or directory",
    );
}

#[test]
fn a_missing_report_input_is_reported_with_its_reason() {
    fails_with(
        &["report", "--input", "tests/data/no-such-input.jsonl"],
        "cannot open tests/data/no-such-input.jsonl: No such file or directory",
    );
}

#[test]
fn an_unknown_study_names_the_loaded_ones() {
    fails_with(
        &["instrument", "show", "no-such-study"],
        "unknown study `no-such-study` (loaded: le-trafficking)",
    );
}

#[test]
fn generate_writes_one_interview_per_line_with_ids_from_the_seed() {
    let out = fieldwatch(&["generate", "--count", "3", "--seed", "9"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["respondent_id"], "gen-9-r2");
    assert_eq!(lines[2]["submission_id"], "gen-9-s2");
}
