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

import socket
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from mailmaps.backends._cfparser import TableConfig
from mailmaps.backends._sql import QueryFailed, Server, ServerTable, reason
from mailmaps.errors import BackendUnavailable, ConfigError
from mailmaps.table import OpenOptions

__all__ = ["MysqlTable"]

_DEFAULT_SOCKET = "/run/mysqld/mysqld.sock"


def _quoter(conn: Any) -> Callable[[str], str]:
    """The connection's own string escaping (``mysql_real_escape_string``), without quotes."""
    return lambda text: str(conn.escape(text))[1:-1]


def _inet_port(service: str) -> int:
    if service.isdigit():
        return int(service)
    try:
        return socket.getservbyname(service, "tcp")
    except OSError:
        raise ConfigError(f"unknown service: {service}/tcp") from None


class MysqlTable(ServerTable):
    """A ``mysql:`` table; thread-safe (one query at a time per table, as in Postfix)."""

    map_type: ClassVar[str] = "mysql"
    server_kind: ClassVar[str] = "mysql"
    #: Seconds to wait for a server to accept a connection.
    connect_timeout: ClassVar[float] = 10.0
    #: Seconds to wait for a server's answer (its greeting included) before it counts as down.
    read_timeout: ClassVar[float] = 60.0
    #: The socket of ``localhost`` (the client library's default; Debian's MariaDB/MySQL).
    default_socket: ClassVar[str] = _DEFAULT_SOCKET

    def __init__(self, name: str, options: OpenOptions, config: TableConfig) -> None:
        try:
            import pymysql
        except ImportError as exc:
            raise BackendUnavailable("mysql", "mysql", str(exc)) from exc
        self._pymysql = pymysql
        super().__init__(name, options, config)

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
        # As the client library Postfix uses: TLS only when a tls_* setting asks for it, and
        # the server's certificate checked only with tls_verify_cert = yes.
        self._ssl: dict[str, str | bool] | None = {k: v for k, v in tls.items() if v} or None
        if self._ssl is not None:
            verify = config.get_bool("tls_verify_cert", False)
            self._ssl["check_hostname"] = verify
            self._ssl["verify_mode"] = verify

    def _parse_host(self, spec: str) -> Server:
        """``unix:/path``, or ``[inet:]host[:port]``; ``localhost`` is the default socket."""
        text = spec
        if text.startswith("unix:"):
            return Server(spec, 0, text[5:])
        if text.startswith("inet:"):
            text = text[5:]
        port = 0
        if ":" in text:
            text, _, service = text.rpartition(":")
            port = _inet_port(service)
        if text.lower() == "localhost":
            return Server(spec, 0, None, port)
        return Server(spec, 1, text, port)

    def _connect_server(self, server: Server) -> Any:
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
        options = self._option_file()
        if not self.user and options.get("user"):
            kwargs["user"] = options["user"]
        if server.rank == 0:
            kwargs["unix_socket"] = server.name or options.get("socket") or self.default_socket
        else:
            kwargs["host"] = server.name
            kwargs["port"] = server.port or 3306
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
        else:
            kwargs["ssl_disabled"] = True
        return pymysql.connect(**kwargs)

    def _option_file(self) -> dict[str, str]:
        """The settings of ``option_group`` in ``option_file`` that apply: the client library
        takes the user (when ``user`` is empty) and the default socket from it, but never the
        password, because Postfix always passes one (an empty one when none is set)."""
        if not self.option_file:
            return {}
        import configparser

        parser = configparser.RawConfigParser(allow_no_value=True, strict=False)
        try:
            parser.read(self.option_file)
        except configparser.Error:
            return {}
        group = self.option_group or "client"
        if not parser.has_section(group):
            return {}
        return {
            key: value.strip().strip("\"'")
            for key, value in parser.items(group)
            if key in ("user", "socket") and value
        }

    def _query_server(self, server: Server, key: str) -> Sequence[Sequence[object]]:
        conn = server.conn
        query = self.ctx.expand_query(key, _quoter(conn))
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
        except (self._pymysql.err.Error, OSError) as exc:
            problem = f"query failed: {reason(exc)}"
        if not problem and first is None and self.require_result_set:
            problem = "query failed: query returned no result set(require_result_set = yes)"
        if problem:
            raise QueryFailed(f"{self}: {problem}")
        return first or []

    def _query_batch(
        self, server: Server, keys: list[str]
    ) -> list[Sequence[Sequence[object]]] | None:
        conn = server.conn
        quote = _quoter(conn)
        queries = [self.ctx.expand_query(key, quote, self._pipelined_query) for key in keys]
        results: list[Sequence[Sequence[object]]] = []
        with conn.cursor() as cursor:
            cursor.execute(";".join(q for q in queries if q is not None))
            while True:
                if cursor.description is None:
                    return None
                results.append(list(cursor.fetchall()))
                if not cursor.nextset():
                    break
        return results
