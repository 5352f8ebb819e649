#!/usr/bin/env bash
# Writes the air-gapped install bundle: one .tar.gz that carries everything a
# customer VM without network access needs, to be copied over by hand.
#
#   tether-bundle-VERSION/
#     install.sh          loads the image, installs files, units and rules, starts and checks
#     images.tar          `docker save` of the Tether image
#     IMAGE               the image's tag
#     compose.yaml        the stack (deploy/compose.yaml)
#     hidraw-env.sh       writes this boot's hidraw major into .env
#     bin/tether, bin/tetherd   the same static binaries, for the host
#                         (`tether dongle probe`, or tetherd under systemd without Docker)
#     systemd/            tether-stack.service, tetherd.service, tetherd.socket, ...
#     udev/               70-tether-dongle.rules
#     docs/deploy-vm.md   the guide
#     SHA256SUMS          checked by install.sh before anything is installed
#
# Usage: deploy/bundle.sh [--image TAG] [--build] [--out FILE]
#   --image TAG   image to bundle (default tether:VERSION, VERSION from tools/Cargo.toml)
#   --build       build it first with deploy/build-image.sh (no registry needed)
#   --out FILE    archive to write (default ./tether-bundle-VERSION.tar.gz)
# Prints the archive's path on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
version="${version:-0.0.0}"
image="tether:$version"
build=false
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --image) image="$2"; shift 2 ;;
        --build) build=true; shift ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "bundle: unknown argument $1" >&2; exit 2 ;;
    esac
done
out="${out:-$PWD/tether-bundle-$version.tar.gz}"

if $build; then
    "$here/build-image.sh" "$image" >/dev/null
fi
if ! docker image inspect "$image" >/dev/null 2>&1; then
    echo "bundle: image $image not found (build it with deploy/build-image.sh $image, or pass --build)" >&2
    exit 1
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"; [ -z "${cid:-}" ] || docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
name="tether-bundle-$version"
dir="$stage/$name"
mkdir -p "$dir/bin" "$dir/systemd" "$dir/udev" "$dir/docs"

docker save -o "$dir/images.tar" "$image"
echo "$image" > "$dir/IMAGE"
# The host binaries come out of the image itself: what runs in the
# container and on the host is the same build.
cid="$(docker create "$image")"
docker cp "$cid:/usr/local/bin/tether" "$dir/bin/tether"
docker cp "$cid:/usr/local/bin/tetherd" "$dir/bin/tetherd"
docker rm "$cid" >/dev/null
cid=""

install -m 0644 "$here/compose.yaml" "$dir/compose.yaml"
install -m 0755 "$here/hidraw-env.sh" "$dir/hidraw-env.sh"
install -m 0755 "$here/bundle/install.sh" "$dir/install.sh"
install -m 0644 "$here"/systemd/*.service "$here"/systemd/*.socket "$dir/systemd/"
install -m 0644 "$here"/udev/*.rules "$dir/udev/"
install -m 0644 "$root/docs/deploy-vm.md" "$dir/docs/deploy-vm.md"
(cd "$dir" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs sha256sum > "$stage/SHA256SUMS")
mv "$stage/SHA256SUMS" "$dir/SHA256SUMS"

mkdir -p "$(dirname "$out")"
tar -C "$stage" -czf "$out.tmp" "$name"
mv "$out.tmp" "$out"
echo "bundle: $out ($(du -h "$out" | cut -f1), image $image)" >&2
echo "$out"
