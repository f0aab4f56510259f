//! Fuzzing on stable Rust: proptest mutations of a kept corpus
//! (`tests/fuzz/corpus/`) over the two inputs strangers control, the
//! protobuf request and the instrument YAML. Whatever the bytes, the
//! pipeline answers (a value or an error) and never panics or recurses
//! without bound.
//!
//! `FIELDWATCH_FUZZ_CASES` sets the cases per target (default 4000, kept
//! under a minute in `scripts/test`; raise it for a long run). A case that
//! fails is printed by proptest; add its bytes to the corpus.

use std::path::{Path, PathBuf};

use fieldwatch::instrument::{Catalog, Study};
use fieldwatch::proto::{self, v1};
use fieldwatch::validate::{self, Limits};
use proptest::prelude::*;
use prost::Message as _;

fn corpus(kind: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(kind);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("corpus dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("corpus file")).collect();
    assert!(!seeds.is_empty(), "the {kind} corpus is empty");
    seeds
}

fn cases() -> u32 {
    std::env::var("FIELDWATCH_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4000)
}

/// One mutation of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Remove(i, n)),
        (any::<usize>(), 1usize..256).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Flip(i, x) if !b.is_empty() => {
                let k = i % b.len();
                b[k] ^= x;
            }
            Edit::Flip(..) => {}
            Edit::Insert(i, bytes) => {
                let k = at(*i, b.len());
                b.splice(k..k, bytes.iter().copied());
            }
            Edit::Remove(i, n) => {
                let k = at(*i, b.len());
                let end = (k + n).min(b.len());
                b.drain(k..end);
            }
            Edit::Duplicate(i, n) => {
                let k = at(*i, b.len());
                let end = (k + n).min(b.len());
                let copy = b[k..end].to_vec();
                b.splice(k..k, copy);
            }
            Edit::Truncate(i) => {
                let k = at(*i, b.len());
                b.truncate(k);
            }
        }
    }
    b
}

/// What ingest does with a request's bytes, up to publishing.
fn ingest_bytes(catalog: &Catalog, bytes: &[u8]) {
    let Ok(request) = v1::SubmitRequest::decode(bytes) else { return };
    let limits = Limits::default();
    if let Some(sub) = request.submission {
        if proto::check_size(&sub, &limits).is_err() {
            return;
        }
        let plain = validate::Submission::from(sub);
        if let Ok(record) = validate::validate(catalog, &plain, &limits)
            && let Some(study) = catalog.get(&plain.study)
        {
            let _ = fieldwatch::quality::check(study, &record);
        }
    }
    if let Some(d) = request.disposition {
        let plain = fieldwatch::fieldwork::DispositionSubmission::from(d);
        let _ = fieldwatch::fieldwork::validate_disposition(catalog, &plain, &limits);
    }
}

#[test]
fn the_submit_corpus_decodes_and_every_entry_passes_the_pipeline() {
    let catalog = Catalog::demo();
    for seed in corpus("submit") {
        ingest_bytes(&catalog, &seed);
    }
}

#[test]
fn mutated_protobuf_requests_never_panic_the_ingest_pipeline() {
    let catalog = Catalog::demo();
    let seeds = corpus("submit");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases()));
    let strategy = (0..seeds.len(), proptest::collection::vec(edit(), 0..8));
    runner
        .run(&strategy, |(k, edits)| {
            ingest_bytes(&catalog, &mutate(&seeds[k], &edits));
            Ok(())
        })
        .expect("no input panics");
}

#[test]
fn mutated_instrument_yaml_never_panics_or_overflows_the_loader() {
    let seeds = corpus("instrument");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases()));
    let strategy = (0..seeds.len(), proptest::collection::vec(edit(), 0..8));
    runner
        .run(&strategy, |(k, edits)| {
            let text = String::from_utf8_lossy(&mutate(&seeds[k], &edits)).into_owned();
            let _ = Study::from_yaml(&text);
            Ok(())
        })
        .expect("no instrument panics");
}
