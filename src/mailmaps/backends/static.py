"""``static:value`` and ``static:{ value with spaces }``: every key has the same value
(``dict_static.c``).  It is an exact-key table, so it also answers partial address keys."""

from __future__ import annotations

from typing import ClassVar, Self

from mailmaps.backends._base import BaseTable
from mailmaps.errors import ConfigError
from mailmaps.source import base64_file_value
from mailmaps.spec import extract_braced
from mailmaps.table import OpenOptions

__all__ = ["StaticTable"]


class StaticTable(BaseTable):
    """A ``static:`` table."""

    map_type: ClassVar[str] = "static"

    def __init__(self, name: str, options: OpenOptions) -> None:
        super().__init__(name, options)
        value = name
        if name.startswith("{"):
            value, err = extract_braced(name)
            if err:
                raise ConfigError(f"bad static:name syntax: {err}")
        if options.rhs_is_file:
            try:
                value = base64_file_value(value).decode("ascii")
            except OSError as exc:
                raise ConfigError(str(exc.strerror)) from exc
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        self.value = value
        # The value is fixed: no folding is needed to answer, only the UTF-8 key check.
        self._plain = not self._utf8

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        return cls(name, options)

    def _lookup(self, key: str) -> str | None:
        return self.value
