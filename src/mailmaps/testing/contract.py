"""The shared contract test suite: what every table backend must do (pytest).

A backend's test class subclasses :class:`TableContract`, says whether its keys are fixed (exact)
and implements :meth:`TableContract.make_table`, which builds a table holding the given entries.
Every test here then runs against that backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from mailmaps.table import OpenOptions, Table

__all__ = ["TableContract"]

SAMPLE: dict[str, str] = {
    "alice@example.com": "alice@example.net",
    "bob": "bob@example.org, carol@example.org",
    "@example.com": "catchall@example.net",
    '"a b"@example.com': "quoted@example.net",
    "müller@example.de": "mueller@example.de",
}


class TableContract:
    """Tests every backend passes.  Subclasses set :attr:`fixed_keys` and :meth:`make_table`."""

    #: Exact-key table (hash, lmdb, inline, ...) rather than a pattern table.
    fixed_keys: ClassVar[bool] = True
    #: Whether keys are folded to lower case when ``OpenOptions.fold`` is on.
    folds: ClassVar[bool] = True

    def make_table(self, tmp_path: Path, entries: dict[str, str], options: OpenOptions) -> Any:
        """Return an open table holding ``entries`` (keys as written in a source file)."""
        raise NotImplementedError

    def _table(self, tmp_path: Path, options: OpenOptions | None = None) -> Any:
        return self.make_table(tmp_path, SAMPLE, options or OpenOptions())

    def test_is_a_table(self, tmp_path: Path) -> None:
        with self._table(tmp_path) as table:
            assert isinstance(table, Table)
            assert table.fixed_keys is self.fixed_keys
            assert isinstance(table.name, str)

    def test_hit_returns_the_value(self, tmp_path: Path) -> None:
        with self._table(tmp_path) as table:
            for key, value in SAMPLE.items():
                assert table.lookup(key) == value

    def test_miss_is_none(self, tmp_path: Path) -> None:
        with self._table(tmp_path) as table:
            assert table.lookup("nobody@example.com.invalid") is None
            assert table.lookup("alice@example.co") is None
            assert table.lookup("alice@example.comx") is None

    def test_keys_fold_case(self, tmp_path: Path) -> None:
        with self._table(tmp_path) as table:
            expect = SAMPLE["alice@example.com"] if self.folds else None
            assert table.lookup("ALICE@Example.COM") == expect
            expect = SAMPLE["müller@example.de"] if self.folds else None
            assert table.lookup("MÜLLER@EXAMPLE.DE") == expect

    def test_no_folding_when_asked(self, tmp_path: Path) -> None:
        entries = {"Mixed@Example.com": "x"}
        with self.make_table(tmp_path, entries, OpenOptions(fold=False)) as table:
            assert table.lookup("Mixed@Example.com") == "x"
            assert table.lookup("mixed@example.com") is None

    def test_non_utf8_key_is_not_found(self, tmp_path: Path) -> None:
        bad = b"alice\xff@example.com".decode("utf-8", "surrogateescape")
        with self._table(tmp_path) as table:
            assert table.lookup(bad) is None

    def test_close_is_idempotent(self, tmp_path: Path) -> None:
        table = self._table(tmp_path)
        table.close()
        table.close()

    def test_lookup_many_agrees_with_lookup(self, tmp_path: Path) -> None:
        keys = [*SAMPLE, "nobody", "ALICE@EXAMPLE.COM", "", "bob"]
        with self._table(tmp_path) as table:
            assert table.lookup_many(keys) == [table.lookup(k) for k in keys]
