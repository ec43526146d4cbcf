"""``proxy:type:name``: a table read through Postfix's proxymap(8) service.

proxymap answers with the table's own lookups, so mailmaps opens the inner table directly: the
answers are the same, without the extra process.  Only tables that proxymap can serve make
sense here; the inner table's errors are reported as its own.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mailmaps.errors import ConfigError
from mailmaps.table import OpenOptions

__all__ = ["ProxyTable"]


class ProxyTable:
    """``proxy:`` opens the table it names (:meth:`open` returns the inner table)."""

    map_type: ClassVar[str] = "proxy"

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Any:
        """Open the inner table ``name`` (``type:name``)."""
        from mailmaps.maps import open_table  # maps imports the registry, which imports us

        if ":" not in name:
            raise ConfigError(f"proxy:{name}: need proxy:type:name")
        if writable:
            raise ConfigError(f"proxy:{name}: use proxywrite: for updates")
        return open_table(name, options)
