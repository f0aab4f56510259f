//! KoboToolbox (and ODK-style) submission JSON -> a fieldwatch submission.
//!
//! A KoboToolbox REST service posts each submission as one flat JSON
//! object: question values under `group/subgroup/question` keys, as
//! strings (numbers too; select_multiple as space-separated choice names),
//! plus metadata (`start`, `end`, `meta/instanceID`, `_uuid`,
//! `_submission_time`, `formhub/uuid`, `_id`, ...). [`submission`] maps it
//! by the instrument; the result is then validated like any submission, so
//! a bad value gets the same violation as over gRPC. Pure: no I/O.
//!
//! The mapping (also in `docs/api.md`):
//! - a question is found by the last segment of its key (`grp/q6` -> `q6`);
//!   XLSForm names are unique within a form, so this is unambiguous;
//! - `respondent_id`: a question named `respondent_id`, else
//!   `meta/rootUuid` (the first version's uuid, kept when the submission is
//!   edited; its `uuid:` prefix dropped), else `_uuid`;
//! - `submission_id`: `meta/instanceID`, else `_uuid`;
//! - `started_at` / `completed_at`: `start` / `end` (ODK metadata; an
//!   offset without minutes, `+03`, as older ODK clients write it, gets
//!   `:00`), the completion falling back to `_submission_time` (UTC);
//! - `interviewer`: a question named `interviewer`, else `_submitted_by`;
//! - `form`: the `form` query parameter, else a question named `form`,
//!   else the study's only form;
//! - a question named like a segment dimension of the study (and no item)
//!   goes into `attributes`;
//! - keys starting with `_`, `meta/` or `formhub/`, and the ODK metadata
//!   questions (`today`, `deviceid`, `username`, ...) are metadata, left
//!   out;
//! - any other key that names no item of the form (a `calculate` field,
//!   an `*_other` text, a note, custom metadata, a repeat group, an item of
//!   another form) is left out and counted in [`Mapped::ignored`]: a
//!   webhook has nobody to read a refusal, and the form in Kobo may carry
//!   more than the instrument. The JSON route stays strict (such a key is
//!   `unknown_item` there).
//!
//! A REST service may wrap each submission in a custom template
//! (`payload_template`, e.g. `{"fields": %SUBMISSION%}`); [`unwrap`] takes
//! it out of the key the route is told.

use serde_json::{Map, Value};

use crate::instrument::{KindDef, Study};
use crate::validate::{Answer, MissingAnswer, Submission};

/// ODK/KoboToolbox metadata questions that carry no answer.
const METADATA: [&str; 10] = [
    "start",
    "end",
    "today",
    "deviceid",
    "username",
    "simserial",
    "subscriberid",
    "phonenumber",
    "audit",
    "instanceID",
];

fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A KoboToolbox payload, mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The submission, to validate like any other.
    pub submission: Submission,
    /// Keys of the payload left out because they name no item of the form
    /// (nor a field, a segment dimension or Kobo metadata).
    pub ignored: usize,
}

/// The submission inside a REST service's custom wrapper: the object under
/// `key`, or `None` when there is none.
pub fn unwrap(mut payload: Map<String, Value>, key: &str) -> Option<Map<String, Value>> {
    match payload.remove(key) {
        Some(Value::Object(inner)) => Some(inner),
        _ => None,
    }
}

/// The submission a KoboToolbox payload stands for, in `study`, with
/// `form` from the route when given.
pub fn submission(study: &Study, form: Option<&str>, payload: &Map<String, Value>) -> Mapped {
    // Questions by their name (last key segment), metadata left out.
    let questions = payload.iter().filter_map(|(key, value)| {
        if key.starts_with('_') || key.starts_with("meta/") || key.starts_with("formhub/") {
            return None;
        }
        let name = key.rsplit('/').next().unwrap_or(key);
        (!METADATA.contains(&name)).then_some((name, value))
    });
    let mut named: std::collections::BTreeMap<&str, &Value> = questions.collect();
    // Questions with these names fill fields rather than answers.
    let form_question = text(named.remove("form"));
    let form_id = form
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .or(form_question)
        .or_else(|| (study.forms.len() == 1).then(|| study.forms[0].id.clone()))
        .unwrap_or_default();
    let root_uuid = text(payload.get("meta/rootUuid"))
        .map(|u| u.strip_prefix("uuid:").map_or(u.clone(), str::to_string))
        .filter(|u| !u.is_empty());
    let respondent_id =
        text(named.remove("respondent_id")).or(root_uuid).or_else(|| text(payload.get("_uuid")));
    let interviewer = text(named.remove("interviewer")).or_else(|| text(payload.get("_submitted_by")));
    let submission_id = text(payload.get("meta/instanceID")).or_else(|| text(payload.get("_uuid")));
    let completed_at = text(payload.get("end"))
        .map(offset_minutes)
        .or_else(|| text(payload.get("_submission_time")).map(utc));

    let form_def = study.form(&form_id).map(|i| &study.forms[i]);
    let mut answers = std::collections::BTreeMap::new();
    let mut attributes = std::collections::BTreeMap::new();
    let mut ignored = 0;
    for (name, value) in named {
        let item = form_def.and_then(|f| f.item(name).map(|i| &f.items[i]));
        match item {
            Some(item) => {
                answers.insert(name.to_string(), answer(study, &item.kind, value));
            }
            None if study.dim(name).is_some() => {
                if let Some(v) = text(Some(value)) {
                    attributes.insert(name.to_string(), v);
                }
            }
            // No item of this form: left out, counted.
            None => ignored += 1,
        }
    }
    let submission = Submission {
        study: study.id().to_string(),
        form: form_id,
        respondent_id: respondent_id.unwrap_or_default(),
        submission_id: submission_id.unwrap_or_default(),
        started_at: text(payload.get("start")).map(offset_minutes),
        completed_at,
        interviewer,
        attributes,
        answers,
    };
    Mapped { submission, ignored }
}

/// `_submission_time` is UTC without an offset (`2024-03-05T09:14:42`);
/// adds one when it is missing.
fn utc(t: String) -> String {
    let has_offset =
        t.ends_with('Z') || t.get(19..).is_some_and(|rest| rest.contains('+') || rest.contains('-'));
    if has_offset { t } else { format!("{t}Z") }
}

/// `2014-04-28T14:57:51.208+03` (an offset in whole hours, as older ODK
/// clients write it) as RFC 3339, `...+03:00`; anything else unchanged.
fn offset_minutes(t: String) -> String {
    let b = t.as_bytes();
    let n = b.len();
    let hours_only = n > 19
        && matches!(b[n - 3], b'+' | b'-')
        && b[n - 2].is_ascii_digit()
        && b[n - 1].is_ascii_digit()
        && t[..n - 3].contains('T');
    if hours_only { format!("{t}:00") } else { t }
}

/// A JSON value as it stands (a number as a number, a string as text).
fn as_is(value: &Value) -> Answer {
    serde_json::from_value(value.clone()).unwrap_or(Answer::Other(value.clone()))
}

/// A Kobo value (a string, mostly) as the answer an item of `kind` takes. Kobo sends
/// every value as a string; what it means depends on the question:
///
/// - an integer or decimal question (`count`, `number`) holds a number,
///   passed on as a number exactly as over gRPC: validation then takes it
///   as a missing code only when the item's `missing_numbers` list it (by
///   default the study's numeric codes outside the item's range, so `-99`
///   is refused but `99` stays an age on 0..120);
/// - a select_one scale holds a choice name: a point of the scale is that
///   number, another name that is a study missing code is
///   `{"missing": code}` (a choice whose name is a missing code is no point);
/// - other selects hold choice names, and a text its text: a study missing
///   code that is no option of the item is `{"missing": code}`;
/// - select_multiple is split on spaces.
///
/// A value that does not convert stays text, which validation rejects as
/// `wrong_kind`, as over gRPC.
fn answer(study: &Study, kind: &KindDef, value: &Value) -> Answer {
    let Value::String(s) = value else { return as_is(value) };
    let s = s.trim();
    if s.is_empty() {
        return Answer::Blank;
    }
    let missing = || study.missing_kind(s).map(|_| Answer::Missing(MissingAnswer { missing: s.to_string() }));
    let text = || Answer::Text(s.to_string());
    match kind {
        KindDef::Count { .. } | KindDef::Number { .. } => {
            number(s, kind).or_else(missing).unwrap_or_else(text)
        }
        KindDef::Scale { min, max, .. } => s
            .parse::<i64>()
            .ok()
            .filter(|n| (*min..=*max).contains(n))
            .map(Answer::Integer)
            .or_else(missing)
            .or_else(|| number(s, kind))
            .unwrap_or_else(text),
        KindDef::SingleChoice { options } | KindDef::MultiSelect { options, .. }
            if options.iter().any(|o| o.code == s) =>
        {
            choice(kind, s)
        }
        KindDef::YesNo | KindDef::YesNoNa if matches!(s, "yes" | "no" | "na") => text(),
        _ => missing().unwrap_or_else(|| choice(kind, s)),
    }
}

/// A string as the number a scale, count or number item takes, if it is one.
fn number(s: &str, kind: &KindDef) -> Option<Answer> {
    match kind {
        KindDef::Number { .. } => s.parse::<f64>().ok().map(Answer::Number),
        _ => s.parse::<i64>().map(Answer::Integer).or_else(|_| s.parse::<f64>().map(Answer::Number)).ok(),
    }
}

/// A choice name (or text) as given: split on spaces for select_multiple.
fn choice(kind: &KindDef, s: &str) -> Answer {
    match kind {
        KindDef::MultiSelect { .. } => Answer::Choices(s.split_whitespace().map(str::to_string).collect()),
        _ => Answer::Text(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::{Catalog, DEMO_STUDY_ID};

    fn demo() -> std::sync::Arc<Study> {
        Catalog::demo().get(DEMO_STUDY_ID).expect("demo").clone()
    }

    /// The first item of `kind` in the demo's first form.
    fn item_of(study: &Study, pick: impl Fn(&KindDef) -> bool) -> String {
        study.forms[0].items.iter().find(|i| pick(&i.kind)).map(|i| i.id.clone()).expect("item")
    }

    fn payload(json: serde_json::Value) -> Map<String, Value> {
        json.as_object().expect("object").clone()
    }

    #[test]
    fn metadata_maps_to_ids_times_and_the_form() {
        let st = demo();
        let form = st.forms[0].id.clone();
        let p = payload(serde_json::json!({
            "_id": 1, "_uuid": "0f5d-uuid", "meta/instanceID": "uuid:0f5d-uuid",
            "formhub/uuid": "abc", "__version__": "v1", "start": "2024-03-05T10:02:11.123+01:00",
            "_submission_time": "2024-03-05T09:14:42", "_submitted_by": "enum07",
            "_attachments": [], "_geolocation": [null, null], "today": "2024-03-05", "deviceid": "ee:1"
        }));
        let m = submission(&st, Some(&form), &p);
        assert_eq!(m.ignored, 0, "metadata is not counted as ignored");
        let s = m.submission;
        assert_eq!(s.study, DEMO_STUDY_ID);
        assert_eq!(s.form, form);
        assert_eq!(s.respondent_id, "0f5d-uuid");
        assert_eq!(s.submission_id, "uuid:0f5d-uuid");
        assert_eq!(s.started_at.as_deref(), Some("2024-03-05T10:02:11.123+01:00"));
        assert_eq!(s.completed_at.as_deref(), Some("2024-03-05T09:14:42Z"), "UTC made explicit");
        assert_eq!(s.interviewer.as_deref(), Some("enum07"));
        assert!(s.answers.is_empty(), "no metadata becomes an answer: {:?}", s.answers);
    }

    #[test]
    fn grouped_questions_are_found_by_name_and_converted_by_item_kind() {
        let st = demo();
        let scale = item_of(&st, |k| matches!(k, KindDef::Scale { .. }));
        let multi = item_of(&st, |k| matches!(k, KindDef::MultiSelect { ranked: false, .. }));
        let form = st.forms[0].id.clone();
        let p = payload(serde_json::json!({
            format!("grp_a/sub/{scale}"): "4",
            format!("grp_b/{multi}"): "x y",
            "respondent_id": "R-1",
        }));
        let m = submission(&st, Some(&form), &p);
        assert_eq!(m.ignored, 0);
        let s = m.submission;
        assert_eq!(s.respondent_id, "R-1");
        assert_eq!(s.answers[&scale], Answer::Integer(4));
        assert_eq!(s.answers[&multi], Answer::Choices(vec!["x".into(), "y".into()]));
    }

    /// What a real Kobo form carries beside its questions: calculate
    /// fields, `*_other` texts, notes, custom metadata, a repeat group, and
    /// here also a question of another form of the study.
    #[test]
    fn keys_that_name_no_item_of_the_form_are_left_out_and_counted() {
        let st = demo();
        let scale = item_of(&st, |k| matches!(k, KindDef::Scale { .. }));
        let form = st.forms[0].id.clone();
        let other_form_only = st.forms[1..]
            .iter()
            .flat_map(|f| &f.items)
            .map(|i| i.id.clone())
            .find(|id| st.forms[0].item(id).is_none())
            .expect("an item of another form only");
        let p = payload(serde_json::json!({
            format!("grp/{scale}"): "4",
            "grp/total_score_calc": "17",
            "grp/q2_other": "a language nobody listed",
            "note_thanks": "",
            "project_code": "ET-2025-07",
            "visits": [{"visits/when": "2"}, {"visits/when": "5"}],
            format!("grp/{other_form_only}"): "yes",
            "_uuid": "u-1", "meta/instanceID": "uuid:u-1", "start": "2025-11-18T08:41:07+03:00",
        }));
        let m = submission(&st, Some(&form), &p);
        assert_eq!(m.ignored, 6, "{:?}", m.submission.answers);
        assert_eq!(m.submission.answers.len(), 1, "{:?}", m.submission.answers);
        assert_eq!(m.submission.answers[&scale], Answer::Integer(4));
        let v = crate::validate::validate_in(&st, &m.submission, &crate::validate::Limits::default())
            .err()
            .unwrap_or_default();
        assert!(v.iter().all(|v| v.rule != crate::validate::Rule::UnknownItem), "{v:?}");
    }

    #[test]
    fn a_custom_wrapper_is_taken_off_and_a_missing_one_is_none() {
        let p = payload(serde_json::json!({"fields": {"_uuid": "u-1", "grp/q6": "4"}, "source": "kobo"}));
        let inner = unwrap(p.clone(), "fields").expect("unwrapped");
        assert_eq!(inner.get("_uuid"), Some(&Value::String("u-1".into())));
        assert_eq!(unwrap(p.clone(), "data"), None, "no such key");
        assert_eq!(unwrap(p, "source"), None, "not an object");
    }

    #[test]
    fn a_missing_code_becomes_a_missing_answer_and_junk_stays_text() {
        let st = demo();
        let scale = item_of(&st, |k| matches!(k, KindDef::Scale { .. }));
        let code = st.def.missing_codes[0].code.clone();
        let kind = &st.forms[0].items[st.forms[0].item(&scale).expect("item")].kind;
        assert_eq!(
            answer(&st, kind, &Value::String(code.clone())),
            Answer::Missing(MissingAnswer { missing: code })
        );
        assert_eq!(answer(&st, kind, &Value::String("lots".into())), Answer::Text("lots".into()));
        assert_eq!(answer(&st, kind, &Value::String(String::new())), Answer::Blank);
    }

    /// Kobo sends an integer question's value as a string. It must mean
    /// what the same number means over gRPC: missing only when the item
    /// takes it as a sentinel (its `missing_numbers`: here `-99` and `999`,
    /// the study's numeric codes outside 0..120, as XLSForm import makes
    /// them by default); `99`, a study missing code too, is an age.
    #[test]
    fn a_number_is_missing_only_when_its_item_takes_it_as_a_sentinel() {
        use crate::instrument::MissingKind;
        use crate::validate::{Limits, Value as Typed, validate_in};
        let st = Study::from_yaml(
            r#"
study: k
missing_codes:
  - {code: "-99", kind: refused}
  - {code: "99", kind: dont_know}
  - {code: "999", kind: dont_know}
  - {code: dk, kind: dont_know}
forms:
  - id: f
    items:
      - {id: age, code: age, kind: count, min: 0, max: 120, missing_numbers: ["-99", "999"]}
      - {id: score, code: score, kind: scale, min: 1, max: 5, labels: {1: low, 5: high}}
      - {id: job, code: job, kind: single_choice, options: [{code: a}, {code: b}]}
      - {id: note, code: note, kind: text}
"#,
        )
        .expect("valid study");
        // The Kobo answer, and the value validation makes of it.
        let kobo = |id: &str, v: &str| {
            let p = payload(serde_json::json!({ id: v, "_uuid": "u-1" }));
            let sub = submission(&st, Some("f"), &p).submission;
            let rec = validate_in(&st, &sub, &Limits::default()).expect("valid");
            (sub.answers[id].clone(), rec.answers[st.forms[0].item(id).expect("item")].clone())
        };
        assert_eq!(kobo("age", "99"), (Answer::Integer(99), Typed::Int(99)), "99 is an age");
        assert_eq!(kobo("age", "120"), (Answer::Integer(120), Typed::Int(120)));
        assert_eq!(kobo("age", "-99"), (Answer::Integer(-99), Typed::Missing(MissingKind::Refused)));
        assert_eq!(kobo("age", "999"), (Answer::Integer(999), Typed::Missing(MissingKind::DontKnow)));
        let dk = Answer::Missing(MissingAnswer { missing: "dk".into() });
        assert_eq!(kobo("age", "dk"), (dk.clone(), Typed::Missing(MissingKind::DontKnow)), "a code name");

        // A select_one scale holds choice names: a point is a value, a
        // missing code outside the scale is missing.
        assert_eq!(kobo("score", "5"), (Answer::Integer(5), Typed::Int(5)));
        let code = |c: &str| Answer::Missing(MissingAnswer { missing: c.into() });
        assert_eq!(kobo("score", "99"), (code("99"), Typed::Missing(MissingKind::DontKnow)));
        assert_eq!(kobo("score", "-99").1, Typed::Missing(MissingKind::Refused));
        assert_eq!(kobo("score", "7"), (Answer::Integer(7), Typed::Int(7)), "out of range: flagged later");

        // Options and text: an option is itself, a missing code is missing.
        assert_eq!(kobo("job", "a").0, Answer::Text("a".into()));
        assert_eq!(kobo("job", "dk"), (dk.clone(), Typed::Missing(MissingKind::DontKnow)));
        assert_eq!(kobo("note", "dk"), (dk, Typed::Missing(MissingKind::DontKnow)));
        assert_eq!(kobo("note", "some words").1, Typed::Text);
    }

    /// The shape current KoboToolbox servers post: every question value a
    /// string (numbers too), group paths, `meta/rootUuid` beside
    /// `meta/instanceID`, attachments and geolocation as JSON, a repeat as an
    /// array of objects keyed by full path.
    #[test]
    fn a_payload_in_the_shape_kobo_posts_maps_by_item_and_ignores_its_metadata() {
        let st = demo();
        let scale = item_of(&st, |k| matches!(k, KindDef::Scale { .. }));
        let multi = item_of(&st, |k| matches!(k, KindDef::MultiSelect { ranked: false, .. }));
        let form = st.forms[0].id.clone();
        let p = payload(serde_json::json!({
            "_id": 903_114_208,
            "formhub/uuid": "7e1f0c2a9b8d4e6f8a0b1c2d3e4f5a6b",
            "start": "2025-11-18T08:41:07.512+03:00",
            "end": "2025-11-18T08:58:30.004+03",
            "today": "2025-11-18",
            "username": "fieldteam_b",
            "deviceid": "collect:Xq2LmP0aZr7Tt9Ks",
            format!("section_a/block_2/{scale}"): "3",
            format!("section_b/{multi}"): "x  y",
            "__version__": "vQm3pL8tRa2Zk5Wc7Yd9Ex",
            "meta/instanceID": "uuid:5a7c1e90-3b2d-4f6a-8c1e-0d9f2b4a6c8e",
            "meta/rootUuid": "uuid:11d0c3f4-8e2a-4b7c-9d1f-6a5e3c2b1a09",
            "meta/deprecatedID": "uuid:11d0c3f4-8e2a-4b7c-9d1f-6a5e3c2b1a09",
            "meta/instanceName": "site 14 household 3",
            "_xform_id_string": "aPq7Lm2Ns9Xv4Rt8Kw3Zy6",
            "_uuid": "5a7c1e90-3b2d-4f6a-8c1e-0d9f2b4a6c8e",
            "_attachments": [{"filename": "fieldteam_b/attachments/x/photo.jpg", "instance": 903_114_208}],
            "_status": "submitted_via_web",
            "_geolocation": [9.0301, 38.7406],
            "_submission_time": "2025-11-18T05:58:41",
            "_tags": ["pilot"],
            "_notes": [],
            "_validation_status": {"uid": "validation_status_approved", "label": "Approved"},
            "_submitted_by": "fieldteam_b"
        }));
        let m = submission(&st, Some(&form), &p);
        assert_eq!(m.ignored, 0, "all of Kobo's own keys are metadata");
        let s = m.submission;
        assert_eq!(s.respondent_id, "11d0c3f4-8e2a-4b7c-9d1f-6a5e3c2b1a09", "an edit keeps its respondent");
        assert_eq!(s.submission_id, "uuid:5a7c1e90-3b2d-4f6a-8c1e-0d9f2b4a6c8e");
        assert_eq!(s.started_at.as_deref(), Some("2025-11-18T08:41:07.512+03:00"));
        assert_eq!(s.completed_at.as_deref(), Some("2025-11-18T08:58:30.004+03:00"), "hour offset completed");
        assert_eq!(s.interviewer.as_deref(), Some("fieldteam_b"));
        assert_eq!(s.answers.len(), 2, "only the questions are answers: {:?}", s.answers);
        assert_eq!(s.answers[&scale], Answer::Integer(3));
        assert_eq!(s.answers[&multi], Answer::Choices(vec!["x".into(), "y".into()]));
        let v = crate::validate::validate_in(&st, &s, &crate::validate::Limits::default())
            .err()
            .unwrap_or_default();
        assert!(v.iter().all(|v| !v.field.ends_with("_at")), "times parse: {v:?}");

        // A repeat group is no item: left out and counted.
        let mut with_repeat = p.clone();
        with_repeat.insert("visits".into(), serde_json::json!([{"visits/when": "2"}, {"visits/when": "5"}]));
        let m = submission(&st, Some(&form), &with_repeat);
        assert_eq!((m.ignored, m.submission.answers.len()), (1, 2));
    }

    #[test]
    fn an_offset_in_whole_hours_gets_its_minutes_and_nothing_else_changes() {
        assert_eq!(offset_minutes("2014-04-28T14:57:51.208+03".into()), "2014-04-28T14:57:51.208+03:00");
        assert_eq!(offset_minutes("2014-04-28T14:57:51-05".into()), "2014-04-28T14:57:51-05:00");
        for t in ["2014-04-28T14:57:51+03:00", "2014-04-28T14:57:51Z", "2014-04-28T14:57:51", "2014-04-28"] {
            assert_eq!(offset_minutes(t.into()), t);
        }
    }
}
