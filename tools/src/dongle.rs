//! `tether dongle ...`: the standalone emulator, plug/unplug/fault control,
//! and probe.
//!
//! The emulator speaks the exact protocol of `docs/dongle-protocol.md` on a
//! Unix socket that tetherd opens like a device; its control socket
//! (`SOCKET.ctl`) plugs, unplugs and switches fault modes while it runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use tether_authority::dongle::emulator::socket::control;
use tether_authority::dongle::emulator::{Device, Fault, Rules, SocketEmulator};
use tether_authority::dongle::{Client, Selector, hid};
use tether_keys::delegation::{fresh_nonce, presence_message};

/// Dongle subcommands.
#[derive(Debug, Subcommand)]
pub enum DongleCmd {
    /// Run an emulated dongle on a Unix socket until SIGTERM/SIGINT.
    Emulate(EmulateArgs),
    /// Unplug the running emulator (tetherd sees a hardware removal).
    Unplug(SocketArg),
    /// Plug the running emulator back in (a power-up).
    Plug(SocketArg),
    /// Switch the running emulator's fault mode (none, clone, rollback,
    /// garbage, silent, slow:MS, replay, wrong-nonce, presence-as-delegate,
    /// oversized).
    Fault {
        #[command(flatten)]
        socket: SocketArg,
        /// The mode.
        mode: String,
    },
    /// Find a dongle, show its INFO, and time one PRESENCE round trip.
    Probe(ProbeArgs),
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
    /// Socket to serve on.
    #[arg(long, env = "TETHER_DONGLE_SOCKET")]
    pub socket: PathBuf,
    /// Counter state file (default: IDENTITY/dongle.state).
    #[arg(long, env = "TETHER_DONGLE_STATE")]
    pub state: Option<PathBuf>,
    /// Start in this fault mode.
    #[arg(long, env = "TETHER_DONGLE_FAULT", default_value = "none")]
    pub fault: String,
    /// Longest certificate window the dongle signs.
    #[arg(long, env = "TETHER_DONGLE_MAX_WINDOW", default_value = "10m")]
    pub max_window: String,
    /// DELEGATE rate limit: one more per this much uptime (0 disables it).
    #[arg(long, env = "TETHER_DONGLE_REFILL", default_value = "60s")]
    pub refill: String,
    /// DELEGATE burst.
    #[arg(long, env = "TETHER_DONGLE_BURST", default_value_t = 3)]
    pub burst: u32,
}

/// Flags of `tether dongle probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Probe the emulator on this socket.
    #[arg(long, conflicts_with = "hid")]
    pub socket: Option<PathBuf>,
    /// Probe a USB HID dongle (VID:PID in hex; default 1209:0001).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    pub hid: Option<String>,
}

/// Runs a dongle subcommand.
pub fn run(cmd: DongleCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DongleCmd::Emulate(args) => emulate(&args),
        DongleCmd::Unplug(s) => ctl(&s, "unplug"),
        DongleCmd::Plug(s) => ctl(&s, "plug"),
        DongleCmd::Fault { socket, mode } => {
            mode.parse::<Fault>()?;
            ctl(&socket, &format!("fault {mode}"))
        }
        DongleCmd::Probe(args) => probe(&args),
    }
}

fn ctl(s: &SocketArg, command: &str) -> anyhow::Result<ExitCode> {
    let answer = control(&s.socket, command)
        .with_context(|| format!("emulator at {}: {command}", s.socket.display()))?;
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

fn emulate(args: &EmulateArgs) -> anyhow::Result<ExitCode> {
    crate::logs::init();
    let rules = Rules {
        max_window: tether_keys::parse_duration(&args.max_window)?,
        burst: args.burst,
        refill: tether_keys::parse_duration(&args.refill)?,
        ..Rules::default()
    };
    let fault: Fault = args.fault.parse()?;
    let mut device = Device::load(&args.identity, args.state.as_deref(), rules)
        .with_context(|| format!("dongle identity in {}", args.identity.display()))?;
    device.set_fault(fault);
    let serial = device.serial().to_string();
    let emu = SocketEmulator::spawn(device, &args.socket)
        .with_context(|| format!("cannot serve on {}", args.socket.display()))?;
    tracing::info!(
        %serial,
        socket = %args.socket.display(),
        ?fault,
        "EMULATED dongle plugged in (not hardware)"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tether_authority::shutdown_signal());
    drop(emu);
    tracing::info!("emulator stopped");
    Ok(ExitCode::SUCCESS)
}

fn parse_vid_pid(text: &str) -> anyhow::Result<(u16, u16)> {
    if text.is_empty() {
        return Ok((hid::DEFAULT_VID, hid::DEFAULT_PID));
    }
    let (v, p) = text
        .split_once(':')
        .context("--hid takes VID:PID in hex, e.g. 1209:0001")?;
    Ok((
        u16::from_str_radix(v, 16).context("VID is not hex")?,
        u16::from_str_radix(p, 16).context("PID is not hex")?,
    ))
}

fn probe(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let selector = match (&args.socket, &args.hid) {
        (Some(path), _) => Selector::Socket(path.clone()),
        (None, hid_arg) => {
            let (vid, pid) = parse_vid_pid(hid_arg.as_deref().unwrap_or(""))?;
            let found = hid::list(vid, pid)?;
            if found.is_empty() {
                bail!(
                    "no dongle found ({vid:04x}:{pid:04x}, usage page {:#06x})",
                    hid::USAGE_PAGE
                );
            }
            for d in &found {
                println!(
                    "found {} serial {} ({})",
                    d.path,
                    d.serial.as_deref().unwrap_or("?"),
                    d.product.as_deref().unwrap_or("?")
                );
            }
            Selector::Hid {
                vid,
                pid,
                serial: None,
            }
        }
    };
    let mut client = Client::connect(&selector).map_err(|e| match e {
        tether_authority::dongle::Error::NoDongle => anyhow::anyhow!("no dongle found"),
        other => other.into(),
    })?;
    let info = client.info()?;
    let (a, b, c) = info.firmware;
    println!("serial:      {}", info.serial);
    println!("firmware:    {a}.{b}.{c}");
    println!("public key:  {}", info.public_key.fingerprint());
    println!("counter:     {}", info.counter);
    let nonce = fresh_nonce();
    let started = Instant::now();
    let signature = client.presence(&nonce)?;
    let took = started.elapsed();
    if !info
        .public_key
        .verify(&presence_message(&nonce), &signature)
    {
        bail!("PRESENCE signature does not verify with the dongle's own key");
    }
    println!(
        "presence:    ok, signature verified, {:.2} ms round trip",
        ms(took)
    );
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
