//! Responses-topic records decoded straight into the pipeline's types.
//!
//! The aggregator decodes every record of the responses topic. Through
//! prost's `v1::Envelope` and the conversion to [`validate::Submission`]
//! that was half of the instructions of a record (an ordered-map insert per
//! answer, then the map built a second time; `scripts/callgrind`'s `record`
//! step). [`decode_borrowed`] reads an envelope encoded as ingest encodes
//! it (each field once, map entries in key order, no unknown fields) into
//! a [`validate::SubmissionRef`] whose strings are the record's bytes;
//! any other input is None, for [`decode`], which reads it with prost and
//! the conversion. [`decode`] gives the owned form of either, so its result
//! is prost's for every input; the property tests below hold it to that.

use prost::Message as _;

use super::v1;
use crate::validate;

/// A decoded [`v1::Envelope`], with the submission converted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedEnvelope {
    /// When ingest received the record.
    pub received_at: Option<prost_types::Timestamp>,
    /// The interview, if the record is one.
    pub submission: Option<validate::Submission>,
    /// The case disposition, if the record is one.
    pub disposition: Option<v1::Disposition>,
}

impl From<v1::Envelope> for DecodedEnvelope {
    fn from(e: v1::Envelope) -> Self {
        DecodedEnvelope {
            received_at: e.received_at,
            submission: e.submission.map(validate::Submission::from),
            disposition: e.disposition,
        }
    }
}

/// An envelope as ingest writes it, its submission borrowed from the
/// record's bytes ([`decode_borrowed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeRef<'a> {
    /// When ingest received the record.
    pub received_at: Option<prost_types::Timestamp>,
    /// The interview, if the record is one.
    pub submission: Option<validate::SubmissionRef<'a>>,
    /// The case disposition, if the record is one.
    pub disposition: Option<v1::Disposition>,
}

impl EnvelopeRef<'_> {
    /// The owned envelope.
    pub fn into_owned(self) -> DecodedEnvelope {
        DecodedEnvelope {
            received_at: self.received_at,
            submission: self.submission.map(validate::SubmissionRef::into_owned),
            disposition: self.disposition,
        }
    }
}

/// Decodes a responses-topic record: the same as
/// `v1::Envelope::decode(bytes).map(DecodedEnvelope::from)`, with fewer
/// allocations and no second map for an envelope as ingest writes it.
pub fn decode(bytes: &[u8]) -> Result<DecodedEnvelope, prost::DecodeError> {
    match canonical(bytes) {
        Some(e) => Ok(e.into_owned()),
        None => v1::Envelope::decode(bytes).map(DecodedEnvelope::from),
    }
}

/// Decodes a record written as ingest writes it, borrowing its strings;
/// None for any other bytes, which [`decode`] reads (or refuses) as prost
/// does. Where both decode, [`decode`] is this, owned.
pub fn decode_borrowed(bytes: &[u8]) -> Option<EnvelopeRef<'_>> {
    canonical(bytes)
}

/// Protobuf wire types used by the messages read here.
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;

/// Reads protobuf's wire format from a byte slice. Every method returns
/// None on anything it does not read exactly as prost would; the caller
/// then gives the whole record to prost.
struct Reader<'a> {
    /// What is left to read.
    rest: &'a [u8],
    /// The outermost message this reader is within that is all UTF-8, if
    /// any ([`Reader::text`]).
    text: Option<&'a str>,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes, text: None }
    }

    /// A reader of a message that is mostly strings (a submission, and
    /// each message within it, [`Reader::message`]). When all of its bytes
    /// are UTF-8, they are checked once here, and [`Reader::str`] cuts each
    /// string out of them instead of checking it again: a substring of
    /// UTF-8 text that starts and ends at character boundaries is UTF-8,
    /// and one that does not is not. A message is UTF-8 when its keys,
    /// lengths and numbers are single ASCII bytes (below 128) and its
    /// strings are UTF-8: most answers' messages, and a whole submission
    /// when no answer is longer than 127 bytes. Checking a record's 150 or
    /// so short strings one by one was a tenth of its instructions
    /// (`scripts/callgrind`'s `record` step); a failed check stops at the
    /// first byte that is not UTF-8, mostly a long field's length near the
    /// start, and the strings are then checked in the messages within.
    fn text(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes, text: std::str::from_utf8(bytes).ok() }
    }

    fn done(&self) -> bool {
        self.rest.is_empty()
    }

    fn varint(&mut self) -> Option<u64> {
        // Most are one byte: keys, lengths of ids and codes.
        if let Some((&b, rest)) = self.rest.split_first()
            && b < 0x80
        {
            self.rest = rest;
            return Some(u64::from(b));
        }
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.rest.split_first()?;
            self.rest = rest;
            // The tenth byte holds bit 63 only; prost refuses more.
            if i == 9 && b > 1 {
                return None;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// A field's (tag, wire type).
    fn key(&mut self) -> Option<(u64, u64)> {
        let key = self.varint()?;
        (key <= u64::from(u32::MAX)).then_some((key >> 3, key & 7))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        if n > self.rest.len() {
            return None;
        }
        let (field, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(field)
    }

    /// A length-delimited field read as a message of its own: its strings
    /// are cut from the whole's text when the whole is UTF-8, else from its
    /// own when it is ([`Reader::text`]).
    fn message(&mut self) -> Option<Reader<'a>> {
        let bytes = self.bytes()?;
        match self.text {
            Some(text) => Some(Reader { rest: bytes, text: Some(text) }),
            None => Some(Reader::text(bytes)),
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        let field = self.bytes()?;
        match self.text {
            // Where the field is in the whole: the field is a subslice of it.
            Some(text) => {
                let start = field.as_ptr().addr().checked_sub(text.as_ptr().addr())?;
                text.get(start..start.checked_add(field.len())?)
            }
            None => std::str::from_utf8(field).ok(),
        }
    }

    fn fixed64(&mut self) -> Option<u64> {
        let (field, rest) = self.rest.split_first_chunk::<8>()?;
        self.rest = rest;
        Some(u64::from_le_bytes(*field))
    }
}

/// Marks field `tag` (below 32) as read; None when it was read before (a
/// repeated singular field, which prost merges).
fn once(seen: &mut u32, tag: u64) -> Option<()> {
    let bit = 1u32 << tag;
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

/// An envelope as ingest writes it, or None.
fn canonical(bytes: &[u8]) -> Option<EnvelopeRef<'_>> {
    let mut r = Reader::new(bytes);
    let mut out = EnvelopeRef { received_at: None, submission: None, disposition: None };
    let mut seen = 0;
    while !r.done() {
        let (tag, wire) = r.key()?;
        match (tag, wire) {
            // version: read, not kept (any value decodes).
            (1, VARINT) => r.varint().map(drop)?,
            (2, LEN) => out.received_at = Some(prost_types::Timestamp::decode(r.bytes()?).ok()?),
            // frontend: not kept, but prost refuses one that is not UTF-8.
            (3, LEN) => r.str().map(drop)?,
            (4, LEN) => out.submission = Some(submission(Reader::text(r.bytes()?))?),
            (5, LEN) => out.disposition = Some(v1::Disposition::decode(r.bytes()?).ok()?),
            _ => return None,
        }
        once(&mut seen, tag)?;
    }
    Some(out)
}

fn submission<'a>(mut r: Reader<'a>) -> Option<validate::SubmissionRef<'a>> {
    let mut s = validate::SubmissionRef {
        study: "",
        form: "",
        respondent_id: "",
        submission_id: "",
        started_at: None,
        completed_at: None,
        interviewer: None,
        attributes: validate::Attributes::Sorted(Vec::new()),
        answers: validate::Answers::Sorted(Vec::new()),
    };
    let mut attributes: Vec<(&str, &str)> = Vec::new();
    // At least ten bytes an answer, most take twenty or more: one
    // allocation instead of a doubling per power of two. At most 512 ahead
    // (validation's default limit is 500 answers), so that a long record
    // does not reserve three times its own size before it is read.
    let mut answers: Vec<(&str, validate::DecodedAnswer<'_>)> =
        Vec::with_capacity((r.rest.len() / 16).min(512));
    let mut seen = 0;
    while !r.done() {
        let (tag, wire) = r.key()?;
        if wire != LEN {
            return None;
        }
        match tag {
            1 => s.study = r.str()?,
            2 => s.form = r.str()?,
            3 => s.respondent_id = r.str()?,
            4 => s.submission_id = r.str()?,
            5 => s.started_at = Some(r.str()?),
            6 => s.completed_at = Some(r.str()?),
            7 => s.interviewer = Some(r.str()?),
            8 => {
                push_in_order(&mut attributes, entry(r.message()?, LEN, Reader::str, || "")?)?;
                continue;
            }
            9 => {
                let value = |r: &mut Reader<'a>| answer(r.message()?);
                push_in_order(
                    &mut answers,
                    entry(r.message()?, LEN, value, || validate::DecodedAnswer::Blank)?,
                )?;
                continue;
            }
            _ => return None,
        }
        once(&mut seen, tag)?;
    }
    s.attributes = validate::Attributes::Sorted(attributes);
    s.answers = validate::Answers::Sorted(answers);
    Some(s)
}

/// Adds a map entry that comes after the last one in key order; None for
/// any other (prost's map keeps the last of equal keys).
fn push_in_order<'a, V>(entries: &mut Vec<(&'a str, V)>, (key, value): (&'a str, V)) -> Option<()> {
    if entries.last().is_some_and(|(last, _)| *last >= key) {
        return None;
    }
    entries.push((key, value));
    Some(())
}

/// A map entry: a string key (field 1) and a value (field 2, of wire type
/// `wire`), each at most once; a missing one is its default.
fn entry<'a, V>(
    mut r: Reader<'a>,
    wire: u64,
    value: impl Fn(&mut Reader<'a>) -> Option<V>,
    default: impl Fn() -> V,
) -> Option<(&'a str, V)> {
    let (mut k, mut v) = (None, None);
    while !r.done() {
        match r.key()? {
            (1, LEN) if k.is_none() => k = Some(r.str()?),
            (2, w) if w == wire && v.is_none() => v = Some(value(&mut r)?),
            _ => return None,
        }
    }
    Some((k.unwrap_or_default(), v.unwrap_or_else(default)))
}

/// An `Answer` message: at most one of its `value` fields.
fn answer(mut r: Reader<'_>) -> Option<validate::DecodedAnswer<'_>> {
    use validate::DecodedAnswer as A;
    let mut value = None;
    while !r.done() {
        if value.is_some() {
            return None;
        }
        let (tag, wire) = r.key()?;
        value = Some(match (tag, wire) {
            // int64: the varint's bits, as prost reads it.
            (1, VARINT) => A::Integer(r.varint()?.cast_signed()),
            (2, I64) => A::Number(f64::from_bits(r.fixed64()?)),
            (3, LEN) => A::Text(r.str()?),
            (4, LEN) => A::Choices(strings(r.message()?)?),
            (5, LEN) => A::Ranked(ranks(r.message()?)?),
            (6, LEN) => A::Missing(r.str()?),
            (7, LEN) => A::Other(r.str()?),
            _ => return None,
        });
    }
    Some(value.unwrap_or(A::Blank))
}

/// Most picks a choice list or a ranking is sized for before it is read
/// (validation's default limit is 64), so that a long list does not
/// reserve five times its own size first, as the answers' list is bounded
/// in [`submission`].
const PRESIZED_PICKS: usize = 64;

/// A `RankedChoices` message: its map of code -> rank (int64, field 1),
/// entries in code order.
fn ranks(mut r: Reader<'_>) -> Option<Vec<(&str, i64)>> {
    // An entry takes at least 7 bytes (its key, its length, a code's key,
    // length and one byte, a rank's key and one byte): one allocation, no
    // regrowth up to [`PRESIZED_PICKS`].
    let mut out = Vec::with_capacity((r.rest.len() / 7).min(PRESIZED_PICKS));
    let rank = |r: &mut Reader<'_>| r.varint().map(u64::cast_signed);
    while !r.done() {
        if r.key()? != (1, LEN) {
            return None;
        }
        push_in_order(&mut out, entry(r.message()?, VARINT, rank, || 0)?)?;
    }
    Some(out)
}

/// A `StringList` message: its repeated field 1.
fn strings(mut r: Reader<'_>) -> Option<Vec<&str>> {
    // A string takes at least 3 bytes (its key, its length, one byte; an
    // empty one 2, and a longer list then grows once): one allocation
    // instead of a doubling from four, up to [`PRESIZED_PICKS`].
    let mut out = Vec::with_capacity((r.rest.len() / 3).min(PRESIZED_PICKS));
    while !r.done() {
        if r.key()? != (1, LEN) {
            return None;
        }
        out.push(r.str()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::v1::answer::Value as PbValue;
    use super::*;

    fn prost_path(bytes: &[u8]) -> Option<DecodedEnvelope> {
        v1::Envelope::decode(bytes).map(DecodedEnvelope::from).ok()
    }

    /// Debug text: equal for equal values, NaN included.
    fn shown(e: &Option<DecodedEnvelope>) -> String {
        format!("{e:?}")
    }

    fn arb_value() -> impl Strategy<Value = Option<PbValue>> {
        let code = "[a-z_]{0,6}|\\PC{0,4}";
        prop::option::of(prop_oneof![
            any::<i64>().prop_map(PbValue::Integer),
            any::<f64>().prop_map(PbValue::Number),
            code.prop_map(PbValue::Text),
            prop::collection::vec(code, 0..4).prop_map(|values| PbValue::Choices(v1::StringList { values })),
            prop::collection::btree_map(code, any::<i64>(), 0..3)
                .prop_map(|ranks| PbValue::Ranked(v1::RankedChoices { ranks })),
            code.prop_map(PbValue::Missing),
            "\\[1\\]|true|\\{\\}|x".prop_map(PbValue::OtherJson),
        ])
    }

    prop_compose! {
        fn arb_envelope()(
            ids in prop::collection::vec("[a-z0-9_-]{0,8}", 4),
            times in prop::collection::vec(prop::option::of("2024-01-01T10:00:00Z|"), 3),
            attributes in prop::collection::btree_map("[a-z]{0,4}", "[a-z]{0,4}", 0..3),
            answers in prop::collection::btree_map("q[0-9]{0,2}|", arb_value(), 0..12),
            received in prop::option::of((any::<i64>(), any::<i32>())),
            disposition in prop::option::of("[a-z]{0,4}"),
            interview in any::<bool>(),
            version in any::<u32>(),
        ) -> v1::Envelope {
            let submission = v1::Submission {
                study: ids[0].clone(),
                form: ids[1].clone(),
                respondent_id: ids[2].clone(),
                submission_id: ids[3].clone(),
                started_at: times[0].clone(),
                completed_at: times[1].clone(),
                interviewer: times[2].clone(),
                attributes,
                answers: answers.into_iter().map(|(k, value)| (k, v1::Answer { value })).collect(),
            };
            v1::Envelope {
                version,
                received_at: received.map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
                frontend: "anonymous".into(),
                submission: interview.then_some(submission),
                disposition: disposition.map(|case_id| v1::Disposition { case_id, ..Default::default() }),
            }
        }
    }

    proptest! {
        #[test]
        fn an_envelope_as_ingest_writes_it_decodes_without_prost_and_the_same(e in arb_envelope()) {
            let bytes = e.encode_to_vec();
            let fast = decode_borrowed(&bytes).map(EnvelopeRef::into_owned);
            prop_assert!(fast.is_some(), "{e:?}");
            prop_assert_eq!(shown(&fast), shown(&prost_path(&bytes)));
        }

        #[test]
        fn any_bytes_decode_as_prost_decodes_them(
            e in arb_envelope(),
            cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
        ) {
            // The encoding with bytes changed, inserted or cut off: most
            // no longer canonical, some no longer protobuf.
            let mut bytes = e.encode_to_vec();
            for (at, byte, how) in cuts {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match how {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => bytes.truncate(i),
                }
            }
            prop_assert_eq!(shown(&decode(&bytes).ok()), shown(&prost_path(&bytes)));
        }
    }

    /// A submission all of whose bytes are UTF-8 has its strings cut from
    /// that text; a string that would end inside a character is refused as
    /// prost refuses it, though the bytes around it are still UTF-8.
    #[test]
    fn strings_cut_from_a_submission_that_is_all_utf8_are_the_strings_prost_reads() {
        let choices = |codes: &[&str]| v1::Answer {
            value: Some(PbValue::Choices(v1::StringList {
                values: codes.iter().map(|c| c.to_string()).collect(),
            })),
        };
        let sub = v1::Submission {
            study: "s".into(),
            form: "f".into(),
            answers: BTreeMap::from([("qé".into(), choices(&["é", "ü", "x"]))]),
            ..Default::default()
        };
        let bytes = v1::Envelope { submission: Some(sub), ..Default::default() }.encode_to_vec();
        let at = bytes.windows(3).position(|w| w == [0x02, 0xc3, 0xa9]).expect("the code é, length 2");
        // The submission: after the envelope's key and one-byte length.
        assert!(std::str::from_utf8(&bytes[2..]).is_ok(), "the submission is all UTF-8");
        let fast = decode_borrowed(&bytes).map(EnvelopeRef::into_owned);
        assert!(fast.is_some());
        assert_eq!(shown(&fast), shown(&prost_path(&bytes)));
        // "é" sent with length 1: the string is its first byte alone, the
        // next byte (0xa9) a key; the submission's bytes are as UTF-8 as before.
        let mut cut = bytes.clone();
        cut[at] = 0x01;
        assert!(std::str::from_utf8(&cut[2..]).is_ok());
        assert!(decode_borrowed(&cut).is_none());
        assert!(decode(&cut).is_err());
        assert!(prost_path(&cut).is_none());
    }

    #[test]
    fn other_encodings_of_the_same_envelope_go_to_prost_and_decode_alike() {
        let answer = |t: &str| v1::Answer { value: Some(PbValue::Text(t.into())) };
        let sub = v1::Submission {
            study: "s".into(),
            answers: BTreeMap::from([("q1".into(), answer("a")), ("q2".into(), answer("b"))]),
            ..Default::default()
        };
        let env = v1::Envelope { submission: Some(sub.clone()), ..Default::default() };
        let bytes = env.encode_to_vec();
        assert!(canonical(&bytes).is_some());
        // The submission field twice: prost merges the two (the later
        // answers win), the fast path declines.
        let later = v1::Envelope {
            submission: Some(v1::Submission {
                answers: BTreeMap::from([("q1".into(), answer("c"))]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let twice = [bytes.clone(), later.encode_to_vec()].concat();
        assert!(canonical(&twice).is_none());
        let merged = decode(&twice).expect("protobuf");
        let answers = &merged.submission.expect("a submission").answers;
        assert_eq!(answers.get("q1"), Some(&validate::Answer::Text("c".into())));
        assert_eq!(answers.get("q2"), Some(&validate::Answer::Text("b".into())));
        // An unknown field: skipped by prost, declined by the fast path.
        let unknown = [bytes.clone(), vec![0x78, 0x01]].concat();
        assert!(canonical(&unknown).is_none());
        assert_eq!(decode(&unknown), decode(&bytes));
        // Not protobuf: an error, as prost's.
        assert!(decode(&[0x22, 0x05, 0x01]).is_err());
    }
}
