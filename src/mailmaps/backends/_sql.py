"""The part of ``mysql:``, ``pgsql:`` and ``sqlite:`` that does not depend on the database.

A lookup, as Postfix's ``dict_{mysql,pgsql,sqlite}.c`` do it: the key (already folded to lower
case by :class:`BaseTable`) must pass the ``domain`` filter, then the query template is expanded
with the key, each piece quoted by the database's own string escaping; the rows that come back go
through ``result_format`` and are joined with commas (:mod:`mailmaps.backends._dbcommon`).
Subclasses connect and run one query (:meth:`SqlTable._run`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from mailmaps.backends._base import BaseTable, lookup_in_chunks
from mailmaps.backends._cfparser import TableConfig
from mailmaps.backends._dbcommon import QueryContext, legacy_sql_query
from mailmaps.errors import ConfigError, TemporaryLookupError
from mailmaps.table import OpenOptions

log = logging.getLogger("mailmaps")

__all__ = ["QueryFailed", "Server", "ServerTable", "SqlTable", "reason"]

_RETRY_CONN_MAX = 100  # connection attempts per lookup (RETRY_CONN_MAX)


class SqlTable(BaseTable):
    """Base of the SQL tables: settings, templates, the ``domain`` filter and results."""

    fixed_keys: ClassVar[bool] = True
    #: Whether every column of every row is a result (mysql, pgsql) or only the first
    #: column (sqlite).
    all_columns: ClassVar[bool] = True

    def __init__(self, name: str, options: OpenOptions, config: TableConfig) -> None:
        super().__init__(name, options)
        self.config = config
        self._read_settings(config)  # first: Postfix reports a missing dbname before the rest
        result_format = config.get_str("result_format", "%s", 1)
        self.expansion_limit = config.get_int("expansion_limit", 0)
        query = config.get_str("query", None)
        if not query:
            query = self._legacy_query(config)
        self.ctx = QueryContext(str(self), name, query, result_format)
        self.ctx.parse_domain(config, options)

    def _read_settings(self, config: TableConfig) -> None:
        """Read the database's own settings (connection, credentials)."""

    def _legacy_query(self, config: TableConfig) -> str:
        return legacy_sql_query(config)

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        """Read the table's settings (``name`` is a ``/path.cf`` or a main.cf prefix).

        :raises ConfigError: opened for writing, the file cannot be read, or a setting is bad.
        """
        if writable:
            raise ConfigError(f"{cls.map_type}:{name} map requires O_RDONLY access mode")
        return cls(name, options, TableConfig(name, options.main_config))

    @property
    def query(self) -> str:
        """The query template."""
        return self.ctx.query

    def _lookup(self, key: str) -> str | None:
        if not self._queryable(key):
            return None
        return self._results(key, self._run(key))

    def _queryable(self, key: str) -> bool:
        """Whether ``key`` (prepared) passes the ``domain`` filter and fills the template."""
        ctx = self.ctx
        if ctx.domain is not None and not ctx.check_domain(key):
            return False
        return ctx.fillable(key)

    def _results(self, key: str, rows: Sequence[Sequence[object]]) -> str | None:
        if self.all_columns:
            values = [value for row in rows for value in row]
        else:
            values = [row[0] if row else None for row in rows]
        return self.ctx.format_results(values, key, self.expansion_limit, self._who)

    @property
    def _who(self) -> str:
        return f"dict_{self.map_type}_lookup"

    def _run(self, key: str) -> Sequence[Sequence[object]]:
        """Expand the query for ``key`` with this database's quoting, run it and return the
        rows.

        :raises TemporaryLookupError: no server answered, or the query failed.
        """
        raise NotImplementedError


@dataclass
class Server:
    """One entry of a table's ``hosts`` list and its connection."""

    spec: str  # as written in "hosts", for diagnostics
    rank: int  # lower ranks are tried first: UNIX sockets 0, TCP 1, pgsql URIs 2
    name: str | None  # host name, socket path or URI; None for the driver's default socket
    port: int = 0
    conn: Any = None
    failed_until: float = 0.0  # skipped until then after a failure
    last_used: float = 0.0


class ServerTable(SqlTable):
    """An SQL table served by a list of database servers (mysql, pgsql), used as Postfix uses
    them (``plmysql_*``, ``plpgsql_*``):

    * an open connection is reused, connections to UNIX sockets first, then TCP, then (pgsql)
      connection URIs;
    * when there is none, the untried and failed hosts are tried in random order, in the same
      order of kinds; a host that fails to connect or to answer a query is closed and skipped for
      ``retry_interval`` seconds, and the query moves on to the next host;
    * a connection idle for ``idle_interval`` seconds is closed;
    * when no host is left, the lookup is a temporary error: never "not found".

    Subclasses parse hosts (:meth:`_parse_host`), connect (:meth:`_connect_server`) and query
    (:meth:`_query_server`).  Lookups of one table are serialized, as in Postfix.
    """

    #: The product name in diagnostics ("mysql", "pgsql").
    server_kind: ClassVar[str] = ""
    replayable: ClassVar[bool] = False

    def __init__(self, name: str, options: OpenOptions, config: TableConfig) -> None:
        super().__init__(name, options, config)
        hosts = config.get_str("hosts", "").replace(",", " ").split()
        self.servers = [self._parse_host(h) for h in hosts or ["localhost"]]
        self.retry_interval = config.get_int("retry_interval", 60)
        self.idle_interval = config.get_int("idle_interval", 60)
        self._lock = threading.Lock()
        # Several queries go in one round trip only for a plain SELECT (the template without
        # a trailing ";"); anything else is sent one query at a time.
        template = self.ctx.query.strip().rstrip(";").strip()
        self._pipelined_query = (
            template if template[:7].upper() == "SELECT " and ";" not in template else None
        )

    #: Keys sent to the server in one round trip by :meth:`lookup_many`.
    pipeline_depth: ClassVar[int] = 64

    def lookup_many(self, keys: Sequence[str]) -> list[str | None]:
        """Look up many keys, sending up to :attr:`pipeline_depth` queries in one round trip
        where the server allows it; the answers (and errors) are those of :meth:`lookup`."""
        if len(keys) < 2 or self._pipelined_query is None:
            return super().lookup_many(keys)
        return lookup_in_chunks(keys, self.pipeline_depth, self._lookup_chunk)

    def _lookup_chunk(self, keys: Sequence[str], answers: list[str | None]) -> None:
        prepared: list[str | None] = []
        for key in keys:
            ready = key if self._plain else self.prepare_key(key)
            prepared.append(ready if ready is not None and self._queryable(ready) else None)
        todo = [k for k in prepared if k is not None]
        rows = self._run_batch(todo) if len(todo) > 1 else None
        batch = iter(rows or ())
        for key, ready in zip(keys, prepared, strict=True):
            if ready is None:
                answers.append(None)
                continue
            value = self._results(ready, next(batch) if rows is not None else self._run(ready))
            if value is not None and self._utf8:
                value = self._check_value(key, value)
            answers.append(value)

    def _run_batch(self, keys: list[str]) -> list[Sequence[Sequence[object]]] | None:
        """The rows of each key's query, sent together on the active connection; ``None``
        when that did not work out (the keys are then looked up one at a time, with the usual
        failover and errors)."""
        with self._lock:
            server = self._active()
            if server is None:
                return None
            try:
                rows = self._query_batch(server, keys)
            except Exception as exc:  # any surprise: drop the connection, go one at a time
                log.debug("%s: pipelined queries failed: %s", self, exc)
                rows = None
            if rows is None or len(rows) != len(keys):
                self._close_server(server)
                return None
            server.last_used = time.monotonic()
            return rows

    def _query_batch(
        self, server: Server, keys: list[str]
    ) -> list[Sequence[Sequence[object]]] | None:
        """Run the queries of ``keys`` in one round trip; ``None`` if not possible."""
        return None

    def _parse_host(self, spec: str) -> Server:
        raise NotImplementedError

    def _connect_server(self, server: Server) -> Any:
        """Open a connection; raise with the driver's reason when that fails."""
        raise NotImplementedError

    def _query_server(self, server: Server, key: str) -> Sequence[Sequence[object]]:
        """Run the query for ``key`` on the server's connection; raise
        :class:`QueryFailed` with Postfix's warning text when it fails."""
        raise NotImplementedError

    @staticmethod
    def _disconnect(conn: Any) -> None:
        with contextlib.suppress(Exception):  # it may be broken already
            conn.close()

    def _find(self, active: bool, now: float) -> Server | None:
        """A random server of the lowest rank that is connected (``active``) or, else, that
        may be tried now."""
        candidates = [
            s
            for s in self.servers
            if (s.conn is not None if active else s.conn is None and s.failed_until <= now)
        ]
        if not candidates:
            return None
        best = min(s.rank for s in candidates)
        return random.choice([s for s in candidates if s.rank == best])

    def _active(self) -> Server | None:
        now = time.monotonic()
        for server in self.servers:  # the idle timer
            if server.conn is not None and now - server.last_used > self.idle_interval:
                self._close_server(server)
        found = self._find(True, now)
        if found is not None:
            return found
        for _ in range(_RETRY_CONN_MAX - 1):
            now = time.monotonic()
            found = self._find(False, now)
            if found is None:
                return None
            try:
                found.conn = self._connect_server(found)
            except Exception as exc:
                log.warning(
                    "connect to %s server %s: %s", self.server_kind, found.spec, reason(exc)
                )
                self._down(found)
                continue
            found.failed_until = 0.0
            found.last_used = time.monotonic()
            return found
        return None

    def _down(self, server: Server) -> None:
        self._close_server(server)
        server.failed_until = time.monotonic() + self.retry_interval

    def _close_server(self, server: Server) -> None:
        conn, server.conn = server.conn, None
        if conn is not None:
            self._disconnect(conn)

    def _run(self, key: str) -> Sequence[Sequence[object]]:
        with self._lock:
            while True:
                server = self._active()
                if server is None:
                    raise TemporaryLookupError(
                        f"{self}: no {self.server_kind} server is available: try again later"
                    )
                try:
                    rows = self._query_server(server, key)
                except QueryFailed as exc:
                    log.warning("%s", exc)
                    self._down(server)
                    continue
                server.last_used = time.monotonic()
                return rows

    def close(self) -> None:
        with self._lock:
            for server in self.servers:
                self._close_server(server)
        super().close()


class QueryFailed(Exception):
    """A query failed on one server: the table moves on to the next."""


def reason(exc: BaseException) -> str:
    """A driver exception's message, without the numeric code PyMySQL puts first."""
    args: tuple[object, ...] = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        return str(args[1])
    return str(exc).strip()
