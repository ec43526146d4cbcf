"""``tcp:host:port``: a lookup server spoken to in tcp_table(5)'s protocol (``dict_tcp.c``).

The client sends ``get KEY`` and a newline, where ``%``, white space and unprintable bytes of the
key are written ``%XX``; the server answers with one line of at most 4096 bytes: ``200 VALUE``
(found; ``%XX`` decoded), ``500 text`` (not found) or ``400 text`` (temporary error).  Anything
else, a reply that is too long, or a broken connection is a temporary error.  A connection is
kept open between lookups; when the server cannot be reached or drops the connection, the
client tries again once a second, ten times, before it gives up.

``tcp:`` is a pattern table: address searches give it full addresses only, and keys reach the
server in the case they were given.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import ClassVar

from mailmaps.backends._base import BaseTable
from mailmaps.errors import ConfigError, TemporaryLookupError
from mailmaps.table import OpenOptions
from mailmaps.text import printable

__all__ = ["TcpTable", "hex_quote", "hex_unquote", "parse_endpoint"]

log = logging.getLogger("mailmaps")

MAX_REPLY = 4096  # DICT_TCP_MAXLEN
_HEX = "0123456789abcdefABCDEF"


def hex_quote(raw: bytes) -> bytes:
    """``%XX``-encode ``%``, white space and unprintable bytes (``hex_quote()``)."""
    out = bytearray()
    for byte in raw:
        if byte != 0x25 and 0x20 < byte < 0x7F:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def hex_unquote(text: bytes) -> bytes | None:
    """Decode ``%XX`` (either case); ``None`` for a malformed escape (``hex_unquote()``)."""
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        byte = text[i]
        if byte == 0x25:
            pair = text[i + 1 : i + 3].decode("ascii", "replace")
            if len(pair) != 2 or any(c not in _HEX for c in pair):
                return None
            out.append(int(pair, 16))
            i += 3
            continue
        out.append(byte)
        i += 1
    return bytes(out)


def parse_endpoint(text: str) -> tuple[str, str]:
    """``host:port`` or ``[host]:port`` (``inet_connect()``): return host and port."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"bad address syntax: {text}")
        return host, rest[1:]
    host, sep, port = text.rpartition(":")
    if not sep or not port:
        raise ConfigError(f'missing port number in "{text}"')
    return host or "localhost", port


class TcpTable(BaseTable):
    """A ``tcp:`` table client (thread-safe: one request at a time, on one connection)."""

    map_type: ClassVar[str] = "tcp"
    fixed_keys: ClassVar[bool] = False
    replayable: ClassVar[bool] = False
    unauthenticated: ClassVar[bool] = True
    #: Seconds allowed for connecting, sending and each reply (DICT_TCP_TMOUT).
    timeout: ClassVar[float] = 100.0
    #: Connection attempts per lookup, and the pause between them (DICT_TCP_MAXTRY, 1 s).
    max_tries: ClassVar[int] = 10
    retry_delay: ClassVar[float] = 1.0

    def __init__(self, name: str, options: OpenOptions) -> None:
        super().__init__(name, options)
        self.host, self.port = parse_endpoint(name)
        self._sock: socket.socket | None = None
        self._file: socket.SocketIO | None = None
        self._buffer = b""
        self._lock = threading.Lock()

    def _connect(self) -> bool:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            log.warning("connect to TCP map %s: %s", self._name, exc.strerror or exc)
            return False
        self._sock = sock
        self._buffer = b""
        return True

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _read_line(self) -> bytes | None:
        """One reply line without its newline; ``None`` at EOF or past :data:`MAX_REPLY`."""
        sock = self._sock
        assert sock is not None
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_REPLY:
                log.warning(
                    "read TCP map reply from %s: text longer than %d", self._name, MAX_REPLY
                )
                return None
            chunk = sock.recv(65536)
            if not chunk:
                log.warning("read TCP map reply from %s: unexpected EOF", self._name)
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        if len(line) > MAX_REPLY:
            log.warning("read TCP map reply from %s: text longer than %d", self._name, MAX_REPLY)
            return None
        return line

    def _lookup(self, key: str) -> str | None:
        request = b"get " + hex_quote(key.encode("utf-8", "surrogateescape")) + b"\n"
        with self._lock:
            line = None
            for tries in range(1, self.max_tries + 1):
                if self._sock is not None or self._connect():
                    try:
                        assert self._sock is not None
                        self._sock.sendall(request)
                        line = self._read_line()
                    except OSError as exc:
                        log.warning("read TCP map reply from %s: %s", self._name, exc)
                        line = None
                    if line is not None:
                        break
                    self._disconnect()
                if tries >= self.max_tries:
                    raise TemporaryLookupError(f"{self}: lookup error: server not answering")
                time.sleep(self.retry_delay)
            assert line is not None
            return self._reply(line)

    def _reply(self, line: bytes) -> str | None:
        shown = printable(line[:100], substitute="_")
        value = hex_unquote(line[4:]) if len(line) >= 4 else None
        if (
            len(line) < 4
            or not line[:3].isdigit()
            or line[3:4] not in (b" ", b"\t", b"\v", b"\f", b"\r")
            or value is None
        ):
            log.warning("read TCP map reply from %s: malformed reply: %s", self._name, shown)
            self._disconnect()
            raise TemporaryLookupError(f"{self}: malformed reply: {shown}")
        code = line[:1]
        if code == b"5":
            return None
        if code == b"2":
            # A C string: the value ends at a decoded NUL, as in Postfix.
            return value.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if code == b"4":
            self._disconnect()
            raise TemporaryLookupError(f"{self}: server reports a temporary error: {shown}")
        log.warning("read TCP map reply from %s: bad status code: %s", self._name, shown)
        self._disconnect()
        raise TemporaryLookupError(f"{self}: bad status code: {shown}")

    def close(self) -> None:
        with self._lock:
            self._disconnect()
        super().close()
