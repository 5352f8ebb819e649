"""A provisioned Tether site run from the real binaries, for the PyJWT interop tests.

Everything goes through the `tether` and `tetherd` binaries, as an operator
would (README, "Provisioning by hand"): keygen vendor and dongle, license
issue, service enroll, `tether dongle emulate --socket`, `tetherd`, then
`tether token` for tokens and `tether verify` to check them. The binaries are
taken from $TETHER_BIN_DIR (scripts/interop.sh sets it to target/debug).
"""

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERIAL = "TD-INTEROP"
SERVICE = "backend"


def bin_path(name: str) -> Path:
    bin_dir = os.environ.get("TETHER_BIN_DIR")
    if not bin_dir:
        raise RuntimeError("TETHER_BIN_DIR is not set: run scripts/interop.sh")
    path = Path(bin_dir) / name
    if not path.is_file():
        raise RuntimeError(f"{path} not found: build it first (scripts/interop.sh does)")
    return path


def run(*args, check=True, input=None, timeout=60):
    """Runs a command; returns the CompletedProcess (text mode)."""
    proc = subprocess.run(
        [str(a) for a in args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TETHER_CONFIG": "/dev/null"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, timeout: float, cond):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = cond()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - reported below if it never succeeds
            last = e
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout}s (last error: {last!r})")


@dataclass
class Site:
    root: Path
    tether: Path
    url: str
    vendor_pub: Path
    license: Path
    dongle_pub: Path
    secrets: dict = field(default_factory=dict)
    procs: list = field(default_factory=list)

    def token_answer(self, service: str = SERVICE, nonce: str | None = None) -> dict:
        """`tether token`: a fresh token from tetherd, as its JSON answer."""
        args = [self.tether, "token", "--url", self.url, "--secret-file", self.secrets[service]]
        if nonce:
            args += ["--nonce", nonce]
        return json.loads(run(*args).stdout)

    def token(self, service: str = SERVICE, nonce: str | None = None) -> str:
        return self.token_answer(service, nonce)["token"]

    def verify(self, token: str, service: str = SERVICE, vendor_pub: Path | None = None,
               nonce: str | None = None):
        """`tether verify`, the token on stdin; returns the CompletedProcess."""
        args = [self.tether, "verify", "--vendor-pub", vendor_pub or self.vendor_pub,
                "--service", service]
        if nonce:
            args += ["--nonce", nonce]
        return run(*args, "-", check=False, input=token)

    def logs(self) -> str:
        out = []
        for name, _, log in self.procs:
            out.append(f"--- {name} ---\n{Path(log).read_text(errors='replace')}")
        return "\n".join(out)


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    tether = bin_path("tether")
    tetherd = bin_path("tetherd")
    run(tether, "keygen", "vendor", "--out", root / "vendor")
    run(tether, "keygen", "dongle", "--out", root / "dongle", "--serial", SERIAL)
    run(tether, "license", "issue",
        "--vendor-key", root / "vendor/vendor.key",
        "--dongle-pub", root / "dongle/dongle.pub",
        "--customer", "Interop Test", "--features", "mux", "--services", "backend,muxer",
        "--valid-for", "1d", "--max-ttl", "5m", "--out", root / "license.tether")
    run(tether, "license", "verify", "--vendor-pub", root / "vendor/vendor.pub",
        root / "license.tether")
    secrets = {}
    for service in ("backend", "muxer"):
        secrets[service] = root / f"{service}.secret"
        run(tether, "service", "enroll", service, "--credentials", root / "credentials",
            "--secret-out", secrets[service])

    port = free_port()
    site = Site(root=root, tether=tether, url=f"http://127.0.0.1:{port}",
                vendor_pub=root / "vendor/vendor.pub", license=root / "license.tether",
                dongle_pub=root / "dongle/dongle.pub", secrets=secrets)

    def spawn(name, *args):
        log = root / f"{name}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                    stdout=f, stderr=f,
                                    env={**os.environ, "TETHER_CONFIG": "/dev/null",
                                         "TETHER_LOG": "info"})
        site.procs.append((name, proc, log))
        return proc

    sock = root / "dongle.sock"
    try:
        spawn("emulator", tether, "dongle", "emulate", "--identity", root / "dongle",
              "--socket", sock)
        wait_until("the emulator's socket", 10, sock.exists)
        spawn("tetherd", tetherd, "--license", site.license, "--vendor-pub", site.vendor_pub,
              "--credentials", root / "credentials", "--dongle", f"socket:{sock}",
              "--state-dir", root / "state", "--listen", f"127.0.0.1:{port}")
        wait_until("a first token", 30, lambda: site.token())
        yield site
    except BaseException:
        print(site.logs())
        raise
    finally:
        for _, proc, _ in reversed(site.procs):
            proc.terminate()
        for _, proc, _ in reversed(site.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if os.environ.get("TETHER_INTEROP_KEEP"):
            print(f"site kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
