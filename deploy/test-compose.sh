#!/usr/bin/env bash
# The compose stack with real containers, end to end, with the measured time
# of each check. No registry is needed: the image is FROM scratch with the
# static binaries of scripts/build-static.sh.
#
#  1. build the image (deploy/build-image.sh); check non-root and its size
#  2. write the air-gapped bundle (deploy/bundle.sh), delete the image, and
#     install from the bundle (docker load into a clean state)
#  3. provision a throwaway site with `tether` (vendor key, dongle identity,
#     a license with a short max token TTL, service secrets)
#  4. up with the emulated-dongle profile; both services licensed;
#     GET /token through the published port: 200 with a credential, 401 without
#     the admin page answers on 127.0.0.1:7444 inside the authority's
#     container and cannot be reached from the backend's
#  5. unplug the emulated dongle -> both services refuse; replug -> recover;
#     the same for `web` (busybox httpd under `tether run`, stop mode): its
#     port stops answering, then serves again, without a container restart
#  6. docker kill the authority -> services work until token expiry, then
#     refuse; docker start -> recover
#  7. a foreign dongle, then a cloned one (counter below the mark): refused,
#     and /status says so, without restarting the authority's container
#  8. down leaves no container; up again: the state volume kept the
#     counter's high-water mark
# Everything it creates (containers, network, volumes, image tag, files)
# is removed on exit, pass or fail.
#
# Exit 0: passed, or skipped because no Docker Engine answers (says so).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
t_start=$(date +%s%N)

if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    echo "test-compose: SKIPPED: no Docker Engine answers (docker info failed)"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
else
    echo "test-compose: FAILED: Docker answers but neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 1
fi
command -v python3 >/dev/null || { echo "test-compose: FAILED: python3 is needed" >&2; exit 1; }

project="tethertest$$$(date +%s)"
tag="tether-test:$project"
work="$(mktemp -d /tmp/tether-compose.XXXXXX)"
chmod 0755 "$work"
prefix="$work/opt"
etc="$work/etc"

# ---------------------------------------------------------------------------
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
step() { printf '\n--- %s\n' "$*"; }
ok() { printf '  ok   %s\n' "$*"; }
fail() {
    printf '  FAIL %s\n' "$*" >&2
    if [ -f "$prefix/compose.yaml" ]; then
        echo "--- last logs" >&2
        compose logs --no-color --tail 40 >&2 2>&1 || true
    fi
    exit 1
}
compose() { (cd "$prefix" && "${compose_cmd[@]}" -p "$project" "$@"); }
cid_of() { docker ps -aq --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1"; }

cleanup() {
    local rc=$?
    set +e
    if [ -f "$prefix/compose.yaml" ]; then
        compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1
    fi
    # Whatever compose did not remove (e.g. a failure before compose.yaml).
    docker ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r docker rm -f >/dev/null 2>&1
    docker volume ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker volume rm >/dev/null 2>&1
    docker network ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker network rm >/dev/null 2>&1
    docker image rm "$tag" >/dev/null 2>&1
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# HTTP checks and timing in one small Python helper, so that polling costs no
# process start per probe and the times are measured to the millisecond.
cat > "$work/probe.py" <<'PY'
import json, subprocess, sys, time, urllib.request, urllib.error

def get(url, bearer=None, timeout=2):
    req = urllib.request.Request(url)
    if bearer:
        req.add_header("Authorization", "Bearer " + bearer)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)

def all_status(urls, want):
    return all(get(u)[0] == want for u in urls)

def wait(urls, want, limit):
    """Polls every 10 ms until every URL answers `want`; returns seconds."""
    t0 = time.monotonic()
    while not all_status(urls, want):
        if time.monotonic() - t0 > limit:
            answers = {u: get(u) for u in urls}
            sys.exit(f"not {want} within {limit}s: {answers}")
        time.sleep(0.01)
    return time.monotonic() - t0

cmd = sys.argv[1]
if cmd == "get":            # get URL [BEARER] -> "STATUS BODY"
    status, body = get(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    print(status, body)
elif cmd == "json":         # json URL EXPR -> the value of EXPR (Python, over `j`)
    status, body = get(sys.argv[2])
    j = json.loads(body)
    print(eval(sys.argv[3], {"j": j}))
elif cmd == "wait":         # wait STATUS LIMIT URL... -> ms until all answer STATUS
    print(round(wait(sys.argv[4:], int(sys.argv[2]), float(sys.argv[3])) * 1000))
elif cmd == "act":          # act STATUS LIMIT "SHELL CMD" URL... -> "CMD_MS ALL_MS URL1_MS URL2_MS..."
    # Runs the command, then polls every URL until each answers STATUS;
    # times are from the start of the command.
    urls, want, limit = sys.argv[5:], int(sys.argv[2]), float(sys.argv[3])
    t0 = time.monotonic()
    subprocess.run(sys.argv[4], shell=True, check=True, stdout=subprocess.DEVNULL)
    t1 = time.monotonic()
    first = {}
    while len(first) < len(urls):
        for u in urls:
            if u not in first and get(u)[0] == want:
                first[u] = time.monotonic()
        if time.monotonic() - t0 > limit:
            sys.exit(f"not {want} within {limit}s: {[u for u in urls if u not in first]}")
        time.sleep(0.002)
    ms = lambda t: str(round((t - t0) * 1000))
    print(ms(t1), ms(max(first.values())), *(ms(first[u]) for u in urls))
elif cmd == "hold":         # hold STATUS SECONDS URL... -> fails if any answer differs meanwhile
    t0 = time.monotonic()
    while time.monotonic() - t0 < float(sys.argv[3]):
        for u in sys.argv[4:]:
            s = get(u)
            if s[0] != int(sys.argv[2]):
                sys.exit(f"{u} answered {s} after {time.monotonic() - t0:.3f}s")
        time.sleep(0.05)
elif cmd == "port":         # port -> a free TCP port on 127.0.0.1
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
probe() { python3 "$work/probe.py" "$@"; }
# Waits until /status shows more refused dongles than $1 and no dongle present; prints it.
wait_refused() {
    python3 - "$authority" "$1" <<'PY'
import json, sys, time, urllib.request
j = None
for _ in range(400):
    try:
        j = json.load(urllib.request.urlopen(sys.argv[1] + "/status", timeout=2))["dongle"]
    except OSError:
        time.sleep(0.05)
        continue
    if j["refused_dongles"] > int(sys.argv[2]) and j["state"] != "present":
        print("  /status:", json.dumps({k: j.get(k) for k in ("state", "reason", "refused_dongles")}))
        sys.exit(0)
    time.sleep(0.05)
sys.exit(f"last /status dongle: {j}")
PY
}
# The persisted counter mark of the licensed dongle, read from the state volume.
state_mark() {
    docker cp "$1:/var/lib/tether/state.json" - | tar -xO \
        | python3 -c "import json,sys; print(json.load(sys.stdin)['counters']['$serial'])"
}

# ---------------------------------------------------------------------------
step "1. image (static binaries on scratch, no registry)"
t=$(date +%s%N)
bin="$("$root/scripts/build-static.sh")"
build_ms=$(ms_since "$t")
ok "static build: $build_ms ms ($bin)"
t=$(date +%s%N)
TETHER_BIN_DIR="$bin" "$root/deploy/build-image.sh" "$tag" >/dev/null 2>"$work/build.log" \
    || { cat "$work/build.log" >&2; fail "docker build"; }
ok "docker build: $(ms_since "$t") ms"
size=$(docker image inspect -f '{{.Size}}' "$tag")
user=$(docker image inspect -f '{{.Config.User}}' "$tag")
printf '  image %s: %s bytes (%.1f MB), user %s\n' "$tag" "$size" "$(echo "$size / 1000000" | bc -l)" "$user"
[ "$user" = "10001:10001" ] || fail "image runs as '$user', expected the non-root 10001:10001"
[ "$size" -lt 20000000 ] || fail "image is $size bytes, over 20 MB"
ok "non-root and under 20 MB"
image_id=$(docker image inspect -f '{{.Id}}' "$tag")

step "2. air-gapped bundle: docker save, remove the image, install from the archive"
t=$(date +%s%N)
archive="$("$root/deploy/bundle.sh" --image "$tag" --out "$work/tether-bundle.tar.gz" 2>/dev/null)"
ok "bundle written: $(ms_since "$t") ms, $(du -k "$archive" | cut -f1) KiB"
docker image rm "$tag" >/dev/null
if docker image inspect "$tag" >/dev/null 2>&1 || docker image inspect "$image_id" >/dev/null 2>&1; then
    fail "the image is still in the engine after docker image rm"
fi
ok "image $tag removed from the engine (id gone too)"
mkdir -p "$work/unpack"
tar -C "$work/unpack" -xzf "$archive"
t=$(date +%s%N)
bundle_dir="$(find "$work/unpack" -mindepth 1 -maxdepth 1 -type d -name 'tether-bundle-*')"
"$bundle_dir/install.sh" --prefix "$prefix" --etc "$etc" --bindir "$work/bin" \
    --no-udev --no-systemd --no-start > "$work/install.log" 2>&1 \
    || { cat "$work/install.log" >&2; fail "install.sh"; }
[ "$(docker image inspect -f '{{.Id}}' "$tag")" = "$image_id" ] || fail "docker load did not bring back image $image_id"
grep -q '^TETHER_HIDRAW_MAJOR=[0-9]' "$prefix/.env" || fail "install.sh did not record the hidraw major in .env"
ok "installed from the bundle: $(ms_since "$t") ms (same image id; $(grep '^TETHER_HIDRAW_MAJOR' "$prefix/.env"))"
tether="$work/bin/tether"   # the host binary, as installed from the bundle

step "3. provision a throwaway site"
t=$(date +%s%N)
serial="TD-CT-$$"
mkdir -p "$etc/secrets" "$work/vendor"
"$tether" keygen vendor --out "$work/vendor" >/dev/null
"$tether" keygen dongle --out "$etc/dongle" --serial "$serial" >/dev/null
"$tether" keygen dongle --out "$etc/foreign-dongle" --serial "TD-FOREIGN-$$" >/dev/null
# Short tokens, so that expiry after an authority crash takes seconds.
ttl=6
"$tether" license issue --vendor-key "$work/vendor/vendor.key" --dongle-pub "$etc/dongle/dongle.pub" \
    --customer "Compose Test" --features mux --services backend,muxer,web \
    --valid-for 1d --max-ttl "${ttl}s" --out "$etc/license.tether" >/dev/null
cp "$work/vendor/vendor.pub" "$etc/vendor.pub"
for s in backend muxer web; do
    "$tether" service enroll "$s" --credentials "$etc/credentials" --secret-out "$etc/secrets/$s.secret" >/dev/null
done
# The containers run as uid 10001; private files stay 0600 and are theirs.
chown -R 10001:10001 "$etc"
chmod 0644 "$etc/license.tether" "$etc/vendor.pub"
backend_secret="$(cat "$etc/secrets/backend.secret")"
ok "vendor key, dongle $serial, license (max token TTL ${ttl}s), 3 services: $(ms_since "$t") ms"

auth_port=$(probe port); backend_port=$(probe port); muxer_port=$(probe port); web_port=$(probe port)
cat >> "$prefix/.env" <<ENV
COMPOSE_PROJECT_NAME=$project
COMPOSE_PROFILES=emulated-dongle,run-example
TETHER_DONGLE=socket:/run/tether-dongle/dongle.sock
TETHER_TOKEN_TTL=${ttl}s
TETHER_CERT_LIFETIME=30s
TETHER_DONGLE_REFILL=2s
TETHER_AUTHORITY_PUBLISH=127.0.0.1:$auth_port
TETHER_BACKEND_PUBLISH=127.0.0.1:$backend_port
TETHER_MUXER_PUBLISH=127.0.0.1:$muxer_port
TETHER_WEB_PUBLISH=127.0.0.1:$web_port
ENV
authority="http://127.0.0.1:$auth_port"
work_urls=("http://127.0.0.1:$backend_port/work" "http://127.0.0.1:$muxer_port/work")
web_url="http://127.0.0.1:$web_port/"
compose config -q || fail "compose config"
ok "compose config: valid"

step "4. up (emulated-dongle profile), started and checked by install.sh"
# install.sh again, now with the site provisioned: the upgrade path (keeps
# .env and the site files), then up and wait until all three are healthy.
t=$(date +%s%N)
"$bundle_dir/install.sh" --prefix "$prefix" --etc "$etc" --bindir "$work/bin" \
    --no-udev --no-systemd --timeout 60 > "$work/install.log" 2>&1 \
    || { cat "$work/install.log" >&2; fail "install.sh (start)"; }
grep -q 'muxer: healthy' "$work/install.log" || { cat "$work/install.log" >&2; fail "install.sh did not check the stack"; }
ok "install.sh: up and authority, backend, muxer healthy: $(ms_since "$t") ms"
[ -n "$(cid_of dongle-emulator)" ] || fail "the emulated-dongle profile did not start the emulator"
took=$(probe wait 200 30 "${work_urls[@]}") || fail "services not licensed"
ok "backend and muxer licensed: $took ms after install.sh returned"
took=$(probe wait 200 30 "$web_url") || fail "web (busybox httpd under tether run) not serving"
ok "web (unmodified busybox httpd under tether run) serving: $took ms after install.sh returned"
auth_cid=$(cid_of authority)
emu_cid=$(cid_of dongle-emulator)
auth_started=$(docker inspect -f '{{.State.StartedAt}}' "$auth_cid")
[ "$(docker inspect -f '{{.Config.User}}' "$auth_cid")" = "10001:10001" ] || fail "authority container not running as 10001"
# The hardware path as far as a machine without USB can show it: the device
# cgroup admits the hidraw major (and not everything), and enumeration
# inside the running container works and finds no dongle.
major="$(sed -n 's/^TETHER_HIDRAW_MAJOR=//p' "$prefix/.env")"
devlist="/sys/fs/cgroup/devices/docker/$(docker inspect -f '{{.Id}}' "$auth_cid")/devices.list"
if [ -r "$devlist" ]; then
    grep -qx "c $major:\* rwm" "$devlist" || fail "device cgroup lacks c $major:* rwm: $(tr '\n' ' ' < "$devlist")"
    ! grep -q '^a ' "$devlist" || fail "device cgroup admits all devices"
    ok "authority's device cgroup admits c $major:* (hidraw), not all devices"
else
    echo "  note: no cgroup v1 devices.list for the container (cgroup v2 engine): rule not inspected"
fi
probe_out="$(docker exec "$auth_cid" tether dongle probe --hid 2>&1)" && fail "a dongle on a machine without one: $probe_out"
[[ "$probe_out" == *"no dongle found"* ]] || fail "hid enumeration in the container: $probe_out"
ok "hid enumeration inside the authority container works (no hardware here: \"no dongle found\")"
docker exec "$auth_cid" tether health http://127.0.0.1:7444/admin >/dev/null 2>&1 \
    || fail "the admin page is not served on 127.0.0.1:7444 inside the authority container"
admin_out="$(docker exec "$(cid_of backend)" tether health http://authority:7444/admin 2>&1)" \
    && fail "the admin page is reachable from the backend container"
[[ "$admin_out" == *"cannot reach"* ]] || fail "admin page from the backend container: $admin_out"
ok "admin page: served on 127.0.0.1:7444 inside the authority container, unreachable from the services' network"
read -r status body < <(probe get "$authority/token" "$backend_secret")
[ "$status" = 200 ] || fail "GET /token with a credential: $status $body"
echo "$body" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["token"].count(".")==2 and j["expires_in"]<='"$ttl"', j' \
    || fail "GET /token: unexpected body $body"
ok "GET /token via the published port with a credential: 200, a JWT living <= ${ttl}s"
read -r status body < <(probe get "$authority/token")
[ "$status" = 401 ] || fail "GET /token without a credential: $status $body"
read -r status body < <(probe get "$authority/token" "tsk_not-a-real-secret")
[ "$status" = 401 ] || fail "GET /token with a wrong credential: $status $body"
ok "GET /token without or with a wrong credential: 401"

step "5. unplug and replug the emulated dongle"
# As an operator would: `tether dongle unplug` inside the emulator's container.
unplug="docker exec $emu_cid tether dongle unplug --socket /run/tether-dongle/dongle.sock"
read -r exec_ms total_ms _ < <(probe act 503 5 "$unplug" "${work_urls[@]}") || fail "services still working after unplug"
ok "unplug (docker exec) -> both services refusing work: <= $total_ms ms (the docker exec alone took $exec_ms ms)"
read -r status body < <(probe get "$authority/token" "$backend_secret")
[ "$status" = 503 ] && [[ "$body" == *dongle_absent* ]] || fail "GET /token while unplugged: $status $body"
ok "GET /token while unplugged: 503 dongle_absent"
plug="docker exec $emu_cid tether dongle plug --socket /run/tether-dongle/dongle.sock"
read -r exec_ms total_ms _ < <(probe act 200 15 "$plug" "${work_urls[@]}") || fail "services not back after replug"
ok "replug (docker exec) -> both services licensed again: $total_ms ms (docker exec $exec_ms ms)"
# The same through the control socket in the volume, from the host: no
# docker exec in the measured time.
sock="$(docker volume inspect -f '{{.Mountpoint}}' "${project}_dongle-socket")/dongle.sock"
if [ -S "$sock.ctl" ]; then
    read -r cmd_ms total_ms auth_ms b_ms m_ms < <(probe act 503 5 "$tether dongle unplug --socket $sock" \
        "$authority/readyz" "${work_urls[@]}") || fail "not refusing after unplug (control socket)"
    ok "unplug (control socket, $cmd_ms ms) -> authority not ready: $auth_ms ms; backend refusing: $b_ms ms; muxer: $m_ms ms"
    read -r cmd_ms total_ms _ < <(probe act 200 15 "$tether dongle plug --socket $sock" "${work_urls[@]}") \
        || fail "services not back after replug (control socket)"
    ok "replug (control socket) -> both services licensed again: $total_ms ms"
else
    echo "  note the volume's socket is not reachable from this host ($sock): precise timing skipped; docker exec times above"
fi
# An unmodified program gated by `tether run` (stop mode): the port goes
# silent on unplug and serves again on replug, in the same container.
web_cid=$(cid_of web)
web_started=$(docker inspect -f '{{.State.StartedAt}}' "$web_cid")
read -r exec_ms total_ms _ < <(probe act 0 5 "$unplug" "$web_url") || fail "web still answering after unplug"
ok "unplug (docker exec) -> web's port not answering: <= $total_ms ms (docker exec $exec_ms ms)"
probe hold 0 1 "$web_url" || fail "web answered while unplugged"
ok "web stays silent while unplugged (1 s)"
read -r exec_ms total_ms _ < <(probe act 200 15 "$plug" "$web_url") || fail "web not serving after replug"
ok "replug (docker exec) -> web serving again: $total_ms ms (docker exec $exec_ms ms)"
[ "$(docker inspect -f '{{.State.StartedAt}} {{.RestartCount}}' "$web_cid")" = "$web_started 0" ] \
    || fail "web's container was restarted: tether run should have restarted the program inside it"
# Read the whole log first: `grep -q` stops reading at the first match, and
# under pipefail docker's SIGPIPE would then fail the check.
web_log=$(docker logs "$web_cid" 2>&1)
grep -q 'license lost: stopping the program' <<<"$web_log" || fail "tether run did not log the loss"
ok "the same container throughout; tether run logged the loss and the restart"
# Consumers spread their fetches after a replug (up to --event-spread, 1 s):
# make sure backend and muxer hold tokens again before the authority dies.
read -r _ total_ms _ < <(probe act 200 15 true "${work_urls[@]}") \
    || fail "backend and muxer not licensed again after web's replug"
ok "backend and muxer licensed again: $total_ms ms"

step "6. kill the authority: services run on their tokens until expiry"
t_kill=$(date +%s%N)
docker kill "$auth_cid" >/dev/null
kill_ms=$(ms_since "$t_kill")
probe hold 200 1 "${work_urls[@]}" || fail "services stopped at once when the authority died"
ok "authority killed ($kill_ms ms); both services still working 1 s later"
took=$(probe wait 503 $((ttl + 5)) "${work_urls[@]}") || fail "services never refused after the authority died"
since_kill=$(ms_since "$t_kill")
[ "$since_kill" -ge $((ttl * 1000 * 85 / 200)) ] || fail "refused after $since_kill ms: before the tokens could have expired"
ok "both refusing $since_kill ms after the kill (tokens of ${ttl}s, refreshed at half-life)"
[ "$(docker inspect -f '{{.State.Running}}' "$auth_cid")" = false ] || fail "docker restarted the killed authority by itself"
t=$(date +%s%N)
docker start "$auth_cid" >/dev/null
took=$(probe wait 200 30 "${work_urls[@]}") || fail "services did not recover after docker start"
ok "docker start -> both services licensed again: $(ms_since "$t") ms"
probe wait 200 30 "$web_url" >/dev/null || fail "web did not recover after the authority came back"
ok "web serving again after the authority came back: $(ms_since "$t") ms"
auth_started=$(docker inspect -f '{{.State.StartedAt}}' "$auth_cid")

step "7. a foreign dongle and a cloned one are refused, and /status says why"
counter=$(probe json "$authority/status" 'j["dongle"]["counter"]')
refused0=$(probe json "$authority/status" 'j["dongle"]["refused_dongles"]')
# Unplug the genuine dongle for good (until step 8) and keep its counter
# file aside, to plug the very same dongle back in later.
compose stop dongle-emulator >/dev/null 2>&1
docker cp "$emu_cid:/var/lib/tether-dongle/counter" "$work/genuine-counter" || fail "cannot save the emulator's counter"
# A different device on the same port (ESXi autoconnect follows the port).
echo "TETHER_DONGLE_DIR=foreign-dongle" >> "$prefix/.env"
t=$(date +%s%N)
compose up -d dongle-emulator >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "foreign emulator up"; }
probe wait 503 15 "${work_urls[@]}" >/dev/null || fail "services still working with a foreign dongle"
wait_refused "$refused0" || fail "/status does not show the foreign dongle refused"
ok "foreign dongle refused: $(ms_since "$t") ms from swapping the emulator"
# The licensed dongle's clone: same key, counter restarted from zero.
sed -i '/^TETHER_DONGLE_DIR=/d' "$prefix/.env"
compose rm -sf dongle-emulator >/dev/null 2>&1
docker volume rm "${project}_dongle-state" >/dev/null || fail "cannot reset the emulator's counter volume"
refused1=$(probe json "$authority/status" 'j["dongle"]["refused_dongles"]')
t=$(date +%s%N)
compose up -d dongle-emulator >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "clone emulator up"; }
wait_refused "$refused1" || fail "/status does not show the clone refused"
probe hold 503 1 "${work_urls[@]}" || fail "a service works with a cloned dongle"
ok "clone (counter from 0, authority's mark >= $counter) refused: $(ms_since "$t") ms from swapping the emulator"
[ "$(docker inspect -f '{{.State.StartedAt}}' "$auth_cid")" = "$auth_started" ] \
    || fail "the authority's container was restarted"
ok "the authority's container was not restarted for any of this"

step "8. down leaves no container; the state volume keeps the high-water mark"
mark=$(state_mark "$auth_cid")
[ "$mark" -ge "$counter" ] || fail "persisted mark $mark below the last counter seen $counter"
ok "state.json: counter mark for $serial is $mark"
t=$(date +%s%N)
compose down --timeout 10 >/dev/null 2>&1 || fail "compose down"
left="$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
[ -z "$left" ] || fail "containers left after down: $left"
docker volume inspect "${project}_state" >/dev/null 2>&1 || fail "the state volume went with down"
ok "compose down: $(ms_since "$t") ms, no container left, state volume kept"
# The emulator volume still holds the clone's low counter: after up it must
# stay refused, which it can only be if the authority's mark survived.
t=$(date +%s%N)
compose up -d >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "compose up (again)"; }
auth_cid=$(cid_of authority)
wait_refused 0 || fail "after down/up the clone is not refused: the mark was lost"
ok "up again: $(ms_since "$t") ms; the clone is still refused (mark kept across down/up)"
# Plug the genuine dongle back in: its counter continues above the mark.
compose rm -sf dongle-emulator >/dev/null 2>&1
docker volume rm "${project}_dongle-state" >/dev/null || fail "cannot remove the clone's counter volume"
compose up --no-start dongle-emulator >/dev/null 2>&1 || fail "create the emulator"
emu_cid=$(cid_of dongle-emulator)
tar -C "$work" --owner=10001 --group=10001 --transform 's/genuine-counter/counter/' -cf - genuine-counter \
    | docker cp - "$emu_cid:/var/lib/tether-dongle/" || fail "cannot restore the genuine counter"
t=$(date +%s%N)
docker start "$emu_cid" >/dev/null
took=$(probe wait 200 30 "${work_urls[@]}") || fail "services not licensed with the genuine dongle after down/up"
ok "genuine dongle back: both services licensed $(ms_since "$t") ms after it was plugged"
mark2=$(state_mark "$auth_cid")
[ "$mark2" -gt "$mark" ] || fail "mark went from $mark to $mark2: a new certificate must raise it"
ok "state.json: counter mark $mark -> $mark2"

step "9. down -v: nothing left"
compose down -v --timeout 10 >/dev/null 2>&1 || fail "compose down -v"
[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ] || fail "containers left"
[ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$project")" ] || fail "volumes left"
[ -z "$(docker network ls -q --filter "label=com.docker.compose.project=$project")" ] || fail "networks left"
ok "no container, volume or network of $project left"

printf '\ntest-compose: PASSED in %d s (%d s of it in the static build)\n' \
    $(( $(ms_since "$t_start") / 1000 )) $(( build_ms / 1000 ))
