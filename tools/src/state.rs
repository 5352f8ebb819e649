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
            let now = tether_keys::UnixTime::now();
            let old = store.reset_clock(now)?;
            // UnixTime displays as RFC 3339 in UTC.
            println!(
                "clock mark in {} set from {old} to {now} (now)",
                store.path().display(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
