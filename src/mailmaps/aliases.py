"""aliases(5) sources as postalias(1) reads them.

Each logical line (see :func:`mailmaps.source.logical_lines`) is tokenized as RFC 822 text: the
name is everything before the first ``:`` in internal (unquoted) form, the value everything after
it in external (quoted) form (``src/postalias/postalias.c``, Postfix 3.7).  Names must be local:
an ``@`` or ``%`` before the colon is refused.  After the entries, postalias adds the Sendmail
"complete" entry ``@: @`` and, as Postfix builds with NIS support on Linux, ``YP_LAST_MODIFIED``
and ``YP_MASTER_NAME``, both stored without a trailing NUL and without case folding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from mailmaps.rfc822 import split_alias_line
from mailmaps.source import Entry, c_string, logical_lines
from mailmaps.text import printable

__all__ = ["add_signature", "parse_aliases_source"]

log = logging.getLogger("mailmaps")


def parse_aliases_source(data: bytes, path: str, *, utf8: bool) -> Iterator[Entry]:
    """Parse an aliases(5) file into ``(name, value, lineno)`` entries; warn about bad lines."""
    for lineno, raw in logical_lines(data, path):
        raw = c_string(raw)
        if utf8 and not raw.isascii():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                shown = printable(raw)
                log.warning(
                    '%s, line %d: non-UTF-8 input "%s" -- ignoring this line', path, lineno, shown
                )
                continue
        try:
            pair = split_alias_line(raw.decode("utf-8", "surrogateescape"))
        except ValueError as exc:
            log.warning("%s, line %d: %s", path, lineno, exc)
            continue
        if pair is None:
            continue
        name, value = pair
        yield (
            name.encode("utf-8", "surrogateescape"),
            value.encode("utf-8", "surrogateescape"),
            lineno,
        )


def add_signature(target: Any, myhostname: str, *, incremental: bool) -> None:
    """Add the ``@`` and NIS entries postalias writes after a build or an update.

    ``target`` is a table builder (a new build) or a table opened writable (``-i``); in the
    latter case the ``@`` entry replaces an existing one.
    """
    stamp = b"%010d" % int(time.time())
    if incremental:
        replace = target.options.duplicates
        target.options = target.options.but(duplicates=type(replace).REPLACE)
        target.update("@", "@")
        target.options = target.options.but(duplicates=replace)
        target.put_raw(b"YP_LAST_MODIFIED", stamp)
        target.put_raw(b"YP_MASTER_NAME", myhostname.encode())
        return
    target.add(b"@", b"@")
    target.add_raw(b"YP_LAST_MODIFIED", stamp)
    target.add_raw(b"YP_MASTER_NAME", myhostname.encode())
