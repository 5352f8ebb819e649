#!/usr/bin/env bash
# Fuzz smoke: builds the cargo-fuzz targets in fuzz/ and runs each for a
# bounded time, starting from the committed corpus (fuzz/corpus/TARGET) and
# the generated seeds (fuzz/seeds/TARGET). Fails if any target crashes
# (panic, failed assertion, timeout, out of memory); the input that did it is
# kept in fuzz/artifacts/TARGET/ and printed in base64 for CI logs.
#
#   scripts/fuzz-smoke.sh [TARGET...]       default: every target
#   FUZZ_SECS=20        seconds per target
#   FUZZ_SANITIZER=none none (default) or address; changing it rebuilds everything
#
# Works on stable Rust. With `-s none` cargo-fuzz passes rustc only stable
# flags (-Cpasses=sancov-module, -Cllvm-args=..., --cfg fuzzing). With
# `-s address` it adds -Zsanitizer=address, which a stable rustc accepts with
# RUSTC_BOOTSTRAP=1 (set below for that case only: cargo tracks the variable,
# so setting it always would rebuild). The sanitizer is off by default: the
# workspace forbids unsafe code, the fuzzers look for panics and broken
# invariants, and the build and the runs are faster without it.
# The fuzz crate has its own Cargo.lock and target dir (fuzz/target).
# New corpus entries are minimized after each run (`cargo fuzz cmin`); commit
# fuzz/corpus when they are worth keeping.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECS=${FUZZ_SECS:-20}
SANITIZER=${FUZZ_SANITIZER:-none}
ALL_TARGETS=(frame_decoder request_parse emulator_device license_decode cert_decode token_verify ctap2_decode)
if (($#)); then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
# The corpus stays small: a target's minimized corpus above this is an error.
# Per target, after cmin. The license decoder reads two format versions (1 and
# 2), so its corpus is the largest.
MAX_CORPUS_KB=${FUZZ_MAX_CORPUS_KB:-384}

if [[ "$SANITIZER" != none ]]; then export RUSTC_BOOTSTRAP=1; fi
step() { printf '\n=== %s ===\n' "$*"; }

step "cargo-fuzz $CARGO_FUZZ_VERSION"
if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi
cargo fuzz --version

# Its own target dir whatever the caller's CARGO_TARGET_DIR: the fuzz build's
# flags differ from the workspace's, and the binaries are looked up there.
export CARGO_TARGET_DIR="$PWD/fuzz/target"
step "build (sanitizer: $SANITIZER)"
# cargo fuzz has no --locked: check the lock file is current first. It goes
# stale when a workspace crate changes its dependencies.
if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null; then
    echo "fuzz/Cargo.lock is out of date; update it with" >&2
    echo "  cargo metadata --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null" >&2
    echo "and commit it." >&2
    exit 1
fi
start=$SECONDS
cargo fuzz build -s "$SANITIZER"
echo "built in $((SECONDS - start)) s"
bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release
"$bin_dir/make_seeds" fuzz/seeds

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -A result
failed=()
for t in "${TARGETS[@]}"; do
    step "fuzz $t for ${FUZZ_SECS}s"
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    before=$(find "fuzz/artifacts/$t" -type f 2>/dev/null | sort || true)
    set +e
    cargo fuzz run -s "$SANITIZER" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$FUZZ_SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$logs/$t" 2>&1
    rc=$?
    set -e
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|new_units_added)' "$logs/$t" || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$logs/$t" | tail -1 || true)
    if ((rc != 0)); then
        echo "--- $t failed (exit $rc); the fuzzer's report: ---"
        grep -A3 -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer' "$logs/$t" | head -20 || true
        echo "..."
        grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' "$logs/$t" | tail -25
        for a in $(comm -13 <(echo "$before") <(find "fuzz/artifacts/$t" -type f 2>/dev/null | sort)); do
            echo "artifact: $a ($(stat -c %s "$a") bytes), base64:"
            base64 -w0 "$a" | head -c 20000
            echo
            echo "reproduce: ${RUSTC_BOOTSTRAP:+RUSTC_BOOTSTRAP=1 }cargo fuzz run -s $SANITIZER $t $a"
        done
        result[$t]="CRASH (exit $rc)"
        failed+=("$t")
        continue
    fi
    cargo fuzz cmin -s "$SANITIZER" "$t" "fuzz/corpus/$t" >"$logs/$t.cmin" 2>&1 ||
        { tail -20 "$logs/$t.cmin"; result[$t]="cmin failed"; failed+=("$t"); continue; }
    files=$(find "fuzz/corpus/$t" -type f | wc -l)
    kb=$(du -sk --apparent-size "fuzz/corpus/$t" | cut -f1)
    result[$t]="ok: ${execs:-?} execs, ${cov:-cov ?}, corpus $files files ${kb} KB"
    if ((kb > MAX_CORPUS_KB)); then
        result[$t]="corpus too large: ${kb} KB > ${MAX_CORPUS_KB} KB after cmin"
        failed+=("$t")
    fi
done

step "summary (${FUZZ_SECS}s per target, sanitizer $SANITIZER)"
for t in "${TARGETS[@]}"; do printf '%-16s %s\n' "$t" "${result[$t]}"; done
printf 'corpus total: %s KB\n' "$(du -sk --apparent-size fuzz/corpus | cut -f1)"
if ! git diff --quiet -- fuzz/corpus fuzz/seeds 2>/dev/null ||
    [[ -n "$(git ls-files --others --exclude-standard fuzz/corpus fuzz/seeds 2>/dev/null)" ]]; then
    echo "note: fuzz/corpus or fuzz/seeds changed; commit them to keep what was found"
fi
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all ${#TARGETS[@]} targets ran clean"
