"""examples/gated_service.py: serves work while licensed, 503 while not."""

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from conftest import free_port, wait_until

EXAMPLE = Path(__file__).resolve().parents[1] / "examples/gated_service.py"


def status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_gated_service(site):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--url", site.url,
                             "--secret-file", str(site.secrets["backend"]),
                             "--vendor-pub", str(site.vendor_pub), "--service", "backend",
                             "--port", str(port)])
    work = f"http://127.0.0.1:{port}/work"
    try:
        wait_until("work served", 30, lambda: status(work) == 200)
        site.unplug()
        try:
            wait_until("503 while unplugged", 15, lambda: status(work) == 503)
        finally:
            site.plug()
        wait_until("work served again", 30, lambda: status(work) == 200)
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
