use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::*;
use crate::vitals::decode;

const NOW: i64 = 1_763_798_400_000;

fn obs(metric: Metric, value: f64) -> Observation<'static> {
    Observation {
        patient_id: Cow::Borrowed("P-1"),
        metric,
        value,
        timestamp: NOW,
        unit: None,
        device_id: None,
        site_id: None,
    }
}

/// The ids of the rules `value` of `metric` breaches, decoded from its JSON spelling as
/// the pipeline does (so TOML and JSON parsing of the same decimal must agree).
fn fired(rules: &RuleSet, metric: Metric, value: &str) -> Vec<String> {
    let payload =
        format!(r#"{{"patientId":"P-1","metric":"{metric}","value":{value},"timestamp":{NOW}}}"#);
    let obs = decode(
        payload.as_bytes(),
        &crate::settings::defaults().decode_limits(),
        NOW,
    )
    .unwrap_or_else(|e| panic!("{payload}: {e}"));
    let ids: Vec<String> = rules.evaluate(&obs).map(|r| r.id.clone()).collect();
    let indexed: Vec<String> = rules
        .evaluate_indexed(&obs)
        .map(|(i, r)| {
            assert_eq!(&rules.rules()[i], r, "index {i} of {}", r.id);
            r.id.clone()
        })
        .collect();
    assert_eq!(ids, indexed);
    ids
}

#[test]
fn shipped_rules_are_the_nine_news2_red_flags_of_the_design() {
    use Condition::{Above, Below};
    use Metric::*;
    let expected = [
        ("respiratory_rate_low", RespiratoryRate, Below(9.0)),
        ("respiratory_rate_high", RespiratoryRate, Above(24.0)),
        ("spo2_low", Spo2, Below(92.0)),
        ("systolic_bp_low", SystolicBp, Below(91.0)),
        ("systolic_bp_high", SystolicBp, Above(219.0)),
        ("heart_rate_low", HeartRate, Below(41.0)),
        ("heart_rate_high", HeartRate, Above(130.0)),
        ("temperature_low", Temperature, Below(35.1)),
        ("temperature_high", Temperature, Above(39.0)),
    ]
    .map(|(id, metric, condition)| (id.to_owned(), metric, condition, Severity::Medium));
    let rules = RuleSet::news2_red_flags();
    assert_eq!(rules.len(), 9);
    assert!(!rules.is_empty());
    let got: Vec<_> = rules
        .rules()
        .iter()
        .map(|r| (r.id.clone(), r.metric, r.condition, r.severity))
        .collect();
    assert_eq!(got, expected);
    // Alarm-fatigue control on every red flag: the default cooldown, a margin in the
    // rule's unit, alerts on the first breaching observation.
    for r in rules.rules() {
        assert_eq!(r.for_ms, 0, "{}", r.id);
        assert_eq!(r.alarm.cooldown_ms, 300_000, "{}", r.id);
        assert!(r.alarm.clear_margin > 0.0, "{}", r.id);
        assert!(!r.alarm.emit_resolved, "{}", r.id);
    }
    let news2 = rules.news2().expect("the shipped set scores NEWS2");
    assert_eq!(news2.max_age_ms, 3_600_000);
    assert_eq!(news2.alarm.cooldown_ms, 300_000);
    assert_eq!(news2.alarm.clear_margin, 1.0);
    assert!(!rules.is_stateless());
}

#[test]
fn shipped_file_on_disk_is_the_compiled_in_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml");
    let loaded = RuleSet::load(&path).unwrap();
    assert_eq!(loaded.rules(), RuleSet::news2_red_flags().rules());
}

#[test]
fn news2_red_flag_boundaries() {
    use Metric::*;
    let table: &[(Metric, &str, Option<&str>)] = &[
        (HeartRate, "130", None),
        (HeartRate, "130.0", None),
        (HeartRate, "130.5", Some("heart_rate_high")),
        (HeartRate, "131", Some("heart_rate_high")),
        (HeartRate, "300", Some("heart_rate_high")),
        (HeartRate, "41", None),
        (HeartRate, "40.5", Some("heart_rate_low")),
        (HeartRate, "40", Some("heart_rate_low")),
        (HeartRate, "0", Some("heart_rate_low")),
        (HeartRate, "75", None),
        (Spo2, "92", None),
        (Spo2, "91.9", Some("spo2_low")),
        (Spo2, "91", Some("spo2_low")),
        (Spo2, "20", Some("spo2_low")),
        (Spo2, "100", None),
        (RespiratoryRate, "8", Some("respiratory_rate_low")),
        (RespiratoryRate, "0", Some("respiratory_rate_low")),
        (RespiratoryRate, "9", None),
        (RespiratoryRate, "24", None),
        (RespiratoryRate, "25", Some("respiratory_rate_high")),
        (RespiratoryRate, "100", Some("respiratory_rate_high")),
        (SystolicBp, "90", Some("systolic_bp_low")),
        (SystolicBp, "91", None),
        (SystolicBp, "219", None),
        (SystolicBp, "220", Some("systolic_bp_high")),
        (Temperature, "35.0", Some("temperature_low")),
        (Temperature, "35.09", Some("temperature_low")),
        (Temperature, "25", Some("temperature_low")),
        (Temperature, "35.1", None),
        (Temperature, "37", None),
        (Temperature, "39.0", None),
        (Temperature, "39", None),
        (Temperature, "39.1", Some("temperature_high")),
        (Temperature, "39.01", Some("temperature_high")),
        (Temperature, "45", Some("temperature_high")),
        (DiastolicBp, "0", None),
        (DiastolicBp, "300", None),
    ];
    let rules = RuleSet::news2_red_flags();
    for &(metric, value, expected) in table {
        let expected: Vec<String> = expected.into_iter().map(String::from).collect();
        assert_eq!(fired(&rules, metric, value), expected, "{metric} = {value}");
        // The same value as Rust parses it, straight into the rules.
        let direct: Vec<String> = rules
            .evaluate(&obs(metric, value.parse().unwrap()))
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(direct, expected, "{metric} = {value} (direct)");
    }
}

#[test]
fn shipped_rules_fire_exactly_on_the_news2_score_3_bands() {
    // An oracle independent of the rules file: the NEWS2 bands that score 3, over every
    // reading a monitor reports (integers; temperature in tenths).
    let rules = RuleSet::news2_red_flags();
    let band = |metric: Metric, v: f64| -> Option<&'static str> {
        match metric {
            Metric::RespiratoryRate if v <= 8.0 => Some("respiratory_rate_low"),
            Metric::RespiratoryRate if v >= 25.0 => Some("respiratory_rate_high"),
            Metric::Spo2 if v <= 91.0 => Some("spo2_low"),
            Metric::SystolicBp if v <= 90.0 => Some("systolic_bp_low"),
            Metric::SystolicBp if v >= 220.0 => Some("systolic_bp_high"),
            Metric::HeartRate if v <= 40.0 => Some("heart_rate_low"),
            Metric::HeartRate if v >= 131.0 => Some("heart_rate_high"),
            Metric::Temperature if v <= 35.0 => Some("temperature_low"),
            Metric::Temperature if v >= 39.1 => Some("temperature_high"),
            _ => None,
        }
    };
    for metric in Metric::ALL {
        let (min, max) = metric.plausible_range();
        let step = if metric == Metric::Temperature { 10 } else { 1 };
        for n in (min as i64 * step)..=(max as i64 * step) {
            let text = if step == 10 {
                format!("{}.{}", n / 10, n % 10)
            } else {
                n.to_string()
            };
            let expected: Vec<String> = band(metric, n as f64 / step as f64)
                .into_iter()
                .map(String::from)
                .collect();
            assert_eq!(fired(&rules, metric, &text), expected, "{metric} = {text}");
        }
    }
}

#[test]
fn conditions_are_strict() {
    assert!(Condition::Above(130.0).fires(130.000_001));
    assert!(!Condition::Above(130.0).fires(130.0));
    assert!(Condition::Below(41.0).fires(40.999_999));
    assert!(!Condition::Below(41.0).fires(41.0));
    assert!(!Condition::Above(1.0).fires(f64::NAN));
    assert!(!Condition::Below(1.0).fires(f64::NAN));
    assert_eq!(Condition::Above(39.0).threshold(), 39.0);
    assert_eq!(Condition::Below(35.1).threshold(), 35.1);
}

#[test]
fn a_site_rules_file_fires_in_file_order_per_metric() {
    let text = r#"
[[threshold]]
id = "hr_very_high"
metric = "heart_rate"
above = 150
severity = "high"

[[threshold]]
id = "spo2_low"
metric = "spo2"
below = 90.5
severity = "low"

[[threshold]]
id = "hr_high"
metric = "heart_rate"
above = 110.0
severity = "medium"
"#;
    let rules = RuleSet::parse(text, Path::new("site.toml")).unwrap();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules.rules()[0].severity, Severity::High);
    assert_eq!(rules.rules()[1].condition, Condition::Below(90.5));
    assert_eq!(rules.rules()[2].severity, Severity::Medium);
    assert_eq!(
        fired(&rules, Metric::HeartRate, "160"),
        ["hr_very_high", "hr_high"]
    );
    assert_eq!(fired(&rules, Metric::HeartRate, "120"), ["hr_high"]);
    assert_eq!(
        fired(&rules, Metric::HeartRate, "110"),
        Vec::<String>::new()
    );
    assert_eq!(fired(&rules, Metric::Spo2, "90"), ["spo2_low"]);
    let indices: Vec<usize> = rules
        .evaluate_indexed(&obs(Metric::HeartRate, 200.0))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(indices, [0, 2]);
    assert_eq!(
        rules.evaluate(&obs(Metric::Temperature, 45.0)).count(),
        0,
        "no rule for the metric"
    );
}

#[test]
fn a_rules_file_without_rules_is_refused() {
    // At start-up as on a reload (one validation for both): a service that alerts on
    // nothing must not start by accident.
    for text in ["", "# no rules yet\n", "[news2]\nenabled = false\n"] {
        let e = RuleSet::parse(text, Path::new("empty.toml")).unwrap_err();
        assert!(
            e.message.contains("no [[threshold]] rules and no [news2]"),
            "{e}"
        );
    }
    assert!(RuleSet::parse("[news2]\n", Path::new("news2-only.toml")).is_ok());
}

#[test]
fn a_threshold_outside_the_plausible_range_is_refused() {
    for (body, says) in [
        ("metric = \"spo2\"\nbelow = 150\n", "fire on every reading"),
        ("metric = \"spo2\"\nabove = -1\n", "fire on every reading"),
        (
            "metric = \"heart_rate\"\nabove = 300\n",
            "no plausible heart_rate reading",
        ),
        (
            "metric = \"temperature\"\nbelow = 25\n",
            "no plausible temperature reading",
        ),
    ] {
        let text = one_rule("r", &format!("{body}severity = \"high\"\n"));
        let e = RuleSet::parse(&text, Path::new("r.toml")).unwrap_err();
        assert!(e.message.contains(says), "{body}: {e}");
        assert_eq!(e.line, Some(4), "{body}: {e}");
    }
}

/// A rules file whose rule `id` (at line `first + 1`) has `body` after its id line.
fn one_rule(id: &str, body: &str) -> String {
    format!("[[threshold]]\nid = \"{id}\"\n{body}")
}

const GOOD: &str = "metric = \"heart_rate\"\nabove = 130\nseverity = \"medium\"\n";

#[test]
fn bad_rules_files_name_file_line_and_rule() {
    // Line numbers below count from 1 in the text as written.
    let good_first = format!("{}\n", one_rule("hr_high", GOOD)); // lines 1-5, blank 6
    let cases: Vec<(&str, String, usize, Option<&str>, &str)> = vec![
        (
            "TOML syntax error",
            format!(
                "{good_first}[[threshold]]\nid = \"b\"\nmetric = \"heart_rate\"\nabove = 130 130\n"
            ),
            10,
            None,
            "",
        ),
        (
            "unterminated string",
            format!("{good_first}[[threshold]]\nid = \"b\nmetric = \"heart_rate\"\n"),
            8,
            None,
            "",
        ),
        (
            "unclosed table header",
            format!("{good_first}\n\n[[threshold]\n"),
            9,
            None,
            "",
        ),
        (
            "key given twice in one rule",
            format!("{good_first}[[threshold]]\nid = \"b\"\nid = \"c\"\n"),
            9,
            None,
            "duplicate key",
        ),
        (
            "duplicate id",
            format!("{good_first}{}", one_rule("hr_high", GOOD)),
            8,
            Some("hr_high"),
            "first defined at line 2",
        ),
        (
            "for_secs past a day",
            one_rule("hr_high", &format!("{GOOD}for_secs = 90000\n")),
            6,
            Some("hr_high"),
            "`for_secs` must be 0 to 86400",
        ),
        (
            "negative clear margin",
            one_rule("hr_high", &format!("{GOOD}clear_margin = -1\n")),
            6,
            Some("hr_high"),
            "`clear_margin` must be a finite number, 0 or more",
        ),
        (
            "negative for_secs",
            one_rule("hr_high", &format!("{GOOD}for_secs = -5\n")),
            6,
            Some("hr_high"),
            "",
        ),
        (
            "a threshold taking a NEWS2 id",
            one_rule("news2_high", GOOD),
            2,
            Some("news2_high"),
            "NEWS2 aggregate's ids",
        ),
        (
            "cooldown past a day in [defaults]",
            format!("[defaults]\ncooldown_secs = 100000\n\n{good_first}"),
            2,
            Some("[defaults]"),
            "`cooldown_secs` must be 0 to 86400",
        ),
        (
            "NEWS2 margin in fractions of a point",
            "[news2]\nmax_age_secs = 600\nclear_margin = 1.5\n".to_owned(),
            3,
            Some("[news2]"),
            "whole score points",
        ),
        (
            "NEWS2 freshness of zero",
            "[news2]\nmax_age_secs = 0\n".to_owned(),
            2,
            Some("[news2]"),
            "`max_age_secs` must be 1 to 86400",
        ),
        (
            "unknown key in [news2]",
            "[news2]\nmax_age = 600\n".to_owned(),
            2,
            None,
            "unknown field `max_age`",
        ),
        (
            "a clear margin past the metric's range",
            one_rule(
                "spo2_low",
                "metric = \"spo2\"\nbelow = 92\nseverity = \"medium\"\nclear_margin = 10\n",
            ),
            6,
            Some("spo2_low"),
            "would clear at 102, outside spo2's range [20, 100] %",
        ),
        (
            "unknown metric",
            one_rule(
                "pulse_high",
                "metric = \"pulse\"\nabove = 130\nseverity = \"medium\"\n",
            ),
            3,
            Some("pulse_high"),
            "unknown metric \"pulse\"",
        ),
        (
            "neither above nor below",
            format!(
                "{good_first}{}",
                one_rule("x", "metric = \"spo2\"\nseverity = \"medium\"\n")
            ),
            7,
            Some("x"),
            "give one of `above` or `below`",
        ),
        (
            "both above and below",
            one_rule(
                "band",
                "metric = \"spo2\"\nabove = 99\nbelow = 92\nseverity = \"medium\"\n",
            ),
            5,
            Some("band"),
            "give only one of `above` or `below`",
        ),
        (
            "unknown severity",
            one_rule(
                "x",
                "metric = \"spo2\"\nbelow = 92\nseverity = \"critical\"\n",
            ),
            5,
            Some("x"),
            "unknown severity \"critical\"",
        ),
        (
            "severity in the wrong case",
            one_rule(
                "x",
                "metric = \"spo2\"\nbelow = 92\nseverity = \"Medium\"\n",
            ),
            5,
            Some("x"),
            "unknown severity",
        ),
        (
            "typo in a field name",
            format!(
                "{good_first}{}",
                one_rule("x", "metric = \"spo2\"\nabve = 92\nseverity = \"medium\"\n")
            ),
            10,
            Some("x"),
            "unknown field `abve`",
        ),
        (
            "typo in the first rule's field name",
            one_rule(
                "first",
                "metric = \"spo2\"\nbelow = 92\nseverity = \"medium\"\nsevrity = \"low\"\n",
            ),
            6,
            Some("first"),
            "unknown field `sevrity`",
        ),
        (
            "threshold as a string",
            one_rule(
                "x",
                "metric = \"spo2\"\nbelow = \"92\"\nseverity = \"medium\"\n",
            ),
            4,
            Some("x"),
            "invalid type",
        ),
        (
            "id as a number",
            format!("{good_first}[[threshold]]\nid = 7\n{GOOD}"),
            8,
            Some("threshold #2"),
            "invalid type",
        ),
        (
            "missing id",
            format!("{good_first}[[threshold]]\n{GOOD}"),
            7,
            Some("threshold #2"),
            "`id` is missing",
        ),
        (
            "empty id",
            one_rule("", GOOD),
            2,
            Some(""),
            "`id` must be non-empty",
        ),
        (
            "id with a space",
            one_rule("heart rate", GOOD),
            2,
            Some("heart rate"),
            "without whitespace",
        ),
        (
            "missing metric",
            one_rule("x", "above = 1\nseverity = \"medium\"\n"),
            1,
            Some("x"),
            "`metric` is missing",
        ),
        (
            "missing severity",
            one_rule("x", "metric = \"spo2\"\nbelow = 92\n"),
            1,
            Some("x"),
            "`severity` is missing",
        ),
        (
            "infinite threshold",
            one_rule(
                "x",
                "metric = \"spo2\"\nbelow = inf\nseverity = \"medium\"\n",
            ),
            4,
            Some("x"),
            "finite",
        ),
        (
            "negative infinite threshold",
            one_rule(
                "x",
                "metric = \"spo2\"\nabove = -inf\nseverity = \"medium\"\n",
            ),
            4,
            Some("x"),
            "finite",
        ),
        (
            "NaN threshold",
            format!(
                "{good_first}{}",
                one_rule(
                    "x",
                    "metric = \"spo2\"\nseverity = \"medium\"\nabove = nan\n"
                )
            ),
            11,
            Some("x"),
            "finite",
        ),
        (
            "misspelt table",
            "[[thresholds]]\nid = \"x\"\n".to_string(),
            1,
            None,
            "unknown field `thresholds`",
        ),
        (
            "threshold is not an array of tables",
            "\n\nthreshold = 3\n".to_string(),
            3,
            None,
            "invalid type",
        ),
    ];
    let file = PathBuf::from("site/rules.toml");
    for (name, text, line, rule, message) in cases {
        let e = match RuleSet::parse(&text, &file) {
            Ok(rules) => panic!("{name}: accepted {} rules from\n{text}", rules.len()),
            Err(e) => e,
        };
        assert_eq!(e.file, file, "{name}");
        assert_eq!(e.line, Some(line), "{name}: {e}\n{text}");
        assert_eq!(e.rule.as_deref(), rule, "{name}: {e}");
        assert!(e.message.contains(message), "{name}: {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("rules file site/rules.toml, line {line}")),
            "{name}: {shown}"
        );
        if let Some(rule) = rule {
            assert!(
                shown.contains(&format!(", rule `{rule}`: ")),
                "{name}: {shown}"
            );
        }
    }
}

#[test]
fn an_unreadable_rules_file_names_the_file() {
    let path = std::env::temp_dir().join(format!("vw-no-such-rules-{}.toml", std::process::id()));
    let e = RuleSet::load(&path).unwrap_err();
    assert_eq!(e.file, path);
    assert_eq!((e.line, e.rule.as_deref()), (None, None));
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn a_rules_file_is_loaded_from_disk() {
    let dir = std::env::temp_dir().join(format!("vw-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.toml");
    std::fs::write(&path, one_rule("hr_high", GOOD)).unwrap();
    let rules = RuleSet::load(&path).unwrap();
    assert_eq!(rules.len(), 1);
    std::fs::write(&path, format!("\n{}", one_rule("hr high", GOOD))).unwrap();
    let e = RuleSet::load(&path).unwrap_err();
    assert_eq!((e.file.as_path(), e.line), (path.as_path(), Some(3)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn line_index_agrees_with_counting_newlines() {
    let text = "a = 1\n\n[[threshold]]\nid = \"x\"\r\nmetric = \"spo2\"\nend";
    // The reference: count the newlines before the offset.
    let line_of = |text: &str, at: usize| {
        let at = at.min(text.len());
        text.as_bytes()[..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    let lines = parse::Source::new(Path::new("rules.toml"), text);
    for at in 0..=text.len() + 2 {
        assert_eq!(lines.line_at(at), line_of(text, at), "offset {at}");
    }
}

#[test]
fn a_large_rule_set_loads_and_still_names_the_duplicate_line() {
    use std::fmt::Write as _;
    let mut text = String::new();
    for i in 0..20_000 {
        let _ = write!(
            text,
            "[[threshold]]\nid = \"r{i}\"\nmetric = \"heart_rate\"\nabove = {}\nseverity = \"low\"\n",
            100 + i % 200
        );
    }
    let set = RuleSet::parse(&text, Path::new("big.toml")).expect("valid");
    assert_eq!(set.len(), 20_000);
    // The same id again at the end: the error points at rule r7's own `id` line (line 2
    // of the 8th rule, 5 lines per rule).
    text.push_str(
        "[[threshold]]\nid = \"r7\"\nmetric = \"spo2\"\nbelow = 80\nseverity = \"low\"\n",
    );
    let err = RuleSet::parse(&text, Path::new("big.toml")).expect_err("duplicate");
    let msg = err.to_string();
    assert!(msg.contains("line 100002"), "{msg}");
    assert!(msg.contains("first defined at line 37"), "{msg}");
}

#[test]
fn a_rule_set_written_as_toml_parses_back_to_itself() {
    let shipped = RuleSet::news2_red_flags();
    for set in [shipped.clone(), shipped.stateless()] {
        let back = RuleSet::parse(&set.to_toml(), Path::new("written.toml")).unwrap();
        assert_eq!(back.rules(), set.rules());
        assert_eq!(back.news2(), set.news2());
    }
}

#[test]
fn the_stateless_variant_alerts_every_breach_and_scores_no_news2() {
    let set = RuleSet::news2_red_flags().stateless();
    assert!(set.is_stateless());
    assert!(set.news2().is_none());
    assert_eq!(set.len(), 9);
    assert_eq!(set.longest_memory_ms(), 0);
}

#[test]
fn news2_single_clear_margins_default_to_the_red_flags_and_are_validated() {
    let n = *RuleSet::parse("[news2]\n", Path::new("n.toml"))
        .unwrap()
        .news2()
        .unwrap();
    assert_eq!(n.single_clear_margin(Metric::HeartRate), 5.0);
    assert_eq!(n.single_clear_margin(Metric::Spo2), 1.0);
    let set = RuleSet::parse(
        "[news2]\nsingle_clear_margin = { heart_rate = 3, temperature = 0.5 }\n",
        Path::new("n.toml"),
    )
    .unwrap();
    let n = set.news2().unwrap();
    assert_eq!(n.single_clear_margin(Metric::HeartRate), 3.0);
    assert_eq!(n.single_clear_margin(Metric::Temperature), 0.5);
    assert_eq!(
        n.single_clear_margin(Metric::Spo2),
        1.0,
        "not given: the default"
    );
    // It survives the round trip through to_toml.
    let back = RuleSet::parse(&set.to_toml(), Path::new("back.toml")).unwrap();
    assert_eq!(back.news2(), set.news2());
    for (text, says) in [
        (
            "single_clear_margin = { glucose = 1 }",
            "no parameter \"glucose\"",
        ),
        (
            "single_clear_margin = { consciousness = 1 }",
            "no parameter \"consciousness\"",
        ),
        ("single_clear_margin = { heart_rate = -1 }", "0 or more"),
    ] {
        let e = RuleSet::parse(&format!("[news2]\n{text}\n"), Path::new("n.toml")).unwrap_err();
        assert!(e.message.contains(says), "{text}: {e}");
        assert_eq!(e.line, Some(2), "{text}: {e}");
    }
}
