//! One step of the core pipeline over N synthetic interviews of the demo
//! study, for counting instructions with callgrind (`scripts/callgrind`):
//!
//! ```text
//! instructions validate|check|apply|record N
//! ```
//!
//! `record` is the aggregator's whole path for each record of a partition
//! (`LiveState::apply_record`: decode the envelope as ingest encoded it,
//! validate, check, apply, bookkeeping).
//!
//! The inputs of the step (interviews; validated records; checked records;
//! encoded envelopes) are prepared first; the step itself runs inside one
//! function per step (`measure_validate`, `measure_check`, `measure_apply`,
//! `measure_record`), never inlined, so
//! `valgrind --tool=callgrind --toggle-collect='*measure_<step>*'` counts
//! that step alone. Interviews go round the study's four forms.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;

use fieldwatch::aggregate::{LiveState, Outcome};
use fieldwatch::instrument::{Catalog, DEMO_STUDY_ID, Study};
use fieldwatch::proto::v1;
use fieldwatch::quality::{Checked, check};
use fieldwatch::results::StudyState;
use fieldwatch::synth::{Options, interviews};
use fieldwatch::validate::{Limits, Record, Submission, validate};
use prost::Message as _;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(step), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: instructions validate|check|apply|record N");
        return ExitCode::FAILURE;
    };
    let catalog = Catalog::demo();
    let Some(study) = catalog.get(DEMO_STUDY_ID).cloned() else {
        eprintln!("the demo study is missing");
        return ExitCode::FAILURE;
    };
    let limits = Limits::default();
    let subs = interviews(&study, n, 1, &Options { random_strings: false });
    let records =
        || -> Vec<Record> { subs.iter().filter_map(|s| validate(&catalog, s, &limits).ok()).collect() };
    let done = match step.as_str() {
        "validate" => measure_validate(&catalog, &subs, &limits),
        "check" => measure_check(&study, &records()),
        "apply" => {
            let records = records();
            let checked: Vec<Checked> = records.iter().map(|r| check(&study, r)).collect();
            measure_apply(&study, &records, &checked)
        }
        "record" => {
            let envelopes: Vec<Vec<u8>> = subs
                .iter()
                .map(|s| {
                    let at = Some(std::time::SystemTime::UNIX_EPOCH.into());
                    v1::Envelope::of_submission(s.clone().into(), at, "instructions").encode_to_vec()
                })
                .collect();
            let live = LiveState::new(Arc::new(catalog.clone()), limits);
            live.assign(0, None);
            measure_record(&live, &envelopes)
        }
        _ => {
            eprintln!("unknown step `{step}`: validate, check, apply or record");
            return ExitCode::FAILURE;
        }
    };
    if done != subs.len() {
        eprintln!("{step}: {done} of {} interviews went through", subs.len());
        return ExitCode::FAILURE;
    }
    println!("{step}: {done} interviews");
    ExitCode::SUCCESS
}

/// Validates every interview; returns how many were valid.
#[inline(never)]
fn measure_validate(catalog: &Catalog, subs: &[Submission], limits: &Limits) -> usize {
    subs.iter().filter(|s| black_box(validate(catalog, s, limits)).is_ok()).count()
}

/// Runs the quality checks on every record; returns how many were checked.
#[inline(never)]
fn measure_check(study: &Study, records: &[Record]) -> usize {
    let mut n = 0;
    for r in records {
        black_box(check(study, r));
        n += 1;
    }
    n
}

/// The aggregator's whole path for each record of one partition: decode
/// the envelope, validate, check, apply, bookkeeping
/// (`LiveState::apply_record`); returns how many were applied.
#[inline(never)]
fn measure_record(live: &LiveState, envelopes: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for (offset, e) in (0i64..).zip(envelopes) {
        if black_box(live.apply_record(0, offset, Some(e))).0 == Outcome::Applied {
            n += 1;
        }
    }
    n
}

/// Applies every record to one study state; returns how many were applied.
#[inline(never)]
fn measure_apply(study: &Study, records: &[Record], checked: &[Checked]) -> usize {
    let mut state = StudyState::new();
    let mut n = 0;
    for (r, c) in records.iter().zip(checked) {
        black_box(state.apply(study, r, c));
        n += 1;
    }
    n
}
