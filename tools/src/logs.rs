//! Logging for the long-running `tether` subcommands (services, emulator):
//! human-readable on stderr, level from `TETHER_LOG` (default `info`).
//!
//! A peer that closes a connection mid-request is not our error: warp's
//! server logs each one at ERROR (`warp::server`), so a neighbour could
//! flood the log (issue 13 item 6). Those lines are left out, whatever
//! level `TETHER_LOG` asks for, unless it names `warp::server` itself
//! (`TETHER_LOG=info,warp::server=debug` to see them).

/// The directive that keeps warp's per-connection errors out of the log.
const QUIET_PEERS: &str = "warp::server=off";

/// Installs the subscriber once; later calls are no-ops.
pub fn init() {
    let spec = std::env::var("TETHER_LOG").unwrap_or_else(|_| "info".into());
    let spec = if spec.contains("warp::server") {
        spec
    } else {
        format!("{spec},{QUIET_PEERS}")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{QUIET_PEERS}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
