//! Hot paths of the pure core on a full investigator-form interview of the
//! demo study: validate + check, and apply. Target: under 5 µs each.
//! Then the aggregator's path for a backlog: 8,192 records of the demo
//! study (round its forms) in batches of `BATCH_RECORDS`, as the consumer
//! loop takes them, through `LiveState::process_batch` (prepared on every
//! core, applied in order), and the same records prepared and applied on
//! one thread, for the speed-up the other cores give.
//!
//! Validation runs twice: over 1,024 different interviews in turn, whose
//! answer maps (several MB) are mostly out of the CPU caches when read, and
//! over 16 that stay in cache. In the service a submission is validated
//! right after it was decoded, so it is in cache: the second figure is the
//! service's, the first a bound for the worst case.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fieldwatch::aggregate::LiveState;
use fieldwatch::aggregate::batch::BATCH_RECORDS;
use fieldwatch::instrument::{Catalog, DEMO_STUDY_ID};
use fieldwatch::proto::v1;
use fieldwatch::quality::check;
use fieldwatch::results::StudyState;
use fieldwatch::synth::{Options, Rng, interview, interviews};
use fieldwatch::validate::{Limits, validate};

fn core(c: &mut Criterion) {
    let catalog = Catalog::demo();
    let study = catalog.get(DEMO_STUDY_ID).expect("demo study").clone();
    let form = &study.forms[study.form("investigator").expect("investigator form")];
    let mut rng = Rng::new(1);
    let opts = Options { random_strings: false };
    let subs: Vec<_> = (0..1024).map(|n| interview(&study, form, n, &mut rng, &opts)).collect();
    let limits = Limits::default();

    for (name, pool) in [
        ("validate+check investigator interview", subs.len()),
        ("validate+check investigator interview, in cache", 16),
    ] {
        c.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                let rec = validate(&catalog, &subs[i % pool], &limits).expect("valid");
                i += 1;
                std::hint::black_box(check(&study, &rec))
            })
        });
    }

    let prepared: Vec<_> = subs
        .iter()
        .map(|s| {
            let rec = validate(&catalog, s, &limits).expect("valid");
            let checked = check(&study, &rec);
            (rec, checked)
        })
        .collect();
    c.bench_function("apply investigator interview", |b| {
        let mut state = StudyState::new();
        let mut n = 0u64;
        // Fresh ids so every apply is a counted interview, not a retry; the
        // copy that carries them is made outside the timed part.
        let mut fresh = || {
            let (rec, checked) = &prepared[(n % 1024) as usize];
            let mut rec = rec.clone();
            rec.submission_id = format!("s{n}");
            rec.respondent = format!("r{n}");
            n += 1;
            (rec, checked)
        };
        b.iter_batched_ref(
            &mut fresh,
            |(rec, checked)| std::hint::black_box(state.apply(&study, rec, checked)),
            BatchSize::SmallInput,
        )
    });
}

/// Records in the backlog of the batch benchmarks: about one fetch of the
/// embedded broker in `fieldwatch bench` (d), whose last one the aggregator
/// reads after the raw consumer is done.
const BACKLOG: u64 = 8_192;

fn batches(c: &mut Criterion) {
    use prost::Message as _;
    let catalog = Arc::new(Catalog::demo());
    let study = catalog.get(DEMO_STUDY_ID).expect("demo study").clone();
    let envelopes: Vec<Vec<u8>> = interviews(&study, BACKLOG, 1, &Options { random_strings: false })
        .into_iter()
        .map(|s| {
            let at = Some(std::time::SystemTime::UNIX_EPOCH.into());
            v1::Envelope::of_submission(s.into(), at, "bench").encode_to_vec()
        })
        .collect();
    let records: Vec<(i32, i64, Option<&[u8]>)> =
        (0..).zip(&envelopes).map(|(offset, e)| (0, offset, Some(e.as_slice()))).collect();
    let fresh = || {
        let live = LiveState::new(catalog.clone(), Limits::default());
        live.assign(0, None);
        live
    };
    let mut group = c.benchmark_group("aggregator backlog");
    group.sample_size(20);
    group.bench_function("8,192 records, process_batch (every core)", |b| {
        b.iter_batched(
            fresh,
            |live| {
                for batch in records.chunks(BATCH_RECORDS) {
                    std::hint::black_box(live.process_batch(batch));
                }
                live
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("8,192 records, prepare then apply_batch (one thread)", |b| {
        b.iter_batched(
            fresh,
            |live| {
                for batch in records.chunks(BATCH_RECORDS) {
                    let prepared: Vec<_> =
                        batch.iter().map(|&(p, o, bytes)| (p, o, live.prepare(bytes))).collect();
                    std::hint::black_box(live.apply_batch(prepared));
                }
                live
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, core, batches);
criterion_main!(benches);
