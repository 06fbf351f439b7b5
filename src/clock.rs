//! Time: the wall clock in Unix milliseconds, and the ingest thread's cached reading.
//!
//! Observation timestamps are Unix epoch milliseconds, so "now" is too. Everything that
//! decides an alert uses observation time; the wall clock only bounds what is accepted
//! (future skew, age) and measures event age.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The wall clock, Unix epoch milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One clock read per message instead of five: the monotonic instant, and the wall
/// clock in Unix milliseconds derived from it (re-read from the system every second, so
/// it follows clock adjustments; the decoder only compares it with the skew and age
/// bounds, minutes to days).
#[derive(Debug)]
pub(crate) struct Clock {
    /// The monotonic instant of the last [`Clock::tick`].
    pub(crate) now: Instant,
    /// The wall clock at that instant.
    pub(crate) wall_ms: i64,
    base: Instant,
    base_wall_ms: i64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        let now = Instant::now();
        let wall_ms = now_ms();
        Clock {
            now,
            wall_ms,
            base: now,
            base_wall_ms: wall_ms,
        }
    }

    /// Reads the monotonic clock; the wall clock is derived from it and re-read from the
    /// system once a second.
    pub(crate) fn tick(&mut self) {
        self.now = Instant::now();
        let since = self.now.saturating_duration_since(self.base);
        if since >= Duration::from_secs(1) {
            self.base = self.now;
            self.base_wall_ms = now_ms();
            self.wall_ms = self.base_wall_ms;
        } else {
            self.wall_ms = self.base_wall_ms + since.as_millis() as i64;
        }
    }
}
