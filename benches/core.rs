//! Hot paths of the pure core on a full investigator-form interview of the
//! demo study: validate + check, and apply. Target: under 5 µs each.

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

    c.bench_function("validate+check investigator interview", |b| {
        let mut i = 0;
        b.iter(|| {
            let rec = validate(&catalog, &subs[i % subs.len()], &limits).expect("valid");
            i += 1;
            std::hint::black_box(check(&study, &rec))
        })
    });

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
