//! `tether dongle ...`: the standalone emulator, plug/unplug/fault control,
//! and probe.
//!
//! The emulator speaks the exact protocol of `docs/dongle-protocol.md` on a
//! Unix socket that tetherd opens like a device, or (`--uhid`) as a real
//! kernel HID device through Linux UHID, which tetherd finds with hidapi like
//! the hardware. Its control socket (`SOCKET.ctl`) plugs, unplugs and switches
//! fault modes while it runs. `replug-bench` (hidden, for tests/vm) times
//! unplug-to-refusal over repeated plug cycles.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tether_dongle::native::Client;
use tether_dongle::{Selector, hid};
use tether_emulator::socket::control;
use tether_emulator::uhid::{UhidConfig, UhidEmulator};
use tether_emulator::{Device, Fault, Rules, SocketEmulator};
use tether_keys::delegation::{fresh_nonce, presence_message};

use crate::cli::{DongleCmd, EmulateArgs, ProbeArgs, ReplugBenchArgs, SocketArg};

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
        DongleCmd::Enroll(args) => crate::fido2::enroll(&args),
        DongleCmd::Probe(args) if args.fido2 => crate::fido2::probe(&args),
        DongleCmd::Probe(args) => probe(&args),
        DongleCmd::ReplugBench(args) => replug_bench(&args),
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
        reach_budget: tether_keys::parse_duration(&args.reach_budget)?,
        reach_rate: args.reach_rate,
        min_charge: tether_keys::parse_duration(&args.min_charge)?,
    };
    let fault: Fault = args.fault.parse()?;
    let mut device = Device::load(&args.identity, args.state.as_deref(), rules)
        .with_context(|| format!("dongle identity in {}", args.identity.display()))?;
    device.set_fault(fault);
    let serial = device.serial().to_string();
    // Either emulator stops (and unplugs) when dropped at the end.
    let emu: Box<dyn std::fmt::Debug> = if args.uhid {
        let (vid, pid) = parse_vid_pid(&args.vid_pid)?;
        let usage_page = u16::from_str_radix(args.usage_page.trim_start_matches("0x"), 16)
            .context("--usage-page is not hex")?;
        let config = UhidConfig {
            vid,
            pid,
            usage_page,
            ..UhidConfig::default()
        };
        let emu = UhidEmulator::spawn(device, config, &args.socket)
            .context("cannot create the UHID device")?;
        tracing::info!(
            %serial,
            uhid = format!("{vid:04x}:{pid:04x}"),
            usage_page = format!("{usage_page:#06x}"),
            control = %emu.control_path().display(),
            ?fault,
            "EMULATED dongle plugged in as a kernel HID device (not hardware)"
        );
        Box::new(emu)
    } else {
        let emu = SocketEmulator::spawn(device, &args.socket)
            .with_context(|| format!("cannot serve on {}", args.socket.display()))?;
        tracing::info!(
            %serial,
            socket = %args.socket.display(),
            ?fault,
            "EMULATED dongle plugged in (not hardware)"
        );
        Box::new(emu)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::signals::terminated("tether dongle emulate"));
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
        tether_dongle::LinkError::Absent => anyhow::anyhow!("no dongle found"),
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

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the bench asks GET /token with: one instance and one nonce for the
/// whole run, so it works under a license with a nonce period (which
/// refuses a request without them) and under one without (which echoes
/// the nonce). A run lasts well under the shortest period (4 minutes).
fn bench_token_path() -> String {
    let nonce: String = fresh_nonce()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("/token?instance=replug-bench&nonce={nonce}")
}

/// What GET /token answered, as the bench counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenAnswer {
    /// 200: a token.
    Token,
    /// 503 `awaiting_certificate`: the nonce is not committed yet (under a
    /// nonce period, right after a re-plug): not a refusal.
    Awaiting,
    /// Any other answer (503 `dongle_absent` after an unplug), with its
    /// status code (0 when tetherd cannot be reached).
    Refused(u16),
}

/// GET /token as the bench's instance.
fn token_answer(url: &str, path: &str, secret: &str) -> TokenAnswer {
    match tether_tools::http::get(url, path, Some(secret)) {
        Ok(r) if r.status == 200 => TokenAnswer::Token,
        Ok(r)
            if r.status == 503
                && r.json()
                    .ok()
                    .and_then(|j| j["code"].as_str().map(str::to_string))
                    == Some("awaiting_certificate".into()) =>
        {
            TokenAnswer::Awaiting
        }
        Ok(r) => TokenAnswer::Refused(r.status),
        Err(_) => TokenAnswer::Refused(0),
    }
}

/// The current session fingerprint in GET /status, if any.
fn session_of(url: &str) -> Option<String> {
    let status = tether_tools::http::get(url, "/status", None)
        .ok()?
        .json()
        .ok()?;
    status["dongle"]["session"].as_str().map(str::to_string)
}

/// Polls until GET /token answers 200 under a session not in `seen`.
fn wait_fresh_tokens(
    url: &str,
    path: &str,
    secret: &str,
    seen: &[String],
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if token_answer(url, path, secret) == TokenAnswer::Token
            && let Some(s) = session_of(url)
            && !seen.contains(&s)
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("no tokens under a fresh session within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn replug_bench(args: &ReplugBenchArgs) -> anyhow::Result<ExitCode> {
    let secret = crate::client::load_secret(&args.secret)?;
    let secret = secret.expose();
    let timeout = tether_keys::parse_duration(&args.timeout)?;
    if args.cycles == 0 {
        bail!("--cycles must be at least 1");
    }
    let path = bench_token_path();
    let mut sessions = vec![wait_fresh_tokens(&args.url, &path, secret, &[], timeout)?];
    let mut samples = Vec::new();
    // How long the unplug command itself took (for UHID: the kernel's
    // synchronous device removal), to read the totals against.
    let mut unplug_cmd = Vec::new();
    // From the unplug command's answer (the device is gone) to the refusal.
    let mut after_unplug = Vec::new();
    let mut polls_max = 0u32;
    for cycle in 0..args.cycles {
        // From just before the unplug command: an upper bound on destroy-to-refusal.
        let started = Instant::now();
        control(&args.socket.socket, "unplug").context("unplug")?;
        let unplugged = Instant::now();
        unplug_cmd.push(unplugged - started);
        let mut polls = 0u32;
        loop {
            polls += 1;
            match token_answer(&args.url, &path, secret) {
                TokenAnswer::Token | TokenAnswer::Awaiting => {}
                TokenAnswer::Refused(503) => break,
                TokenAnswer::Refused(other) => {
                    bail!("cycle {cycle}: GET /token answered {other} after unplug")
                }
            }
            if started.elapsed() > timeout {
                bail!("cycle {cycle}: tokens still issued {timeout:?} after unplug");
            }
        }
        let refused = Instant::now();
        samples.push(refused - started);
        after_unplug.push(refused - unplugged);
        polls_max = polls_max.max(polls);
        control(&args.socket.socket, "plug").context("plug")?;
        let s = wait_fresh_tokens(&args.url, &path, secret, &sessions, timeout)
            .with_context(|| format!("cycle {cycle}: after re-plug"))?;
        sessions.push(s);
    }
    let result = serde_json::json!({
        "cycles": samples.len(),
        "unplug_to_refusal_ms": summary(&mut samples),
        "unplug_command_ms": summary(&mut unplug_cmd),
        "after_unplug_returned_ms": summary(&mut after_unplug),
        "polls_max": polls_max,
        "distinct_sessions": sessions.len(),
    });
    println!("{result}");
    Ok(ExitCode::SUCCESS)
}

/// Median, p99 (nearest rank), max and min in milliseconds; `samples` is not empty.
fn summary(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        (ms(samples[i]) * 100.0).round() / 100.0
    };
    serde_json::json!({
        "median": at(0.5),
        "p99": at(0.99),
        "max": at(1.0),
        "min": at(0.0),
    })
}
