"""The part of ``mysql:``, ``pgsql:`` and ``sqlite:`` that does not depend on the database.

A lookup, as Postfix's ``dict_{mysql,pgsql,sqlite}.c`` do it: the key (already folded to lower
case by :class:`BaseTable`) must pass the ``domain`` filter, then the query template is expanded
with the key, each piece quoted by the database's own string escaping; the rows that come back go
through ``result_format`` and are joined with commas (:mod:`mailmaps.backends._dbcommon`).
Subclasses connect and run one query (:meth:`SqlTable._run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Self

from mailmaps.backends._base import BaseTable
from mailmaps.backends._cfparser import TableConfig
from mailmaps.backends._dbcommon import QueryContext, legacy_sql_query
from mailmaps.errors import ConfigError
from mailmaps.table import OpenOptions

__all__ = ["SqlTable"]


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
        ctx = self.ctx
        if ctx.domain is not None and not ctx.check_domain(key):
            return None
        if ctx.expand_query(key, None) is None:  # the key cannot fill the template
            return None
        rows = self._run(key)
        if self.all_columns:
            values = [value for row in rows for value in row]
        else:
            values = [row[0] if row else None for row in rows]
        return ctx.format_results(values, key, self.expansion_limit, self._who)

    @property
    def _who(self) -> str:
        return f"dict_{self.map_type}_lookup"

    def _run(self, key: str) -> Sequence[Sequence[object]]:
        """Expand the query for ``key`` with this database's quoting, run it and return the
        rows.

        :raises TemporaryLookupError: no server answered, or the query failed.
        """
        raise NotImplementedError
