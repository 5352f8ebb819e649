//! The command line, declared with clap derive. Every flag can also be set
//! from a `TETHER_*` environment variable, so compose files and systemd units
//! configure the same options.
//!
//! This module owns every argument type; the command modules (`provision`,
//! `client`, `dongle`, `service`, `demo`) import from here and nothing here
//! imports from them, so dependencies point one way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Tether: hardware-rooted license authority tooling.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
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
    /// Show what a key, license, credential file or token holds.
    Inspect(InspectArgs),
    /// The dongle: emulator, plug/unplug, probe.
    #[command(subcommand)]
    Dongle(DongleCmd),
    /// Fetch a license token from tetherd (prints the JSON answer).
    Token(TokenArgs),
    /// Verify a license token offline, with the vendor public key only.
    Verify(VerifyArgs),
    /// Run the reference `backend` service (works only while licensed).
    Backend(ServiceArgs),
    /// Run the reference `muxer` service (needs the `mux` feature).
    Muxer(ServiceArgs),
    /// Run an unmodified program only while licensed: start it once a
    /// verified token is held, stop or pause it when the license is lost.
    Run(RunArgs),
    /// The whole product live, with an emulated dongle: the quick start.
    Demo(DemoArgs),
    /// Run the authority daemon (the same as the `tetherd` binary).
    #[command(hide = true, disable_help_flag = true, disable_version_flag = true)]
    Tetherd {
        /// tetherd's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// The authority's state directory: high-water marks.
    #[command(subcommand)]
    State(StateCmd),
    /// Files the site sends the vendor: `tether site request` (the dongle
    /// signs what the site runs) and `tether site request verify`.
    #[command(subcommand)]
    Site(SiteCmd),
    /// Usage reports: export the site's ledger, verify an export at the vendor.
    #[command(subcommand)]
    Usage(UsageCmd),
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

/// Flags of `tether token`.
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
    /// A nonce for tetherd to echo in the token (default: a random one,
    /// printed on stderr for `tether verify --nonce`).
    #[arg(long)]
    pub nonce: Option<String>,
    /// The consumer instance to ask as: it holds one of the service's seats
    /// until its lease lapses (1-64 of `A-Z a-z 0-9 . _ -`).
    #[arg(long, env = "TETHER_INSTANCE", default_value = "tether-cli")]
    pub instance: String,
}

/// Flags of `tether verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The vendor public key (vendor.pub): the only thing trusted.
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: PathBuf,
    /// The service the token must be for (its `aud` and `sub`).
    #[arg(long, env = "TETHER_SERVICE")]
    pub service: String,
    /// A nonce the token must echo; under a license with a nonce period,
    /// the token's inclusion proof for it is checked as always.
    #[arg(long)]
    pub nonce: Option<String>,
    /// Clock leeway for the time checks (e.g. 5s; at most 5m).
    #[arg(long, env = "TETHER_LEEWAY", default_value = "5s", value_parser = parse_leeway)]
    pub leeway: Duration,
    /// The token, or the JSON answer of `GET /token` (`tether token`); `-` reads stdin.
    #[arg(default_value = "-")]
    pub token: String,
}

/// `tether keygen ...`.
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

/// `tether license ...`.
#[derive(Debug, Subcommand)]
pub enum LicenseCmd {
    /// Sign a license binding a customer to one dongle.
    Issue(Box<LicenseIssueArgs>),
    /// Check a license's signature against the vendor public key, and its validity now.
    Verify {
        /// The vendor public key (vendor.pub).
        #[arg(long, env = "TETHER_VENDOR_PUB")]
        vendor_pub: PathBuf,
        /// The license file.
        file: PathBuf,
    },
    /// Build a license from a body written by `license issue --unsigned`
    /// and a raw 64-byte Ed25519 signature over it made elsewhere (an
    /// offline machine, an HSM), and check it under the vendor public key
    /// (docs/offline-signing.md).
    Attach {
        /// The body file (`license issue --unsigned --out body.tbs`).
        #[arg(long)]
        body: PathBuf,
        /// The raw 64-byte signature over the body file's bytes.
        #[arg(long)]
        signature: PathBuf,
        /// The vendor public key (vendor.pub) the signature must verify under.
        #[arg(long, env = "TETHER_VENDOR_PUB")]
        vendor_pub: PathBuf,
        /// The license file to write.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Hand a license update or a revocation to the running tetherd of a
    /// state directory, and wait for its verdict (exit 0 when accepted).
    Install(LicenseInstallArgs),
    /// Sign a revocation of a license: tetherd stops issuing under it once
    /// installed (`tether license install`), and after restarts too.
    Revoke {
        /// The vendor private key (vendor.key).
        #[arg(long, env = "TETHER_VENDOR_KEY")]
        vendor_key: PathBuf,
        /// The license to revoke: its id, and every sequence up to its own.
        #[arg(long)]
        license: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Revocation receipts the site's dongle signs (`tether license receipt verify`).
    #[command(subcommand)]
    Receipt(ReceiptCmd),
}

/// `tether license receipt ...`.
#[derive(Debug, Subcommand)]
pub enum ReceiptCmd {
    /// At the vendor: check a revocation receipt (`STATE_DIR/receipts/ID.receipt`)
    /// against the license it revokes; exit 0 when it proves the site's
    /// dongle dropped the license.
    Verify(ReceiptVerifyArgs),
}

/// Flags of `tether license receipt verify`.
#[derive(Debug, Args)]
pub struct ReceiptVerifyArgs {
    /// The vendor public key (vendor.pub): the license must verify under it.
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: PathBuf,
    /// The license revoked (any version the revocation covers): names the
    /// dongle whose signature the receipt must carry.
    #[arg(long)]
    pub license: PathBuf,
    /// The revocation the receipt must answer (optional: checked by its SHA-256).
    #[arg(long)]
    pub revocation: Option<PathBuf>,
    /// Machine-readable JSON output (times as UNIX seconds).
    #[arg(long)]
    pub json: bool,
    /// The receipt file.
    pub receipt: PathBuf,
}

/// `tether site ...`.
#[derive(Debug, Subcommand)]
pub enum SiteCmd {
    /// At the site: have the dongle (through the running tetherd) sign the
    /// installed license's id and sequence, a fresh nonce and the time, for
    /// the vendor. `verify` checks such a file at the vendor.
    Request(SiteRequestArgs),
}

/// Flags of `tether site request`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SiteRequestArgs {
    /// `verify`, at the vendor.
    #[command(subcommand)]
    pub command: Option<SiteRequestCmd>,
    /// tetherd's state directory.
    #[arg(long, env = "TETHER_STATE_DIR", default_value = "/var/lib/tether")]
    pub state_dir: PathBuf,
    /// Where to write the signed request (send it to the vendor).
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// How long to wait for tetherd's answer (e.g. 10s).
    #[arg(long, default_value = "10s")]
    pub timeout: String,
}

/// `tether site request ...`.
#[derive(Debug, Subcommand)]
pub enum SiteRequestCmd {
    /// At the vendor: check a site request file's dongle signature and,
    /// with --license, that it comes from the licensed dongle.
    Verify(SiteRequestVerifyArgs),
}

/// Flags of `tether site request verify`.
#[derive(Debug, Args)]
pub struct SiteRequestVerifyArgs {
    /// The vendor public key (vendor.pub): the license must verify under it.
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: PathBuf,
    /// The license the site should run: the request must be signed by the
    /// dongle it names and name its id. Without it only the signature is
    /// checked, under the dongle key the request carries.
    #[arg(long)]
    pub license: Option<PathBuf>,
    /// Machine-readable JSON output (times as UNIX seconds).
    #[arg(long)]
    pub json: bool,
    /// The site request file.
    pub request: PathBuf,
}

/// Flags of `tether license install`.
#[derive(Debug, Args)]
pub struct LicenseInstallArgs {
    /// tetherd's state directory.
    #[arg(long, env = "TETHER_STATE_DIR", default_value = "/var/lib/tether")]
    pub state_dir: PathBuf,
    /// The vendor public key (vendor.pub): the file is checked before it is handed over.
    #[arg(
        long,
        env = "TETHER_VENDOR_PUB",
        default_value = "/etc/tether/vendor.pub"
    )]
    pub vendor_pub: PathBuf,
    /// How long to wait for tetherd's verdict (e.g. 10s).
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// The license update or revocation file.
    pub file: PathBuf,
}

/// Flags of `tether license issue`.
#[derive(Debug, Args)]
pub struct LicenseIssueArgs {
    /// The vendor private key (vendor.key); not with --unsigned.
    #[arg(
        long,
        env = "TETHER_VENDOR_KEY",
        required_unless_present = "unsigned",
        conflicts_with = "unsigned"
    )]
    pub vendor_key: Option<PathBuf>,
    /// Offline signing (docs/offline-signing.md): write to --out exactly
    /// the bytes the vendor key signs (the license domain tag and the body,
    /// `openssl pkeyutl -sign -rawin` or a PKCS#11 CKM_EDDSA token signs
    /// them as they are) instead of a license; `tether license attach`
    /// then builds the license from the raw 64-byte signature. Needs
    /// --vendor-pub instead of --vendor-key.
    #[arg(long, requires = "vendor_pub")]
    pub unsigned: bool,
    /// The vendor public key (vendor.pub), with --unsigned: the license
    /// names its fingerprint, and --supersedes is checked against it.
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: Option<PathBuf>,
    /// A license this one replaces: its next version keeps its id, dongle
    /// and (unless given) every term; the sequence is one higher. Install it
    /// at the site with `tether license install`.
    #[arg(long)]
    pub supersedes: Option<PathBuf>,
    /// The dongle's public key file (dongle.pub, carries the serial), or a
    /// FIDO2 security key's identity file (dongle.fido2.pem, from `tether
    /// dongle enroll --fido2`; needs --nonce-period); with --supersedes,
    /// only checked to be the same dongle.
    #[arg(
        long,
        env = "TETHER_DONGLE_PUB",
        required_unless_present = "supersedes"
    )]
    pub dongle_pub: Option<PathBuf>,
    /// The dongle serial, when dongle.pub does not name it.
    #[arg(long, env = "TETHER_DONGLE_SERIAL")]
    pub serial: Option<String>,
    /// Customer name.
    #[arg(long, env = "TETHER_CUSTOMER", required_unless_present = "supersedes")]
    pub customer: Option<String>,
    /// Features granted, comma-separated (with --supersedes, default: the old ones).
    #[arg(long, env = "TETHER_FEATURES", value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Services allowed to obtain tokens, comma-separated (with
    /// --supersedes, default: the old ones).
    #[arg(
        long,
        env = "TETHER_SERVICES",
        value_delimiter = ',',
        required_unless_present = "supersedes"
    )]
    pub services: Option<Vec<String>>,
    /// How long the license is valid from --not-before (e.g. 365d; default
    /// 365d, or with --supersedes the old end).
    #[arg(long, env = "TETHER_VALID_FOR", conflicts_with = "valid_until")]
    pub valid_for: Option<String>,
    /// The last day of validity, YYYY-MM-DD: the license ends at the end of
    /// that day in UTC, 23:59:59Z (so no site west of UTC loses the day).
    #[arg(long, env = "TETHER_VALID_UNTIL")]
    pub valid_until: Option<String>,
    /// Grace period after the license ends (e.g. 7d, at most 90d; `0` for
    /// none): tokens are still issued, carrying a `grace` claim, with loud
    /// warnings, and consumers accept them unless told not to. Default:
    /// none, or with --supersedes the old grace.
    #[arg(long, env = "TETHER_GRACE_PERIOD")]
    pub grace: Option<String>,
    /// Start of validity as UNIX seconds (default: now, or with
    /// --supersedes the old start).
    #[arg(long, env = "TETHER_NOT_BEFORE")]
    pub not_before: Option<u64>,
    /// Longest token lifetime an authority may issue (e.g. 5m; with
    /// --supersedes, default: the old one).
    #[arg(long, env = "TETHER_MAX_TTL")]
    pub max_ttl: Option<String>,
    /// Seats: how many instances of a service may run at once, as
    /// SERVICE=COUNT pairs, comma-separated (e.g. backend=4,muxer=1); a
    /// service left out is unlimited (with --supersedes, default: the old seats).
    #[arg(long, env = "TETHER_SEATS", value_delimiter = ',')]
    pub seats: Option<Vec<String>>,
    /// Freshness: how often each consumer instance must present a fresh
    /// nonce that the dongle itself commits to (4m to 1h, e.g. 5m), so that
    /// time with the dongle buys at most this much operation without it;
    /// `off` for none (consumers older than format 2 need it off); the
    /// default: off, or with --supersedes the old period.
    #[arg(long, env = "TETHER_NONCE_PERIOD")]
    pub nonce_period: Option<String>,
    /// Output file.
    #[arg(long, env = "TETHER_LICENSE_OUT")]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// `tether service ...`.
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

/// Flags of `tether inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A key, public key, license or credential file; a token (JWT) or a
    /// file holding one, or the JSON answer of `GET /token`; `-` reads stdin.
    pub file: PathBuf,
    /// Check a token's or license's signatures with this vendor public key;
    /// without it they are shown as not verified.
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: Option<PathBuf>,
    /// Machine-readable JSON output (times as UNIX seconds).
    #[arg(long)]
    pub json: bool,
}

/// Dongle subcommands.
#[derive(Debug, Subcommand)]
pub enum DongleCmd {
    /// Run an emulated dongle on a Unix socket (or, with --uhid, as a kernel
    /// HID device) until SIGTERM/SIGINT.
    Emulate(EmulateArgs),
    /// Unplug the running emulator (tetherd sees a hardware removal).
    Unplug(SocketArg),
    /// Plug the running emulator back in (a power-up).
    Plug(SocketArg),
    /// Switch the running emulator's fault mode (none, clone, rollback,
    /// garbage, silent, slow:MS, replay, wrong-nonce, presence-as-delegate,
    /// oversized).
    Fault {
        /// The emulator's socket.
        #[command(flatten)]
        socket: SocketArg,
        /// The mode.
        mode: String,
    },
    /// Enrol a FIDO2 security key as a dongle (one touch): show what it is,
    /// check it signs without a touch, check its attestation, and write
    /// OUT/dongle.fido2.pem for `tether license issue --dongle-pub`.
    Enroll(EnrollArgs),
    /// Find a dongle, show its INFO, and time one PRESENCE round trip (with
    /// --fido2: a security key's getInfo and one silent assertion).
    Probe(ProbeArgs),
    /// Unplug and re-plug the emulator N times, timing unplug to the first
    /// refused GET /token, and checking each re-plug brings a fresh session
    /// (prints one JSON line; for tests/vm).
    #[command(hide = true)]
    ReplugBench(ReplugBenchArgs),
}

/// The emulator's socket.
#[derive(Debug, Args)]
pub struct SocketArg {
    /// The emulator's socket (its control socket is this path + `.ctl`).
    #[arg(long, env = "TETHER_DONGLE_SOCKET")]
    pub socket: PathBuf,
}

/// Flags of `tether dongle emulate`.
#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Directory holding dongle.key (from `tether keygen dongle`).
    #[arg(long, env = "TETHER_DONGLE_IDENTITY")]
    pub identity: PathBuf,
    /// Socket to serve on (with --uhid: only its control socket, SOCKET.ctl).
    #[arg(long, env = "TETHER_DONGLE_SOCKET")]
    pub socket: PathBuf,
    /// Be a kernel HID device through /dev/uhid (Linux, needs the uhid module
    /// and root) instead of serving the socket: tetherd then uses `--dongle hid`.
    #[arg(long, env = "TETHER_DONGLE_UHID")]
    pub uhid: bool,
    /// With --uhid: the vendor/product id to present (hex VID:PID).
    #[arg(
        long,
        env = "TETHER_DONGLE_VID_PID",
        default_value = "1209:0001",
        requires = "uhid"
    )]
    pub vid_pid: String,
    /// With --uhid: the usage page of the report descriptor (hex). Another
    /// page than the dongle's makes an unrelated device, which hosts ignore.
    #[arg(
        long,
        env = "TETHER_DONGLE_USAGE_PAGE",
        default_value = "ff54",
        requires = "uhid"
    )]
    pub usage_page: String,
    /// Counter state file (default: IDENTITY/dongle.state).
    #[arg(long, env = "TETHER_DONGLE_STATE")]
    pub state: Option<PathBuf>,
    /// Start in this fault mode.
    #[arg(long, env = "TETHER_DONGLE_FAULT", default_value = "none")]
    pub fault: String,
    /// Longest certificate window the dongle signs.
    #[arg(long, env = "TETHER_DONGLE_MAX_WINDOW", default_value = "10m")]
    pub max_window: String,
    /// Reach budget: seconds of certificate validity the dongle may sign
    /// beyond what it already covered, earned back while powered
    /// (docs/dongle-protocol.md section 6; 0 turns the rule off, for tests).
    #[arg(long, env = "TETHER_DONGLE_REACH_BUDGET", default_value = "1h")]
    pub reach_budget: String,
    /// Seconds of reach earned per second powered.
    #[arg(long, env = "TETHER_DONGLE_REACH_RATE", default_value_t = 2)]
    pub reach_rate: u32,
    /// The least one DELEGATE costs from the reach budget.
    #[arg(long, env = "TETHER_DONGLE_MIN_CHARGE", default_value = "60s")]
    pub min_charge: String,
}

/// Flags of `tether dongle enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Enrol a FIDO2 security key (the only kind enrolled here: native
    /// dongles get their identity from `tether keygen dongle`).
    #[arg(long)]
    pub fido2: bool,
    /// Which key: fido2, fido2:SERIAL, fido2:/dev/hidrawN or fido2:socket:PATH.
    #[arg(long, env = "TETHER_FIDO2_DEVICE", default_value = "fido2")]
    pub device: String,
    /// The relying party id of the credential (default tether:PRODUCT, or
    /// tether:default without --product).
    #[arg(long)]
    pub rp_id: Option<String>,
    /// The product name the default rp id is made from.
    #[arg(long)]
    pub product: Option<String>,
    /// A directory of PEM roots the attestation chain must reach (the key
    /// vendors' FIDO attestation roots).
    #[arg(
        long,
        env = "TETHER_ATTESTATION_ROOTS",
        conflicts_with = "allow_self_attested"
    )]
    pub attestation_roots: Option<PathBuf>,
    /// Accept a key that attests itself (no certificate) or gives no
    /// attestation: its model is then taken on trust.
    #[arg(long)]
    pub allow_self_attested: bool,
    /// The model name written into the identity (default: from the AAGUID).
    #[arg(long)]
    pub model: Option<String>,
    /// Directory to write dongle.fido2.pem into (created if missing).
    #[arg(long, env = "TETHER_OUT")]
    pub out: PathBuf,
    /// Replace an existing dongle.fido2.pem.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `tether dongle probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Probe a FIDO2 security key instead (see --device).
    #[arg(long, conflicts_with_all = ["socket", "hid"])]
    pub fido2: bool,
    /// With --fido2: which key (fido2, fido2:SERIAL, fido2:/dev/hidrawN, fido2:socket:PATH).
    #[arg(long, default_value = "fido2", requires = "fido2")]
    pub device: String,
    /// With --fido2: the identity file (dongle.fido2.pem) whose credential
    /// makes the silent assertion that is timed.
    #[arg(long, requires = "fido2")]
    pub identity: Option<PathBuf>,
    /// Probe the emulator on this socket.
    #[arg(long, conflicts_with = "hid")]
    pub socket: Option<PathBuf>,
    /// Probe a USB HID dongle (VID:PID in hex; default 1209:0001).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    pub hid: Option<String>,
}

/// Flags of `tether dongle replug-bench`.
#[derive(Debug, Args)]
pub struct ReplugBenchArgs {
    /// The emulator's socket.
    #[command(flatten)]
    pub socket: SocketArg,
    /// tetherd's base URL.
    #[arg(long, default_value = "http://127.0.0.1:7443")]
    pub url: String,
    /// The service secret to fetch tokens with.
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Unplug/re-plug cycles.
    #[arg(long, default_value_t = 20)]
    pub cycles: u32,
    /// Longest wait for tokens after a plug, and for refusal after an unplug.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
}

/// Flags of `tether backend` and `tether muxer`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Address to serve on (default 127.0.0.1:8080 for backend, :8081 for muxer).
    #[arg(long, env = "TETHER_SERVICE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// tetherd's base URL.
    #[arg(
        long,
        env = "TETHER_AUTHORITY_URL",
        default_value = "http://127.0.0.1:7443"
    )]
    pub authority: String,
    /// The vendor root public key: the only key a token is verified with.
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: PathBuf,
    /// The service secret.
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Service name, as enrolled and licensed (default: the command's name).
    #[arg(long, env = "TETHER_SERVICE_NAME")]
    pub name: Option<String>,
    /// Features the license must grant (default: none for backend, `mux` for muxer).
    #[arg(long, env = "TETHER_REQUIRE_FEATURES", value_delimiter = ',')]
    pub require: Option<Vec<String>>,
    /// Do not follow the authority's events: the license then ends at token
    /// expiry at the latest, instead of at once (for tests and comparison).
    #[arg(long, env = "TETHER_NO_EVENTS")]
    pub no_events: bool,
    /// Clock leeway for every time check of a token, its certificate and
    /// its license (e.g. 5s, 30s; at most 5m): how far this host's clock may
    /// disagree with the authority's. `/status` reports the measured skew.
    #[arg(long, env = "TETHER_LEEWAY", default_value = "5s", value_parser = parse_leeway)]
    pub leeway: Duration,
    /// Refuse licenses that demand no fresh nonces, so that an older version
    /// of the license, issued before freshness, cannot switch it off
    /// (docs/threat-model.md, Freshness).
    #[arg(long, env = "TETHER_REQUIRE_FRESHNESS")]
    pub require_freshness: bool,
    /// Stop at the license's end (not_after) rather than at the end of its
    /// vendor-signed grace period: tokens issued in grace (with a `grace`
    /// claim) are refused. By default they are accepted, with a warning.
    #[arg(long, env = "TETHER_REFUSE_GRACE")]
    pub refuse_grace: bool,
    /// After the authority reports the dongle back, wait a random delay of up
    /// to this long before fetching, so replicas of one service do not
    /// stampede its rate limit (about replicas / rate-limit seconds).
    #[arg(long, env = "TETHER_EVENT_SPREAD", default_value = "1s", value_parser = parse_spread)]
    pub event_spread: Duration,
}

/// What `tether run` does to the program when the license is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnLoss {
    /// SIGTERM, SIGKILL after --grace; started again once licensed.
    Stop,
    /// SIGSTOP; SIGCONT once licensed again.
    Pause,
}

/// Flags of `tether run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Service name, as enrolled and licensed.
    #[arg(long, env = "TETHER_SERVICE_NAME")]
    pub service: String,
    /// tetherd's base URL.
    #[arg(
        long,
        env = "TETHER_AUTHORITY_URL",
        default_value = "http://127.0.0.1:7443"
    )]
    pub authority: String,
    /// The vendor root public key: the only key a token is verified with.
    #[arg(
        long,
        env = "TETHER_VENDOR_PUB",
        default_value = "/etc/tether/vendor.pub"
    )]
    pub vendor_pub: PathBuf,
    /// The service secret.
    #[command(flatten)]
    pub secret: SecretArgs,
    /// What to do to the program when the license is lost.
    #[arg(long, env = "TETHER_ON_LOSS", value_enum, default_value = "stop")]
    pub on_loss: OnLoss,
    /// How long the program has to exit after SIGTERM before SIGKILL (e.g. 10s).
    #[arg(long, env = "TETHER_GRACE", default_value = "10s")]
    pub grace: String,
    /// Treat the license as lost at its end (not_after), not at the end of
    /// its vendor-signed grace period: tokens issued in the license's grace
    /// are refused (not to be confused with --grace, the program's time to exit).
    #[arg(long, env = "TETHER_REFUSE_GRACE")]
    pub refuse_grace: bool,
    /// Keep the current token in this file (mode 0600, replaced atomically on
    /// each refresh, removed while unlicensed); its path is handed to the
    /// program as TETHER_TOKEN_FILE.
    #[arg(long, env = "TETHER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The program and its arguments (after `--`).
    #[arg(required = true, last = true, value_name = "PROGRAM")]
    pub program: Vec<std::ffi::OsString>,
}

/// Flags of `tether demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run a fixed unplug/plug scenario without a terminal, then exit.
    #[arg(long)]
    pub script: bool,
    /// Keep the temporary directory (keys, license, logs) after exit.
    #[arg(long)]
    pub keep: bool,
}

/// `tether state ...`
#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Set the clock high-water mark to now, after the system clock ran ahead
    /// by mistake and was set right (stop tetherd first; docs/deploy-vm.md).
    ResetClock(StateDirArgs),
}

/// `tether usage ...` (issue 18; `docs/formats.md`, "Usage export").
#[derive(Debug, Subcommand)]
pub enum UsageCmd {
    /// At the site: write the usage ledger to a self-verifying export file
    /// (safe while tetherd runs).
    Export(UsageExportArgs),
    /// At the vendor: verify an export down to the vendor root and print
    /// the usage report; exit 3 when anything does not verify.
    Verify(UsageVerifyArgs),
}

/// `tether usage export`.
#[derive(Debug, Args)]
pub struct UsageExportArgs {
    /// tetherd's state directory.
    #[arg(long, env = "TETHER_STATE_DIR", default_value = "/var/lib/tether")]
    pub state_dir: PathBuf,
    /// Only records from this day (`YYYY-MM-DD`, UTC) or instant (RFC 3339) on.
    #[arg(long)]
    pub since: Option<String>,
    /// The export file to write (`usage.tether-usage`).
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `tether usage verify`.
#[derive(Debug, Args)]
pub struct UsageVerifyArgs {
    /// The vendor root public key.
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: PathBuf,
    /// The export file.
    pub file: PathBuf,
    /// An earlier export of the same site: this one must extend it.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which state directory.
#[derive(Debug, Args)]
pub struct StateDirArgs {
    /// tetherd's state directory.
    #[arg(long, env = "TETHER_STATE_DIR", default_value = "/var/lib/tether")]
    pub state_dir: PathBuf,
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
