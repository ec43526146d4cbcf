"""``fail:name``: every operation fails with a temporary error (``dict_fail.c``).

Useful to test that callers defer mail instead of treating a broken table as "not found".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Self

from mailmaps.backends._base import BaseTable
from mailmaps.errors import TemporaryLookupError
from mailmaps.table import OpenOptions, TableBuilder

__all__ = ["FailTable"]


class FailTable(BaseTable):
    """A ``fail:`` table: a pattern table whose every lookup, update, delete and listing fails."""

    map_type: ClassVar[str] = "fail"
    fixed_keys: ClassVar[bool] = False

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        return cls(name, options)

    @classmethod
    def create(cls, name: str, options: OpenOptions, *, mode: int = 0o644) -> TableBuilder:
        raise TemporaryLookupError(f"table fail:{name}: write error: Application error")

    def _lookup(self, key: str) -> str | None:
        # Reached through lookup(), after the UTF-8 key check: a malformed key is skipped
        # with a warning before the table can fail, as in Postfix.
        raise TemporaryLookupError(f"table {self}: query error: Application error")

    def update(self, key: str, value: str) -> None:
        raise TemporaryLookupError(f"table {self}: write error: Application error")

    def delete(self, key: str) -> bool:
        raise TemporaryLookupError(f"table {self}: delete error: Application error")

    def items(self) -> Iterator[tuple[str, str]]:
        raise TemporaryLookupError(f"table {self}: sequence error: Application error")
