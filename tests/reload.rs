//! `vitalwatch run` reloads its rules file on SIGHUP, as an operator would trigger it: the
//! built binary, a signal, and its /metrics. No broker is needed: the rules are reloaded
//! whether or not the consumer has partitions (the pipeline itself is tested on the mock
//! cluster in tests/pipeline/rules.rs).

#![cfg(unix)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RULE: &str = "[[threshold]]\nid = \"hr_high\"\nmetric = \"heart_rate\"\nabove = 130\nseverity = \"medium\"\n";
const SECOND: &str =
    "[[threshold]]\nid = \"hr_low\"\nmetric = \"heart_rate\"\nbelow = 41\nseverity = \"medium\"\n";

struct Service {
    child: Child,
    addr: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start(rules: &Path) -> Service {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitalwatch"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).arg("run");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("VITALWATCH") {
            cmd.env_remove(key);
        }
    }
    cmd.env("VITALWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9") // nothing listens
        .env("VITALWATCH_RULES__FILE", rules)
        .env("VITALWATCH_RULES__RELOAD_INTERVAL_SECS", "0") // SIGHUP only
        .env("VITALWATCH_HTTP__LISTEN", &addr)
        .env("VITALWATCH_ADMIN__LISTEN", "")
        .env("VITALWATCH_PIPELINE__SHUTDOWN_TIMEOUT_SECS", "5")
        .env("VITALWATCH_LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(rules.with_extension("log")).expect("log file"));
    let child = cmd.spawn().expect("start vitalwatch run");
    Service { child, addr }
}

/// The value of an unlabelled metric, if the listener answers and has it.
fn metric(addr: &str, name: &str) -> Option<f64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn wait_for(what: &str, service: &mut Service, cond: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = service.child.try_wait() {
            panic!("vitalwatch exited ({status}) while waiting for {what}");
        }
        if cond(&service.addr) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn signal(service: &Service, sig: &str) {
    let pid = service.child.id().to_string();
    let ok = Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("run kill");
    assert!(ok.success());
}

/// Replaces `file` as docs/rules.md advises: a new file renamed over the old one.
fn replace(file: &Path, text: &str) {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn temp_rules() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vitalwatch-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("rules.toml")
}

#[test]
fn sighup_reloads_the_rules_and_a_bad_file_is_rejected_while_the_service_runs_on() {
    let rules = temp_rules();
    std::fs::write(&rules, RULE).unwrap();
    let mut service = start(&rules);
    let loaded = |n: f64| move |addr: &str| metric(addr, "vitalwatch_rules_loaded") == Some(n);
    wait_for("the first rule set", &mut service, loaded(1.0));

    replace(&rules, &format!("{RULE}{SECOND}"));
    signal(&service, "-HUP");
    wait_for("the reloaded rule set", &mut service, loaded(2.0));

    // A file with a mistake: rejected, flagged, and the two rules stay.
    replace(
        &rules,
        &format!("{RULE}{SECOND}[[threshold]]\nid = \"x\"\n"),
    );
    signal(&service, "-HUP");
    wait_for("the rejection", &mut service, |addr| {
        metric(addr, "vitalwatch_rules_file_rejected") == Some(1.0)
    });
    assert_eq!(metric(&service.addr, "vitalwatch_rules_loaded"), Some(2.0));

    // Fixed: the flag clears.
    replace(&rules, &format!("{RULE}{SECOND}"));
    signal(&service, "-HUP");
    wait_for("the flag to clear", &mut service, |addr| {
        metric(addr, "vitalwatch_rules_file_rejected") == Some(0.0)
    });

    // A NEWS2-only set is one rule, not none (field report item 10).
    replace(&rules, "[news2]\n");
    signal(&service, "-HUP");
    wait_for("the NEWS2-only rule set", &mut service, |addr| {
        metric(addr, "vitalwatch_rules_reloads_total{result=\"applied\"}") == Some(2.0)
    });
    assert_eq!(metric(&service.addr, "vitalwatch_rules_loaded"), Some(1.0));

    // A SIGHUP with the file unchanged gets an answer in the log too.
    signal(&service, "-HUP");
    let log = rules.with_extension("log");
    wait_for("the log line of an unchanged file", &mut service, |_| {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("SIGHUP: the rules file is unchanged"))
    });

    // Still the service: SIGTERM stops it.
    signal(&service, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            eprintln!("vitalwatch run stopped on SIGTERM: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "vitalwatch did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&rules);
    let _ = std::fs::remove_file(&log);
}
