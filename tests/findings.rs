//! The seed study end to end: the 121 interviews of `tests/data/seed-121.jsonl`
//! (built by `tests/data/make_seed_dataset.py`) run through the offline report
//! must reproduce the findings the seed report publishes, as listed in
//! `tests/data/seed-findings.json`.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::Command;

use fieldwatch::instrument::Study;
use fieldwatch::report;
use fieldwatch::results::Toplines;
use fieldwatch::results::toplines::ItemTopline;
use fieldwatch::validate::Limits;
use serde::Deserialize;

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const DATASET: &str = "tests/data/seed-121.jsonl";
const FINDINGS: &str = "tests/data/seed-findings.json";
const INSTRUMENT: &str = "config/instruments/le-trafficking.yaml";

/// One published finding, as the generator wrote it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Finding {
    finding: String,
    item: String,
    by: Option<String>,
    segment: Option<String>,
    measure: String,
    value: Option<String>,
    percent: i64,
}

fn findings() -> Vec<Finding> {
    let text = std::fs::read_to_string(path(FINDINGS)).expect("read seed-findings.json");
    serde_json::from_str(&text).expect("seed-findings.json is a list of findings")
}

fn study() -> Study {
    let src = std::fs::read_to_string(path(INSTRUMENT)).expect("read the shipped instrument");
    Study::from_yaml(&src).expect("the shipped instrument is valid")
}

fn run(study: &Study, by: Option<&str>) -> (report::Tally, Toplines) {
    let file = std::fs::File::open(path(DATASET)).expect("open seed-121.jsonl");
    report::run(study, BufReader::new(file), by, &Limits::default()).expect("report runs")
}

fn percent(share: f64) -> i64 {
    (share * 100.0).round() as i64
}

/// The finding's percentage as the report computes it, or why it cannot.
fn measured(f: &Finding, it: &ItemTopline) -> Result<i64, String> {
    if it.suppressed {
        return Err(format!("cell suppressed (valid n {})", it.valid_n));
    }
    match f.measure.as_str() {
        "share" => {
            let value = f.value.as_deref().ok_or("a share needs a value")?;
            it.distribution
                .iter()
                .find(|c| c.value == value)
                .map(|c| percent(c.share))
                .ok_or_else(|| format!("no category `{value}`"))
        }
        m @ ("high_box" | "middle_box" | "low_box") => {
            let b = it.boxes.ok_or("no boxes: not a scale")?;
            Ok(percent(match m {
                "high_box" => b.high,
                "middle_box" => b.middle,
                _ => b.low,
            }))
        }
        other => Err(format!("unknown measure `{other}`")),
    }
}

#[test]
fn seed_dataset_reproduces_published_findings() {
    reproduces_published_findings(&study());
}

/// The seed's four forms as XLSForm workbooks (`docs/xlsform.md`) give the
/// same findings as the YAML instrument.
#[test]
fn seed_dataset_reproduces_published_findings_with_the_xlsform_workbooks() {
    let catalog =
        fieldwatch::instrument::Catalog::load_paths(&[path("tests/xlsform/seed")]).expect("workbooks load");
    let study = catalog.get("le-trafficking").expect("the seed study");
    assert_eq!(findings().len(), 74);
    reproduces_published_findings(study);
}

fn reproduces_published_findings(study: &Study) {
    let mut tops: BTreeMap<Option<String>, Toplines> = BTreeMap::new();
    let fs = findings();
    let mut failures = Vec::new();
    for f in &fs {
        let top = tops.entry(f.by.clone()).or_insert_with(|| run(study, f.by.as_deref()).1);
        let segment = f.segment.as_deref().unwrap_or("all");
        let Some(group) = top.groups.iter().find(|g| g.segment == segment) else {
            failures.push(format!("{}: no segment `{segment}`", f.finding));
            continue;
        };
        let Some(it) = group.items.iter().find(|i| i.code == f.item) else {
            failures.push(format!("{}: no item `{}`", f.finding, f.item));
            continue;
        };
        match measured(f, it) {
            Ok(p) if p == f.percent => {}
            Ok(p) => failures.push(format!(
                "{}: {} {} {:?} in {segment}: fieldwatch computes {p}%, the published figure is {}% (valid n {})",
                f.finding, f.item, f.measure, f.value, f.percent, it.valid_n
            )),
            Err(why) => failures.push(format!("{}: {}: {why}", f.finding, f.item)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} findings not reproduced:\n{}",
        failures.len(),
        fs.len(),
        failures.join("\n")
    );
}

#[test]
fn the_findings_file_covers_the_headline_findings() {
    let fs = findings();
    assert!(fs.len() >= 10, "only {} findings", fs.len());
    let has = |item: &str, segment: Option<&str>, measure: &str, value: Option<&str>, percent: i64| {
        fs.iter().any(|f| {
            f.item == item
                && f.segment.as_deref() == segment
                && f.measure == measure
                && f.value.as_deref() == value
                && f.percent == percent
        })
    };
    assert!(has("knowledge", None, "high_box", None, 57));
    assert!(has("knowledge", None, "middle_box", None, 25));
    assert!(has("knowledge", None, "low_box", None, 18));
    assert!(has("knowledge", Some("investigator"), "high_box", None, 64));
    assert!(has("knowledge", Some("line_officer"), "high_box", None, 34));
    assert!(has("task_force", Some("investigator"), "share", Some("yes"), 71));
    assert!(has("services_needed", None, "share", Some("housing"), 65));
    assert!(has("communication_challenge", None, "high_box", None, 63));
    for f in &fs {
        assert_eq!(f.by.is_some(), f.segment.is_some(), "{}: `by` and `segment` go together", f.finding);
        assert_eq!(f.measure == "share", f.value.is_some(), "{}: a value exactly for shares", f.finding);
    }
}

#[test]
fn the_seed_dataset_is_accepted_whole_and_raises_no_quality_flag() {
    let study = study();
    let (tally, top) = run(&study, None);
    assert_eq!(tally.lines, 121);
    assert!(tally.errors.is_empty(), "rejected lines: {:?}", tally.errors);
    assert_eq!(tally.other_study, 0);
    assert!(tally.state.flags.is_empty(), "quality flags on a clean dataset: {:?}", tally.state.flags);
    assert_eq!(tally.state.possible_duplicates(), 0);
    let all = &top.groups[0];
    assert_eq!(all.interviews, 121);
    let by_form: BTreeMap<&str, u64> = all.interviews_by_form.iter().map(|(f, n)| (f.as_str(), *n)).collect();
    assert_eq!(by_form.get("investigator"), Some(&84));
    assert_eq!(by_form.get("line_officer"), Some(&30));
    assert_eq!(by_form.get("victim_witness"), Some(&7));
    assert_eq!(by_form.get("federal").copied().unwrap_or(0), 0);
    for it in &all.items {
        assert_eq!(it.missing.nonresponse, 0, "{}: item nonresponse", it.code);
        assert_eq!(it.excluded, 0, "{}: values excluded by quality flags", it.code);
    }
}

#[test]
fn the_regional_distribution_matches_figure_one() {
    let study = study();
    let (_, top) = run(&study, Some("region"));
    let n = |seg: &str| top.groups.iter().find(|g| g.segment == seg).map(|g| g.interviews).unwrap_or(0);
    let total: u64 = top.groups.iter().map(|g| g.interviews).sum();
    assert_eq!(total, 121);
    assert_eq!(n("other") + n("unknown"), 0, "undeclared or missing regions");
    assert_eq!(percent(n("southeast") as f64 / 121.0), 25);
    assert_eq!(percent(n("southwest") as f64 / 121.0), 20);
}

#[test]
fn the_report_command_prints_the_same_headline_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_fieldwatch"))
        .args(["report", "--input"])
        .arg(path(DATASET))
        .args(["--study", "le-trafficking", "--by", "position", "--format", "json", "--instruments"])
        .arg(path(INSTRUMENT))
        .output()
        .expect("run fieldwatch report");
    assert!(out.status.success(), "report failed: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report prints JSON");
    let high = |segment: &str, code: &str| -> i64 {
        let group = doc["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["segment"] == segment))
            .unwrap_or_else(|| panic!("no segment {segment}"));
        let item = group["items"]
            .as_array()
            .and_then(|is| is.iter().find(|i| i["code"] == code))
            .unwrap_or_else(|| panic!("no item {code} in {segment}"));
        percent(item["boxes"]["high"].as_f64().expect("high box"))
    };
    assert_eq!(high("investigator", "knowledge"), 64);
    assert_eq!(high("line_officer", "knowledge"), 34);
    assert_eq!(high("line_officer", "communication_challenge"), 78);
    assert_eq!(doc["rejected"].as_array().map(Vec::len), Some(0));
}
