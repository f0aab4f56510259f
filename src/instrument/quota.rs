//! Quotas of a study, compiled: cells over declared dimensions with value
//! indexes instead of codes, linted at load (`docs/instruments.md`,
//! "Quotas"). Counting against them is [`crate::results::quotas`]. Pure.

use super::compile::is_ident;
use super::{Dim, QuotaDef};

/// A compiled quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// Name (a lowercase identifier).
    pub name: String,
    /// Indexes into [`super::Study::dims`], in the order of each cell's values.
    pub dims: Vec<usize>,
    /// The cells, in definition order.
    pub cells: Vec<QuotaCell>,
}

/// A compiled quota cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCell {
    /// Value index per quota dimension (declared values only).
    pub values: Vec<usize>,
    /// Counted interviews wanted; the cell is full at this many.
    pub target: u64,
    /// Most counted interviews the cell takes; the target when no cap is declared.
    pub limit: u64,
    /// The declared cap, if any.
    pub cap: Option<u64>,
}

impl QuotaCell {
    /// Whether a segment key (value index per study dimension) falls into this cell.
    pub fn matches(&self, dims: &[usize], key: &[u16]) -> bool {
        dims.iter().zip(&self.values).all(|(&d, &v)| key.get(d).is_some_and(|&k| usize::from(k) == v))
    }
}

/// Compiles and lints the quotas; each problem goes to `problem`.
pub(super) fn compile(defs: &[QuotaDef], dims: &[Dim], problem: &mut dyn FnMut(String)) -> Vec<Quota> {
    let mut out: Vec<Quota> = Vec::new();
    for q in defs {
        if !is_ident(&q.name) {
            problem(format!("quota name `{}` must be a lowercase identifier", q.name));
        }
        if out.iter().any(|o| o.name == q.name) {
            problem(format!("quota `{}` is declared twice", q.name));
        }
        if q.dimensions.is_empty() {
            problem(format!("quota `{}` names no dimension", q.name));
        }
        let mut qdims = Vec::new();
        for d in &q.dimensions {
            match dims.iter().position(|x| &x.name == d) {
                Some(i) if qdims.contains(&i) => {
                    problem(format!("quota `{}` names dimension `{d}` twice", q.name))
                }
                Some(i) => qdims.push(i),
                None => problem(format!("quota `{}` names undeclared dimension `{d}`", q.name)),
            }
        }
        if qdims.len() != q.dimensions.len() {
            continue;
        }
        if q.cells.is_empty() {
            problem(format!("quota `{}` has no cells", q.name));
        }
        let mut cells: Vec<QuotaCell> = Vec::new();
        for c in &q.cells {
            let shown = c.values.join(", ");
            if c.values.len() != qdims.len() {
                problem(format!(
                    "quota `{}` cell [{shown}] gives {} values for {} dimensions",
                    q.name,
                    c.values.len(),
                    qdims.len()
                ));
                continue;
            }
            let mut values = Vec::new();
            for (&d, v) in qdims.iter().zip(&c.values) {
                let i = dims[d].value_of(Some(v));
                if i >= dims[d].values.len() {
                    problem(format!(
                        "quota `{}` cell [{shown}]: `{v}` is not a declared value of `{}`",
                        q.name, dims[d].name
                    ));
                }
                values.push(i);
            }
            if c.target == 0 {
                problem(format!("quota `{}` cell [{shown}] has target 0", q.name));
            }
            if c.cap.is_some_and(|cap| cap < c.target) {
                problem(format!("quota `{}` cell [{shown}] has a cap below its target", q.name));
            }
            if cells.iter().any(|x| x.values == values) {
                problem(format!("quota `{}` lists cell [{shown}] twice", q.name));
            }
            cells.push(QuotaCell { values, target: c.target, limit: c.cap.unwrap_or(c.target), cap: c.cap });
        }
        out.push(Quota { name: q.name.clone(), dims: qdims, cells });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::instrument::Study;

    const HEAD: &str = r#"
study: t
dimensions:
  - {name: position, source: attribute, values: [{code: a}, {code: b}]}
  - {name: region, source: attribute, values: [{code: west}, {code: east}]}
forms:
  - id: f
    items:
      - {id: q1, code: tf, kind: yes_no}
"#;

    fn load(quotas: &str) -> Result<Study, String> {
        Study::from_yaml(&format!("{HEAD}{quotas}"))
            .map_err(|ps| ps.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("; "))
    }

    #[test]
    fn a_quota_over_two_dimensions_compiles_to_value_indexes() {
        let s = load(
            "quotas:\n  - {name: pos_region, dimensions: [region, position], cells: [{values: [east, b], target: 3, cap: 4}]}\n",
        )
        .expect("valid");
        assert_eq!(s.quotas[0].dims, vec![1, 0]);
        assert_eq!(s.quotas[0].cells[0].values, vec![1, 1]);
        assert_eq!(s.quotas[0].cells[0].limit, 4);
        assert!(s.quotas[0].cells[0].matches(&s.quotas[0].dims, &[1, 1]));
        assert!(!s.quotas[0].cells[0].matches(&s.quotas[0].dims, &[0, 1]));
    }

    #[test]
    fn undeclared_dimensions_values_and_caps_below_target_are_refused() {
        let e = load("quotas:\n  - {name: q, dimensions: [sex], cells: [{values: [m], target: 1}]}\n")
            .expect_err("undeclared dimension");
        assert!(e.contains("undeclared dimension `sex`"), "{e}");
        let e = load("quotas:\n  - {name: q, dimensions: [position], cells: [{values: [c], target: 1}]}\n")
            .expect_err("undeclared value");
        assert!(e.contains("`c` is not a declared value of `position`"), "{e}");
        let e = load(
            "quotas:\n  - {name: q, dimensions: [position], cells: [{values: [a], target: 5, cap: 4}]}\n",
        )
        .expect_err("cap below target");
        assert!(e.contains("cap below its target"), "{e}");
        let e = load(
            "quotas:\n  - {name: q, dimensions: [position], cells: [{values: [a], target: 1}, {values: [a], target: 2}]}\n",
        )
        .expect_err("twice");
        assert!(e.contains("twice"), "{e}");
    }
}
