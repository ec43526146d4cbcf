"""``nis:map``: NIS lookups as Postfix makes them on a host without a NIS domain.

Debian's Postfix has ``alias_maps = hash:/etc/aliases, nis:mail.aliases`` by default.  Where no
NIS domain is set (``dict_nis.c``), Postfix warns once and every lookup finds nothing; mailmaps
does the same, so the default configuration resolves as Postfix resolves it.  Real NIS servers
are not supported.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from mailmaps.backends._base import BaseTable
from mailmaps.table import OpenOptions

__all__ = ["NisTable"]

log = logging.getLogger("mailmaps")


class NisTable(BaseTable):
    """A ``nis:`` table on a host without NIS: always "not found"."""

    map_type: ClassVar[str] = "nis"
    fixed_keys: ClassVar[bool] = True

    def __init__(self, name: str, options: OpenOptions) -> None:
        super().__init__(name, options)
        self._warned = False

    def _lookup(self, key: str) -> str | None:
        if not self._warned:
            log.warning("NIS domain name not set - NIS lookups disabled")
            self._warned = True
        return None
