#!/bin/busybox sh
# /init of the VM test's guest (tests/vm/run.sh builds the initramfs).
#
# Runs the real kernel HID path end to end: the emulator creates the dongle
# through /dev/uhid, the kernel makes /dev/hidrawN, and tetherd finds it with
# hidapi (sysfs enumeration, open by VID:PID:SERIAL, reads with a timeout,
# removal as the kernel reports it). No socket link carries dongle traffic:
# the emulator's control socket only plugs and unplugs.
#
# With `tether.fido2=1` on the kernel command line (run.sh, TETHER_VM_FIDO2=1)
# the same path runs again with a FIDO2 security key: tether-softkey, an
# independent CTAP2 authenticator (1Password's passkey-authenticator), made a
# kernel HID device on the FIDO usage page 0xF1D0, enrolled, licensed, and
# driven by `tetherd --dongle fido2` through hidraw and hidapi.
#
# Every check adds one JSON object; the last line on the console is
#   TETHER-VM-RESULT {"ok":BOOL,"accel":"kvm|tcg","checks":[...],"bench":{...},"bench_fido2":{...}}
# which run.sh parses. Then the guest powers off.

/bin/busybox --install -s /bin
export PATH=/bin
# Plain logs (tracing-subscriber honours NO_COLOR), so details stay readable.
export NO_COLOR=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

T=/tmp/t
mkdir -p "$T"
URL=http://127.0.0.1:7443
SERIAL=TD-VM-0001
CHECKS=""
BENCH=null
BENCH_FIDO2=null
FIDO2=0
grep -q 'tether.fido2=1' /proc/cmdline 2>/dev/null && FIDO2=1
FAILED=0
PIDS=""

log() { echo "vm: $*"; }

# check NAME OK(0|1) DETAIL
check() {
    detail=$(printf '%s' "$3" | tr '\n\t' '  ' | tr -cd ' -~' | tr -d '"\\' | cut -c1-400)
    if [ "$2" = 0 ]; then ok=true; log "PASS $1: $detail"; else ok=false; FAILED=1; log "FAIL $1: $detail"; fi
    entry="{\"name\":\"$1\",\"ok\":$ok,\"detail\":\"$detail\"}"
    if [ -z "$CHECKS" ]; then CHECKS="$entry"; else CHECKS="$CHECKS,$entry"; fi
}

finish() {
    if [ "$FAILED" != 0 ]; then
        for f in "$T"/*.log; do
            [ -f "$f" ] || continue
            echo "----- $f (last 40 lines) -----"
            tail -n 40 "$f" | sed "s/^/vm: | /"
        done
    fi
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.5
    if [ "$FAILED" = 0 ]; then ok=true; else ok=false; fi
    # KVM announces itself to the guest kernel; TCG does not.
    accel=tcg
    dmesg 2>/dev/null | grep -q 'Hypervisor detected: KVM' && accel=kvm
    echo "TETHER-VM-RESULT {\"ok\":$ok,\"kernel\":\"$(uname -r)\",\"accel\":\"$accel\",\"fido2\":$([ "$FIDO2" = 1 ] && echo true || echo false),\"checks\":[$CHECKS],\"bench\":$BENCH,\"bench_fido2\":$BENCH_FIDO2}"
    sync
    reboot -f
    sleep 5
    exit 1
}

# wait_for SECONDS COMMAND...: polls every 0.1 s until COMMAND succeeds.
wait_for() {
    n=$(($1 * 10)); shift
    while [ "$n" -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

status() { wget -q -O - "$URL/status" 2>/dev/null; }
state_is() { status | grep -q "\"state\":\"$1\""; }
session() { status | sed -n 's/.*"session":"\([^"]*\)".*/\1/p'; }
refused() { status | sed -n 's/.*"refused_dongles":\([0-9]*\).*/\1/p'; }
token() { tether token --url "$URL" --secret-file "$T/backend.secret"; }
# token_verifies: a token now, accepted offline with vendor.pub only.
token_verifies() {
    token >"$T/token.json" 2>"$T/token.err" &&
        tether verify --vendor-pub "$T/vendor/vendor.pub" --service backend <"$T/token.json"
}
ctl() { tether dongle "$1" --socket "$2" >/dev/null; }
hidraw_count() { ls /sys/class/hidraw 2>/dev/null | wc -l; }

# --- kernel HID stack -------------------------------------------------------
# In dependency order, as run.sh resolved it from the modules' own depends=.
for m in $(cat /lib/modules/order); do
    insmod "/lib/modules/$m.ko" || { check "insmod-$m" 1 "insmod failed"; finish; }
done
[ -c /dev/uhid ]; check kernel-uhid $? "/dev/uhid on $(uname -r)"
[ "$FAILED" = 0 ] || finish

# --- provisioning, as a vendor and a site would ------------------------------
{
    tether keygen vendor --out "$T/vendor" &&
        tether keygen vendor --out "$T/other-vendor" &&
        tether keygen dongle --out "$T/dongle" --serial "$SERIAL" &&
        tether keygen dongle --out "$T/clone" --serial "$SERIAL" &&
        tether license issue --vendor-key "$T/vendor/vendor.key" \
            --dongle-pub "$T/dongle/dongle.pub" --customer "VM test" \
            --services backend --valid-for 1d --out "$T/license.tether" &&
        tether service enroll backend --credentials "$T/credentials" \
            --secret-out "$T/backend.secret"
} >"$T/provision.log" 2>&1
check provision $? "$(tail -n 1 "$T/provision.log")"
[ "$FAILED" = 0 ] || finish

# --- the dongle as a kernel HID device --------------------------------------
# --reach-budget 0: no reach rule, as every re-plug below certifies a session.
tether dongle emulate --uhid --identity "$T/dongle" --socket "$T/dongle.sock" \
    --reach-budget 0 >"$T/emulator.log" 2>&1 &
PIDS="$PIDS $!"
wait_for 10 test -e /dev/hidraw0
check uhid-creates-hidraw $? "$(ls /dev/hidraw* 2>&1 | tr '\n' ' ')"
grep -q "HID_ID=0003:00001209:00000001" /sys/class/hidraw/hidraw0/device/uevent &&
    grep -q "HID_UNIQ=$SERIAL" /sys/class/hidraw/hidraw0/device/uevent
check sysfs-ids $? "$(grep -E 'HID_ID|HID_UNIQ' /sys/class/hidraw/hidraw0/device/uevent 2>&1)"

tether dongle probe --hid >"$T/probe.log" 2>&1
rc=$?
[ $rc = 0 ] && grep -q "^found /dev/hidraw0 serial $SERIAL" "$T/probe.log" &&
    grep -q "presence: *ok" "$T/probe.log"
check probe-hid-presence $? "$(cat "$T/probe.log")"

# --- tetherd on the hid selector (VID:PID:SERIAL: open by serial) -----------
TETHER_CONFIG=/dev/null tetherd --license "$T/license.tether" \
    --vendor-pub "$T/vendor/vendor.pub" --credentials "$T/credentials" \
    --dongle "hid:1209:0001:$SERIAL" --state-dir "$T/state" \
    --listen 127.0.0.1:7443 >"$T/tetherd.log" 2>&1 &
TETHERD=$!
PIDS="$PIDS $TETHERD"
wait_for 30 state_is present
check tetherd-present $? "$(status)"
token_verifies >"$T/verify.out" 2>&1
check token-verifies $? "$(cat "$T/verify.out")"
! tether verify --vendor-pub "$T/other-vendor/vendor.pub" --service backend \
    <"$T/token.json" >"$T/verify-other.out" 2>&1
check token-refused-under-other-vendor $? "$(cat "$T/verify-other.out")"
[ "$FAILED" = 0 ] || finish

# --- unplug (UHID_DESTROY) -> refusal, timed over many cycles ---------------
tether dongle replug-bench --socket "$T/dongle.sock" --url "$URL" \
    --secret-file "$T/backend.secret" --cycles 100 >"$T/bench.out" 2>"$T/bench.log"
rc=$?
[ $rc = 0 ] && BENCH=$(tail -n 1 "$T/bench.out")
check unplug-refusal-cycles $rc "$(tail -n 1 "$T/bench.out") $(tail -n 2 "$T/bench.log")"
[ "$FAILED" = 0 ] || finish

# --- re-plug under another node number, next to an unrelated HID device -----
S1=$(session)
ctl unplug "$T/dongle.sock"
wait_for 5 state_is absent && status | grep -q '"reason":"dongle lost: dongle unplugged"'
check unplug-seen-as-removal $? "$(status)"
! token >/dev/null 2>"$T/token.err"
check unplugged-token-refused $? "$(cat "$T/token.err")"
# Same VID/PID and serial, another usage page, and it never answers: were it
# not filtered out, tetherd would open it (it takes hidraw0) and stall.
tether dongle emulate --uhid --identity "$T/clone" --state "$T/unrelated.state" \
    --socket "$T/unrelated.sock" --usage-page ff00 --fault silent --reach-budget 0 \
    >"$T/unrelated.log" 2>&1 &
PIDS="$PIDS $!"
wait_for 10 test -e /dev/hidraw0
check unrelated-device-created $? "$(grep -h HID_ID /sys/class/hidraw/*/device/uevent 2>&1)"
sleep 2
! tether dongle probe --hid >"$T/probe-unrelated.log" 2>&1 &&
    grep -q "no dongle found" "$T/probe-unrelated.log" &&
    state_is absent && [ "$(refused)" = 0 ]
check unrelated-device-ignored $? "$(cat "$T/probe-unrelated.log") $(status)"
ctl plug "$T/dongle.sock"
wait_for 10 test -e /dev/hidraw1
check replug-gets-hidraw1 $? "$(ls /dev/hidraw* 2>&1 | tr '\n' ' ')"
tether dongle probe --hid >"$T/probe2.log" 2>&1 &&
    [ "$(grep -c '^found ' "$T/probe2.log")" = 1 ] &&
    grep -q "^found /dev/hidraw1 serial $SERIAL" "$T/probe2.log"
check probe-finds-only-dongle $? "$(cat "$T/probe2.log")"
wait_for 30 state_is present
S2=$(session)
[ -n "$S2" ] && [ "$S2" != "$S1" ] && token_verifies >"$T/verify2.out" 2>&1
check replug-hidraw1-fresh-session-tokens $? "session $S1 -> $S2; $(cat "$T/verify2.out")"
kill -0 "$TETHERD"
check same-tetherd-process $? "pid $TETHERD, never restarted"

# --- a clone: the licensed serial, another key ------------------------------
ctl unplug "$T/dongle.sock"
wait_for 5 state_is absent
tether dongle emulate --uhid --identity "$T/clone" --state "$T/clone.state" \
    --socket "$T/clone.sock" --reach-budget 0 >"$T/clone.log" 2>&1 &
CLONE=$!
PIDS="$PIDS $CLONE"
wait_for 30 sh -c "wget -q -O - $URL/status | grep -q '\"refused_dongles\":[1-9]'"
rc=$?
[ $rc = 0 ] && grep "possible clone" "$T/tetherd.log" | grep -q "has key" &&
    ! token >/dev/null 2>"$T/token.err"
check clone-refused $? "$(grep -m 1 'possible clone' "$T/tetherd.log") / $(cat "$T/token.err")"
kill "$CLONE"
# SIGTERM destroys the clone's device: only the unrelated one is left.
wait_for 10 sh -c "[ \$(ls /sys/class/hidraw | wc -l) = 1 ]"
check clone-gone-on-sigterm $? "$(ls /sys/class/hidraw 2>&1 | tr '\n' ' ')"
ctl plug "$T/dongle.sock"
wait_for 30 state_is present && token_verifies >"$T/verify3.out" 2>&1
check genuine-after-clone $? "$(status) $(cat "$T/verify3.out")"
kill -0 "$TETHERD"
check same-tetherd-process-at-end $? "pid $TETHERD"

# --- FIDO2: an independent CTAP2 authenticator as a kernel HID key ----------
# tether-softkey (passkey-authenticator behind CTAPHID) on /dev/uhid with the
# FIDO report descriptor; tetherd finds it by usage page, as a YubiKey.
# Its own tetherd on another port; the native one above keeps running.
# The softkey and libfido2's checks of it always run; Tether's FIDO2 path
# (enrol, licence, tetherd --dongle fido2) with tether.fido2=1.
FURL=http://127.0.0.1:7445
fstatus() { wget -q -O - "$FURL/status" 2>/dev/null; }
fstate_is() { fstatus | grep -q "\"state\":\"$1\""; }
fsession() { fstatus | sed -n 's/.*"session":"\([^"]*\)".*/\1/p'; }
ftoken() { tether token --url "$FURL" --secret-file "$T/backend.secret"; }
ftoken_verifies() {
    ftoken >"$T/ftoken.json" 2>"$T/ftoken.err" &&
        tether verify --vendor-pub "$T/vendor/vendor.pub" --service backend <"$T/ftoken.json"
}
fido_uevent() { grep -l "HID_ID=0003:00001209:00000002" /sys/class/hidraw/*/device/uevent; }
{
    tether-softkey --uhid --socket "$T/fido.sock" --state "$T/fido.state" \
        --serial SK-VM-0001 >"$T/softkey.out" 2>"$T/softkey.log" &
    PIDS="$PIDS $!"
    wait_for 10 fido_uevent
    check fido2-uhid-hidraw $? "$(cat "$T/softkey.out") $(fido_uevent 2>&1)"

    # Yubico's libfido2 (fido2-token, fido2-cred, fido2-assert), a CTAP2
    # client we did not write, against the softkey over hidraw: getInfo, a
    # credential with a verified self attestation, a silent (up=false)
    # assertion verified with the credential's public key.
    if grep -q 'tether.fido2tools=1' /proc/cmdline; then
        FDEV=$(fido2-token -L 2>"$T/libfido2.log" | sed -n 's/^\(\/dev\/hidraw[0-9]*\):.*0x0002.*/\1/p' | head -n 1)
        [ -n "$FDEV" ] && fido2-token -I "$FDEV" >"$T/libfido2-info.log" 2>&1 &&
            grep -q 'FIDO_2_0' "$T/libfido2-info.log" &&
            grep -q '7465746865722d736f66746b65792d31' "$T/libfido2-info.log"
        check libfido2-finds-softkey $? "$FDEV $(cat "$T/libfido2.log" "$T/libfido2-info.log" | head -c 380)"
        {
            head -c 32 /dev/urandom | base64
            echo tether:libfido2
            echo vm-user
            head -c 16 /dev/urandom | base64
        } >"$T/cred.in"
        fido2-cred -M -i "$T/cred.in" -o "$T/cred.out" "$FDEV" eddsa >>"$T/libfido2.log" 2>&1 &&
            fido2-cred -V -i "$T/cred.out" -o "$T/cred.pub" eddsa >>"$T/libfido2.log" 2>&1
        check libfido2-make-credential $? "$(sed -n 3p "$T/cred.out" 2>&1) $(tail -n 3 "$T/libfido2.log")"
        {
            head -c 32 /dev/urandom | base64
            echo tether:libfido2
            head -n 1 "$T/cred.pub"
        } >"$T/assert.in"
        tail -n +2 "$T/cred.pub" >"$T/cred.pem"
        fido2-assert -G -t up=false -i "$T/assert.in" -o "$T/assert.out" "$FDEV" >>"$T/libfido2.log" 2>&1 &&
            fido2-assert -V -i "$T/assert.out" "$T/cred.pem" eddsa >>"$T/libfido2.log" 2>&1
        check libfido2-silent-assertion $? "$(tail -n 3 "$T/libfido2.log")"
    fi
}
if [ "$FIDO2" = 1 ]; then
    tether dongle enroll --fido2 --allow-self-attested --rp-id tether:vm-test \
        --out "$T/fido" >"$T/fido-enroll.log" 2>&1 &&
        [ -s "$T/fido/dongle.fido2.pem" ]
    check fido2-enroll $? "$(tail -n 4 "$T/fido-enroll.log")"

    tether license issue --vendor-key "$T/vendor/vendor.key" \
        --dongle-pub "$T/fido/dongle.fido2.pem" --customer "VM test FIDO2" \
        --services backend --valid-for 1d --nonce-period 1h \
        --out "$T/license-fido2.tether" >"$T/fido-license.log" 2>&1
    check fido2-license $? "$(tail -n 2 "$T/fido-license.log")"
    # On without the licence only (a failed libfido2 check above still
    # lets Tether's own path show what it does).
    [ -s "$T/license-fido2.tether" ] || finish

    TETHER_CONFIG=/dev/null tetherd --license "$T/license-fido2.tether" \
        --vendor-pub "$T/vendor/vendor.pub" --credentials "$T/credentials" \
        --dongle fido2 --state-dir "$T/state-fido2" \
        --listen 127.0.0.1:7445 --admin-listen off >"$T/tetherd-fido2.log" 2>&1 &
    FTETHERD=$!
    PIDS="$PIDS $FTETHERD"
    wait_for 30 fstate_is present
    check fido2-tetherd-present $? "$(fstatus)"
    ftoken_verifies >"$T/fverify.out" 2>&1
    check fido2-token-verifies $? "$(cat "$T/fverify.out") $(cat "$T/ftoken.err")"
    fstate_is present || finish

    # unplug (UHID_DESTROY) -> refusal, 100 cycles, each re-plug a new session.
    tether dongle replug-bench --socket "$T/fido.sock" --url "$FURL" \
        --secret-file "$T/backend.secret" --cycles 100 >"$T/fbench.out" 2>"$T/fbench.log"
    rc=$?
    [ $rc = 0 ] && BENCH_FIDO2=$(tail -n 1 "$T/fbench.out")
    check fido2-unplug-refusal-cycles $rc "$(tail -n 1 "$T/fbench.out") $(tail -n 2 "$T/fbench.log")"

    F1=$(fsession)
    ctl unplug "$T/fido.sock"
    wait_for 5 fstate_is absent
    check fido2-unplug-seen-as-removal $? "$(fstatus)"
    ! ftoken >/dev/null 2>"$T/ftoken.err"
    check fido2-unplugged-token-refused $? "$(cat "$T/ftoken.err")"
    ctl plug "$T/fido.sock"
    wait_for 30 fstate_is present
    F2=$(fsession)
    [ -n "$F2" ] && [ "$F2" != "$F1" ] && ftoken_verifies >"$T/fverify2.out" 2>&1
    check fido2-replug-fresh-session-tokens $? "session $F1 -> $F2; $(cat "$T/fverify2.out")"
    kill -0 "$FTETHERD"
    check fido2-same-tetherd-process $? "pid $FTETHERD, never restarted"
fi

finish
