"""A small HTTP service for tidegate's controller tests: it behaves like an API replica.

GET /          -> {"release", "replica", "host"}       (what answered)
GET /healthz   -> 200 "ok"                             (tidegate's health check;
                  500 once /tmp/unhealthy exists: a replica that falls sick)
GET /data      -> the content of $DATA_DIR/value        (named-volume persistence)
PUT /data      -> store the body in $DATA_DIR/value
On SIGTERM it stops accepting, finishes in-flight requests, and exits 0 — a graceful
replica. FAIL_MODE=crash exits at once; FAIL_MODE=unhealthy serves 500 on /healthz;
FAIL_MODE=error500 is healthy but its API (GET /) answers 500; FAIL_MODE=sick answers
every request 500, its health check included (a replica broken from the start); FAIL_MODE=wipe loses the
stored value at start (a migration that drops data). STARTUP_DELAY=N waits N seconds
before it listens (a slow-starting API, such as uwsgi loading an application).
FAIL_MODE=proxied answers 500 to every request that carries X-Forwarded-For, /healthz
excepted: a proxy-headers setting that refuses the front — the replica passes every check
asked of it directly, and fails every request a client sends through the front.
SICK_AFTER=N serves 500 on /healthz from N seconds after it started to listen (a
replica that passes its first checks, then falls over).
POST /v3/auth/tokens -> 201 and X-Subject-Token when the body's password is $AUTH_PASSWORD
                  (a Keystone-like login; the token is signed with $TOKEN_KEY)
GET /things    -> 200 {"things": []} with a token signed with $TOKEN_KEY, 503 otherwise:
                  a replica with another TOKEN_KEY answers everything else and cannot
                  validate a fresh token (Placement with a wrong service password).
"""
import hashlib
import hmac
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
TOKEN_KEY = os.environ.get("TOKEN_KEY", "web-token-key").encode()
PASSWORD = os.environ.get("AUTH_PASSWORD", "")


def sign(nonce: str) -> str:
    return hmac.new(TOKEN_KEY, nonce.encode(), hashlib.sha256).hexdigest()


def valid(token: str) -> bool:
    nonce, _, sig = (token or "").partition(".")
    return bool(nonce) and hmac.compare_digest(sig, sign(nonce))

if MODE == "crash":
    print("FAIL_MODE=crash: exiting before serving", flush=True)
    sys.exit(3)
if MODE == "wipe" and os.path.exists(DATA):
    os.remove(DATA)
time.sleep(float(os.environ.get("STARTUP_DELAY", "0")))
SICK_AT = time.monotonic() + float(os.environ.get("SICK_AFTER", "inf"))
# LOAD_DELAY: listening at once, answering only after that many seconds (a slow-loading API
# such as uwsgi with lazy apps: connections are accepted, requests wait)
LOADED_AT = time.monotonic() + float(os.environ.get("LOAD_DELAY", "0"))


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
        time.sleep(max(0.0, LOADED_AT - time.monotonic()))
        if MODE == "sick":
            return self._send(500, json.dumps({"error": "sick", "release": RELEASE}))
        if MODE == "proxied" and self.path != "/healthz" and self.headers.get("X-Forwarded-For"):
            return self._send(500, json.dumps({"error": "untrusted proxy", "release": RELEASE}))
        if self.path == "/healthz":
            if MODE == "unhealthy" or os.path.exists("/tmp/unhealthy") or time.monotonic() >= SICK_AT:
                return self._send(500, "unhealthy", "text/plain")
            return self._send(200, "ok", "text/plain")
        if self.path == "/things":
            if not valid(self.headers.get("X-Auth-Token", "")):
                return self._send(503, json.dumps({"error": "cannot validate the token", "release": RELEASE}))
            return self._send(200, json.dumps({"things": [], "release": RELEASE}))
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

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        try:
            user = json.loads(self.rfile.read(length))["auth"]["identity"]["password"]["user"]
        except (ValueError, KeyError, TypeError):
            return self._send(400, json.dumps({"error": "not a password login"}))
        if self.path != "/v3/auth/tokens" or not PASSWORD or user.get("password") != PASSWORD:
            return self._send(401, json.dumps({"error": "the request you have made requires authentication"}))
        nonce = os.urandom(8).hex()
        self.send_response(201)
        self.send_header("X-Subject-Token", f"{nonce}.{sign(nonce)}")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

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
