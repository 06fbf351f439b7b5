//! The rules file (`rules.file`, TOML): `[defaults]`, `[news2]`, `[[threshold]]`. Reading
//! it validates the whole file and fails with the file, the line and the rule, so a typo
//! never reaches a ward; each table has its parser beside its rule kind
//! ([`super::threshold::parse`], [`super::news2::parse`]). [`RuleSet::to_toml`] writes a
//! set back as a file that parses to it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::RuleSet;
use super::alarm::Alarm;
use super::news2::{self, RawNews2};
use super::parse::{RawAlarm, RulesError, Source, alarm, rule_name, secs_to_ms};
use super::threshold::{self, Condition, RawThreshold, ThresholdRule};

/// The rules file shipped in `config/rules.toml`: the NEWS2 red flags.
pub(crate) const DEFAULT_RULES_TOML: &str = include_str!("../../config/rules.toml");

/// Cooldown when the file does not say (`[defaults]`).
pub(crate) const DEFAULT_COOLDOWN_SECS: u64 = 300;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    defaults: Option<RawAlarm>,
    news2: Option<RawNews2>,
    #[serde(default)]
    threshold: Vec<Spanned<RawThreshold>>,
}

impl RuleSet {
    /// Reads and validates a rules file.
    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            file: path.to_owned(),
            line: None,
            rule: None,
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// The shipped NEWS2 red-flag set.
    pub fn news2_red_flags() -> RuleSet {
        // The shipped file is validated by a unit test; failing here would be a build defect.
        Self::parse(DEFAULT_RULES_TOML, Path::new("config/rules.toml"))
            .unwrap_or_else(|e| panic!("shipped rules are invalid: {e}"))
    }

    /// Parses rules from TOML text; `file` only names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<RuleSet, RulesError> {
        let src = Source::new(file, text);
        let parsed: RulesFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| s.start.min(text.len()));
            src.error(
                at.map(|at| src.line_at(at)),
                at.and_then(|at| rule_enclosing(text, at)),
                e.message().trim().to_owned(),
            )
        })?;
        let fallback = Alarm {
            cooldown_ms: secs_to_ms(DEFAULT_COOLDOWN_SECS),
            ..Alarm::STATELESS
        };
        let defaults = match parsed.defaults {
            Some(d) => alarm(
                (d.cooldown_secs, d.clear_margin, d.emit_resolved),
                &fallback,
            )
            .map_err(|(span, m)| src.table_error("defaults", span, m))?,
            None => fallback,
        };
        let news2 = news2::parse(parsed.news2, &defaults, &src)?;
        let mut ids: HashMap<String, usize> = HashMap::with_capacity(parsed.threshold.len());
        let rules = parsed
            .threshold
            .into_iter()
            .enumerate()
            .map(|(n, table)| threshold::parse(table, n, &defaults, &src, &mut ids))
            .collect::<Result<Vec<ThresholdRule>, RulesError>>()?;
        if rules.is_empty() && news2.is_none() {
            return Err(src.error(
                None,
                None,
                "it has no [[threshold]] rules and no [news2]: vitalwatch would raise no alert \
                 (an empty or truncated file, or the wrong one?)"
                    .into(),
            ));
        }
        let mut set = RuleSet::new(rules).with_news2(news2);
        set.source_hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        Ok(set)
    }

    /// The set as a rules file that parses back to it.
    pub fn to_toml(&self) -> String {
        use std::fmt::Write;
        let secs = |ms: i64| ms / 1000;
        let mut out = String::new();
        if let Some(n) = &self.news2 {
            let margins: Vec<String> = news2::PARAMETERS
                .iter()
                .zip(n.single_clear_margin)
                .filter(|(m, _)| !m.is_binary())
                .map(|(m, v)| format!("{} = {v:?}", m.as_str()))
                .collect();
            let _ = writeln!(
                out,
                "[news2]\nmax_age_secs = {}\ncooldown_secs = {}\nclear_margin = {:?}\nemit_resolved = {}\n\
                 single_clear_margin = {{ {} }}\n",
                secs(n.max_age_ms),
                secs(n.alarm.cooldown_ms),
                n.alarm.clear_margin,
                n.alarm.emit_resolved,
                margins.join(", ")
            );
        }
        for r in &self.rules {
            let (key, t) = match r.condition {
                Condition::Above(t) => ("above", t),
                Condition::Below(t) => ("below", t),
            };
            let scale_2 = match r.scale_2 {
                Some(Condition::Above(t)) => format!("scale_2_above = {t:?}\n"),
                Some(Condition::Below(t)) => format!("scale_2_below = {t:?}\n"),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "[[threshold]]\nid = {}\nmetric = \"{}\"\n{key} = {t:?}\n{scale_2}severity = \"{}\"\n\
                 for_secs = {}\ncooldown_secs = {}\nclear_margin = {:?}\nemit_resolved = {}\n",
                toml::Value::String(r.id.clone()),
                r.metric.as_str(),
                r.severity.as_str(),
                secs(r.for_ms),
                secs(r.alarm.cooldown_ms),
                r.alarm.clear_margin,
                r.alarm.emit_resolved
            );
        }
        out
    }
}

/// The rule whose `[[threshold]]` table contains byte offset `at`, for errors that serde
/// reports with a position only (an unknown key, a value of the wrong type). `None` when
/// the text is not TOML at all or `at` is outside every rule.
fn rule_enclosing(text: &str, at: usize) -> Option<String> {
    // A table's own span is only its `[[threshold]]` header; its keys and values carry
    // their own spans, so keep them.
    type Entries = BTreeMap<Spanned<String>, Spanned<toml::Value>>;
    #[derive(Deserialize)]
    struct Outline {
        #[serde(default)]
        threshold: Vec<Spanned<Entries>>,
    }
    let outline: Outline = toml::from_str(text).ok()?;
    let (n, table) = outline.threshold.iter().enumerate().find(|(_, t)| {
        t.span().contains(&at)
            || t.get_ref()
                .iter()
                .any(|(k, v)| k.span().contains(&at) || v.span().contains(&at))
    })?;
    let id = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "id")
        .and_then(|(_, v)| v.get_ref().as_str());
    Some(rule_name(id, n))
}
