//! What the suite tried, and the table it prints at the end.
//!
//! Tests run in parallel threads of one process, so they record into one
//! shared [`Summary`]. Each test holds a [`Guard`] from [`test`]; when the
//! last guard of the run drops (passed or panicked), the table is written.
//! "The run" is what libtest will run: the binary lists it once by calling
//! itself with the same arguments and `--list`, so filters and `--skip`
//! still give a table for what ran.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Area {
    attacks: u64,
    rejected: u64,
    faults: u64,
    survived: u64,
    served: u64,
    failed: u64,
}

#[derive(Debug, Default)]
struct Summary {
    areas: BTreeMap<&'static str, Area>,
    latencies: Vec<Duration>,
    finished: BTreeSet<String>,
    failed_tests: Vec<String>,
    printed: bool,
}

static SUMMARY: Mutex<Option<Summary>> = Mutex::new(None);
static EXPECTED: OnceLock<(BTreeSet<String>, Instant)> = OnceLock::new();

fn with<T>(f: impl FnOnce(&mut Summary) -> T) -> T {
    let mut g: MutexGuard<'_, Option<Summary>> = SUMMARY.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Summary::default))
}

/// The area of a test: its module (`forged`, `dongle`, ...).
fn area(module: &'static str) -> &'static str {
    module.rsplit("::").next().unwrap_or(module)
}

/// Records one attack and whether it was rejected; returns `rejected`.
pub fn attack(module: &'static str, what: &str, rejected: bool, detail: &str) -> bool {
    eprintln!(
        "ADV attack {:<7} {:<8} {what}: {detail}",
        area(module),
        if rejected { "rejected" } else { "ACCEPTED" }
    );
    with(|s| {
        let a = s.areas.entry(area(module)).or_default();
        a.attacks += 1;
        a.rejected += u64::from(rejected);
    });
    rejected
}

/// Records one injected fault and whether the outcome was the documented one.
pub fn fault(module: &'static str, what: &str, survived: bool, detail: &str) -> bool {
    eprintln!(
        "ADV fault  {:<7} {:<8} {what}: {detail}",
        area(module),
        if survived { "survived" } else { "FAILED" }
    );
    with(|s| {
        let a = s.areas.entry(area(module)).or_default();
        a.faults += 1;
        a.survived += u64::from(survived);
    });
    survived
}

/// Records requests served (200) and failed (anything unexpected).
pub fn requests(module: &'static str, served: u64, failed: u64) {
    with(|s| {
        let a = s.areas.entry(area(module)).or_default();
        a.served += served;
        a.failed += failed;
    });
}

/// Records unplug-to-refusal latencies.
pub fn refusal_latency(d: &[Duration]) {
    with(|s| s.latencies.extend_from_slice(d));
}

/// The tests this run will execute, by libtest's names (`module::test`).
fn expected() -> &'static (BTreeSet<String>, Instant) {
    EXPECTED.get_or_init(|| {
        let started = Instant::now();
        let args: Vec<String> = std::env::args().skip(1).collect();
        let listed = std::process::Command::new(std::env::current_exe().unwrap())
            .args(&args)
            .arg("--list")
            .output();
        let names = match listed {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_suffix(": test"))
                .map(str::to_string)
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        (names, started)
    })
}

/// Held for the length of one test; its drop may print the table.
#[derive(Debug)]
pub struct Guard {
    name: String,
}

/// Starts recording test `name` of `module` (pass `module_path!()`).
pub fn test(module: &'static str, name: &str) -> Guard {
    expected();
    Guard {
        name: format!("{}::{name}", area(module)),
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        let (expected, started) = expected();
        let table = with(|s| {
            s.finished.insert(self.name.clone());
            if panicked {
                s.failed_tests.push(self.name.clone());
            }
            let done = !expected.is_empty() && expected.is_subset(&s.finished);
            if done && !s.printed {
                s.printed = true;
                Some(render(s, started.elapsed()))
            } else {
                None
            }
        });
        if let Some(t) = table {
            // Straight to the file descriptor: libtest captures only the
            // print macros, so the table shows in CI without --nocapture.
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(t.as_bytes());
            let _ = err.flush();
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn render(s: &Summary, took: Duration) -> String {
    let mut out = String::new();
    out.push_str("\n=== adversarial suite: summary ===\n");
    out.push_str(&format!(
        "{:<8} | {:^17} | {:^16} | {:^22}\n",
        "area", "attacks tried/rej", "faults inj/surv", "requests served/failed"
    ));
    out.push_str(&format!("{}\n", "-".repeat(71)));
    let mut total = Area::default();
    for (name, a) in &s.areas {
        out.push_str(&format!(
            "{name:<8} | {:>7} / {:<7} | {:>7} / {:<6} | {:>10} / {:<9}\n",
            a.attacks, a.rejected, a.faults, a.survived, a.served, a.failed
        ));
        total.attacks += a.attacks;
        total.rejected += a.rejected;
        total.faults += a.faults;
        total.survived += a.survived;
        total.served += a.served;
        total.failed += a.failed;
    }
    out.push_str(&format!("{}\n", "-".repeat(71)));
    out.push_str(&format!(
        "{:<8} | {:>7} / {:<7} | {:>7} / {:<6} | {:>10} / {:<9}\n",
        "total",
        total.attacks,
        total.rejected,
        total.faults,
        total.survived,
        total.served,
        total.failed
    ));
    let mut lat = s.latencies.clone();
    lat.sort();
    out.push_str(&format!(
        "refusal latency after unplug (n={}): p50 {}  p99 {}  max {}\n",
        lat.len(),
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
        ms(lat.last().copied().unwrap_or_default())
    ));
    out.push_str(&format!(
        "tests: {} finished, {} failed{}; wall time {:.1} s\n\n",
        s.finished.len(),
        s.failed_tests.len(),
        if s.failed_tests.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.failed_tests.join(", "))
        },
        took.as_secs_f64()
    ));
    out
}
