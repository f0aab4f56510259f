//! Hot paths of the pure core on a full investigator-form interview of the
//! demo study: validate + check, and apply. Target: under 5 µs each.
//!
//! Validation runs twice: over 1,024 different interviews in turn, whose
//! answer maps (several MB) are mostly out of the CPU caches when read, and
//! over 16 that stay in cache. In the service a submission is validated
//! right after it was decoded, so it is in cache: the second figure is the
//! service's, the first a bound for the worst case.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fieldwatch::instrument::{Catalog, DEMO_STUDY_ID};
use fieldwatch::quality::check;
use fieldwatch::results::StudyState;
use fieldwatch::synth::{Options, Rng, interview};
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

criterion_group!(benches, core);
criterion_main!(benches);
