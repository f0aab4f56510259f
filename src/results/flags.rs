//! Quality flags per check: how many, and the items that raised the most
//! (the page's quality table, `GET /api/v1/studies/{study}/quality`). Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::StudyState;
use crate::instrument::Study;
use crate::quality::Check;

/// Most items listed per check.
pub const WORST_ITEMS: usize = 5;

/// One check's flags.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckSummary {
    /// The check.
    pub check: Check,
    /// Flags raised (over every form and item).
    pub flags: u64,
    /// The items with the most flags of this check, most first (at most
    /// [`WORST_ITEMS`]); empty for checks on whole interviews.
    pub worst_items: Vec<ItemFlags>,
}

/// Flags of one check on one canonical item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemFlags {
    /// Canonical item code (the flags list's `item` filter).
    pub code: String,
    /// Question wording.
    pub text: String,
    /// Flags.
    pub flags: u64,
}

/// Every check (zero ones too, in [`Check::ALL`] order) with its flags and worst items.
pub fn by_check(study: &Study, state: &StudyState) -> Vec<CheckSummary> {
    let mut per_item: BTreeMap<(Check, usize), u64> = BTreeMap::new();
    let mut totals: BTreeMap<Check, u64> = BTreeMap::new();
    for (&(_, check, code), &n) in &state.flags {
        *totals.entry(check).or_default() += n;
        if let Some(c) = code {
            *per_item.entry((check, c)).or_default() += n;
        }
    }
    Check::ALL
        .into_iter()
        .map(|check| {
            let mut items: Vec<(usize, u64)> =
                per_item.iter().filter(|((k, _), _)| *k == check).map(|(&(_, c), &n)| (c, n)).collect();
            items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            CheckSummary {
                check,
                flags: totals.get(&check).copied().unwrap_or(0),
                worst_items: items
                    .into_iter()
                    .take(WORST_ITEMS)
                    .filter_map(|(c, n)| {
                        study.codes.get(c).map(|i| ItemFlags {
                            code: i.code.clone(),
                            text: i.text.clone(),
                            flags: n,
                        })
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = r#"
study: t
forms:
  - id: f
    items:
      - {id: q1, code: a, kind: yes_no, text: First}
      - {id: q2, code: b, kind: yes_no, text: Second}
"#;

    #[test]
    fn flags_add_up_over_forms_and_items_sort_most_flagged_first() {
        let study = Study::from_yaml(STUDY).expect("valid");
        let mut state = StudyState::new();
        state.flags.insert((0, Check::ItemNonresponse, Some(0)), 2);
        state.flags.insert((0, Check::ItemNonresponse, Some(1)), 5);
        state.flags.insert((1, Check::ItemNonresponse, Some(0)), 1);
        state.flags.insert((0, Check::Speeder, None), 4);
        let all = by_check(&study, &state);
        assert_eq!(all.len(), Check::ALL.len());
        let nr = all.iter().find(|c| c.check == Check::ItemNonresponse).expect("listed");
        assert_eq!(nr.flags, 8);
        let worst: Vec<(&str, u64)> = nr.worst_items.iter().map(|i| (i.code.as_str(), i.flags)).collect();
        assert_eq!(worst, [("b", 5), ("a", 3)]);
        assert_eq!(nr.worst_items[0].text, "Second");
        let sp = all.iter().find(|c| c.check == Check::Speeder).expect("listed");
        assert_eq!((sp.flags, sp.worst_items.len()), (4, 0));
    }
}
