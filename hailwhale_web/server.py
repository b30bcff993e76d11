"""Serving a WSGI app from the command line: a threaded server from the standard library.

Good for the demo and for small deployments; production runs the same apps under uWSGI.
"""

from __future__ import annotations

import json
import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    """Logs requests through ``logging`` (at debug level) instead of stderr; answers what it
    cannot parse with JSON, never an HTML page; refuses HTTP/0.9 (a request line with no
    version, which would get an answer with no status line, after waiting for headers)."""

    # A client that stops sending (a body shorter than its Content-Length, a slow client)
    # frees its thread after this many seconds; the app then answers 400.
    timeout = 30

    def parse_request(self) -> bool:
        # A request line with two words is HTTP/0.9: refused before the stdlib waits for
        # headers such a client never sends (it would hold the thread until the timeout).
        words = str(self.raw_requestline, "iso-8859-1").split()
        if len(words) == 2:
            self.command, self.request_version = None, self.default_request_version
            self.close_connection = True
            self.requestline = " ".join(words)
            self.send_error(400, f"request line: an HTTP version is required "
                                 f"(got {self.requestline[:120]!r})")
            return False
        return super().parse_request()

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The stdlib's error answer as JSON, always with a status line: it answers HTML,
        and no status line at all while it still takes the request for HTTP/0.9."""
        if self.request_version == "HTTP/0.9" or not self.request_version:
            self.request_version = "HTTP/1.0"
        try:
            short, _long = self.responses[code]
        except KeyError:
            short = "error"
        text = f"{code}: {message or short}"
        body = json.dumps({"error": text}).encode()
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, short)
        self.send_header("Connection", "close")
        self.close_connection = True
        if code >= 200 and code not in (204, 205, 304):
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 205, 304):
            self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        logging.getLogger("hailwhale.http").debug(format, *args)


def make(app, host: str, port: int) -> WSGIServer:
    """A threaded HTTP server for ``app``, bound but not yet serving."""
    try:
        return make_server(host, port, app, server_class=_ThreadingServer,
                           handler_class=_QuietHandler)
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> WSGIServer:
    """Serve ``app`` from a daemon thread; ``server.server_port`` tells the port taken."""
    server = make(app, host, port)
    threading.Thread(target=server.serve_forever, daemon=True, name="http").start()
    return server
