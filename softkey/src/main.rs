//! `tether-softkey`: a software FIDO2 security key for tests, on the
//! emulator's socket link or as a kernel HID device through UHID.
//!
//! ```text
//! tether-softkey --socket /tmp/key.sock [--state key.state] [--algorithm eddsa|es256]
//!                [--aaguid HEX] [--no-counter] [--require-up] [--force-up] [--syncable]
//! tether-softkey --uhid --socket /tmp/key.sock [--serial S] [--vid 1209 --pid 0002] ...
//! tether dongle unplug|plug --socket /tmp/key.sock      # PATH.ctl: plug, unplug, status
//! ```
//!
//! Prints one `tether-softkey: ready ...` line on stdout once it serves,
//! logs to stderr (never key material), and on SIGTERM or SIGINT unplugs
//! and removes its sockets.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Parser;
use tether_softkey::ctap2::DEFAULT_AAGUID;
use tether_softkey::{Algorithm, Device, Options, Softkey, Store, socket, uhid};

/// A software FIDO2 (CTAP2) security key for tests: 1Password's
/// passkey-authenticator behind CTAPHID.
#[derive(Debug, Parser)]
#[command(name = "tether-softkey", version)]
struct Args {
    /// The socket: the data link (64-byte records), and PATH.ctl for
    /// plug/unplug/status. With --uhid only the control socket is made.
    #[arg(long, env = "TETHER_SOFTKEY_SOCKET")]
    socket: PathBuf,
    /// Serve as a kernel HID device through /dev/uhid instead of on the socket.
    #[arg(long, env = "TETHER_SOFTKEY_UHID")]
    uhid: bool,
    /// Persist credentials and counters here (0600). Deleting it is a
    /// factory reset; restoring an older copy rolls the counter back.
    /// Without it the key forgets everything when it exits.
    #[arg(long, env = "TETHER_SOFTKEY_STATE")]
    state: Option<PathBuf>,
    /// Algorithm of new credentials: eddsa (COSE -8) or es256 (COSE -7).
    #[arg(long, default_value = "eddsa", env = "TETHER_SOFTKEY_ALGORITHM")]
    algorithm: Algorithm,
    /// The AAGUID, 32 hex digits (default: "tether-softkey-1" in ASCII).
    #[arg(long, env = "TETHER_SOFTKEY_AAGUID")]
    aaguid: Option<String>,
    /// Keep no signature counter: every signCount is 0.
    #[arg(long, env = "TETHER_SOFTKEY_NO_COUNTER")]
    no_counter: bool,
    /// Refuse getAssertion with up=false (CTAP2_ERR_UNSUPPORTED_OPTION).
    #[arg(long, env = "TETHER_SOFTKEY_REQUIRE_UP")]
    require_up: bool,
    /// Report a touch (UP flag set) even when up=false was asked.
    #[arg(long, env = "TETHER_SOFTKEY_FORCE_UP")]
    force_up: bool,
    /// Keep passkey-authenticator's BE and BS flags (a synced passkey, which
    /// Tether must refuse) instead of presenting a device-bound credential.
    #[arg(long, env = "TETHER_SOFTKEY_SYNCABLE")]
    syncable: bool,
    /// The HID serial number (the kernel's HID_UNIQ) with --uhid.
    #[arg(
        long,
        default_value = "TETHER-SOFTKEY-1",
        env = "TETHER_SOFTKEY_SERIAL"
    )]
    serial: String,
    /// USB vendor id (hex) with --uhid.
    #[arg(long, default_value = "1209", value_parser = hex16)]
    vid: u16,
    /// USB product id (hex) with --uhid.
    #[arg(long, default_value = "0002", value_parser = hex16)]
    pid: u16,
}

fn hex16(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("{s:?}: {e}"))
}

fn aaguid(hex: &str) -> anyhow::Result<[u8; 16]> {
    let hex: String = hex.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("--aaguid must be 32 hex digits (dashes allowed), got {hex:?}");
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.require_up && args.force_up {
        bail!("--require-up and --force-up are two different keys: pick one");
    }
    let options = Options {
        aaguid: match &args.aaguid {
            Some(h) => aaguid(h)?,
            None => DEFAULT_AAGUID,
        },
        algorithm: args.algorithm,
        counter: !args.no_counter,
        require_up: args.require_up,
        force_up: args.force_up,
        syncable: args.syncable,
        ..Options::default()
    };
    let store = match &args.state {
        Some(path) => Store::open(path)?,
        None => Store::in_memory(),
    };
    tracing::info!(
        credentials = store.len(),
        counter = store.max_counter(),
        ?options,
        "tether-softkey: passkey-authenticator behind CTAPHID"
    );
    let device = Device::new(Softkey::new(store, options)?);
    // A runtime only to wait for the signals.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let served: Box<dyn std::any::Any> = if args.uhid {
        let key = uhid::UhidKey::spawn_with_serial(
            device,
            uhid::config(args.vid, args.pid),
            &args.serial,
            &args.socket,
        )
        .context("creating the UHID device")?;
        println!(
            "tether-softkey: ready uhid {:04x}:{:04x} usage page 0xf1d0 serial {} control {}",
            args.vid,
            args.pid,
            args.serial,
            key.control_path().display()
        );
        Box::new(key)
    } else {
        let key = socket::SocketKey::spawn(device, &args.socket).context("serving the socket")?;
        println!(
            "tether-softkey: ready socket {} control {}",
            args.socket.display(),
            socket::control_path(&args.socket).display()
        );
        Box::new(key)
    };
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r?,
        }
        anyhow::Ok(())
    })?;
    tracing::info!("stopping: unplugged");
    drop(served);
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tether-softkey: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
