#!/usr/bin/env bash
# Builds the Tether image without any registry: static `tetherd` and `tether`
# from scripts/build-static.sh, then the Dockerfile's `runtime-prebuilt`
# stage (FROM scratch) from a small staged context holding only what that
# stage copies (the repository itself, with target/, is gigabytes).
#
# Usage: deploy/build-image.sh [TAG]      (default tether:latest)
# TETHER_BIN_DIR=DIR uses static binaries already built there (by
# scripts/build-static.sh) instead of running the build.
# Prints the image tag on stdout; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tag="${1:-tether:latest}"

bin_dir="${TETHER_BIN_DIR:-}"
if [ -z "$bin_dir" ]; then
    bin_dir="$("$root/scripts/build-static.sh")"
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/deploy/docker/bin" "$ctx/deploy/docker/empty"
cp "$here/docker/Dockerfile" "$here/docker/passwd" "$here/docker/group" "$ctx/deploy/docker/"
cp "$bin_dir/tetherd" "$bin_dir/tether" "$ctx/deploy/docker/bin/"
# The image carries no debug symbols: keep it small.
if command -v strip >/dev/null; then
    strip "$ctx/deploy/docker/bin/tetherd" "$ctx/deploy/docker/bin/tether" 2>/dev/null || true
fi
docker build --quiet -f "$ctx/deploy/docker/Dockerfile" --target runtime-prebuilt \
    --label "org.opencontainers.image.title=tether" \
    --label "org.opencontainers.image.revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -t "$tag" "$ctx" >&2
echo "$tag"
