"""``type:name`` specs, ``{...}`` groups and the list syntax of main.cf parameter values.

Postfix names a table ``type:name`` and writes lists of them separated by commas and/or whitespace,
where ``{...}`` keeps commas and whitespace together: ``inline:{ a=b, { c = d e } }`` is one item
(``mystrtokq()`` in ``src/util/mystrtok.c``).  A parameter value item that is itself enclosed in
braces loses them (``mail_parm_split()`` in ``src/global/mail_parm_split.c``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailmaps.errors import SpecError

__all__ = [
    "SEPARATORS",
    "MapSpec",
    "extract_braced",
    "parse_map_list",
    "split_list",
    "split_parameter",
]

#: Postfix's CHARS_COMMA_SP: what separates list items.
SEPARATORS = ", \t\r\n"
_SPACE = " \t\n\r\v\f"


def split_list(text: str, separators: str = SEPARATORS, parens: str = "{}") -> list[str]:
    """Split ``text`` at separator characters that are not inside ``parens``.

    Empty items are dropped; an unbalanced closing brace at level 0 is ordinary text, an opening
    brace that is never closed extends the item to the end of the text (as ``mystrtokq`` does).
    """
    items: list[str] = []
    open_ch, close_ch = parens[0], parens[1]
    level = 0
    start = -1
    for i, ch in enumerate(text):
        if start < 0:
            if ch in separators:
                continue
            start = i
            level = 0
        if ch == open_ch:
            level += 1
        elif level > 0 and ch == close_ch:
            level -= 1
        elif level == 0 and ch in separators:
            items.append(text[start:i])
            start = -1
    if start >= 0:
        items.append(text[start:])
    return items


def _balanced_length(text: str, parens: str) -> int:
    """Length of the balanced ``{...}`` group at the start of ``text``, or 0 (``balpar()``)."""
    level = 0
    for i, ch in enumerate(text):
        if ch == parens[0]:
            level += 1
        elif ch == parens[1]:
            level -= 1
            if level == 0:
                return i + 1
        if level == 0:
            return 0
    return 0


def extract_braced(text: str, parens: str = "{}", *, strip: bool = True) -> tuple[str, str | None]:
    """Remove the braces around ``text`` (``extpar()``): return the inside and an error or ``None``.

    As in Postfix, an error still yields a usable inside: a missing ``}`` takes the rest of the
    text, and text after the closing brace is dropped.
    """
    err: str | None = None
    if not text.startswith(parens[0]):
        return text, f"no '{parens[0]}' at start of text in \"{text}\""
    n = _balanced_length(text, parens)
    if n == 0:
        err = f"missing '{parens[1]}' in \"{text}\""
        inner = text[1:]
    else:
        if n != len(text):
            err = f"syntax error after '{parens[1]}' in \"{text}\""
        inner = text[1 : n - 1]
    if strip:
        inner = inner.strip(_SPACE)
    return inner, err


def split_parameter(name: str, value: str) -> list[str]:
    """Split a list-valued main.cf parameter; ``{...}`` items lose their braces.

    :raises SpecError: an item has unbalanced braces or text after its closing brace.
    """
    items = []
    for item in split_list(value):
        if item.startswith("{"):
            item, err = extract_braced(item)
            if err:
                raise SpecError(f"{name}: {err}")
        items.append(item)
    return items


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A parsed ``type:name`` table spec.

    >>> MapSpec.parse("inline:{ a=b, c=d }")
    MapSpec(type='inline', name='{ a=b, c=d }')
    >>> str(MapSpec.parse("/etc/postfix/virtual", default_type="lmdb"))
    'lmdb:/etc/postfix/virtual'
    """

    type: str
    name: str

    @classmethod
    def parse(cls, text: str | MapSpec, *, default_type: str | None = None) -> MapSpec:
        """Parse ``type:name``; without a colon use ``default_type`` (as postmap does).

        :raises SpecError: no type is given and there is no default, or the type or the name
            is empty.
        """
        if isinstance(text, MapSpec):
            return text
        map_type, sep, name = text.partition(":")
        if not sep:
            if default_type is None:
                raise SpecError(f'open dictionary: expecting "type:name" form instead of "{text}"')
            return cls(default_type, text)
        if not map_type or not name:  # dict_open3(): both parts are required
            raise SpecError(f'open dictionary: expecting "type:name" form instead of "{text}"')
        return cls(map_type, name)

    def __str__(self) -> str:
        return f"{self.type}:{self.name}"


def parse_map_list(text: str) -> list[MapSpec]:
    """Parse a main.cf map list such as ``hash:/etc/a, inline:{ x=y }, lmdb:/etc/b``.

    The items are split as ``maps_create()`` splits them.

    :raises SpecError: an item is not of the form ``type:name``.
    """
    return [MapSpec.parse(item) for item in split_list(text)]
