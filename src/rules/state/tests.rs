//! The evaluator over explicit observation timestamps: what a ward would see.

use std::path::Path;

use super::*;
use crate::rules::{AlertStatus, EpisodeStep, Phase, Severity};
use crate::vitals::Metric::*;

const T0: i64 = 1_763_798_400_000;
const SEC: i64 = 1000;
const OWNER: Owner = (0, 1);

fn rules(toml: &str) -> Arc<RuleSet> {
    Arc::new(RuleSet::parse(toml, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}")))
}

/// A heart-rate rule above 130 with the given extra keys.
fn hr_high(extra: &str) -> Arc<RuleSet> {
    rules(&format!(
        "[[threshold]]\nid = \"hr_high\"\nmetric = \"heart_rate\"\nabove = 130\nseverity = \"medium\"\n{extra}\n"
    ))
}

/// Feeds `(seconds after T0, value)` of one metric for one patient; returns, per
/// observation that published something, its second and what it published.
fn feed(eval: &mut Evaluator, metric: Metric, series: &[(i64, f64)]) -> Vec<(i64, Vec<Event>)> {
    let mut published = Vec::new();
    for &(s, value) in series {
        let mut out = Vec::new();
        let reading = Reading {
            metric,
            value,
            timestamp: T0 + s * SEC,
        };
        eval.observe("P-1", reading, OWNER, s * SEC, &mut out);
        if !out.is_empty() {
            published.push((s, out));
        }
    }
    published
}

/// `rule`'s alert opening an episode with the reading `s` seconds after T0.
fn start(rule: usize, s: i64) -> Vec<Event> {
    vec![Event::Threshold {
        rule,
        step: EpisodeStep::start(T0 + s * SEC),
    }]
}

/// Seconds at which something was published.
fn seconds(published: &[(i64, Vec<Event>)]) -> Vec<i64> {
    published.iter().map(|(s, _)| *s).collect()
}

#[test]
fn a_stateless_rule_alerts_every_breaching_observation() {
    let set = hr_high("cooldown_secs = 0");
    assert!(set.is_stateless());
    let mut eval = Evaluator::new(set, crate::settings::defaults().state_limits());
    let got = feed(
        &mut eval,
        HeartRate,
        &[(0, 131.0), (1, 120.0), (2, 140.0), (3, 140.0)],
    );
    assert_eq!(seconds(&got), [0, 2, 3]);
    assert_eq!(eval.patients(), 0, "a stateless set remembers nobody");
}

#[test]
fn for_secs_fires_only_after_the_full_span_of_breaching_observations() {
    let mut eval = Evaluator::new(
        hr_high("for_secs = 60"),
        crate::settings::defaults().state_limits(),
    );
    // Breaching every 15 s from t=0: the span reaches 60 s at t=60, not before.
    let series: Vec<(i64, f64)> = (0..=6).map(|i| (i * 15, 140.0)).collect();
    let got = feed(&mut eval, HeartRate, &series);
    assert_eq!(seconds(&got), [60]);
    // The episode opens with the reading that completes the span.
    assert_eq!(got[0].1, start(0, 60));
}

#[test]
fn one_normal_observation_restarts_the_sustained_span() {
    let mut eval = Evaluator::new(
        hr_high("for_secs = 60"),
        crate::settings::defaults().state_limits(),
    );
    let got = feed(
        &mut eval,
        HeartRate,
        &[
            (0, 140.0),
            (30, 140.0),
            (45, 100.0), // one normal reading: the run is broken
            (50, 140.0),
            (100, 140.0), // 50 s since the run restarted: not yet
            (110, 140.0), // 60 s: fires
        ],
    );
    assert_eq!(seconds(&got), [110]);
}

#[test]
fn the_span_is_observation_time_not_arrival_time() {
    // A backlog read in one burst: arrival order, but timestamps 20 s apart.
    let mut eval = Evaluator::new(
        hr_high("for_secs = 60"),
        crate::settings::defaults().state_limits(),
    );
    let mut out = Vec::new();
    for i in 0..4 {
        let reading = Reading {
            metric: HeartRate,
            value: 140.0,
            timestamp: T0 + i * 20 * SEC,
        };
        // The evaluator clock does not move: everything arrives at once.
        eval.observe("P-1", reading, OWNER, 0, &mut out);
    }
    assert_eq!(
        out,
        start(0, 60),
        "fires at the observation 60 s after the first"
    );
}

#[test]
fn a_noisy_value_around_the_threshold_raises_one_alert_not_dozens() {
    // Heart rate hovering 127–134 around 130 every 2 s for 4 minutes: half the readings
    // breach. A clear margin of 5 (back to 125 or below) is wider than the noise.
    let noise = [-3.0, 2.0, -1.0, 4.0, -2.0, 1.0, 3.0, -3.0];
    let series: Vec<(i64, f64)> = (0..120)
        .map(|i| (i * 2, 130.0 + noise[i as usize % noise.len()]))
        .collect();
    let breaching = series.iter().filter(|(_, v)| *v > 130.0).count();
    assert!(breaching >= 50, "{breaching}");

    let stateless = feed(
        &mut Evaluator::new(
            hr_high("cooldown_secs = 0"),
            crate::settings::defaults().state_limits(),
        ),
        HeartRate,
        &series,
    );
    assert_eq!(
        stateless.len(),
        breaching,
        "without alarm control: one per breach"
    );

    let mut eval = Evaluator::new(
        hr_high("clear_margin = 5"),
        crate::settings::defaults().state_limits(),
    );
    let got = feed(&mut eval, HeartRate, &series);
    assert_eq!(seconds(&got), [2], "one alert, at the first breach");
}

#[test]
fn a_persisting_condition_is_repeated_only_after_the_cooldown() {
    let mut eval = Evaluator::new(
        hr_high("cooldown_secs = 300"),
        crate::settings::defaults().state_limits(),
    );
    let series: Vec<(i64, f64)> = (0..=20).map(|i| (i * 30, 140.0)).collect();
    let got = feed(&mut eval, HeartRate, &series);
    assert_eq!(seconds(&got), [0, 300, 600]);
}

#[test]
fn after_clearing_by_the_margin_the_rule_rearms_and_a_new_episode_alerts_at_once() {
    let mut eval = Evaluator::new(
        hr_high("clear_margin = 5\nemit_resolved = true"),
        crate::settings::defaults().state_limits(),
    );
    let got = feed(
        &mut eval,
        HeartRate,
        &[
            (0, 140.0),
            (10, 128.0), // below the threshold, inside the margin: still active
            (20, 135.0), // no repeat
            (30, 125.0), // cleared: resolved
            (40, 131.0), // a new episode
        ],
    );
    // The end names the episode the reading at 0 opened.
    let resolved = vec![Event::Threshold {
        rule: 0,
        step: EpisodeStep {
            phase: Phase::End,
            opened_at: T0,
        },
    }];
    assert_eq!(
        got,
        vec![(0, start(0, 0)), (30, resolved), (40, start(0, 40))]
    );
}

#[test]
fn below_rules_clear_above_the_threshold_plus_the_margin() {
    let set = rules(
        r#"[[threshold]]
id = "spo2_low"
metric = "spo2"
below = 92
severity = "medium"
clear_margin = 2
emit_resolved = true
"#,
    );
    let mut eval = Evaluator::new(set, crate::settings::defaults().state_limits());
    let got = feed(
        &mut eval,
        Spo2,
        &[(0, 90.0), (10, 93.0), (20, 91.0), (30, 94.0)],
    );
    assert_eq!(seconds(&got), [0, 30]);
}

/// A NEWS2 observation set: (metric, value) at one second.
fn chart_at(eval: &mut Evaluator, s: i64, values: &[(Metric, f64)]) -> Vec<Event> {
    let mut out = Vec::new();
    for &(metric, value) in values {
        let reading = Reading {
            metric,
            value,
            timestamp: T0 + s * SEC,
        };
        eval.observe("P-1", reading, OWNER, s * SEC, &mut out);
    }
    out
}

fn news2_only() -> Arc<RuleSet> {
    rules(
        r#"[news2]
max_age_secs = 3600
cooldown_secs = 300
"#,
    )
}

fn severities(events: &[Event]) -> Vec<(Severity, AlertStatus, u8)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::News2 {
                severity,
                step,
                breakdown,
            } => Some((*severity, step.phase.status(), breakdown.aggregate.total)),
            Event::Threshold { .. } => None,
        })
        .collect()
}

/// State kept for a day: these tests' evaluator clock is their observation time, and
/// they span more than the default hour.
fn a_day_of_memory() -> StateLimits {
    StateLimits {
        ttl_ms: 86_400_000,
        ..crate::settings::defaults().state_limits()
    }
}

const HEALTHY: [(Metric, f64); 7] = [
    (RespiratoryRate, 16.0),
    (Spo2, 97.0),
    (HeartRate, 72.0),
    (SystolicBp, 125.0),
    (Temperature, 36.8),
    (RespiratoryRate, 16.0),
    (HeartRate, 72.0),
];

#[test]
fn a_rise_from_medium_to_high_raises_a_second_alert_and_medium_again_does_not() {
    let mut eval = Evaluator::new(news2_only(), crate::settings::defaults().state_limits());
    assert!(chart_at(&mut eval, 0, &HEALTHY).is_empty());
    // RR 22 (2), SpO2 95 (1), HR 105 (1), temperature 38.5 (1): aggregate 5, medium.
    let medium = [
        (RespiratoryRate, 22.0),
        (Spo2, 95.0),
        (HeartRate, 105.0),
        (Temperature, 38.5),
    ];
    let got = chart_at(&mut eval, 60, &medium);
    assert_eq!(
        severities(&got),
        [(Severity::Medium, AlertStatus::Firing, 5)],
        "medium once all four are in, not at each of them"
    );
    // The same picture a minute later: no repeat within the cooldown.
    assert!(chart_at(&mut eval, 120, &medium).is_empty());
    // SpO2 falls to 93 (2): aggregate 6, still medium, nothing new. Then HR rises to
    // 115 (2): aggregate 7, high, alerted at once despite the cooldown.
    let got = chart_at(&mut eval, 150, &[(Spo2, 93.0), (HeartRate, 115.0)]);
    assert_eq!(severities(&got), [(Severity::High, AlertStatus::Firing, 7)]);
    // Back to medium and up to high again within the cooldown: the episode already
    // reached high, so neither is news.
    assert!(chart_at(&mut eval, 180, &[(HeartRate, 105.0)]).is_empty());
    assert!(chart_at(&mut eval, 200, &[(HeartRate, 115.0)]).is_empty());
    // Still high after the cooldown: one reminder.
    let got = chart_at(&mut eval, 460, &[(HeartRate, 115.0)]);
    assert_eq!(severities(&got), [(Severity::High, AlertStatus::Firing, 7)]);
}

#[test]
fn news2_single_parameter_3_is_medium_and_the_breakdown_names_missing_and_stale() {
    let mut eval = Evaluator::new(news2_only(), a_day_of_memory());
    // Temperature two hours ago (stale), then only a respiration rate of 26 (3).
    // Temperature 39.5 alone scores 2: low risk, nothing to say.
    assert!(chart_at(&mut eval, 0, &[(Temperature, 39.5)]).is_empty());
    let got = chart_at(&mut eval, 7200, &[(RespiratoryRate, 26.0)]);
    let [
        Event::News2 {
            severity,
            step,
            breakdown,
        },
    ] = got.as_slice()
    else {
        panic!("{got:?}")
    };
    assert_eq!(
        (*severity, step.phase.status()),
        (Severity::Medium, AlertStatus::Firing)
    );
    assert_eq!(breakdown.aggregate.total, 3);
    assert_eq!(breakdown.aggregate.max_single, 3);
    let rr = news2::parameter_index(RespiratoryRate).unwrap();
    let temp = news2::parameter_index(Temperature).unwrap();
    assert_eq!(
        breakdown.parameters[rr].map(|p| (p.score, p.stale)),
        Some((3, false))
    );
    assert_eq!(
        breakdown.parameters[temp].map(|p| (p.score, p.stale)),
        Some((2, true))
    );
    let missing = breakdown.parameters.iter().filter(|p| p.is_none()).count();
    assert_eq!(missing, 5);
}

#[test]
fn news2_clears_below_the_medium_band_by_the_margin_with_a_resolved_event() {
    let set = rules(
        r#"[news2]
clear_margin = 1
emit_resolved = true
"#,
    );
    let mut eval = Evaluator::new(set, crate::settings::defaults().state_limits());
    let got = chart_at(&mut eval, 0, &[(RespiratoryRate, 26.0)]);
    assert_eq!(
        severities(&got),
        [(Severity::Medium, AlertStatus::Firing, 3)]
    );
    // HR 95 (1) and SpO2 95 (1) while RR is 26 (3): aggregate 5, the same episode.
    // Then RR 22 (2): aggregate 4, below medium but above the clear level 4 - 1 = 3.
    let still = [(HeartRate, 95.0), (Spo2, 95.0), (RespiratoryRate, 22.0)];
    assert!(chart_at(&mut eval, 60, &still).is_empty());
    // SpO2 back to 97: aggregate 3, cleared.
    let got = chart_at(&mut eval, 120, &[(Spo2, 97.0)]);
    assert_eq!(
        severities(&got),
        [(Severity::Medium, AlertStatus::Resolved, 3)]
    );
}

#[test]
fn state_is_capped_per_worker_and_the_least_recently_seen_patient_goes_first() {
    let limits = StateLimits {
        ttl_ms: 3_600_000,
        capacity: NonZeroUsize::new(3).unwrap(),
    };
    let mut eval = Evaluator::new(news2_only(), limits);
    let mut out = Vec::new();
    let hr = |s: i64| Reading {
        metric: HeartRate,
        value: 72.0,
        timestamp: T0 + s * SEC,
    };
    for (s, p) in ["A", "B", "C", "A", "D", "E"].into_iter().enumerate() {
        eval.observe(p, hr(s as i64), OWNER, s as i64, &mut out);
    }
    // D evicted B (least recently seen), E evicted C; A was refreshed in between.
    assert_eq!(eval.patients(), 3);
    assert_eq!(eval.take_evictions().capacity, 2);
    assert!(eval.patients.contains_key("A"));
    assert!(!eval.patients.contains_key("B") && !eval.patients.contains_key("C"));
}

#[test]
fn state_expires_after_the_ttl_without_data_and_is_rebuilt_from_new_observations() {
    let limits = StateLimits {
        ttl_ms: 60_000,
        capacity: NonZeroUsize::new(100).unwrap(),
    };
    let set = rules(
        r#"[[threshold]]
id = "hr_high"
metric = "heart_rate"
above = 130
severity = "medium"
cooldown_secs = 3600
"#,
    );
    let mut eval = Evaluator::new(set, limits);
    let mut out = Vec::new();
    let hr = Reading {
        metric: HeartRate,
        value: 140.0,
        timestamp: T0,
    };
    eval.observe("P-1", hr, OWNER, 0, &mut out);
    eval.observe("P-1", hr, OWNER, 59_000, &mut out);
    assert_eq!(out.len(), 1, "in cooldown");
    // Just inside the TTL: still remembered, still in cooldown.
    eval.expire(59_000 + 59_999);
    assert_eq!(eval.patients(), 1);
    eval.observe("P-1", hr, OWNER, 59_000 + 59_999, &mut out);
    assert_eq!(out.len(), 1, "still in cooldown");
    // A minute without data: forgotten on the next reading, before any sweep...
    eval.observe("P-1", hr, OWNER, 118_999 + 60_000, &mut out);
    assert_eq!(out.len(), 2, "a new episode");
    assert_eq!(eval.take_evictions().ttl, 1);
    // ...and by the sweep when no reading comes.
    eval.expire(118_999 + 60_000 + 60_000);
    assert_eq!(eval.patients(), 0);
    assert_eq!(eval.take_evictions().ttl, 1);
}

#[test]
fn state_from_an_earlier_assignment_of_the_partition_is_not_trusted() {
    let mut eval = Evaluator::new(
        hr_high("cooldown_secs = 3600"),
        crate::settings::defaults().state_limits(),
    );
    let mut out = Vec::new();
    let hr = Reading {
        metric: HeartRate,
        value: 140.0,
        timestamp: T0,
    };
    eval.observe("P-1", hr, (0, 1), 0, &mut out);
    eval.observe("P-1", hr, (0, 1), 1, &mut out);
    assert_eq!(out.len(), 1);
    // Partition 0 was revoked and assigned again (epoch 2): another instance may have
    // seen the patient clear meanwhile, so the open episode is forgotten.
    eval.observe("P-1", hr, (0, 2), 2, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(eval.take_evictions().reassigned, 1);
}

#[test]
fn a_reload_keeps_the_memory_of_unchanged_rules_and_drops_changed_ones() {
    let before = rules(
        r#"[defaults]
cooldown_secs = 3600
         [[threshold]]
id = "hr_high"
metric = "heart_rate"
above = 130
severity = "medium"
         [[threshold]]
id = "hr_low"
metric = "heart_rate"
below = 41
severity = "medium"
         [[threshold]]
id = "hr_very_high"
metric = "heart_rate"
above = 135
severity = "high"
"#,
    );
    let mut eval = Evaluator::new(before, crate::settings::defaults().state_limits());
    let mut out = Vec::new();
    let hr = |v: f64| Reading {
        metric: HeartRate,
        value: v,
        timestamp: T0,
    };
    eval.observe("P-1", hr(140.0), OWNER, 0, &mut out);
    assert_eq!(out.len(), 2, "hr_high and hr_very_high open");
    // The new file drops hr_low, moves hr_high to first place unchanged, and lowers
    // hr_very_high's threshold (a different rule now).
    let after = rules(
        r#"[defaults]
cooldown_secs = 3600
         [[threshold]]
id = "hr_very_high"
metric = "heart_rate"
above = 138
severity = "high"
         [[threshold]]
id = "hr_high"
metric = "heart_rate"
above = 130
severity = "medium"
"#,
    );
    eval.set_rules(after);
    out.clear();
    eval.observe("P-1", hr(140.0), OWNER, 1, &mut out);
    // hr_high (now index 1) is still in its episode; hr_very_high starts afresh.
    assert_eq!(out, start(0, 0));
}

#[test]
fn readings_of_one_patient_from_two_partitions_share_the_state() {
    // Keyed by device, not patient: the pulse oximeter's and the cuff's readings come
    // from different partitions. The NEWS2 chart still adds them up.
    let mut eval = Evaluator::new(news2_only(), crate::settings::defaults().state_limits());
    let mut out = Vec::new();
    let at = |metric, value| Reading {
        metric,
        value,
        timestamp: T0,
    };
    eval.observe("P-1", at(RespiratoryRate, 22.0), (0, 1), 0, &mut out); // 2
    eval.observe("P-1", at(Spo2, 95.0), (1, 7), 0, &mut out); // 1
    eval.observe("P-1", at(HeartRate, 105.0), (0, 1), 0, &mut out); // 1
    eval.observe("P-1", at(Temperature, 38.5), (1, 7), 0, &mut out); // 1: aggregate 5
    assert_eq!(
        severities(&out),
        [(Severity::Medium, AlertStatus::Firing, 5)]
    );
    assert_eq!(eval.take_evictions().reassigned, 0);
}

#[test]
fn a_late_normal_reading_from_before_the_run_does_not_restart_it() {
    let mut eval = Evaluator::new(
        hr_high("for_secs = 60"),
        crate::settings::defaults().state_limits(),
    );
    let got = feed(
        &mut eval,
        HeartRate,
        &[(100, 140.0), (130, 140.0), (90, 100.0), (160, 140.0)],
    );
    assert_eq!(seconds(&got), [160]);
}

#[test]
fn news2_ends_an_escalated_episode_with_a_resolved_event_per_severity_alerted() {
    let set = rules("[news2]\nclear_margin = 0\nemit_resolved = true\n");
    let mut eval = Evaluator::new(set, crate::settings::defaults().state_limits());
    let unwell = [
        (RespiratoryRate, 22.0),
        (Spo2, 95.0),
        (HeartRate, 105.0),
        (Temperature, 38.5),
    ];
    assert_eq!(
        severities(&chart_at(&mut eval, 0, &unwell)),
        [(Severity::Medium, AlertStatus::Firing, 5)]
    );
    // SpO2 93 (2), pulse 115 (2): 7, high.
    let got = chart_at(&mut eval, 60, &[(Spo2, 93.0), (HeartRate, 115.0)]);
    assert_eq!(severities(&got), [(Severity::High, AlertStatus::Firing, 7)]);
    // A normal round: after RR 16 the aggregate is 5, after SpO2 97 it is 3 (pulse and
    // temperature not yet retaken) — the episode ends there, and both alarms the
    // console holds are closed.
    let got = chart_at(&mut eval, 120, &HEALTHY[..5]);
    assert_eq!(
        severities(&got),
        [
            (Severity::Medium, AlertStatus::Resolved, 3),
            (Severity::High, AlertStatus::Resolved, 3)
        ]
    );
}

#[test]
fn readings_ageing_out_of_the_chart_do_not_end_a_news2_episode() {
    let set = rules("[news2]\nmax_age_secs = 3600\nemit_resolved = true\n");
    let mut eval = Evaluator::new(set, a_day_of_memory());
    let unwell = [
        (RespiratoryRate, 22.0),
        (Spo2, 95.0),
        (HeartRate, 105.0),
        (Temperature, 38.5),
    ];
    assert_eq!(chart_at(&mut eval, 0, &unwell).len(), 1);
    // 65 minutes later only a normal pulse: the other three are stale, the aggregate is
    // 0 — but nobody reassessed the patient. No resolved.
    assert!(chart_at(&mut eval, 3900, &[(HeartRate, 72.0)]).is_empty());
    // A full normal round: now it is a recovery.
    let got = chart_at(&mut eval, 3960, &HEALTHY[..5]);
    assert_eq!(
        severities(&got),
        [(Severity::Medium, AlertStatus::Resolved, 0)]
    );
}

#[test]
fn every_shipped_red_flag_clears_exactly_at_the_documented_value() {
    // (rule, the "clears at" value of config/rules.toml and docs/rules.md, a value just
    // short of it)
    let table = [
        ("respiratory_rate_low", 10.0, 9.9),
        ("respiratory_rate_high", 22.0, 22.1),
        ("spo2_low", 93.0, 92.9),
        ("systolic_bp_low", 96.0, 95.9),
        ("systolic_bp_high", 214.0, 214.1),
        ("heart_rate_low", 44.0, 43.9),
        ("heart_rate_high", 125.0, 125.1),
        ("temperature_low", 35.3, 35.2),
        ("temperature_high", 38.8, 38.9),
    ];
    let shipped = RuleSet::news2_red_flags();
    assert_eq!(table.len(), shipped.len());
    for (id, clears, short) in table {
        let rule = shipped.rules().iter().find(|r| r.id == id).unwrap();
        let margin = rule.alarm.clear_margin;
        assert!(rule.condition.cleared(clears, margin), "{id} at {clears}");
        assert!(!rule.condition.cleared(short, margin), "{id} at {short}");
    }
}

/// Field report item 1: a pulse hovering at 128–134 every 20 s on an otherwise normal,
/// complete chart is one `news2_medium` episode (and one `heart_rate_high`), not a page
/// at every crossing: the single-parameter 3 ends only below 131 − 5.
#[test]
fn a_pulse_hovering_at_the_news2_three_band_is_one_episode() {
    let set = Arc::new(RuleSet::news2_red_flags());
    let mut eval = Evaluator::new(set.clone(), crate::settings::defaults().state_limits());
    let normal = [
        (RespiratoryRate, 16.0),
        (Spo2, 97.0),
        (SupplementalOxygen, 0.0),
        (SystolicBp, 125.0),
        (Consciousness, 0.0),
        (Temperature, 36.8),
        (HeartRate, 80.0),
    ];
    assert!(chart_at(&mut eval, 0, &normal).is_empty());
    let hovering = [
        128.0, 132.0, 129.0, 134.0, 128.0, 131.0, 127.0, 133.0, 130.0,
    ];
    let mut pages: Vec<(i64, String)> = Vec::new();
    for (i, pulse) in hovering.iter().enumerate() {
        let s = 20 * (i as i64 + 1);
        for e in chart_at(&mut eval, s, &[(HeartRate, *pulse)]) {
            let id = match e {
                Event::Threshold { rule, .. } => set.rules()[rule].id.clone(),
                Event::News2 { severity, .. } => format!("news2_{severity}"),
            };
            pages.push((s, id));
        }
    }
    assert_eq!(
        pages,
        [(40, "heart_rate_high".into()), (40, "news2_medium".into())],
        "160 s of hovering"
    );
    // Back to 125 (two bands below the 3): the episode ends and re-arms; the next
    // crossing is a new episode.
    assert!(chart_at(&mut eval, 200, &[(HeartRate, 125.0)]).is_empty());
    let again = chart_at(&mut eval, 220, &[(HeartRate, 135.0)]);
    assert_eq!(
        severities(&again),
        [(Severity::Medium, AlertStatus::Firing, 3)]
    );
}

#[test]
fn the_single_parameter_hysteresis_follows_its_margin_and_can_be_switched_off() {
    // With emit_resolved the end is visible: at 126 (within 5 of 131) the episode holds,
    // at 125 it ends.
    let hold = rules("[news2]\nemit_resolved = true\n");
    let mut eval = Evaluator::new(hold, crate::settings::defaults().state_limits());
    assert_eq!(chart_at(&mut eval, 0, &[(HeartRate, 135.0)]).len(), 1);
    assert!(chart_at(&mut eval, 20, &[(HeartRate, 126.0)]).is_empty());
    let ended = chart_at(&mut eval, 40, &[(HeartRate, 125.0)]);
    assert_eq!(
        severities(&ended),
        [(Severity::Medium, AlertStatus::Resolved, 2)]
    );

    // single_clear_margin.heart_rate = 0: the old behaviour, the end at the first 2.
    let off = rules("[news2]\nemit_resolved = true\nsingle_clear_margin = { heart_rate = 0 }\n");
    let mut eval = Evaluator::new(off, crate::settings::defaults().state_limits());
    assert_eq!(chart_at(&mut eval, 0, &[(HeartRate, 135.0)]).len(), 1);
    let ended = chart_at(&mut eval, 20, &[(HeartRate, 130.0)]);
    assert_eq!(
        severities(&ended),
        [(Severity::Medium, AlertStatus::Resolved, 2)]
    );

    // The low side too: SpO2 91 (3) holds until 93 (92 + 1).
    let mut eval = Evaluator::new(
        rules("[news2]\nemit_resolved = true\n"),
        crate::settings::defaults().state_limits(),
    );
    assert_eq!(chart_at(&mut eval, 0, &[(Spo2, 91.0)]).len(), 1);
    assert!(chart_at(&mut eval, 20, &[(Spo2, 92.5)]).is_empty());
    assert_eq!(chart_at(&mut eval, 40, &[(Spo2, 93.0)]).len(), 1);
}

/// Durable mode: what a reading at `offset` of input partition 0 does.
fn durable_at(offset: i64) -> At {
    At {
        owner: (0, 1),
        partition: 0,
        topic: 0,
        offset,
    }
}

fn durable(set: Arc<RuleSet>) -> Evaluator {
    let mut eval = Evaluator::new(set, crate::settings::defaults().state_limits());
    eval.set_durable(Some(Arc::from("g")));
    eval
}

/// Moves every changed patient of `from` into a fresh evaluator, through the records
/// the state topic would hold.
fn handed_over(from: &mut Evaluator, set: Arc<RuleSet>) -> (Evaluator, Vec<StateRecord>) {
    let mut records = Vec::new();
    from.take_changes(T0, 0, &mut records);
    let mut to = durable(set);
    for r in &records {
        let value = r.value.as_deref().expect("a change, not a tombstone");
        assert_eq!(
            to.restore(&r.key, value, r.partition, (0, 99), T0, 0),
            Ok(Restored::Applied)
        );
    }
    (to, records)
}

#[test]
fn an_episode_restored_from_the_state_topic_continues_and_ends_with_its_opening_id() {
    let set = hr_high("cooldown_secs = 300\nemit_resolved = true");
    let mut a = durable(set.clone());
    let mut out = Vec::new();
    let hr = |s: i64, value| Reading {
        metric: HeartRate,
        value,
        timestamp: T0 + s * SEC,
    };
    assert!(a.observe_at("P-1", hr(0, 140.0), durable_at(10), 0, &mut out));
    assert_eq!(out, start(0, 0));

    let (mut b, records) = handed_over(&mut a, set);
    assert_eq!(records.len(), 1);
    out.clear();
    // Still breaching within the cooldown: nothing (a second page would be a new start).
    assert!(b.observe_at("P-1", hr(60, 141.0), durable_at(11), SEC, &mut out));
    assert!(out.is_empty(), "{out:?}");
    // After the cooldown: a reminder of the same episode.
    b.observe_at("P-1", hr(301, 141.0), durable_at(12), 2 * SEC, &mut out);
    assert_eq!(
        out,
        [Event::Threshold {
            rule: 0,
            step: EpisodeStep {
                phase: Phase::Continue,
                opened_at: T0
            }
        }]
    );
    out.clear();
    b.observe_at("P-1", hr(400, 80.0), durable_at(13), 3 * SEC, &mut out);
    assert_eq!(
        out,
        [Event::Threshold {
            rule: 0,
            step: EpisodeStep {
                phase: Phase::End,
                opened_at: T0
            }
        }]
    );
}

#[test]
fn a_reading_the_restored_state_reflects_is_not_counted_again() {
    let set = hr_high("for_secs = 60");
    let mut a = durable(set.clone());
    let mut out = Vec::new();
    let hr = |s: i64| Reading {
        metric: HeartRate,
        value: 140.0,
        timestamp: T0 + s * SEC,
    };
    a.observe_at("P-1", hr(0), durable_at(5), 0, &mut out);
    a.observe_at("P-1", hr(30), durable_at(6), 0, &mut out);
    let (mut b, _) = handed_over(&mut a, set);
    // Offsets 5 and 6 read again after a crash: skipped, the run still began at 0 s.
    assert!(!b.observe_at("P-1", hr(0), durable_at(5), 0, &mut out));
    assert!(!b.observe_at("P-1", hr(30), durable_at(6), 0, &mut out));
    assert!(out.is_empty());
    // The first new reading completes the 60 s run that began before the hand-over.
    assert!(b.observe_at("P-1", hr(60), durable_at(7), 0, &mut out));
    assert_eq!(out, start(0, 60));
}

#[test]
fn a_restored_news2_chart_scores_the_next_reading_with_every_parameter() {
    let set = news2_only();
    let mut a = durable(set.clone());
    let mut out = Vec::new();
    let at = |metric, value| Reading {
        metric,
        value,
        timestamp: T0,
    };
    // Aggregate 4, low risk: nothing published.
    for (i, (metric, value)) in [
        (RespiratoryRate, 22.0),
        (Spo2, 95.0),
        (SupplementalOxygen, 0.0),
        (SystolicBp, 115.0),
        (HeartRate, 105.0),
        (Consciousness, 0.0),
        (Temperature, 37.0),
    ]
    .into_iter()
    .enumerate()
    {
        a.observe_at("P-1", at(metric, value), durable_at(i as i64), 0, &mut out);
    }
    assert!(out.is_empty());
    let (mut b, records) = handed_over(&mut a, set);
    assert_eq!(records.len(), 1, "seven readings, one record");
    // One worsening reading after the hand-over: the whole chart counts at once.
    b.observe_at("P-1", at(Temperature, 38.5), durable_at(7), 0, &mut out);
    assert_eq!(
        severities(&out),
        [(Severity::Medium, AlertStatus::Firing, 5)]
    );
}

#[test]
fn a_forgotten_patient_leaves_a_tombstone_and_an_unreadable_record_is_refused() {
    let set = hr_high("cooldown_secs = 300");
    let mut a = durable(set.clone());
    let mut out = Vec::new();
    let reading = Reading {
        metric: HeartRate,
        value: 140.0,
        timestamp: T0,
    };
    a.observe_at("P-1", reading, durable_at(1), 0, &mut out);
    let ttl = crate::settings::defaults().state_limits().ttl_ms;
    a.expire(ttl + 1);
    let mut records = Vec::new();
    a.take_changes(T0, ttl + 1, &mut records);
    assert_eq!(
        records,
        [StateRecord {
            partition: 0,
            key: "P-1".into(),
            value: None
        }]
    );

    let mut b = durable(set);
    for (value, why) in [
        (&b"not json"[..], SnapshotError::Invalid),
        (
            br#"{"v":2,"group":"g","patientId":"P-1","seenAt":0,"offsets":[-1,-1]}"#,
            SnapshotError::Version,
        ),
        (
            br#"{"v":1,"group":"g","patientId":"P-2","seenAt":0,"offsets":[-1,-1]}"#,
            SnapshotError::Key,
        ),
        (
            br#"{"v":1,"group":"other","patientId":"P-1","seenAt":0,"offsets":[-1,-1]}"#,
            SnapshotError::Group,
        ),
    ] {
        assert_eq!(b.restore("P-1", value, 0, (0, 1), T0, 0), Err(why));
    }
    assert_eq!(b.patients(), 0);
    // A record older than the TTL is not applied, and its tombstone is due.
    let old = format!(
        r#"{{"v":1,"group":"g","patientId":"P-1","seenAt":{},"offsets":[3,-1]}}"#,
        T0 - ttl
    );
    assert_eq!(
        b.restore("P-1", old.as_bytes(), 0, (0, 1), T0, 0),
        Ok(Restored::Expired)
    );
    records.clear();
    b.take_changes(T0, 0, &mut records);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value, None);
}

/// `json` parsed as patient P-1's context record at offset `version` under `set`.
fn context_of(set: &RuleSet, json: &str, version: i64) -> crate::rules::context::PatientContext {
    let (_, context) =
        crate::rules::context::parse(Some(b"P-1"), Some(json.as_bytes()), version, set)
            .unwrap_or_else(|e| panic!("{e}"));
    context.expect("not a tombstone")
}

#[test]
fn an_override_moves_a_patients_threshold_both_ways_with_its_hysteresis() {
    let set = hr_high("clear_margin = 5\nemit_resolved = true");
    let mut eval = Evaluator::new(set.clone(), crate::settings::defaults().state_limits());
    let athlete = context_of(
        &set,
        r#"{"patientId":"P-1","overrides":{"hr_high":{"above":150}}}"#,
        7,
    );
    eval.set_context("P-1", 0, Some(athlete));
    // 140 is within the patient's limit; 151 opens; 146 is within the margin of 150, so
    // the episode holds; 145 clears it.
    let got = feed(
        &mut eval,
        HeartRate,
        &[(0, 140.0), (10, 151.0), (20, 146.0), (30, 145.0)],
    );
    assert_eq!(seconds(&got), [10, 30]);
    assert_eq!(got[1].1[0].step().phase, Phase::End);
    let applied = eval.context("P-1").expect("in force");
    assert_eq!(applied.condition(&set, 0), Condition::Above(150.0));
    assert_eq!(applied.version(), 7);

    // A lower limit for a known bradycardic patient: the other way round.
    let low = rules(
        "[[threshold]]\nid = \"hr_low\"\nmetric = \"heart_rate\"\nbelow = 41\nseverity = \"medium\"\nclear_margin = 5\nemit_resolved = true\n",
    );
    let mut eval = Evaluator::new(low.clone(), crate::settings::defaults().state_limits());
    let athlete = context_of(
        &low,
        r#"{"patientId":"P-1","overrides":{"hr_low":{"below":35}}}"#,
        1,
    );
    eval.set_context("P-1", 0, Some(athlete));
    let got = feed(
        &mut eval,
        HeartRate,
        &[(0, 38.0), (10, 34.0), (20, 39.0), (30, 40.0)],
    );
    assert_eq!(seconds(&got), [10, 30], "opens below 35, ends at 35 + 5");
}

#[test]
fn a_tombstone_returns_the_patient_to_the_rules_threshold() {
    let set = hr_high("cooldown_secs = 0");
    let mut eval = Evaluator::new(set.clone(), crate::settings::defaults().state_limits());
    let own = context_of(
        &set,
        r#"{"patientId":"P-1","overrides":{"hr_high":{"above":150}}}"#,
        3,
    );
    eval.set_context("P-1", 0, Some(own));
    assert!(feed(&mut eval, HeartRate, &[(0, 140.0)]).is_empty());
    eval.set_context("P-1", 0, None);
    assert!(eval.context("P-1").is_none());
    assert_eq!(seconds(&feed(&mut eval, HeartRate, &[(1, 140.0)])), [1]);
}

#[test]
fn a_scale_2_patient_on_target_raises_nothing_where_scale_1_raises_spo2_low_and_news2() {
    let set = Arc::new(RuleSet::news2_red_flags());
    let limits = crate::settings::defaults().state_limits();
    let copd = context_of(&set, r#"{"patientId":"P-1","spo2Scale":2}"#, 0);
    let mut scale_2 = Evaluator::new(set.clone(), limits);
    scale_2.set_context("P-1", 0, Some(copd));
    let mut scale_1 = Evaluator::new(set.clone(), limits);
    let chart = [
        (SupplementalOxygen, 0.0),
        (Spo2, 89.0),
        (RespiratoryRate, 16.0),
        (HeartRate, 80.0),
    ];
    let mut published = [Vec::new(), Vec::new()];
    for (eval, out) in [&mut scale_2, &mut scale_1].into_iter().zip(&mut published) {
        for (i, &(metric, value)) in chart.iter().enumerate() {
            let reading = Reading {
                metric,
                value,
                timestamp: T0 + i as i64 * SEC,
            };
            eval.observe("P-1", reading, OWNER, i as i64 * SEC, out);
        }
    }
    assert!(published[0].is_empty(), "{:?}", published[0]);
    let ids: Vec<&str> = published[1].iter().map(|e| set.event_rule_id(e)).collect();
    assert_eq!(ids, ["spo2_low", "news2_medium"]);
}

#[test]
fn contexts_outlive_the_state_ttl_and_capacity_and_go_with_their_partition() {
    let set = hr_high("");
    let limits = StateLimits {
        ttl_ms: 1000,
        capacity: NonZeroUsize::new(1).unwrap(),
    };
    let mut eval = Evaluator::new(set.clone(), limits);
    let own = context_of(
        &set,
        r#"{"patientId":"P-1","overrides":{"hr_high":{"above":150}}}"#,
        3,
    );
    eval.set_context("P-1", 4, Some(own));
    // Other patients push P-1's rule state out, and the TTL passes.
    for (i, p) in ["P-2", "P-3", "P-4"].into_iter().enumerate() {
        let reading = Reading {
            metric: HeartRate,
            value: 140.0,
            timestamp: T0,
        };
        eval.observe(p, reading, OWNER, 5000 * (i as i64 + 1), &mut Vec::new());
    }
    eval.expire(60_000);
    assert!(eval.context("P-1").is_some());
    eval.forget_contexts(3);
    assert!(eval.context("P-1").is_some(), "another partition's");
    eval.forget_contexts(4);
    assert!(eval.context("P-1").is_none());
}

#[test]
fn on_a_reload_an_override_follows_its_rule_by_id_or_is_dropped() {
    let set = hr_high("");
    let mut eval = Evaluator::new(set.clone(), crate::settings::defaults().state_limits());
    let own = context_of(
        &set,
        r#"{"patientId":"P-1","overrides":{"hr_high":{"above":150}}}"#,
        3,
    );
    eval.set_context("P-1", 0, Some(own));
    // A rule added before it: the override follows `hr_high` to its new index.
    let moved = rules(
        "[[threshold]]\nid = \"rr_high\"\nmetric = \"respiratory_rate\"\nabove = 24\nseverity = \"medium\"\n[[threshold]]\nid = \"hr_high\"\nmetric = \"heart_rate\"\nabove = 130\nseverity = \"medium\"\n",
    );
    eval.set_rules(moved.clone());
    let applied = eval.context("P-1").expect("kept");
    assert_eq!(applied.condition(&moved, 1), Condition::Above(150.0));
    assert_eq!(applied.condition(&moved, 0), Condition::Above(24.0));
    // `hr_high` now points the other way: the patient's `above` no longer applies.
    let flipped = rules(
        "[[threshold]]\nid = \"hr_high\"\nmetric = \"heart_rate\"\nbelow = 41\nseverity = \"medium\"\n",
    );
    eval.set_rules(flipped.clone());
    let applied = eval.context("P-1").expect("kept");
    assert_eq!(applied.condition(&flipped, 0), Condition::Below(41.0));
}
