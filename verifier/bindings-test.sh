#!/usr/bin/env bash
# The C and Python bindings of the verifier (issue 20), end to end:
#   1. the C library (verifier/c) built with the ffi profile (release, but
#      panics unwind so they become status codes), the committed header
#      checked against cbindgen's output, the conformance set checked
#      against its generator;
#   2. the C conformance program (every vector, bad input) linked against the
#      shared library through pkg-config, and against the static one;
#   3. the C example against a real tetherd + emulated dongle: a token from
#      `tether token` verified, refused for another service, and the
#      refresher licensed;
#   4. the Python wheel (maturin, abi3) installed in a venv under target/,
#      and pytest: conformance, bad input, LicenseWatch against real tetherd
#      processes, the gated example service.
#
#   verifier/bindings-test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1

step() { printf '\n=== %s ===\n' "$*"; }
target=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

step "build tether, tetherd and the C library"
cargo build --workspace --locked --bins
bin_dir=$target/debug
cargo build --locked -p tether-verifier-c --profile ffi
lib_dir=$target/ffi
ls -l "$lib_dir"/libtether_verifier.so "$lib_dir"/libtether_verifier.a

step "header is what cbindgen generates"
cbindgen_version=0.29.4
if [[ "$(cbindgen --version 2>/dev/null)" != "cbindgen $cbindgen_version" ]]; then
    echo "installing cbindgen $cbindgen_version (crates.io)" >&2
    cargo install cbindgen --locked --version "$cbindgen_version" --quiet
fi
cbindgen --quiet --config verifier/c/cbindgen.toml --crate tether-verifier-c \
    --output "$work/tether_verifier.h" verifier/c
if ! diff -u verifier/c/include/tether_verifier.h "$work/tether_verifier.h"; then
    echo "verifier/c/include/tether_verifier.h is stale: regenerate it with" >&2
    echo "  cbindgen --config verifier/c/cbindgen.toml --crate tether-verifier-c --output verifier/c/include/tether_verifier.h verifier/c" >&2
    exit 1
fi
echo "header current"

step "conformance vectors are what the generator writes"
cargo run --locked -q -p tether-verifier-c --example gen_vectors >"$work/vectors.json"
if ! diff -q tests/conformance/vectors.json "$work/vectors.json"; then
    echo "tests/conformance/vectors.json is stale: regenerate it with" >&2
    echo "  cargo run -p tether-verifier-c --example gen_vectors > tests/conformance/vectors.json" >&2
    exit 1
fi
echo "vectors current"

step "pkg-config file"
mkdir -p "$lib_dir/pkgconfig"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
sed -e "s|@PREFIX@|$PWD|" -e "s|@LIBDIR@|$lib_dir|" -e "s|@INCLUDEDIR@|$PWD/verifier/c/include|" \
    -e "s|@VERSION@|$version|" verifier/c/tether-verifier.pc.in >"$lib_dir/pkgconfig/tether-verifier.pc"
export PKG_CONFIG_PATH=$lib_dir/pkgconfig
pkg-config --modversion tether-verifier
cflags=(-std=c11 -Wall -Wextra -Werror -O1)

step "C conformance (shared and static library)"
python3 - tests/conformance/vectors.json >"$work/vectors.tsv" <<'PY'
import json, sys
for v in json.load(open(sys.argv[1]))["vectors"]:
    e = v["expect"]
    print("\t".join([v["name"], v["expected"], str(v["now"]), e["service"], ",".join(e["features"]),
                     str(e["leeway"]), e["instance"] or "", v["nonce"] or "",
                     "-" if v["accepted"] is None else "=" + ",".join(v["accepted"]), v["token"],
                     "1" if e["refuse_grace"] else "0", v["vendor_pub"].replace("\n", "\\n")]))
PY
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
gcc "${cflags[@]}" -o "$work/conformance" verifier/c/tests/conformance.c \
    $(pkg-config --cflags --libs tether-verifier)
LD_LIBRARY_PATH=$lib_dir "$work/conformance" "$work/vectors.tsv"
# shellcheck disable=SC2046
gcc "${cflags[@]}" -o "$work/conformance-static" verifier/c/tests/conformance.c \
    $(pkg-config --cflags tether-verifier) "$lib_dir/libtether_verifier.a" \
    $(pkg-config --libs-only-l --static tether-verifier | sed 's/-ltether_verifier//')
"$work/conformance-static" "$work/vectors.tsv"

step "C example against a real tetherd"
# shellcheck disable=SC2046
gcc "${cflags[@]}" -o "$work/verify_token" verifier/c/examples/verify_token.c \
    $(pkg-config --cflags --libs tether-verifier)
export TETHER_CONFIG=/dev/null
t=$bin_dir/tether
site=$work/site
mkdir -p "$site"
"$t" keygen vendor --out "$site/vendor" >/dev/null
"$t" keygen dongle --out "$site/dongle" --serial TD-CBIND >/dev/null
"$t" license issue --vendor-key "$site/vendor/vendor.key" --dongle-pub "$site/dongle/dongle.pub" \
    --customer "C example" --features mux --services backend,muxer --valid-for 1d --max-ttl 5m \
    --out "$site/license.tether" >/dev/null
"$t" service enroll backend --credentials "$site/credentials" --secret-out "$site/backend.secret" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$t" dongle emulate --identity "$site/dongle" --socket "$site/dongle.sock" >"$site/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -S "$site/dongle.sock" ]] && break; sleep 0.1; done
"$bin_dir/tetherd" --license "$site/license.tether" --vendor-pub "$site/vendor/vendor.pub" \
    --credentials "$site/credentials" --dongle "socket:$site/dongle.sock" --state-dir "$site/state" \
    --listen "127.0.0.1:$port" >"$site/tetherd.log" 2>&1 &
pids+=($!)
token=
for _ in $(seq 300); do
    if answer=$("$t" token --url "$url" --secret-file "$site/backend.secret" 2>/dev/null); then
        token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$answer")
        break
    fi
    sleep 0.1
done
[[ -n "$token" ]] || { echo "no token from tetherd" >&2; cat "$site"/*.log >&2; exit 1; }
LD_LIBRARY_PATH=$lib_dir "$work/verify_token" "$site/vendor/vendor.pub" backend <<<"$token" |
    tee "$work/claims.json"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); assert c["aud"]=="backend", c' "$work/claims.json"
set +e
out=$(LD_LIBRARY_PATH=$lib_dir "$work/verify_token" "$site/vendor/vendor.pub" muxer <<<"$token")
rc=$?
set -e
echo "$out"
[[ $rc == 1 && "$out" == "refused: wrong_audience"* ]] || { echo "expected wrong_audience (exit 1), got exit $rc" >&2; exit 1; }
LD_LIBRARY_PATH=$lib_dir "$work/verify_token" --watch "$url" "$site/backend.secret" \
    "$site/vendor/vendor.pub" backend
echo "C example: OK"

step "python wheel (maturin) in a venv"
venv=$target/bindings-venv
req=verifier/python/requirements-dev.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-virtualenv -r "$req"
    echo "$want" >"$stamp"
fi
wheels=$target/bindings-wheels
rm -rf "$wheels"
"$venv/bin/maturin" build --locked --profile ffi --compatibility linux \
    -m verifier/python/Cargo.toml --out "$wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --force-reinstall --no-deps "$wheels"/tether_verifier-*.whl
"$venv/bin/python" -c 'import tether_verifier as tv; print("tether_verifier", tv.__version__, "from", tv.__file__)'
# The wheel's metadata (pyproject.toml) and the native module (the workspace
# version) must name the same release.
"$venv/bin/python" - "$version" <<'PY'
import importlib.metadata as md, sys, tether_verifier as tv
versions = {"workspace": sys.argv[1], "native module": tv.__version__, "wheel": md.version("tether_verifier")}
assert len(set(versions.values())) == 1, f"version mismatch {versions}: set verifier/python/pyproject.toml"
PY

step "pytest verifier/python/tests"
report=$work/pytest.xml
set +e
TETHER_BIN_DIR=$bin_dir "$venv/bin/python" -m pytest -c verifier/python/tests/pytest.ini \
    --rootdir verifier/python/tests --junitxml="$report" verifier/python/tests "$@"
rc=$?
set -e
python3 - "$report" <<'PY' || rc=1
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
n = int(suite.get("tests", 0)); f = int(suite.get("failures", 0)); e = int(suite.get("errors", 0))
s = int(suite.get("skipped", 0))
print(f"python bindings: {n} tests, {n - f - e - s} passed, {f} failed, {e} errors, {s} skipped")
sys.exit(1 if n == 0 or s else 0)
PY
case $rc in
0) echo "bindings: OK" ;;
*) echo "bindings: FAILED (pytest exit $rc, or tests skipped / none ran)" >&2; exit 1 ;;
esac
