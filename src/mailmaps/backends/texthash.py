"""``texthash:/file``: a postmap(1) source read into memory, no database file (``dict_thash.c``).

The source format is exactly postmap's.  Duplicates follow ``options.duplicates``: the first value
wins with a warning by default; with :attr:`~mailmaps.table.Duplicates.ERROR` (how a Postfix daemon
opens it) a duplicate makes the whole table unusable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Self

from mailmaps.backends._base import MemoryTable
from mailmaps.errors import ConfigError, UnsupportedOperation
from mailmaps.source import parse_postmap_source
from mailmaps.table import Duplicates, OpenOptions
from mailmaps.text import decode

__all__ = ["TexthashTable"]

log = logging.getLogger("mailmaps")


class TexthashTable(MemoryTable):
    """A ``texthash:`` table."""

    map_type: ClassVar[str] = "texthash"

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        if writable:
            raise UnsupportedOperation(f"texthash:{name} map requires O_RDONLY access mode")
        table = cls(name, options)
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise ConfigError(f"open database {name}: {exc.strerror}") from exc
        table._load(data)
        return table

    def _load(self, data: bytes) -> None:
        policy = self.options.duplicates
        for raw_key, raw_value, lineno in parse_postmap_source(
            data, self._name, utf8=self._utf8, rhs_is_file=self.options.rhs_is_file
        ):
            key, value = decode(raw_key), decode(raw_value)
            where = f"{self._name}, line {lineno}"
            prepared = self.prepare_key(key)
            if prepared is None:
                continue
            if prepared in self._data:
                if policy is Duplicates.REPLACE:
                    self._data[prepared] = value
                elif policy is Duplicates.WARN:
                    log.warning('%s: duplicate entry: "%s"', where, key)
                elif policy is Duplicates.ERROR:
                    raise ConfigError(f'{where}: duplicate entry: "{key}"')
                continue
            self._data[prepared] = value
