//! `vitalwatch run` reloads its rules file on SIGHUP, as an operator would trigger it: the
//! built binary, a signal, and its /metrics. No broker is needed: the rules are reloaded
//! whether or not the consumer has partitions (the pipeline itself is tested on the mock
//! cluster in tests/pipeline/rules.rs).

#![cfg(unix)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::http::Scrape;
use support::process::{TempDir, Vitalwatch, log_dir_in};
use support::wait;

const RULE: &str = "[[threshold]]\nid = \"hr_high\"\nmetric = \"heart_rate\"\nabove = 130\nseverity = \"medium\"\n";
const SECOND: &str =
    "[[threshold]]\nid = \"hr_low\"\nmetric = \"heart_rate\"\nbelow = 41\nseverity = \"medium\"\n";

fn start(rules: &Path) -> Vitalwatch {
    let env: Vec<(String, String)> = [
        (
            "VITALWATCH_KAFKA__BOOTSTRAP_SERVERS",
            "127.0.0.1:9".to_owned(),
        ), // nothing listens
        ("VITALWATCH_RULES__FILE", rules.display().to_string()),
        ("VITALWATCH_RULES__RELOAD_INTERVAL_SECS", "0".to_owned()), // SIGHUP only
        ("VITALWATCH_PIPELINE__SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Vitalwatch::start("reload", &env, &log_dir_in("reload", "sighup"))
}

/// The sum of the series of `name` with `labels`, if the listener answers and has it.
fn metric(service: &Vitalwatch, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (status, body) = service.get("/metrics").ok()?;
    let scrape = Scrape::parse(&body).ok().filter(|_| status == 200)?;
    let values = scrape.values(name, labels);
    (!values.is_empty()).then(|| values.iter().sum())
}

fn wait_for(what: &str, service: &mut Vitalwatch, cond: impl Fn(&Vitalwatch) -> bool) {
    wait::wait_for(Duration::from_secs(30), what, || {
        if let Some(status) = service.try_wait() {
            panic!("vitalwatch exited ({status}) while waiting for {what}");
        }
        if cond(service) {
            Ok(())
        } else {
            Err(service.tail(5))
        }
    });
}

/// Replaces `file` as docs/rules.md advises: a new file renamed over the old one.
fn replace(file: &Path, text: &str) {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

#[test]
fn sighup_reloads_the_rules_and_a_bad_file_is_rejected_while_the_service_runs_on() {
    let dir = TempDir::new("reload");
    let rules = dir.write("rules.toml", RULE);
    let mut service = start(&rules);
    let loaded =
        |n: f64| move |s: &Vitalwatch| metric(s, "vitalwatch_rules_loaded", &[]) == Some(n);
    wait_for("the first rule set", &mut service, loaded(1.0));

    replace(&rules, &format!("{RULE}{SECOND}"));
    service.signal("-HUP");
    wait_for("the reloaded rule set", &mut service, loaded(2.0));

    // A file with a mistake: rejected, flagged, and the two rules stay.
    replace(
        &rules,
        &format!("{RULE}{SECOND}[[threshold]]\nid = \"x\"\n"),
    );
    service.signal("-HUP");
    wait_for("the rejection", &mut service, |s| {
        metric(s, "vitalwatch_rules_file_rejected", &[]) == Some(1.0)
    });
    assert_eq!(metric(&service, "vitalwatch_rules_loaded", &[]), Some(2.0));

    // Fixed: the flag clears.
    replace(&rules, &format!("{RULE}{SECOND}"));
    service.signal("-HUP");
    wait_for("the flag to clear", &mut service, |s| {
        metric(s, "vitalwatch_rules_file_rejected", &[]) == Some(0.0)
    });

    // A NEWS2-only set is one rule, not none (field report item 10).
    replace(&rules, "[news2]\n");
    service.signal("-HUP");
    wait_for("the NEWS2-only rule set", &mut service, |s| {
        metric(
            s,
            "vitalwatch_rules_reloads_total",
            &[("result", "applied")],
        ) == Some(2.0)
    });
    assert_eq!(metric(&service, "vitalwatch_rules_loaded", &[]), Some(1.0));

    // A SIGHUP with the file unchanged gets an answer in the log too.
    service.signal("-HUP");
    wait_for("the log line of an unchanged file", &mut service, |s| {
        s.lines()
            .iter()
            .any(|l| l.contains("SIGHUP: the rules file is unchanged"))
    });

    // Still the service: SIGTERM stops it.
    let (status, _) = service.terminate(Duration::from_secs(30));
    eprintln!("vitalwatch run stopped on SIGTERM: {status}");
}
