"""A small HTTP service for tidegate's controller tests: it behaves like an API replica.

GET /          -> {"release", "replica", "host"}       (what answered)
GET /healthz   -> 200 "ok"                             (tidegate's health check;
                  500 once /tmp/unhealthy exists: a replica that falls sick)
GET /data      -> the content of $DATA_DIR/value        (named-volume persistence)
PUT /data      -> store the body in $DATA_DIR/value
On SIGTERM it stops accepting, finishes in-flight requests, and exits 0 — a graceful
replica. FAIL_MODE=crash exits at once; FAIL_MODE=unhealthy serves 500 on /healthz;
FAIL_MODE=error500 is healthy but its API (GET /) answers 500; FAIL_MODE=wipe loses the
stored value at start (a migration that drops data). STARTUP_DELAY=N waits N seconds
before it listens (a slow-starting API, such as uwsgi loading an application).
SICK_AFTER=N serves 500 on /healthz from N seconds after it started to listen (a
replica that passes its first checks, then falls over).
"""
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RELEASE = os.environ.get("RELEASE", "?")
REPLICA = os.environ.get("HOSTNAME", socket.gethostname())
DATA = os.path.join(os.environ.get("DATA_DIR", "/data"), "value")
MODE = os.environ.get("FAIL_MODE", "")
DELAY = float(os.environ.get("RESPONSE_DELAY", "0"))

if MODE == "crash":
    print("FAIL_MODE=crash: exiting before serving", flush=True)
    sys.exit(3)
if MODE == "wipe" and os.path.exists(DATA):
    os.remove(DATA)
time.sleep(float(os.environ.get("STARTUP_DELAY", "0")))
SICK_AT = time.monotonic() + float(os.environ.get("SICK_AFTER", "inf"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 2          # an idle keep-alive connection ends: a stopping replica is not held open

    def _send(self, code, body, ctype="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            if MODE == "unhealthy" or os.path.exists("/tmp/unhealthy") or time.monotonic() >= SICK_AT:
                return self._send(500, "unhealthy", "text/plain")
            return self._send(200, "ok", "text/plain")
        if self.path == "/data":
            try:
                with open(DATA) as f:
                    return self._send(200, f.read(), "text/plain")
            except FileNotFoundError:
                return self._send(404, "no data", "text/plain")
        if DELAY:
            threading.Event().wait(DELAY)
        if MODE == "error500":
            return self._send(500, json.dumps({"error": "internal error", "release": RELEASE}))
        return self._send(200, json.dumps({"release": RELEASE, "replica": REPLICA}))

    def do_PUT(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        os.makedirs(os.path.dirname(DATA), exist_ok=True)
        with open(DATA, "w") as f:
            f.write(body)
        return self._send(200, "stored", "text/plain")

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False          # in-flight requests finish before exit
    block_on_close = True


server = Server(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)


def on_term(signum, frame):
    print("SIGTERM: draining", flush=True)
    threading.Thread(target=server.shutdown, daemon=True).start()


signal.signal(signal.SIGTERM, on_term)
print(f"serving release {RELEASE} on :{server.server_address[1]}", flush=True)
server.serve_forever(poll_interval=0.1)
server.server_close()               # joins request threads: in-flight work completes
print("stopped cleanly", flush=True)
