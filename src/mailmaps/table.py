"""The table contract: what every backend offers, and the options a table is opened with.

A :class:`Table` answers ``lookup(key)`` with a string, or ``None`` for "not found"; failures raise
(:mod:`mailmaps.errors`).  :class:`OpenOptions` carries what Postfix passes as ``DICT_FLAG_*`` bits
when it opens a table: case folding, UTF-8 mode, the trailing-NUL convention, what to do with
duplicate keys, and so on.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from mailmaps.config import MainConfig

__all__ = [
    "Duplicates",
    "NulMode",
    "OpenOptions",
    "Table",
    "TableBuilder",
]


class NulMode(enum.Enum):
    """Whether stored keys and values carry C's terminating NUL byte (``-N`` / ``-n``).

    ``AUTO`` writes the backend's default (with NUL for lmdb, hash and btree; without for cdb) and,
    when reading, tries with NUL first and then without; the first form that matches sticks for the
    rest of the table's life, as in Postfix (``DICT_FLAG_TRY1NULL | DICT_FLAG_TRY0NULL``).
    """

    AUTO = "auto"
    WITH = "with"
    WITHOUT = "without"


class Duplicates(enum.Enum):
    """What a build does with a key it has already stored (postmap's default, ``-w``, ``-r``)."""

    WARN = "warn"  # keep the first value and warn (postmap's default)
    IGNORE = "ignore"  # keep the first value silently (-w)
    REPLACE = "replace"  # keep the last value silently (-r)
    ERROR = "error"  # a duplicate is an error (a daemon's texthash table)


@dataclass(frozen=True, slots=True)
class OpenOptions:
    """How a table is opened; the Python face of Postfix's dictionary flags.

    :param fold: fold the case of keys of exact-key tables (``DICT_FLAG_FOLD_FIX``; ``-f``
        clears it).
    :param utf8: UTF-8 mode (``smtputf8_enable = yes`` and no ``-u``): keys that are not UTF-8 are
        not looked up, non-UTF-8 results are errors, and folding is full Unicode case folding.
    :param nul: the trailing-NUL convention of indexed files.
    :param duplicates: duplicate-key policy of builds and updates.
    :param rhs_is_file: values name files whose contents are stored base64-encoded (``-F``).
    :param lock: take Postfix-style ``fcntl`` locks on indexed files (shared to read, exclusive to
        write), so that a concurrent ``postmap -i`` by real Postfix cannot be read half-done.
    :param lmdb_map_size: initial LMDB map size (``lmdb_map_size``); it doubles when full.
    :param regsub: allow ``$n`` substitution in regexp and pcre results.  Postfix opens
        transport_maps, the sender-dependent maps and alias_maps without it
        (``DICT_FLAG_NO_REGSUB``): rules that use ``$n`` are skipped with a warning.
    :param paranoid: the table holds security-sensitive data (``DICT_FLAG_PARANOID``, as
        local(8) opens ``alias_maps``): tables whose answers come from unauthenticated sources
        (``tcp:``, ``socketmap:``) refuse to open.
    :param main_config: main.cf, for tables that read their settings from it (the obsolete
        ``ldap:name`` form, whose settings are ``name_server_host`` and so on).  ``None``:
        read ``main.cf`` from ``$MAIL_CONFIG`` or ``/etc/postfix`` when such a table is opened.
    """

    fold: bool = True
    utf8: bool = True
    nul: NulMode = NulMode.AUTO
    duplicates: Duplicates = Duplicates.WARN
    rhs_is_file: bool = False
    lock: bool = True
    lmdb_map_size: int = 16777216
    regsub: bool = True
    paranoid: bool = False
    main_config: MainConfig | None = field(default=None, compare=False, hash=False, repr=False)

    def but(self, **changes: object) -> OpenOptions:
        """Return a copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


@runtime_checkable
class Table(Protocol):
    """What every table offers: a lookup that returns the value or ``None``, and ``close()``.

    ``fixed_keys`` says whether the table is an exact-key table (hash, lmdb, inline, sql, ...) or a
    pattern table (regexp, pcre, cidr, tcp, ...); Postfix gives partial address keys such as
    ``@domain`` only to exact-key tables.
    """

    @property
    def map_type(self) -> str:
        """The Postfix map type: ``"lmdb"``, ``"regexp"``, ..."""
        ...

    @property
    def fixed_keys(self) -> bool:
        """Whether this is an exact-key table (as opposed to a pattern table)."""
        ...

    @property
    def name(self) -> str:
        """The table's name: what follows ``type:`` in its spec."""
        ...

    def lookup(self, key: str) -> str | None:
        """Return the value for ``key``, or ``None`` when there is none.

        :raises TemporaryLookupError: the backend could not answer now.
        :raises PermanentLookupError: the backend's answer is unusable.
        """
        ...

    def close(self) -> None:
        """Release the table's resources; closing twice is harmless."""
        ...


class TableBuilder(Protocol):
    """A bulk build of an indexed table, written beside the target and renamed into place.

    Use it as a context manager: leaving the block normally commits (the new table replaces the old
    one atomically), leaving it with an exception discards the half-built file.
    """

    def add(self, key: str | bytes, value: str | bytes, where: str = "") -> None:
        """Store one entry; ``where`` (``"file, line N"``) prefixes duplicate warnings."""
        ...

    def add_many(self, entries: Iterable[tuple[bytes, bytes, int]], path: str = "") -> None:
        """Store ``(key, value, lineno)`` entries read from the source file ``path``."""
        ...

    def commit(self) -> None:
        """Finish the build and move the new table into place."""
        ...

    def abort(self) -> None:
        """Discard the build; the old table, if any, stays as it was."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
