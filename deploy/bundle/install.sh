#!/usr/bin/env bash
# Installs Tether from this air-gapped bundle (written by deploy/bundle.sh):
# checks the bundle, loads the image into Docker (no registry needed),
# installs the compose stack, the host binaries, the udev rule and the
# systemd units, then starts the stack and checks it comes up healthy.
# Re-running it upgrades in place: site files and volumes are kept.
#
# Usage: sudo ./install.sh [options]
#   --prefix DIR     where compose.yaml and .env go      (default /opt/tether)
#   --etc DIR        the site files (license, keys, ...)  (default /etc/tether)
#   --bindir DIR     host binaries tether, tetherd         (default /usr/local/bin)
#   --no-udev        do not install the udev rule
#   --no-systemd     do not install or enable the systemd units
#   --no-start       install only; do not start the stack
#   --timeout SEC    how long to wait for the stack to be healthy (default 90)
set -euo pipefail
bundle="$(cd "$(dirname "$0")" && pwd)"
prefix=/opt/tether
etc=/etc/tether
bindir=/usr/local/bin
udev=true
systemd=true
start=true
timeout=90
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --etc) etc="$2"; shift 2 ;;
        --bindir) bindir="$2"; shift 2 ;;
        --no-udev) udev=false; shift ;;
        --no-systemd) systemd=false; shift ;;
        --no-start) start=false; shift ;;
        --timeout) timeout="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "install: unknown argument $1" >&2; exit 2 ;;
    esac
done

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed (Ubuntu: apt install docker.io docker-compose-v2)"
docker info >/dev/null 2>&1 || die "the Docker Engine does not answer (systemctl start docker?)"
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    die "neither 'docker compose' nor 'docker-compose' is installed"
fi

say "checking the bundle"
(cd "$bundle" && sha256sum --quiet -c SHA256SUMS) || die "bundle damaged: checksums do not match"
image="$(cat "$bundle/IMAGE")"

say "loading $image"
docker load -i "$bundle/images.tar" >/dev/null
docker image inspect "$image" >/dev/null 2>&1 || die "$image is not in Docker after docker load"

say "installing the stack into $prefix"
install -d -m 0755 "$prefix"
install -m 0644 "$bundle/compose.yaml" "$prefix/compose.yaml"
install -m 0755 "$bundle/hidraw-env.sh" "$prefix/hidraw-env.sh"
env_file="$prefix/.env"
touch "$env_file"
set_env() { # KEY VALUE: replace or append one line of .env
    local tmp="$env_file.tmp.$$"
    grep -v "^$1=" "$env_file" > "$tmp" || true
    printf '%s=%s\n' "$1" "$2" >> "$tmp"
    mv "$tmp" "$env_file"
}
set_env TETHER_IMAGE "$image"
grep -q '^TETHER_ETC=' "$env_file" || set_env TETHER_ETC "$etc"
"$prefix/hidraw-env.sh" "$env_file" >/dev/null

say "installing tether and tetherd into $bindir"
install -d -m 0755 "$bindir"
install -m 0755 "$bundle/bin/tether" "$bundle/bin/tetherd" "$bindir/"

if $udev; then
    say "installing the udev rule"
    install -m 0644 "$bundle"/udev/*.rules /etc/udev/rules.d/
    if command -v udevadm >/dev/null; then
        udevadm control --reload
        udevadm trigger --subsystem-match=hidraw
    fi
fi

if $systemd; then
    say "installing the systemd units"
    for unit in "$bundle"/systemd/*; do
        sed "s#/opt/tether#$prefix#g; s#/usr/local/bin#$bindir#g" "$unit" \
            > "/etc/systemd/system/$(basename "$unit")"
    done
    if [ "${compose[0]}" = docker-compose ]; then
        # tether-stack.service calls `docker compose` (v2); this host has v1.
        install -d /etc/systemd/system/tether-stack.service.d
        cat > /etc/systemd/system/tether-stack.service.d/compose-v1.conf <<CONF
[Service]
ExecStart=
ExecStart=$(command -v docker-compose) up -d
ExecStop=
ExecStop=$(command -v docker-compose) down
CONF
    fi
    install -D -m 0644 "$bundle/docs/deploy-vm.md" /usr/share/doc/tether/deploy-vm.md
    systemctl daemon-reload
    # The compose stack starts at boot; tetherd.service (tetherd on the host
    # without Docker) is installed but left disabled.
    systemctl enable tether-stack.service >/dev/null
fi

if ! $start; then
    say "installed; not started (--no-start)"
    exit 0
fi

for f in license.tether vendor.pub credentials secrets/backend.secret secrets/muxer.secret; do
    [ -e "$etc/$f" ] || die "$etc/$f is missing: provision the site first (docs/deploy-vm.md, 'Site files'); rerun this to start"
done

say "starting the stack"
if $systemd; then
    systemctl restart tether-stack.service
else
    (cd "$prefix" && "${compose[@]}" up -d)
fi

say "waiting for the stack to be healthy (up to ${timeout}s)"
deadline=$((SECONDS + timeout))
for svc in authority backend muxer; do
    while :; do
        cid="$(cd "$prefix" && "${compose[@]}" ps -q "$svc" 2>/dev/null || true)"
        health="$( [ -n "$cid" ] && docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || echo missing)"
        [ "$health" = healthy ] && break
        if [ "$SECONDS" -ge "$deadline" ]; then
            (cd "$prefix" && "${compose[@]}" logs --tail 30 "$svc") >&2 || true
            die "$svc is not healthy after ${timeout}s (state: $health)"
        fi
        sleep 1
    done
    say "$svc: healthy"
done
say "done. Check the dongle: curl -s http://127.0.0.1:7443/status (docs/deploy-vm.md)"
