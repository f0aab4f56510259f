//! XLSForm import end to end: the seed study's four forms as workbooks
//! (`tests/xlsform/seed/`, written by `tests/xlsform/make_seed_workbooks.py`)
//! must behave exactly as the YAML instrument: the same `report --format
//! json` byte for byte, the same YAML through `instrument import`, and the
//! live service started on the folder of workbooks must accept, check and
//! tabulate submissions as it does with the YAML.

mod common;

use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use fieldwatch::instrument::{Catalog, Study};
use fieldwatch::report;
use fieldwatch::validate::Limits;

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const YAML: &str = "config/instruments/le-trafficking.yaml";
const WORKBOOKS: &str = "tests/xlsform/seed";
const DATASET: &str = "tests/data/seed-121.jsonl";
const PROBES: &str = "tests/data/quality-probe.jsonl";

fn fieldwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldwatch")).args(args).output().expect("run fieldwatch")
}

fn report_json(instruments: &str, input: &str, by: Option<&str>) -> Vec<u8> {
    let (input, instruments) = (path(input), path(instruments));
    let mut args = vec!["report", "--input", input.to_str().expect("utf8"), "--study", "le-trafficking"];
    if let Some(b) = by {
        args.extend(["--by", b]);
    }
    args.extend(["--format", "json", "--instruments", instruments.to_str().expect("utf8")]);
    let out = fieldwatch(&args);
    assert!(out.status.success(), "report failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn seed_workbooks() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path(WORKBOOKS))
        .expect("seed workbooks")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "xlsx"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "four forms");
    files
}

#[test]
fn the_seed_workbooks_give_a_byte_identical_json_report_to_the_yaml_instrument() {
    for input in [DATASET, PROBES] {
        for by in [None, Some("position"), Some("region"), Some("interviewer")] {
            let yaml = report_json(YAML, input, by);
            let xls = report_json(WORKBOOKS, input, by);
            assert!(yaml.len() > 1000, "a real report");
            assert!(
                std::str::from_utf8(&yaml).expect("utf8").contains("\"quotas\": ["),
                "the demo declares quotas and the comparison keeps them"
            );
            assert!(yaml == xls, "reports on {input} by {by:?} differ");
        }
    }
}

#[test]
fn the_seed_workbooks_import_to_a_study_that_tabulates_the_seed_exactly_as_the_yaml() {
    let yaml = Study::from_yaml(&std::fs::read_to_string(path(YAML)).expect("yaml")).expect("valid");
    let catalog = Catalog::load_paths(&[path(WORKBOOKS)]).expect("the workbooks load");
    let xls = catalog.get("le-trafficking").expect("the study");
    let run = |s: &Study| {
        let file = std::fs::File::open(path(DATASET)).expect("dataset");
        let (tally, top) =
            report::run(s, BufReader::new(file), Some("position"), &Limits::default()).expect("runs");
        (tally.lines, tally.errors.len(), tally.state.flags.len(), serde_json::to_string(&top).expect("json"))
    };
    let (a, b) = (run(&yaml), run(xls));
    assert_eq!(a.0, 121);
    assert_eq!(a, b);
    assert_eq!(yaml.codes.len(), xls.codes.len());
}

#[test]
fn instrument_import_writes_yaml_that_loads_and_reports_like_the_original() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("le-trafficking.yaml");
    let mut args: Vec<String> = vec!["instrument".into(), "import".into()];
    args.extend(seed_workbooks().iter().map(|p| p.display().to_string()));
    args.extend(["--study".into(), "le-trafficking".into(), "--out".into(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = fieldwatch(&args);
    assert!(o.status.success(), "import failed: {}", String::from_utf8_lossy(&o.stderr));
    let check = fieldwatch(&["instrument", "check", out.to_str().expect("utf8")]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let imported = out.to_str().expect("utf8");
    let yaml = report_json(YAML, DATASET, Some("position"));
    let again = report_json(imported, DATASET, Some("position"));
    assert!(yaml == again, "the imported YAML reports differently");
}

#[test]
fn instrument_check_and_show_read_a_folder_of_workbooks() {
    let out = fieldwatch(&["instrument", "check", path(WORKBOOKS).to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok (study le-trafficking, 4 forms"), "{text}");
    let show = fieldwatch(&[
        "instrument",
        "show",
        "le-trafficking",
        "--instruments",
        path(WORKBOOKS).to_str().expect("utf8"),
    ]);
    assert!(show.status.success());
    assert!(String::from_utf8_lossy(&show.stdout).contains("form investigator"));
}

#[test]
fn instrument_check_lists_every_problem_of_broken_workbooks_with_sheet_row_and_column() {
    let out = fieldwatch(&[
        "instrument",
        "check",
        path("tests/xlsform/cases/broken-many.xlsx").to_str().expect("utf8"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 4, "{err}");
    assert!(err.contains("sheet survey row 3 column B: name `age` is already used on row 2"), "{err}");
    assert!(err.contains("sheet survey row 4 column A: repeat `members` is not supported"), "{err}");
    assert!(err.contains("column E: `relevant`"), "{err}");
}

/// `report --format json` of JSONL `lines` on one case workbook.
fn case_report(case: &str, study: &str, lines: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).expect("write input");
    let book = path(&format!("tests/xlsform/cases/{case}.xlsx"));
    let out = fieldwatch(&[
        "report",
        "--input",
        input.to_str().expect("utf8"),
        "--study",
        study,
        "--format",
        "json",
        "--instruments",
        book.to_str().expect("utf8"),
    ]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_hard_constraint_rejects_through_report_with_its_message_and_a_soft_one_does_not() {
    let line = |n: u32, answers: &str| {
        format!(
            r#"{{"study":"ok_hard_constraint","form":"ok_hard_constraint","respondent_id":"r{n}","submission_id":"s{n}","answers":{answers}}}"#
        )
    };
    let lines = [line(1, r#"{"adults": 2, "workers": 3}"#), line(2, r#"{"adults": 2, "workers": 2}"#)];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let r = case_report("ok-hard-constraint", "ok_hard_constraint", &lines);
    assert_eq!(r["groups"][0]["interviews"], 1, "the broken interview is not counted");
    assert_eq!(
        r["rejected"],
        serde_json::json!([{"line": 1, "violations": [
            {"field": "answers.workers", "rule": "constraint", "message": "At most the adults"}
        ]}])
    );
}

#[test]
fn sentinel_numbers_count_as_dont_know_and_refused_through_report_not_as_values() {
    let line = |n: u32, answers: &str| {
        format!(
            r#"{{"study":"missing_numbers","form":"missing_numbers","respondent_id":"r{n}","submission_id":"s{n}","answers":{answers}}}"#
        )
    };
    // The case's map: -98 don't know, -99 and 999 refused; age 0..120
    // takes all three (outside its range), income lists -98 and -99.
    let lines = [
        line(1, r#"{"age": 999, "income": -99}"#),
        line(2, r#"{"age": 99, "income": 1200.5}"#),
        line(3, r#"{"age": -98, "income": -98}"#),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let r = case_report("ok-missing-numbers", "missing_numbers", &lines);
    assert_eq!(r["rejected"], serde_json::json!([]));
    for item in r["groups"][0]["items"].as_array().expect("items") {
        assert_eq!(item["valid_n"], 1, "{item}");
        assert_eq!(item["excluded"], 0, "a sentinel is not out of range: {item}");
        assert_eq!(item["missing"]["dont_know"], 1, "{item}");
        assert_eq!(item["missing"]["refused"], 1, "{item}");
    }
}

#[test]
fn the_committed_workbooks_are_exactly_what_the_scripts_write() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "/var/tmp/fieldwatch-venv/bin/python".into());
    let dir = tempfile::tempdir().expect("tempdir");
    for (script, committed) in [
        ("tests/xlsform/make_seed_workbooks.py", WORKBOOKS),
        ("tests/xlsform/make_cases.py", "tests/xlsform/cases"),
    ] {
        let out_dir = dir.path().join(committed.replace('/', "_"));
        let out =
            Command::new(&python).arg(path(script)).arg(&out_dir).output().expect("run the python generator");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        let mut n = 0;
        for e in std::fs::read_dir(&out_dir).expect("written") {
            let written = e.expect("entry").path();
            let name = written.file_name().expect("name");
            let kept = std::fs::read(path(committed).join(name)).expect("committed workbook");
            assert!(
                std::fs::read(&written).expect("read") == kept,
                "{} differs from the script",
                name.display()
            );
            n += 1;
        }
        assert!(n >= 4, "{script} wrote {n} workbooks");
    }
}

/// The first difference between live and offline JSON; numbers within
/// 1e-12 are equal (serde_json's default float parser is not exact in the
/// last digit), as in tests/e2e.rs.
#[cfg(feature = "embedded-broker")]
fn first_difference(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    use serde_json::Value::{Array, Number, Object};
    match (a, b) {
        (Object(x), Object(y)) => x.keys().chain(y.keys()).find_map(|k| {
            let null = serde_json::Value::Null;
            first_difference(&format!("{path}.{k}"), x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null))
        }),
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(&format!("{path}[{i}]"), va, vb)),
        _ if a == b => None,
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            ((x - y).abs() > 1e-12).then(|| format!("{path}: live {x} vs offline {y}"))
        }
        _ => Some(format!("{path}: live {a} vs offline {b}")),
    }
}

/// Bounds the start, the shutdown and every wait.
#[cfg(feature = "embedded-broker")]
const WAIT: Duration = Duration::from_secs(60);

#[cfg(feature = "embedded-broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_started_on_a_folder_of_workbooks_accepts_checks_and_tabulates_as_with_the_yaml() {
    use fieldwatch::submit::{self, SubmitOptions};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::loopback_config(dir.path());
    config.kafka.partitions = 2;
    config.instruments = vec![path(WORKBOOKS)];
    let yaml = Study::from_yaml(&std::fs::read_to_string(path(YAML)).expect("yaml")).expect("valid");
    common::with_service(config, WAIT, |r| async move {
        let opts = SubmitOptions {
            server: format!("http://{}", r.grpc),
            token: None,
            retry_for: WAIT,
            progress: false,
        };
        let mut accepted = 0;
        for input in [DATASET, PROBES] {
            let file = std::fs::File::open(path(input)).expect("input");
            let mut out = Vec::new();
            let s = submit::run(BufReader::new(file), &opts, &mut out).await.expect("submit runs");
            // The YAML instrument accepts and rejects the same lines offline.
            let file = std::fs::File::open(path(input)).expect("input");
            let (tally, _) =
                report::run(&yaml, BufReader::new(file), None, &Limits::default()).expect("report");
            assert_eq!(
                s.accepted as usize,
                tally.lines - tally.errors.len(),
                "{}",
                String::from_utf8_lossy(&out)
            );
            assert_eq!(s.rejected as usize, tally.errors.len());
            accepted += s.accepted;
        }
        // Offline over both files with the YAML: the interviews it counts
        // (duplicate respondents do not count), its toplines and flags.
        let both = format!(
            "{}\n{}",
            std::fs::read_to_string(path(DATASET)).expect("dataset").trim_end(),
            std::fs::read_to_string(path(PROBES)).expect("probes").trim_end()
        );
        let (tally, offline) = report::run(&yaml, both.as_bytes(), None, &Limits::default()).expect("report");
        assert!(!tally.state.flags.is_empty(), "the probes raise quality flags");
        let offline = serde_json::to_value(&offline).expect("json");
        assert!(accepted > 121);
        let url = format!("http://{}/api/v1/studies/le-trafficking/toplines", r.http);
        let mut live = serde_json::Value::Null;
        for _ in 0..1200 {
            live = reqwest::get(&url).await.expect("GET").json().await.expect("json");
            if live["caught_up"] == true
                && live["groups"][0]["interviews"] == offline["groups"][0]["interviews"]
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(d) = first_difference("groups", &live["groups"], &offline["groups"]) {
            panic!("live toplines on the workbooks differ from offline on the YAML: {d}");
        }
    })
    .await;
}
