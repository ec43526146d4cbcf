"""The shared contract, run against the Berkeley DB and cdb backends (lmdb, inline and texthash
run it in their own test modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailmaps import OpenOptions, create_table, open_table
from mailmaps.testing import TableContract


class _Built(TableContract):
    map_type = "lmdb"

    def make_table(self, tmp_path: Path, entries: dict[str, str], options: OpenOptions) -> Any:
        spec = f"{self.map_type}:{tmp_path / 't'}"
        with create_table(spec, options) as builder:
            for key, value in entries.items():
                builder.add(key, value)
        return open_table(spec, options)


class TestHashContract(_Built):
    map_type = "hash"


class TestBtreeContract(_Built):
    map_type = "btree"


class TestCdbContract(_Built):
    map_type = "cdb"
