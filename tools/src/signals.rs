//! SIGTERM and SIGINT for the long-running `tether` subcommands (the
//! reference services, the emulator, the demo).
//!
//! tetherd has its own; these log under this crate's target
//! (`tether::signals`) with the program's name, so a service's log names
//! the service, not the daemon.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// SIGTERM and SIGINT, handled: from the moment this exists, neither ends
/// the process by its default action.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers (within a tokio runtime with I/O enabled).
    ///
    /// # Errors
    ///
    /// When a handler cannot be installed, or there is no runtime.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Completes on the first SIGTERM or SIGINT, logged for `program`.
    pub async fn recv(mut self, program: &str) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!(program, "SIGTERM"),
            _ = self.int.recv() => tracing::info!(program, "SIGINT"),
        }
    }
}

/// Completes on SIGTERM or SIGINT, logged for `program`.
pub async fn terminated(program: &str) {
    match Signals::install() {
        Ok(signals) => signals.recv(program).await,
        Err(e) => {
            // Without handlers it could not stop cleanly; run until killed.
            tracing::warn!(program, error = %e, "cannot handle SIGTERM/SIGINT");
            std::future::pending::<()>().await;
        }
    }
}

/// Cancels `token` on SIGTERM or SIGINT, for a program that is not async
/// (the demo): a thread of its own waits for them. The handlers are
/// installed before this returns, so a signal at any later moment cannot
/// end the process by its default action.
///
/// # Errors
///
/// When the handlers or the thread cannot be set up.
pub fn cancel_on_signal(program: &'static str, token: CancellationToken) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signals = {
        let _context = rt.enter();
        Signals::install()?
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(signals.recv(program));
            token.cancel();
        })?;
    Ok(())
}
