#!/usr/bin/env python3
"""The admin page in headless Chromium (tests/browser/run.sh runs this).

Provisions a site with the real `tether` CLI, starts `tether dongle emulate`
and `tetherd` (with its admin listener on a free loopback port), fetches a
token so the counters and the lease table have something, then drives the
page with Selenium:

- it loads with no console error and no CSP violation (browser logs through
  goog:loggingPrefs, plus a securitypolicyviolation listener installed
  before any page script runs) and shows the dongle present;
- `tether dongle unplug`: the page shows absent within 1 s, without reload;
- `tether dongle plug`: present again;
- nothing secret (the service secret, the token or any part of it) is in
  the rendered page.

Screenshots (PNG) go to $ARTIFACTS.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

BIN = Path(os.environ["TETHER_BIN_DIR"])
ARTIFACTS = Path(os.environ["ARTIFACTS"])
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
SERIAL = "TD-BROWSER-1"
CUSTOMER = "Browser <Test> & Co"
ABSENT_WITHIN = 1.0  # seconds, unplug to "absent" on the page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tether(*args: str) -> str:
    out = subprocess.run(
        [str(BIN / "tether"), *args], check=True, capture_output=True, text=True
    )
    return out.stdout


def wait_for(what: str, cond, timeout: float = 15.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def http_get(url: str, secret: str | None = None):
    req = urllib.request.Request(url)
    if secret:
        req.add_header("Authorization", f"Bearer {secret}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


class Procs:
    def __init__(self, root: Path):
        self.root = root
        self.children: list[tuple[str, subprocess.Popen]] = []

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")
        env = dict(os.environ, TETHER_LOG="info")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.children.append((name, p))
        return p

    def stop(self):
        for name, p in reversed(self.children):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{(self.root / f'{name}.log').read_text(errors='replace')[-3000:]}"
            for name, _ in self.children
        )


def browser_problems(driver) -> list[str]:
    """Console errors and CSP violations so far (the log is drained)."""
    problems = []
    for entry in driver.get_log("browser"):
        msg = entry.get("message", "")
        if entry.get("level") == "SEVERE" or "Content Security Policy" in msg:
            problems.append(f"console {entry.get('level')}: {msg}")
    for v in driver.execute_script("return window.__cspViolations || []"):
        problems.append(f"CSP violation: {v}")
    return problems


def state(driver) -> str:
    return driver.find_element(By.ID, "dongle-state").text.strip()


def main() -> int:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tether-browser-") as tmp:
        root = Path(tmp)
        procs = Procs(root)
        driver = None
        try:
            # A site: vendor key, dongle identity, license, one credential.
            tether("keygen", "vendor", "--out", str(root / "vendor"))
            tether("keygen", "dongle", "--out", str(root / "dongle"), "--serial", SERIAL)
            tether(
                "license", "issue",
                "--vendor-key", str(root / "vendor/vendor.key"),
                "--dongle-pub", str(root / "dongle/dongle.pub"),
                "--customer", CUSTOMER,
                "--features", "mux",
                "--services", "backend,muxer",
                "--seats", "backend=2",
                "--valid-for", "20d",
                "--max-ttl", "5m",
                "--out", str(root / "license.tether"),
            )
            tether(
                "service", "enroll", "backend",
                "--credentials", str(root / "credentials"),
                "--secret-out", str(root / "backend.secret"),
            )
            secret = (root / "backend.secret").read_text().strip()

            sock = root / "dongle.sock"
            procs.spawn(
                "emulator",
                [str(BIN / "tether"), "dongle", "emulate",
                 "--identity", str(root / "dongle"), "--socket", str(sock)],
            )
            wait_for("the emulated dongle's socket", sock.exists)
            api_port, admin_port = free_port(), free_port()
            api = f"http://127.0.0.1:{api_port}"
            admin = f"http://127.0.0.1:{admin_port}/admin"
            tetherd = procs.spawn(
                "tetherd",
                [str(BIN / "tetherd"),
                 "--license", str(root / "license.tether"),
                 "--vendor-pub", str(root / "vendor/vendor.pub"),
                 "--credentials", str(root / "credentials"),
                 "--state-dir", str(root / "state"),
                 "--dongle", f"socket:{sock}",
                 "--listen", f"127.0.0.1:{api_port}",
                 "--admin-listen", f"127.0.0.1:{admin_port}"],
            )

            def token():
                if tetherd.poll() is not None:
                    raise AssertionError("tetherd exited")
                status, body = http_get(f"{api}/token?instance=web-1", secret)
                return json.loads(body)["token"] if status == 200 else None

            tok = wait_for("a first token", token)
            http_get(f"{api}/token?instance=web-1", "not-a-credential")

            opts = Options()
            opts.binary_location = CHROMIUM
            for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--disable-gpu", "--window-size=1280,1700",
                        "--disable-extensions", "--no-first-run"):
                opts.add_argument(arg)
            opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
            # Before any script of the page: collect CSP violations (CDP
            # scripts are not subject to the page's policy).
            driver.execute_cdp_cmd(
                "Page.addScriptToEvaluateOnNewDocument",
                {"source": "window.__cspViolations = [];"
                           "document.addEventListener('securitypolicyviolation', e =>"
                           " window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"},
            )
            driver.get(admin)
            wait_for("the page to show present", lambda: state(driver) == "present", 10)
            wait_for("the event stream", lambda: "on" in driver.find_element(By.ID, "live").text, 10)
            # The first periodic refresh ran (tables rebuilt by the script).
            time.sleep(2.5)
            problems = browser_problems(driver)
            assert not problems, "\n".join(problems)
            body = driver.find_element(By.TAG_NAME, "body").text
            assert CUSTOMER in body, "the customer, escaped and shown as text"
            assert SERIAL in body
            assert "web-1" in body, "the lease is listed"
            assert "UTC" in body
            html = driver.page_source
            for needle in [secret, tok, *tok.split(".")]:
                assert needle not in html, "secret text rendered in the page"
            driver.execute_script("window.__sameDocument = 42;")
            driver.save_screenshot(str(ARTIFACTS / "admin-present.png"))

            # Unplug: absent on the page within 1 s, no reload.
            t0 = time.monotonic()
            tether("dongle", "unplug", "--socket", str(sock))
            wait_for("absent on the page", lambda: state(driver) == "absent", 5, 0.01)
            latency = time.monotonic() - t0
            print(f"unplug to 'absent' shown: {latency * 1000:.0f} ms")
            assert latency < ABSENT_WITHIN, f"absent shown after {latency:.2f} s"
            first = driver.find_element(By.CSS_SELECTOR, "#timeline-list li")
            assert "absent" in first.text, first.text
            driver.save_screenshot(str(ARTIFACTS / "admin-absent.png"))

            # Re-plug: present again.
            t0 = time.monotonic()
            tether("dongle", "plug", "--socket", str(sock))
            wait_for("present again", lambda: state(driver) == "present", 10, 0.01)
            print(f"plug to 'present' shown: {(time.monotonic() - t0) * 1000:.0f} ms")
            wait_for("the token table refreshed", lambda: "web-1" in driver.find_element(By.ID, "leases-body").text, 5)
            time.sleep(1.2)
            assert driver.execute_script("return window.__sameDocument") == 42, "the page was reloaded"
            items = driver.find_elements(By.CSS_SELECTOR, "#timeline-list li")
            assert len(items) >= 3, [i.text for i in items]
            driver.save_screenshot(str(ARTIFACTS / "admin-replugged.png"))
            problems = browser_problems(driver)
            assert not problems, "\n".join(problems)
            (ARTIFACTS / "latency.txt").write_text(f"unplug_to_absent_ms {latency * 1000:.0f}\n")
            print("admin page in Chromium: OK")
            return 0
        except BaseException:
            print(procs.logs(), file=sys.stderr)
            if driver is not None:
                try:
                    driver.save_screenshot(str(ARTIFACTS / "admin-failure.png"))
                except Exception:
                    pass
            raise
        finally:
            if driver is not None:
                driver.quit()
            procs.stop()


if __name__ == "__main__":
    sys.exit(main())
