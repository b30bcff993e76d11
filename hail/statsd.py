"""Hail's StatsD listener: the line protocol on UDP and TCP, into the node's buffer.

Each packet (UDP) or chunk of a stream (TCP) is parsed by ``hailwhale.statsd``; its good
lines are buffered as wire lines in one atomic push, beside the listener's tallies, so they
reach Whale through hailwail like any HTTP event. A refused line is counted and logged (at
most one line every LOG_EVERY seconds, then how many were refused meanwhile); the rest of
its packet counts.

What can be lost: a UDP packet the kernel drops because the listener does not read fast
enough (its receive buffer is full), which no UDP sender learns of; and the packets read but
not yet pushed when the Redis push keeps failing for PUSH_PATIENCE seconds, or when the
process dies between reading and pushing (at most one read's worth: the listener reads what
the kernel holds, up to READ_MOST packets, then pushes at once). TCP senders see a push
failure as the connection closing.

    hailwhale hail --statsd-port 8125       beside Hail's HTTP (0: no StatsD)
    [hail] in uwsgi.ini                      a mule runs it beside the workers
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from hailwhale.buffer import Buffer
from hailwhale.config import Settings
from hailwhale.errors import StoreUnavailable
from hailwhale.statsd import MAX_LINE, Encoder, Refused

log = logging.getLogger("hailwhale.statsd")

READ_MOST = 2000  # packets read before they are pushed, when the kernel holds that many
RECEIVE_BUFFER = 8 * 1024 * 1024  # asked of the kernel (it caps it at net.core.rmem_max)
PUSH_PATIENCE = 5.0  # seconds a push is retried while the buffer's Redis is unavailable
LOG_EVERY = 10.0
MAX_CONNECTIONS = 64  # TCP senders at once; more are closed at once
IDLE = 300.0  # seconds a TCP sender may stay silent


class Listener:
    """StatsD on one port, UDP and TCP, pushing into ``buffer``."""

    def __init__(self, settings: Settings, buffer: Buffer, host: str | None = None,
                 port: int | None = None, clock: Callable[[], float] = time.time):
        self.settings, self.buffer, self.clock = settings, buffer, clock
        self.encoder = Encoder(settings, settings.statsd_pk)
        self.host = settings.statsd_host if host is None else host
        port = settings.statsd_port if port is None else port
        self.udp = socket.socket(_family(self.host), socket.SOCK_DGRAM)
        self.tcp = socket.socket(_family(self.host), socket.SOCK_STREAM)
        try:
            self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self.udp.bind((self.host, port))
            # The TCP port is the UDP one (an ephemeral UDP port picked by port 0 included).
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((self.host, self.udp.getsockname()[1]))
            self.tcp.listen(MAX_CONNECTIONS)
        except OSError:
            self.udp.close()
            self.tcp.close()
            raise
        self.port = self.udp.getsockname()[1]
        self.udp.settimeout(0.5)
        self.tcp.settimeout(0.5)
        self._stopped = threading.Event()
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._threads: list[threading.Thread] = []
        self._logged_at = 0.0
        self._unlogged = 0
        self._log_lock = threading.Lock()

    # -- running -------------------------------------------------------------------------
    def start(self) -> Listener:
        """Serve in background threads (daemon threads: they end with the process)."""
        for target in (self._serve_udp, self._serve_tcp):
            thread = threading.Thread(target=target, name=f"statsd-{target.__name__}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def serve_forever(self) -> None:
        """Serve until ``stop`` (in this thread for UDP, another for TCP)."""
        thread = threading.Thread(target=self._serve_tcp, name="statsd-tcp", daemon=True)
        thread.start()
        self._threads.append(thread)
        self._serve_udp()

    def stop(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)
        self.udp.close()
        self.tcp.close()

    # -- UDP -----------------------------------------------------------------------------
    def _next(self, call: Callable):
        """What ``call`` (a socket's recv or accept, with a timeout) gives; None when it
        timed out, or the listener was stopped (which closes the sockets)."""
        try:
            return call()
        except TimeoutError:
            return None
        except OSError:
            if self._stopped.is_set():
                return None
            raise

    def _serve_udp(self) -> None:
        while not self._stopped.is_set():
            packet = self._next(lambda: self.udp.recv(65535))
            if packet is None:
                continue
            packets = [packet]
            # What else the kernel holds is taken now and pushed together: under load one
            # push carries many packets, at rest each packet is pushed as it comes.
            self.udp.setblocking(False)
            try:
                while len(packets) < READ_MOST:
                    packets.append(self.udp.recv(65535))
            except (BlockingIOError, InterruptedError):
                pass
            finally:
                self.udp.settimeout(0.5)
            items, refused = self.encoder.encode(
                (line for packet in packets
                 for line in packet.decode("utf-8", "replace").split("\n")), self.clock())
            try:
                self._push(items, refused, {"packets": len(packets),
                                            "lines": len(items) + len(refused)})
            except StoreUnavailable:
                pass  # logged; the next packets are tried again

    # -- TCP -----------------------------------------------------------------------------
    def _serve_tcp(self) -> None:
        while not self._stopped.is_set():
            accepted = self._next(self.tcp.accept)
            if accepted is None:
                continue
            connection, _address = accepted
            if not self._connections.acquire(blocking=False):
                connection.close()  # too many senders at once
                continue
            threading.Thread(target=self._serve_connection, args=(connection,),
                             name="statsd-connection", daemon=True).start()

    def _serve_connection(self, connection: socket.socket) -> None:
        try:
            connection.settimeout(IDLE)
            pending = b""
            while not self._stopped.is_set():
                chunk = connection.recv(65536)
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                if len(pending) > MAX_LINE * 4:  # a line with no end in sight: refused
                    complete.append(pending[:MAX_LINE + 1])
                    pending = b""
                if complete:
                    self._push_lines(complete)
            if pending.strip():  # the last line, with no newline after it
                self._push_lines([pending])
        except (OSError, StoreUnavailable) as exc:
            log.warning("statsd: a TCP sender's connection ended: %s", exc)
        finally:
            connection.close()
            self._connections.release()

    # -- both ----------------------------------------------------------------------------
    def _push_lines(self, lines: list[bytes]) -> None:
        items, refused = self.encoder.encode(
            (line.decode("utf-8", "replace") for line in lines), self.clock())
        self._push(items, refused, {"lines": len(items) + len(refused)})

    def _push(self, items: list[str], refused: list[Refused], counts: dict[str, int]) -> None:
        counts = {**counts, "events": len(items), "refused": len(refused)}
        deadline = time.monotonic() + PUSH_PATIENCE
        while True:
            try:
                self.buffer.push(items, counts)
                break
            except StoreUnavailable as exc:
                if time.monotonic() > deadline:
                    log.error("statsd: %d events lost: the buffer's Redis is unavailable "
                              "(%s)", len(items), exc)
                    raise
                time.sleep(0.2)
        if refused:
            self._log_refused(refused)

    def _log_refused(self, refused: list[Refused]) -> None:
        with self._log_lock:
            now = time.monotonic()
            if now - self._logged_at < LOG_EVERY:
                self._unlogged += len(refused)
                return
            more = f" ({self._unlogged} more refused since the last one logged)" \
                if self._unlogged else ""
            log.warning("statsd: refused %r: %s%s", refused[0].line, refused[0].reason, more)
            self._logged_at, self._unlogged = now, len(refused) - 1


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
