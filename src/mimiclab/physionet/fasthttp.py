"""An httpx transport on the standard library's http.client, for bulk downloads.

Why: httpx's default transport parses bodies with h11 in 64 KiB pieces and manages to move ~150-250 MB/s on a
fast link, a fraction of curl. http.client's `read1` of up to 1 MiB spends its time in the kernel (GIL
released), so several parallel transfers really run in parallel. Everything else stays httpx: auth flow,
redirects, event hooks (the redacted trace), timeouts. Used only when no proxy is configured.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import urllib.request
from collections.abc import Iterator

import httpx

READ = 1 << 20


def proxies_configured() -> bool:
    return bool(urllib.request.getproxies())


class _Body(httpx.SyncByteStream):
    def __init__(self, transport: FastTransport, key, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse, head: bool = False):
        self.t, self.key, self.conn, self.resp = transport, key, conn, resp
        self.head = head
        self.complete = False
        self.expected = resp.length  # None for chunked / close-delimited

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                # read1: one recv of up to 1 MiB; readinto would block until the whole buffer is full,
                # holding back bytes that already arrived (lost to resume on kill -9, late for progress)
                data = self.resp.read1(READ)
                if not data:
                    break
                yield data
        except TimeoutError:
            raise httpx.ReadTimeout("timed out reading the response body") from None
        except (http.client.HTTPException, OSError) as exc:
            raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}") from None
        if self.resp.length:  # http.client reports an early close as a quiet end of body
            raise httpx.RemoteProtocolError(
                f"peer closed connection with {self.resp.length} of {self.expected} body bytes outstanding")
        self.complete = True

    def close(self) -> None:
        if self.head:
            self.resp.read()  # no body: marks the response done, so the connection goes back to the pool
        # reusable only after the whole body: every announced byte read (http.client 3.11 leaves length at 0
        # without marking the response closed), or a body without length read to its proper end
        reusable = not self.resp.will_close and (self.resp.length == 0 or (self.complete and self.resp.length is None))
        self.resp.close()
        if reusable:
            self.t._release(self.key, self.conn)
        else:
            self.conn.close()


class FastTransport(httpx.BaseTransport):
    """HTTP/1.1 keep-alive connections, pooled per (scheme, host, port)."""

    def __init__(self, verify: ssl.SSLContext | None = None, max_idle: int = 8):
        self._ssl = verify or ssl.create_default_context()
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._max_idle = max_idle

    def _release(self, key, conn) -> None:
        with self._lock:
            pool = self._idle.setdefault(key, [])
            if len(pool) < self._max_idle:
                pool.append(conn)
                return
        conn.close()

    def _connect(self, key, timeout: float | None, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            pool = None if fresh else self._idle.get(key)
            if pool:
                conn = pool.pop()
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn, True
        scheme, host, port = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl), False
        return http.client.HTTPConnection(host, port, timeout=timeout), False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        timeout = timeouts.get("read") or timeouts.get("connect")
        body = request.read()
        target = url.raw_path.decode("ascii")
        for attempt in (0, 1):
            conn, reused = self._connect(key, timeout, fresh=attempt > 0)  # the idle ones may all be stale
            try:
                conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in request.headers.raw:
                    conn.putheader(k.decode("latin-1"), v.decode("latin-1"))
                conn.endheaders(body or None)
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the server had closed: one fresh try
                raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}", request=request) from None
            except TimeoutError:
                conn.close()
                raise httpx.ConnectTimeout("timed out", request=request) from None
            except ssl.SSLError as exc:
                conn.close()
                raise httpx.ConnectError(f"TLS: {exc}", request=request) from None
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from None
        return httpx.Response(
            resp.status,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.getheaders()],
            stream=_Body(self, key, conn, resp, head=request.method == "HEAD"),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (resp.reason or "").encode("latin-1")},
            request=request,
        )

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for pool in pools.values():
            for c in pool:
                c.close()
