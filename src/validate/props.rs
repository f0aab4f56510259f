//! Property tests: validation never panics, whatever the input, and
//! gives the same from a record's bytes (borrowed) as from the owned form.
use proptest::prelude::*;

use super::*;
use crate::quality::check;

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map(serde_json::Value::Number).unwrap_or_default()),
        "[a-z]{0,3}|\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("ranked|missing|[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn validation_and_checks_never_panic_on_any_input(
        form in prop::sample::select(vec!["investigator", "line_officer", "victim_witness", "federal", "", "zz"]),
        ids in prop::collection::vec("q[0-9]{1,2}[a-l]?|q13_male|q14_adult|x", 0..12),
        values in prop::collection::vec(arb_json(), 12),
        started in prop::option::of("2024-01-01T1[0-9]:00:00Z|garbage"),
        completed in prop::option::of("2024-01-01T1[0-9]:30:00Z|"),
        region in "[a-z]{0,10}",
    ) {
        let catalog = crate::instrument::Catalog::demo();
        let mut answers = serde_json::Map::new();
        for (id, v) in ids.iter().zip(values) {
            answers.insert(id.clone(), v);
        }
        let doc = serde_json::json!({
            "study": "le-trafficking", "form": form, "respondent_id": "r", "submission_id": "s",
            "started_at": started, "completed_at": completed,
            "attributes": {"region": region}, "answers": answers,
        });
        let Ok(sub) = serde_json::from_value::<Submission>(doc) else {
            return Ok(());
        };
        // The aggregator's path: the same submission in a record's bytes,
        // validated borrowed from them.
        let study = catalog.get("le-trafficking").expect("demo");
        let owned = validate(&catalog, &sub, &Limits::default());
        let envelope = crate::proto::v1::Envelope { submission: Some(sub.clone().into()), ..Default::default() };
        let bytes = prost::Message::encode_to_vec(&envelope);
        let decoded = crate::proto::envelope::decode_borrowed(&bytes).expect("written as ingest writes it");
        let borrowed = decoded.submission.expect("an interview");
        prop_assert_eq!(&validate_ref_in(study, &borrowed, &Limits::default()), &owned);
        if let Ok(rec) = owned {
            let checked = check(study, &rec);
            prop_assert_eq!(checked.status.len(), study.forms[rec.form].items.len());
            let mut state = crate::results::StudyState::new();
            state.apply(study, &rec, &checked);
            prop_assert!(crate::results::toplines(study, &state, Some("position")).is_ok());
        }
    }
}
