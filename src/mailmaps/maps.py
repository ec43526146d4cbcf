"""Opening tables by spec, and searching a list of tables as Postfix's ``maps_find()`` does.

``open_table("lmdb:/etc/postfix/virtual")`` opens one table.  :class:`MapList` is what a main.cf
parameter such as ``virtual_alias_maps = lmdb:/a, inline:{ x=y }`` denotes: tables searched in
order, where (``src/global/maps.c``):

* an empty key is never looked up;
* the first table with a value wins;
* an empty-string value is a configuration error, not a value;
* an error stops the search at once (later tables are not consulted) and reaches the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self

from mailmaps.errors import ConfigError, PermanentLookupError, TemporaryLookupError
from mailmaps.registry import backend_class
from mailmaps.spec import MapSpec, split_list
from mailmaps.table import OpenOptions, Table, TableBuilder

__all__ = ["DEFAULT_DATABASE_TYPE", "MapList", "SurrogateTable", "create_table", "open_table"]

log = logging.getLogger("mailmaps")

try:
    from mailmaps._speedups import first_hit as _first_hit
except ImportError:  # pragma: no cover - built without the C extension
    _first_hit = None  # type: ignore[assignment]

#: mailmaps' own default for a spec without ``type:`` (Postfix's is build dependent).
DEFAULT_DATABASE_TYPE = "lmdb"


def open_table(
    spec: str | MapSpec,
    options: OpenOptions | None = None,
    *,
    writable: bool = False,
    default_type: str = DEFAULT_DATABASE_TYPE,
) -> Any:
    """Open the table named by ``spec`` (``type:name``; a bare name gets ``default_type``).

    The result satisfies :class:`~mailmaps.table.Table` and is a context manager.

    :param writable: open for updates and deletes, as ``postmap -i``/``-d`` do.
    :raises UnknownMapType: no backend for the type.
    :raises BackendUnavailable: the backend's driver is not installed.
    :raises ConfigError: the table cannot be opened (missing file, bad inline syntax, ...).
    """
    parsed = MapSpec.parse(spec, default_type=default_type)
    cls = backend_class(parsed.type)
    return cls.open(parsed.name, options or OpenOptions(), writable=writable)


def create_table(
    spec: str | MapSpec,
    options: OpenOptions | None = None,
    *,
    mode: int = 0o644,
    default_type: str = DEFAULT_DATABASE_TYPE,
) -> TableBuilder:
    """Start a bulk build of the indexed table ``spec``; commit renames it into place.

    >>> with create_table("lmdb:/tmp/virtual") as build:   # doctest: +SKIP
    ...     build.add("info@example.com", "alice@example.net")

    :param mode: permission bits of the new file.
    :raises UnsupportedOperation: the type cannot be created (regexp, texthash, ...).
    """
    parsed = MapSpec.parse(spec, default_type=default_type)
    cls = backend_class(parsed.type)
    builder: TableBuilder = cls.create(parsed.name, options or OpenOptions(), mode=mode)
    return builder


class SurrogateTable:
    """Stands in for a table that could not be opened: every lookup fails (``dict_surrogate.c``).

    Postfix daemons keep running with such a table and defer mail that needs it, instead of
    treating the missing table as "not found".
    """

    fixed_keys: ClassVar[bool] = False
    #: Every lookup logs a warning: looking a key up again does not give the same
    #: diagnostics (the C resolution path does not take such a table).
    replayable: ClassVar[bool] = False

    def __init__(self, spec: MapSpec, reason: str) -> None:
        self.map_type = spec.type
        self._name = spec.name
        self.reason = reason

    @property
    def name(self) -> str:
        return self._name

    def lookup(self, key: str) -> str | None:
        text = f"{self.map_type}:{self._name} is unavailable. {self.reason}"
        log.warning("%s", text)
        raise TemporaryLookupError(text)

    def close(self) -> None:
        pass


class _Recorder(Protocol):
    events: list[Any] | None


class MapList:
    """An ordered list of tables searched as one (a main.cf ``*_maps`` parameter).

    :param maps: a list value (``"lmdb:/a, inline:{ x=y }"``) or an iterable of specs or
        already-open tables.
    :param title: the parameter name, used in diagnostics (``virtual_alias_maps``).
    :param surrogates: as in a Postfix daemon, a table that cannot be opened becomes a
        :class:`SurrogateTable` whose lookups fail, instead of raising at construction.
    """

    def __init__(
        self,
        maps: str | Iterable[str | MapSpec | Table],
        options: OpenOptions | None = None,
        *,
        title: str = "",
        surrogates: bool = False,
    ) -> None:
        self.title = title
        self.options = options or OpenOptions()
        items: Iterable[str | MapSpec | Table] = split_list(maps) if isinstance(maps, str) else maps
        self.tables: list[Table] = []
        try:
            for item in items:
                self.tables.append(self._open(item, surrogates))
        except BaseException:
            self.close()
            raise
        #: Whether any table takes partial address keys (``@domain``, ``user``): when none
        #: does, address searches look up the full address only.
        self.has_fixed = any(table.fixed_keys for table in self.tables)
        self._fixed = [table for table in self.tables if table.fixed_keys]
        #: The tables' lookup functions, all and exact-key ones (for the C address search).
        self.lookups = tuple(table.lookup for table in self.tables)
        self.fixed_lookups = tuple(table.lookup for table in self._fixed)
        #: Where lookups are recorded: an object whose ``events`` attribute is a list to
        #: append ``(table, key, value)`` to, or ``None`` (see :class:`mailmaps.resolver`).
        self.recorder: _Recorder | None = None

    def _open(self, item: str | MapSpec | Table, surrogates: bool) -> Table:
        if not isinstance(item, str | MapSpec):
            return item
        spec = MapSpec.parse(item)
        try:
            table: Table = open_table(spec, self.options)
        except ConfigError as exc:
            if not surrogates:
                raise
            log.error("%s", exc)
            return SurrogateTable(spec, str(exc))
        return table

    def lookup(self, key: str, *, fixed_only: bool = False) -> str | None:
        """Search the tables in order; return the first value, or ``None``.

        :param fixed_only: consult exact-key tables only (how Postfix hides partial address
            keys such as ``@domain`` from regexp, pcre, cidr, tcp and socketmap tables).
        :raises PermanentLookupError: a table returned an empty string.
        :raises LookupFailed: a table failed; the search stopped there.
        """
        if not key:
            return None
        recorder = self.recorder
        events = recorder.events if recorder is not None else None
        for table in self._fixed if fixed_only else self.tables:
            try:
                value = table.lookup(key)
            except Exception:
                log.warning('%s:%s lookup error for "%s"', table.map_type, table.name, key)
                raise
            if events is not None:
                events.append((table, key, value))
            if value is None:
                continue
            if value == "":
                title = self.title or "map list"
                log.warning("%s lookup of %s returns an empty string result", title, key)
                log.warning("%s should return NO RESULT in case of NOT FOUND", title)
                raise PermanentLookupError(
                    f"{title}: {table.map_type}:{table.name}: lookup of {key} returns an empty "
                    "string result"
                )
            return value
        return None

    @property
    def replayable(self) -> bool:
        """Whether every table answers a repeated lookup as it did the first time (no server
        behind it, nothing that failed to open): a C path may look keys up and hand them back
        to the Python path, which looks them up again."""
        return all(getattr(table, "replayable", True) for table in self.tables)

    @property
    def recording(self) -> bool:
        """Whether a trace is recording this list's lookups (each key must then be looked up
        on its own, in Python)."""
        recorder = self.recorder
        return recorder is not None and recorder.events is not None

    def first(self, keys: list[str], *, fixed_from: int = 1) -> tuple[int, str | None] | None:
        """The first of ``keys`` with a value, as :meth:`lookup` finds it key by key (with
        ``fixed_only`` from ``keys[fixed_from]`` on), in one call: ``(index, value)``, or
        ``(-1, None)`` when no key has one.

        ``None`` when this must go key by key instead (no C extension, lookups being recorded,
        a table that failed or gave an empty value): the caller then calls :meth:`lookup` for
        each key, which says what went wrong.
        """
        if _first_hit is None or self.recording:
            return None
        found = _first_hit(self.lookups, self.fixed_lookups, keys, fixed_from)
        return None if found is NotImplemented else found

    def __iter__(self) -> Iterator[Table]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    def close(self) -> None:
        """Close every table."""
        for table in self.tables:
            table.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
