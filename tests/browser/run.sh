#!/usr/bin/env bash
# The admin page in a real browser (tests/browser): headless Chromium driven
# by Selenium loads http://127.0.0.1:PORT/admin from a real tetherd and a
# real emulated dongle, checks there is no console error and no CSP
# violation, then unplugs and re-plugs the dongle and watches the page
# follow without a reload (absent within 1 s).
#
# Installs Debian's chromium and chromium-driver (apt) and Selenium (PyPI,
# into a venv under target/), builds tether and tetherd, and runs
# tests/browser/test_admin.py. Screenshots go to target/browser-artifacts/;
# with UPDATE_DOCS_SCREENSHOT=1 one is copied to docs/admin-page.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONDONTWRITEBYTECODE=1

step() { printf '\n=== %s ===\n' "$*"; }

step "chromium and chromium-driver (Debian)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version
chromedriver --version

step "build tether and tetherd"
cargo build --locked -p tether-authority -p tether-tools --bins
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin_dir=$target_dir/debug

step "python venv with selenium (PyPI)"
venv=$target_dir/browser-venv
req=tests/browser/requirements.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-virtualenv -r "$req"
    echo "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import selenium; print("selenium", selenium.__version__)'

step "tests/browser/test_admin.py"
artifacts=$target_dir/browser-artifacts
rm -rf "$artifacts"
mkdir -p "$artifacts"
TETHER_BIN_DIR="$bin_dir" ARTIFACTS="$artifacts" \
    CHROMIUM="$(command -v chromium)" CHROMEDRIVER="$(command -v chromedriver)" \
    "$venv/bin/python" tests/browser/test_admin.py
if [[ "${UPDATE_DOCS_SCREENSHOT:-0}" == 1 ]]; then
    cp "$artifacts/admin-replugged.png" docs/admin-page.png
    echo "copied the screenshot to docs/admin-page.png"
fi
echo "browser: OK (screenshots in $artifacts)"
