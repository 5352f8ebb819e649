#!/usr/bin/env bash
# The real kernel HID path, tested in a Linux guest (docs/testing.md, level 4).
#
# Boots Debian's kernel under QEMU with a busybox initramfs holding static
# `tetherd`, `tether` and `tether-softkey`; inside, the dongle emulator
# creates the dongle as a kernel HID device through UHID and tetherd finds it
# through hidraw and hidapi; then (TETHER_VM_FIDO2=1) the softkey, an
# independent CTAP2 authenticator, does the same as a FIDO2 security key
# (tests/vm/guest-init.sh lists the checks). The guest's verdict comes
# back as one `TETHER-VM-RESULT {json}` line on the serial console; this
# script fails on any failed check, a missing verdict, or a guest that does
# not finish within TETHER_VM_TIMEOUT seconds.
#
# Needs: root or qemu-system-x86_64 already installed (it is installed from
# Debian's packages when missing), apt (the kernel and busybox-static are
# fetched with `apt-get download` into TETHER_VM_CACHE, default
# ~/.cache/tether-vm, and reused), python3, and the Rust toolchain.
#
# Environment: TETHER_VM_TIMEOUT (guest time limit, s; default 600),
# TETHER_VM_ACCEL (kvm or tcg; default tcg, see below), TETHER_VM_CACHE,
# TETHER_VM_FIDO2 (1, the default: Tether's FIDO2 path too; 0: the native
# dongle and the softkey's libfido2 checks only; docs/testing.md, level 4).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/vm
started=$(date +%s)
cache=${TETHER_VM_CACHE:-$HOME/.cache/tether-vm}
limit=${TETHER_VM_TIMEOUT:-600}
mkdir -p "$cache"

say() { printf 'vm-test: %s\n' "$*" >&2; }
skip() {
    say "SKIPPED: $*"
    exit 0
}
elapsed() { echo $(($(date +%s) - started)); }

# --- tools ------------------------------------------------------------------
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || skip "needs an x86_64 Linux host"
command -v apt-get >/dev/null || skip "needs apt (Debian packages) to fetch the guest kernel"
apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        apt-get update -qq >&2
        apt_updated=1
    fi
}
if ! command -v qemu-system-x86_64 >/dev/null; then
    [ "$(id -u)" = 0 ] || skip "qemu-system-x86_64 is missing and installing it needs root"
    apt_update
    say "installing qemu-system-x86 from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        qemu-system-x86 >&2
fi

# --- static binaries (the one shared build script and target dir) ----------
say "building static tetherd, tether and tether-softkey"
bindir=$(scripts/build-static.sh)
say "binaries in $bindir ($(elapsed) s)"

# --- kernel and busybox, fetched once into the cache -------------------------
# fetch PACKAGE: downloads PACKAGE's .deb into $cache/debs (unless there) and
# prints its path.
fetch() {
    local deb
    deb=$(ls "$cache/debs/$1"_*.deb 2>/dev/null | tail -n 1 || true)
    if [ -z "$deb" ]; then
        mkdir -p "$cache/debs"
        apt-cache show "$1" >/dev/null 2>&1 || apt_update
        say "apt-get download $1"
        (cd "$cache/debs" && apt-get download "$1") >&2
        deb=$(ls "$cache/debs/$1"_*.deb | tail -n 1)
    fi
    echo "$deb"
}

kdir="$cache/kernel"
if [ ! -f "$kdir/vmlinuz" ] || [ ! -d "$kdir/modules" ]; then
    # linux-image-amd64 is a metapackage: its one dependency is the kernel.
    apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt_update
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$kpkg" ] || { say "cannot resolve linux-image-amd64"; exit 1; }
    kdeb=$(fetch "$kpkg")
    rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp/x"
    dpkg-deb -x "$kdeb" "$kdir.tmp/x"
    cp "$kdir.tmp"/x/boot/vmlinuz-* "$kdir.tmp/vmlinuz"
    mv "$kdir.tmp"/x/lib/modules/* "$kdir.tmp/modules"
    rm -rf "$kdir.tmp/x" "$kdir"
    mv "$kdir.tmp" "$kdir"
    rm -f "$kdeb" # the extracted tree is the cache
    say "kernel $kpkg cached in $kdir"
fi

busybox="$cache/busybox"
if [ ! -x "$busybox" ]; then
    bdeb=$(fetch busybox-static)
    rm -rf "$cache/bb" && mkdir -p "$cache/bb"
    dpkg-deb -x "$bdeb" "$cache/bb"
    cp "$cache/bb/bin/busybox" "$busybox"
    rm -rf "$cache/bb" "$bdeb"
fi

# --- libfido2's tools: a CTAP2 client we did not write, to check the softkey -
# Yubico's fido2-token/-cred/-assert from Debian's fido2-tools, with the host's
# shared libraries they link (libfido2, libcbor, libcrypto, libudev, libz,
# libc and the loader) at the same paths in the guest. Skipped, with a note,
# when the host lacks one of them.
extra=()
fido2_tools=0
ftdir="$cache/fido2-tools"
if [ ! -x "$ftdir/fido2-token" ] && fdeb=$(fetch fido2-tools); then
    rm -rf "$ftdir.tmp" && mkdir -p "$ftdir.tmp/x"
    dpkg-deb -x "$fdeb" "$ftdir.tmp/x"
    mv "$ftdir.tmp"/x/usr/bin/fido2-* "$ftdir.tmp/"
    rm -rf "$ftdir.tmp/x" "$ftdir" "$fdeb"
    mv "$ftdir.tmp" "$ftdir"
fi
if [ -x "$ftdir/fido2-token" ] && ldd "$ftdir"/fido2-* | grep -q 'not found' && [ "$(id -u)" = 0 ]; then
    # The tools' shared libraries (libfido2, libcbor) from Debian's packages.
    apt_update
    say "installing libfido2-1 from Debian's packages (for the libfido2 checks)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libfido2-1 >&2 || true
fi
if [ -x "$ftdir/fido2-token" ] && ! ldd "$ftdir"/fido2-* | grep -q 'not found'; then
    for b in "$ftdir"/fido2-*; do extra+=("$b"); done
    for lib in $(ldd "$ftdir"/fido2-* | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/lib/ { print $1 }' | sort -u); do
        extra+=("$lib=$lib")
    done
    fido2_tools=1
else
    say "libfido2's tools or their libraries are missing on the host: the libfido2 checks are skipped"
fi

# --- initramfs ----------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/tether-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 "$here/initramfs.py" "$work/initrd.gz" "$kdir/modules" "$here/guest-init.sh" \
    "$busybox" "$bindir/tetherd" "$bindir/tether" "$bindir/tether-softkey" \
    ${extra[@]+"${extra[@]}"} -- hid hid-generic uhid >&2
say "initramfs $(du -h "$work/initrd.gz" | cut -f1) ($(elapsed) s)"

# --- boot ---------------------------------------------------------------------
accel=${TETHER_VM_ACCEL:-}
if [ -z "$accel" ]; then
    # TCG by default: /dev/kvm may exist and still fail (as on this CI kind:
    # "failed to set MSR"); TETHER_VM_ACCEL=kvm opts in.
    accel=tcg
fi
# kvm:tcg falls back to software emulation when KVM cannot start; the
# guest reports which one it got (the kernel's "Hypervisor detected" line).
[ "$accel" = kvm ] && accel=kvm:tcg
fido2=${TETHER_VM_FIDO2:-1}
case "$fido2" in 0 | 1) ;; *) say "TETHER_VM_FIDO2 must be 0 or 1"; exit 2 ;; esac
say "booting the guest (accel $accel, FIDO2 checks $([ "$fido2" = 1 ] && echo on || echo off), limit $limit s)"
boot_started=$(date +%s)
console="$work/console.log"
set +e
timeout -k 10 "$limit" qemu-system-x86_64 \
    -machine "q35,accel=$accel" -cpu max -smp 2 -m 768 \
    -nographic -no-reboot -nic none \
    -kernel "$kdir/vmlinuz" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 panic=-1 loglevel=4 tether.fido2=$fido2 tether.fido2tools=$fido2_tools" \
    </dev/null >"$console" 2>&1 &
qemu=$!
# Show the guest's own lines as they come.
tail -n +1 -f "$console" --pid "$qemu" 2>/dev/null | grep -a --line-buffered -E '^(vm: |TETHER-VM-RESULT|-----)' >&2 &
wait "$qemu"
rc=$?
sleep 0.3
set -e
boot_time=$(($(date +%s) - boot_started))

result=$(tr -d '\r' <"$console" | grep -a '^TETHER-VM-RESULT ' | tail -n 1 | cut -d' ' -f2- || true)
if [ -z "$result" ]; then
    say "no verdict from the guest (qemu exit $rc; 124 = timed out after $limit s); console tail:"
    tail -n 60 "$console" >&2
    exit 1
fi

python3 - "$result" "$boot_time" "$(elapsed)" "$fido2" "$fido2_tools" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
fido2 = sys.argv[4] == "1"
fido2_tools = sys.argv[5] == "1"
print(
    f"vm-test: guest kernel {r.get('kernel')}, accelerator {r.get('accel', '?')}, "
    f"guest run {sys.argv[2]} s, total {sys.argv[3]} s"
)
for c in r["checks"]:
    print(f"vm-test: {'PASS' if c['ok'] else 'FAIL'} {c['name']}")


def report(b, link):
    m, c, a = b["unplug_to_refusal_ms"], b["unplug_command_ms"], b["after_unplug_returned_ms"]
    print(
        f"vm-test: {link}: unplug (UHID_DESTROY) -> GET /token refused over {b['cycles']} cycles, real hidraw path: "
        f"median {m['median']:.1f} ms, p99 {m['p99']:.1f} ms, max {m['max']:.1f} ms (min {m['min']:.1f} ms)"
    )
    print(
        f"vm-test:   of which the unplug command itself (control socket + kernel removal): "
        f"median {c['median']:.1f} ms, p99 {c['p99']:.1f} ms, max {c['max']:.1f} ms"
    )
    print(
        f"vm-test:   from the unplug command's answer to the refusal: median {a['median']:.1f} ms, "
        f"p99 {a['p99']:.1f} ms, max {a['max']:.1f} ms; requests until refusal: at most {b['polls_max']}; "
        f"{b['distinct_sessions']} distinct sessions (one per re-plug)"
    )


b = r.get("bench")
if b:
    report(b, "native dongle")
bf = r.get("bench_fido2")
if bf:
    report(bf, "FIDO2 softkey")
# Every check must have run (a guest that stops early reports fewer).
required = {
    "kernel-uhid", "provision", "uhid-creates-hidraw", "sysfs-ids", "probe-hid-presence",
    "tetherd-present", "token-verifies", "token-refused-under-other-vendor",
    "unplug-refusal-cycles", "unplug-seen-as-removal", "unplugged-token-refused",
    "unrelated-device-created", "unrelated-device-ignored", "replug-gets-hidraw1",
    "probe-finds-only-dongle", "replug-hidraw1-fresh-session-tokens", "same-tetherd-process",
    "clone-refused", "clone-gone-on-sigterm", "genuine-after-clone", "same-tetherd-process-at-end",
    "fido2-uhid-hidraw",
}
if fido2:
    required |= {
        "fido2-enroll", "fido2-license", "fido2-tetherd-present",
        "fido2-token-verifies", "fido2-unplug-refusal-cycles", "fido2-unplug-seen-as-removal",
        "fido2-unplugged-token-refused", "fido2-replug-fresh-session-tokens",
        "fido2-same-tetherd-process",
    }
if fido2_tools:
    required |= {"libfido2-finds-softkey", "libfido2-make-credential", "libfido2-silent-assertion"}
missing = required - {c["name"] for c in r["checks"]}
for name in sorted(missing):
    print(f"vm-test: MISSING {name}")
ok = (
    r["ok"]
    and not missing
    and all(c["ok"] for c in r["checks"])
    and b is not None
    and b["cycles"] >= 20
    and (not fido2 or (bf is not None and bf["cycles"] >= 20))
)
print("vm-test: " + ("PASSED" if ok else "FAILED"))
sys.exit(0 if ok else 1)
EOF
