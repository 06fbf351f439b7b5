//! The demo and loadgen: the ward simulator's clinical story, loadgen's determinism on a
//! mock cluster, and the `vitalwatch demo` binary end to end (normal end and Ctrl-C).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::mocking::MockCluster;
use vitalwatch::cli::{Cli, Command as Sub};
use vitalwatch::rules::RuleSet;
use vitalwatch::tools::Command as Tool;
use vitalwatch::tools::cli::LoadgenArgs;
use vitalwatch::tools::ward::{self, Course, Kind, Ward, WardConfig};
use vitalwatch::vitals::{DecodeError, Metric, decode};

mod support;

use support::http::get_text;
use support::kafka;
use support::process::{command, line_channel, signal};

const T0: i64 = 1_763_798_400_000;

/// A 60 s course at 2 000 observations/s over 200 patients, seed 42: the deteriorating
/// patients (every 30th from P-000001) raise exactly heart_rate_high,
/// respiratory_rate_high and spo2_low, none in the first 5% of the course and on every
/// such reading in the last third; the COPD patients (every 40th from P-000011 but
/// P-000091) raise `spo2_low` on Scale 1, which is what their Scale 2 context silences
/// (a unit test of the ward checks that); every other patient raises nothing; every DLQ
/// reason appears in about 0.5% of the messages.
#[test]
fn ward_deteriorating_patients_raise_the_expected_rules_and_stable_ones_none() {
    let (patients, rate, secs) = (200u32, 2_000i64, 60i64);
    let course = Course {
        start_ms: T0,
        length_ms: secs * 1000,
    };
    let mut w = Ward::new(WardConfig::demo(42, patients, course, 65_537));
    let expected_ids: Vec<String> = (1..=patients)
        .filter(|&n| ward::is_deteriorating(n))
        .map(ward::patient_id)
        .collect();
    assert_eq!(expected_ids.len(), 7);
    assert_eq!(w.deteriorating().collect::<Vec<_>>(), expected_ids);
    let copd_ids: Vec<String> = (1..=patients)
        .filter(|&n| ward::is_copd(n))
        .map(ward::patient_id)
        .collect();
    assert_eq!(copd_ids, ["P-000011", "P-000051", "P-000131", "P-000171"]);
    assert_eq!(w.copd().collect::<Vec<_>>(), copd_ids);

    let rules = RuleSet::news2_red_flags();
    let limits = vitalwatch::settings::defaults().decode_limits();
    let end = T0 + secs * 1000;
    let mut fired: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut late_readings = 0;
    let total = (rate * secs) as usize;
    for i in 0..total {
        let now = T0 + (i as i64) * 1000 / rate;
        let msg = w.next(now);
        match decode(&msg.payload, &limits, end) {
            Ok(obs) => {
                assert_eq!(msg.kind, Kind::Normal);
                assert_eq!(obs.patient_id, msg.key.as_str());
                let raised: Vec<&str> = rules.evaluate(&obs).map(|r| r.id.as_str()).collect();
                let deteriorating = expected_ids.contains(&msg.key);
                if now < T0 + secs * 50 && !copd_ids.contains(&msg.key) {
                    assert!(raised.is_empty(), "alert in the first 5%: {msg:?}");
                }
                let watched = matches!(
                    obs.metric,
                    Metric::HeartRate | Metric::RespiratoryRate | Metric::Spo2
                );
                if deteriorating && watched && now >= T0 + secs * 1000 * 2 / 3 {
                    assert_eq!(raised.len(), 1, "late reading without alert: {msg:?}");
                    late_readings += 1;
                }
                for r in raised {
                    fired
                        .entry(msg.key.clone())
                        .or_default()
                        .insert(r.to_owned());
                }
            }
            Err(e) => {
                assert_eq!(msg.kind, Kind::Invalid(e.reason()), "{msg:?}");
                *reasons.entry(e.reason()).or_default() += 1;
            }
        }
    }
    // 7 patients × 100 pulse/RR/SpO2 readings each in the last third, less the malformed.
    assert!(late_readings > 650, "{late_readings}");
    let expected_rules: BTreeSet<String> = ["heart_rate_high", "respiratory_rate_high", "spo2_low"]
        .map(String::from)
        .into();
    let spo2_low: BTreeSet<String> = ["spo2_low".to_owned()].into();
    let expected: BTreeMap<String, BTreeSet<String>> = expected_ids
        .iter()
        .map(|id| (id.clone(), expected_rules.clone()))
        .chain(copd_ids.iter().map(|id| (id.clone(), spo2_low.clone())))
        .collect();
    // Equal maps: the deteriorating patients raise exactly these rules, the COPD patients
    // spo2_low (on Scale 1), nobody else any.
    assert_eq!(fired, expected);

    assert_eq!(
        reasons.keys().copied().collect::<BTreeSet<_>>(),
        DecodeError::REASONS.into_iter().collect::<BTreeSet<_>>()
    );
    let invalid: usize = reasons.values().sum();
    let share = invalid as f64 / total as f64;
    assert!((0.003..0.007).contains(&share), "malformed share {share}");
}

fn loadgen_args(brokers: &str, topic: &str, seed: u64) -> LoadgenArgs {
    let seed = seed.to_string();
    let argv = [
        "vitalwatch",
        "loadgen",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--messages",
        "100000",
        "--seed",
        &seed,
        // Fixed timestamps: byte-identical runs (the default follows the wall clock).
        "--base-timestamp",
        "1763798400000",
    ];
    match Cli::try_parse_from(argv).expect("loadgen flags").command {
        Sub::Tool(Tool::Loadgen(args)) => args,
        other => panic!("parsed as {other:?}"),
    }
}

/// Per partition, every (key, payload) of `topic` in offset order.
type Partitions = BTreeMap<i32, Vec<(Vec<u8>, Vec<u8>)>>;

fn read_topic(brokers: &str, topic: &str, expect: usize) -> Partitions {
    let mut out = Partitions::new();
    for r in kafka::read_until(brokers, topic, expect, Duration::from_secs(120)) {
        out.entry(r.partition)
            .or_default()
            .push((r.key.clone().unwrap_or_default(), r.value().to_vec()));
    }
    out
}

/// `loadgen --messages 100000 --seed 7` twice: the same keys and payloads in the same
/// order in every partition; keyed by patient; another seed gives other messages.
#[test]
fn loadgen_with_a_seed_produces_byte_identical_topics() {
    let mock = MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    let partitions = 4;
    for t in ["lg-a", "lg-b", "lg-c"] {
        mock.create_topic(t, partitions, 1).unwrap();
    }

    let a = vitalwatch::tools::loadgen::run(&loadgen_args(&brokers, "lg-a", 7)).unwrap();
    let b = vitalwatch::tools::loadgen::run(&loadgen_args(&brokers, "lg-b", 7)).unwrap();
    assert_eq!((a.produced, b.produced), (100_000, 100_000));
    assert_eq!((a.invalid, a.abnormal), (b.invalid, b.abnormal));
    assert!(a.invalid > 0 && a.abnormal > 0);
    eprintln!(
        "loadgen on the mock cluster: {:.0} and {:.0} msg/s",
        a.rate(),
        b.rate()
    );

    let ta = read_topic(&brokers, "lg-a", 100_000);
    let tb = read_topic(&brokers, "lg-b", 100_000);
    assert_eq!(ta.values().map(Vec::len).sum::<usize>(), 100_000);
    assert_eq!(ta.len(), partitions as usize, "every partition used");
    assert!(ta == tb, "the two topics differ");

    // Keyed by patient: one patient's messages all sit in one partition, and the key is
    // the payload's patient id whenever the payload decodes.
    let mut home: BTreeMap<&[u8], i32> = BTreeMap::new();
    let limits = vitalwatch::settings::defaults().decode_limits();
    // The wall clock of the fixed --base-timestamp run: every timestamp is in range.
    let now = 1_763_798_400_000 + 100_000;
    let mut decoded = 0;
    for (p, msgs) in &ta {
        for (key, payload) in msgs {
            assert_eq!(*home.entry(key).or_insert(*p), *p);
            if let Ok(obs) = decode(payload, &limits, now) {
                assert_eq!(obs.patient_id.as_bytes(), key.as_slice());
                decoded += 1;
            }
        }
    }
    assert!(decoded > 98_000, "{decoded} of 100 000 decoded");
    assert_eq!(home.len(), 1000, "the default 1000 patients");

    let mut other = loadgen_args(&brokers, "lg-c", 8);
    other.messages = 1_000;
    vitalwatch::tools::loadgen::run(&other).unwrap();
    let tc = read_topic(&brokers, "lg-c", 1_000);
    let first = |t: &Partitions| {
        t.values()
            .flat_map(|v| v.iter().take(5))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_ne!(first(&ta), first(&tc));
}

/// A running `vitalwatch demo` whose stdout lines arrive on a channel.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(extra: &[&str]) -> Demo {
        let mut child = command(&["demo", "--rate", "1000", "--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start vitalwatch demo");
        let stdout = child.stdout.take().expect("stdout");
        Demo {
            child,
            lines: line_channel(stdout),
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `pred`; returns it.
    fn until(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no such line within {timeout:?}; output:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for the exit (killing it after `timeout`) and collects the rest of stdout.
    fn finish(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "demo did not exit within {timeout:?}; output:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status, self.seen)
    }
}

/// "metrics  http://127.0.0.1:PORT/metrics ..." → 127.0.0.1:PORT.
fn metrics_addr(line: &str) -> String {
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL");
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned()
}

/// The summary's "produced N  consumed M" numbers.
fn produced_consumed(lines: &[String]) -> (u64, u64) {
    let line = lines
        .iter()
        .find(|l| l.trim_start().starts_with("messages") && l.contains("produced"))
        .unwrap_or_else(|| panic!("no summary; output:\n{}", lines.join("\n")));
    let num = |word: &str| -> u64 {
        let mut it = line.split_whitespace();
        it.find(|w| *w == word);
        it.next().and_then(|n| n.parse().ok()).expect("a count")
    };
    (num("produced"), num("consumed"))
}

fn is_status(line: &str) -> bool {
    line.contains("consumed") && line.contains("/s") && line.contains("lag")
}

/// `vitalwatch demo --duration 5`: /metrics answers while it runs, alerts are printed,
/// it exits 0 with a summary whose consumed count equals what the ward produced.
#[test]
fn demo_runs_prints_alerts_and_a_lossless_summary() {
    let mut demo = Demo::start(&["--duration", "5"]);
    let addr = metrics_addr(&demo.until(Duration::from_secs(60), |l| {
        l.trim_start().starts_with("metrics") && l.contains("http://")
    }));
    demo.until(Duration::from_secs(30), is_status);
    let addr = addr.parse().expect("a socket address");
    let (code, body) = get_text(addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("vitalwatch_messages_consumed_total"),
        "{body}"
    );

    let (status, lines) = demo.finish(Duration::from_secs(120));
    let output = lines.join("\n");
    assert!(status.success(), "{status}; output:\n{output}");
    let alerts: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" MEDIUM ") && l.contains("P-"))
        .collect();
    assert!(!alerts.is_empty(), "no alert printed:\n{output}");
    let (produced, consumed) = produced_consumed(&lines);
    assert!(produced > 1_000, "{output}");
    assert_eq!(produced, consumed, "{output}");
    assert!(lines.iter().any(|l| l.contains("ok:")), "{output}");
    assert!(lines.iter().any(|l| l.contains("too_large")), "{output}");

    // The COPD patients on Scale 2: named in the header, and quiet at SpO2 88-92 %.
    assert!(
        lines.iter().any(|l| l
            .contains("COPD, NEWS2 SpO2 Scale 2: P-000011, P-000051, P-000131, P-000171")),
        "{output}"
    );
    let copd = lines
        .iter()
        .find(|l| l.trim_start().starts_with("COPD, Scale 2"))
        .unwrap_or_else(|| panic!("no COPD line in the summary:\n{output}"));
    assert!(
        copd.contains("4 patients at SpO2 88–92 %: 0 SpO2 or NEWS2 alerts")
            && copd.contains("on Scale 1 the same readings raise")
            && copd.contains("= 0 expected"),
        "{copd}"
    );
}

/// SIGINT mid-run: the demo drains, prints the summary (nothing lost) and exits 0.
#[test]
fn demo_interrupted_with_sigint_still_prints_the_summary() {
    let mut demo = Demo::start(&["--duration", "0"]);
    // Once consumption has started, interrupt.
    demo.until(Duration::from_secs(60), |l| {
        is_status(l) && !l.contains("total       0")
    });
    signal(demo.child.id(), "-INT");

    let (status, lines) = demo.finish(Duration::from_secs(120));
    let output = lines.join("\n");
    assert!(status.success(), "{status}; output:\n{output}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("summary") && l.contains("interrupted")),
        "{output}"
    );
    let (produced, consumed) = produced_consumed(&lines);
    assert!(produced > 0);
    assert_eq!(produced, consumed, "{output}");
    assert!(lines.iter().any(|l| l.contains("ok:")), "{output}");
}

/// `loadgen -c FILE` hands the file's `[kafka.client]` properties to its producer (how it
/// reaches a TLS/SASL cluster): an invalid value there is refused by librdkafka when the
/// producer is created, naming the property, before anything is sent.
#[test]
fn loadgen_applies_the_client_settings_of_its_config_file() {
    let dir = std::env::temp_dir().join(format!("vw-loadgen-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("client.toml");
    std::fs::write(&file, "[kafka.client]\n\"linger.ms\" = \"soon\"\n").expect("write");
    let mut args = loadgen_args("127.0.0.1:1", "loadgen-config", 1);
    args.config = Some(file);
    let err = vitalwatch::tools::loadgen::run(&args).expect_err("an invalid client property");
    let msg = format!("{err:#}");
    assert!(msg.contains("linger.ms"), "{msg}");
}
