"""``environ:name``: the process environment as a table (``dict_env.c``).

A lookup of ``KEY`` returns the value of the environment variable ``KEY``; with case folding
on (the default) the key is lowercased first, as Postfix does.  The name is ignored.
"""

from __future__ import annotations

import os
from typing import ClassVar

from mailmaps.backends._base import BaseTable

__all__ = ["EnvironTable"]


class EnvironTable(BaseTable):
    """An ``environ:`` table: read-only, exact keys."""

    map_type: ClassVar[str] = "environ"
    fixed_keys: ClassVar[bool] = True

    def _lookup(self, key: str) -> str | None:
        return os.environ.get(key)
