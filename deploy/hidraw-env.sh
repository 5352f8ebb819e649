#!/bin/sh
# Writes this boot's hidraw major number into the compose .env file, so the
# authority container's device cgroup rule ("c MAJOR:* rmw") admits whatever
# /dev/hidrawN the dongle gets, now and after every replug, without a
# container restart. The major is dynamic: it can differ between boots.
set -eu
env_file=${1:-/opt/tether/.env}
modprobe hidraw 2>/dev/null || true
major=$(awk '$2 == "hidraw" { print $1 }' /proc/devices)
if [ -z "$major" ]; then
    echo "hidraw-env: no hidraw driver in /proc/devices; is CONFIG_HIDRAW enabled?" >&2
    exit 1
fi
touch "$env_file"
tmp="$env_file.tmp.$$"
grep -v '^TETHER_HIDRAW_MAJOR=' "$env_file" > "$tmp" || true
echo "TETHER_HIDRAW_MAJOR=$major" >> "$tmp"
mv "$tmp" "$env_file"
echo "hidraw-env: TETHER_HIDRAW_MAJOR=$major"
