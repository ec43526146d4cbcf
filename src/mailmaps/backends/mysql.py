"""``mysql:/etc/postfix/virtual.cf``: a MySQL or MariaDB table, per mysql_table(5)
(``dict_mysql.c``), through PyMySQL.

Settings: ``hosts`` (``host``, ``inet:host:port``, ``unix:/path``; ``localhost`` means the
default UNIX socket, as in the MySQL client library), ``user``, ``password``, ``dbname``,
``query`` or the legacy ``table``/``select_field``/``where_field``/``additional_conditions``,
``result_format``, ``domain``, ``expansion_limit``, ``option_file``/``option_group``,
``require_result_set`` and the ``tls_*`` settings, and from Postfix 3.9 ``retry_interval`` and
``idle_interval`` (seconds, default 60).

Hosts are used as Postfix uses them: an open connection is reused (UNIX sockets first); when there
is none, the untried and failed hosts are tried in random order, UNIX sockets first, and a host
that fails is skipped for ``retry_interval`` seconds; a connection idle for ``idle_interval``
seconds is closed.  When no host
answers, or a query fails, the lookup is a temporary error ("try again later"), never "not found".
Every column of every row is a result.  Values substituted into the query are escaped with the
connection's own escaping (``mysql_real_escape_string``), so the template supplies the quotes.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mailmaps.backends._cfparser import TableConfig
from mailmaps.backends._sql import SqlTable
from mailmaps.errors import BackendUnavailable, TemporaryLookupError
from mailmaps.table import OpenOptions

__all__ = ["MysqlTable"]

log = logging.getLogger("mailmaps")

_RETRY_CONN_MAX = 100
_DEFAULT_SOCKET = "/run/mysqld/mysqld.sock"


@dataclass
class _Host:
    spec: str  # as written in "hosts"
    unix: bool
    name: str | None  # host name, socket path, or None for the default socket
    port: int = 0
    conn: Any = None
    failed_until: float = 0.0  # 0: untried or active
    last_used: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> _Host:
        text = spec
        if text.startswith("unix:"):
            return cls(spec, True, text[5:])
        if text.startswith("inet:"):
            text = text[5:]
        port = 0
        if ":" in text:
            text, _, service = text.rpartition(":")
            port = _inet_port(service)
        if text.lower() == "localhost":
            return cls(spec, True, None, port)
        return cls(spec, False, text, port)


def _inet_port(service: str) -> int:
    if service.isdigit():
        return int(service)
    import socket

    try:
        return socket.getservbyname(service, "tcp")
    except OSError:
        from mailmaps.errors import ConfigError

        raise ConfigError(f"unknown service: {service}/tcp") from None


class MysqlTable(SqlTable):
    """A ``mysql:`` table; thread-safe (one query at a time per table, as in Postfix)."""

    map_type: ClassVar[str] = "mysql"
    #: Seconds to wait for a server to accept and greet a connection.
    connect_timeout: ClassVar[float] = 10.0
    #: Seconds to wait for a server's answer (its greeting included) before it counts as down.
    read_timeout: ClassVar[float] = 60.0

    def __init__(self, name: str, options: OpenOptions, config: TableConfig) -> None:
        try:
            import pymysql
        except ImportError as exc:
            raise BackendUnavailable("mysql", "mysql", str(exc)) from exc
        self._pymysql = pymysql
        super().__init__(name, options, config)
        hosts = config.get_str("hosts", "").replace(",", " ").split()
        self.hosts = [_Host.parse(h) for h in hosts or ["localhost"]]
        self.retry_interval = config.get_int("retry_interval", 60)
        self.idle_interval = config.get_int("idle_interval", 60)
        self._lock = threading.Lock()

    def _read_settings(self, config: TableConfig) -> None:
        self.user = config.get_str("user", "")
        self.password = config.get_str("password", "")
        self.dbname = config.get_str("dbname", "", 1)
        self.option_file = config.get_str("option_file", None)
        self.option_group = config.get_str("option_group", "client")
        self.require_result_set = config.get_bool("require_result_set", True)
        tls = {
            "key": config.get_str("tls_key_file", None),
            "cert": config.get_str("tls_cert_file", None),
            "ca": config.get_str("tls_CAfile", None),
            "capath": config.get_str("tls_CApath", None),
            "cipher": config.get_str("tls_ciphers", None),
        }
        self._ssl: dict[str, str | bool] | None = {k: v for k, v in tls.items() if v} or None
        if self._ssl is not None and config.has("tls_verify_cert"):
            self._ssl["check_hostname"] = config.get_bool("tls_verify_cert", False)

    # -- hosts ----------------------------------------------------------------------------

    def _find(self, active: bool, unix: bool, now: float) -> _Host | None:
        candidates = [
            h
            for h in self.hosts
            if h.unix == unix
            and (h.conn is not None if active else h.conn is None and h.failed_until <= now)
        ]
        return random.choice(candidates) if candidates else None

    def _active(self) -> _Host | None:
        now = time.monotonic()
        for host in self.hosts:  # the idle timer
            if host.conn is not None and now - host.last_used > self.idle_interval:
                self._close(host)
        found = self._find(True, True, now) or self._find(True, False, now)
        if found is not None:
            return found
        for _ in range(_RETRY_CONN_MAX - 1):
            now = time.monotonic()
            found = self._find(False, True, now) or self._find(False, False, now)
            if found is None:
                return None
            self._connect(found)
            if found.conn is not None:
                return found
        return None

    def _connect(self, host: _Host) -> None:
        pymysql = self._pymysql
        kwargs: dict[str, Any] = {
            "user": self.user or None,
            "password": self.password,
            "database": self.dbname,
            "charset": "utf8mb4",
            "conv": {},  # every value as the server's text, as the C API gives it
            "client_flag": pymysql.constants.CLIENT.MULTI_RESULTS
            | pymysql.constants.CLIENT.MULTI_STATEMENTS,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "write_timeout": self.read_timeout,
            "autocommit": True,
        }
        if host.unix:
            kwargs["unix_socket"] = host.name or self._default_socket()
        else:
            kwargs["host"] = host.name
            kwargs["port"] = host.port or 3306
        if self.option_file:
            kwargs["read_default_file"] = self.option_file
            kwargs["read_default_group"] = self.option_group or "client"
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
        try:
            host.conn = pymysql.connect(**kwargs)
        except Exception as exc:  # pymysql.err.Error, OSError, ssl errors
            log.warning("connect to mysql server %s: %s", host.spec, _reason(exc))
            self._down(host)
            return
        host.failed_until = 0.0
        host.last_used = time.monotonic()

    def _default_socket(self) -> str:
        return _DEFAULT_SOCKET

    def _down(self, host: _Host) -> None:
        self._close(host)
        host.failed_until = time.monotonic() + self.retry_interval

    @staticmethod
    def _close(host: _Host) -> None:
        conn, host.conn = host.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.close()

    # -- queries --------------------------------------------------------------------------

    def _run(self, key: str) -> Sequence[Sequence[object]]:
        with self._lock:
            while True:
                host = self._active()
                if host is None:
                    raise TemporaryLookupError(
                        f"{self}: no MySQL server available: try again later"
                    )
                rows = self._query(host, key)
                if rows is not None:
                    host.last_used = time.monotonic()
                    return rows

    def _query(self, host: _Host, key: str) -> list[tuple[object, ...]] | None:
        conn = host.conn
        query = self.ctx.expand_query(key, lambda s: conn.escape(s)[1:-1])
        assert query is not None
        problem = ""
        first: list[tuple[object, ...]] | None = None
        try:
            with conn.cursor() as cursor:
                cursor.execute(query)
                while True:
                    if cursor.description is not None:
                        rows = list(cursor.fetchall())
                        if first is None:
                            first = rows
                        elif not problem:
                            problem = (
                                "query failed: multiple result sets returning data are not "
                                "supported"
                            )
                    if not cursor.nextset():
                        break
        except self._pymysql.err.Error as exc:
            problem = f"query failed: {_reason(exc)}"
        except OSError as exc:
            problem = f"query failed: {exc}"
        if not problem and first is None and self.require_result_set:
            problem = "query failed: query returned no result set(require_result_set = yes)"
        if problem:
            log.warning("%s: %s", self, problem)
            self._down(host)
            return None
        return first or []

    def close(self) -> None:
        with self._lock:
            for host in self.hosts:
                self._close(host)
        super().close()


def _reason(exc: BaseException) -> str:
    args: tuple[object, ...] = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        return str(args[1])
    return str(exc)
