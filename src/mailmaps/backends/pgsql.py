"""``pgsql:/etc/postfix/virtual.cf``: a PostgreSQL table, per pgsql_table(5) (``dict_pgsql.c``),
through libpq (psycopg's ``pq`` layer: the same library calls Postfix makes).

Settings: ``hosts`` (``host``, ``inet:host:port``, ``unix:/socket/dir``, or a connection URI
``postgresql://user:pw@host:port/db`` that is used as is: ``user``, ``password`` and ``dbname``
do not apply to it), ``user``, ``password``, ``dbname``, ``query`` or the legacy
``select_function`` (``SELECT fn('%s')``) or ``table``/``select_field``/``where_field``/
``additional_conditions``, ``result_format``, ``domain`` and ``expansion_limit``; and from
Postfix 3.8/3.9 ``encoding``, ``retry_interval`` and ``idle_interval``.

Hosts are used as for mysql: (:class:`~mailmaps.backends._sql.ServerTable`): sockets, then TCP,
then URIs, failed hosts skipped for a minute, any failure a temporary error.  Every column of
every row is a result, NULL counting as an empty string (``PQgetvalue()``), which is skipped
with a warning.  Values substituted into the query are escaped by
``PQescapeStringConn`` for the connection.

The client encoding is ``LATIN1`` unless ``encoding`` says otherwise, as Postfix 3.7 hard-wires
it: keys are sent as their UTF-8 bytes and compared by the server as Latin-1 text, so a
non-ASCII key does not match a UTF-8 row, and a non-ASCII result comes back as Latin-1 bytes,
which is not UTF-8 and therefore an error.  Set ``encoding = UTF8`` (what Postfix 3.8 and later
do by default) for non-ASCII data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from mailmaps.backends._cfparser import TableConfig
from mailmaps.backends._sql import QueryFailed, Server, ServerTable
from mailmaps.errors import BackendUnavailable, ConfigError
from mailmaps.table import OpenOptions

__all__ = ["PgsqlTable"]


class PgsqlTable(ServerTable):
    """A ``pgsql:`` table; thread-safe (one query at a time per table, as in Postfix)."""

    map_type: ClassVar[str] = "pgsql"
    server_kind: ClassVar[str] = "pgsql"
    #: Seconds to wait for a connection (libpq's ``connect_timeout``; Postfix sets none).
    connect_timeout: ClassVar[int] = 10

    def __init__(self, name: str, options: OpenOptions, config: TableConfig) -> None:
        try:
            from psycopg import conninfo, pq
        except ImportError as exc:
            raise BackendUnavailable("pgsql", "sql", str(exc)) from exc
        self._pq = pq
        self._make_conninfo = conninfo.make_conninfo
        super().__init__(name, options, config)

    def _read_settings(self, config: TableConfig) -> None:
        self.user = config.get_str("user", "")
        self.password = config.get_str("password", "")
        self.dbname = config.get_str("dbname", "", 1)
        self.encoding = config.get_str("encoding", "LATIN1")
        if not self.encoding.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{self.name}: bad encoding: {self.encoding}")

    def _legacy_query(self, config: TableConfig) -> str:
        function = config.get_str("select_function", None)
        if function:
            return f"SELECT {function}('%s')"
        return super()._legacy_query(config)

    def _parse_host(self, spec: str) -> Server:
        """``postgresql://...`` (a URI), ``unix:/dir``, ``[inet:]host[:port]``."""
        if spec.startswith("postgresql:"):
            return Server(spec, 2, spec)
        text = spec[5:] if spec.startswith(("unix:", "inet:")) else spec
        if text and not text.startswith("/"):
            host, colon, port = text.rpartition(":")
            if not colon:
                return Server(spec, 1, text)
            return Server(spec, 1, host, int(port) if port.isdigit() else 0)
        return Server(spec, 0, text)

    def _connect_server(self, server: Server) -> Any:
        make = self._make_conninfo
        if server.rank == 2:
            assert server.name is not None
            info = make(server.name, connect_timeout=self.connect_timeout)
        else:
            params: dict[str, Any] = {"connect_timeout": self.connect_timeout}
            if server.name:
                params["host"] = server.name
            if server.port:
                params["port"] = server.port
            for key, value in (
                ("dbname", self.dbname),
                ("user", self.user),
                ("password", self.password),
            ):
                if value:
                    params[key] = value
            info = make("", **params)
        conn = self._pq.PGconn.connect(info.encode())
        if conn.status != self._pq.ConnStatus.OK:
            message = conn.get_error_message()
            conn.finish()
            raise ConnectionError(message)
        result = conn.exec_(f"SET client_encoding TO '{self.encoding}'".encode())
        if result.status != self._pq.ExecStatus.COMMAND_OK:
            conn.finish()
            raise ConnectionError(f"cannot set the encoding to {self.encoding}")
        return conn

    @staticmethod
    def _disconnect(conn: Any) -> None:
        conn.finish()

    def _quoter(self, conn: Any) -> Callable[[str], str]:
        """``PQescapeStringConn()`` for ``conn``, on text."""
        escaping = self._pq.Escaping(conn)

        def quote(text: str) -> str:
            escaped: bytes = escaping.escape_string(text.encode("utf-8", "surrogateescape"))
            return escaped.decode("utf-8", "surrogateescape")

        return quote

    def _query_server(self, server: Server, key: str) -> Sequence[Sequence[object]]:
        pq = self._pq
        conn = server.conn
        quote = self._quoter(conn)

        try:
            query = self.ctx.expand_query(key, quote)
        except pq.PGError as exc:  # the key cannot be escaped in this encoding
            raise QueryFailed(
                f"dict pgsql: (host {server.spec}) cannot escape input string: {exc}"
            ) from exc
        assert query is not None
        result = conn.exec_(query.encode("utf-8", "surrogateescape"))
        status = result.status
        if status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            if status == pq.ExecStatus.FATAL_ERROR:
                text = (result.error_message or conn.error_message).decode("utf-8", "replace")
                raise QueryFailed(
                    f"pgsql query failed: fatal error from host {server.spec}: {text.strip()}"
                )
            if status == pq.ExecStatus.BAD_RESPONSE:
                raise QueryFailed(f"pgsql query failed: protocol error, host {server.spec}")
            raise QueryFailed(
                f"pgsql query failed: unknown code {int(status):#x} from host {server.spec}"
            )
        return _rows(result)

    def _query_batch(
        self, server: Server, keys: list[str]
    ) -> list[Sequence[Sequence[object]]] | None:
        """libpq's pipeline mode: every query is sent, then every result read."""
        pq = self._pq
        conn = server.conn
        quote = self._quoter(conn)

        queries = [self.ctx.expand_query(key, quote) for key in keys]
        ok = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)
        results: list[Sequence[Sequence[object]]] = []
        # Any early return or exception leaves the connection in pipeline mode: the caller
        # drops it.
        conn.enter_pipeline_mode()
        for query in queries:
            assert query is not None
            conn.send_query_params(query.encode("utf-8", "surrogateescape"), None)
        conn.pipeline_sync()
        for _ in queries:
            result = conn.get_result()
            if result is None or result.status not in ok:
                return None
            results.append(_rows(result))
            if conn.get_result() is not None:  # the end of this query's results
                return None
        sync = conn.get_result()
        if sync is None or sync.status != pq.ExecStatus.PIPELINE_SYNC:
            return None
        conn.exit_pipeline_mode()
        return results


def _rows(result: Any) -> list[tuple[bytes, ...]]:
    """A result's rows as ``PQgetvalue()`` gives them: text, and "" for NULL (which Postfix
    then warns about as an empty result)."""
    columns = range(result.nfields)
    return [
        tuple(result.get_value(row, col) or b"" for col in columns) for row in range(result.ntuples)
    ]
