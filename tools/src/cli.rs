//! The command line, declared with clap derive. Every flag can also be set
//! from a `TETHER_*` environment variable, so compose files and systemd units
//! configure the same options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Tether: hardware-rooted license authority tooling.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create key pairs (vendor root, dongle identity).
    #[command(subcommand)]
    Keygen(KeygenCmd),
    /// Issue and verify licenses.
    #[command(subcommand)]
    License(LicenseCmd),
    /// Enroll services with the authority.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Show what a key, license or credential file holds.
    Inspect(InspectArgs),
    /// The dongle: emulator, plug/unplug, probe.
    #[command(subcommand)]
    Dongle(crate::dongle::DongleCmd),
    /// Fetch a license token from tetherd (prints the JSON answer).
    Token(TokenArgs),
    /// Verify a license token offline, with the vendor public key only.
    Verify(VerifyArgs),
    /// Run the reference `backend` service (works only while licensed).
    Backend(crate::service::ServiceArgs),
    /// Run the reference `muxer` service (needs the `mux` feature).
    Muxer(crate::service::ServiceArgs),
    /// The whole product live, with an emulated dongle: the quick start.
    Demo(crate::demo::DemoArgs),
    /// Run the authority daemon (the same as the `tetherd` binary).
    #[command(hide = true, disable_help_flag = true, disable_version_flag = true)]
    Tetherd {
        /// tetherd's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Exit 0 when URL answers 200 (the container healthcheck; images carry no curl).
    Health {
        /// The URL to probe, e.g. http://127.0.0.1:7443/healthz.
        url: String,
    },
}

/// Where a service's secret comes from: a file (preferred: not in `ps`) or the environment.
#[derive(Debug, Args)]
pub struct SecretArgs {
    /// File holding the service secret (from `tether service enroll --secret-out`).
    #[arg(long, env = "TETHER_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// The service secret itself (prefer --secret-file: arguments show in `ps`).
    #[arg(long, env = "TETHER_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// tetherd's base URL.
    #[arg(
        long,
        env = "TETHER_AUTHORITY_URL",
        default_value = "http://127.0.0.1:7443"
    )]
    pub url: String,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// A nonce for tetherd to echo in the token.
    #[arg(long)]
    pub nonce: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The vendor public key (vendor.pub): the only thing trusted.
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: PathBuf,
    /// The service the token must be for (its `aud` and `sub`).
    #[arg(long, env = "TETHER_SERVICE")]
    pub service: String,
    /// A nonce the token must echo.
    #[arg(long)]
    pub nonce: Option<String>,
    /// Clock leeway for the time checks (e.g. 5s; at most 5m).
    #[arg(long, env = "TETHER_LEEWAY", default_value = "5s", value_parser = parse_leeway)]
    pub leeway: Duration,
    /// The token, or the JSON answer of `GET /token` (`tether token`); `-` reads stdin.
    #[arg(default_value = "-")]
    pub token: String,
}

#[derive(Debug, Subcommand)]
pub enum KeygenCmd {
    /// The vendor root key pair: vendor.key (keep offline) and vendor.pub.
    Vendor {
        /// Directory to write the key pair into (created if missing).
        #[arg(long, env = "TETHER_OUT")]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// A dongle identity: dongle.key (for the emulator or a firmware flasher) and dongle.pub.
    Dongle {
        /// Directory to write the identity into (created if missing).
        #[arg(long, env = "TETHER_OUT")]
        out: PathBuf,
        /// Serial number; a random `TD-` serial when omitted.
        #[arg(long, env = "TETHER_DONGLE_SERIAL")]
        serial: Option<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LicenseCmd {
    /// Sign a license binding a customer to one dongle.
    Issue(LicenseIssueArgs),
    /// Check a license's signature against the vendor public key, and its validity now.
    Verify {
        /// The vendor public key (vendor.pub).
        #[arg(long, env = "TETHER_VENDOR_PUB")]
        vendor_pub: PathBuf,
        /// The license file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct LicenseIssueArgs {
    /// The vendor private key (vendor.key).
    #[arg(long, env = "TETHER_VENDOR_KEY")]
    pub vendor_key: PathBuf,
    /// The dongle's public key file (dongle.pub, carries the serial).
    #[arg(long, env = "TETHER_DONGLE_PUB")]
    pub dongle_pub: PathBuf,
    /// The dongle serial, when dongle.pub does not name it.
    #[arg(long, env = "TETHER_DONGLE_SERIAL")]
    pub serial: Option<String>,
    /// Customer name.
    #[arg(long, env = "TETHER_CUSTOMER")]
    pub customer: String,
    /// Features granted, comma-separated.
    #[arg(long, env = "TETHER_FEATURES", value_delimiter = ',')]
    pub features: Vec<String>,
    /// Services allowed to obtain tokens, comma-separated.
    #[arg(long, env = "TETHER_SERVICES", value_delimiter = ',', required = true)]
    pub services: Vec<String>,
    /// How long the license is valid from --not-before (e.g. 365d).
    #[arg(long, env = "TETHER_VALID_FOR", default_value = "365d")]
    pub valid_for: String,
    /// Start of validity as UNIX seconds (default: now).
    #[arg(long, env = "TETHER_NOT_BEFORE")]
    pub not_before: Option<u64>,
    /// Longest token lifetime an authority may issue (e.g. 5m).
    #[arg(long, env = "TETHER_MAX_TTL", default_value = "5m")]
    pub max_ttl: String,
    /// Output file.
    #[arg(long, env = "TETHER_LICENSE_OUT")]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Enroll a service: print its one-time secret, store only the hash.
    Enroll {
        /// Service name (as in the license's services).
        name: String,
        /// The authority's credential file (created if missing).
        #[arg(long, env = "TETHER_CREDENTIALS")]
        credentials: PathBuf,
        /// Write the secret to this file (mode 0600) instead of printing it.
        #[arg(long, env = "TETHER_SECRET_OUT")]
        secret_out: Option<PathBuf>,
        /// Rotate the secret of an already enrolled service.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A key, public key, license or credential file.
    pub file: PathBuf,
    /// Machine-readable JSON output.
    #[arg(long)]
    pub json: bool,
}

/// The largest leeway accepted: it widens every window, the certificate's
/// included, so it adds to what a session key dumped from memory is worth.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Parses `--leeway`: whole seconds, at most 5 minutes.
pub fn parse_leeway(text: &str) -> Result<Duration, String> {
    let d = tether_keys::parse_duration(text).map_err(|e| e.to_string())?;
    if d > MAX_LEEWAY {
        return Err(format!(
            "{text:?} is longer than the 5m allowed: fix the clocks (NTP) instead"
        ));
    }
    if d.subsec_nanos() != 0 {
        return Err(format!("{text:?}: use whole seconds"));
    }
    Ok(d)
}

/// Parses `--event-spread`: at most 10 minutes.
pub fn parse_spread(text: &str) -> Result<Duration, String> {
    let d = tether_keys::parse_duration(text).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(600) {
        return Err(format!("{text:?} is longer than the 10m allowed"));
    }
    Ok(d)
}
