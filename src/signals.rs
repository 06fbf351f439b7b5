//! Process signals, in one place: SIGTERM and SIGINT stop the process, SIGHUP asks for a
//! rules reload.
//!
//! [`Signals::install`] is the first thing a command does once its runtime runs, so that
//! no signal arrives before a handler (SIGHUP's default action would terminate the
//! process). The rest of the program only sees a [`CancellationToken`] to stop on and a
//! [`Hangups`] receiver, so tests and the demo stop and reload at will.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// The handlers, installed; cloned freely.
#[derive(Clone)]
pub struct Signals {
    shutdown: CancellationToken,
    interrupts: watch::Receiver<u64>,
    hangups: watch::Receiver<u64>,
}

/// SIGHUPs since the receiver last looked.
#[derive(Clone)]
pub struct Hangups(watch::Receiver<u64>);

impl Hangups {
    /// Waits for the next SIGHUP; `None` once the handler is gone.
    pub(crate) async fn next(&mut self) -> Option<()> {
        self.0.changed().await.ok()
    }

    /// A receiver that never sees a SIGHUP (tests, and systems without signals).
    pub fn none() -> Hangups {
        let (tx, rx) = watch::channel(0);
        // Kept alive for ever: `next` then waits for ever instead of ending.
        std::mem::forget(tx);
        Hangups(rx)
    }
}

impl Signals {
    /// Installs the handlers. Call inside a tokio runtime.
    pub fn install() -> Signals {
        let shutdown = CancellationToken::new();
        let (interrupt_tx, interrupts) = watch::channel(0u64);
        let (hangup_tx, hangups) = watch::channel(0u64);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            listen(stop, interrupt_tx, hangup_tx).await;
        });
        Signals {
            shutdown,
            interrupts,
            hangups,
        }
    }

    /// Cancelled on the first SIGTERM or SIGINT.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// SIGHUPs from now on.
    pub fn hangups(&self) -> Hangups {
        let mut rx = self.hangups.clone();
        rx.mark_unchanged();
        Hangups(rx)
    }

    /// Waits until `n` SIGTERMs or SIGINTs have arrived in all (the demo quits at once on
    /// a second Ctrl-C).
    pub async fn interrupts(&self, n: u64) {
        let mut rx = self.interrupts.clone();
        loop {
            if *rx.borrow_and_update() >= n {
                return;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(unix)]
async fn listen(
    shutdown: CancellationToken,
    interrupts: watch::Sender<u64>,
    hangups: watch::Sender<u64>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the service"))
        .ok();
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| error!(error = %e, "cannot listen for SIGHUP; the rules file is only polled"))
        .ok();
    loop {
        let name = tokio::select! {
            r = tokio::signal::ctrl_c() => match r {
                Ok(()) => "SIGINT",
                Err(_) => return,
            },
            Some(()) = next(&mut term) => "SIGTERM",
            Some(()) = next(&mut hup) => {
                hangups.send_modify(|n| *n += 1);
                continue;
            }
        };
        interrupts.send_modify(|n| *n += 1);
        if !shutdown.is_cancelled() {
            info!(signal = name, "shutdown requested");
            shutdown.cancel();
        }
    }
}

#[cfg(unix)]
async fn next(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn listen(
    shutdown: CancellationToken,
    interrupts: watch::Sender<u64>,
    _hangups: watch::Sender<u64>,
) {
    while tokio::signal::ctrl_c().await.is_ok() {
        interrupts.send_modify(|n| *n += 1);
        if !shutdown.is_cancelled() {
            info!(signal = "SIGINT", "shutdown requested");
            shutdown.cancel();
        }
    }
}
