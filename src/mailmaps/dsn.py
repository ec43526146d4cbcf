"""RFC 3463 enhanced status codes in reply texts (``global/dsn_util.c``)."""

from __future__ import annotations

import re

__all__ = ["dsn_split", "dsn_valid"]

_DSN = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?=\s|$)")


def dsn_valid(text: str) -> int:
    """The length of the enhanced status code that ``text`` starts with (``2.1.5``), or 0."""
    match = _DSN.match(text)
    return match.end() if match is not None else 0


def dsn_split(default: str, text: str) -> tuple[str, str]:
    """An optional leading enhanced status code and the rest of ``text`` (``dsn_split()``);
    ``default`` when the text has none."""
    stripped = text.lstrip()
    match = _DSN.match(stripped)
    if match is None:
        return default, stripped
    return match.group(), stripped[match.end() :].lstrip()
