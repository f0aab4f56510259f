//! Heap bytes of an aggregator's state per interview, study-wide view
//! included, as `serve` holds them (it owns every partition):
//!
//! ```text
//! state_bytes [N] [PARTITIONS] [MAX]   (1000000, 6, no limit by default)
//! ```
//!
//! Applies N distinct synthetic interviews of the demo study (distinct
//! respondent and submission ids, round the four forms, each stamped with
//! a receive time) as envelopes through `LiveState::apply`, the
//! aggregator's own decode → validate → check → apply, on PARTITIONS
//! partitions. At every tenth of N it builds the view the way the view
//! task does (`LiveState::view_of_owned`, keeping the task's copies of the
//! owned partitions) and prints what the heap holds beyond the empty
//! state, per interview: the live state (old view and copies dropped), the
//! task's copies of the owned partitions, the view, and their total (the
//! figure to hold against issue 10's 300 bytes). Bytes come from a counting global
//! allocator (`cap`), so they are exact and repeat from run to run; RSS adds the allocator's own overhead and
//! librdkafka's buffers (`scripts/rss`). With MAX, the run fails when the
//! total at N is more than MAX bytes per interview (`scripts/test` holds
//! issue 10's 300 at 1,000,000 this way).

use std::alloc::System;
use std::collections::BTreeMap;
use std::process::ExitCode;

use cap::Cap;
use fieldwatch::aggregate::{LiveState, Outcome};
use fieldwatch::instrument::{Catalog, DEMO_STUDY_ID};
use fieldwatch::proto::v1;
use fieldwatch::synth;
use prost::Message as _;

/// The system allocator, counting the bytes currently allocated.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

fn live() -> usize {
    ALLOCATOR.allocated()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| args.get(i).map_or(Ok(default), |a| a.parse::<u64>());
    let (Ok(n), Ok(partitions), Ok(max)) = (number(0, 1_000_000), number(1, 6), number(2, u64::MAX)) else {
        eprintln!("usage: state_bytes [N] [PARTITIONS] [MAX]");
        return ExitCode::FAILURE;
    };
    if n == 0 || partitions == 0 {
        eprintln!("state_bytes: N and PARTITIONS must be at least 1");
        return ExitCode::FAILURE;
    }
    let catalog = Catalog::demo();
    let Some(study) = catalog.get(DEMO_STUDY_ID).cloned() else {
        eprintln!("the demo study is missing");
        return ExitCode::FAILURE;
    };
    let shared = LiveState::new(catalog.clone().into(), Default::default());
    for p in 0..partitions as i32 {
        shared.assign(p, None);
    }
    let mut cache = BTreeMap::new();
    let mut view = Some(shared.view_of_owned(&mut cache));
    drop(view.take());
    cache.clear();
    let empty = live();
    let opts = synth::Options { random_strings: false };
    let mut rng = synth::Rng::new(1);
    let step = n.div_ceil(10);
    let mut next_offset = vec![0i64; partitions as usize];
    let start_secs = 1_764_000_000i64;
    let mut last = 0.0;
    println!("bytes per interview:");
    println!("interviews  live state      copies        view       total  total bytes");
    for i in 0..n {
        let form = &study.forms[(i % study.forms.len() as u64) as usize];
        let sub = synth::interview(&study, form, i, &mut rng, &opts);
        let at = prost_types::Timestamp { seconds: start_secs + (i / 10) as i64, nanos: 0 };
        let payload = v1::Envelope::of_submission(sub.into(), Some(at), "state_bytes").encode_to_vec();
        let p = (i % partitions) as usize;
        let outcome = shared.apply(p as i32, next_offset[p], Some(&payload));
        if outcome != Outcome::Applied {
            eprintln!("state_bytes: interview {i} was not applied: {}", outcome.as_str());
            return ExitCode::FAILURE;
        }
        next_offset[p] += 1;
        let done = i + 1;
        if done % step == 0 || done == n {
            drop(view.take());
            cache.clear();
            let state = live() - empty;
            view = Some(shared.view_of_owned(&mut cache));
            let total = live() - empty;
            drop(view.take());
            let copies = live() - empty - state;
            view = Some(shared.view_of_owned(&mut cache));
            let per = |b: usize| b as f64 / done as f64;
            last = per(total);
            println!(
                "{done:>10}  {:>10.1}  {:>10.1}  {:>10.1}  {:>10.1}  {:>11}",
                per(state),
                per(copies),
                per(total - state - copies),
                per(total),
                total
            );
        }
    }
    if max != u64::MAX {
        let within = last <= max as f64;
        println!(
            "state bytes at {n} interviews: {last:.1} per interview, limit {max}: {}",
            if within { "1 passed, 0 failed" } else { "0 passed, 1 failed" }
        );
        if !within {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
