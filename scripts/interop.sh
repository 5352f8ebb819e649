#!/usr/bin/env bash
# PyJWT interoperability, both ways (tests/interop): tokens Tether issues
# verify in PyJWT with the session key from their certificate, and tokens
# forged in Python are refused by `tether verify` for the right reason.
#
# Builds the workspace binaries (the default target/ dir, shared with
# scripts/test), makes a venv under target/interop-venv with the pinned
# requirements from PyPI, and runs pytest. Fails when any test fails and when
# no test ran (pytest exit 5).
#
#   scripts/interop.sh [PYTEST ARGS...]     e.g. -k forged, -x
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the source tree

step() { printf '\n=== %s ===\n' "$*"; }

step "build tether and tetherd"
cargo build --workspace --locked --bins
bin_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug
for b in tether tetherd; do
    [[ -x "$bin_dir/$b" ]] || { echo "missing $bin_dir/$b" >&2; exit 1; }
done

step "python venv"
venv=target/interop-venv
req=tests/interop/requirements.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-virtualenv -r "$req"
    echo "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import jwt, cryptography, pytest, sys
print(f"python {sys.version.split()[0]}, PyJWT {jwt.__version__}, cryptography {cryptography.__version__}, pytest {pytest.__version__}")'

step "pytest tests/interop"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
TETHER_BIN_DIR="$bin_dir" "$venv/bin/python" -m pytest -c tests/interop/pytest.ini \
    --rootdir tests/interop --junitxml="$report" tests/interop "$@"
rc=$?
set -e

step "summary"
set +e
python3 - "$report" <<'PY'
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
n = int(suite.get("tests", 0)); f = int(suite.get("failures", 0)); e = int(suite.get("errors", 0))
s = int(suite.get("skipped", 0))
print(f"PyJWT interop: {n} tests, {n - f - e - s} passed, {f} failed, {e} errors, {s} skipped "
      f"in {float(suite.get('time', 0)):.1f} s")
sys.exit(1 if n == 0 or s else 0)
PY
summary_rc=$?
set -e
case $rc in
0) if ((summary_rc)); then echo "interop: FAILED: tests skipped or none ran" >&2; exit 1; fi
   echo "interop: OK" ;;
5) echo "interop: FAILED: no tests ran (pytest exit 5)" >&2; exit 1 ;;
*) echo "interop: FAILED (pytest exit $rc)" >&2; exit 1 ;;
esac
