//! tetherd's configuration: a TOML file, `TETHER_*` environment variables and
//! flags, resolved into one validated [`Config`] before anything starts.
//!
//! Precedence: flag > environment > file > default. Every path is checked
//! and every duration parsed here, so a bad setting stops the daemon with
//! one clear line instead of failing later.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use serde::Deserialize;

use tether_dongle::Selector;
use tether_dongle::fido2::Fido2Selector;

/// Default configuration file, read when it exists and `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/tether/authority.toml";

/// `tetherd`'s command line. Every flag can be set by its environment variable.
#[derive(Debug, Default, Parser)]
#[command(name = "tetherd", version, about = "Tether license authority daemon")]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "TETHER_CONFIG")]
    pub config: Option<PathBuf>,
    /// The vendor-signed license file.
    #[arg(long, env = "TETHER_LICENSE")]
    pub license: Option<PathBuf>,
    /// The vendor root public key (vendor.pub).
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: Option<PathBuf>,
    /// The dongle: `hid`, `hid:VID:PID`, `hid:VID:PID:SERIAL` or `socket:PATH`
    /// (native); `fido2`, `fido2:SERIAL`, `fido2:/dev/hidrawN` or
    /// `fido2:socket:PATH` (a FIDO2 security key; the license must name one).
    #[arg(long, env = "TETHER_DONGLE")]
    pub dongle: Option<String>,
    /// Where to listen: `HOST:PORT` or `unix:PATH`; repeat or comma-separate for several.
    #[arg(long, env = "TETHER_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// The service credential file (`tether service enroll`).
    #[arg(long, env = "TETHER_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// Token lifetime (capped by the license's max token TTL).
    #[arg(long, env = "TETHER_TOKEN_TTL")]
    pub token_ttl: Option<String>,
    /// Interval of the PRESENCE heartbeat.
    #[arg(long, env = "TETHER_HEARTBEAT")]
    pub heartbeat: Option<String>,
    /// Lifetime of each delegation certificate (renewed at half-life).
    #[arg(long, env = "TETHER_CERT_LIFETIME")]
    pub cert_lifetime: Option<String>,
    /// Directory for persisted state (clock and counter high-water marks).
    #[arg(long, env = "TETHER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Tokens per second each service may obtain (burst of the same size).
    #[arg(long, env = "TETHER_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// How far the clock may be behind its persisted high-water mark before issuance stops.
    #[arg(long, env = "TETHER_CLOCK_TOLERANCE")]
    pub clock_tolerance: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "TETHER_LOG_JSON")]
    pub log_json: bool,
    /// Where to serve the read-only admin page: `HOST:PORT` (default
    /// `127.0.0.1:7444`), or `off`.
    #[arg(long, env = "TETHER_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// A host name the admin page also answers to (besides its own address
    /// and localhost); repeat or comma-separate for several.
    #[arg(long, env = "TETHER_ADMIN_HOST", value_delimiter = ',')]
    pub admin_host: Vec<String>,
}

/// The TOML file: the same settings as the flags, by the same names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    license: Option<PathBuf>,
    vendor_pub: Option<PathBuf>,
    dongle: Option<String>,
    listen: Option<Vec<String>>,
    credentials: Option<PathBuf>,
    token_ttl: Option<String>,
    heartbeat: Option<String>,
    cert_lifetime: Option<String>,
    state_dir: Option<PathBuf>,
    rate_limit: Option<u32>,
    clock_tolerance: Option<String>,
    log_json: Option<bool>,
    admin_listen: Option<String>,
    admin_host: Option<Vec<String>>,
}

/// An address to serve the HTTP API on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// TCP.
    Tcp(SocketAddr),
    /// A Unix-domain socket.
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Ok(Listen::Unix(PathBuf::from(path))),
            Some(_) => bail!("listen address {s:?}: unix: needs a path"),
            None => s
                .parse()
                .map(Listen::Tcp)
                .with_context(|| format!("listen address {s:?}: expected HOST:PORT or unix:PATH")),
        }
    }
}

/// Which kind of dongle tetherd drives, and which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DongleChoice {
    /// A native dongle (or the emulator): `hid...` or `socket:PATH`.
    Native(Selector),
    /// A FIDO2 security key: `fido2...` (`docs/dongle-protocol.md`, section 8).
    Fido2(Fido2Selector),
}

impl DongleChoice {
    /// Parses `--dongle`: `fido2...` picks a FIDO2 key, anything else a
    /// native dongle.
    ///
    /// # Errors
    /// When the text is neither kind's selector.
    pub fn parse(text: &str) -> anyhow::Result<DongleChoice> {
        if text == "fido2" || text.starts_with("fido2:") {
            return text
                .parse()
                .map(DongleChoice::Fido2)
                .map_err(|e| anyhow::anyhow!("dongle {text:?}: {e}"));
        }
        text.parse().map(DongleChoice::Native).map_err(|e| {
            anyhow::anyhow!("dongle {text:?}: {e}; or fido2[:SERIAL|:/dev/hidrawN|:socket:PATH]")
        })
    }

    /// "native" or "FIDO2".
    pub fn kind_name(&self) -> &'static str {
        match self {
            DongleChoice::Native(_) => "native",
            DongleChoice::Fido2(_) => "FIDO2",
        }
    }
}

impl std::fmt::Display for DongleChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DongleChoice::Native(s) => s.fmt(f),
            DongleChoice::Fido2(s) => s.fmt(f),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// License file.
    pub license: PathBuf,
    /// Vendor public key file.
    pub vendor_pub: PathBuf,
    /// Which dongle to talk to.
    pub dongle: DongleChoice,
    /// Where to listen.
    pub listen: Vec<Listen>,
    /// Credential file.
    pub credentials: PathBuf,
    /// Requested token lifetime (before the license cap).
    pub token_ttl: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Delegation certificate lifetime.
    pub cert_lifetime: Duration,
    /// State directory.
    pub state_dir: PathBuf,
    /// Tokens per second per service.
    pub rate_limit: u32,
    /// Allowed clock lag behind the high-water mark.
    pub clock_tolerance: Duration,
    /// JSON logs.
    pub log_json: bool,
    /// The admin page's listener: `None` when `off`.
    pub admin_listen: Option<SocketAddr>,
    /// Whether `admin_listen` is the default, not a choice: a default that
    /// cannot be bound (a second tetherd on the host) is warned about, not fatal.
    pub admin_listen_default: bool,
    /// Extra host names the admin page answers to (lowercase).
    pub admin_hosts: Vec<String>,
}

/// The admin page's default listener: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7444";

fn admin_listen(text: Option<String>) -> anyhow::Result<(Option<SocketAddr>, bool)> {
    let Some(text) = text else {
        let addr = DEFAULT_ADMIN_LISTEN
            .parse()
            .context("the default admin listener")?;
        return Ok((Some(addr), true));
    };
    let text = text.trim();
    if text == "off" {
        return Ok((None, false));
    }
    let addr = text
        .parse()
        .with_context(|| format!("admin-listen {text:?}: expected HOST:PORT or off"))?;
    Ok((Some(addr), false))
}

fn admin_hosts(names: Vec<String>) -> anyhow::Result<Vec<String>> {
    names
        .into_iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .map(|n| {
            let ok = n.len() <= 253
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
            if ok {
                Ok(n)
            } else {
                Err(anyhow::anyhow!(
                    "admin-host {n:?}: expected a host name, optionally with :PORT"
                ))
            }
        })
        .collect()
}

fn duration(name: &str, value: Option<String>, default: &str) -> anyhow::Result<Duration> {
    let text = value.unwrap_or_else(|| default.to_string());
    tether_keys::parse_duration(&text).with_context(|| name.to_string())
}

impl Config {
    /// Resolves flags, environment (already folded into `args` by clap) and the file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed, a required setting is
    /// missing, or a value is invalid (a duration, an address, a rate of 0).
    pub fn resolve(args: Args) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG).exists() => read_file(Path::new(DEFAULT_CONFIG))?,
            None => File::default(),
        };
        let required = |flag: Option<PathBuf>, file: Option<PathBuf>, name: &str| {
            flag.or(file).with_context(|| {
                format!(
                    "{name} is required (flag --{name}, TETHER_{}, or the config file)",
                    name.replace('-', "_").to_uppercase()
                )
            })
        };
        let license = required(args.license, file.license, "license")?;
        let vendor_pub = required(args.vendor_pub, file.vendor_pub, "vendor-pub")?;
        let credentials = required(args.credentials, file.credentials, "credentials")?;
        let dongle_text = args
            .dongle
            .or(file.dongle)
            .unwrap_or_else(|| "hid".to_string());
        let dongle = DongleChoice::parse(&dongle_text)?;
        let listen_text = if args.listen.is_empty() {
            file.listen
                .unwrap_or_else(|| vec!["127.0.0.1:7443".to_string()])
        } else {
            args.listen
        };
        let listen = listen_text
            .iter()
            .map(|s| s.trim().parse())
            .collect::<anyhow::Result<Vec<Listen>>>()?;
        if listen.is_empty() {
            bail!("listen: at least one address is needed");
        }
        let token_ttl = duration("token-ttl", args.token_ttl.or(file.token_ttl), "60s")?;
        let heartbeat = duration("heartbeat", args.heartbeat.or(file.heartbeat), "250ms")?;
        let cert_lifetime = duration(
            "cert-lifetime",
            args.cert_lifetime.or(file.cert_lifetime),
            "5m",
        )?;
        let clock_tolerance = duration(
            "clock-tolerance",
            args.clock_tolerance.or(file.clock_tolerance),
            "5m",
        )?;
        if token_ttl < Duration::from_secs(2) {
            bail!("token-ttl must be at least 2s");
        }
        if heartbeat < Duration::from_millis(10) || heartbeat > Duration::from_secs(60) {
            bail!("heartbeat must be between 10ms and 60s");
        }
        // The dongle signs windows of at most 10 min, and the watchdog
        // backdates each certificate by 30 s for consumers whose clocks lag.
        if cert_lifetime < Duration::from_secs(30) || cert_lifetime > Duration::from_secs(570) {
            bail!(
                "cert-lifetime must be between 30s and 570s (the dongle signs windows of at most 10 min, 30 s of which are backdated)"
            );
        }
        if token_ttl * 2 > cert_lifetime {
            bail!(
                "cert-lifetime must be at least twice token-ttl, so renewal leaves room for a full token"
            );
        }
        let rate_limit = args.rate_limit.or(file.rate_limit).unwrap_or(200);
        if rate_limit == 0 {
            bail!("rate-limit must be at least 1 token per second");
        }
        let (admin_listen, admin_listen_default) =
            admin_listen(args.admin_listen.or(file.admin_listen))?;
        let admin_hosts = admin_hosts(if args.admin_host.is_empty() {
            file.admin_host.unwrap_or_default()
        } else {
            args.admin_host
        })?;
        Ok(Config {
            license,
            vendor_pub,
            dongle,
            listen,
            credentials,
            token_ttl,
            heartbeat,
            cert_lifetime,
            state_dir: args
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from("/var/lib/tether")),
            rate_limit,
            clock_tolerance,
            log_json: args.log_json || file.log_json.unwrap_or(false),
            admin_listen,
            admin_listen_default,
            admin_hosts,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<File> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            config: Some(PathBuf::from("/dev/null")),
            license: Some("l".into()),
            vendor_pub: Some("v".into()),
            credentials: Some("c".into()),
            dongle: Some("socket:/tmp/d.sock".into()),
            ..Args::default()
        }
    }

    #[test]
    fn dongle_choice_parses_both_kinds() {
        assert!(matches!(
            DongleChoice::parse("hid").unwrap(),
            DongleChoice::Native(_)
        ));
        assert!(matches!(
            DongleChoice::parse("socket:/tmp/d.sock").unwrap(),
            DongleChoice::Native(Selector::Socket(_))
        ));
        for s in [
            "fido2",
            "fido2:ABC",
            "fido2:/dev/hidraw2",
            "fido2:socket:/tmp/k.sock",
        ] {
            let c = DongleChoice::parse(s).unwrap();
            assert_eq!(c.kind_name(), "FIDO2");
            assert_eq!(c.to_string(), s);
        }
        let err = DongleChoice::parse("fido2:").unwrap_err().to_string();
        assert!(err.contains("fido2:socket:PATH"), "{err}");
        let err = DongleChoice::parse("usb").unwrap_err().to_string();
        assert!(err.contains("fido2"), "{err}");
    }

    #[test]
    fn defaults_are_filled_in() {
        let c = Config::resolve(args()).unwrap();
        assert_eq!(c.token_ttl, Duration::from_secs(60));
        assert_eq!(c.heartbeat, Duration::from_millis(250));
        assert_eq!(
            c.listen,
            vec![Listen::Tcp("127.0.0.1:7443".parse().unwrap())]
        );
        assert_eq!(c.admin_listen, Some("127.0.0.1:7444".parse().unwrap()));
        assert!(c.admin_listen_default);
    }

    #[test]
    fn admin_listen_off_address_and_hosts() {
        let mut a = args();
        a.admin_listen = Some("off".into());
        assert_eq!(Config::resolve(a).unwrap().admin_listen, None);
        let mut a = args();
        a.admin_listen = Some("0.0.0.0:9000".into());
        a.admin_host = vec!["Admin.Example".into(), "site-vm:9000".into()];
        let c = Config::resolve(a).unwrap();
        assert_eq!(c.admin_listen, Some("0.0.0.0:9000".parse().unwrap()));
        assert!(!c.admin_listen_default);
        assert_eq!(c.admin_hosts, ["admin.example", "site-vm:9000"]);
        let mut a = args();
        a.admin_listen = Some("unix:/x".into());
        assert!(format!("{:#}", Config::resolve(a).unwrap_err()).contains("admin-listen"));
        let mut a = args();
        a.admin_host = vec!["evil/host".into()];
        assert!(format!("{:#}", Config::resolve(a).unwrap_err()).contains("admin-host"));
    }

    #[test]
    fn file_values_and_flag_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(
            &path,
            "token_ttl = \"30s\"\nlisten = [\"unix:/run/t.sock\", \"0.0.0.0:1\"]\nrate_limit = 5\n",
        )
        .unwrap();
        let mut a = args();
        a.config = Some(path);
        a.rate_limit = Some(9);
        let c = Config::resolve(a).unwrap();
        assert_eq!(c.token_ttl, Duration::from_secs(30));
        assert_eq!(c.rate_limit, 9);
        assert_eq!(c.listen[0], Listen::Unix("/run/t.sock".into()));
    }

    #[test]
    fn bad_settings_are_named() {
        let mut a = args();
        a.token_ttl = Some("soon".into());
        assert!(format!("{:#}", Config::resolve(a).unwrap_err()).contains("token-ttl"));
        let mut a = args();
        a.listen = vec!["nowhere".into()];
        assert!(format!("{:#}", Config::resolve(a).unwrap_err()).contains("listen address"));
        let mut a = args();
        a.license = None;
        assert!(format!("{:#}", Config::resolve(a).unwrap_err()).contains("license is required"));
        for too_long in ["10m", "1000000000d"] {
            let mut a = args();
            a.cert_lifetime = Some(too_long.into());
            let err = format!("{:#}", Config::resolve(a).unwrap_err());
            assert!(
                err.contains("cert-lifetime must be between"),
                "{too_long}: {err}"
            );
        }
        let mut a = args();
        a.cert_lifetime = Some("570s".into());
        assert_eq!(
            Config::resolve(a).unwrap().cert_lifetime,
            Duration::from_secs(570)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(&path, "tokn_ttl = \"30s\"\n").unwrap();
        let mut a = args();
        a.config = Some(path);
        assert!(format!("{:#}", Config::resolve(a).unwrap_err()).contains("unknown field"));
    }
}
