//! The daemon's entry point, shared by the `tetherd` binary and `tether
//! tetherd`: parse, validate, load, serve until SIGTERM/SIGINT. Errors print
//! as one line with their causes and exit 1.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser as _;

use crate::config::{Args, Config};
use crate::{Listener, load, run};

/// Runs `tetherd` with `args` (the first one is the program name).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logs(args.log_json);
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tetherd: error: {}", error_line(&err));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line, outermost first. A cause whose text
/// its parent's message already contains (`"{path}: {source}"` errors that
/// also expose the source) is not repeated.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut last = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !last.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        last = text;
    }
    line
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests running main twice) is harmless: keep the first.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn start(args: Args) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    let auth = load(&config)?;
    // The state directory is ours (locked) from here: `tether license
    // install` finds us by this file and signals SIGHUP.
    let pid_file = config.state_dir.join(crate::license::PID_FILE);
    tether_keys::fsutil::write_atomic(
        &pid_file,
        format!("{}\n", std::process::id()).as_bytes(),
        0o644,
    )?;
    let _remove_pid = RemoveOnDrop(pid_file);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            let auth = auth.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: looking for a license update");
                    auth.license_check.notify_one();
                }
            });
        }
        let mut listeners = Vec::new();
        for listen in &config.listen {
            let l = Listener::bind(listen).await?;
            match &l {
                Listener::Tcp(t) => tracing::info!(addr = %t.local_addr()?, "listening"),
                Listener::Unix(_) => tracing::info!(?listen, "listening"),
            }
            listeners.push(l);
        }
        run(auth, &config, listeners, shutdown_signal()).await
    })
}

/// Removes a file when dropped (the pid file, however `start` ends).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Completes on SIGTERM or SIGINT. tetherd's own: it logs under this
/// module's target, so other programs have their own (`tether`'s services
/// log under `tether::signals`).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon could not stop cleanly; run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn error_line_keeps_every_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
        let inner = tether_keys::Error::Io {
            path: "state".into(),
            source: io,
        };
        let err = anyhow::Error::new(inner).context("cannot open the state directory");
        let line = error_line(&err);
        assert_eq!(line.matches("entity already exists").count(), 1, "{line}");
        assert!(
            line.starts_with("cannot open the state directory: state: "),
            "{line}"
        );
        let plain = anyhow::anyhow!("outer").context("top");
        assert_eq!(error_line(&plain), "top: outer");
    }
}
