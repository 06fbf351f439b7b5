//! Where each setting came from, and the keys a layer may set.
//!
//! The keys are those of `config/default.toml` (every key has a default there), plus any
//! librdkafka property under `[kafka.client]`. A config file is read with spans before
//! it is merged, so an unknown key is reported with its line; a `VITALWATCH_*` variable
//! that names no key is an error naming the variable, and one that is not even shaped
//! like a key (a single underscore between section and key) a warning. What each layer
//! set is remembered, so that a later error can say where to fix it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::{DEFAULT_TOML, ENV_PREFIX};

/// The section whose keys are passed through to librdkafka unchecked (librdkafka checks
/// them: `PipelineConfig::check_clients`).
const PASSTHROUGH: (&str, &str) = ("kafka", "client");

/// Where one key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The built-in defaults (`config/default.toml`, compiled in).
    Default,
    /// The `--config` file, at this 1-based line.
    File { path: PathBuf, line: usize },
    /// An environment variable.
    Env(String),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Default => f.write_str("the built-in default"),
            KeySource::File { path, line } => write!(f, "{} line {line}", path.display()),
            KeySource::Env(var) => write!(f, "{var}"),
        }
    }
}

/// What the layers set, for messages and for `check-config`.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The `--config` file, as an absolute path.
    pub(crate) file: Option<PathBuf>,
    /// Dotted key → where it was last set (file, then variables over it). Keys only the
    /// defaults set are absent.
    pub(crate) keys: BTreeMap<String, KeySource>,
    /// Problems that do not stop start-up (`run` logs them, `check-config` prints them).
    pub(crate) warnings: Vec<String>,
    /// `rules.file` as the layer that set it wrote it, before it was made absolute.
    pub(crate) rules_file_as_written: PathBuf,
}

impl Origin {
    /// Where `key` (dotted, e.g. `pipeline.workers` or `kafka.client.sasl.password`)
    /// was set.
    pub fn of(&self, key: &str) -> KeySource {
        self.keys.get(key).cloned().unwrap_or(KeySource::Default)
    }

    /// The `VITALWATCH_*` variables that set a key.
    pub(crate) fn variables(&self) -> impl Iterator<Item = &str> {
        self.keys.values().filter_map(|s| match s {
            KeySource::Env(var) => Some(var.as_str()),
            _ => None,
        })
    }

    /// `e` with where its key was set, when a file or a variable set it.
    pub(crate) fn annotate_config_error(&self, e: &config::ConfigError) -> String {
        let key = match e {
            config::ConfigError::Type { key, .. } | config::ConfigError::At { key, .. } => {
                key.as_deref()
            }
            _ => None,
        };
        match key.map(|k| self.of(k)) {
            Some(source @ (KeySource::File { .. } | KeySource::Env(_))) => {
                format!("{e} (set in {source})")
            }
            _ => e.to_string(),
        }
    }

    /// The layers in force, for the start-up log line: `defaults, FILE, N variables`.
    pub(crate) fn describe(&self) -> String {
        let mut parts = vec!["built-in defaults".to_owned()];
        if let Some(f) = &self.file {
            parts.push(f.display().to_string());
        }
        let vars = self.variables().count();
        if vars > 0 {
            parts.push(format!(
                "{vars} VITALWATCH_* variable{}",
                if vars == 1 { "" } else { "s" }
            ));
        }
        parts.join(", ")
    }
}

/// The keys of every section, from the built-in defaults.
struct Schema {
    sections: BTreeMap<String, Vec<String>>,
}

impl Schema {
    fn new() -> Schema {
        // The defaults are compiled in and parsed by a unit test: they always parse.
        let table: toml::Table = toml::from_str(DEFAULT_TOML).unwrap_or_default();
        let sections = table
            .into_iter()
            .filter_map(|(section, v)| match v {
                toml::Value::Table(t) => Some((section, t.keys().cloned().collect())),
                _ => None,
            })
            .collect();
        Schema { sections }
    }

    fn section(&self, name: &str) -> Option<&[String]> {
        self.sections.get(name).map(Vec::as_slice)
    }

    fn section_names(&self) -> String {
        self.sections
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `path` made absolute (against the working directory) and, when it exists, with `..`
/// and links resolved, as messages show it.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

/// Reads the `--config` file and checks its keys; records which keys it sets in `origin`.
/// The error names the file (absolute), the line and the key.
pub(crate) fn read_file(path: &Path, origin: &mut Origin) -> anyhow::Result<String> {
    let shown = absolute(path);
    let display = shown.display();
    if shown.is_dir() {
        anyhow::bail!("config file {display} is a directory; give the path of a TOML file");
    }
    if !shown.exists() {
        anyhow::bail!("config file {display} does not exist");
    }
    let text = std::fs::read_to_string(&shown)
        .map_err(|e| anyhow::anyhow!("config file {display}: cannot read it: {e}"))?;
    let problems = check_file(&text, &shown, origin);
    if !problems.is_empty() {
        anyhow::bail!("config file {display}: {}", problems.join("; "));
    }
    origin.file = Some(shown);
    Ok(text)
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn check_file(text: &str, path: &Path, origin: &mut Origin) -> Vec<String> {
    let schema = Schema::new();
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        // The message only, never toml's excerpt of the line: it may hold a credential.
        Err(e) => {
            let at = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            return vec![format!("{at}not valid TOML: {}", e.message().trim())];
        }
    };
    // (line, problem), reported in file order.
    let mut problems: Vec<(usize, String)> = Vec::new();
    for (section, value) in doc.get_ref() {
        let line = line_of(text, section.span().start);
        let name = section.get_ref().as_ref();
        let DeValue::Table(entries) = value.get_ref() else {
            problems.push((
                line,
                format!(
                    "line {line}: `{name}` is outside any [section] (sections: {})",
                    schema.section_names()
                ),
            ));
            continue;
        };
        let Some(known) = schema.section(name) else {
            problems.push((
                line,
                format!(
                    "line {line}: unknown section [{name}] (sections: {})",
                    schema.section_names()
                ),
            ));
            continue;
        };
        for (key, value) in entries {
            let line = line_of(text, key.span().start);
            let key = key.get_ref().as_ref();
            if !known.iter().any(|k| k == key) {
                problems.push((
                    line,
                    format!(
                        "line {line}: unknown key `{key}` in [{name}] (keys: {})",
                        known.join(", ")
                    ),
                ));
                continue;
            }
            if (name, key) == PASSTHROUGH {
                record_client(
                    &format!("{name}.{key}"),
                    value.get_ref(),
                    text,
                    path,
                    origin,
                );
            } else {
                origin.keys.insert(
                    format!("{name}.{key}"),
                    KeySource::File {
                        path: path.to_owned(),
                        line,
                    },
                );
            }
        }
    }
    problems.sort_by_key(|(line, _)| *line);
    problems.into_iter().map(|(_, p)| p).collect()
}

/// Records every librdkafka property under `[kafka.client]` with its line (nested tables
/// become dotted names, as the settings flatten them).
fn record_client(prefix: &str, value: &DeValue<'_>, text: &str, path: &Path, origin: &mut Origin) {
    let DeValue::Table(t) = value else { return };
    for (k, v) in t {
        let key = format!("{prefix}.{}", k.get_ref());
        match v.get_ref() {
            DeValue::Table(_) => record_client(&key, v.get_ref(), text, path, origin),
            _ => {
                origin.keys.insert(
                    key,
                    KeySource::File {
                        path: path.to_owned(),
                        line: line_of(text, k.span().start),
                    },
                );
            }
        }
    }
}

/// The `VITALWATCH_*` variables that set a key, checked. A variable that names no key is
/// an error; one with a single underscore between section and key (a common slip) is a
/// warning, since other software may own names like `VITALWATCH_SERVICE_PORT`.
pub(crate) fn check_env(
    vars: impl IntoIterator<Item = (String, String)>,
    origin: &mut Origin,
) -> anyhow::Result<Vec<(String, String)>> {
    let schema = Schema::new();
    let prefix = format!("{ENV_PREFIX}_");
    let mut accepted = Vec::new();
    let mut problems = Vec::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix(&prefix) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split("__").collect();
        let Some((&section, keys)) = parts.split_first().filter(|(_, keys)| !keys.is_empty())
        else {
            origin
                .warnings
                .push(single_underscore(&var, &lower, &schema));
            continue;
        };
        let Some(known) = schema.section(section) else {
            problems.push(format!(
                "{var}: no section [{section}] (sections: {})",
                schema.section_names()
            ));
            continue;
        };
        let key = keys[0];
        let passthrough = (section, key) == PASSTHROUGH;
        if !known.iter().any(|k| k == key) || (keys.len() > 1) != passthrough {
            problems.push(format!(
                "{var}: no key {section}.{} (keys in [{section}]: {}; librdkafka properties go under {ENV_PREFIX}_KAFKA__CLIENT__)",
                keys.join("."),
                known.join(", ")
            ));
            continue;
        }
        origin.keys.insert(
            format!("{section}.{}", keys.join(".")),
            KeySource::Env(var.clone()),
        );
        accepted.push((var, value));
    }
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    Ok(accepted)
}

/// The warning for `VITALWATCH_PIPELINE_WORKERS`: which variable was probably meant.
fn single_underscore(var: &str, lower: &str, schema: &Schema) -> String {
    let meant = schema.sections.iter().find_map(|(section, keys)| {
        let key = lower.strip_prefix(section.as_str())?.strip_prefix('_')?;
        keys.iter().any(|k| k == key).then(|| {
            format!(
                "{ENV_PREFIX}_{}__{}",
                section.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            )
        })
    });
    match meant {
        Some(meant) => format!(
            "{var} sets nothing: section and key are separated by two underscores ({meant})"
        ),
        None => format!(
            "{var} sets nothing: configuration variables are {ENV_PREFIX}_<SECTION>__<KEY>, with two underscores between section and key"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_schema_has_every_section_of_the_defaults() {
        let s = Schema::new();
        for section in ["kafka", "pipeline", "rules", "http", "admin", "log"] {
            assert!(s.section(section).is_some(), "{section}");
        }
        assert!(s.section("pipeline").unwrap().contains(&"workers".into()));
    }

    #[test]
    fn unknown_keys_and_sections_are_reported_with_their_line() {
        let mut origin = Origin::default();
        let problems = check_file(
            "[pipeline]\nworkers = 2\nworker = 3\n\n[pipelin]\nx = 1\n",
            Path::new("/etc/site.toml"),
            &mut origin,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("line 3: unknown key `worker` in [pipeline]"));
        assert!(problems[0].contains("workers"), "{problems:?}");
        assert!(problems[1].starts_with("line 5: unknown section [pipelin]"));
        assert_eq!(
            origin.of("pipeline.workers"),
            KeySource::File {
                path: "/etc/site.toml".into(),
                line: 2
            }
        );
    }

    #[test]
    fn a_syntax_error_names_the_line_but_not_its_text() {
        let mut origin = Origin::default();
        let problems = check_file(
            "[kafka.client]\n\"sasl.password\" = \"hunter2-MARKER\nx",
            Path::new("/x.toml"),
            &mut origin,
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains(": not valid TOML"), "{problems:?}");
        assert!(!problems[0].contains("MARKER"), "{problems:?}");
    }

    #[test]
    fn client_properties_are_recorded_with_their_lines() {
        let mut origin = Origin::default();
        let problems = check_file(
            "[kafka.client]\nsecurity.protocol = \"ssl\"\n\"sasl.username\" = \"u\"\n",
            Path::new("/x.toml"),
            &mut origin,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(matches!(
            origin.of("kafka.client.security.protocol"),
            KeySource::File { line: 2, .. }
        ));
        assert!(matches!(
            origin.of("kafka.client.sasl.username"),
            KeySource::File { line: 3, .. }
        ));
    }

    #[test]
    fn variables_that_name_no_key_fail_and_single_underscores_warn() {
        let mut origin = Origin::default();
        let ok = check_env(
            vars(&[
                ("VITALWATCH_PIPELINE__WORKERS", "3"),
                ("VITALWATCH_KAFKA__CLIENT__SASL__USERNAME", "u"),
                ("VITALWATCH_PIPELINE_WORKERS", "3"),
                ("VITALWATCH_SERVICE_PORT", "9464"),
                ("PATH", "/bin"),
            ]),
            &mut origin,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(
            origin.of("kafka.client.sasl.username"),
            KeySource::Env("VITALWATCH_KAFKA__CLIENT__SASL__USERNAME".into())
        );
        assert_eq!(origin.warnings.len(), 2, "{:?}", origin.warnings);
        assert!(
            origin.warnings[0].contains("VITALWATCH_PIPELINE__WORKERS"),
            "{:?}",
            origin.warnings
        );
        for bad in [
            "VITALWATCH_PIPELINE__WORKRS",
            "VITALWATCH_PIPELIN__WORKERS",
            "VITALWATCH_KAFKA__CLIENT",
            "VITALWATCH_PIPELINE__WORKERS__X",
        ] {
            let err = check_env(vars(&[(bad, "1")]), &mut Origin::default()).unwrap_err();
            assert!(err.to_string().starts_with(bad), "{err}");
        }
    }
}
