#!/usr/bin/env bash
# Builds fully static `tetherd`, `tether` and the test FIDO2 key
# `tether-softkey` (glibc, +crt-static: the hidapi linux-native-basic-udev
# backend needs no C library at run time) and prints the directory holding
# them. Used by the container image (FROM scratch; it copies only tetherd and
# tether) and by the VM test (a busybox initramfs has no libc to share).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p tether-authority -p tether-tools -p tether-softkey >&2
out="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/$target/release"
for b in tetherd tether tether-softkey; do
    if ldd "$out/$b" 2>&1 | grep -q '=>'; then
        echo "build-static: $out/$b is dynamically linked" >&2
        exit 1
    fi
done
echo "$out"
