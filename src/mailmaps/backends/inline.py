"""``inline:{ key=value, { key = value with spaces } }`` tables (``dict_inline.c``).

An exact-key, read-only table written in the spec itself.  Items are separated by commas or
whitespace; an item in braces may have spaces around ``=`` and in the value
(``split_qnameval.c``).  Keys keep their quotes; a later entry replaces an earlier one.  An empty
table or a syntax error makes the table unusable.
"""

from __future__ import annotations

from typing import ClassVar, Self

from mailmaps.backends._base import MemoryTable
from mailmaps.errors import ConfigError, UnsupportedOperation
from mailmaps.source import base64_file_value
from mailmaps.spec import SEPARATORS, extract_braced, split_list
from mailmaps.table import OpenOptions
from mailmaps.text import is_valid_utf8

__all__ = ["InlineTable", "split_qnameval"]

_SPACE = " \t\n\r\v\f"


def split_qnameval(text: str) -> tuple[str, str]:
    """Split ``key = value`` where the key may be quoted (``split_qnameval()``).

    :raises ValueError: with Postfix's wording of the problem.
    """
    i, n = 0, len(text)
    while i < n and text[i] in _SPACE:
        i += 1
    if i == n:
        raise ValueError("no key found; expected format: key = value")
    start = i
    in_quotes = False
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 1
            if i >= n:
                break
        elif ch in _SPACE or ch == "=":
            if not in_quotes:
                break
        elif ch == '"':
            in_quotes = not in_quotes
        i += 1
    if in_quotes:
        raise ValueError("unbalanced '\"'")
    key = text[start:i]
    rest = text[i:].lstrip(_SPACE)
    if not rest.startswith("="):
        raise ValueError("missing '=' after attribute name")
    return key, rest[1:].strip(_SPACE)


class InlineTable(MemoryTable):
    """An ``inline:`` table."""

    map_type: ClassVar[str] = "inline"

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        if writable:
            raise UnsupportedOperation(f"inline:{name} map requires O_RDONLY access mode")
        table = cls(name, options)
        table._parse()
        return table

    def _fail(self, problem: str) -> ConfigError:
        what = "filename" if self.options.rhs_is_file else "value"
        return ConfigError(f'{problem}: "inline:{self._name}"; need "inline:{{name={what}...}}"')

    def _parse(self) -> None:
        name = self._name
        if self._utf8 and not is_valid_utf8(name):
            raise ConfigError(f'bad UTF-8 syntax: "inline:{name}"; need "inline:{{name=value...}}"')
        body, err = extract_braced(name, strip=False)
        if err or not body:
            raise ConfigError(f'bad syntax: "inline:{name}"; need "inline:{{name=value...}}"')
        count = 0
        for item in split_list(body, SEPARATORS):
            if item.startswith("{"):
                item, err = extract_braced(item)
                if err:
                    raise self._fail(err)
            try:
                key, value = split_qnameval(item)
            except ValueError as exc:
                raise self._fail(str(exc)) from None
            if self.options.rhs_is_file:
                try:
                    value = base64_file_value(value).decode("ascii")
                except (OSError, ValueError) as exc:
                    raise self._fail(getattr(exc, "strerror", None) or str(exc)) from None
            self._store(key, value)
            count += 1
        if count == 0:
            raise self._fail("empty table")
