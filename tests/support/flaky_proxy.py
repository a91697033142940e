"""An HTTP proxy on loopback that answers some requests with S3's 503
``SlowDown`` instead of passing them on: transient and lasting failures of a
real object store, in front of the real server (moto_server).

Requests are passed on byte for byte, Host header included, so the server
still checks each request's signature.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.support.s3_server import free_port

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

# (method, path, Range header or "") -> answer 503 instead of passing it on
Policy = Callable[[str, str, str], bool]


@dataclass
class Proxy:
    url: str
    policy: Policy | None = None
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    passed: list[tuple[str, str, str]] = field(default_factory=list)


def fail_each_request_once() -> Policy:
    """Every distinct request fails the first time it is made."""
    seen: set[tuple[str, str, str]] = set()
    lock = threading.Lock()

    def policy(method: str, path: str, range_: str) -> bool:
        with lock:
            first = (method, path, range_) not in seen
            seen.add((method, path, range_))
        return first

    return policy


@contextmanager
def flaky_proxy(upstream: str) -> Iterator[Proxy]:
    target = urlsplit(upstream)
    proxy = Proxy(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = (self.command, self.path, self.headers.get("Range", ""))
            if proxy.policy is not None and proxy.policy(*request):
                proxy.refused.append(request)
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(SLOW_DOWN)
                return
            proxy.passed.append(request)
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                conn.putrequest(
                    self.command, self.path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in self.headers.items():
                    if name.lower() not in ("connection", "keep-alive"):
                        conn.putheader(name, value)
                conn.endheaders(body or None)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            self.send_response(answer.status, answer.reason)
            # a HEAD's Content-Length is the object's size: passed on as is
            skip = {"connection", "transfer-encoding", "server", "date"}
            if self.command != "HEAD":
                skip.add("content-length")
            for name, value in answer.getheaders():
                if name.lower() not in skip:
                    self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
