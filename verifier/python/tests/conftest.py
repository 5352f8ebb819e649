"""A provisioned Tether site run from the real binaries (as tests/interop
does): keygen vendor and dongle, license issue, service enroll, `tether
dongle emulate --socket`, `tetherd`. The binaries come from $TETHER_BIN_DIR
(verifier/bindings-test.sh sets it)."""

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERIAL = "TD-PYBIND"
REPO = Path(__file__).resolve().parents[3]


def bin_path(name: str) -> Path:
    bin_dir = os.environ.get("TETHER_BIN_DIR")
    if not bin_dir:
        raise RuntimeError("TETHER_BIN_DIR is not set: run verifier/bindings-test.sh")
    path = Path(bin_dir) / name
    if not path.is_file():
        raise RuntimeError(f"{path} not found: build it first (verifier/bindings-test.sh does)")
    return path


def run(*args, check=True, timeout=60):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TETHER_CONFIG": "/dev/null"})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout}{proc.stderr}")
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
        except Exception as e:  # noqa: BLE001 - reported below
            last = e
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout}s (last error: {last!r})")


@dataclass
class Site:
    root: Path
    tether: Path
    url: str
    vendor_pub: Path
    socket: Path
    secrets: dict = field(default_factory=dict)
    procs: list = field(default_factory=list)

    def token(self, service: str = "backend") -> str:
        out = run(self.tether, "token", "--url", self.url, "--secret-file", self.secrets[service])
        return json.loads(out.stdout)["token"]

    def unplug(self):
        run(self.tether, "dongle", "unplug", "--socket", self.socket)

    def plug(self):
        run(self.tether, "dongle", "plug", "--socket", self.socket)

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{Path(log).read_text(errors='replace')}"
                         for n, _, log in self.procs)


@pytest.fixture(scope="session")
def vectors():
    return json.loads((REPO / "tests/conformance/vectors.json").read_text())["vectors"]


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    tether = bin_path("tether")
    tetherd = bin_path("tetherd")
    run(tether, "keygen", "vendor", "--out", root / "vendor")
    run(tether, "keygen", "dongle", "--out", root / "dongle", "--serial", SERIAL)
    run(tether, "license", "issue", "--vendor-key", root / "vendor/vendor.key",
        "--dongle-pub", root / "dongle/dongle.pub", "--customer", "Bindings Test",
        "--features", "mux", "--services", "backend,muxer", "--valid-for", "1d",
        "--max-ttl", "5m", "--out", root / "license.tether")
    secrets = {}
    for service in ("backend", "muxer"):
        secrets[service] = root / f"{service}.secret"
        run(tether, "service", "enroll", service, "--credentials", root / "credentials",
            "--secret-out", secrets[service])
    port = free_port()
    sock = root / "dongle.sock"
    site = Site(root=root, tether=tether, url=f"http://127.0.0.1:{port}",
                vendor_pub=root / "vendor/vendor.pub", socket=sock, secrets=secrets)

    def spawn(name, *args):
        log = root / f"{name}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                    stdout=f, stderr=f,
                                    env={**os.environ, "TETHER_CONFIG": "/dev/null",
                                         "TETHER_LOG": "info"})
        site.procs.append((name, proc, log))

    try:
        spawn("emulator", tether, "dongle", "emulate", "--identity", root / "dongle",
              "--socket", sock)
        wait_until("the emulator's socket", 10, sock.exists)
        spawn("tetherd", tetherd, "--license", root / "license.tether",
              "--vendor-pub", site.vendor_pub, "--credentials", root / "credentials",
              "--dongle", f"socket:{sock}", "--state-dir", root / "state",
              "--listen", f"127.0.0.1:{port}")
        wait_until("a first token", 30, site.token)
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
        shutil.rmtree(root, ignore_errors=True)
