//! Hostile input through the whole pipeline (issue #10): every class of malformed or
//! malicious message the decoder defends against, each several times with its own key,
//! interleaved with valid traffic. Every hostile message must be dead-lettered with the
//! reason written out below (not one computed by the decoder under test), none may raise
//! an alert, the valid traffic before and after them is alerted exactly, everything is
//! committed, and the process's peak memory stays bounded.
//!
//! Some hostile shapes are valid observations by contract ("other fields are ignored"):
//! 10 000 nested arrays, `1e400` or a lone surrogate in an unknown field. They must be
//! evaluated like any other reading (and must not overflow a stack), so they are
//! "tolerated", not dead-lettered.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use vitalwatch::alert::{Source, alert_id};
use vitalwatch::pipeline::Hooks;
use vitalwatch::vitals::{DecodeLimits, decode};

use crate::helpers::*;

/// The production default, so that 10 000 nested arrays (20 KB) fit under the cap.
const MAX_BYTES: usize = 65_536;

/// A hostile message: its class, the reason it must be dead-lettered with (`None`: it is
/// a valid observation and must be evaluated), and its payload.
struct Hostile {
    class: &'static str,
    reason: Option<&'static str>,
    payload: Vec<u8>,
}

/// An observation that breaches `heart_rate_high` (180 > 130): if any hostile variant of
/// it were accepted, it would alert.
fn obs(patient: &str, value: &str, timestamp: &str) -> String {
    format!(
        r#"{{"patientId":"{patient}","metric":"heart_rate","value":{value},"timestamp":{timestamp}}}"#
    )
}

/// `json` with the raw bytes `bytes` in place of the first `marker`.
fn splice(json: &str, marker: &str, bytes: &[u8]) -> Vec<u8> {
    let at = json.find(marker).expect("marker");
    let mut out = json.as_bytes()[..at].to_vec();
    out.extend_from_slice(bytes);
    out.extend_from_slice(&json.as_bytes()[at + marker.len()..]);
    out
}

/// A breaching observation padded with an ignored field to exactly `size` bytes.
fn padded(patient: &str, now: &str, size: usize) -> Vec<u8> {
    let head = obs(patient, "180", now);
    let head = &head[..head.len() - 1];
    let fill = size - head.len() - r#","pad":""}"#.len();
    format!(r#"{head},"pad":"{}"}}"#, "x".repeat(fill)).into_bytes()
}

fn hostile_messages(now: i64) -> Vec<Hostile> {
    let ts = now.to_string();
    let mut out = Vec::new();
    let mut add = |class: &'static str, reason: Option<&'static str>, payload: Vec<u8>| {
        out.push(Hostile {
            class,
            reason,
            payload,
        })
    };
    let s = |t: String| t.into_bytes();
    let breach = obs("H-P", "180", &ts);
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let with_extra = |extra: &str| format!(r#"{},"extra":{extra}}}"#, &breach[..breach.len() - 1]);

    // Size is checked before anything else is looked at.
    add(
        "size cap",
        Some("too_large"),
        padded("H-P", &ts, MAX_BYTES + 1),
    );
    add("size cap", Some("too_large"), vec![b'x'; 200 * 1024]);
    add("size cap", Some("too_large"), padded("H-P", &ts, 900_000));
    let mut big_bad = padded("H-P", &ts, MAX_BYTES + 10);
    big_bad[20] = 0xff;
    add("size cap", Some("too_large"), big_bad);
    add(
        "size cap",
        Some("too_large"),
        s(format!("{{\"x\":{}", "[".repeat(MAX_BYTES + 1))),
    );

    // Non-finite numbers: not JSON.
    for v in ["NaN", "Infinity", "-Infinity"] {
        add("NaN/Infinity", Some("invalid_json"), s(obs("H-P", v, &ts)));
    }
    add(
        "NaN/Infinity",
        Some("invalid_json"),
        s(obs("H-P", "180", "NaN")),
    );
    add("NaN/Infinity", Some("invalid_json"), s(with_extra("NaN")));

    // Numbers beyond f64.
    for v in ["1e400", "-1e400", "1.8e308"] {
        add("1e400", Some("invalid_json"), s(obs("H-P", v, &ts)));
    }
    add("1e400", Some("invalid_json"), s(obs("H-P", "180", "1e400")));

    // A UTF-8 byte order mark before the JSON.
    add(
        "UTF-8 BOM",
        Some("invalid_json"),
        s(format!("\u{feff}{breach}")),
    );
    add(
        "UTF-8 BOM",
        Some("invalid_json"),
        s(format!(" \u{feff}{breach}")),
    );
    add(
        "UTF-8 BOM",
        Some("invalid_json"),
        s(format!("\u{feff}\u{feff}{breach}")),
    );

    // Invalid UTF-8 anywhere.
    add(
        "invalid UTF-8",
        Some("not_utf8"),
        splice(&breach, "H-P", &[b'H', 0xff]),
    );
    add(
        "invalid UTF-8",
        Some("not_utf8"),
        splice(&breach, "H-P", &[0xc0, 0xaf]),
    );
    add(
        "invalid UTF-8",
        Some("not_utf8"),
        splice(&breach, "H-P", &[0xed, 0xa0, 0x80]),
    );
    let mut cut = breach.as_bytes().to_vec();
    cut.extend_from_slice(&[0xe2, 0x82]);
    add("invalid UTF-8", Some("not_utf8"), cut);
    let mut utf16 = vec![0xff, 0xfe];
    for unit in breach.encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    add("invalid UTF-8", Some("not_utf8"), utf16);

    // Lone surrogates escaped in strings the decoder reads.
    for id in [r"H-\ud800", r"H-\udc00", r"\ud800\u0041", r"H-\udbff"] {
        add(
            "lone surrogate",
            Some("invalid_json"),
            s(obs(id, "180", &ts)),
        );
    }
    add(
        "lone surrogate",
        Some("invalid_json"),
        s(breach.replace("heart_rate", r"heart_rate\ud800")),
    );

    // Duplicate keys: whichever copy were taken, a reading would be invented or hidden.
    add(
        "duplicate key",
        Some("invalid_json"),
        s(obs("H-P", "72", &ts).replace('}', r#","value":180}"#)),
    );
    add(
        "duplicate key",
        Some("invalid_json"),
        s(obs("H-P", "180", &ts).replace('}', r#","value":72}"#)),
    );
    add(
        "duplicate key",
        Some("invalid_json"),
        s(obs("H-P", "72", &ts).replace('}', r#","\u0076alue":180}"#)),
    );
    add(
        "duplicate key",
        Some("invalid_json"),
        s(breach.replace('}', r#","patientId":"H-Q"}"#)),
    );
    add(
        "duplicate key",
        Some("invalid_json"),
        s(obs("H-P", "97", &ts).replace('}', r#","metric":"spo2"}"#)),
    );

    // Deep nesting: never a stack overflow; in a field the decoder reads it is a wrong
    // type, unclosed it is no JSON.
    add(
        "deep nesting",
        Some("invalid_json"),
        s(format!("{{\"extra\":{}", "[".repeat(10_000))),
    );
    add(
        "deep nesting",
        Some("wrong_type"),
        s(obs("H-P", &nest(10_000), &ts)),
    );
    add(
        "deep nesting",
        Some("wrong_type"),
        s(obs(
            "H-P",
            "180",
            &format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)),
        )),
    );
    add("deep nesting", Some("invalid_json"), s(nest(10_000)));

    // Numbers as strings.
    add(
        "number as string",
        Some("wrong_type"),
        s(obs("H-P", "\"180\"", &ts)),
    );
    add(
        "number as string",
        Some("wrong_type"),
        s(obs("H-P", "\"138\"", &ts)),
    );
    add(
        "number as string",
        Some("wrong_type"),
        s(obs("H-P", "180", &format!("\"{ts}\""))),
    );

    // null for a required field.
    add(
        "null required",
        Some("wrong_type"),
        s(breach.replace("\"H-P\"", "null")),
    );
    add(
        "null required",
        Some("wrong_type"),
        s(breach.replace("\"heart_rate\"", "null")),
    );
    add(
        "null required",
        Some("wrong_type"),
        s(obs("H-P", "null", &ts)),
    );
    add(
        "null required",
        Some("wrong_type"),
        s(obs("H-P", "180", "null")),
    );

    // Control characters in ids: raw ones are no JSON, escaped ones no patient id.
    add(
        "control char in id",
        Some("invalid_json"),
        s(obs("H-P\u{7}", "180", &ts)),
    );
    add(
        "control char in id",
        Some("invalid_json"),
        s(obs("H-P\u{0}", "180", &ts)),
    );
    add(
        "control char in id",
        Some("bad_patient_id"),
        s(obs(r"H-P\u0007", "180", &ts)),
    );
    add(
        "control char in id",
        Some("bad_patient_id"),
        s(obs(r"\u001b[2JH-P", "180", &ts)),
    );
    add(
        "control char in id",
        Some("bad_patient_id"),
        s(obs("H-P\u{7f}", "180", &ts)),
    );
    add(
        "control char in id",
        Some("bad_patient_id"),
        s(obs(r"\u0000", "180", &ts)),
    );

    // Timestamps out of range or not an integer.
    for t in [
        "-1".to_string(),
        "0".to_string(),
        "946684799999".to_string(),
        (now + 86_400_000).to_string(),
        i64::MAX.to_string(),
        u64::MAX.to_string(),
    ] {
        add("timestamp", Some("bad_timestamp"), s(obs("H-P", "180", &t)));
    }
    for t in [
        "1.5e12",
        "1763798400000.5",
        "1e30",
        "-1e30",
        "99999999999999999999",
    ] {
        add("timestamp", Some("wrong_type"), s(obs("H-P", "180", t)));
    }

    // Hostile-looking but valid: other fields are ignored, however deep or odd.
    add("tolerated", None, s(with_extra(&nest(10_000))));
    add(
        "tolerated",
        None,
        s(with_extra(&format!(
            "{}null{}",
            "{\"a\":".repeat(10_000),
            "}".repeat(10_000)
        ))),
    );
    add("tolerated", None, s(with_extra("1e400")));
    add("tolerated", None, s(with_extra(r#""\ud800""#)));
    add(
        "tolerated",
        None,
        s(with_extra(r#"{"value":"x","patientId":null}"#)),
    );
    out
}

/// Peak resident set size of this process (`VmHWM`), in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Every hostile class, several messages each with a distinct key, interleaved with valid
/// traffic and followed by more of it: all dead-lettered with the expected reason, no
/// alert from any of them, the valid traffic alerted exactly, everything committed,
/// memory bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_dead_lettered_with_its_reason_and_never_alerts() {
    let t0 = Instant::now();
    let hwm_before = vm_hwm_kib();
    let cluster = Cluster::new(4);
    let now = vitalwatch::clock::now_ms();
    let hostile = hostile_messages(now);

    // Valid traffic: every third message breaches heart_rate_high.
    let valid = |i: usize| {
        let patient = format!("V-{:03}", i % 40);
        let value = if i.is_multiple_of(3) { "140" } else { "72" };
        let payload = obs(&patient, value, &(now - 60_000 + i as i64).to_string());
        (patient, payload.into_bytes())
    };
    let mut msgs: Vec<(String, Vec<u8>)> = Vec::new();
    // key → (class, expected reason) of each hostile message.
    let mut expect: BTreeMap<String, (&str, Option<&str>)> = BTreeMap::new();
    let mut v = 0;
    for (i, h) in hostile.iter().enumerate() {
        msgs.push(valid(v));
        v += 1;
        let key = format!("H-{i:03}");
        expect.insert(key.clone(), (h.class, h.reason));
        msgs.push((key, h.payload.clone()));
    }
    // Valid traffic after all of them: every worker must still be alive to alert it.
    let tail_from = v;
    for _ in 0..400 {
        msgs.push(valid(v));
        v += 1;
    }
    cluster.produce(&msgs).await;
    drop(hostile);

    let input = cluster.read_all(&cluster.input, msgs.len(), Duration::from_secs(30));
    assert_eq!(input.len(), msgs.len());
    let key_of = |r: &Record| String::from_utf8(r.key.clone().unwrap()).unwrap();
    let mut expected_dlq: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut hostile_at: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut evaluated = Vec::new();
    for r in &input {
        let key = key_of(r);
        match expect.get(&key) {
            Some((_, Some(reason))) => {
                expected_dlq.insert((r.partition, r.offset), reason.to_string());
                hostile_at.insert((r.partition, r.offset), key);
            }
            Some((_, None)) | None => evaluated.push(r.clone()),
        }
    }
    // The alerts the evaluated messages raise, by the library's rules; the tolerated
    // hostile ones each breach heart_rate_high. (helpers::oracle decodes with the 4 KiB
    // test cap, which the 20 KB tolerated ones exceed.)
    let limits = DecodeLimits {
        max_message_bytes: MAX_BYTES,
        ..vitalwatch::settings::defaults().decode_limits()
    };
    let mut expected_alerts: BTreeSet<String> = BTreeSet::new();
    for r in &evaluated {
        let obs = decode(r.value(), &limits, now)
            .unwrap_or_else(|e| panic!("{:?} failed to decode: {e}", r.key));
        let source = Source {
            topic: &cluster.input,
            partition: r.partition,
            offset: r.offset,
        };
        for rule in super::rules().evaluate(&obs) {
            expected_alerts.insert(alert_id(&source, &rule.id).to_string());
        }
    }
    let tolerated = expect.values().filter(|(_, r)| r.is_none()).count();
    assert_eq!(expected_alerts.len(), v.div_ceil(3) + tolerated);

    let mut config = cluster.config("hostile");
    config.limits = limits;
    let running = start(config, super::rules(), Hooks::default());
    let all_done = running
        .wait_for(Duration::from_secs(60), |s| {
            let c = s.counts();
            // Everything read and finished, whichever way the decoder judged it.
            c.consumed as usize >= msgs.len() && c.dlq + c.evaluated >= c.consumed
        })
        .await;
    assert!(all_done, "pipeline stuck: {:?}", running.status.counts());
    let report = running.stop().await;
    assert!(report.clean, "{report:?}");
    assert_eq!(report.counts.consumed as usize, msgs.len());

    // Every hostile message dead-lettered, with its reason, unchanged.
    let dlq = cluster.read_all(
        &cluster.dlq,
        report.counts.dlq as usize,
        Duration::from_secs(30),
    );
    let mut got_dlq: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for r in &dlq {
        let p: i32 = r.headers["vitalwatch.source.partition"].parse().unwrap();
        let o: i64 = r.headers["vitalwatch.source.offset"].parse().unwrap();
        let original = input
            .iter()
            .find(|i| i.partition == p && i.offset == o)
            .expect("dead letter of an input offset");
        assert_eq!(r.key, original.key);
        assert_eq!(r.payload, original.payload, "payload of p{p}/{o} changed");
        let message = &r.headers["vitalwatch.error.message"];
        assert!(!message.is_empty());
        for echo in ["H-P", "H-Q", "180", "138", "\u{7}", "\u{1b}"] {
            assert!(
                !message.contains(echo),
                "message of p{p}/{o} echoes {echo:?}: {message}"
            );
        }
        let reason = r.headers["vitalwatch.error.reason"].clone();
        assert!(got_dlq.insert((p, o), reason).is_none(), "p{p}/{o} twice");
    }
    let wrong: Vec<String> = expected_dlq
        .iter()
        .filter(|(at, reason)| got_dlq.get(at) != Some(reason))
        .map(|(at, reason)| {
            let (class, _) = expect[&hostile_at[at]];
            format!(
                "{class} {at:?}: expected {reason}, got {:?}",
                got_dlq.get(at)
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(got_dlq, expected_dlq);
    assert_eq!(report.counts.invalid as usize, expected_dlq.len());
    assert_eq!(report.counts.evaluated as usize, evaluated.len());

    // Exactly the valid traffic's alerts: none from a hostile message, and the tail after
    // all of them alerted (no worker died).
    let alerts = cluster.alerts(report.counts.alerts as usize);
    let from_hostile: Vec<_> = alerts
        .iter()
        .filter(|a| hostile_at.contains_key(&(a.source.partition, a.source.offset)))
        .map(|a| {
            let key = &hostile_at[&(a.source.partition, a.source.offset)];
            format!("{} ({key}): {}", expect[key].0, a.rule_id)
        })
        .collect();
    assert!(
        from_hostile.is_empty(),
        "hostile messages alerted: {from_hostile:?}"
    );
    let got: BTreeSet<String> = alerts.iter().map(|a| a.alert_id.clone()).collect();
    assert_eq!(alerts.len(), got.len(), "duplicate alerts without a crash");
    assert_eq!(got, expected_alerts);
    // Valid message i has timestamp now - 60 s + i; the tolerated hostile ones `now`.
    let tail_start = now - 60_000 + tail_from as i64;
    let tail_alerts = alerts
        .iter()
        .filter(|a| a.patient_id.starts_with("V-") && a.observed_at >= tail_start)
        .count();
    assert!(tail_alerts >= 100, "tail alerts {tail_alerts}");

    assert_eq!(cluster.committed("hostile"), cluster.end_offsets());

    let hwm_after = vm_hwm_kib();
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for (class, _) in expect.values() {
        *per_class.entry(class).or_default() += 1;
    }
    eprintln!(
        "hostile: {} hostile messages ({} dead-lettered, {tolerated} tolerated) among {} \
         valid; per class {per_class:?}; {} alerts ({tail_alerts} after the last hostile \
         one); VmHWM {} MiB before, {} MiB after (+{} MiB); took {:?}",
        expect.len(),
        expected_dlq.len(),
        v,
        got.len(),
        hwm_before / 1024,
        hwm_after / 1024,
        (hwm_after - hwm_before) / 1024,
        t0.elapsed()
    );
    // The mock cluster runs in this process too and holds every message (about 1.3 MB of
    // oversized ones, twice: input and DLQ), so this bounds both.
    assert!(
        hwm_after - hwm_before < 256 * 1024,
        "peak memory grew by {} MiB",
        (hwm_after - hwm_before) / 1024
    );
}
