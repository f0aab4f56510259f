//! `fieldwatch instrument check` as a user runs it: a broken instrument
//! fails with every problem located as `file:line:`, the shipped study passes.

use std::path::Path;
use std::process::{Command, Output};

const BROKEN: &str = "tests/data/broken-instrument.yaml";
const SHIPPED: &str = "config/instruments/le-trafficking.yaml";

fn check(file: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldwatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["instrument", "check", file])
        .output()
        .expect("run fieldwatch instrument check")
}

/// `(line, piece of the message)` for every `# expect:` marker in the file.
fn expectations(file: &str) -> Vec<(usize, String)> {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).expect("read instrument");
    src.lines()
        .enumerate()
        .filter_map(|(n, l)| l.split_once("# expect: ").map(|(_, m)| (n + 1, m.trim().to_string())))
        .collect()
}

#[test]
fn a_broken_instrument_fails_with_every_problem_at_its_file_and_line() {
    let out = check(BROKEN);
    assert!(!out.status.success(), "a broken instrument must fail the check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = expectations(BROKEN);
    assert_eq!(expected.len(), 5, "the broken file marks five problems");
    for (line, message) in &expected {
        let prefix = format!("{BROKEN}:{line}: ");
        assert!(
            stderr.lines().any(|l| l.starts_with(&prefix) && l.contains(message.as_str())),
            "missing `{prefix}... {message}` in:\n{stderr}"
        );
    }
    let located = stderr.lines().filter(|l| l.starts_with(&format!("{BROKEN}:"))).count();
    assert_eq!(located, expected.len(), "one line per problem, no others:\n{stderr}");
    assert!(!stderr.contains(&format!("{BROKEN}:0:")), "a problem without its line:\n{stderr}");
}

#[test]
fn the_shipped_study_passes_the_check() {
    let out = check(SHIPPED);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("{SHIPPED}: ok")), "{stdout}");
    assert!(stdout.contains("study le-trafficking, 4 forms"), "{stdout}");
}
