//! The NEWS2 chart (Royal College of Physicians, 2017): single-parameter scores and
//! aggregate risk.
//!
//! The National Early Warning Score 2 scores seven bedside observations 0–3 each and adds
//! them up; the total and the highest single score decide how urgently a clinician should
//! review the patient. This module holds the chart itself, as pure functions over one
//! value or one set of values. Keeping each patient's latest values and deciding when to
//! alert is the rule's ([`super`]).
//!
//! The chart prints integer bands (respiration rate 9–11, 12–20, …) but monitors report
//! fractions (20.5 /min, 36.05 °C), so the tables here extend every band to all real
//! numbers and draw the lines where the shipped red-flag rules draw them
//! (`respiratory_rate below 9` is the band ≤8, `above 24` the band ≥25): a value between
//! two printed bands belongs to the one further from normal. 20.5 /min scores as 21–24,
//! 35.05 °C as ≤35.0.
//!
//! SpO2 is scored on the patient's scale ([`Spo2Scale`], [`score_spo2`]). Scale 1 is the
//! default; Scale 2 (hypercapnic respiratory failure, target 88–92 %) is a clinical
//! decision per patient, which comes from the patient's context, and scores a reading by
//! whether the patient was on air or oxygen when it was taken.

use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::ops::RangeBounds;

use crate::vitals::Metric;

/// The seven NEWS2 parameters in chart order.
pub(crate) const PARAMETERS: [Metric; 7] = [
    Metric::RespiratoryRate,
    Metric::Spo2,
    Metric::SupplementalOxygen,
    Metric::SystolicBp,
    Metric::HeartRate,
    Metric::Consciousness,
    Metric::Temperature,
];

/// Position of `metric` in [`PARAMETERS`]; `None` for metrics NEWS2 does not score
/// (diastolic_bp).
pub(crate) const fn parameter_index(metric: Metric) -> Option<usize> {
    match metric {
        Metric::RespiratoryRate => Some(0),
        Metric::Spo2 => Some(1),
        Metric::SupplementalOxygen => Some(2),
        Metric::SystolicBp => Some(3),
        Metric::HeartRate => Some(4),
        Metric::Consciousness => Some(5),
        Metric::Temperature => Some(6),
        Metric::DiastolicBp => None,
    }
}

/// Which SpO2 scale a patient's chart uses (RCP NEWS2 chart 1). Scale 1 is the default;
/// Scale 2 (target 88–92 %, hypercapnic respiratory failure) is a clinical decision per
/// patient, recorded in the patient's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Spo2Scale {
    #[default]
    One,
    Two,
}

impl Spo2Scale {
    /// The scale's number, as alerts and context records write it.
    pub const fn number(self) -> u8 {
        match self {
            Spo2Scale::One => 1,
            Spo2Scale::Two => 2,
        }
    }

    /// The scale numbered `n`, when there is one.
    pub const fn from_number(n: u64) -> Option<Spo2Scale> {
        match n {
            1 => Some(Spo2Scale::One),
            2 => Some(Spo2Scale::Two),
            _ => None,
        }
    }
}

/// One row of a parameter's band table: values `v` between `lower` and `upper` (each
/// bound included or excluded, or absent at the ends of the chart) score `score`.
///
/// [`score`] looks values up in these very tables, so what the docs and tests show of
/// them is what scoring does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Band {
    pub(crate) lower: Bound<f64>,
    pub(crate) upper: Bound<f64>,
    pub(crate) score: u8,
}

impl Band {
    /// Whether `value` falls into this band. NaN falls into none.
    pub(crate) fn contains(&self, value: f64) -> bool {
        (self.lower, self.upper).contains(&value)
    }
}

const fn band(lower: Bound<f64>, upper: Bound<f64>, score: u8) -> Band {
    Band {
        lower,
        upper,
        score,
    }
}

/// Breaths per minute.
const RESPIRATORY_RATE: [Band; 5] = [
    band(Unbounded, Excluded(9.0), 3),       // ≤8
    band(Included(9.0), Excluded(12.0), 1),  // 9–11
    band(Included(12.0), Included(20.0), 0), // 12–20
    band(Excluded(20.0), Included(24.0), 2), // 21–24
    band(Excluded(24.0), Unbounded, 3),      // ≥25
];

/// Scale 1, percent.
const SPO2: [Band; 4] = [
    band(Unbounded, Excluded(92.0), 3),      // ≤91
    band(Included(92.0), Excluded(94.0), 2), // 92–93
    band(Included(94.0), Excluded(96.0), 1), // 94–95
    band(Included(96.0), Unbounded, 0),      // ≥96
];

/// Scale 2 on air, percent: below 88 as scale 2 on oxygen, 88 and above all score 0.
const SPO2_SCALE_2_AIR: [Band; 4] = [
    band(Unbounded, Excluded(84.0), 3),      // ≤83
    band(Included(84.0), Excluded(86.0), 2), // 84–85
    band(Included(86.0), Excluded(88.0), 1), // 86–87
    band(Included(88.0), Unbounded, 0),      // ≥88 (88–92, or ≥93 on air)
];

/// Scale 2 on oxygen, percent: above the 88–92 % target scores again, a value between
/// two printed bands going to the one further from normal (92.5 scores as 93–94).
const SPO2_SCALE_2_OXYGEN: [Band; 7] = [
    band(Unbounded, Excluded(84.0), 3),      // ≤83
    band(Included(84.0), Excluded(86.0), 2), // 84–85
    band(Included(86.0), Excluded(88.0), 1), // 86–87
    band(Included(88.0), Included(92.0), 0), // 88–92
    band(Excluded(92.0), Included(94.0), 1), // 93–94 on oxygen
    band(Excluded(94.0), Included(96.0), 2), // 95–96 on oxygen
    band(Excluded(96.0), Unbounded, 3),      // ≥97 on oxygen
];

/// 0 = air, 1 = oxygen. The decoder lets nothing else through; should another value
/// reach this table anyway, anything but a clear 0 scores as oxygen, the higher score, so
/// that a broken code errs towards a review rather than away from one.
const SUPPLEMENTAL_OXYGEN: [Band; 2] = [
    band(Unbounded, Included(0.0), 0), // air
    band(Excluded(0.0), Unbounded, 2), // oxygen
];

/// mmHg.
const SYSTOLIC_BP: [Band; 5] = [
    band(Unbounded, Excluded(91.0), 3),        // ≤90
    band(Included(91.0), Excluded(101.0), 2),  // 91–100
    band(Included(101.0), Excluded(111.0), 1), // 101–110
    band(Included(111.0), Included(219.0), 0), // 111–219
    band(Excluded(219.0), Unbounded, 3),       // ≥220
];

/// Pulse, beats per minute.
const HEART_RATE: [Band; 6] = [
    band(Unbounded, Excluded(41.0), 3),        // ≤40
    band(Included(41.0), Excluded(51.0), 1),   // 41–50
    band(Included(51.0), Included(90.0), 0),   // 51–90
    band(Excluded(90.0), Included(110.0), 1),  // 91–110
    band(Excluded(110.0), Included(130.0), 2), // 111–130
    band(Excluded(130.0), Unbounded, 3),       // ≥131
];

/// 0 = alert, 1 = new confusion, voice, pain or unresponsive (CVPU). As with oxygen,
/// anything but a clear 0 scores as the finding.
const CONSCIOUSNESS: [Band; 2] = [
    band(Unbounded, Included(0.0), 0), // alert
    band(Excluded(0.0), Unbounded, 3), // CVPU
];

/// Degrees Celsius.
const TEMPERATURE: [Band; 5] = [
    band(Unbounded, Excluded(35.1), 3),      // ≤35.0
    band(Included(35.1), Excluded(36.1), 1), // 35.1–36.0
    band(Included(36.1), Included(38.0), 0), // 36.1–38.0
    band(Excluded(38.0), Included(39.0), 1), // 38.1–39.0
    band(Excluded(39.0), Unbounded, 2),      // ≥39.1
];

/// The band table of `metric`, lowest values first; `None` when NEWS2 does not score it.
/// Each table covers every real number exactly once.
pub(crate) const fn bands(metric: Metric) -> Option<&'static [Band]> {
    match metric {
        Metric::RespiratoryRate => Some(&RESPIRATORY_RATE),
        Metric::Spo2 => Some(&SPO2),
        Metric::SupplementalOxygen => Some(&SUPPLEMENTAL_OXYGEN),
        Metric::SystolicBp => Some(&SYSTOLIC_BP),
        Metric::HeartRate => Some(&HEART_RATE),
        Metric::Consciousness => Some(&CONSCIOUSNESS),
        Metric::Temperature => Some(&TEMPERATURE),
        Metric::DiastolicBp => None,
    }
}

/// The SpO2 band table of `scale`; on scale 2, on air or on oxygen (scale 1 does not
/// depend on oxygen). Each covers every real number exactly once.
pub(crate) const fn spo2_bands(scale: Spo2Scale, on_oxygen: bool) -> &'static [Band] {
    match (scale, on_oxygen) {
        (Spo2Scale::One, _) => &SPO2,
        (Spo2Scale::Two, false) => &SPO2_SCALE_2_AIR,
        (Spo2Scale::Two, true) => &SPO2_SCALE_2_OXYGEN,
    }
}

/// Score 0..=3 of an SpO2 value (percent) on `scale`, for a patient on oxygen
/// (`on_oxygen`) or on air when it was taken; scale 1 ignores `on_oxygen`. `None` for
/// NaN, which no band holds.
pub fn score_spo2(scale: Spo2Scale, value: f64, on_oxygen: bool) -> Option<u8> {
    spo2_bands(scale, on_oxygen)
        .iter()
        .find(|band| band.contains(value))
        .map(|band| band.score)
}

/// Score 0..=3 of one value (SpO2 on scale 1: [`score_spo2`] for another). `None` when NEWS2 does not score
/// `metric`, and for NaN, which no band holds (the decoder never lets one through).
pub fn score(metric: Metric, value: f64) -> Option<u8> {
    bands(metric)?
        .iter()
        .find(|band| band.contains(value))
        .map(|band| band.score)
}

/// Clinical risk from the aggregate and the highest single-parameter score.
///
/// The RCP chart names a single 3 with an aggregate of 0–4 "low–medium"; it calls for an
/// urgent ward-based response, as the shipped red-flag rules do at `medium` severity, so
/// it counts as [`Risk::Medium`] here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Risk {
    /// Aggregate 0–4 without a single 3: ward-based response.
    Low,
    /// Aggregate 5–6, or a single parameter scoring 3: urgent ward-based response.
    Medium,
    /// Aggregate 7 or more: emergency response.
    High,
}

/// The aggregate from which risk is high (emergency response).
pub(crate) const HIGH_AT: u8 = 7;
/// The aggregate from which risk is medium (urgent ward-based response).
pub(crate) const MEDIUM_AT: u8 = 5;
/// A single parameter's score that alone makes risk medium (a red flag).
pub(crate) const RED_FLAG_SCORE: u8 = 3;

/// A running NEWS2 total and the highest single-parameter score that went into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Aggregate {
    pub(crate) total: u8,
    pub(crate) max_single: u8,
}

impl Aggregate {
    /// Adds one scored parameter.
    pub(crate) fn add(&mut self, score: u8) {
        // Seven scores of at most 3 cannot overflow; saturate rather than trust the caller.
        self.total = self.total.saturating_add(score);
        self.max_single = self.max_single.max(score);
    }

    /// RCP thresholds: High when total >= 7; Medium when total 5-6 or any single
    /// parameter scores 3; else Low.
    pub(crate) fn risk(&self) -> Risk {
        if self.total >= HIGH_AT {
            Risk::High
        } else if self.total >= MEDIUM_AT || self.max_single >= RED_FLAG_SCORE {
            Risk::Medium
        } else {
            Risk::Low
        }
    }

    /// What put the chart in its band, as an alert's `threshold`: the aggregate that
    /// starts the band (7, 5), or the single parameter's 3 of a medium aggregate below 5.
    pub(crate) fn band_threshold(&self) -> f64 {
        match self.risk() {
            Risk::High => f64::from(HIGH_AT),
            _ if self.total >= MEDIUM_AT => f64::from(MEDIUM_AT),
            _ => f64::from(RED_FLAG_SCORE),
        }
    }
}

/// Aggregate of the given (metric, value) pairs; metrics NEWS2 does not score are
/// ignored. Every pair counts, so pass one value per parameter (the current one): a
/// parameter given twice is scored twice.
#[cfg(test)]
pub(crate) fn aggregate(values: impl IntoIterator<Item = (Metric, f64)>) -> Aggregate {
    let mut total = Aggregate::default();
    for score in values.into_iter().filter_map(|(m, v)| score(m, v)) {
        total.add(score);
    }
    total
}

#[cfg(test)]
mod tests {
    //! Band edges and worked examples against the RCP NEWS2 chart (Royal College of
    //! Physicians, National Early Warning Score (NEWS) 2, 2017, chart 1: "The NEWS
    //! scoring system").

    use super::*;
    use crate::rules::RuleSet;
    use crate::vitals::Observation;
    use Metric::*;
    use proptest::prelude::*;

    /// Per parameter, values on both sides of every printed band boundary, halfway
    /// between two printed bands, and at the ends of the plausible range, with the
    /// chart's score for each.
    const EDGES: [(Metric, &[(f64, u8)]); 7] = [
        (
            RespiratoryRate,
            &[
                (0.0, 3),
                (8.0, 3),
                (8.5, 3),
                (9.0, 1),
                (11.0, 1),
                (11.5, 1),
                (12.0, 0),
                (20.0, 0),
                (20.5, 2),
                (21.0, 2),
                (24.0, 2),
                (24.5, 3),
                (25.0, 3),
                (100.0, 3),
            ],
        ),
        (
            Spo2,
            &[
                (0.0, 3),
                (91.0, 3),
                (91.5, 3),
                (92.0, 2),
                (93.0, 2),
                (93.5, 2),
                (94.0, 1),
                (95.0, 1),
                (95.5, 1),
                (96.0, 0),
                (100.0, 0),
            ],
        ),
        (SupplementalOxygen, &[(0.0, 0), (1.0, 2)]),
        (
            SystolicBp,
            &[
                (0.0, 3),
                (90.0, 3),
                (90.5, 3),
                (91.0, 2),
                (100.0, 2),
                (100.5, 2),
                (101.0, 1),
                (110.0, 1),
                (110.5, 1),
                (111.0, 0),
                (219.0, 0),
                (219.5, 3),
                (220.0, 3),
                (300.0, 3),
            ],
        ),
        (
            HeartRate,
            &[
                (0.0, 3),
                (40.0, 3),
                (40.5, 3),
                (41.0, 1),
                (50.0, 1),
                (50.5, 1),
                (51.0, 0),
                (90.0, 0),
                (90.5, 1),
                (91.0, 1),
                (110.0, 1),
                (110.5, 2),
                (111.0, 2),
                (130.0, 2),
                (130.5, 3),
                (131.0, 3),
                (300.0, 3),
            ],
        ),
        (Consciousness, &[(0.0, 0), (1.0, 3)]),
        (
            Temperature,
            &[
                (25.0, 3),
                (35.0, 3),
                (35.05, 3),
                (35.1, 1),
                (36.0, 1),
                (36.05, 1),
                (36.1, 0),
                (38.0, 0),
                (38.05, 1),
                (38.1, 1),
                (39.0, 1),
                (39.05, 2),
                (39.1, 2),
                (45.0, 2),
            ],
        ),
    ];

    /// SpO2 scale 2: (value, score on air, score on oxygen), both sides of every printed
    /// boundary and halfway between two printed bands.
    const SCALE_2_EDGES: &[(f64, u8, u8)] = &[
        (0.0, 3, 3),
        (83.0, 3, 3),
        (83.5, 3, 3),
        (84.0, 2, 2),
        (85.0, 2, 2),
        (85.5, 2, 2),
        (86.0, 1, 1),
        (87.0, 1, 1),
        (87.5, 1, 1),
        (88.0, 0, 0),
        (90.0, 0, 0),
        (92.0, 0, 0),
        (92.5, 0, 1),
        (93.0, 0, 1),
        (94.0, 0, 1),
        (94.5, 0, 2),
        (95.0, 0, 2),
        (96.0, 0, 2),
        (96.5, 0, 3),
        (97.0, 0, 3),
        (100.0, 0, 3),
    ];

    #[test]
    fn every_scale_2_edge_scores_as_the_chart_says() {
        let mut wrong = Vec::new();
        for &(value, air, oxygen) in SCALE_2_EDGES {
            for (on_oxygen, expected) in [(false, air), (true, oxygen)] {
                let got = score_spo2(Spo2Scale::Two, value, on_oxygen);
                if got != Some(expected) {
                    wrong.push(format!(
                        "scale 2 {value} oxygen={on_oxygen}: {got:?}, chart says {expected}"
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn scale_1_ignores_oxygen_and_is_the_spo2_table() {
        let (_, cases) = EDGES[1];
        assert_eq!(EDGES[1].0, Spo2);
        for &(value, expected) in cases {
            for on_oxygen in [false, true] {
                assert_eq!(
                    score_spo2(Spo2Scale::One, value, on_oxygen),
                    Some(expected),
                    "{value} oxygen={on_oxygen}"
                );
            }
        }
    }

    #[test]
    fn scale_2_values_as_decoded_from_json_score_like_the_literals() {
        for &(value, air, oxygen) in SCALE_2_EDGES {
            let parsed: f64 = serde_json::from_str(&value.to_string()).unwrap();
            assert_eq!(
                score_spo2(Spo2Scale::Two, parsed, false),
                Some(air),
                "{value}"
            );
            assert_eq!(
                score_spo2(Spo2Scale::Two, parsed, true),
                Some(oxygen),
                "{value}"
            );
        }
    }

    #[test]
    fn scale_2_nan_scores_nothing() {
        for on_oxygen in [false, true] {
            for scale in [Spo2Scale::One, Spo2Scale::Two] {
                assert_eq!(score_spo2(scale, f64::NAN, on_oxygen), None);
            }
        }
    }

    #[test]
    fn every_band_edge_scores_as_the_chart_says() {
        let mut wrong = Vec::new();
        for (metric, cases) in EDGES {
            for &(value, expected) in cases {
                let got = score(metric, value);
                if got != Some(expected) {
                    wrong.push(format!("{metric} {value}: {got:?}, chart says {expected}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // Every parameter has its edges listed, in chart order.
        assert_eq!(EDGES.map(|(m, _)| m), PARAMETERS);
    }

    #[test]
    fn values_as_decoded_from_json_score_like_the_literals() {
        // A monitor's "35.1" must land where the table's 35.1 is, not one ULP off it.
        for (metric, cases) in EDGES {
            for &(value, expected) in cases {
                let parsed: f64 = serde_json::from_str(&value.to_string()).unwrap();
                assert_eq!(score(metric, parsed), Some(expected), "{metric} {value}");
            }
        }
    }

    #[test]
    fn diastolic_bp_is_not_scored() {
        assert_eq!(parameter_index(DiastolicBp), None);
        assert_eq!(bands(DiastolicBp), None);
        assert_eq!(score(DiastolicBp, 40.0), None);
        assert_eq!(aggregate([(DiastolicBp, 40.0)]), Aggregate::default());
    }

    #[test]
    fn parameter_index_is_the_position_in_parameters() {
        for (i, metric) in PARAMETERS.into_iter().enumerate() {
            assert_eq!(parameter_index(metric), Some(i), "{metric}");
        }
        for metric in Metric::ALL {
            assert_eq!(
                parameter_index(metric).is_some(),
                PARAMETERS.contains(&metric),
                "{metric}"
            );
        }
    }

    #[test]
    fn nan_scores_nothing() {
        for metric in PARAMETERS {
            assert_eq!(score(metric, f64::NAN), None, "{metric}");
        }
    }

    /// Each table covers the real line once: open at both ends, each band starting where
    /// the one before ends with exactly one of the two holding the boundary.
    fn check_contiguous(metric: Metric, table: &[Band]) {
        let (first, last) = (table[0], table[table.len() - 1]);
        assert_eq!(
            first.lower, Unbounded,
            "{metric}: lowest band is bounded below"
        );
        assert_eq!(
            last.upper, Unbounded,
            "{metric}: highest band is bounded above"
        );
        for pair in table.windows(2) {
            let (below, above) = (pair[0], pair[1]);
            let joint = match (below.upper, above.lower) {
                (Excluded(a), Included(b)) | (Included(a), Excluded(b)) => a == b,
                _ => false,
            };
            assert!(
                joint,
                "{metric}: gap or overlap between {below:?} and {above:?}"
            );
        }
        for band in table {
            assert!(band.score <= 3, "{metric}: {band:?}");
        }
    }

    #[test]
    fn band_tables_are_contiguous() {
        for metric in PARAMETERS {
            check_contiguous(metric, bands(metric).unwrap());
        }
        check_contiguous(Spo2, spo2_bands(Spo2Scale::Two, false));
        check_contiguous(Spo2, spo2_bands(Spo2Scale::Two, true));
        assert_eq!(spo2_bands(Spo2Scale::One, true), bands(Spo2).unwrap());
    }

    #[test]
    fn score_3_is_exactly_where_the_shipped_red_flags_fire() {
        // The red-flag rules (config/rules.toml) and the band tables are written
        // separately; a sweep in tenths over each plausible range keeps them in step.
        // Exceptions: the chart's temperature ≥39.1 scores 2, yet the shipped set flags
        // it (`temperature_high`); consciousness has no red-flag rule.
        let rules = RuleSet::news2_red_flags();
        for metric in PARAMETERS {
            let (min, max) = metric.plausible_range();
            for tenth in (min * 10.0) as i64..=(max * 10.0) as i64 {
                let value = tenth as f64 / 10.0;
                let obs = Observation {
                    patient_id: "P-1".into(),
                    metric,
                    value,
                    timestamp: 0,
                    unit: None,
                    device_id: None,
                    site_id: None,
                };
                let flagged = rules.evaluate(&obs).next().is_some();
                let expected = match (metric, score(metric, value)) {
                    (Temperature, Some(2)) => true,
                    (Consciousness, _) => false,
                    (_, s) => s == Some(3),
                };
                assert_eq!(flagged, expected, "{metric} {value}");
            }
        }
    }

    #[test]
    fn risk_thresholds() {
        for (total, max_single, risk) in [
            (0, 0, Risk::Low),
            (4, 2, Risk::Low),
            (3, 3, Risk::Medium),
            (4, 3, Risk::Medium),
            (5, 1, Risk::Medium),
            (6, 2, Risk::Medium),
            (6, 3, Risk::Medium),
            (7, 2, Risk::High),
            (7, 3, Risk::High),
            (20, 3, Risk::High),
        ] {
            let agg = Aggregate { total, max_single };
            assert_eq!(agg.risk(), risk, "{agg:?}");
        }
        assert!(Risk::Low < Risk::Medium && Risk::Medium < Risk::High);
    }

    // Worked examples: each chart as a clinician reads it, one parameter a line with its
    // band and score (RCP NEWS2 2017, chart 1).

    #[test]
    fn healthy_adult_scores_0_low() {
        let chart = [
            (RespiratoryRate, 16.0),   // 12–20 /min        0
            (Spo2, 97.0),              // ≥96 % (scale 1)   0
            (SupplementalOxygen, 0.0), // air               0
            (SystolicBp, 125.0),       // 111–219 mmHg      0
            (HeartRate, 72.0),         // 51–90 /min        0
            (Consciousness, 0.0),      // alert             0
            (Temperature, 36.8),       // 36.1–38.0 °C      0
        ];
        let agg = aggregate(chart);
        assert_eq!(
            agg,
            Aggregate {
                total: 0,
                max_single: 0
            }
        );
        assert_eq!(agg.risk(), Risk::Low);
    }

    #[test]
    fn aggregate_4_without_a_single_3_is_low() {
        let chart = [
            (RespiratoryRate, 21.0),   // 21–24 /min        2
            (Spo2, 95.0),              // 94–95 %           1
            (SupplementalOxygen, 0.0), // air               0
            (SystolicBp, 130.0),       // 111–219 mmHg      0
            (HeartRate, 92.0),         // 91–110 /min       1
            (Consciousness, 0.0),      // alert             0
            (Temperature, 37.2),       // 36.1–38.0 °C      0
        ];
        let agg = aggregate(chart);
        assert_eq!(
            agg,
            Aggregate {
                total: 4,
                max_single: 2
            }
        );
        assert_eq!(agg.risk(), Risk::Low);
    }

    #[test]
    fn aggregate_5_is_medium() {
        let chart = [
            (RespiratoryRate, 22.0),   // 21–24 /min        2
            (Spo2, 95.0),              // 94–95 %           1
            (SupplementalOxygen, 0.0), // air               0
            (SystolicBp, 105.0),       // 101–110 mmHg      1
            (HeartRate, 95.0),         // 91–110 /min       1
            (Consciousness, 0.0),      // alert             0
            (Temperature, 37.5),       // 36.1–38.0 °C      0
        ];
        let agg = aggregate(chart);
        assert_eq!(
            agg,
            Aggregate {
                total: 5,
                max_single: 2
            }
        );
        assert_eq!(agg.risk(), Risk::Medium);
    }

    #[test]
    fn aggregate_7_is_high() {
        let chart = [
            (RespiratoryRate, 23.0),   // 21–24 /min        2
            (Spo2, 93.0),              // 92–93 %           2
            (SupplementalOxygen, 1.0), // oxygen            2
            (SystolicBp, 115.0),       // 111–219 mmHg      0
            (HeartRate, 105.0),        // 91–110 /min       1
            (Consciousness, 0.0),      // alert             0
            (Temperature, 37.0),       // 36.1–38.0 °C      0
        ];
        let agg = aggregate(chart);
        assert_eq!(
            agg,
            Aggregate {
                total: 7,
                max_single: 2
            }
        );
        assert_eq!(agg.risk(), Risk::High);
    }

    #[test]
    fn a_single_3_with_a_low_aggregate_is_medium() {
        let chart = [
            (RespiratoryRate, 26.0),   // ≥25 /min          3
            (Spo2, 97.0),              // ≥96 % (scale 1)   0
            (SupplementalOxygen, 0.0), // air               0
            (SystolicBp, 125.0),       // 111–219 mmHg      0
            (HeartRate, 72.0),         // 51–90 /min        0
            (Consciousness, 0.0),      // alert             0
            (Temperature, 36.8),       // 36.1–38.0 °C      0
        ];
        let agg = aggregate(chart);
        assert_eq!(
            agg,
            Aggregate {
                total: 3,
                max_single: 3
            }
        );
        assert_eq!(agg.risk(), Risk::Medium);
    }

    #[test]
    fn new_confusion_alone_is_medium() {
        let chart = [
            (RespiratoryRate, 18.0),   // 12–20 /min        0
            (Spo2, 96.0),              // ≥96 % (scale 1)   0
            (SupplementalOxygen, 0.0), // air               0
            (SystolicBp, 140.0),       // 111–219 mmHg      0
            (HeartRate, 80.0),         // 51–90 /min        0
            (Consciousness, 1.0),      // new confusion     3
            (Temperature, 37.0),       // 36.1–38.0 °C      0
            (DiastolicBp, 40.0),       // not on the chart  -
        ];
        let agg = aggregate(chart);
        assert_eq!(
            agg,
            Aggregate {
                total: 3,
                max_single: 3
            }
        );
        assert_eq!(agg.risk(), Risk::Medium);
    }

    fn plausible_value(metric: Metric) -> BoxedStrategy<f64> {
        let (min, max) = metric.plausible_range();
        if metric.is_binary() {
            prop_oneof![Just(min), Just(max)].boxed()
        } else {
            // Readings to a tenth (what monitors report) and arbitrary doubles.
            prop_oneof![
                ((min * 10.0) as i64..=(max * 10.0) as i64).prop_map(|n| n as f64 / 10.0),
                min..=max,
            ]
            .boxed()
        }
    }

    fn reading() -> impl Strategy<Value = (Metric, f64)> {
        prop::sample::select(Metric::ALL.to_vec()).prop_flat_map(|m| (Just(m), plausible_value(m)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn score_is_total_and_at_most_3_on_plausible_ranges((metric, value) in reading()) {
            match score(metric, value) {
                Some(s) => prop_assert!(s <= 3, "{} {} scored {}", metric, value, s),
                None => prop_assert_eq!(metric, DiastolicBp),
            }
        }

        #[test]
        fn exactly_one_band_holds_any_number(
            metric in prop::sample::select(PARAMETERS.to_vec()),
            value in prop_oneof![
                any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
                -50.0..350.0f64,
            ],
        ) {
            let holding = bands(metric).unwrap().iter().filter(|b| b.contains(value)).count();
            prop_assert_eq!(holding, 1, "{} {}", metric, value);
        }

        #[test]
        fn exactly_one_scale_2_band_holds_any_number(
            on_oxygen in any::<bool>(),
            value in prop_oneof![
                any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
                0.0..100.0f64,
            ],
        ) {
            let table = spo2_bands(Spo2Scale::Two, on_oxygen);
            let holding = table.iter().filter(|b| b.contains(value)).count();
            prop_assert_eq!(holding, 1, "{} oxygen={}", value, on_oxygen);
        }

        #[test]
        fn aggregate_adds_the_single_scores(chart in prop::collection::vec(reading(), 0..10)) {
            let scores: Vec<u8> = chart.iter().filter_map(|&(m, v)| score(m, v)).collect();
            let agg = aggregate(chart.iter().copied());
            prop_assert_eq!(u32::from(agg.total), scores.iter().map(|&s| u32::from(s)).sum::<u32>());
            prop_assert_eq!(agg.max_single, scores.iter().copied().max().unwrap_or(0));
        }
    }
}
