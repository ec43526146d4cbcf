"""What every backend shares: key preparation (UTF-8 checks, case folding) and the table life cycle.

Postfix wraps each table in ``dict_utf8.c`` when UTF-8 mode is on: a key that is not valid UTF-8
is not looked up (a warning, then "not found"), a result that is not valid UTF-8 is an error, and
exact-key tables fold the key first.  :class:`BaseTable` does the same in :meth:`lookup`; backends
implement :meth:`_lookup` on the prepared key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import ClassVar, Self

from mailmaps.errors import ConfigError, LookupFailed, PermanentLookupError, UnsupportedOperation
from mailmaps.table import OpenOptions, TableBuilder
from mailmaps.text import fold, is_valid_utf8, printable

__all__ = ["BaseTable", "lookup_in_chunks"]

log = logging.getLogger("mailmaps")


class BaseTable:
    """Base class of the built-in backends; third-party backends may use it too.

    Subclasses set :attr:`map_type` and :attr:`fixed_keys` and implement :meth:`_lookup`; tables
    that can be changed or listed override :meth:`_update`, :meth:`_delete` and :meth:`_items`.
    """

    map_type: ClassVar[str] = ""
    fixed_keys: ClassVar[bool] = True
    #: Whether looking keys up again gives the same answers and diagnostics (file tables).
    #: Server-backed tables keep state (a host marked down, a dropped connection): a batch
    #: that failed cannot be replayed, and ``postmap -q -`` reports it as it happens.
    replayable: ClassVar[bool] = True
    #: Whether the answers come from an unauthenticated source (a tcp: or socketmap:
    #: server): such a table refuses to open for security-sensitive data
    #: (:attr:`~mailmaps.table.OpenOptions.paranoid`, Postfix's ``DICT_FLAG_NO_UNAUTH``).
    unauthenticated: ClassVar[bool] = False

    def __init__(self, name: str, options: OpenOptions) -> None:
        if self.unauthenticated and options.paranoid:
            raise ConfigError(
                f"{self.map_type}:{name} map is not allowed for security sensitive data"
            )
        self._name = name
        self.options = options
        self._fold = fixed_fold = self.fixed_keys and options.fold
        self._utf8 = options.utf8
        self._plain = not fixed_fold and not options.utf8
        self.closed = False

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        """Open the table ``name``; ``writable`` asks for updates and deletes (``O_RDWR``).

        :raises ConfigError: the table cannot be opened as asked.
        """
        if writable:
            raise UnsupportedOperation(f"{cls.map_type}:{name} map requires O_RDONLY access mode")
        return cls(name, options)

    @classmethod
    def create(cls, name: str, options: OpenOptions, *, mode: int = 0o644) -> TableBuilder:
        """Start a bulk build that replaces the table ``name`` (what ``postmap`` does).

        :raises UnsupportedOperation: the map type cannot be built from a source file.
        """
        raise UnsupportedOperation(
            f"unsupported dictionary type: {cls.map_type} does not support bulk-mode creation."
        )

    # -- properties --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The table name: what follows ``type:`` in the spec."""
        return self._name

    def __str__(self) -> str:
        return f"{self.map_type}:{self._name}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self}>"

    # -- key preparation -----------------------------------------------------------------------

    def prepare_key(self, key: str) -> str | None:
        """Return the key as the backend will see it, or ``None`` if it must not be looked up.

        In UTF-8 mode a key that is not valid UTF-8 is skipped with a warning; exact-key tables
        fold its case unless folding is off (``-f``).
        """
        if self._utf8 and not is_valid_utf8(key):
            log.warning(
                '%s: non-UTF-8 key "%s": malformed UTF-8 or invalid codepoint',
                self,
                printable(key),
            )
            return None
        if self._fold:
            return fold(key, self._utf8)
        return key

    def _check_value(self, key: str, value: str) -> str:
        if self._utf8 and not is_valid_utf8(value):
            shown = printable(value)
            log.warning('%s: key "%s": non-UTF-8 value "%s"', self, key, shown)
            raise PermanentLookupError(f'{self}: key "{key}": non-UTF-8 value "{shown}"')
        return value

    # -- the table operations ------------------------------------------------------------------

    def lookup(self, key: str) -> str | None:
        """Return the value for ``key``, or ``None`` when there is none.

        :raises TemporaryLookupError: the backend could not answer now (retry later).
        :raises PermanentLookupError: the table's answer is unusable.
        """
        prepared = key if self._plain else self.prepare_key(key)
        if prepared is None:
            return None
        value = self._lookup(prepared)
        if value is None or not self._utf8:
            return value
        return self._check_value(key, value)

    def lookup_many(self, keys: Sequence[str]) -> list[str | None]:
        """Look up many keys at once; the answers are those :meth:`lookup` would give.

        Backends may answer a batch faster (one lock and one read transaction for all of it).

        :raises LookupFailed: as :meth:`lookup`; its ``partial`` attribute holds the answers
            for the keys before the one that failed.
        """
        lookup = self.lookup
        answers: list[str | None] = []
        try:
            for key in keys:
                answers.append(lookup(key))
        except LookupFailed as exc:
            exc.partial = answers
            raise
        return answers

    def update(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` in a table opened writable.

        Keys and values that are not UTF-8 are skipped with a warning in UTF-8 mode, as Postfix
        does.  What happens to an existing key follows ``options.duplicates``.
        """
        prepared = self.prepare_key(key)
        if prepared is None:
            return
        if self._utf8 and not is_valid_utf8(value):
            log.warning('%s: key "%s": non-UTF-8 value -- ignored', self, key)
            return
        self._update(prepared, value)

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there.

        As in Postfix, a key that is not UTF-8 (in UTF-8 mode) counts as deleted.
        """
        prepared = self.prepare_key(key)
        if prepared is None:
            return True
        return self._delete(prepared)

    def items(self) -> Iterator[tuple[str, str]]:
        """Iterate over all entries in the table's own order (``postmap -s``).

        :raises UnsupportedOperation: the table cannot be listed.
        """
        return self._items()

    def close(self) -> None:
        """Release the table's resources; closing twice is harmless."""
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what backends implement ------------------------------------------------------------

    def _lookup(self, key: str) -> str | None:
        raise NotImplementedError

    def _update(self, key: str, value: str) -> None:
        raise UnsupportedOperation(f"table {self}: update operation is not supported")

    def _delete(self, key: str) -> bool:
        raise UnsupportedOperation(f"table {self}: delete operation is not supported")

    def _items(self) -> Iterator[tuple[str, str]]:
        raise UnsupportedOperation(f"table {self}: sequence operation is not supported")


def lookup_in_chunks(
    keys: Sequence[str],
    depth: int,
    chunk: Callable[[Sequence[str], list[str | None]], None],
) -> list[str | None]:
    """Answer ``keys`` ``depth`` at a time with ``chunk``, which appends one answer per key;
    when it fails, the answers so far go with the error (``LookupFailed.partial``)."""
    answers: list[str | None] = []
    try:
        for start in range(0, len(keys), depth):
            chunk(keys[start : start + depth], answers)
    except LookupFailed as exc:
        exc.partial = answers
        raise
    return answers


class MemoryTable(BaseTable):
    """An exact-key table held in a dict (Postfix's ``internal:`` type, which inline: and
    texthash: reuse).  Keys are stored prepared (folded) and looked up prepared."""

    def __init__(self, name: str, options: OpenOptions) -> None:
        super().__init__(name, options)
        self._data: dict[str, str] = {}

    def _store(self, key: str, value: str) -> bool:
        """Store an entry from the table's source; return False if the key is not UTF-8."""
        prepared = self.prepare_key(key)
        if prepared is None:
            return False
        self._data[prepared] = value
        return True

    def _lookup(self, key: str) -> str | None:
        return self._data.get(key)

    def _items(self) -> Iterator[tuple[str, str]]:
        # Postfix lists an in-memory table in the order of a hash table with a random seed
        # (hash_fnv.c): no order is promised, so insertion order is as good as any.
        return iter(list(self._data.items()))
