"""Serving a WSGI app from the command line: a threaded server from the standard library.

Good for the demo and for small deployments; production runs the same apps under uWSGI.
"""

from __future__ import annotations

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
    version, which would get an answer with no status line)."""

    # A client that stops sending (a body shorter than its Content-Length, a slow client)
    # frees its thread after this many seconds; the app then answers 400.
    timeout = 30
    error_content_type = "application/json"
    error_message_format = '{"error": "%(code)d: %(message)s"}'

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # so the error has a status line
            self.send_error(400, "request line: an HTTP version is required")
            return False
        return True

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
