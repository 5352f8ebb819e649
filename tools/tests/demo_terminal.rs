//! `tether demo` on a real terminal: a pseudo-terminal from util-linux
//! `script`, keys typed as a user types them. Covers what `--script` runs
//! cannot: raw mode, single-key input, and Ctrl-C arriving as a key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn wait_for(screen: &Mutex<String>, needle: &str) {
    let deadline = Instant::now() + T;
    while !screen.lock().unwrap().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not shown within {T:?}:\n{}",
            screen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn keys_unplug_and_plug_and_ctrl_c_interrupts() {
    let demo = format!("{} demo", env!("CARGO_BIN_EXE_tether"));
    let mut script = Command::new("script")
        .args(["-qec", &demo, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux `script` (bsdutils) provides the terminal");
    let screen = Arc::new(Mutex::new(String::new()));
    let mut out = script.stdout.take().unwrap();
    let reader = {
        let screen = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut keys = script.stdin.take().unwrap();
    wait_for(&screen, "backend  licensed");
    keys.write_all(b"u").unwrap();
    wait_for(&screen, "unplugged the emulated dongle");
    wait_for(&screen, "UNLICENSED");
    keys.write_all(b"p").unwrap();
    wait_for(&screen, "plugged the emulated dongle back in");
    // Raw mode: Ctrl-C is a byte on the terminal, not a signal from it.
    keys.write_all(&[0x03]).unwrap();
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = script.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the demo ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(keys);
    reader.join().unwrap();
    let screen = screen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{screen}");
    assert!(
        screen.contains("Interrupted; everything stopped."),
        "{screen}"
    );
    let dir = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("Working directory: "))
        .map(|d| PathBuf::from(d.trim()))
        .expect("working directory line");
    assert!(!dir.exists(), "{} left behind", dir.display());
}
