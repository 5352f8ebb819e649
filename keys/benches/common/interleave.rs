//! Shared by the benches that compare contenders in one run (included with
//! `#[path]` by `tether-keys`'s and `tether-verifier`'s benches).

use std::time::{Duration, Instant};

/// Ops per second of each contender, measured in interleaved 50 ms slices
/// over `rounds` rounds (after 200 warm-up calls each), so a neighbour's
/// load falls on all of them alike and the ratios stay meaningful on a busy
/// machine.
pub fn rates<const N: usize>(rounds: u32, mut fs: [&mut dyn FnMut(); N]) -> [f64; N] {
    const BATCH: u64 = 16;
    let slice = Duration::from_millis(50);
    let mut ops = [0u64; N];
    let mut spent = [Duration::ZERO; N];
    for f in fs.iter_mut() {
        for _ in 0..200 {
            f();
        }
    }
    for _ in 0..rounds {
        for (i, f) in fs.iter_mut().enumerate() {
            let start = Instant::now();
            while start.elapsed() < slice {
                for _ in 0..BATCH {
                    f();
                }
                ops[i] += BATCH;
            }
            spent[i] += start.elapsed();
        }
    }
    std::array::from_fn(|i| ops[i] as f64 / spent[i].as_secs_f64())
}
