//! `tether demo`: the whole product on one machine, live, with an EMULATED
//! dongle. Provisions a vendor key, a dongle identity, a license and two
//! service credentials in a temporary directory; starts the emulator,
//! tetherd, backend and muxer as real child processes on loopback; shows
//! their state; and lets the user unplug and plug the emulated dongle.
//!
//! Keys: `u` unplug, `p` plug, `q` quit (Ctrl-C works too). The terminal
//! is driven with `crossterm` (single-key input, clearing the screen), and
//! children are stopped with a SIGTERM sent through `rustix`, not by
//! spawning `stty` or `kill`. `--script` runs
//! a fixed scenario without a terminal (CI runs it) and fails if a
//! transition does not happen in time. Everything is stopped and removed on
//! exit.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{IsTerminal as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tether_tools::{http, human};
use tokio_util::sync::CancellationToken;

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
        use rustix::process::{Pid, Signal, kill_process};
        // Fails only when the child is already gone, which the wait below sees.
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
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
            bail!(
                "timed out after {} waiting for {what}",
                human::duration(timeout)
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

fn provision(dir: &Path) -> anyhow::Result<()> {
    provision::keygen_vendor(&dir.join("vendor"), false)?;
    provision::keygen_dongle(&dir.join("dongle"), Some(SERIAL.into()), false)?;
    provision::license_issue(&LicenseIssueArgs {
        vendor_key: Some(dir.join("vendor/vendor.key")),
        unsigned: false,
        vendor_pub: None,
        supersedes: None,
        dongle_pub: Some(dir.join("dongle/dongle.pub")),
        serial: None,
        customer: Some("Demo Customer".into()),
        features: Some(vec!["mux".into()]),
        services: Some(vec!["backend".into(), "muxer".into()]),
        valid_for: Some("1d".into()),
        valid_until: None,
        grace: None,
        not_before: None,
        max_ttl: Some("5m".into()),
        seats: None,
        nonce_period: Some("5m".into()),
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

/// Puts the terminal in raw mode (single keys, no echo) for the demo's
/// lifetime. Raw mode also turns Ctrl-C into a key, which `interactive`
/// handles as the interrupt it is.
struct RawTerminal {
    enabled: bool,
}

impl RawTerminal {
    fn enable() -> RawTerminal {
        RawTerminal {
            enabled: crossterm::terminal::enable_raw_mode().is_ok(),
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if self.enabled {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// What a key press asks for.
enum Key {
    Unplug,
    Plug,
    Quit,
    Interrupt,
    Other,
}

/// The next key within `wait`, if any.
fn next_key(wait: Duration) -> anyhow::Result<Option<Key>> {
    use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    if !event::poll(wait)? {
        return Ok(None);
    }
    let Event::Key(key) = event::read()? else {
        return Ok(Some(Key::Other));
    };
    if key.kind == KeyEventKind::Release {
        return Ok(Some(Key::Other));
    }
    Ok(Some(match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Char('u') => Key::Unplug,
        KeyCode::Char('p') => Key::Plug,
        KeyCode::Char('q') => Key::Quit,
        _ => Key::Other,
    }))
}

fn interactive(stack: &Stack, stop: &CancellationToken) -> anyhow::Result<()> {
    use crossterm::cursor::MoveTo;
    use crossterm::terminal::{Clear, ClearType};
    let _raw = RawTerminal::enable();
    let started = Instant::now();
    let mut note = String::new();
    while !stop.is_cancelled() {
        let snap = stack.snapshot();
        let mut out = std::io::stdout().lock();
        crossterm::queue!(out, Clear(ClearType::All), MoveTo(0, 0))?;
        // Raw mode does not turn "\n" into a new line at column 0.
        let screen = format!("{}\n  {note}\n", snap.render(started));
        out.write_all(screen.replace('\n', "\r\n").as_bytes())?;
        out.flush()?;
        drop(out);
        match next_key(Duration::from_millis(400))? {
            Some(Key::Unplug) => {
                stack.dongle("unplug")?;
                note = "unplugged the emulated dongle".into();
            }
            Some(Key::Plug) => {
                stack.dongle("plug")?;
                note = "plugged the emulated dongle back in".into();
            }
            Some(Key::Quit) => break,
            Some(Key::Interrupt) => stop.cancel(),
            Some(Key::Other) | None => {}
        }
    }
    Ok(())
}

fn scripted(stack: &Stack, stop: &CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    let mut wait = |what: &str, cond: fn(&Snapshot) -> bool| -> anyhow::Result<Snapshot> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if stop.is_cancelled() {
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
                bail!(
                    "{what} did not happen within {}",
                    human::duration(STEP_TIMEOUT)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let s = wait("both services licensed", |s| {
        s.dongle == "present" && s.all_licensed()
    })?;
    println!(
        "[{:6.2}s] both services licensed; {} issued",
        started.elapsed().as_secs_f64(),
        human::plural(s.issued, "token", "tokens")
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
///
/// # Errors
///
/// When provisioning or starting a child fails, a scripted transition does
/// not happen within its timeout, or the terminal cannot be driven.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    // Stops the demo on SIGINT/SIGTERM (its children are in their own
    // groups, so the demo must stop them itself).
    let stop = CancellationToken::new();
    crate::signals::cancel_on_signal("tether demo", stop.clone())?;
    let tmp = tempfile::Builder::new().prefix("tether-demo-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    println!("Tether demo with an EMULATED dongle (no hardware involved).");
    println!("Working directory: {}", dir.display());
    provision(&dir)?;
    println!(
        "Provisioned: vendor key, dongle {SERIAL}, license (backend, muxer; feature mux), 2 service credentials."
    );
    if stop.is_cancelled() {
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
    let interrupted = stop.is_cancelled();
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
