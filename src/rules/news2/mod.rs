//! The NEWS2 rule kind: the aggregate early-warning score over each patient's latest
//! reading of every parameter, alerting `news2_medium` and `news2_high`. The chart's
//! bands and risk are [`score`]'s (pure); this module holds the rule ([`News2Rule`]), its
//! `[news2]` table in the rules file ([`parse`]), and a patient's chart and episode with
//! what one reading does to them ([`News2State::observe_on`]), on the patient's SpO2
//! scale.

mod score;

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub use score::*;

use super::alarm::{Alarm, Episode, bit, open_or_repeat};
use super::event::{Breakdown, Event, Scored, Severity};
use super::parse::{MAX_SPAN_SECS, RulesError, Source, alarm, secs_to_ms};
use crate::vitals::Metric;

/// The NEWS2 aggregate-score rule: alerts `news2_medium` and `news2_high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct News2Rule {
    /// A parameter's latest observation counts while it is at most this old, relative to
    /// the observation being evaluated (observation time, milliseconds).
    pub(crate) max_age_ms: i64,
    /// Cooldown and re-arming; `clear_margin` is in score points below the medium band.
    pub(crate) alarm: Alarm,
    /// Hysteresis of the single-parameter trigger, per parameter in
    /// [`PARAMETERS`] order and in the parameter's unit: a parameter that scores
    /// 3 keeps a `news2_medium` episode open until its value is this far back inside the
    /// next band, as `clear_margin` does for a threshold rule. 0 for the coded
    /// parameters (oxygen, consciousness), whose values have nothing in between.
    pub(crate) single_clear_margin: [f64; 7],
}

impl News2Rule {
    pub(crate) const MEDIUM_ID: &str = "news2_medium";
    pub(crate) const HIGH_ID: &str = "news2_high";

    /// The rule id of a NEWS2 alert at `severity`: `news2_high` or `news2_medium`.
    pub(crate) const fn id(severity: Severity) -> &'static str {
        match severity {
            Severity::High => Self::HIGH_ID,
            Severity::Medium | Severity::Low => Self::MEDIUM_ID,
        }
    }

    /// The margin of `metric`'s single-parameter 3 (0 when NEWS2 does not score it).
    #[cfg(test)]
    pub(crate) fn single_clear_margin(&self, metric: Metric) -> f64 {
        parameter_index(metric).map_or(0.0, |i| self.single_clear_margin[i])
    }
}

/// `[news2] single_clear_margin` when the file does not give one, in
/// [`PARAMETERS`] order: the `clear_margin`s of the shipped red-flag rules, which
/// are NEWS2's 3-bands (for respiration and pulse the wider of their two sides).
pub(crate) const DEFAULT_SINGLE_CLEAR_MARGIN: [f64; 7] = [2.0, 1.0, 0.0, 5.0, 5.0, 0.0, 0.2];

/// NEWS2 freshness window when `[news2]` does not set `max_age_secs`.
pub(crate) const DEFAULT_NEWS2_MAX_AGE_SECS: u64 = 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNews2 {
    enabled: Option<bool>,
    max_age_secs: Option<Spanned<u64>>,
    // Not `#[serde(flatten)]` with RawAlarm: flattening loses spans and unknown-key errors.
    cooldown_secs: Option<Spanned<u64>>,
    clear_margin: Option<Spanned<f64>>,
    emit_resolved: Option<Spanned<bool>>,
    /// Metric name → margin; metrics not given keep their default.
    single_clear_margin: Option<BTreeMap<Spanned<String>, Spanned<f64>>>,
}

/// The `[news2]` table over the `[defaults]` alarm: the rule, or `None` when the table is
/// absent or says `enabled = false`.
pub(super) fn parse(
    raw: Option<RawNews2>,
    defaults: &Alarm,
    src: &Source<'_>,
) -> Result<Option<News2Rule>, RulesError> {
    let n = match raw {
        Some(n) if n.enabled != Some(false) => n,
        _ => return Ok(None),
    };
    let max_age_secs = match n.max_age_secs {
        Some(age) => {
            let secs = *age.get_ref();
            if secs == 0 || secs > MAX_SPAN_SECS {
                return Err(src.table_error(
                    "news2",
                    age.span(),
                    format!("`max_age_secs` must be 1 to {MAX_SPAN_SECS}"),
                ));
            }
            secs
        }
        None => DEFAULT_NEWS2_MAX_AGE_SECS,
    };
    let margin_span = n.clear_margin.as_ref().map(|m| m.span());
    // The margin is in score points here, not a vital sign's unit: it is not
    // taken from [defaults].
    let news2_defaults = Alarm {
        clear_margin: 0.0,
        ..*defaults
    };
    let alarm = alarm(
        (n.cooldown_secs, n.clear_margin, n.emit_resolved),
        &news2_defaults,
    )
    .map_err(|(span, m)| src.table_error("news2", span, m))?;
    // The medium band starts at an aggregate of 5: a margin past 4 could
    // never clear.
    if alarm.clear_margin > 4.0 || alarm.clear_margin.fract() != 0.0 {
        let span = margin_span.unwrap_or(0..0);
        return Err(src.table_error(
            "news2",
            span,
            "`clear_margin` is in whole score points, 0 to 4".into(),
        ));
    }
    let mut single_clear_margin = DEFAULT_SINGLE_CLEAR_MARGIN;
    for (metric, margin) in n.single_clear_margin.into_iter().flatten() {
        let name = metric.get_ref();
        let scored = Metric::from_wire(name)
            .filter(|m| !m.is_binary())
            .and_then(parameter_index);
        let Some(i) = scored else {
            return Err(src.table_error(
                "news2",
                metric.span(),
                format!(
                    "`single_clear_margin` has no parameter \"{name}\" (NEWS2 measures: {})",
                    PARAMETERS
                        .iter()
                        .filter(|m| !m.is_binary())
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let v = *margin.get_ref();
        if !v.is_finite() || v < 0.0 {
            return Err(src.table_error(
                "news2",
                margin.span(),
                format!("`single_clear_margin.{name}` must be a finite number, 0 or more"),
            ));
        }
        single_clear_margin[i] = v;
    }
    Ok(Some(News2Rule {
        max_age_ms: secs_to_ms(max_age_secs),
        alarm,
        single_clear_margin,
    }))
}

const SPO2: usize = match parameter_index(Metric::Spo2) {
    Some(i) => i,
    None => panic!("SpO2 is a NEWS2 parameter"),
};
const OXYGEN: usize = match parameter_index(Metric::SupplementalOxygen) {
    Some(i) => i,
    None => panic!("supplemental oxygen is a NEWS2 parameter"),
};

/// The latest observation of one NEWS2 parameter.
#[derive(Debug, Clone, Copy)]
pub(super) struct Latest {
    value: f64,
    /// `i64::MIN` when never observed.
    at: i64,
    /// Its NEWS2 score (SpO2 on scale 1), computed once when the reading is stored.
    score: u8,
    /// Its score on SpO2 scale 2 (for other parameters, `score`): the patient's scale
    /// may change between readings, so a stored reading is scored on both.
    score2: u8,
    /// SpO2: whether the patient was on oxygen when it was taken, what scale 2 scores
    /// it by (the hysteresis scores value ± margin again). False for other parameters.
    on_oxygen: bool,
}

impl Latest {
    const NONE: Latest = Latest {
        value: 0.0,
        at: i64::MIN,
        score: 0,
        score2: 0,
        on_oxygen: false,
    };

    /// A reading of `metric` at `at`; `on_oxygen` only matters for SpO2.
    fn new(metric: Metric, value: f64, at: i64, on_oxygen: bool) -> Latest {
        let spo2 = metric == Metric::Spo2;
        let score = score(metric, value).unwrap_or(0);
        Latest {
            value,
            at,
            score,
            score2: if spo2 {
                score_spo2(Spo2Scale::Two, value, on_oxygen).unwrap_or(0)
            } else {
                score
            },
            on_oxygen: spo2 && on_oxygen,
        }
    }

    /// Its score on the patient's SpO2 `scale`.
    fn score_on(&self, scale: Spo2Scale) -> u8 {
        match scale {
            Spo2Scale::One => self.score,
            Spo2Scale::Two => self.score2,
        }
    }

    /// The score `value` would have in this reading's place, on `scale`.
    fn rescore(&self, metric: Metric, value: f64, scale: Spo2Scale) -> Option<u8> {
        if metric == Metric::Spo2 {
            score_spo2(scale, value, self.on_oxygen)
        } else {
            score(metric, value)
        }
    }
}

/// Whether the patient was on oxygen at time `t`, as far as the chart knows: its
/// supplemental-oxygen reading says oxygen (value > 0) and was taken at or before `t`.
/// The chart keeps only the latest oxygen reading, so when that one is later than `t`
/// the status at `t` is unknown and taken as air (the lower scale 2 score above 92 %).
fn on_oxygen_at(latest: &[Latest; 7], t: i64) -> bool {
    let o2 = &latest[OXYGEN];
    o2.at != i64::MIN && o2.at <= t && o2.value > 0.0
}

/// One patient's NEWS2 memory: the latest reading of each parameter and the open
/// episode, if any.
#[derive(Debug, Clone, Copy)]
pub(super) struct News2State {
    latest: [Latest; 7],
    episode: Option<Episode>,
}

impl News2State {
    pub(crate) const NEW: News2State = News2State {
        latest: [Latest::NONE; 7],
        episode: None,
    };

    /// Forgets the open episode (the rule was switched off), keeping the chart.
    pub(crate) fn end_episode(&mut self) {
        self.episode = None;
    }

    /// The chart (each parameter's latest value and observation time) and the open
    /// episode, for the state topic.
    pub(crate) fn parts(&self) -> ([Option<(f64, i64)>; 7], Option<Episode>) {
        (
            self.latest
                .map(|l| (l.at != i64::MIN).then_some((l.value, l.at))),
            self.episode,
        )
    }

    /// The state [`News2State::parts`] described; scores are computed again.
    ///
    /// The snapshot holds no oxygen status per SpO2 reading, so SpO2 is scored with the
    /// chart's own oxygen reading: oxygen when that was taken at or before the SpO2
    /// reading and says oxygen, else air. This is an approximation: an oxygen reading
    /// taken after the SpO2 one hides the status the SpO2 reading was scored with
    /// (oxygen then, air assumed now), until the next SpO2 reading. Only scale 2 above
    /// 92 % depends on it.
    pub(crate) fn from_parts(chart: [Option<(f64, i64)>; 7], episode: Option<Episode>) -> Self {
        let oxygen = chart[OXYGEN];
        let mut latest = [Latest::NONE; 7];
        for ((slot, reading), metric) in latest.iter_mut().zip(chart).zip(PARAMETERS) {
            if let Some((value, at)) = reading {
                let on_oxygen = oxygen.is_some_and(|(o2, o2_at)| o2_at <= at && o2 > 0.0);
                *slot = Latest::new(metric, value, at, on_oxygen);
            }
        }
        News2State { latest, episode }
    }

    /// A reading of parameter `param` (its [`PARAMETERS`] index) at observation time `t`
    /// of a patient whose chart uses SpO2 `scale` (the patient's current scale: the
    /// aggregate, the breakdown and the hysteresis score SpO2 on it): the chart updated,
    /// then evaluated; appends what to publish.
    ///
    /// An SpO2 reading is stored with the oxygen status it was taken under: the latest
    /// supplemental-oxygen reading taken at or before it (value > 0: oxygen), air when
    /// there is none. A later oxygen reading does not change it.
    pub(crate) fn observe_on(
        &mut self,
        rule: &News2Rule,
        param: usize,
        reading: (Metric, f64),
        t: i64,
        scale: Spo2Scale,
        out: &mut Vec<Event>,
    ) {
        let (metric, value) = reading;
        // The latest by observation time, not by arrival.
        if t >= self.latest[param].at {
            let on_oxygen = metric == Metric::Spo2 && on_oxygen_at(&self.latest, t);
            self.latest[param] = Latest::new(metric, value, t, on_oxygen);
            // A new latest oxygen reading taken at or before the SpO2 reading is the
            // status that reading was taken under (the same one a restore uses).
            let spo2 = self.latest[SPO2];
            if param == OXYGEN && spo2.at != i64::MIN && t <= spo2.at {
                self.latest[SPO2] = Latest::new(Metric::Spo2, spo2.value, spo2.at, value > 0.0);
            }
        }
        let chart = Chart {
            latest: &self.latest,
            t,
            max_age_ms: rule.max_age_ms,
            scale,
        };
        step(&mut self.episode, rule, &chart, out);
    }
}

/// A patient's NEWS2 chart as of observation time `t`.
struct Chart<'a> {
    latest: &'a [Latest; 7],
    t: i64,
    max_age_ms: i64,
    /// The patient's SpO2 scale.
    scale: Spo2Scale,
}

impl Chart<'_> {
    fn stale(&self, l: &Latest) -> bool {
        self.t.saturating_sub(l.at) > self.max_age_ms
    }

    /// The aggregate of the fresh parameters, and whether any observed one is stale.
    /// Evaluated for every reading: scores were computed when the readings were stored.
    fn aggregate(&self) -> (Aggregate, bool) {
        let mut aggregate = Aggregate::default();
        let mut any_stale = false;
        for l in self.latest.iter().filter(|l| l.at != i64::MIN) {
            if self.stale(l) {
                any_stale = true;
            } else {
                aggregate.add(l.score_on(self.scale));
            }
        }
        (aggregate, any_stale)
    }

    /// Whether a fresh parameter still holds the single-parameter trigger: it scores 3,
    /// or its value is within its `single_clear_margin` of a 3-band. Only asked while an
    /// episode is open (the hysteresis of its end), never to open one.
    fn holds_single_three(&self, rule: &News2Rule) -> bool {
        self.latest
            .iter()
            .zip(PARAMETERS)
            .zip(rule.single_clear_margin)
            .any(|((l, metric), margin)| {
                l.at != i64::MIN
                    && !self.stale(l)
                    && (l.score_on(self.scale) >= 3
                        || (margin > 0.0
                            && [l.value - margin, l.value + margin]
                                .into_iter()
                                .any(|v| l.rescore(metric, v, self.scale) == Some(3))))
            })
    }

    /// The full breakdown, built only for an event to publish.
    fn breakdown(&self, aggregate: Aggregate) -> Breakdown {
        let parameters = self.latest.map(|l| {
            (l.at != i64::MIN).then(|| Scored {
                value: l.value,
                observed_at: l.at,
                score: l.score_on(self.scale),
                stale: self.stale(&l),
            })
        });
        Breakdown {
            aggregate,
            parameters,
        }
    }
}

/// One evaluation of the NEWS2 aggregate through its episode; appends what to publish.
fn step(episode: &mut Option<Episode>, rule: &News2Rule, chart: &Chart<'_>, out: &mut Vec<Event>) {
    let (aggregate, any_stale) = chart.aggregate();
    let t = chart.t;
    let severity = match aggregate.risk() {
        Risk::High => Some(Severity::High),
        Risk::Medium => Some(Severity::Medium),
        Risk::Low => None,
    };
    if let Some(severity) = severity {
        if let Some(step) = open_or_repeat(episode, severity, t, &rule.alarm) {
            // A reminder reports the current severity, which may be below the
            // episode's highest.
            out.push(Event::News2 {
                severity,
                step,
                breakdown: chart.breakdown(aggregate),
            });
        }
        return;
    }
    let Some(open) = *episode else {
        return;
    };
    // Cleared: the aggregate back below the medium band by the margin, no parameter at
    // 3 or within its margin of a 3 (a pulse hovering at 128-134 is one episode, as it is
    // for `heart_rate_high`), and nothing stale — a chart that only looks better because
    // readings aged out of it is not a recovery.
    let cleared = f64::from(aggregate.total) <= 4.0 - rule.alarm.clear_margin
        && aggregate.max_single < 3
        && !chart.holds_single_three(rule)
        && !any_stale;
    if !cleared {
        return;
    }
    *episode = None;
    if rule.alarm.emit_resolved {
        for severity in Severity::ALL {
            if open.alerted & bit(severity) != 0 {
                out.push(Event::News2 {
                    severity,
                    step: open.end(),
                    breakdown: chart.breakdown(aggregate),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The patient's SpO2 scale through the chart: worked examples of scale 2 (RCP NEWS2
    //! 2017, chart 1) and the oxygen status each SpO2 reading is scored with.

    use super::*;
    use crate::rules::{RuleSet, ThresholdRule};
    use Metric::*;

    const MIN: i64 = 60_000;

    fn news2_rule() -> News2Rule {
        *RuleSet::news2_red_flags().news2().unwrap()
    }

    fn spo2_low() -> ThresholdRule {
        RuleSet::news2_red_flags()
            .rules()
            .iter()
            .find(|r| r.id == "spo2_low")
            .unwrap()
            .clone()
    }

    /// Readings `(metric, value, minute)` into `state` on `scale`; what they published.
    fn feed(
        state: &mut News2State,
        scale: Spo2Scale,
        readings: &[(Metric, f64, i64)],
    ) -> Vec<Event> {
        let rule = news2_rule();
        let mut out = Vec::new();
        for &(metric, value, minute) in readings {
            let param = parameter_index(metric).unwrap();
            state.observe_on(&rule, param, (metric, value), minute * MIN, scale, &mut out);
        }
        out
    }

    /// The chart's aggregate as of minute `minute` on `scale`.
    fn aggregate_at(state: &News2State, minute: i64, scale: Spo2Scale) -> Aggregate {
        let chart = Chart {
            latest: &state.latest,
            t: minute * MIN,
            max_age_ms: news2_rule().max_age_ms,
            scale,
        };
        chart.aggregate().0
    }

    /// SpO2's score in the chart on `scale`.
    fn spo2_score(state: &News2State, scale: Spo2Scale) -> u8 {
        state.latest[SPO2].score_on(scale)
    }

    /// A healthy adult on air but for SpO2 89 %, the last reading.
    const AT_89_ON_AIR: [(Metric, f64, i64); 7] = [
        (RespiratoryRate, 16.0, 0),   // 12–20 /min        0
        (SupplementalOxygen, 0.0, 0), // air               0
        (SystolicBp, 125.0, 0),       // 111–219 mmHg      0
        (HeartRate, 72.0, 0),         // 51–90 /min        0
        (Consciousness, 0.0, 0),      // alert             0
        (Temperature, 36.8, 0),       // 36.1–38.0 °C      0
        (Spo2, 89.0, 1),              // scale 2: 88–92 0; scale 1: ≤91 3
    ];

    #[test]
    fn scale_2_at_89_on_air_scores_0_and_spo2_low_does_not_fire() {
        let mut state = News2State::NEW;
        let out = feed(&mut state, Spo2Scale::Two, &AT_89_ON_AIR);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(spo2_score(&state, Spo2Scale::Two), 0);
        assert_eq!(
            aggregate_at(&state, 1, Spo2Scale::Two),
            Aggregate {
                total: 0,
                max_single: 0
            }
        );
        assert!(!spo2_low().condition_on(Spo2Scale::Two).fires(89.0));
    }

    #[test]
    fn scale_1_at_89_on_air_scores_3_and_spo2_low_fires() {
        let mut state = News2State::NEW;
        let out = feed(&mut state, Spo2Scale::One, &AT_89_ON_AIR);
        let [
            Event::News2 {
                severity,
                breakdown,
                ..
            },
        ] = out.as_slice()
        else {
            panic!("one news2 alert expected: {out:?}");
        };
        assert_eq!(*severity, Severity::Medium);
        assert_eq!(
            breakdown.aggregate,
            Aggregate {
                total: 3,
                max_single: 3
            }
        );
        assert_eq!(breakdown.parameters[SPO2].map(|s| s.score), Some(3));
        assert!(spo2_low().condition_on(Spo2Scale::One).fires(89.0));
    }

    #[test]
    fn scale_2_on_oxygen_at_97_scores_3() {
        let mut state = News2State::NEW;
        let out = feed(
            &mut state,
            Spo2Scale::Two,
            &[(SupplementalOxygen, 1.0, 0), (Spo2, 97.0, 1)],
        );
        assert_eq!(spo2_score(&state, Spo2Scale::Two), 3); // ≥97 on oxygen
        assert_eq!(spo2_score(&state, Spo2Scale::One), 0); // ≥96
        // Oxygen 2 + SpO2 3: a single 3, medium.
        let [Event::News2 { breakdown, .. }] = out.as_slice() else {
            panic!("one news2 alert expected: {out:?}");
        };
        assert_eq!(breakdown.parameters[SPO2].map(|s| s.score), Some(3));
        assert_eq!(
            breakdown.aggregate,
            Aggregate {
                total: 5,
                max_single: 3
            }
        );
        // The same reading on air scores 0 on scale 2.
        let mut air = News2State::NEW;
        feed(
            &mut air,
            Spo2Scale::Two,
            &[(SupplementalOxygen, 0.0, 0), (Spo2, 97.0, 1)],
        );
        assert_eq!(spo2_score(&air, Spo2Scale::Two), 0);
    }

    #[test]
    fn an_oxygen_reading_after_the_spo2_reading_does_not_rescore_it() {
        let mut state = News2State::NEW;
        feed(
            &mut state,
            Spo2Scale::Two,
            &[(SupplementalOxygen, 1.0, 0), (Spo2, 95.0, 1)],
        );
        assert_eq!(spo2_score(&state, Spo2Scale::Two), 2); // 95–96 on oxygen
        feed(&mut state, Spo2Scale::Two, &[(SupplementalOxygen, 0.0, 2)]);
        assert_eq!(spo2_score(&state, Spo2Scale::Two), 2, "taken on oxygen");
        // The next SpO2 reading is taken on air.
        feed(&mut state, Spo2Scale::Two, &[(Spo2, 95.0, 3)]);
        assert_eq!(spo2_score(&state, Spo2Scale::Two), 0);
    }

    #[test]
    fn an_oxygen_reading_at_or_before_the_spo2_reading_is_its_status_whenever_it_arrives() {
        // Oxygen at the SpO2 reading's own time, arriving after it.
        let mut state = News2State::NEW;
        feed(
            &mut state,
            Spo2Scale::Two,
            &[(Spo2, 93.0, 1), (SupplementalOxygen, 1.0, 1)],
        );
        assert_eq!(spo2_score(&state, Spo2Scale::Two), 1); // 93–94 on oxygen
        // No oxygen reading at or before it: air.
        let mut state = News2State::NEW;
        feed(&mut state, Spo2Scale::Two, &[(Spo2, 93.0, 1)]);
        assert_eq!(spo2_score(&state, Spo2Scale::Two), 0);
    }

    #[test]
    fn the_scale_is_the_one_passed_with_each_reading() {
        // A patient moved from scale 2 to scale 1: the chart's stored SpO2 is scored on
        // the new scale at once, without a new SpO2 reading.
        let mut state = News2State::NEW;
        let out = feed(&mut state, Spo2Scale::Two, &AT_89_ON_AIR);
        assert!(out.is_empty());
        let out = feed(&mut state, Spo2Scale::One, &[(HeartRate, 72.0, 2)]);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn the_single_three_hysteresis_scores_on_the_patients_scale() {
        // On oxygen at 96 %: scale 2 scores 2, within spo2's margin (1) of 97, a 3; on
        // scale 1 it scores 0 and 95 or 97 are no 3 either.
        let mut state = News2State::NEW;
        feed(
            &mut state,
            Spo2Scale::Two,
            &[(SupplementalOxygen, 1.0, 0), (Spo2, 96.0, 1)],
        );
        let rule = news2_rule();
        let holds = |scale| {
            Chart {
                latest: &state.latest,
                t: MIN,
                max_age_ms: rule.max_age_ms,
                scale,
            }
            .holds_single_three(&rule)
        };
        assert!(holds(Spo2Scale::Two));
        assert!(!holds(Spo2Scale::One));
    }

    #[test]
    fn a_restored_chart_scores_spo2_with_the_charts_oxygen_reading() {
        let mut state = News2State::NEW;
        feed(
            &mut state,
            Spo2Scale::Two,
            &[(SupplementalOxygen, 1.0, 0), (Spo2, 97.0, 1)],
        );
        let (chart, episode) = state.parts();
        let back = News2State::from_parts(chart, episode);
        assert_eq!(spo2_score(&back, Spo2Scale::Two), 3);
        assert_eq!(spo2_score(&back, Spo2Scale::One), 0);

        // The approximation: the oxygen reading after the SpO2 one is all the snapshot
        // has, so the SpO2 reading taken on oxygen is restored as taken on air.
        feed(&mut state, Spo2Scale::Two, &[(SupplementalOxygen, 0.0, 2)]);
        assert_eq!(spo2_score(&state, Spo2Scale::Two), 3);
        let (chart, episode) = state.parts();
        let back = News2State::from_parts(chart, episode);
        assert_eq!(spo2_score(&back, Spo2Scale::Two), 0);
    }

    #[test]
    fn a_reading_still_costs_24_bytes() {
        assert_eq!(std::mem::size_of::<Latest>(), 24);
    }
}
