"""``socketmap:inet:host:port:name`` and ``socketmap:unix:/path:name``: Sendmail's socketmap
protocol, per socketmap_table(5) (``dict_sockmap.c``).

The request is the netstring ``NAME KEY`` (``len:bytes,``), where NAME is the part of the table
name after its last colon.  The reply is a netstring of at most 100,000 bytes whose text before
the first space is a status: ``OK value`` (found; ``OK `` with nothing after the space is an empty
value), ``NOTFOUND`` (not found), ``TEMP``/``TIMEOUT`` (temporary error), ``PERM`` (a
configuration error); a bare ``OK`` is "not found", as in Postfix, and any other status is a
temporary error.  A connection that the server closed is re-opened once per lookup; other
failures are temporary errors.  Connections are closed after 10 idle seconds and re-opened after
100 seconds.

``socketmap:`` is a pattern table: address searches give it full addresses only, and keys reach
the server in the case they were given.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import ClassVar

from mailmaps.backends._base import BaseTable
from mailmaps.backends.tcp import parse_endpoint
from mailmaps.errors import ConfigError, PermanentLookupError, TemporaryLookupError
from mailmaps.table import OpenOptions
from mailmaps.text import printable

__all__ = ["SocketmapTable", "netstring"]

log = logging.getLogger("mailmaps")

MAX_REPLY = 100000  # socketmap_max_reply_size
MAX_IDLE = 10.0  # an idle connection is closed after this many seconds
MAX_TTL = 100.0  # a connection is re-opened after this many seconds


def netstring(data: bytes) -> bytes:
    """``data`` as a netstring: ``len:data,``."""
    return b"%d:%s," % (len(data), data)


class _NetstringError(Exception):
    def __init__(self, text: str, eof: bool = False) -> None:
        super().__init__(text)
        self.eof = eof


class SocketmapTable(BaseTable):
    """A ``socketmap:`` client (thread-safe: one request at a time per table)."""

    map_type: ClassVar[str] = "socketmap"
    fixed_keys: ClassVar[bool] = False
    replayable: ClassVar[bool] = False
    unauthenticated: ClassVar[bool] = True
    #: Seconds allowed for connecting, sending and receiving (socketmap's 100 s).
    timeout: ClassVar[float] = 100.0

    def __init__(self, name: str, options: OpenOptions) -> None:
        super().__init__(name, options)
        endpoint, colon, self.socketmap_name = name.rpartition(":")
        if not colon:
            raise ConfigError("socketmap requires server:socketmap argument")
        transport, colon, address = endpoint.partition(":")
        if not colon or not transport or not address:
            raise ConfigError(f'need service transport:endpoint instead of "{endpoint}"')
        if transport == "inet":
            self._address: str | tuple[str, str] = parse_endpoint(address)
        elif transport in ("unix", "local"):
            self._address = address
        else:
            raise ConfigError(f"invalid transport name: {transport} in service: {endpoint}")
        self._sock: socket.socket | None = None
        self._opened = 0.0
        self._used = 0.0
        self._buffer = bytearray()
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        address = self._address
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(address)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection(address, timeout=self.timeout)
        self._opened = time.monotonic()
        self._buffer.clear()
        return sock

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _recv(self, sock: socket.socket) -> None:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise _NetstringError("time limit exceeded") from None
        except OSError as exc:
            raise _NetstringError("unexpected disconnect", eof=True) from exc
        if not chunk:
            raise _NetstringError("unexpected disconnect", eof=True)
        self._buffer += chunk

    def _read_netstring(self, sock: socket.socket) -> bytes:
        buf = self._buffer
        length = 0
        i = 0
        while True:
            if i >= len(buf):
                self._recv(sock)
                continue
            ch = buf[i]
            i += 1
            if ch == 0x3A:  # ':'
                break
            if not 0x30 <= ch <= 0x39:
                raise _NetstringError("input format error")
            length = length * 10 + ch - 0x30
            if length > MAX_REPLY:
                raise _NetstringError("input exceeds size limit")
        while len(buf) < i + length + 1:
            self._recv(sock)
        if buf[i + length] != 0x2C:  # ','
            raise _NetstringError("input format error")
        data = bytes(buf[i : i + length])
        del buf[: i + length + 1]
        return data

    def _lookup(self, key: str) -> str | None:
        request = netstring(f"{self.socketmap_name} {key}".encode("utf-8", "surrogateescape"))
        with self._lock:
            reply = self._exchange(request)
        status, space, payload = reply.partition(b" ")
        if status == b"OK":
            # A C string: the value ends at a NUL, as in Postfix.
            return payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") if space else None
        if status == b"NOTFOUND":
            return None
        kind = {b"TEMP": "temporary", b"TIMEOUT": "timeout", b"PERM": "permanent"}.get(
            status, "unknown"
        )
        reason = printable(payload.lstrip(b" \t\n\r\v\f")[:200], substitute="?")
        text = f"{self} socketmap server {kind} error{': ' if reason else ''}{reason}"
        log.warning("%s", text)
        if kind == "permanent":
            raise PermanentLookupError(text)
        raise TemporaryLookupError(text)

    def _exchange(self, request: bytes) -> bytes:
        for attempt in range(2):
            now = time.monotonic()
            if self._sock is not None and (
                now - self._used > MAX_IDLE or now - self._opened > MAX_TTL
            ):
                self._disconnect()
            if self._sock is None:
                try:
                    self._sock = self._connect()
                except OSError as exc:
                    text = f"table {self} lookup error: {exc.strerror or exc}"
                    log.warning("%s", text)
                    raise TemporaryLookupError(text) from exc
            sock = self._sock
            try:
                sock.sendall(request)
                reply = self._read_netstring(sock)
            except (_NetstringError, OSError) as exc:
                self._disconnect()
                eof = isinstance(exc, _NetstringError) and exc.eof
                if not isinstance(exc, _NetstringError):
                    eof = not isinstance(exc, TimeoutError)
                if attempt == 0 and eof:
                    continue  # a server restart: try once more on a new connection
                reason = str(exc) if isinstance(exc, _NetstringError) else "unexpected disconnect"
                text = f"table {self} lookup error: {reason}"
                log.warning("%s", text)
                raise TemporaryLookupError(text) from exc
            self._used = time.monotonic()
            return reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._disconnect()
        super().close()
