//! `tether demo`, the quick start's main job, run as a user runs it: the
//! scripted scenario shows the unplug and re-plug transitions, and the demo
//! leaves nothing behind, whether it finishes or is interrupted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tether_tests::bin;

fn working_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Working directory: "))
        .unwrap_or_else(|| panic!("no working directory line in:\n{stdout}"));
    PathBuf::from(line.trim())
}

/// Processes whose command line names `dir` (the demo's children all do).
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

#[test]
fn the_scripted_demo_shows_unplug_and_replug_and_cleans_up() {
    let out = Command::new(bin("tether"))
        .args(["demo", "--script"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // In this order: labelled, licensed, unplugged and refused, licensed again.
    let mut rest: &str = &stdout;
    for step in [
        "EMULATED dongle",
        "dongle: present | backend: licensed | muxer: licensed",
        ">>> unplugging the emulated dongle",
        "backend: UNLICENSED",
        "both services refuse work",
        ">>> plugging it back in",
        "both services licensed again",
        "everything stopped and removed",
    ] {
        let at = rest
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} missing or out of order in:\n{stdout}"));
        rest = &rest[at + step.len()..];
    }
    let dir = working_dir(&stdout);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(processes_using(&dir), Vec::<String>::new());
}

/// Starts `tether demo --script EXTRA`, interrupts it once its children are
/// being started; returns its working directory and stdout.
fn interrupt_demo(extra: &[&str]) -> (PathBuf, String) {
    let mut demo = Command::new(bin("tether"))
        .args(["demo", "--script"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    // Interrupt as soon as the children are being started.
    let dir = loop {
        let line = lines.next().expect("demo ended early").unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("Provisioned:") {
            break working_dir(&seen);
        }
    };
    let status = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(s) = demo.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "the demo ignored SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let stdout = format!("{seen}{}", rest.join("\n"));
    assert_eq!(code, Some(130), "{stdout}");
    assert!(stdout.contains("Interrupted;"), "{stdout}");
    assert_eq!(processes_using(&dir), Vec::<String>::new());
    (dir, stdout)
}

#[test]
fn an_interrupted_demo_stops_its_children_and_removes_its_files() {
    let (dir, _) = interrupt_demo(&[]);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn an_interrupted_demo_with_keep_keeps_its_files() {
    let (dir, stdout) = interrupt_demo(&["--keep"]);
    assert!(dir.join("license.tether").exists(), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
