"""A PhysioNet-like HTTP server for tests and benchmarks (stdlib only, 127.0.0.1, free port).

Serves a folder laid out as <root>/<slug>/<version>/<path> at /files/<slug>/<version>/<path>, with
directory listings, Range requests, PhysioNet's access rules for chosen "credentialed" slugs (Basic auth,
the Wget/libwfdb User-Agent rule, 401 vs 403) and injectable faults.

    srv = PhysioNetServer(root, credentialed={"mimic-iv-ed-demo"}, users={"alice": "pw"},
                          grants={"alice": {"mimic-iv-ed-demo"}})
    srv.start(); srv.url -> "http://127.0.0.1:<port>"
    srv.faults.cut("ed/triage.csv.gz", at=1000)   # next serve of that file drops the connection at byte 1000
    srv.faults.status("ed/triage.csv.gz", 503, times=2, retry_after=1)
    srv.faults.corrupt("ed/triage.csv.gz", offset=10, times=1)  # spent by the next serve that carries byte 10
    srv.faults.missing.add("ed/triage.csv.gz")
    srv.faults.rate = 50_000                      # bytes/s per connection (token bucket per TCP connection)
    srv.faults.overclaim["ed/triage.csv.gz"] = 10  # announce 10 bytes more than sent, then close (every serve)
    srv.faults.ignore_range.add("ed/triage.csv.gz")   # answer Range requests with 200 and the whole file ("*": all)
    srv.faults.status("x.bin", 429, retry_after="Wed, 21 Oct 2099 07:28:00 GMT")  # a str goes out as is
    srv.faults.shift_range["ed/triage.csv.gz"] = -100  # answer Range bytes=a- with 206 bytes (a-100)-...
    srv.bytes_served["ed/triage.csv.gz"]
    srv.max_connections                           # most TCP connections open at once (srv.reset_counts() resets)

Run as a script (benchmarks): `python tests/physionet_server.py ROOT [--rate BPS]` prints the URL.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Faults:
    """Per-path fault queues. Paths are relative to the version folder (e.g. 'ed/triage.csv.gz')."""

    cuts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # absolute byte offsets
    statuses: dict[str, list[tuple[int, float | str | None]]] = field(default_factory=lambda: defaultdict(list))
    corruptions: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # absolute offsets
    missing: set[str] = field(default_factory=set)
    overclaim: dict[str, int] = field(default_factory=dict)  # extra bytes announced, never sent
    ignore_range: set[str] = field(default_factory=set)
    shift_range: dict[str, int] = field(default_factory=dict)  # serve a Range request from the wrong offset
    rate: float | None = None  # bytes per second per connection
    random_cut: float = 0.0  # probability that a serve is cut at a random offset
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cut(self, path: str, at: int) -> None:
        with self.lock:
            self.cuts[path].append(at)

    def status(self, path: str, code: int, times: int = 1, retry_after: float | str | None = None) -> None:
        with self.lock:
            self.statuses[path].extend([(code, retry_after)] * times)

    def corrupt(self, path: str, offset: int, times: int = 1) -> None:
        with self.lock:
            self.corruptions[path].extend([offset] * times)

    def clear(self) -> None:
        with self.lock:
            self.cuts.clear()
            self.statuses.clear()
            self.corruptions.clear()
            self.missing.clear()
            self.overclaim.clear()
            self.ignore_range.clear()
            self.shift_range.clear()
            self.rate = None
            self.random_cut = 0.0


class PhysioNetServer:
    def __init__(self, root: Path | str, *, credentialed: set[str] | None = None,
                 users: dict[str, str] | None = None, grants: dict[str, set[str]] | None = None,
                 generate_sums: bool = False, chunk: int = 64 * 1024):
        self.root = Path(root)
        self.credentialed = set(credentialed or ())
        self.users = dict(users or {})
        self.grants = {u: set(s) for u, s in (grants or {}).items()}
        self.generate_sums = generate_sums  # serve a computed SHA256SUMS.txt where a folder has none
        self.chunk = chunk
        self.faults = Faults()
        self.bytes_served: dict[str, int] = defaultdict(int)
        self.requests: list[dict] = []
        self.open_connections = 0
        self.max_connections = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> PhysioNetServer:
        handler = type("Handler", (_Handler,), {"server_obj": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> PhysioNetServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def total_served(self, prefix: str = "") -> int:
        with self._lock:
            return sum(v for k, v in self.bytes_served.items() if k.startswith(prefix))

    def reset_counts(self) -> None:
        with self._lock:
            self.bytes_served.clear()
            self.requests.clear()
            self.max_connections = self.open_connections

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_served[path] += n


class _Handler(BaseHTTPRequestHandler):
    server_obj: PhysioNetServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # like nginx's tcp_nodelay: no 40 ms stall between headers and body

    def log_message(self, fmt, *args):  # quiet
        pass

    def handle(self) -> None:
        """One TCP connection (all its keep-alive requests): counted, with its own rate bucket."""
        s = self.server_obj
        self._tokens, self._filled = 0.0, time.monotonic()
        with s._lock:
            s.open_connections += 1
            s.max_connections = max(s.max_connections, s.open_connections)
        try:
            super().handle()
        except OSError:
            pass  # the client went away
        finally:
            with s._lock:
                s.open_connections -= 1

    def _throttle(self, n: int, rate: float) -> None:
        """Token bucket per connection: at most `rate` bytes/s averaged, bursts of at most 50 ms worth."""
        now = time.monotonic()
        self._tokens = min(rate * 0.05, self._tokens + (now - self._filled) * rate)
        self._filled = now
        self._tokens -= n
        if self._tokens < 0:
            time.sleep(-self._tokens / rate)

    # ------------------------------------------------------------------ helpers
    def _send_simple(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
                     ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _record(self, **kw) -> None:
        s = self.server_obj
        with s._lock:
            s.requests.append({"t": time.monotonic(), "method": self.command, "path": self.path,
                               "ua": self.headers.get("User-Agent", ""),
                               "authorization": self.headers.get("Authorization"),
                               "range": self.headers.get("Range"), **kw})

    def _auth(self, slug: str) -> int | None:
        """None if allowed, else the status PhysioNet would answer."""
        s = self.server_obj
        if slug not in s.credentialed:
            return None
        ua = self.headers.get("User-Agent", "")
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return 401
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except Exception:
            return 401
        if not ua.startswith(("Wget/", "libwfdb/")):
            return 401  # PhysioNet ignores password logins from other agents
        if s.users.get(user) != pw:
            return 401
        if slug not in s.grants.get(user, set()):
            return 403
        return None

    # ------------------------------------------------------------------ verbs
    def do_HEAD(self):
        self._serve()

    def do_GET(self):
        self._serve()

    def _serve(self) -> None:
        s = self.server_obj
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in urllib.parse.unquote(url.path).split("/") if p]
        if not parts or parts[0] != "files":
            self._record(status=200)
            return self._send_simple(200, b"<html><body>PhysioNet test server</body></html>", ctype="text/html")
        if len(parts) < 3:
            self._record(status=404)
            return self._send_simple(404, b"not found")
        slug, version, rel_parts = parts[1], parts[2], parts[3:]
        if any(p in ("..", ".") for p in rel_parts):
            return self._send_simple(400, b"bad path")
        denied = self._auth(slug)
        if denied:
            self._record(status=denied)
            hdr = {"WWW-Authenticate": 'Basic realm="PhysioNet"'} if denied == 401 else {}
            return self._send_simple(denied, b"Unauthorized" if denied == 401 else b"Forbidden", hdr)
        rel = "/".join(rel_parts)
        base = s.root / slug / version
        target = base / rel
        with s.faults.lock:
            queued = s.faults.statuses.get(rel)
            status = queued.pop(0) if queued else None
        if status is not None:
            code, retry_after = status
            self._record(status=code)
            hdr = ({"Retry-After": retry_after if isinstance(retry_after, str) else f"{retry_after:g}"}
                   if retry_after is not None else {})
            return self._send_simple(code, b"Service Unavailable", hdr)
        if rel in s.faults.missing:
            self._record(status=404)
            return self._send_simple(404, b"not found")
        if rel == "SHA256SUMS.txt" and not target.is_file() and s.generate_sums and base.is_dir():
            body = _sums(base).encode()
            self._record(status=200)
            return self._send_simple(200, body)
        if target.is_dir() or (not rel and base.is_dir()):
            self._record(status=200)
            return self._send_simple(200, _listing(target, self.path).encode(), ctype="text/html; charset=utf-8")
        if not target.is_file():
            self._record(status=404)
            return self._send_simple(404, b"not found")
        self._send_file(rel, target)

    def _send_file(self, rel: str, target: Path) -> None:
        s = self.server_obj
        size = target.stat().st_size
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        no_ranges = rel in s.faults.ignore_range or "*" in s.faults.ignore_range
        if no_ranges:
            rng = None
        code = 200
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].split(",")[0].partition("-")
            try:
                if a == "":
                    start, end = max(0, size - int(b)), size - 1
                else:
                    start = int(a)
                    end = min(int(b), size - 1) if b else size - 1
            except ValueError:
                start, end = 0, size - 1
            if start >= size:
                self._record(status=416)
                return self._send_simple(416, b"", {"Content-Range": f"bytes */{size}"})
            code = 206
            start = min(max(0, start + s.faults.shift_range.get(rel, 0)), end)
        length = end - start + 1
        extra = s.faults.overclaim.get(rel, 0)
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length + extra))
        if not no_ranges:
            self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end + extra}/{size + extra}")
        self.end_headers()
        self._record(status=code, start=start)
        if self.command == "HEAD":
            return
        f = s.faults
        with f.lock:
            cut = None
            cuts = f.cuts.get(rel)
            if cuts:
                cut = cuts.pop(0)
            if cut is None and f.random_cut and f.rng.random() < f.random_cut and length > 1:
                cut = start + f.rng.randrange(0, length)
            corrupt = None
            corr = f.corruptions.get(rel)
            hit = [o for o in corr or () if start <= o <= end]  # only a serve that carries the byte spends one
            if hit:
                corrupt = hit[0]
                corr.remove(corrupt)
            rate = f.rate
        stop_at = end + 1 if cut is None else max(start, min(cut, end + 1))
        if rate is None and corrupt is None and cut is None:
            # fast path for benchmarks: the kernel copies
            with open(target, "rb") as fh:
                sent = 0
                try:
                    while sent < length:
                        n = os.sendfile(self.connection.fileno(), fh.fileno(), start + sent, length - sent)
                        if n == 0:
                            break
                        sent += n
                        s._count(rel, n)
                except OSError:
                    pass
            if extra:
                self._hangup()
            return
        chunk = s.chunk if rate is None else max(1, min(s.chunk, int(rate / 20) or 1))
        sent = 0
        with open(target, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos < stop_at:
                data = fh.read(min(chunk, stop_at - pos))
                if not data:
                    break
                if corrupt is not None and pos <= corrupt < pos + len(data):
                    i = corrupt - pos
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                try:
                    self.wfile.write(data)
                except OSError:
                    return
                pos += len(data)
                sent += len(data)
                s._count(rel, len(data))
                if rate:
                    self._throttle(len(data), rate)
        if (cut is not None and stop_at <= end) or extra:
            self._hangup()

    def _hangup(self) -> None:
        """Close the connection mid-body (the client sees fewer bytes than Content-Length announced)."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True


def _sums(base: Path) -> str:
    lines = []
    for p in sorted(base.rglob("*")):
        if p.is_file() and p.name not in ("SHA256SUMS.txt", "SHA256SUMS.local.txt"):
            lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.relative_to(base).as_posix()}")
    return "\n".join(lines) + "\n"


def _listing(folder: Path, url_path: str) -> str:
    items = sorted(folder.iterdir()) if folder.is_dir() else []
    rows = "".join(
        f'<li><a href="{html.escape(p.name + ("/" if p.is_dir() else ""))}">{html.escape(p.name)}</a></li>' for p in items
    )
    return f"<html><head><title>Index of {html.escape(url_path)}</title></head><body><ul>{rows}</ul></body></html>"


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--rate", type=float, default=None, help="bytes/s per connection")
    args = ap.parse_args(argv)
    srv = PhysioNetServer(args.root, generate_sums=True).start()
    srv.faults.rate = args.rate
    print(srv.url, flush=True)
    try:
        # stdin closes when the parent goes away; 'stats' prints bytes served, 'maxconn' the most connections
        # open at once since the last 'reset'
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "stats":
                print(srv.total_served(), flush=True)
            elif cmd.startswith("rate "):
                v = cmd.split()[1]
                srv.faults.rate = None if v == "none" else float(v)
                print("ok", flush=True)
            elif cmd == "maxconn":
                print(srv.max_connections, flush=True)
            elif cmd == "reset":
                srv.reset_counts()
                print("ok", flush=True)
            elif cmd == "quit":
                break
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
