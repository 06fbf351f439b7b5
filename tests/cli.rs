//! `vitalwatch check-config` as an operator runs it: the built binary, its exit code and
//! what it prints. No broker is needed: check-config validates without connecting.

use std::path::Path;
use std::process::Output;

mod support;

use support::process::{TempDir, command};

/// Runs the binary from the crate root with `args` and `env`, and no other VITALWATCH_*
/// variable from the caller's environment.
fn vitalwatch(args: &[&str], env: &[(&str, &Path)]) -> Output {
    vitalwatch_in(Path::new(env!("CARGO_MANIFEST_DIR")), args, env)
}

/// As [`vitalwatch`], from the working directory `cwd`.
fn vitalwatch_in(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = command(args);
    cmd.current_dir(cwd);
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
    let out = vitalwatch(&["check-config"], &[]);
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
}

#[test]
fn zero_workers_is_rejected_naming_the_key() {
    let zero = Path::new("0");
    let out = vitalwatch(&["check-config"], &[("VITALWATCH_PIPELINE__WORKERS", zero)]);
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
    let out = vitalwatch(&["check-config"], &[("VITALWATCH_RULES__FILE", &rules)]);
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

/// Field report item 4: a misspelled librdkafka property is caught by check-config, as
/// `run` would refuse it, and no output repeats its value.
#[test]
fn a_misspelled_client_property_is_refused_without_echoing_its_value() {
    let secret = Path::new("hunter2-MARKER");
    for args in [&["check-config"][..], &["run"][..]] {
        let out = vitalwatch(args, &[("VITALWATCH_KAFKA__CLIENT__SASL__PASWORD", secret)]);
        let stderr = failure(&out);
        assert!(
            stderr.contains("kafka.client.\"sasl.pasword\""),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("VITALWATCH_KAFKA__CLIENT__SASL__PASWORD"),
            "{args:?}: {stderr}"
        );
        let all = format!("{stderr}{}", text(&out.stdout));
        assert!(!all.contains("MARKER"), "{args:?}: {all}");
    }
    // A value librdkafka refuses is not repeated either.
    let out = vitalwatch(
        &["check-config"],
        &[(
            "VITALWATCH_KAFKA__CLIENT__SECURITY__PROTOCOL",
            Path::new("ssl-MARKER"),
        )],
    );
    let stderr = failure(&out);
    assert!(stderr.contains("security.protocol"), "{stderr}");
    assert!(!stderr.contains("MARKER"), "{stderr}");
}

/// Field report item 5: `warning` is a level; `inf` and `warnings` are refused naming the
/// key and the valid levels (tracing would read a bare word as a module and log nothing).
#[test]
fn log_level_accepts_warning_and_refuses_a_typo() {
    let out = vitalwatch(
        &["check-config"],
        &[("VITALWATCH_LOG__LEVEL", Path::new("warning"))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for typo in ["inf", "warnings", "vitalwatch=loud"] {
        let out = vitalwatch(
            &["check-config"],
            &[("VITALWATCH_LOG__LEVEL", Path::new(typo))],
        );
        let stderr = failure(&out);
        assert!(stderr.contains("log.level"), "{typo}: {stderr}");
        assert!(stderr.contains("VITALWATCH_LOG__LEVEL"), "{typo}: {stderr}");
        assert!(stderr.contains("error, warn"), "{typo}: {stderr}");
    }
}

/// Field report item 9: a relative rules.file is taken from the config file that set it,
/// from any working directory; the default's failure says where it looked and what to set.
#[test]
fn a_relative_rules_file_is_resolved_against_its_config_file() {
    let dir = TempDir::new("relative");
    dir.write(
        "rules.toml",
        &format!("[[threshold]]\nid = \"hr_high\"\n{RULE}"),
    );
    let config = dir.write("site.toml", "[rules]\nfile = \"rules.toml\"\n");
    let elsewhere = TempDir::new("cwd");
    let out = vitalwatch_in(
        &elsewhere.0,
        &["check-config", "-c", config.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(" 1 rule"),
        "{}",
        text(&out.stdout)
    );

    // The built-in default is relative to the working directory: say so, and the key.
    let out = vitalwatch_in(&elsewhere.0, &["check-config"], &[]);
    let stderr = failure(&out);
    let looked = elsewhere
        .0
        .canonicalize()
        .unwrap()
        .join("config/rules.toml");
    assert!(stderr.contains(&looked.display().to_string()), "{stderr}");
    assert!(stderr.contains("working directory"), "{stderr}");
    assert!(
        stderr.contains("rules.file") && stderr.contains("VITALWATCH_RULES__FILE"),
        "{stderr}"
    );

    // A file that names a missing rules file: the config file and line are named.
    let bad = dir.write("bad.toml", "[rules]\nfile = \"nope.toml\"\n");
    let stderr = failure(&vitalwatch_in(
        &elsewhere.0,
        &["check-config", "-c", bad.to_str().unwrap()],
        &[],
    ));
    assert!(stderr.contains("bad.toml line 2"), "{stderr}");
    assert!(
        stderr.contains(&dir.0.join("nope.toml").display().to_string()),
        "{stderr}"
    );
}

/// Field report item 11: configuration errors name the file (absolute), line, key or
/// variable, and the valid values.
#[test]
fn configuration_errors_name_file_line_key_and_variable() {
    let dir = TempDir::new("errors");
    let sub = TempDir::new("sub");
    let typo = dir.write("typo.toml", "[pipeline]\nworkers = 2\nworker = 3\n");
    // A relative path with `..` is shown resolved.
    let relative = format!(
        "../{}/typo.toml",
        dir.0.file_name().unwrap().to_str().unwrap()
    );
    let stderr = failure(&vitalwatch_in(
        &sub.0,
        &["check-config", "-c", &relative],
        &[],
    ));
    let shown = typo.canonicalize().unwrap().display().to_string();
    assert!(
        stderr.contains(&format!("config file {shown}: line 3")),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown key `worker` in [pipeline]"),
        "{stderr}"
    );
    assert!(!stderr.contains(".."), "{stderr}");

    let stderr = failure(&vitalwatch(
        &["check-config"],
        &[("VITALWATCH_LOG__FORMAT", Path::new("yaml"))],
    ));
    assert!(
        stderr.contains("log.format") && stderr.contains("json") && stderr.contains("pretty"),
        "{stderr}"
    );
    assert!(!stderr.contains("variant constructor"), "{stderr}");

    let stderr = failure(&vitalwatch(
        &["check-config", "-c", dir.0.to_str().unwrap()],
        &[],
    ));
    assert!(stderr.contains("is a directory"), "{stderr}");

    // A variable with one underscore sets nothing: a warning naming the right spelling.
    let out = vitalwatch(
        &["check-config"],
        &[("VITALWATCH_PIPELINE_WORKERS", Path::new("3"))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: VITALWATCH_PIPELINE_WORKERS"),
        "{stderr}"
    );
    assert!(stderr.contains("VITALWATCH_PIPELINE__WORKERS"), "{stderr}");
    // Two underscores and no such key: an error naming the variable.
    let stderr = failure(&vitalwatch(
        &["check-config"],
        &[("VITALWATCH_PIPELINE__WORKRS", Path::new("3"))],
    ));
    assert!(stderr.contains("VITALWATCH_PIPELINE__WORKRS"), "{stderr}");

    // The delivery guarantee's own settings cannot be overridden.
    for var in [
        "VITALWATCH_KAFKA__CLIENT__ENABLE__AUTO__COMMIT",
        "VITALWATCH_KAFKA__CLIENT__AUTO__OFFSET__RESET",
    ] {
        let stderr = failure(&vitalwatch(&["check-config"], &[(var, Path::new("false"))]));
        assert!(
            stderr.contains(var) && stderr.contains("delivery guarantee"),
            "{stderr}"
        );
    }

    // An empty rules file, and a threshold no reading can fail to breach, are refused by
    // check-config as a reload refuses them.
    for (name, rules, says) in [
        ("empty.toml", String::new(), "no [[threshold]] rules"),
        (
            "spo2.toml",
            "[[threshold]]\nid = \"spo2_low\"\nmetric = \"spo2\"\nbelow = 150\nseverity = \"medium\"\n".to_owned(),
            "fire on every reading",
        ),
    ] {
        let rules = dir.write(name, &rules);
        let stderr = failure(&vitalwatch(&["check-config"], &[("VITALWATCH_RULES__FILE", &rules)]));
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
}

/// Field report item 13: the effective configuration can be printed, credentials
/// redacted.
#[test]
fn check_config_prints_the_effective_configuration_without_secrets() {
    let out = vitalwatch(
        &["check-config", "--print"],
        &[
            ("VITALWATCH_PIPELINE__WORKERS", Path::new("3")),
            (
                "VITALWATCH_KAFKA__CLIENT__SASL__PASSWORD",
                Path::new("hunter2-MARKER"),
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let printed: toml::Table = toml::from_str(&stdout).expect("the printout is TOML");
    assert_eq!(
        printed["pipeline"]["workers"].as_integer(),
        Some(3),
        "{stdout}"
    );
    assert_eq!(
        printed["kafka"]["client"]["sasl.password"].as_str(),
        Some("[redacted]"),
        "{stdout}"
    );
    assert!(!stdout.contains("MARKER"), "{stdout}");
}

/// Field report item 17: `run --help` says where settings come from.
#[test]
fn run_help_explains_the_configuration_layers() {
    let out = vitalwatch(&["run", "--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "built-in defaults",
        "--config",
        "VITALWATCH_<SECTION>__<KEY>",
        "check-config",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

/// Field report item 16: the image's health check follows `http.listen` from the config
/// file (not only from a variable), like the service it checks.
#[test]
fn healthcheck_follows_http_listen_from_the_config_file() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        // The whole request before answering: closing with unread bytes resets the
        // connection.
        let mut asked = Vec::new();
        let mut buf = [0u8; 256];
        while !asked.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "request cut short");
            asked.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
            .unwrap();
        String::from_utf8_lossy(&asked).into_owned()
    });
    let dir = TempDir::new("health");
    let config = dir.write(
        "site.toml",
        &format!("[http]\nlisten = \"0.0.0.0:{port}\"\n"),
    );
    let out = vitalwatch(&["healthcheck", "-c", config.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(server.join().unwrap().starts_with("GET /healthz "));

    // Nothing listens there any more: unhealthy, exit 1, saying where it looked.
    let stderr = failure(&vitalwatch(
        &["healthcheck", "-c", config.to_str().unwrap()],
        &[],
    ));
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}
