//! What the table parsers of the rules file share: errors that name the file, the line
//! and the rule; line numbers of byte offsets; the alarm keys (`cooldown_secs`,
//! `clear_margin`, `emit_resolved`) that `[defaults]`, `[news2]` and every
//! `[[threshold]]` may give; the longest span a key may set.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::alarm::Alarm;

/// A rules file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct RulesError {
    pub(crate) file: PathBuf,
    /// 1-based line of the offending rule or syntax error, when known.
    pub(crate) line: Option<usize>,
    /// The rule's id, or `threshold #N` when it has none.
    pub(crate) rule: Option<String>,
    pub(crate) message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rules file {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, ", rule `{rule}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The longest `for_secs`, `cooldown_secs` or `max_age_secs` accepted: a day.
pub(super) const MAX_SPAN_SECS: u64 = 86_400;

pub(super) fn secs_to_ms(secs: u64) -> i64 {
    // Bounded by MAX_SPAN_SECS where it comes from a file.
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Alarm keys, as `[defaults]` gives them (`[news2]` and `[[threshold]]` have the same
/// keys among their own: flattening would lose spans and unknown-key errors).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlarm {
    pub(crate) cooldown_secs: Option<Spanned<u64>>,
    pub(crate) clear_margin: Option<Spanned<f64>>,
    pub(crate) emit_resolved: Option<Spanned<bool>>,
}

pub(super) type RawAlarmKeys = (
    Option<Spanned<u64>>,
    Option<Spanned<f64>>,
    Option<Spanned<bool>>,
);

/// The alarm keys a table gives, over `defaults`; an error carries the bad key's span.
pub(super) fn alarm(
    (cooldown, margin, resolved): RawAlarmKeys,
    defaults: &Alarm,
) -> Result<Alarm, (std::ops::Range<usize>, String)> {
    let mut alarm = *defaults;
    if let Some(c) = cooldown {
        if *c.get_ref() > MAX_SPAN_SECS {
            return Err((
                c.span(),
                format!("`cooldown_secs` must be 0 to {MAX_SPAN_SECS}"),
            ));
        }
        alarm.cooldown_ms = secs_to_ms(*c.get_ref());
    }
    if let Some(m) = margin {
        let v = *m.get_ref();
        if !v.is_finite() || v < 0.0 {
            return Err((
                m.span(),
                "`clear_margin` must be a finite number, 0 or more".into(),
            ));
        }
        alarm.clear_margin = v;
    }
    if let Some(r) = resolved {
        alarm.emit_resolved = *r.get_ref();
    }
    Ok(alarm)
}

/// The text of a rules file being parsed: names the file in errors and turns byte
/// offsets into line numbers.
pub(super) struct Source<'a> {
    pub(crate) file: &'a Path,
    /// Where each line starts.
    starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(file: &'a Path, text: &str) -> Source<'a> {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Source { file, starts }
    }

    /// 1-based line of byte offset `at`.
    pub(crate) fn line_at(&self, at: usize) -> usize {
        self.starts.partition_point(|&s| s <= at)
    }

    /// 1-based line where `span` starts.
    pub(crate) fn line(&self, span: Range<usize>) -> usize {
        self.line_at(span.start)
    }

    pub(crate) fn error(
        &self,
        line: Option<usize>,
        rule: Option<String>,
        message: String,
    ) -> RulesError {
        RulesError {
            file: self.file.to_owned(),
            line,
            rule,
            message,
        }
    }

    /// An error of a table (`[defaults]`, `[news2]`): it names the table instead of a rule.
    pub(crate) fn table_error(
        &self,
        table: &str,
        span: Range<usize>,
        message: String,
    ) -> RulesError {
        self.error(Some(self.line(span)), Some(format!("[{table}]")), message)
    }
}

/// How errors name a rule: its id, or its position when it has none.
pub(super) fn rule_name(id: Option<&str>, index: usize) -> String {
    match id {
        Some(id) => id.to_owned(),
        None => format!("threshold #{}", index + 1),
    }
}
