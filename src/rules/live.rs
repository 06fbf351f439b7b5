//! Rules that change while the service runs: hot reload of the rules file.
//!
//! [`LiveRules`] is the one place the current rule set lives. Workers read it once per
//! batch (an atomic pointer load), so a new set takes effect between messages and no
//! message is evaluated half under one set and half under another. [`Reloader`] watches
//! the file: it re-reads it on SIGHUP and every poll interval, and swaps in a new set only
//! when the file's content changed and the whole file validates. An invalid file is
//! rejected with a logged reason and a metric, and the rules in force stay in force.
//!
//! Polling the content, not inotify: a Kubernetes ConfigMap is updated by swapping a
//! symlink of a directory, which file watches miss or see twice, and a content hash
//! ignores touches that change nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{RuleSet, RulesError};
use crate::metrics as m;

/// The rule set in force, shared by the workers and the reloader.
#[derive(Clone)]
pub struct LiveRules(Arc<ArcSwap<RuleSet>>);

impl LiveRules {
    pub fn new(rules: Arc<RuleSet>) -> LiveRules {
        LiveRules(Arc::new(ArcSwap::new(rules)))
    }

    /// The current set.
    pub fn load(&self) -> Arc<RuleSet> {
        self.0.load_full()
    }

    /// Whether `rules` is still the current set (cheaper than [`LiveRules::load`]).
    pub fn is_current(&self, rules: &Arc<RuleSet>) -> bool {
        Arc::ptr_eq(&self.0.load(), rules)
    }

    pub fn store(&self, rules: Arc<RuleSet>) {
        self.0.store(rules);
    }
}

impl From<Arc<RuleSet>> for LiveRules {
    fn from(rules: Arc<RuleSet>) -> Self {
        LiveRules::new(rules)
    }
}

impl From<RuleSet> for LiveRules {
    fn from(rules: RuleSet) -> Self {
        LiveRules::new(Arc::new(rules))
    }
}

/// What one look at the file found.
#[derive(Debug)]
pub enum Reload {
    /// Same content as the rules in force.
    Unchanged,
    /// A new, valid set is in force.
    Applied(Arc<RuleSet>),
    /// The file changed but cannot be used; the rules in force stay.
    Rejected(RulesError),
}

/// A check a new rule set must pass beyond the file itself (the service's state limits).
pub type Check = Box<dyn Fn(&RuleSet) -> Result<(), String> + Send + Sync>;

/// Re-reads the rules file and swaps a valid new set into [`LiveRules`].
pub struct Reloader {
    path: PathBuf,
    live: LiveRules,
    check: Check,
    /// Hash of the content in force (or last rejected: a bad file is reported once, not
    /// every poll).
    seen: Option<u64>,
}

impl Reloader {
    /// `path` is the file `live` was loaded from.
    pub fn new(path: &Path, live: LiveRules, check: Check) -> Reloader {
        let seen = std::fs::read(path)
            .ok()
            .map(|b| xxhash_rust::xxh3::xxh3_64(&b));
        Reloader {
            path: path.to_owned(),
            live,
            check,
            seen,
        }
    }

    /// Reads the file; swaps in its rules when the content changed and validates.
    pub fn reload(&mut self) -> Reload {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => {
                // A file briefly missing mid-replace is not a new rule set; say so once.
                let hash = 0;
                if self.seen == Some(hash) {
                    return Reload::Unchanged;
                }
                self.seen = Some(hash);
                return self.rejected(RulesError {
                    file: self.path.clone(),
                    line: None,
                    rule: None,
                    message: format!("cannot read it: {e}"),
                });
            }
        };
        let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
        if self.seen == Some(hash) {
            return Reload::Unchanged;
        }
        self.seen = Some(hash);
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| RulesError {
                file: self.path.clone(),
                line: None,
                rule: None,
                message: format!("not UTF-8: {e}"),
            })
            .and_then(|text| RuleSet::parse(text, &self.path))
            .and_then(|rules| {
                (self.check)(&rules)
                    .map(|()| rules)
                    .map_err(|message| RulesError {
                        file: self.path.clone(),
                        line: None,
                        rule: None,
                        message,
                    })
            });
        match parsed {
            Ok(rules) => {
                let rules = Arc::new(rules);
                self.live.store(rules.clone());
                m::rules_reloaded(true, rules.len());
                info!(
                    file = %self.path.display(),
                    rules = rules.len(),
                    news2 = rules.news2().is_some(),
                    "rules reloaded"
                );
                Reload::Applied(rules)
            }
            Err(e) => self.rejected(e),
        }
    }

    fn rejected(&self, e: RulesError) -> Reload {
        m::rules_reloaded(false, self.live.load().len());
        warn!(error = %e, "rules file rejected; the rules in force stay");
        Reload::Rejected(e)
    }

    /// Reloads on SIGHUP and, unless `poll` is `None`, every `poll`, until `shutdown`.
    pub async fn run(mut self, poll: Option<Duration>, shutdown: CancellationToken) {
        let mut hangup = hangup_signal();
        let mut tick = poll.map(|p| {
            let mut t = tokio::time::interval(p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(()) = recv(&mut hangup) => {
                    info!("SIGHUP: reloading the rules file");
                }
                Some(_) = tick_opt(&mut tick) => {}
            }
            // Reading a rules file is microseconds; parsing runs only when it changed.
            self.reload();
        }
    }
}

#[cfg(unix)]
fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; the rules file is only polled");
            None
        }
    }
}

#[cfg(unix)]
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Option<()> {
    None
}

#[cfg(not(unix))]
async fn recv(_: &mut Option<()>) -> Option<()> {
    std::future::pending().await
}

async fn tick_opt(t: &mut Option<tokio::time::Interval>) -> Option<tokio::time::Instant> {
    match t {
        Some(t) => Some(t.tick().await),
        None => std::future::pending().await,
    }
}
