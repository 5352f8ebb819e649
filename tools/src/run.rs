//! `tether run`: gates an unmodified program on the license, as a supervisor.
//!
//! A [`LicenseWatch`] keeps the service licensed (tokens fetched with the
//! service's credential, each verified offline down to the vendor key,
//! `/events` followed). The program is started only once a verified token is
//! held. When the license is lost, `--on-loss stop` sends SIGTERM, SIGKILL
//! after `--grace`, and starts the program again once licensed; `--on-loss
//! pause` sends SIGSTOP, and SIGCONT once licensed again.
//!
//! The program runs in its own process group, and every signal goes to that
//! group, so that a pause or a stop reaches its workers too; whatever it
//! leaves in its group when it exits is killed. SIGTERM, SIGINT and SIGHUP
//! are forwarded (a paused program is continued so that it can act on them;
//! SIGKILL follows after `--grace`), and `tether run` exits with the
//! program's status (128+N when a signal N ended it). It is a child
//! subreaper and reaps every child, so it can be PID 1 in a container
//! without leaving zombies.
//!
//! The program learns its license without linking anything: the
//! environment (`TETHER_LICENSE_ID`, `TETHER_CUSTOMER`, `TETHER_FEATURES`,
//! `TETHER_INSTANCE`, `TETHER_TOKEN_FILE`) and, with `--token-file`, the
//! current token in a file (mode 0600, replaced atomically on refresh,
//! removed while unlicensed). `TETHER_SECRET` is not passed on.
//!
//! Each run has a random instance id. On exit, `DELETE /lease?instance=ID`
//! releases its seat at once (best effort: an authority without seats
//! answers 404 or 405, which is not an error). The token request names the
//! instance only through [`WatchConfig::instance`], which this module does
//! not call: an authority without seats refuses unknown query parameters.
//!
//! Neither the secret nor a token is ever logged.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use tether_keys::{License, LicenseTerms, TokenClaims, Vendor, keyfile};
use tether_verifier::{Expectations, LicenseState, LicenseWatch, Verifier, WatchConfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, sleep_until};

use crate::cli::{OnLoss, RunArgs};

/// `tether run`, validated before anything starts.
struct Plan {
    service: String,
    authority: String,
    on_loss: OnLoss,
    grace: Duration,
    token_file: Option<PathBuf>,
    program: OsString,
    args: Vec<OsString>,
    instance: String,
}

/// Where the program is.
#[derive(Debug, Clone, Copy)]
enum Program {
    /// Not running: waiting for a license (or not started yet).
    Idle,
    /// Running while licensed.
    Running(Pid),
    /// Stopped with SIGSTOP while unlicensed (`--on-loss pause`).
    Paused(Pid),
    /// Sent SIGTERM (license lost, or a forwarded signal); SIGKILL at the
    /// deadline unless it has exited by then.
    Stopping(Pid, Option<Instant>),
}

impl Program {
    fn pid(self) -> Option<Pid> {
        match self {
            Program::Idle => None,
            Program::Running(p) | Program::Paused(p) | Program::Stopping(p, _) => Some(p),
        }
    }
}

/// Runs the program under the license until it exits.
///
/// # Errors
///
/// Bad arguments, an unreadable vendor key or secret, a program that
/// cannot be started, or a token file that cannot be written.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let grace = tether_keys::parse_duration(&args.grace).context("--grace")?;
    tether_keys::license::check_name("service", &args.service).context("--service")?;
    if !args.authority.starts_with("http://") {
        bail!(
            "--authority {}: only http://HOST:PORT is supported",
            args.authority
        );
    }
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&args.vendor_pub)?;
    let secret = crate::client::load_secret(&args.secret)?;
    let mut argv = args.program.into_iter();
    let program = argv.next().context("no program given (after --)")?;
    check_program(&program)?;
    if let Some(f) = &args.token_file {
        let dir = match f.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() || f.file_name().is_none() {
            bail!(
                "--token-file {}: not a file in an existing directory",
                f.display()
            );
        }
        // A token left by an earlier run says nothing about this one.
        let _ = std::fs::remove_file(f);
    }
    let plan = Plan {
        service: args.service,
        authority: args.authority,
        on_loss: args.on_loss,
        grace,
        token_file: args.token_file,
        program,
        args: argv.collect(),
        instance: instance_id(),
    };
    let mut expectations = Expectations::new(&plan.service);
    if args.refuse_grace {
        expectations = expectations.refuse_grace();
    }
    let verifier = Verifier::new(vendor, expectations);
    crate::logs::init();
    // Orphans of the program come to us rather than to the host's init, so
    // they are reaped here (PID 1 in a container gets them anyway).
    if rustix::process::getpid() != Pid::INIT
        && let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
    {
        tracing::debug!(error = %e, "cannot become a child subreaper");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        // The program's TETHER_INSTANCE is the instance that holds the seat.
        let config = WatchConfig::new(&plan.authority, &plan.service, secret, verifier)
            .instance(&plan.instance)?;
        let watch = LicenseWatch::spawn(config);
        let outcome = supervise(&plan, &watch).await;
        // Give the seat back at once (the lease would lapse with the token).
        match watch.release().await {
            Ok(()) => tracing::info!("seat released"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the seat; it lapses with its lease")
            }
        }
        outcome
    });
    drop(runtime);
    if let Some(f) = &plan.token_file {
        let _ = std::fs::remove_file(f);
    }
    reap_all(None);
    let code = outcome?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// A random instance id: 16 characters of base64url (`A-Z a-z 0-9 - _`).
fn instance_id() -> String {
    let mut raw = [0u8; 12];
    tether_keys::random_fill(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Refuses a program that cannot be found, before waiting for a license.
fn check_program(program: &OsStr) -> anyhow::Result<()> {
    let path = Path::new(program);
    let found = if program.as_encoded_bytes().contains(&b'/') {
        path.is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(path).is_file()))
    };
    if program.is_empty() || !found {
        bail!("{}: program not found", path.display());
    }
    Ok(())
}

/// The supervisor loop; returns the exit code.
async fn supervise(plan: &Plan, watch: &LicenseWatch) -> anyhow::Result<i32> {
    // Every handler is installed before the program can exist.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut child = signal(SignalKind::child())?;
    let mut states = watch.subscribe();
    let mut program = Program::Idle;
    // The signal that asked us to end, once one did.
    let mut ending: Option<Signal> = None;
    let mut seen = Seen::default();
    tracing::info!(service = %plan.service, instance = %plan.instance, "waiting for a license");
    loop {
        if ending.is_none() {
            program = match follow_license(plan, watch.state(), program, &mut seen) {
                Ok(p) => p,
                Err(e) => {
                    // Never leave the program running ungated behind us.
                    if let Some(pid) = program.pid() {
                        signal_group(pid, Signal::KILL);
                    }
                    return Err(e);
                }
            };
        }
        let kill_at = match program {
            Program::Stopping(_, at) => at,
            _ => None,
        };
        tokio::select! {
            changed = states.changed() => {
                if changed.is_err() {
                    if let Some(pid) = program.pid() {
                        signal_group(pid, Signal::KILL);
                    }
                    bail!("the license refresher stopped");
                }
            }
            _ = child.recv() => {
                let Some(status) = reap_all(program.pid()) else { continue };
                let code = exit_code(status);
                if let Some(pid) = program.pid() {
                    // Whatever the program left in its group goes with it.
                    signal_group(pid, Signal::KILL);
                }
                match (program, ending) {
                    (Program::Stopping(..), None) => {
                        tracing::info!(code, "program stopped");
                        program = Program::Idle;
                    }
                    _ => {
                        tracing::info!(code, "program exited");
                        return Ok(code);
                    }
                }
            }
            _ = term.recv() => {
                if let Some(code) = end(plan, &mut program, &mut ending, Signal::TERM) {
                    return Ok(code);
                }
            }
            _ = int.recv() => {
                if let Some(code) = end(plan, &mut program, &mut ending, Signal::INT) {
                    return Ok(code);
                }
            }
            _ = hup.recv() => match program.pid() {
                Some(pid) => signal_group(pid, Signal::HUP),
                None => tracing::info!("SIGHUP while the program is not running: ignored"),
            },
            () = sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() => {
                if let Program::Stopping(pid, _) = program {
                    tracing::warn!(grace = ?plan.grace, "the program outlived its grace: SIGKILL");
                    signal_group(pid, Signal::KILL);
                    program = Program::Stopping(pid, None);
                }
            }
        }
    }
}

/// What the supervisor last did with the license.
#[derive(Debug, Default)]
struct Seen {
    /// The token in --token-file (its jti), if one is there.
    written: Option<String>,
    /// The last reason for not being licensed that was logged.
    reason: Option<String>,
}

/// Starts, resumes, stops or pauses the program as the license now says;
/// keeps the token file current.
fn follow_license(
    plan: &Plan,
    state: LicenseState,
    program: Program,
    seen: &mut Seen,
) -> anyhow::Result<Program> {
    match state {
        LicenseState::Licensed { claims, token, .. } => {
            seen.reason = None;
            if let Some(path) = &plan.token_file
                && seen.written.as_deref() != Some(claims.jti.as_str())
            {
                tether_keys::fsutil::write_atomic(path, token.expose().as_bytes(), 0o600)?;
                seen.written = Some(claims.jti.clone());
            }
            Ok(match program {
                Program::Idle => {
                    let pid = start(plan, &claims)?;
                    tracing::info!(
                        pid = pid.as_raw_nonzero().get(),
                        "licensed: program started"
                    );
                    Program::Running(pid)
                }
                Program::Paused(pid) => {
                    signal_group(pid, Signal::CONT);
                    tracing::info!("licensed again: program continued (SIGCONT)");
                    Program::Running(pid)
                }
                // A program being stopped starts again after it has exited.
                p @ (Program::Running(_) | Program::Stopping(..)) => p,
            })
        }
        LicenseState::Unlicensed { reason } => {
            if let (Some(path), Some(_)) = (&plan.token_file, seen.written.take()) {
                let _ = std::fs::remove_file(path);
            }
            // Why the program is not (or no longer) running, once per reason.
            if seen.reason.as_deref() != Some(reason.as_str()) {
                if matches!(program, Program::Idle) {
                    tracing::info!(%reason, "not licensed: waiting");
                }
                seen.reason = Some(reason.clone());
            }
            Ok(match (program, plan.on_loss) {
                (Program::Running(pid), OnLoss::Stop) => {
                    tracing::warn!(%reason, grace = ?plan.grace, "license lost: stopping the program (SIGTERM)");
                    signal_group(pid, Signal::TERM);
                    Program::Stopping(pid, Some(Instant::now() + plan.grace))
                }
                (Program::Running(pid), OnLoss::Pause) => {
                    tracing::warn!(%reason, "license lost: pausing the program (SIGSTOP)");
                    signal_group(pid, Signal::STOP);
                    Program::Paused(pid)
                }
                (p, _) => p,
            })
        }
    }
}

/// Starts the program in its own process group, with its license in the
/// environment.
fn start(plan: &Plan, claims: &TokenClaims) -> anyhow::Result<Pid> {
    let terms = license_terms(claims)?;
    let mut cmd = std::process::Command::new(&plan.program);
    cmd.args(&plan.args)
        .env_remove("TETHER_SECRET")
        .env("TETHER_LICENSE_ID", terms.id.to_string())
        .env("TETHER_CUSTOMER", &terms.customer)
        .env("TETHER_FEATURES", terms.features.join(","))
        .env("TETHER_INSTANCE", &plan.instance)
        .process_group(0);
    if let Some(f) = &plan.token_file {
        cmd.env("TETHER_TOKEN_FILE", f);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", Path::new(&plan.program).display()))?;
    // Reaped by `reap_all`, never through `child`.
    Ok(Pid::from_child(&child))
}

/// The license inside a token the verifier has accepted.
fn license_terms(claims: &TokenClaims) -> anyhow::Result<LicenseTerms> {
    let bytes = URL_SAFE_NO_PAD
        .decode(&claims.lic)
        .context("the token's license is not base64url")?;
    Ok(License::decode(&bytes)?.terms().clone())
}

/// SIGTERM or SIGINT for us: forwarded, and we end when the program has.
/// Returns the exit code when there is no program to wait for.
fn end(
    plan: &Plan,
    program: &mut Program,
    ending: &mut Option<Signal>,
    sig: Signal,
) -> Option<i32> {
    *ending = Some(sig);
    let code = 128 + sig.as_raw();
    match *program {
        Program::Idle => {
            tracing::info!(
                signal = sig.as_raw(),
                "signal while the program is not running: exiting"
            );
            Some(code)
        }
        Program::Running(pid) | Program::Paused(pid) => {
            tracing::info!(
                signal = sig.as_raw(),
                "forwarding the signal to the program"
            );
            signal_group(pid, sig);
            // A stopped process acts on a signal only once continued.
            signal_group(pid, Signal::CONT);
            *program = Program::Stopping(pid, Some(Instant::now() + plan.grace));
            None
        }
        Program::Stopping(pid, _) => {
            signal_group(pid, sig);
            None
        }
    }
}

/// Signals the program's process group; a group already gone is not an error.
fn signal_group(pid: Pid, sig: Signal) {
    if let Err(e) = rustix::process::kill_process_group(pid, sig)
        && e != rustix::io::Errno::SRCH
    {
        tracing::warn!(error = %e, signal = sig.as_raw(), "cannot signal the program");
    }
}

/// Reaps every child that has exited (orphans included); returns the status
/// of `main` when it was among them.
fn reap_all(main: Option<Pid>) -> Option<WaitStatus> {
    let mut found = None;
    while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
        if Some(pid) == main {
            found = Some(status);
        } else {
            tracing::debug!(pid = pid.as_raw_nonzero().get(), "reaped an orphan");
        }
    }
    found
}

/// A shell's exit code for a status: the code, or 128+N for signal N.
fn exit_code(status: WaitStatus) -> i32 {
    status
        .exit_status()
        .or_else(|| status.terminating_signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_valid_and_differ() {
        let a = instance_id();
        assert!(tether_verifier::refresh::is_instance_id(&a), "{a}");
        assert_ne!(a, instance_id());
    }

    #[test]
    fn a_missing_program_is_refused_early() {
        assert!(check_program(OsStr::new("sh")).is_ok());
        assert!(check_program(OsStr::new("/bin/sh")).is_ok());
        assert!(check_program(OsStr::new("no-such-program-here")).is_err());
        assert!(check_program(OsStr::new("/no/such/program")).is_err());
        assert!(check_program(OsStr::new("")).is_err());
    }
}
