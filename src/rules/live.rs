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
use crate::signals::Hangups;

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
    pub(crate) fn is_current(&self, rules: &Arc<RuleSet>) -> bool {
        Arc::ptr_eq(&self.0.load(), rules)
    }

    pub(crate) fn store(&self, rules: Arc<RuleSet>) {
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
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the new set and the error are for a caller that looks; the service's loop logs them where they arise"
    )
)]
pub(crate) enum Reload {
    /// The rules in force, or a file already rejected: nothing to do.
    Unchanged,
    /// The file is changing (two reads differ) or briefly missing: look again later.
    Unsettled,
    /// A new, valid set is in force.
    Applied(Arc<RuleSet>),
    /// The file changed but cannot be used; the rules in force stay.
    Rejected(RulesError),
}

/// A check a new rule set must pass beyond the file itself (the service's state limits).
pub(crate) type Check = Box<dyn Fn(&RuleSet) -> Result<(), String> + Send + Sync>;

/// How long the file must stay the same before it is read as a new rule set: an editor
/// or `cp` writing in place leaves it empty or cut short for a moment, and a cut-short
/// file can be valid TOML (`above = 13` for `above = 130`). Writing a new file and
/// renaming it over the old one is atomic and needs no wait; docs/rules.md says so.
const SETTLE: Duration = Duration::from_millis(250);

/// How many more settle waits a SIGHUP allows a file that is still being written (about
/// five seconds).
const SIGHUP_TRIES: u32 = 20;

/// Re-reads the rules file and swaps a valid new set into [`LiveRules`].
pub struct Reloader {
    path: PathBuf,
    live: LiveRules,
    check: Check,
    /// Hash of the text of the rules in force.
    in_force: u64,
    /// Hash of the last text rejected: reported once, not every poll.
    rejected: Option<u64>,
    /// Consecutive polls that could not read the file.
    unreadable: u32,
}

impl Reloader {
    /// `live` holds the rules parsed from `path` (their [`RuleSet::source_hash`] says
    /// which text they came from).
    pub fn new(path: &Path, live: LiveRules, check: Check) -> Reloader {
        let in_force = live.load().source_hash();
        m::rules_file_rejected(false);
        Reloader {
            path: path.to_owned(),
            live,
            check,
            in_force,
            rejected: None,
            unreadable: 0,
        }
    }

    /// Reads the file once; swaps in its rules when the content changed and validates.
    #[cfg(test)]
    pub(crate) fn reload(&mut self) -> Reload {
        match self.read() {
            Ok(bytes) => self.consider(&bytes),
            Err(e) => self.unreadable(e),
        }
    }

    /// As [`Reloader::reload`], but only once the file has stayed the same for
    /// [`SETTLE`].
    pub(crate) async fn reload_settled(&mut self) -> Reload {
        let first = match self.read() {
            Ok(b) => b,
            Err(e) => return self.unreadable(e),
        };
        if self.known(&first) {
            return self.consider(&first);
        }
        tokio::time::sleep(SETTLE).await;
        match self.read() {
            Ok(second) if second == first => self.consider(&second),
            Ok(_) => Reload::Unsettled,
            Err(e) => self.unreadable(e),
        }
    }

    fn read(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(&self.path)
    }

    /// Whether `bytes` are the rules in force or the file last rejected.
    fn known(&self, bytes: &[u8]) -> bool {
        let hash = xxhash_rust::xxh3::xxh3_64(bytes);
        hash == self.in_force || self.rejected == Some(hash)
    }

    fn unreadable(&mut self, e: std::io::Error) -> Reload {
        self.unreadable += 1;
        // Renamed away and back by an editor, or mid-replace: only a file that stays
        // unreadable is reported.
        if self.unreadable < 2 {
            return Reload::Unsettled;
        }
        if self.unreadable > 2 {
            return Reload::Unchanged;
        }
        self.rejected(RulesError {
            file: self.path.clone(),
            line: None,
            rule: None,
            message: format!("cannot read it: {e}"),
        })
    }

    fn consider(&mut self, bytes: &[u8]) -> Reload {
        self.unreadable = 0;
        let hash = xxhash_rust::xxh3::xxh3_64(bytes);
        if hash == self.in_force {
            if self.rejected.take().is_some() {
                // The file is back to the rules in force.
                m::rules_file_rejected(false);
            }
            return Reload::Unchanged;
        }
        if self.rejected == Some(hash) {
            return Reload::Unchanged;
        }
        let parsed = std::str::from_utf8(bytes)
            .map_err(|e| RulesError {
                file: self.path.clone(),
                line: None,
                rule: None,
                message: format!("not UTF-8: {e}"),
            })
            .and_then(|text| RuleSet::parse(text, &self.path))
            .and_then(|rules| {
                let whole = |message: String| RulesError {
                    file: self.path.clone(),
                    line: None,
                    rule: None,
                    message,
                };
                (self.check)(&rules).map_err(whole)?;
                Ok(rules)
            });
        match parsed {
            Ok(rules) => {
                let rules = Arc::new(rules);
                self.live.store(rules.clone());
                self.in_force = hash;
                self.rejected = None;
                m::rules_reloaded(true, rules.rule_count());
                m::rules_file_rejected(false);
                info!(
                    file = %self.path.display(),
                    rules = rules.len(),
                    news2 = rules.news2().is_some(),
                    "rules reloaded"
                );
                Reload::Applied(rules)
            }
            Err(e) => {
                self.rejected = Some(hash);
                self.rejected(e)
            }
        }
    }

    fn rejected(&self, e: RulesError) -> Reload {
        m::rules_reloaded(false, self.live.load().rule_count());
        m::rules_file_rejected(true);
        warn!(error = %e, "rules file rejected; the rules in force stay");
        Reload::Rejected(e)
    }

    /// Starts reloading on each SIGHUP of `hangups` and, unless `poll` is `None`, every
    /// `poll`, until `shutdown`. Call inside a tokio runtime.
    pub fn spawn(
        mut self,
        poll: Option<Duration>,
        mut hangups: Hangups,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = poll.map(|p| {
                let mut t = tokio::time::interval(p);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                let hangup = tokio::select! {
                    () = shutdown.cancelled() => return,
                    Some(()) = hangups.next() => {
                        info!("SIGHUP: reloading the rules file");
                        true
                    }
                    Some(_) = tick_opt(&mut tick) => false,
                };
                let mut outcome = self.reload_settled().await;
                // A SIGHUP always gets an answer in the log: wait out a file being
                // written (a poll would only come back later, or never without one).
                let mut tries = 0;
                while hangup && matches!(outcome, Reload::Unsettled) && tries < SIGHUP_TRIES {
                    tries += 1;
                    outcome = self.reload_settled().await;
                }
                if hangup {
                    match outcome {
                        Reload::Unchanged => info!(
                            file = %self.path.display(),
                            rules = self.live.load().len(),
                            "SIGHUP: the rules file is unchanged; the rules in force stay"
                        ),
                        Reload::Unsettled => warn!(
                            file = %self.path.display(),
                            "SIGHUP: the rules file kept changing or stayed unreadable; the rules in force stay"
                        ),
                        // Applied and rejected files were logged where they were decided.
                        Reload::Applied(_) | Reload::Rejected(_) => {}
                    }
                }
            }
        })
    }
}

async fn tick_opt(t: &mut Option<tokio::time::Interval>) -> Option<tokio::time::Instant> {
    match t {
        Some(t) => Some(t.tick().await),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "[[threshold]]\nid = \"hr_high\"\nmetric = \"heart_rate\"\nabove = 130\nseverity = \"medium\"\n";

    fn setup(name: &str, text: &str) -> (PathBuf, LiveRules, Reloader) {
        let dir = std::env::temp_dir().join(format!("vw-live-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rules.toml");
        std::fs::write(&path, text).unwrap();
        let live = LiveRules::new(Arc::new(RuleSet::load(&path).unwrap()));
        let reloader = Reloader::new(&path, live.clone(), Box::new(|_| Ok(())));
        (path, live, reloader)
    }

    #[test]
    fn a_valid_change_is_applied_and_the_same_file_is_not_applied_twice() {
        let (path, live, mut r) = setup("apply", ONE);
        assert!(matches!(r.reload(), Reload::Unchanged));
        let two = format!(
            "{ONE}[[threshold]]\nid = \"hr_low\"\nmetric = \"heart_rate\"\nbelow = 41\nseverity = \"medium\"\n"
        );
        std::fs::write(&path, &two).unwrap();
        assert!(matches!(r.reload(), Reload::Applied(ref s) if s.len() == 2));
        assert_eq!(live.load().len(), 2);
        assert!(matches!(r.reload(), Reload::Unchanged));
    }

    #[test]
    fn a_bad_file_is_rejected_once_and_the_rules_in_force_stay() {
        let (path, live, mut r) = setup("reject", ONE);
        let before = live.load();
        std::fs::write(&path, format!("{ONE}[[threshold]]\nid = \"x\"\n")).unwrap();
        match r.reload() {
            Reload::Rejected(e) => {
                assert_eq!(e.file, path);
                assert_eq!(e.line, Some(6));
                assert!(e.to_string().contains("`metric` is missing"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(live.is_current(&before));
        // Reported once, not at every poll.
        assert!(matches!(r.reload(), Reload::Unchanged));
        // Back to the rules in force: nothing to apply.
        std::fs::write(&path, ONE).unwrap();
        assert!(matches!(r.reload(), Reload::Unchanged));
        assert!(live.is_current(&before));
    }

    #[test]
    fn an_empty_file_does_not_switch_alerting_off() {
        // What a poll sees between an in-place write's truncate and its write.
        let (path, live, mut r) = setup("empty", ONE);
        std::fs::write(&path, "").unwrap();
        match r.reload() {
            Reload::Rejected(e) => assert!(e.message.contains("would raise no alert"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(live.load().len(), 1);
    }

    #[test]
    fn a_check_beyond_the_file_rejects_it() {
        let (path, live, _) = setup("check", ONE);
        let mut r = Reloader::new(
            &path,
            live.clone(),
            Box::new(|rules| match rules.news2() {
                Some(_) => Err("rules.state_ttl_secs is too short".into()),
                None => Ok(()),
            }),
        );
        std::fs::write(&path, format!("[news2]\n{ONE}")).unwrap();
        assert!(matches!(r.reload(), Reload::Rejected(ref e) if e.message.contains("state_ttl")));
        assert!(live.load().news2().is_none());
    }

    #[test]
    fn a_briefly_missing_file_is_not_reported() {
        let (path, _live, mut r) = setup("missing", ONE);
        let aside = path.with_extension("bak");
        std::fs::rename(&path, &aside).unwrap();
        assert!(matches!(r.reload(), Reload::Unsettled));
        std::fs::rename(&aside, &path).unwrap();
        assert!(matches!(r.reload(), Reload::Unchanged));
        // Gone for good: reported on the second look, once.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(r.reload(), Reload::Unsettled));
        assert!(matches!(r.reload(), Reload::Rejected(_)));
        assert!(matches!(r.reload(), Reload::Unchanged));
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_still_being_written_is_read_again_later() {
        let (path, live, mut r) = setup("settle", ONE);
        // A writer appending while the reloader looks: the settled read sees two
        // different contents and waits for the next poll.
        let writer = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                std::fs::write(&path, format!("{ONE}[news2]\n")).unwrap();
            })
        };
        std::fs::write(&path, "[[threshold]]\nid = \"hr_high\"\n").unwrap();
        assert!(matches!(r.reload_settled().await, Reload::Unsettled));
        writer.await.unwrap();
        assert!(matches!(r.reload_settled().await, Reload::Applied(_)));
        assert!(live.load().news2().is_some());
    }
}
