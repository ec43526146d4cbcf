"""``sqlite:/etc/postfix/virtual.cf``: an SQLite database, per sqlite_table(5) (``dict_sqlite.c``).

The ``.cf`` file names the database (``dbpath``) and the ``query`` (or the legacy ``table``,
``select_field``, ``where_field`` and ``additional_conditions``), with ``result_format``,
``domain`` and ``expansion_limit`` as for every SQL table.  Values substituted into the query are
quoted as SQLite's ``%q`` does (a ``'`` is doubled), so the template supplies the quotes:
``WHERE address='%s'``.  Only the first column of each row is a result.  Where the template's
escapes all sit inside string literals (``WHERE address='%s'``), the key's parts are bound as
parameters of one compiled statement instead of being quoted into a new query text each time:
the same comparison, without compiling the query for every key.

This is the embedded default for SQL users without a server.  mailmaps opens the database
read-only through Python's ``sqlite3`` module (the same SQLite library Postfix links): a missing
database is an error when the table is opened, where Postfix would create an empty file and fail
on the first query.  A query SQLite cannot prepare (a missing table, a syntax error) is a
configuration error, as it is fatal in Postfix; a query that fails while running (a locked or
corrupt database) is a temporary error.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote as url_quote

from mailmaps.backends._cfparser import TableConfig
from mailmaps.backends._sql import SqlTable
from mailmaps.errors import ConfigError, PermanentLookupError, TemporaryLookupError
from mailmaps.table import OpenOptions

__all__ = ["SqliteTable", "sqlite_quote"]


_PARAMETER_CHARS = frozenset("?:@$")


def parameterize(template: str) -> tuple[str, str] | None:
    """Rewrite each string literal of a query template that holds ``%`` escapes as an
    expression of bound parameters: ``'%u@%d'`` becomes ``(? || '@' || ?)``.

    Return the SQL and the escapes in parameter order, or ``None`` when the template has escapes
    outside string literals (or parameter markers of its own) and must be expanded as text.
    Bound as TEXT, the parameters compare exactly as the quoted literal would, and SQLite can
    reuse the compiled statement for every key.
    """
    out: list[str] = []
    escapes: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c == "'":
            parts: list[str] = []
            buf: list[str] = []
            dynamic = False
            j = i + 1
            while True:
                if j >= n:
                    return None  # an unterminated literal: let SQLite report it
                ch = template[j]
                if ch == "'":
                    if template[j + 1 : j + 2] == "'":
                        buf.append("''")
                        j += 2
                        continue
                    break
                if ch == "%":
                    escape = template[j + 1 : j + 2]
                    if escape == "%":
                        buf.append("%")
                    else:
                        if buf:
                            parts.append("'" + "".join(buf) + "'")
                            buf = []
                        parts.append("?")
                        escapes.append(escape)
                        dynamic = True
                    j += 2
                    continue
                buf.append(ch)
                j += 1
            if dynamic:
                if buf:
                    parts.append("'" + "".join(buf) + "'")
                out.append("(" + " || ".join(parts) + ")")
            else:
                out.append(template[i : j + 1])
            i = j + 1
        elif c == "%":
            if template[i + 1 : i + 2] != "%":
                return None
            out.append("%")
            i += 2
        elif c in _PARAMETER_CHARS or c in '"`[' or template.startswith(("--", "/*"), i):
            return None  # identifiers, comments or markers: keep the text path simple
        else:
            out.append(c)
            i += 1
    return "".join(out), "".join(escapes)


def sqlite_quote(text: str) -> str:
    """Quote ``text`` for use inside ``'...'`` in an SQLite query (``sqlite3_mprintf("%q")``)."""
    return text.replace("'", "''")


class SqliteTable(SqlTable):
    """An ``sqlite:`` table (thread-safe: one connection per thread)."""

    map_type: ClassVar[str] = "sqlite"
    all_columns: ClassVar[bool] = False

    def __init__(self, name: str, options: OpenOptions, config: TableConfig) -> None:
        super().__init__(name, options, config)
        self._parameterized = parameterize(self.ctx.query)
        # The common case, ``WHERE x='%s'`` with plain results: a short path for lookups.
        self._simple_sql = (
            self._parameterized[0]
            if self._parameterized is not None
            and self._parameterized[1] == "s"
            and self.ctx.domain is None
            and self.ctx.result_format == "%s"
            and not self.expansion_limit
            else None
        )
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._connect()  # a database that cannot be opened is an error now, not at lookup

    def _read_settings(self, config: TableConfig) -> None:
        self.dbpath = config.get_str("dbpath", "", 1)

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        uri = "file:" + url_quote(str(Path(self.dbpath).absolute())) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"{self}: Can't open database: {exc}") from exc
        # Text comes back as bytes, checked for UTF-8 like every table's results.
        conn.text_factory = bytes
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _lookup(self, key: str) -> str | None:
        sql = self._simple_sql
        if sql is None or not key or "\0" in key:
            return super()._lookup(key)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            rows = (conn or self._connect()).execute(sql, (key,)).fetchall()
        except sqlite3.Error:
            return super()._lookup(key)  # the general path reports it
        values = [row[0] for row in rows]
        if all(type(v) is bytes and v for v in values):
            return b",".join(values).decode("utf-8", "surrogateescape") or None
        return self._results(key, [tuple(_sqlite_text(v) for v in row[:1]) for row in rows])

    def _run(self, key: str) -> Sequence[Sequence[object]]:
        conn = self._connect()
        fast = self._parameterized
        try:
            if fast is not None and "\0" not in key:
                cursor = conn.execute(fast[0], self.ctx.pieces(key, fast[1]))
            else:
                cursor = conn.execute(self._text_query(key))
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text or "disk I/O" in text:
                raise TemporaryLookupError(
                    f"dict_sqlite_lookup: {self.name}: SQL step failed for query "
                    f"'{self._text_query(key)}': {text}"
                ) from exc
            raise PermanentLookupError(
                f"dict_sqlite_lookup: {self.name}: SQL prepare failed: {text}"
            ) from exc
        except (sqlite3.Warning, sqlite3.ProgrammingError) as exc:
            # Python refuses more than one statement; SQLite ignores the rest of the text.
            raise PermanentLookupError(
                f"dict_sqlite_lookup: {self.name}: SQL prepare failed: {exc}"
            ) from exc
        except sqlite3.Error as exc:
            raise PermanentLookupError(
                f"dict_sqlite_lookup: {self.name}: SQL prepare failed: {exc}"
            ) from exc
        try:
            rows: list[Sequence[object]] = cursor.fetchall()
        except sqlite3.Error as exc:
            raise TemporaryLookupError(
                f"dict_sqlite_lookup: {self.name}: SQL step failed for query "
                f"'{self._text_query(key)}': {exc}"
            ) from exc
        return [tuple(_sqlite_text(v) for v in row[:1]) for row in rows]

    def _text_query(self, key: str) -> str:
        query = self.ctx.expand_query(key, sqlite_quote)
        assert query is not None
        return query

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        super().close()


def _sqlite_text(value: object) -> object:
    """A column's value as ``sqlite3_column_text()`` gives it: text for numbers too."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, float):
        text = f"{value:.15g}"
        if "." not in text and "e" not in text and "n" not in text:
            text += ".0"
        return text
    return str(value)
