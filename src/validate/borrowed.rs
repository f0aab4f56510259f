//! A submission as validation reads it, every string borrowed: from an
//! owned [`Submission`] ([`Submission::borrowed`], no copy), or straight
//! from a responses-topic record's bytes
//! ([`crate::proto::envelope::decode_borrowed`]). The aggregator validates
//! each record from its bytes this way: building the owned form, a string
//! and a map node per answer, then dropping it, was about a third of a
//! record's instructions (docs/benchmarks.md, "Instructions per interview").

use std::collections::BTreeMap;

use validator::Validate;

use super::{Answer, MissingAnswer, RankedAnswer, Submission};

/// A submission's fields, borrowed. The length rules of the submission's
/// own fields live here, for both forms.
#[derive(Debug, Clone, PartialEq, Validate)]
pub struct SubmissionRef<'a> {
    /// Study id.
    #[validate(length(min = 1, max = 64))]
    pub study: &'a str,
    /// Form id.
    #[validate(length(min = 1, max = 64))]
    pub form: &'a str,
    /// The front-end's respondent id.
    #[validate(length(min = 1, max = 256))]
    pub respondent_id: &'a str,
    /// Unique per submission attempt.
    #[validate(length(min = 1, max = 128))]
    pub submission_id: &'a str,
    /// RFC 3339 start time.
    pub started_at: Option<&'a str>,
    /// RFC 3339 completion time.
    pub completed_at: Option<&'a str>,
    /// Interviewer id.
    #[validate(length(min = 1, max = 128))]
    pub interviewer: Option<&'a str>,
    /// Values of attribute-sourced dimensions.
    pub attributes: Attributes<'a>,
    /// Item id -> answer.
    pub answers: Answers<'a>,
}

/// A submission's attributes, name -> value, in name order.
#[derive(Debug, Clone, PartialEq)]
pub enum Attributes<'a> {
    /// An owned submission's map.
    Map(&'a BTreeMap<String, String>),
    /// Decoded entries, in strictly increasing name order.
    Sorted(Vec<(&'a str, &'a str)>),
}

impl<'a> Attributes<'a> {
    /// How many attributes.
    pub fn len(&self) -> usize {
        match self {
            Attributes::Map(m) => m.len(),
            Attributes::Sorted(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        match self {
            Attributes::Map(m) => m.get(name).map(String::as_str),
            Attributes::Sorted(v) => v.binary_search_by(|(k, _)| (*k).cmp(name)).ok().map(|i| v[i].1),
        }
    }

    /// (name, value) in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        let (map, sorted) = match self {
            Attributes::Map(m) => (Some(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))), None),
            Attributes::Sorted(v) => (None, Some(v.iter().copied())),
        };
        map.into_iter().flatten().chain(sorted.into_iter().flatten())
    }
}

/// A submission's answers, item id -> answer, in item id order.
#[derive(Debug, Clone, PartialEq)]
pub enum Answers<'a> {
    /// An owned submission's map.
    Map(&'a BTreeMap<String, Answer>),
    /// Decoded entries, in strictly increasing item id order.
    Sorted(Vec<(&'a str, DecodedAnswer<'a>)>),
}

impl Answers<'_> {
    /// How many answers.
    pub fn len(&self) -> usize {
        match self {
            Answers::Map(m) => m.len(),
            Answers::Sorted(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each (item id, answer), in item id order: one loop
    /// per form, each as tight as over its own type (validation's hot loop).
    // Inlined into its callers, so that `f` is inlined into each loop: when
    // the compiler chose otherwise (after unrelated changes), validation
    // took about 1,100 more instructions an interview (`scripts/callgrind`).
    #[inline]
    pub fn for_each<'s>(&'s self, mut f: impl FnMut(&'s str, AnswerRef<'s>)) {
        match self {
            Answers::Map(m) => m.iter().for_each(|(k, a)| f(k, a.borrowed())),
            Answers::Sorted(v) => v.iter().for_each(|(k, a)| f(k, a.borrowed())),
        }
    }
}

/// An answer as validation reads it ([`Answer`], borrowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnswerRef<'a> {
    /// Blank.
    Blank,
    /// A whole number.
    Integer(i64),
    /// A number with decimals.
    Number(f64),
    /// A string: option code, yes/no, or free text.
    Text(&'a str),
    /// A list of option codes.
    Choices(Choices<'a>),
    /// Option code -> rank.
    Ranked(Ranks<'a>),
    /// A missing code.
    Missing(&'a str),
    /// Anything else: always `wrong_kind`.
    Other,
}

/// Option code -> rank, in code order: an owned answer's map or a decoded
/// answer's sorted list (each code once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ranks<'a> {
    /// An owned answer's map.
    Owned(&'a BTreeMap<String, i64>),
    /// A decoded answer's list, sorted by code.
    Borrowed(&'a [(&'a str, i64)]),
}

impl<'a> Ranks<'a> {
    /// How many codes.
    pub fn len(&self) -> usize {
        match self {
            Ranks::Owned(m) => m.len(),
            Ranks::Borrowed(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (code, rank) in code order.
    pub fn iter(&self) -> RanksIter<'a> {
        match *self {
            Ranks::Owned(m) => RanksIter::Owned(m.iter()),
            Ranks::Borrowed(v) => RanksIter::Borrowed(v.iter()),
        }
    }
}

/// The (code, rank) pairs of [`Ranks`], in code order.
#[derive(Debug, Clone)]
pub enum RanksIter<'a> {
    /// Over an owned answer's map.
    Owned(std::collections::btree_map::Iter<'a, String, i64>),
    /// Over a decoded answer's list.
    Borrowed(std::slice::Iter<'a, (&'a str, i64)>),
}

impl<'a> Iterator for RanksIter<'a> {
    type Item = (&'a str, i64);

    fn next(&mut self) -> Option<(&'a str, i64)> {
        match self {
            RanksIter::Owned(i) => i.next().map(|(code, rank)| (code.as_str(), *rank)),
            RanksIter::Borrowed(i) => i.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            RanksIter::Owned(i) => i.size_hint(),
            RanksIter::Borrowed(i) => i.size_hint(),
        }
    }
}

impl ExactSizeIterator for RanksIter<'_> {}

/// A list of option codes, owned strings or borrowed ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Choices<'a> {
    /// An owned answer's list.
    Owned(&'a [String]),
    /// A decoded answer's list.
    Borrowed(&'a [&'a str]),
}

impl<'a> Choices<'a> {
    /// How many codes.
    pub fn len(&self) -> usize {
        match self {
            Choices::Owned(v) => v.len(),
            Choices::Borrowed(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The codes, in the order sent.
    pub fn iter(&self) -> ChoicesIter<'a> {
        ChoicesIter { list: *self, next: 0 }
    }
}

/// The codes of [`Choices`], in the order sent.
#[derive(Debug, Clone)]
pub struct ChoicesIter<'a> {
    list: Choices<'a>,
    next: usize,
}

impl<'a> Iterator for ChoicesIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let code = match self.list {
            Choices::Owned(v) => v.get(self.next).map(String::as_str),
            Choices::Borrowed(v) => v.get(self.next).copied(),
        }?;
        self.next += 1;
        Some(code)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for ChoicesIter<'_> {}

/// An answer decoded from a record's bytes, its strings borrowed from them.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodedAnswer<'a> {
    /// Blank.
    Blank,
    /// A whole number.
    Integer(i64),
    /// A number with decimals.
    Number(f64),
    /// A string.
    Text(&'a str),
    /// A list of option codes.
    Choices(Vec<&'a str>),
    /// Option code -> rank, sorted by code, each code once.
    Ranked(Vec<(&'a str, i64)>),
    /// A missing code.
    Missing(&'a str),
    /// Free-form JSON text.
    Other(&'a str),
}

impl DecodedAnswer<'_> {
    /// The answer, as validation reads it.
    pub fn borrowed(&self) -> AnswerRef<'_> {
        match self {
            DecodedAnswer::Blank => AnswerRef::Blank,
            DecodedAnswer::Integer(i) => AnswerRef::Integer(*i),
            DecodedAnswer::Number(f) => AnswerRef::Number(*f),
            DecodedAnswer::Text(s) => AnswerRef::Text(s),
            DecodedAnswer::Choices(v) => AnswerRef::Choices(Choices::Borrowed(v)),
            DecodedAnswer::Ranked(r) => AnswerRef::Ranked(Ranks::Borrowed(r)),
            DecodedAnswer::Missing(m) => AnswerRef::Missing(m),
            DecodedAnswer::Other(_) => AnswerRef::Other,
        }
    }

    fn into_owned(self) -> Answer {
        match self {
            DecodedAnswer::Blank => Answer::Blank,
            DecodedAnswer::Integer(i) => Answer::Integer(i),
            DecodedAnswer::Number(f) => Answer::Number(f),
            DecodedAnswer::Text(s) => Answer::Text(s.to_owned()),
            DecodedAnswer::Choices(v) => Answer::Choices(v.into_iter().map(str::to_owned).collect()),
            DecodedAnswer::Ranked(r) => Answer::Ranked(RankedAnswer {
                ranked: r.into_iter().map(|(code, rank)| (code.to_owned(), rank)).collect(),
            }),
            DecodedAnswer::Missing(m) => Answer::Missing(MissingAnswer { missing: m.to_owned() }),
            DecodedAnswer::Other(json) => Answer::other_json(json.to_owned()),
        }
    }
}

impl Answer {
    /// The answer, borrowed.
    pub fn borrowed(&self) -> AnswerRef<'_> {
        match self {
            Answer::Blank => AnswerRef::Blank,
            Answer::Integer(i) => AnswerRef::Integer(*i),
            Answer::Number(f) => AnswerRef::Number(*f),
            Answer::Text(s) => AnswerRef::Text(s),
            Answer::Choices(v) => AnswerRef::Choices(Choices::Owned(v)),
            Answer::Ranked(r) => AnswerRef::Ranked(Ranks::Owned(&r.ranked)),
            Answer::Missing(m) => AnswerRef::Missing(&m.missing),
            Answer::Other(_) => AnswerRef::Other,
        }
    }

    /// Free-form JSON text as an answer: its value, or the text itself as a
    /// JSON string when it is not JSON (rejected as `wrong_kind` all the same).
    pub fn other_json(text: String) -> Answer {
        Answer::Other(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }
}

impl Submission {
    /// The submission, borrowed (nothing is copied).
    pub fn borrowed(&self) -> SubmissionRef<'_> {
        SubmissionRef {
            study: &self.study,
            form: &self.form,
            respondent_id: &self.respondent_id,
            submission_id: &self.submission_id,
            started_at: self.started_at.as_deref(),
            completed_at: self.completed_at.as_deref(),
            interviewer: self.interviewer.as_deref(),
            attributes: Attributes::Map(&self.attributes),
            answers: Answers::Map(&self.answers),
        }
    }
}

impl SubmissionRef<'_> {
    /// The owned submission with the same fields.
    pub fn into_owned(self) -> Submission {
        Submission {
            study: self.study.to_owned(),
            form: self.form.to_owned(),
            respondent_id: self.respondent_id.to_owned(),
            submission_id: self.submission_id.to_owned(),
            started_at: self.started_at.map(str::to_owned),
            completed_at: self.completed_at.map(str::to_owned),
            interviewer: self.interviewer.map(str::to_owned),
            attributes: self.attributes.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            answers: match self.answers {
                Answers::Map(m) => m.clone(),
                // In strictly increasing key order: built without comparing keys again.
                Answers::Sorted(v) => v.into_iter().map(|(k, a)| (k.to_owned(), a.into_owned())).collect(),
            },
        }
    }
}
