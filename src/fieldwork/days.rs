//! Interviews per day: counted interviews by the UTC day they ended.
//!
//! An interview's day is the UTC date of its `ended_at` (`completed_at`,
//! else `started_at`: the same time that makes it its case's complete).
//! An interview with neither timestamp has no day and counts as
//! `undated`; so does every interview restored from a format-4 snapshot,
//! which did not keep days. The receive time is deliberately not used:
//! `report` over a file has none, and live and offline figures must agree.
//! Days of different partitions merge by addition, like every count.
//! Pure.

use serde::Serialize;

use super::FieldworkState;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// The UTC day (days since 1970-01-01) of a time in milliseconds since the
/// Unix epoch; none outside the range of an `i32` day.
pub fn day_of(ms: i64) -> Option<i32> {
    i32::try_from(ms.div_euclid(DAY_MS)).ok()
}

/// The date of a day, `YYYY-MM-DD`.
pub fn date_of(day: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map_or_else(|| format!("day {day}"), |t| t.date_naive().to_string())
}

/// Counted interviews of one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DayCount {
    /// The UTC date, `YYYY-MM-DD`.
    #[schema(example = "2005-03-07")]
    pub date: String,
    /// Counted interviews that ended that day.
    pub interviews: u64,
}

/// Counted interviews per day, and those without a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InterviewsPerDay {
    /// Days with at least one counted interview, oldest first (days
    /// without interviews are left out).
    pub days: Vec<DayCount>,
    /// Counted interviews without a day: neither `completed_at` nor
    /// `started_at` given, or restored from a format-4 snapshot.
    pub undated: u64,
}

/// The per-day counts of a state. `days` plus `undated` is every counted
/// interview.
pub fn per_day(state: &FieldworkState) -> InterviewsPerDay {
    let counted: u64 = state.interviewers.values().map(|s| s.interviews).sum();
    let dated: u64 = state.days.values().sum();
    InterviewsPerDay {
        days: state.days.iter().map(|(&d, &n)| DayCount { date: date_of(d), interviews: n }).collect(),
        undated: counted.saturating_sub(dated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldwork::parse_line;
    use crate::instrument::Study;
    use crate::pipeline::{self, Source};
    use crate::results::StudyState;
    use crate::validate::Limits;

    const STUDY: &str = r#"
study: t
dimensions:
  - {name: interviewer, source: interviewer, values: [{code: int01}, {code: int02}]}
forms:
  - id: f
    items:
      - {id: q1, code: a, kind: yes_no}
"#;

    /// An interview line; `start` and `end` are RFC 3339 times or empty.
    fn line(resp: &str, sub: &str, who: &str, start: &str, end: &str) -> String {
        let time = |k: &str, v: &str| if v.is_empty() { String::new() } else { format!(r#","{k}":"{v}""#) };
        format!(
            r#"{{"study":"t","form":"f","respondent_id":"{resp}","submission_id":"{sub}","interviewer":"{who}"{}{},"answers":{{"q1":"yes"}}}}"#,
            time("started_at", start),
            time("completed_at", end)
        )
    }

    fn records() -> Vec<String> {
        vec![
            // int01: 10, 40 and 20 minutes; one ends after midnight UTC.
            line("r1", "s1", "int01", "2025-03-01T10:00:00Z", "2025-03-01T10:10:00Z"),
            line("r2", "s2", "int01", "2025-03-01T23:50:00Z", "2025-03-02T00:30:00Z"),
            line("r3", "s3", "int01", "2025-03-02T09:00:00Z", "2025-03-02T09:20:00Z"),
            // int02: 30 and 50 minutes; a retry and a duplicate respondent never count.
            line("r4", "s4", "int02", "2025-03-02T12:00:00Z", "2025-03-02T12:30:00Z"),
            line("r4", "s4", "int02", "2025-03-02T12:00:00Z", "2025-03-02T12:30:00Z"),
            line("r4", "s9", "int02", "2025-03-05T12:00:00Z", "2025-03-05T12:30:00Z"),
            line("r5", "s5", "int02", "2025-03-05T08:00:00Z", "2025-03-05T08:50:00Z"),
            // Only a start: its day is the start's, and it has no duration.
            line("r6", "s6", "int02", "2025-03-05T09:00:00Z", ""),
            // No timestamp at all: undated.
            line("r7", "s7", "int01", "", ""),
        ]
    }

    fn apply_all(study: &Study, state: &mut StudyState, lines: &[String]) {
        for (offset, l) in (0..).zip(lines) {
            let parsed = parse_line(l).expect("a line");
            let source = Source { partition: 0, offset, received_at_ms: None };
            let step = pipeline::apply(study, state, &parsed, &Limits::default(), source);
            assert!(!matches!(step.fate, pipeline::Fate::Invalid(_)), "{l}: {:?}", step.fate);
        }
    }

    #[test]
    fn interviews_per_day_and_interviewer_medians_are_exact_and_merge_over_partitions() {
        let study = Study::from_yaml(STUDY).expect("valid");
        let mut whole = StudyState::new();
        apply_all(&study, &mut whole, &records());
        assert_eq!(whole.interviews(), 7);
        let days = per_day(&whole.fieldwork);
        let got: Vec<(&str, u64)> = days.days.iter().map(|d| (d.date.as_str(), d.interviews)).collect();
        assert_eq!(got, [("2025-03-01", 1), ("2025-03-02", 3), ("2025-03-05", 2)]);
        assert_eq!(days.undated, 1);
        assert_eq!(whole.fieldwork.interviewer_median("int01"), Some(1200.0));
        assert_eq!(whole.fieldwork.interviewer_median("int02"), Some(2400.0));

        // The same records over two partitions (a respondent's records stay
        // on one), merged as the study-wide view merges them.
        let (mut a, mut b) = (StudyState::new(), StudyState::new());
        let all = records();
        let (left, right): (Vec<String>, Vec<String>) =
            all.into_iter().partition(|l| ["\"r1\"", "\"r4\"", "\"r7\""].iter().any(|r| l.contains(r)));
        apply_all(&study, &mut a, &left);
        apply_all(&study, &mut b, &right);
        let mut merged = StudyState::new();
        merged.merge_summary(&a.counts_only());
        merged.merge_summary(&b.counts_only());
        assert_eq!(per_day(&merged.fieldwork), days);
        for who in ["int01", "int02"] {
            assert_eq!(
                merged.fieldwork.interviewer_median(who),
                whole.fieldwork.interviewer_median(who),
                "{who}"
            );
        }

        // Through a snapshot (of a whole state, as the live one) and back.
        let mut full = StudyState::new();
        full.merge(&a);
        full.merge(&b);
        let back = StudyState::from_wire(full.to_wire()).expect("decodes");
        assert_eq!(back.fieldwork, full.fieldwork);
        assert_eq!(back.fieldwork.interviewer_median("int02"), Some(2400.0));

        // In the fieldwork report, by interviewer.
        let r = crate::fieldwork::report(&study, &merged.fieldwork, Some("interviewer")).expect("report");
        let q =
            r.groups.iter().find(|g| g.segment == "int01").and_then(|g| g.quality.as_ref()).expect("int01");
        assert_eq!((q.median_duration_secs, q.mean_duration_secs), (Some(1200.0), Some(1400.0)));
        assert_eq!(r.interviews_per_day, days);
        let table = r.to_table();
        let want =
            "interviews per day (3 days; undated 1):\n  2025-03-01   1  2025-03-02   3  2025-03-05   2\n";
        assert!(table.contains(want), "{table}");
    }

    #[test]
    fn days_are_utc_dates_and_times_before_1970_fall_on_the_day_before() {
        let ms = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("time").timestamp_millis();
        assert_eq!(day_of(ms("1970-01-01T00:00:00Z")), Some(0));
        assert_eq!(day_of(ms("1970-01-01T23:59:59.999Z")), Some(0));
        assert_eq!(day_of(ms("1969-12-31T23:59:59Z")), Some(-1));
        // 00:30 in UTC+2 is still the day before in UTC.
        let d = day_of(ms("2005-03-08T00:30:00+02:00")).expect("a day");
        assert_eq!(date_of(d), "2005-03-07");
        assert_eq!(date_of(day_of(ms("9999-12-31T23:59:59Z")).expect("a day")), "9999-12-31");
        assert_eq!(date_of(day_of(ms("0000-01-01T00:00:00Z")).expect("a day")), "0000-01-01");
    }

    #[test]
    fn the_openapi_document_describes_the_per_day_counts_and_the_interviewer_median() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::http::openapi::ApiDoc::openapi()).expect("json");
        let schemas = &doc["components"]["schemas"];
        assert!(
            schemas["FieldworkReport"]["properties"]["interviews_per_day"].is_object(),
            "{}",
            schemas["FieldworkReport"]
        );
        assert!(schemas["InterviewsPerDay"]["properties"]["undated"].is_object());
        assert!(schemas["DayCount"]["properties"]["date"].is_object());
        assert!(schemas["InterviewerQuality"]["properties"]["median_duration_secs"].is_object());
    }
}
