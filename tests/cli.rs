//! `vitalwatch check-config` as an operator runs it: the built binary, its exit code and
//! what it prints. No broker is needed: check-config validates without connecting.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, unique to this test process and call, removed
/// on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vitalwatch-cli-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary from the crate root with `args` and `env`, and no other VITALWATCH_*
/// variable from the caller's environment.
fn vitalwatch(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitalwatch"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("VITALWATCH") {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("run the vitalwatch binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failed run and returns its stderr.
fn failure(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got {:?}\nstdout: {}\nstderr: {stderr}",
        out.status,
        text(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    stderr
}

const RULE: &str = "metric = \"heart_rate\"\nabove = 130\nseverity = \"medium\"\n";

#[test]
fn check_config_accepts_the_shipped_configuration() {
    let out = vitalwatch(&["check-config", "-c", "config/default.toml"], &[]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(stdout.contains("9 rules"), "{stdout}");
    assert!(stdout.contains("config/rules.toml"), "{stdout}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    // Without -c the built-in defaults are the same configuration.
    let out = vitalwatch(&["check-config"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("9 rules"));
}

#[test]
fn zero_workers_is_rejected_naming_the_key() {
    let zero = Path::new("0");
    let out = vitalwatch(
        &["check-config", "-c", "config/default.toml"],
        &[("VITALWATCH_PIPELINE__WORKERS", zero)],
    );
    let stderr = failure(&out);
    assert!(stderr.contains("pipeline.workers"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("nope.toml");
    let out = vitalwatch(&["check-config", "-c", path.to_str().unwrap()], &[]);
    let stderr = failure(&out);
    assert!(stderr.contains("nope.toml"), "{stderr}");
}

#[test]
fn a_duplicate_rule_id_is_rejected_naming_the_rule_and_line() {
    let dir = TempDir::new("dup");
    let rules = dir.write(
        "rules.toml",
        &format!(
            "[[threshold]]\nid = \"hr_high\"\n{RULE}\n[[threshold]]\nid = \"hr_high\"\n{RULE}"
        ),
    );
    let out = vitalwatch(
        &["check-config", "-c", "config/default.toml"],
        &[("VITALWATCH_RULES__FILE", &rules)],
    );
    let stderr = failure(&out);
    assert!(stderr.contains(&rules.display().to_string()), "{stderr}");
    assert!(stderr.contains("rule `hr_high`"), "{stderr}");
    assert!(stderr.contains("line 8"), "{stderr}");
    assert!(stderr.contains("duplicate"), "{stderr}");
}

#[test]
fn a_rules_syntax_error_is_rejected_naming_the_line() {
    let dir = TempDir::new("syntax");
    let rules = dir.write(
        "rules.toml",
        // Line 9: an unquoted string.
        &format!(
            "[[threshold]]\nid = \"hr_high\"\n{RULE}\n[[threshold]]\nid = \"b\"\nmetric = spo2\n"
        ),
    );
    let out = vitalwatch(&["check-config"], &[("VITALWATCH_RULES__FILE", &rules)]);
    let stderr = failure(&out);
    assert!(stderr.contains(&rules.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 9"), "{stderr}");
}

#[test]
fn a_rule_with_an_unknown_field_is_rejected_naming_rule_and_line() {
    let dir = TempDir::new("typo");
    let rules = dir.write(
        "rules.toml",
        "[[threshold]]\nid = \"spo2_low\"\nmetric = \"spo2\"\nbelw = 92\nseverity = \"medium\"\n",
    );
    let out = vitalwatch(&["check-config"], &[("VITALWATCH_RULES__FILE", &rules)]);
    let stderr = failure(&out);
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(stderr.contains("rule `spo2_low`"), "{stderr}");
    assert!(stderr.contains("belw"), "{stderr}");
}

#[test]
fn a_missing_rules_file_is_named() {
    let dir = TempDir::new("norules");
    let rules = dir.0.join("absent-rules.toml");
    let out = vitalwatch(&["check-config"], &[("VITALWATCH_RULES__FILE", &rules)]);
    let stderr = failure(&out);
    assert!(stderr.contains("absent-rules.toml"), "{stderr}");
}

#[test]
fn a_site_rules_file_is_counted() {
    let dir = TempDir::new("site");
    let rules = dir.write(
        "rules.toml",
        &format!("[[threshold]]\nid = \"hr_high\"\n{RULE}"),
    );
    let config = dir.write(
        "site.toml",
        &format!("[rules]\nfile = {:?}\n", rules.display().to_string()),
    );
    let out = vitalwatch(&["check-config", "-c", config.to_str().unwrap()], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains(" 1 rule"), "{stdout}");
}
