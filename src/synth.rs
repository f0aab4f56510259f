//! Synthetic interviews generated from an instrument, for benchmarks, load
//! tests and the fault-injection suite. Deterministic for a given seed; pure
//! but for [`write_jsonl`], which writes to the `impl Write` it is given.
//!
//! Every generated interview is valid and clean with respect to hard
//! validation; quality flags may still arise (e.g. a random answer to a
//! scale item can equal its neighbours).

use std::collections::BTreeMap;

use crate::instrument::{Form, KindDef, Study};
use crate::quality::relevance;
use crate::validate::{Answer, Limits, RankedAnswer, Submission, validate_in};

/// A small deterministic random source (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next raw value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as u64) as i64
    }
    /// A random printable string of 1 to `max` characters.
    pub fn text(&mut self, max: usize) -> String {
        let n = 1 + self.below(max.max(1) as u64) as usize;
        (0..n).map(|_| char::from(b' ' + self.below(95) as u8)).collect()
    }
}

/// Options for [`interview`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Random strings in every free field (text answers, interviewer,
    /// attribute values) — for checking that hostile input cannot create
    /// metric series.
    pub random_strings: bool,
}

fn answer_for(kind: &KindDef, rng: &mut Rng, opts: &Options) -> Answer {
    match kind {
        KindDef::Scale { min, max, .. } => Answer::Integer(rng.range(*min, *max)),
        KindDef::Count { min, max } => Answer::Integer(rng.range(*min, (*min + 20).min(*max))),
        KindDef::Number { min, max } => {
            let lo = min.unwrap_or(0.0);
            let hi = max.unwrap_or(lo + 100.0).min(lo + 100.0);
            Answer::Number(lo + (hi - lo) * (rng.below(1000) as f64 / 1000.0))
        }
        KindDef::YesNo => Answer::Text(if rng.below(2) == 0 { "yes" } else { "no" }.into()),
        KindDef::YesNoNa => Answer::Text(["yes", "no", "na"][rng.below(3) as usize].into()),
        KindDef::SingleChoice { options } => {
            Answer::Text(options[rng.below(options.len() as u64) as usize].code.clone())
        }
        KindDef::MultiSelect { options, ranked, max_picks } => {
            let most = max_picks.map(|m| m as usize).unwrap_or(options.len()).min(options.len()).max(1);
            let n = 1 + rng.below(most as u64) as usize;
            let mut codes: Vec<String> = options.iter().map(|o| o.code.clone()).collect();
            // partial Fisher-Yates
            for i in 0..n {
                let j = i + rng.below((codes.len() - i) as u64) as usize;
                codes.swap(i, j);
            }
            codes.truncate(n);
            if *ranked {
                Answer::Ranked(RankedAnswer { ranked: codes.into_iter().zip(1..).collect() })
            } else {
                Answer::Choices(codes)
            }
        }
        KindDef::Text => Answer::Text(if opts.random_strings { rng.text(40) } else { "free text".into() }),
    }
}

/// A full interview for `form`: every relevant item answered, hidden ones
/// left blank. `n` makes the respondent and submission ids unique.
pub fn interview(study: &Study, form: &Form, n: u64, rng: &mut Rng, opts: &Options) -> Submission {
    let mut answers: BTreeMap<String, Answer> = BTreeMap::new();
    for it in &form.items {
        answers.insert(it.id.clone(), answer_for(&it.kind, rng, opts));
    }
    let mut sub = Submission {
        study: study.id().to_string(),
        form: form.id.clone(),
        respondent_id: format!("resp-{n}"),
        submission_id: format!("sub-{n}"),
        started_at: Some("2025-03-01T10:00:00Z".into()),
        completed_at: Some(format!("2025-03-01T10:{:02}:00Z", 20 + rng.below(40))),
        interviewer: Some(if opts.random_strings {
            rng.text(20)
        } else {
            format!("int{:02}", 1 + rng.below(6))
        }),
        attributes: BTreeMap::new(),
        answers,
    };
    for d in &study.dims {
        if d.source == crate::instrument::DimensionSource::Attribute && !d.values.is_empty() {
            let v = if opts.random_strings {
                rng.text(20)
            } else {
                d.values[rng.below(d.values.len() as u64) as usize].clone()
            };
            sub.attributes.insert(d.name.clone(), v);
        }
    }
    // Blank the items the answers hide, so the interview follows its skip logic.
    if let Ok(rec) = validate_in(study, &sub, &Limits::default()) {
        for (it, shown) in form.items.iter().zip(relevance(study, form, &rec.answers)) {
            if !shown {
                sub.answers.remove(&it.id);
            }
        }
    }
    sub
}

/// `count` interviews spread over the study's forms.
pub fn interviews(study: &Study, count: u64, seed: u64, opts: &Options) -> Vec<Submission> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|n| {
            let form = &study.forms[(n % study.forms.len() as u64) as usize];
            interview(study, form, seed.wrapping_mul(1_000_000_007).wrapping_add(n), &mut rng, opts)
        })
        .collect()
}

/// `fieldwatch generate`: `count` interviews spread over the study's forms
/// as JSONL, with respondent ids `gen-{seed}-r{n}` and submission ids
/// `gen-{seed}-s{n}`.
pub fn write_jsonl(
    study: &Study,
    count: u64,
    seed: u64,
    opts: &Options,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut rng = Rng::new(seed);
    for n in 0..count {
        let form = &study.forms[(n % study.forms.len() as u64) as usize];
        let mut sub = interview(study, form, n, &mut rng, opts);
        sub.respondent_id = format!("gen-{seed}-r{n}");
        sub.submission_id = format!("gen-{seed}-s{n}");
        serde_json::to_writer(&mut *out, &sub)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::Catalog;
    use crate::quality::{Check, check};

    #[test]
    fn synthetic_interviews_pass_validation_and_follow_skip_logic() {
        let c = Catalog::demo();
        let study = c.get(crate::instrument::DEMO_STUDY_ID).expect("demo");
        for sub in interviews(study, 200, 7, &Options { random_strings: true }) {
            let rec = validate_in(study, &sub, &Limits::default()).expect("valid");
            let checked = check(study, &rec);
            assert!(
                checked.flags.iter().all(|f| matches!(f.check, Check::Straightlining)),
                "{:?}",
                checked.flags
            );
        }
    }
}
