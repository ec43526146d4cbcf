"""open_table, the registry and MapList: Postfix's maps_find() rules (SPEC §1.7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailmaps import (
    ConfigError,
    LookupFailed,
    MapList,
    PermanentLookupError,
    TemporaryLookupError,
    UnknownMapType,
    available_types,
    open_table,
    register,
)
from mailmaps.backends.static import StaticTable


def test_empty_key_is_never_looked_up() -> None:
    """global/maps.in: an empty key is "not found" even before a failing table."""
    with MapList("fail:1maps") as maps:
        assert maps.lookup("") is None
        with pytest.raises(TemporaryLookupError):
            maps.lookup("foobar")


def test_first_table_with_a_value_wins() -> None:
    with MapList("inline:{a=1}, inline:{a=2, b=3}, static:last") as maps:
        assert maps.lookup("a") == "1"
        assert maps.lookup("b") == "3"
        assert maps.lookup("zzz") == "last"


def test_an_error_stops_the_search(caplog: pytest.LogCaptureFixture) -> None:
    with MapList("inline:{a=1}, fail:broken, static:never") as maps:
        assert maps.lookup("a") == "1"
        with pytest.raises(TemporaryLookupError):
            maps.lookup("b")
    assert 'fail:broken lookup error for "b"' in caplog.text


def test_empty_result_is_a_configuration_error(tmp_path: Path) -> None:
    src = tmp_path / "t"
    src.write_text("k v\n")
    with (
        MapList([open_table("static:{ }")], title="virtual_alias_maps") as maps,
        pytest.raises(PermanentLookupError, match="empty string result"),
    ):
        maps.lookup("k")


def test_fixed_only_skips_pattern_tables() -> None:
    with MapList("fail:x, inline:{@example.com=catchall}") as maps:
        assert maps.lookup("@example.com", fixed_only=True) == "catchall"
        with pytest.raises(LookupFailed):
            maps.lookup("@example.com")


def test_surrogates_defer_instead_of_failing_at_open(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match="open database"):
        MapList(f"lmdb:{missing}")
    with MapList(f"inline:{{a=1}}, lmdb:{missing}", surrogates=True) as maps:
        assert maps.lookup("a") == "1"
        with pytest.raises(TemporaryLookupError, match="is unavailable"):
            maps.lookup("b")


def test_unknown_type() -> None:
    with pytest.raises(UnknownMapType, match="unsupported dictionary type: nosuch"):
        open_table("nosuch:x")


def test_builtin_types_cannot_be_replaced() -> None:
    with pytest.raises(ConfigError, match="built in"):
        register("lmdb", StaticTable)
    register("mystatic", StaticTable)
    assert "mystatic" in available_types()
    with open_table("mystatic:v") as table:
        assert table.lookup("x") == "v"


def test_import_mailmaps_imports_no_driver() -> None:
    code = (
        "import sys, mailmaps\n"
        "print(sorted(m for m in ('lmdb', 'berkeleydb', 'cdblib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_driver_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys\nsys.modules['lmdb'] = None\n"
        "from mailmaps import open_table, BackendUnavailable\n"
        f"try:\n    open_table('lmdb:{tmp_path}/x')\n"
        "except BackendUnavailable as e:\n    print(e)\n"
    )
    (tmp_path / "x.lmdb").write_bytes(b"")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'mailmaps[lmdb]'" in out.stdout
