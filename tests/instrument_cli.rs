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

/// The shipped study with one relevance condition replaced by `condition`,
/// written to `dir`.
fn poisoned(dir: &Path, condition: &str) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SHIPPED))
        .expect("read instrument");
    let (before, after) = shipped.split_once("relevant: ").expect("a relevance condition");
    let rest = after.split_once('\n').map_or("", |(_, r)| r);
    let path = dir.join("poison.yaml");
    std::fs::write(&path, format!("{before}relevant: {condition}\n{rest}")).expect("write instrument");
    path
}

#[test]
fn a_poison_relevance_condition_is_refused_by_check_and_by_serve_naming_its_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, condition) in [
        ("20,000 `or` terms", vec!["q13_male > 0"; 20_000].join(" or ")),
        ("300 terms", vec!["q1>0"; 300].join(" or ")),
        ("deep nesting", format!("{}q13_male > 0{}", "(".repeat(2000), ")".repeat(2000))),
        ("a chain of `not`", format!("{}q13_male > 0", "not ".repeat(1000))),
    ] {
        let path = poisoned(dir.path(), &condition);
        let file = path.to_str().expect("utf-8 path");
        let out = check(file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: instrument check must fail");
        assert!(out.status.code().is_some(), "{what}: check exits, it does not crash: {:?}", out.status);
        let line = stderr.lines().find(|l| l.contains("relevant") || l.contains("condition")).unwrap_or("");
        assert!(
            line.contains("item `q14"),
            "{what}: the error names the item:\n{}",
            &stderr[..stderr.len().min(600)]
        );
        assert!(!line.starts_with(&format!("{file}:0:")), "{what}: the error has its line: {line:.200}");

        let config = dir.path().join("fieldwatch.yaml");
        std::fs::write(
            &config,
            format!(
                "instruments: [{file}]\ndata_dir: {}\ningest: {{listen: 127.0.0.1:0}}\nhttp: {{listen: 127.0.0.1:0}}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write config");
        let served = Command::new(env!("CARGO_BIN_EXE_fieldwatch"))
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .expect("run fieldwatch serve");
        assert!(!served.status.success(), "{what}: serve refuses the instrument");
        assert!(
            served.status.code().is_some(),
            "{what}: serve exits, it does not crash: {:?}",
            served.status
        );
    }
}
