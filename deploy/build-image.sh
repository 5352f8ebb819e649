#!/usr/bin/env bash
# Builds the Tether image without any registry: static `tetherd` and `tether`
# from scripts/build-static.sh, then the Dockerfile's `runtime-prebuilt`
# stage (FROM scratch) from a small staged context holding only what that
# stage copies (the repository itself, with target/, is gigabytes).
#
# Usage: deploy/build-image.sh [TAG]      (default tether:latest)
# TETHER_BIN_DIR=DIR uses static binaries already built there (by
# scripts/build-static.sh) instead of running the build.
# The image also carries a static busybox (TETHER_BUSYBOX, default
# /bin/busybox from Debian's busybox-static, installed when missing and we
# are root): the off-the-shelf program of the `tether run` example service.
# Prints the image tag on stdout; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tag="${1:-tether:latest}"

bin_dir="${TETHER_BIN_DIR:-}"
if [ -z "$bin_dir" ]; then
    bin_dir="$("$root/scripts/build-static.sh")"
fi
busybox="${TETHER_BUSYBOX:-/bin/busybox}"
# ldd fails on a static binary, saying so (not a pipe: pipefail is on).
is_static() { [ -x "$1" ] && [[ "$(ldd "$1" 2>&1 || true)" == *"not a dynamic executable"* ]]; }
if ! is_static "$busybox" && [ -z "${TETHER_BUSYBOX:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build-image: installing busybox-static (Debian) for the tether run example" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >&2
fi
is_static "$busybox" || { echo "build-image: no static busybox at $busybox (apt-get install busybox-static, or set TETHER_BUSYBOX)" >&2; exit 1; }
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/deploy/docker/bin" "$ctx/deploy/docker/empty"
cp "$here/docker/Dockerfile" "$here/docker/passwd" "$here/docker/group" "$ctx/deploy/docker/"
cp -r "$here/docker/www" "$ctx/deploy/docker/"
cp "$bin_dir/tetherd" "$bin_dir/tether" "$ctx/deploy/docker/bin/"
cp "$busybox" "$ctx/deploy/docker/bin/busybox"
# The image carries no debug symbols: keep it small.
if command -v strip >/dev/null; then
    strip "$ctx/deploy/docker/bin/tetherd" "$ctx/deploy/docker/bin/tether" 2>/dev/null || true
fi
docker build --quiet -f "$ctx/deploy/docker/Dockerfile" --target runtime-prebuilt \
    --label "org.opencontainers.image.title=tether" \
    --label "org.opencontainers.image.revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -t "$tag" "$ctx" >&2
echo "$tag"
