#!/usr/bin/env bash
# `systemd-analyze verify` of every unit in deploy/systemd/. verify also
# checks that each ExecStart= program exists, so the programs the units run
# (/usr/local/bin/tether and tetherd, /opt/tether/hidraw-env.sh) are put in
# place inside a private mount namespace (unshare -m, tmpfs over
# /usr/local/bin and /opt): nothing gets installed on this machine.
# Needs unshare (root, or unprivileged user namespaces) and systemd-analyze
# (installed from Debian's package systemd when missing, as root).
# TETHER_BIN_DIR=DIR uses static binaries already built there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if ! command -v systemd-analyze >/dev/null; then
    echo "systemd/verify: installing systemd-analyze (Debian package systemd)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
bin_dir="${TETHER_BIN_DIR:-}"
[ -n "$bin_dir" ] || bin_dir="$("$root/scripts/build-static.sh")"
units="$(mktemp -d)"
trap 'rm -rf "$units"' EXIT
cp "$here"/*.service "$here"/*.socket "$units/"
[ -d /opt ] || mkdir /opt
# As root a private mount namespace; otherwise also a user namespace, in
# which we may mount (where the kernel allows unprivileged user namespaces).
ns=(unshare -m --propagation private)
[ "$(id -u)" = 0 ] || ns=(unshare -r -m --propagation private)
# shellcheck disable=SC2016 # the inner script expands its own arguments
out="$("${ns[@]}" bash -euc '
    mount -t tmpfs tmpfs /usr/local/bin
    install -m 0755 "$1/tether" "$1/tetherd" /usr/local/bin/
    mount -t tmpfs tmpfs /opt
    install -d /opt/tether && install -m 0755 "$2/hidraw-env.sh" /opt/tether/
    systemd-analyze verify --man=no "$3"/*.service "$3"/*.socket 2>&1
' verify "$bin_dir" "$here/.." "$units")" || { echo "$out" >&2; echo "systemd/verify: FAILED" >&2; exit 1; }
# verify exits 0 on some findings (e.g. unknown settings): any output is a finding.
if [ -n "$out" ]; then
    echo "$out" >&2
    echo "systemd/verify: FAILED (findings above)" >&2
    exit 1
fi
names=("$units"/*)
echo "systemd/verify: ${#names[@]} units pass systemd-analyze verify (${names[*]##*/})"
