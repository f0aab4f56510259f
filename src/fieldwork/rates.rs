//! AAPOR outcome rates (Standard Definitions): response rates RR1–RR6,
//! cooperation rates COOP1–COOP4, refusal rates REF1–REF3 and contact rates
//! CON1–CON3, from the counts of final dispositions and the estimate `e` of
//! the eligible share of unknown-eligibility cases. The formulas, with the
//! seed study as an example, are in `docs/fieldwork.md`.

use serde::Serialize;

use super::{Counts, Disposition};
use crate::instrument::{EligibilityEstimate, EligibilityMethod};

/// Cases by final disposition, with AAPOR's symbols in the docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DispositionCounts {
    /// I: complete interviews.
    pub complete: u64,
    /// P: partial interviews.
    pub partial: u64,
    /// R: refusals and break-offs.
    pub refusal: u64,
    /// NC: non-contacts.
    pub non_contact: u64,
    /// O: other eligible non-interviews.
    pub other: u64,
    /// UH: unknown if household / occupied unit.
    pub unknown_household: u64,
    /// UO: other unknown eligibility.
    pub unknown_other: u64,
    /// NE: not eligible.
    pub not_eligible: u64,
}

impl From<Counts> for DispositionCounts {
    fn from(c: Counts) -> Self {
        let n = |d: Disposition| c[d.index()];
        DispositionCounts {
            complete: n(Disposition::Complete),
            partial: n(Disposition::Partial),
            refusal: n(Disposition::Refusal),
            non_contact: n(Disposition::NonContact),
            other: n(Disposition::Other),
            unknown_household: n(Disposition::UnknownHousehold),
            unknown_other: n(Disposition::UnknownOther),
            not_eligible: n(Disposition::NotEligible),
        }
    }
}

impl DispositionCounts {
    /// Every case.
    pub fn cases(&self) -> u64 {
        self.interviews() + self.eligible_non_interviews() + self.unknown() + self.not_eligible
    }
    /// I + P.
    pub fn interviews(&self) -> u64 {
        self.complete + self.partial
    }
    /// R + NC + O.
    pub fn eligible_non_interviews(&self) -> u64 {
        self.refusal + self.non_contact + self.other
    }
    /// UH + UO.
    pub fn unknown(&self) -> u64 {
        self.unknown_household + self.unknown_other
    }
    /// Known eligible: (I + P) + (R + NC + O).
    pub fn eligible(&self) -> u64 {
        self.interviews() + self.eligible_non_interviews()
    }
}

/// The AAPOR rates; `None` where the denominator is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Rates {
    /// I / ((I+P) + (R+NC+O) + (UH+UO)).
    pub rr1: Option<f64>,
    /// (I+P) / ((I+P) + (R+NC+O) + (UH+UO)).
    pub rr2: Option<f64>,
    /// I / ((I+P) + (R+NC+O) + e(UH+UO)).
    pub rr3: Option<f64>,
    /// (I+P) / ((I+P) + (R+NC+O) + e(UH+UO)).
    pub rr4: Option<f64>,
    /// I / ((I+P) + (R+NC+O)).
    pub rr5: Option<f64>,
    /// (I+P) / ((I+P) + (R+NC+O)).
    pub rr6: Option<f64>,
    /// I / ((I+P) + R + O).
    pub coop1: Option<f64>,
    /// (I+P) / ((I+P) + R + O).
    pub coop2: Option<f64>,
    /// I / ((I+P) + R).
    pub coop3: Option<f64>,
    /// (I+P) / ((I+P) + R).
    pub coop4: Option<f64>,
    /// R / ((I+P) + (R+NC+O) + (UH+UO)).
    pub ref1: Option<f64>,
    /// R / ((I+P) + (R+NC+O) + e(UH+UO)).
    pub ref2: Option<f64>,
    /// R / ((I+P) + (R+NC+O)).
    pub ref3: Option<f64>,
    /// ((I+P) + R + O) / ((I+P) + R + O + NC + (UH+UO)).
    pub con1: Option<f64>,
    /// ((I+P) + R + O) / ((I+P) + R + O + NC + e(UH+UO)).
    pub con2: Option<f64>,
    /// ((I+P) + R + O) / ((I+P) + R + O + NC).
    pub con3: Option<f64>,
}

impl Rates {
    /// The rates by AAPOR name, in order.
    pub fn named(&self) -> [(&'static str, Option<f64>); 16] {
        [
            ("RR1", self.rr1),
            ("RR2", self.rr2),
            ("RR3", self.rr3),
            ("RR4", self.rr4),
            ("RR5", self.rr5),
            ("RR6", self.rr6),
            ("COOP1", self.coop1),
            ("COOP2", self.coop2),
            ("COOP3", self.coop3),
            ("COOP4", self.coop4),
            ("REF1", self.ref1),
            ("REF2", self.ref2),
            ("REF3", self.ref3),
            ("CON1", self.con1),
            ("CON2", self.con2),
            ("CON3", self.con3),
        ]
    }
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// Every AAPOR rate of `c`, with `e` the estimated eligible share of the
/// unknown-eligibility cases.
pub fn rates(c: &DispositionCounts, e: f64) -> Rates {
    let f = |n: u64| n as f64;
    let i = f(c.complete);
    let ip = f(c.interviews());
    let r = f(c.refusal);
    let o = f(c.other);
    let nc = f(c.non_contact);
    let known = f(c.eligible());
    let unknown = f(c.unknown());
    let all = known + unknown;
    let estimated = known + e * unknown;
    let contacted = ip + r + o;
    Rates {
        rr1: ratio(i, all),
        rr2: ratio(ip, all),
        rr3: ratio(i, estimated),
        rr4: ratio(ip, estimated),
        rr5: ratio(i, known),
        rr6: ratio(ip, known),
        coop1: ratio(i, contacted),
        coop2: ratio(ip, contacted),
        coop3: ratio(i, ip + r),
        coop4: ratio(ip, ip + r),
        ref1: ratio(r, all),
        ref2: ratio(r, estimated),
        ref3: ratio(r, known),
        con1: ratio(contacted, contacted + nc + unknown),
        con2: ratio(contacted, contacted + nc + e * unknown),
        con3: ratio(contacted, contacted + nc),
    }
}

/// `e` as configured, estimated from the study's overall counts for
/// `proportional`: (I+P+R+NC+O) / (I+P+R+NC+O+NE), or 1 while no case's
/// eligibility is known (then RR3 = RR1).
pub fn eligibility(est: EligibilityEstimate, overall: &DispositionCounts) -> f64 {
    match est {
        EligibilityEstimate::Fixed(e) => e,
        EligibilityEstimate::Method(EligibilityMethod::Proportional) => {
            ratio(overall.eligible() as f64, (overall.eligible() + overall.not_eligible) as f64)
                .unwrap_or(1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// I=40, P=10, R=20, NC=15, O=5, UH=6, UO=4, NE=30, e=0.5, by hand:
    /// known eligible = 90, unknown = 10, all = 100, estimated = 95,
    /// contacted (I+P+R+O) = 75.
    fn mixed() -> DispositionCounts {
        DispositionCounts {
            complete: 40,
            partial: 10,
            refusal: 20,
            non_contact: 15,
            other: 5,
            unknown_household: 6,
            unknown_other: 4,
            not_eligible: 30,
        }
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a rate");
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn response_rates_match_hand_computed_values() {
        let r = rates(&mixed(), 0.5);
        close(r.rr1, 40.0 / 100.0);
        close(r.rr2, 50.0 / 100.0);
        close(r.rr3, 40.0 / 95.0);
        close(r.rr4, 50.0 / 95.0);
        close(r.rr5, 40.0 / 90.0);
        close(r.rr6, 50.0 / 90.0);
    }

    #[test]
    fn cooperation_refusal_and_contact_rates_match_hand_computed_values() {
        let r = rates(&mixed(), 0.5);
        close(r.coop1, 40.0 / 75.0);
        close(r.coop2, 50.0 / 75.0);
        close(r.coop3, 40.0 / 70.0);
        close(r.coop4, 50.0 / 70.0);
        close(r.ref1, 20.0 / 100.0);
        close(r.ref2, 20.0 / 95.0);
        close(r.ref3, 20.0 / 90.0);
        close(r.con1, 75.0 / 100.0);
        close(r.con2, 75.0 / 95.0);
        close(r.con3, 75.0 / 90.0);
    }

    #[test]
    fn e_moves_only_the_rates_that_use_it_between_its_bounds() {
        let c = mixed();
        let zero = rates(&c, 0.0);
        let one = rates(&c, 1.0);
        // e = 0: unknown cases all ineligible, so RR3 = RR5, REF2 = REF3, CON2 = CON3.
        assert_eq!(zero.rr3, zero.rr5);
        assert_eq!(zero.rr4, zero.rr6);
        assert_eq!(zero.ref2, zero.ref3);
        assert_eq!(zero.con2, zero.con3);
        // e = 1: all eligible, so RR3 = RR1, REF2 = REF1, CON2 = CON1.
        assert_eq!(one.rr3, one.rr1);
        assert_eq!(one.rr4, one.rr2);
        assert_eq!(one.ref2, one.ref1);
        assert_eq!(one.con2, one.con1);
        assert_eq!(zero.rr1, one.rr1);
        assert_eq!(zero.coop1, one.coop1);
        // e = 0.25 by hand: 90 + 2.5 = 92.5.
        close(rates(&c, 0.25).rr3, 40.0 / 92.5);
        close(rates(&c, 0.25).con2, 75.0 / 92.5);
    }

    #[test]
    fn proportional_e_is_the_eligible_share_of_known_cases() {
        // 90 known eligible, 30 not eligible: e = 90 / 120 = 0.75.
        let e = eligibility(EligibilityEstimate::default(), &mixed());
        close(Some(e), 0.75);
        close(rates(&mixed(), e).rr3, 40.0 / 97.5);
        assert_eq!(eligibility(EligibilityEstimate::Fixed(0.3), &mixed()), 0.3);
        assert_eq!(eligibility(EligibilityEstimate::default(), &DispositionCounts::default()), 1.0);
    }

    #[test]
    fn the_seed_fieldwork_gives_rr1_of_57_6_percent() {
        // 292 contacted: 121 completes, 11 refusals, 78 non-contacts, 82 ineligible.
        let c = DispositionCounts {
            complete: 121,
            refusal: 11,
            non_contact: 78,
            not_eligible: 82,
            ..Default::default()
        };
        assert_eq!(c.cases(), 292);
        let r = rates(&c, eligibility(EligibilityEstimate::default(), &c));
        close(r.rr1, 121.0 / 210.0);
        assert_eq!(format!("{:.1}", r.rr1.unwrap_or_default() * 100.0), "57.6");
        // No unknown eligibility: every RR equals RR1 or RR2 and they agree.
        assert_eq!(r.rr1, r.rr3);
        assert_eq!(r.rr1, r.rr5);
        close(r.coop1, 121.0 / 132.0);
        close(r.ref1, 11.0 / 210.0);
        close(r.con1, 132.0 / 210.0);
    }

    #[test]
    fn empty_denominators_give_no_rate() {
        let r = rates(&DispositionCounts { not_eligible: 3, ..Default::default() }, 0.5);
        assert_eq!(r, Rates::default());
    }

    #[test]
    fn counts_come_from_the_disposition_array_in_order() {
        let c = DispositionCounts::from([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!((c.complete, c.not_eligible, c.unknown(), c.cases()), (1, 8, 13, 36));
    }
}
