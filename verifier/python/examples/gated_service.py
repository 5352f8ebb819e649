"""A small HTTP service gated by LicenseWatch: it does its work only while
licensed, and answers 503 (with Retry-After) while it is not.

    python gated_service.py --url http://127.0.0.1:7443 --secret-file backend.secret \\
        --vendor-pub vendor.pub --service backend --port 8080

GET /work    200 and the work's result while licensed; 503 otherwise
GET /health  the license state as JSON (always 200)
SIGTERM/SIGINT stop it, giving the seat back.
"""

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tether_verifier import LicenseState, LicenseWatch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="tetherd, http://host:port")
    p.add_argument("--secret-file", required=True)
    p.add_argument("--vendor-pub", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()

    def on_change(state: LicenseState) -> None:
        print(f"license: {'licensed' if state.licensed else 'unlicensed: ' + state.reason}",
              flush=True)

    watch = LicenseWatch(args.url, args.secret_file, args.service,
                         vendor_pub=args.vendor_pub, on_change=on_change)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict, headers=()) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/health":
                s = watch.state()
                self._send(200, {"licensed": s.licensed, "reason": s.reason})
            elif self.path == "/work":
                if not watch.is_licensed():
                    self._send(503, {"error": "unlicensed", "reason": watch.state().reason},
                               [("Retry-After", "1")])
                else:
                    self._send(200, {"result": sum(range(1000))})
            else:
                self._send(404, {"error": "not found"})

        def log_message(self, *a) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    stop = threading.Event()

    def on_signal(*_):
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"gated {args.service} on http://127.0.0.1:{args.port}", flush=True)
    with watch:
        server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
