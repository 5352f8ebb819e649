//! The usage ledger (issue 18) over real `tetherd` and emulator processes:
//! SIGKILL under load loses nothing the durability rule promised; every
//! kind of tampering is caught with its position; a full disk and a
//! read-only state directory fail closed and lose nothing already written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tether_keys::ledger::{Event, Export, record_hash};
use tether_keys::{SecretKey, Vendor, keyfile};
use tether_tests::{Proc, Site, bin, free_port, http, wait_for_token, wait_until};

const T: Duration = Duration::from_secs(15);

/// `tether usage export` of `state`, into `out`.
fn export(state: &Path, out: &Path) {
    let o = Command::new(bin("tether"))
        .args(["usage", "export", "--force", "--state-dir"])
        .arg(state)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "usage export: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `tether usage verify --json`: (exit code, report).
fn verify(vendor_pub: &Path, file: &Path, previous: Option<&Path>) -> (i32, serde_json::Value) {
    let mut cmd = Command::new(bin("tether"));
    cmd.args(["usage", "verify", "--json", "--vendor-pub"])
        .arg(vendor_pub)
        .arg(file);
    if let Some(p) = previous {
        cmd.arg("--previous").arg(p);
    }
    let o = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "usage verify printed no report ({e}): {text} {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), report)
}

fn errors(report: &serde_json::Value) -> Vec<(String, Option<u64>)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["sequence"].as_u64(),
            )
        })
        .collect()
}

fn kinds(report: &serde_json::Value, severity: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == severity)
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

fn tokens_of(report: &serde_json::Value, service: &str) -> u64 {
    report["usage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["service"] == service)
        .map(|u| u["tokens_issued"].as_u64().unwrap())
        .sum()
}

/// Load: `threads` clients asking for backend tokens as fast as they can
/// until `stop`; counts the 200s seen and the requests that got no answer
/// at all (in flight when the daemon died: the ledger may hold those).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, secret: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|i| {
                let (url, secret) = (url.to_string(), secret.to_string());
                let (stop, ok, lost) = (stop.clone(), ok.clone(), lost.clone());
                std::thread::spawn(move || {
                    let path = format!("/token?instance=load-{i}");
                    while !stop.load(Ordering::Relaxed) {
                        match http::get(&url, &path, Some(&secret)) {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(_) => {
                                // The daemon is gone: this request may have
                                // been counted; no more are sent.
                                lost.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            lost,
            threads,
        }
    }

    /// Stops and returns (tokens seen, requests lost in flight).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        )
    }
}

/// SIGKILL tetherd under load, three times; restart; stop cleanly; export;
/// verify: no gap, no error, and the tokens the report counts are the
/// ones the load saw (plus at most the requests in flight at each kill,
/// whose count was durable but whose answer never came).
#[test]
fn sigkill_under_load_three_times_loses_no_record() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let port = free_port().to_string();
    // Small segments: the chain must run on across files, crashes included.
    let extra = ["--rate-limit", "100000", "--ledger-segment-size", "4096"];
    let secret = site.secret("backend").to_string();
    let (mut seen, mut in_flight) = (0, 0);
    for round in 0..3 {
        let (mut d, url) = site.start_tetherd_on(&port, &extra);
        wait_for_token(&url, site.secret("muxer"), T);
        let load = Load::start(&url, &secret, 4);
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        d.signal("KILL");
        d.wait_exit(T).unwrap_or_default();
        let (ok, lost) = load.finish();
        assert!(ok > 0, "round {round}: the load got no token");
        if round == 0 {
            // An export between crashes: the final one must extend it.
            export(&site.path("state"), &site.path("early.tether-usage"));
        }
        seen += ok;
        in_flight += lost;
    }
    let (mut d, url) = site.start_tetherd_on(&port, &extra);
    wait_for_token(&url, site.secret("muxer"), T);
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log());
    let file = site.path("usage.tether-usage");
    export(&site.path("state"), &file);
    let (code, report) = verify(&site.vendor_pub, &file, None);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["verified"], true);
    assert!(errors(&report).is_empty(), "{report:#}");
    let warnings = kinds(&report, "warning");
    assert_eq!(
        warnings.iter().filter(|k| *k == "unclean_stop").count(),
        3,
        "{warnings:?}"
    );
    let counted = tokens_of(&report, "backend");
    assert!(
        counted >= seen && counted <= seen + in_flight,
        "the ledger counts {counted} backend tokens; the load saw {seen} (+{in_flight} in flight at the kills)"
    );
    assert_eq!(report["unsealed_tail"], 0, "the clean stop is checkpointed");
    let segments = std::fs::read_dir(site.path("state/ledger"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "tlg")
        })
        .count();
    assert!(segments > 1, "{segments} segment(s): no rotation");
    // Successive exports chain.
    let (code, r) = verify(
        &site.vendor_pub,
        &file,
        Some(&site.path("early.tether-usage")),
    );
    assert_eq!(code, 0, "{r:#}");
    // An export --since the last start verifies on its own.
    let full = Export::decode(&std::fs::read(&file).unwrap()).unwrap();
    let last_start = full
        .records
        .iter()
        .rev()
        .find(|(r, _)| matches!(r.event, Event::Start { .. }))
        .unwrap()
        .0
        .time;
    let since = site.path("since.tether-usage");
    let o = Command::new(bin("tether"))
        .args(["usage", "export", "--state-dir"])
        .arg(site.path("state"))
        .args(["--since", &last_start.to_string(), "--out"])
        .arg(&since)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, r) = verify(&site.vendor_pub, &since, None);
    assert_eq!(code, 0, "{r:#}");
    assert!(r["records"].as_u64().unwrap() < full.records.len() as u64);
    assert!(report["certificates"].as_u64().unwrap() >= 4);
}

/// A ledger with a few runs, certificates and tokens, for the tamper cases.
fn run_site(site: &Site, plugs: usize) {
    let _emu = site.start_emulator(&[]);
    let (mut d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    for _ in 0..plugs {
        site.dongle(&["unplug"]);
        wait_until(T, || {
            http::get(&url, "/token", Some(site.secret("backend"))).is_ok_and(|r| r.status == 503)
        });
        site.dongle(&["plug"]);
        wait_for_token(&url, site.secret("backend"), T);
    }
    for _ in 0..5 {
        let r = http::get(&url, "/token?instance=i-1", Some(site.secret("backend"))).unwrap();
        assert_eq!(r.status, 200);
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log());
}

fn rewrite(file: &Path, out: &Path, edit: impl FnOnce(&mut Export)) {
    let mut e = Export::decode(&std::fs::read(file).unwrap()).unwrap();
    edit(&mut e);
    std::fs::write(out, e.encode()).unwrap();
}

/// Re-links every record from `from` on (what a careful forger does).
fn rechain(e: &mut Export, from: usize) {
    for i in from.max(1)..e.records.len() {
        e.records[i].0.prev = e.records[i - 1].1;
        e.records[i].0.sequence = e.records[i - 1].0.sequence + 1;
        e.records[i].1 = record_hash(&e.records[i].0.encode());
    }
}

fn position_of(e: &Export, pred: impl Fn(&Event) -> bool) -> usize {
    e.records.iter().position(|(r, _)| pred(&r.event)).unwrap()
}

#[test]
fn every_kind_of_tampering_is_caught_with_its_position() {
    let site = Site::new();
    run_site(&site, 2);
    let file = site.path("usage.tether-usage");
    export(&site.path("state"), &file);
    let (code, honest) = verify(&site.vendor_pub, &file, None);
    assert_eq!(code, 0, "{honest:#}");
    let tampered = site.path("tampered.tether-usage");
    let original = Export::decode(&std::fs::read(&file).unwrap()).unwrap();
    let token_minute = position_of(&original, |e| matches!(e, Event::TokenMinute(_)));
    let seq = |i: usize| original.records[i].0.sequence;

    // A changed record: the next one no longer names it.
    let victim = 2;
    rewrite(&file, &tampered, |e| {
        e.records[victim].0.time = tether_keys::UnixTime::from_secs(1);
        e.records[victim].1 = record_hash(&e.records[victim].0.encode());
    });
    let (code, r) = verify(&site.vendor_pub, &tampered, None);
    assert_eq!(code, 3);
    assert_eq!(
        errors(&r)[0],
        ("chain_broken".into(), Some(seq(victim + 1)))
    );

    // The same change, every later record re-linked: the dongle's heads catch it.
    rewrite(&file, &tampered, |e| {
        if let Event::TokenMinute(m) = &mut e.records[token_minute].0.event {
            m.issued += 1000;
        }
        e.records[token_minute].1 = record_hash(&e.records[token_minute].0.encode());
        rechain(e, token_minute + 1);
    });
    let (code, r) = verify(&site.vendor_pub, &tampered, None);
    assert_eq!(code, 3);
    let errs = errors(&r);
    assert!(
        errs.iter()
            .any(|(k, _)| k == "head_mismatch" || k == "uncertified_checkpoint"),
        "{errs:?}"
    );

    // A record deleted in the middle.
    rewrite(&file, &tampered, |e| {
        e.records.remove(victim);
    });
    let (_, r) = verify(&site.vendor_pub, &tampered, None);
    let errs = errors(&r);
    assert_eq!(errs[0], ("sequence_gap".into(), Some(seq(victim + 1))));
    assert_eq!(errs[1], ("chain_broken".into(), Some(seq(victim + 1))));

    // A reordered pair.
    rewrite(&file, &tampered, |e| e.records.swap(victim, victim + 1));
    let (_, r) = verify(&site.vendor_pub, &tampered, None);
    let errs = errors(&r);
    assert!(
        errs.contains(&("out_of_order".into(), Some(seq(victim)))),
        "{errs:?}"
    );

    // A wholly fabricated ledger under a forged key: nothing verifies
    // under the real vendor key.
    let forged_pub = site.path("forged.pub");
    keyfile::write_public_key(
        &forged_pub,
        &SecretKey::<Vendor>::generate().public(),
        &[],
        keyfile::Overwrite::Never,
    )
    .unwrap();
    let (code, r) = verify(&forged_pub, &file, None);
    assert_eq!(code, 3);
    let errs: Vec<String> = errors(&r).into_iter().map(|e| e.0).collect();
    assert!(errs.contains(&"untrusted_license".to_string()), "{errs:?}");
    assert!(
        errs.contains(&"untrusted_certificate".to_string()),
        "{errs:?}"
    );

    // An export spliced from two sites: another site's records appended
    // and re-linked.
    let other = Site::new();
    run_site(&other, 0);
    let other_file = other.path("usage.tether-usage");
    export(&other.path("state"), &other_file);
    let other_export = Export::decode(&std::fs::read(&other_file).unwrap()).unwrap();
    let splice_at = original.records.len();
    rewrite(&file, &tampered, |e| {
        e.records.extend(other_export.records.clone());
        rechain(e, splice_at);
    });
    let (code, r) = verify(&site.vendor_pub, &tampered, None);
    assert_eq!(code, 3);
    let errs = errors(&r);
    assert!(
        errs.iter()
            .any(|(k, s)| k == "untrusted_license" && *s == Some(seq(splice_at - 1) + 1)),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|(k, _)| k == "untrusted_certificate"),
        "{errs:?}"
    );

    // A truncated tail, while the daemon is stopped: the records after the
    // last certificate's predecessor are cut on disk, so the vendor's
    // earlier export and the next certificate's counter both expose it.
    let segment = last_segment(&site.path("state/ledger"));
    let last_cert = position_of_last(&original, |e| matches!(e, Event::Certificate { .. }));
    let keep_bytes = offset_of_record(&segment, last_cert);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    f.set_len(keep_bytes).unwrap();
    drop(f);
    run_site(&site, 0);
    let later = site.path("later.tether-usage");
    export(&site.path("state"), &later);
    let (code, r) = verify(&site.vendor_pub, &later, Some(&file));
    assert_eq!(code, 3, "{r:#}");
    let errs: Vec<String> = errors(&r).into_iter().map(|e| e.0).collect();
    assert!(errs.contains(&"fork".to_string()), "{errs:?}");
    let warns = kinds(&r, "warning");
    assert!(warns.contains(&"counter_gap".to_string()), "{warns:?}");
    assert!(warns.contains(&"unclean_stop".to_string()), "{warns:?}");

    // Rollback: the older export presented after the newer one.
    let (code, r) = verify(&site.vendor_pub, &file, Some(&later));
    assert_eq!(code, 3);
    assert_eq!(errors(&r).last().unwrap().0, "rollback", "{r:#}");
}

/// A torn last record (half a frame, as a power cut leaves it) is cut at
/// the next start, kept aside, and said in the ledger; the rest verifies.
#[test]
fn a_torn_tail_is_repaired_at_start_and_kept_aside() {
    let site = Site::new();
    run_site(&site, 0);
    let segment = last_segment(&site.path("state/ledger"));
    let torn = [0u8, 0, 0, 90, 1, 0, 0, 0, 0, 0, 0, 0];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut f, &torn).unwrap();
    drop(f);
    run_site(&site, 0);
    let kept: Vec<PathBuf> = std::fs::read_dir(site.path("state/ledger"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("torn-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), torn);
    let file = site.path("usage.tether-usage");
    export(&site.path("state"), &file);
    let (code, r) = verify(&site.vendor_pub, &file, None);
    assert_eq!(code, 0, "{r:#}");
    assert!(
        kinds(&r, "warning").contains(&"torn_tail_repaired".to_string()),
        "{r:#}"
    );
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tlg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

fn position_of_last(e: &Export, pred: impl Fn(&Event) -> bool) -> usize {
    e.records.iter().rposition(|(r, _)| pred(&r.event)).unwrap()
}

/// Byte offset of record `index` (of the whole ledger) in a single segment.
fn offset_of_record(segment: &Path, index: usize) -> u64 {
    let bytes = std::fs::read(segment).unwrap();
    let mut at = tether_authority::ledger::SEGMENT_MAGIC.len();
    for _ in 0..index {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4 + len + 8;
    }
    at as u64
}

/// A tmpfs of `size` at a fresh directory, or None (and why) when this
/// process may not mount.
fn tmpfs(size: &str) -> Option<(tempfile::TempDir, Unmount)> {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir.path())
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN); the disk-full and read-only cases did not run"
        );
        return None;
    }
    let path = dir.path().to_path_buf();
    Some((dir, Unmount(path)))
}

/// The site's state directory, as a link to `mnt/state`.
fn state_on(site: &Site, mnt: &Path) -> PathBuf {
    let state = mnt.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::symlink(&state, site.path("state")).unwrap();
    state
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Disk full while serving: tokens are refused (fail closed) as long as
/// the ledger cannot be written, and flow again once it can; nothing
/// written is lost and the report counts exactly the tokens sent.
#[test]
fn a_full_disk_fails_closed_and_loses_nothing() {
    let Some((mnt, _unmount)) = tmpfs("4m") else {
        return;
    };
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let state = state_on(&site, mnt.path());
    let port = free_port().to_string();
    let (mut d, url) = site.start_tetherd_on(&port, &["--rate-limit", "100000"]);
    let secret = site.secret("backend");
    wait_for_token(&url, secret, T);
    let mut sent = 1u64;
    // Fill the disk.
    let filler = mnt.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    // Counts of the open minute are written in place (no new space), so
    // new instances, each a record appended, are what runs into the full disk.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = None;
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let r = http::get(&url, &format!("/token?instance=f-{n}"), Some(secret)).unwrap();
        if r.status == 200 {
            sent += 1;
        } else {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("tokens kept flowing on a full disk");
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert!(refused.body.contains("usage ledger"), "{}", refused.body);
    // Room again: tokens flow again, by themselves.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + T;
    loop {
        let r = http::get(&url, "/token?instance=f-1", Some(secret)).unwrap();
        if r.status == 200 {
            sent += 1;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no token after the disk had room: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log());
    let file = site.path("usage.tether-usage");
    export(&state, &file);
    let (code, report) = verify(&site.vendor_pub, &file, None);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(tokens_of(&report, "backend"), sent, "{report:#}");
}

/// A read-only state directory: tetherd does not start, and what was
/// written before is intact.
#[test]
fn a_read_only_state_directory_stops_tetherd_and_keeps_the_ledger() {
    let Some((mnt, _unmount)) = tmpfs("8m") else {
        return;
    };
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let state = state_on(&site, mnt.path());
    let (mut d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log());
    let before = site.path("before.tether-usage");
    export(&state, &before);
    let ro = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(ro.success());
    let mut refused = Proc::spawn(
        site.tetherd_command(&[], &free_port().to_string(), &[]),
        "tetherd",
    );
    assert_eq!(refused.wait_exit(T), Some(1), "{}", refused.log());
    let log = refused.log();
    assert!(
        log.contains("Read-only file system") || log.contains("read-only"),
        "{log}"
    );
    let rw = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(rw.success());
    let after = site.path("after.tether-usage");
    export(&state, &after);
    let (code, report) = verify(&site.vendor_pub, &after, Some(&before));
    assert_eq!(code, 0, "{report:#}");
    let a = Export::decode(&std::fs::read(&after).unwrap()).unwrap();
    let b = Export::decode(&std::fs::read(&before).unwrap()).unwrap();
    assert_eq!(a.records, b.records, "the failed start changed the ledger");
}
