#!/usr/bin/env bash
# Throughput of the C and Python bindings of the verifier (issue 20), printed
# as ratios against a peer measured in the same run. A benchmark, not a test:
# not in scripts/test or CI, and no figure fails it.
#
#   1. Python: tether_verifier.Verifier.verify on a cached chain (the same
#      valid token verified again and again) vs PyJWT's jwt.decode of that
#      token with its session public key (EdDSA, one signature, no chain):
#      target >= 10x PyJWT.
#   2. C vs Rust: tether_verify in a loop (verifier/c/examples/bench_verify.c,
#      linked against the shared library) vs Verifier::verify_at in a loop
#      (verifier/c/examples/bench_verify.rs), both built with the ffi profile,
#      on the same token: cold (a new verifier per call, so a fresh token: the
#      PEM parsed, three signatures checked) and cached (one verifier, the
#      same token again): target, C within 10% of Rust.
#
# The token is the conformance vector valid_basic (tests/conformance/
# vectors.json), verified at its fixed time. Each contender runs ROUNDS
# times (default 3) for SECS seconds per mode (default 1), interleaved; the
# best round counts (the machine's other load only ever slows a round down).
#
#   verifier/bindings-bench.sh            # ROUNDS=5 SECS=2 verifier/bindings-bench.sh
#
# Reuses verifier/bindings-test.sh's venv (target/bindings-venv) and adds
# pyjwt and cryptography to it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1
rounds=${ROUNDS:-3}
secs=${SECS:-1}
vector=valid_basic

step() { printf '\n=== %s ===\n' "$*" >&2; }
target=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "build the C library and the Rust loop (ffi profile)"
cargo build --locked -p tether-verifier-c --profile ffi --lib --example bench_verify
lib_dir=$target/ffi
mkdir -p "$lib_dir/pkgconfig"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
sed -e "s|@PREFIX@|$PWD|" -e "s|@LIBDIR@|$lib_dir|" -e "s|@INCLUDEDIR@|$PWD/verifier/c/include|" \
    -e "s|@VERSION@|$version|" verifier/c/tether-verifier.pc.in >"$lib_dir/pkgconfig/tether-verifier.pc"
export PKG_CONFIG_PATH=$lib_dir/pkgconfig
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
gcc -std=c11 -Wall -Wextra -Werror -O2 -o "$work/bench_verify" verifier/c/examples/bench_verify.c \
    $(pkg-config --cflags --libs tether-verifier)

step "python wheel (maturin) and PyJWT in the venv"
venv=$target/bindings-venv
req=verifier/python/requirements-dev.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-virtualenv -r "$req"
    echo "$want" >"$stamp"
fi
if ! "$venv/bin/python" -c 'import jwt, cryptography' 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-virtualenv pyjwt cryptography
fi
wheels=$target/bindings-wheels
rm -rf "$wheels"
"$venv/bin/maturin" build --locked --profile ffi --compatibility linux \
    -m verifier/python/Cargo.toml --out "$wheels" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --force-reinstall --no-deps "$wheels"/tether_verifier-*.whl

# The vector's token, key, time and expectations, as files and words.
read -r now service leeway < <(python3 - tests/conformance/vectors.json "$vector" "$work" <<'PY'
import json, sys
v = next(v for v in json.load(open(sys.argv[1]))["vectors"] if v["name"] == sys.argv[2])
assert v["expected"] == "ok" and not v["expect"]["features"] and v["expect"]["instance"] is None
open(sys.argv[3] + "/token", "w").write(v["token"])
open(sys.argv[3] + "/vendor.pub", "w").write(v["vendor_pub"])
print(v["now"], v["expect"]["service"], v["expect"]["leeway"])
PY
)

step "C vs Rust: $rounds rounds of ${secs} s per mode"
: >"$work/native.txt"
for r in $(seq "$rounds"); do
    LD_LIBRARY_PATH=$lib_dir "$work/bench_verify" "$work/token" "$work/vendor.pub" "$now" \
        "$service" "$leeway" "$secs" | tee -a "$work/native.txt" >&2
    "$lib_dir/examples/bench_verify" tests/conformance/vectors.json "$vector" "$secs" |
        tee -a "$work/native.txt" >&2
    echo "  (round $r)" >&2
done
session_pub=$(sed -n 's/^session_pub //p' "$work/native.txt" | head -1)

step "Python vs PyJWT: $rounds rounds of ${secs} s each"
"$venv/bin/python" - "$work/token" "$work/vendor.pub" "$now" "$service" "$leeway" \
    "$session_pub" "$rounds" "$secs" >"$work/python.txt" <<'PY'
import base64, sys, time
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
import tether_verifier as tv

token_file, pem_file, now, service, leeway, pub, rounds, secs = sys.argv[1:]
token = open(token_file).read().strip()
pem = open(pem_file).read()
now, leeway, rounds, secs = int(now), int(leeway), int(rounds), float(secs)
key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(pub + "=" * (-len(pub) % 4)))
# PyJWT checks times against the clock, not a given time: a leeway that
# reaches the vector's time keeps nbf / iat / exp checked and passing.
pyjwt_leeway = max(0, now - int(time.time())) + 60

def rate(f):
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < secs:
        for _ in range(64):
            f()
        n += 64
    return n / (time.perf_counter() - start)

verifier = tv.Verifier(pem, service=service, features=[], leeway=leeway)
claims = verifier.verify(token, now=now)
decoded = jwt.decode(token, key, algorithms=["EdDSA"], audience=service, leeway=pyjwt_leeway)
assert decoded["jti"] == claims.jti, (decoded, claims)
best = {"python cached": 0.0, "python cold": 0.0, "pyjwt": 0.0}
for r in range(rounds):
    for name, f in [
        ("python cached", lambda: verifier.verify(token, now=now)),
        ("python cold", lambda: tv.Verifier(pem, service=service, features=[], leeway=leeway).verify(token, now=now)),
        ("pyjwt", lambda: jwt.decode(token, key, algorithms=["EdDSA"], audience=service, leeway=pyjwt_leeway)),
    ]:
        x = rate(f)
        print(f"{name} {x:.0f}", file=sys.stderr)
        best[name] = max(best[name], x)
for name, x in best.items():
    print(f"{name} {x:.0f}")
print(f"versions tether_verifier {tv.__version__}, PyJWT {jwt.__version__}, "
      f"cryptography {__import__('cryptography').__version__}, Python {sys.version.split()[0]}")
PY

python3 - "$work/native.txt" "$work/python.txt" "$rounds" "$secs" "$vector" <<'PY'
import sys
best = {}
for path in sys.argv[1:3]:
    for line in open(path):
        *name, x = line.split()
        if name and name[0] in ("c", "rust", "python", "pyjwt"):
            best[" ".join(name)] = max(best.get(" ".join(name), 0.0), float(x))
        elif name and name[0] == "versions":
            versions = line.strip()[len("versions "):]
rounds, secs, vector = sys.argv[3:]
b = best
print(f"\nbindings throughput, one thread, token {vector} (tests/conformance/vectors.json)"
      f" at its fixed time; best of {rounds} rounds of {secs} s")
print(f"  Python Verifier.verify, cached (same token)  {b['python cached']:>10.0f} /s")
print(f"  PyJWT jwt.decode (EdDSA, same token)         {b['pyjwt']:>10.0f} /s")
print(f"    ratio Python cached / PyJWT                {b['python cached'] / b['pyjwt']:>10.1f}x  (target >= 10x)")
print(f"  Python Verifier, cold (new verifier per call){b['python cold']:>10.0f} /s"
      f"  {b['python cold'] / b['pyjwt']:.2f}x PyJWT")
for mode, what in [("cold", "new verifier per call: fresh caches, 3 signatures"),
                   ("cached", "one verifier, same token: cache hit")]:
    c, r = b[f"c {mode}"], b[f"rust {mode}"]
    print(f"  {mode} ({what})")
    print(f"    C tether_verify                            {c:>10.0f} /s")
    print(f"    Rust Verifier::verify_at                   {r:>10.0f} /s")
    print(f"    ratio C / Rust                             {c / r:>10.3f}   (target >= 0.90)")
    if mode == "cached":
        n = b["c cached_n"]
        print(f"    C tether_verify_n (length given, no strlen){n:>10.0f} /s")
        print(f"    ratio C (length given) / Rust              {n / r:>10.3f}   (target >= 0.90)")
print(f"  {versions}")
PY
