//! `tether demo`: the whole product on one machine, live, with an EMULATED
//! dongle. Provisions a vendor key, a dongle identity, a license and two
//! service credentials in a temporary directory; starts the emulator,
//! tetherd, backend and muxer as real child processes on loopback; shows
//! their state; and lets the user unplug and plug the emulated dongle.
//!
//! Keys: `u` unplug, `p` plug, `q` quit (Ctrl-C works too). `--script` runs
//! a fixed scenario without a terminal (CI runs it) and fails if a
//! transition does not happen in time. Everything is stopped and removed on
//! exit.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tether_tools::http;

use crate::cli::{DemoArgs, LicenseIssueArgs};
use crate::provision;

const SERIAL: &str = "TD-DEMO-0001";
/// How long a scripted transition may take before the demo fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// A child process in its own process group, stopped with SIGTERM on drop.
struct Child_ {
    name: &'static str,
    child: Child,
}

impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("demo: {} did not stop in time; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Stack {
    dir: PathBuf,
    exe: PathBuf,
    authority: String,
    services: Vec<(&'static str, String)>,
    // Dropped in reverse order of start: services, tetherd, emulator.
    children: Vec<Child_>,
}

impl Stack {
    fn spawn(&mut self, name: &'static str, args: &[OsString]) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = Command::new(&self.exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("TETHER_CONFIG", "/dev/null")
            // Own process group: Ctrl-C reaches the demo, which stops children in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.children.push(Child_ { name, child });
        Ok(())
    }

    fn dongle(&self, action: &str) -> anyhow::Result<()> {
        let ok = Command::new(&self.exe)
            .args(["dongle", action, "--socket"])
            .arg(self.dir.join("dongle.sock"))
            .stdout(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("tether dongle {action} failed");
        }
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        let status = http::get(&self.authority, "/status", None)
            .ok()
            .and_then(|r| r.json().ok());
        let dongle = status.as_ref().map_or_else(
            || "unreachable".to_string(),
            |s| {
                let st = s["dongle"]["state"].as_str().unwrap_or("?");
                match st {
                    "present" => "present".to_string(),
                    _ => format!("{st} ({})", s["dongle"]["reason"].as_str().unwrap_or("")),
                }
            },
        );
        let issued = status
            .as_ref()
            .and_then(|s| s["tokens_issued"].as_u64())
            .unwrap_or(0);
        let services = self
            .services
            .iter()
            .map(|(name, url)| {
                let state = http::get(url, "/license", None)
                    .ok()
                    .and_then(|r| r.json().ok())
                    .map_or(ServiceView::Down, |v| {
                        if v["licensed"].as_bool() == Some(true) {
                            ServiceView::Licensed(v["expires_in_ms"].as_u64().unwrap_or(0))
                        } else {
                            ServiceView::Unlicensed(v["reason"].as_str().unwrap_or("").to_string())
                        }
                    });
                (*name, state)
            })
            .collect();
        Snapshot {
            dongle,
            issued,
            services,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ServiceView {
    Licensed(u64),
    Unlicensed(String),
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    dongle: String,
    issued: u64,
    services: BTreeMap<&'static str, ServiceView>,
}

impl Snapshot {
    fn all_licensed(&self) -> bool {
        self.services
            .values()
            .all(|s| matches!(s, ServiceView::Licensed(_)))
    }
    fn none_licensed(&self) -> bool {
        self.services
            .values()
            .all(|s| !matches!(s, ServiceView::Licensed(_)))
    }
    /// One line without the changing numbers, to print only on change.
    fn summary(&self) -> String {
        let services: Vec<String> = self
            .services
            .iter()
            .map(|(name, s)| match s {
                ServiceView::Licensed(_) => format!("{name}: licensed"),
                ServiceView::Unlicensed(r) => format!("{name}: UNLICENSED ({r})"),
                ServiceView::Down => format!("{name}: not answering"),
            })
            .collect();
        format!("dongle: {} | {}", self.dongle, services.join(" | "))
    }
    fn render(&self, started: Instant) -> String {
        let mut out = String::new();
        out.push_str("Tether demo  --  EMULATED dongle, not hardware\n\n");
        out.push_str(&format!("  dongle ({SERIAL}): {}\n", self.dongle));
        out.push_str(&format!("  tokens issued: {}\n\n", self.issued));
        for (name, s) in &self.services {
            let line = match s {
                ServiceView::Licensed(ms) => {
                    format!("licensed, token expires in {:.1}s", *ms as f64 / 1000.0)
                }
                ServiceView::Unlicensed(r) => format!("UNLICENSED: {r}"),
                ServiceView::Down => "not answering".into(),
            };
            out.push_str(&format!("  {name:<8} {line}\n"));
        }
        out.push_str(&format!(
            "\n  [u] unplug  [p] plug  [q] quit      ({:.0}s)\n",
            started.elapsed().as_secs_f64()
        ));
        out
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

fn provision(dir: &Path) -> anyhow::Result<()> {
    provision::keygen_vendor(&dir.join("vendor"), false)?;
    provision::keygen_dongle(&dir.join("dongle"), Some(SERIAL.into()), false)?;
    provision::license_issue(&LicenseIssueArgs {
        vendor_key: dir.join("vendor/vendor.key"),
        dongle_pub: dir.join("dongle/dongle.pub"),
        serial: None,
        customer: "Demo Customer".into(),
        features: vec!["mux".into()],
        services: vec!["backend".into(), "muxer".into()],
        valid_for: "1d".into(),
        not_before: None,
        max_ttl: "5m".into(),
        out: dir.join("license.tether"),
        force: false,
    })?;
    let mut creds = tether_keys::CredentialFile::default();
    for name in ["backend", "muxer"] {
        let secret = creds.enroll(name, false)?;
        tether_keys::keyfile::write_file(
            &dir.join(format!("{name}.secret")),
            secret.expose().as_bytes(),
            0o600,
            tether_keys::keyfile::Overwrite::Never,
        )?;
    }
    creds.save(&dir.join("credentials"))?;
    Ok(())
}

fn start(dir: &Path) -> anyhow::Result<Stack> {
    let exe = std::env::current_exe().context("cannot find the tether executable")?;
    let port = free_port()?;
    let mut stack = Stack {
        dir: dir.to_path_buf(),
        exe,
        authority: format!("http://127.0.0.1:{port}"),
        services: Vec::new(),
        children: Vec::new(),
    };
    let d = |rel: &str| dir.join(rel).into_os_string();
    let sock = dir.join("dongle.sock");
    let mut emu = os(&["dongle", "emulate", "--identity"]);
    emu.extend([
        d("dongle"),
        "--socket".into(),
        sock.clone().into_os_string(),
    ]);
    stack.spawn("emulator", &emu)?;
    wait_for("the emulated dongle", STEP_TIMEOUT, || sock.exists())?;

    let mut tetherd = os(&["tetherd", "--license"]);
    tetherd.extend([
        d("license.tether"),
        "--vendor-pub".into(),
        d("vendor/vendor.pub"),
        "--credentials".into(),
        d("credentials"),
        "--state-dir".into(),
        d("state"),
        "--dongle".into(),
        format!("socket:{}", sock.display()).into(),
        "--listen".into(),
        format!("127.0.0.1:{port}").into(),
        "--token-ttl".into(),
        "20s".into(),
        "--cert-lifetime".into(),
        "2m".into(),
    ]);
    stack.spawn("tetherd", &tetherd)?;
    let authority = stack.authority.clone();
    wait_for("tetherd", STEP_TIMEOUT, || {
        http::get(&authority, "/healthz", None).is_ok()
    })?;

    for name in ["backend", "muxer"] {
        let sport = free_port()?;
        let mut args = os(&[name, "--listen"]);
        args.extend([
            format!("127.0.0.1:{sport}").into(),
            "--authority".into(),
            authority.clone().into(),
            "--vendor-pub".into(),
            d("vendor/vendor.pub"),
            "--secret-file".into(),
            d(&format!("{name}.secret")),
        ]);
        stack.spawn(name, &args)?;
        stack
            .services
            .push((name, format!("http://127.0.0.1:{sport}")));
    }
    Ok(stack)
}

/// Stops the demo on SIGINT/SIGTERM (its children are in their own groups,
/// so the demo must stop them itself). The handlers are registered before
/// this returns: a Ctrl-C at any later moment cannot kill the demo with the
/// default action and orphan its children.
fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = {
        let _context = rt.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            stop.store(true, Ordering::SeqCst);
        })?;
    Ok(())
}

/// Puts the terminal in single-key mode for the demo's lifetime.
struct RawTerminal {
    saved: Option<String>,
}

impl RawTerminal {
    fn enable() -> RawTerminal {
        let stty = |args: &[&str]| {
            Command::new("stty")
                .args(args)
                .stdin(Stdio::inherit())
                .output()
                .ok()
                .filter(|o| o.status.success())
        };
        let saved = stty(&["-g"]).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if saved.is_some() {
            stty(&["-icanon", "-echo", "min", "1"]);
        }
        RawTerminal { saved }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = Command::new("stty")
                .arg(saved)
                .stdin(Stdio::inherit())
                .status();
        }
    }
}

fn interactive(stack: &Stack, stop: &AtomicBool) -> anyhow::Result<()> {
    let _raw = RawTerminal::enable();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let mut stdin = std::io::stdin();
        while stdin.read_exact(&mut byte).is_ok() {
            if tx.send(byte[0]).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut note = String::new();
    while !stop.load(Ordering::SeqCst) {
        let snap = stack.snapshot();
        print!("\x1b[2J\x1b[H{}\n  {note}\n", snap.render(started));
        let _ = std::io::stdout().flush();
        match rx.recv_timeout(Duration::from_millis(400)) {
            Ok(b'u') => {
                stack.dongle("unplug")?;
                note = "unplugged the emulated dongle".into();
            }
            Ok(b'p') => {
                stack.dongle("plug")?;
                note = "plugged the emulated dongle back in".into();
            }
            Ok(b'q') | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            _ => {}
        }
    }
    Ok(())
}

fn scripted(stack: &Stack, stop: &AtomicBool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    let mut wait = |what: &str, cond: fn(&Snapshot) -> bool| -> anyhow::Result<Snapshot> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            let snap = stack.snapshot();
            let line = snap.summary();
            if line != last {
                println!("[{:6.2}s] {line}", started.elapsed().as_secs_f64());
                last = line;
            }
            if cond(&snap) {
                return Ok(snap);
            }
            if Instant::now() > deadline {
                bail!("{what} did not happen within {STEP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let s = wait("both services licensed", |s| {
        s.dongle == "present" && s.all_licensed()
    })?;
    println!(
        "[{:6.2}s] both services licensed; {} tokens issued",
        started.elapsed().as_secs_f64(),
        s.issued
    );
    println!(
        "[{:6.2}s] >>> unplugging the emulated dongle",
        started.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    stack.dongle("unplug")?;
    wait("both services losing their license", |s| {
        s.dongle != "present" && s.none_licensed()
    })?;
    println!(
        "[{:6.2}s] both services refuse work, {} ms after the unplug",
        started.elapsed().as_secs_f64(),
        t.elapsed().as_millis()
    );
    println!(
        "[{:6.2}s] >>> plugging it back in",
        started.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    stack.dongle("plug")?;
    wait("both services licensed again", |s| {
        s.dongle == "present" && s.all_licensed()
    })?;
    println!(
        "[{:6.2}s] both services licensed again, {} ms after the re-plug",
        started.elapsed().as_secs_f64(),
        t.elapsed().as_millis()
    );
    Ok(())
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let tmp = tempfile::Builder::new().prefix("tether-demo-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    println!("Tether demo with an EMULATED dongle (no hardware involved).");
    println!("Working directory: {}", dir.display());
    provision(&dir)?;
    println!(
        "Provisioned: vendor key, dongle {SERIAL}, license (backend, muxer; feature mux), 2 service credentials."
    );
    if stop.load(Ordering::SeqCst) {
        if args.keep {
            println!("Kept {} (keys, license).", tmp.keep().display());
        }
        println!("Interrupted; nothing was started.");
        return Ok(ExitCode::from(130));
    }
    let stack = start(&dir)?;
    let interactive_ok = !args.script && std::io::stdin().is_terminal();
    let result = if interactive_ok {
        interactive(&stack, &stop)
    } else {
        if !args.script {
            println!("(stdin is not a terminal: running the scripted scenario)");
        }
        scripted(&stack, &stop)
    };
    let Stack { children, .. } = stack;
    // Stop in reverse order of start: services first, the dongle last.
    for child in children.into_iter().rev() {
        drop(child);
    }
    let interrupted = stop.load(Ordering::SeqCst);
    if args.keep {
        let kept = tmp.keep();
        println!("Kept {} (keys, license, logs).", kept.display());
    } else if interrupted {
        drop(tmp);
    } else if let Err(e) = &result {
        for name in ["emulator", "tetherd", "backend", "muxer"] {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            eprintln!("--- {name} (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        eprintln!("demo failed: {e:#}");
    }
    if interrupted {
        println!("Interrupted; everything stopped.");
        return Ok(ExitCode::from(130));
    }
    result?;
    println!("Demo finished; everything stopped and removed.");
    Ok(ExitCode::SUCCESS)
}
