//! `tether state`: the operator's tools for tetherd's state directory.

use std::process::ExitCode;

use anyhow::Context as _;
use tether_authority::state::StateStore;

use crate::cli::StateCmd;

/// Runs a `tether state` subcommand.
pub fn run(cmd: &StateCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        StateCmd::ResetClock(args) => {
            // Opening takes the directory's lock: refused while tetherd runs.
            let store = StateStore::open(&args.state_dir)
                .with_context(|| format!("state directory {}", args.state_dir.display()))?;
            let now = tether_keys::now_unix();
            let old = store.reset_clock(now)?;
            let at = |t: u64| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                )
            };
            println!(
                "clock mark in {} set from {} to {} (now)",
                store.path().display(),
                at(old),
                at(now)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
