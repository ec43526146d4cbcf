"""sqlite: tables, differentially against real Postfix's postmap."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailmaps import open_table
from mailmaps.errors import ConfigError, PermanentLookupError, TemporaryLookupError
from tests.external._diff import ALIAS_ROWS, batch, confdir, single, write_cf
from tests.external.test_mysql import KEYS

pytestmark = pytest.mark.interop

ROWS = [*ALIAS_ROWS, ("number@example.com", 42, 1), ("float@example.com", 2.5, 1)]

VARIANTS = {
    "plain": "query = SELECT goto FROM alias WHERE address='%s'",
    "first_column_only": "query = SELECT goto, active FROM alias WHERE address='%s'",
    "parts": "query = SELECT goto FROM alias WHERE address='%u' || '@' || '%d'",
    "labels": "query = SELECT goto FROM alias WHERE address='%u@%3.%2.%1'",
    "format": "query = SELECT goto FROM alias WHERE address='%s'\nresult_format = %u at %d [%S]",
    "domain": "query = SELECT goto FROM alias WHERE address='%s'\ndomain = example.com",
    "legacy": (
        "table = alias\nselect_field = goto\nwhere_field = address\n"
        "additional_conditions = AND active = 1"
    ),
    "glob": "query = SELECT goto FROM alias WHERE address GLOB '%s'",
}


@pytest.fixture
def database(shared_dir: Path) -> Path:
    path = shared_dir / "aliases.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alias (address TEXT, goto, active INT)")
        db.executemany("INSERT INTO alias VALUES (?, ?, ?)", ROWS)
    path.chmod(0o644)
    return path


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_answers_as_postfix(shared_dir: Path, database: Path, variant: str) -> None:
    conf = confdir(shared_dir)
    cf = write_cf(shared_dir, f"{variant}.cf", f"dbpath = {database}\n{VARIANTS[variant]}\n")
    keys = [*KEYS, "number@example.com", "float@example.com", "*@example.com"]
    status, out, _, _ = batch(conf, f"sqlite:{cf}", keys)
    assert status == 0
    assert b"\t" in out


def test_expansion_limit(shared_dir: Path, database: Path) -> None:
    conf = confdir(shared_dir)
    cf = write_cf(
        shared_dir,
        "limit.cf",
        f"dbpath = {database}\n{VARIANTS['plain']}\nexpansion_limit = 2\n",
    )
    status, out, real_err, our_err = single(conf, f"sqlite:{cf}", "many@example.com")
    assert (status, out) == (1, b"")
    assert "Expansion limit exceeded" in real_err and "Expansion limit exceeded" in our_err
    with open_table(f"sqlite:{cf}") as table:
        assert table.lookup("info@example.com") == "alice@example.net,bob@example.net"
        with pytest.raises(TemporaryLookupError):
            table.lookup("many@example.com")


def test_bad_query_and_missing_database(shared_dir: Path, database: Path) -> None:
    conf = confdir(shared_dir)
    cf = write_cf(shared_dir, "bad.cf", f"dbpath = {database}\nquery = SELECT x FROM nosuch\n")
    status, _, real_err, our_err = single(conf, f"sqlite:{cf}", "k")
    assert status == 1
    assert "no such table" in real_err and "no such table" in our_err
    with open_table(f"sqlite:{cf}") as table, pytest.raises(PermanentLookupError):
        table.lookup("k")
    missing = write_cf(shared_dir, "missing.cf", f"dbpath = {shared_dir}/nope/x.db\nquery = x\n")
    with pytest.raises(ConfigError, match="Can't open database"):
        open_table(f"sqlite:{missing}")
    assert not (shared_dir / "nope").exists()


def test_overriding_entry_warning(shared_dir: Path, database: Path) -> None:
    conf = confdir(shared_dir)
    cf = write_cf(
        shared_dir,
        "twice.cf",
        f"dbpath = /nonexistent\ndbpath = {database}\n{VARIANTS['plain']}\n",
    )
    status, out, real_err, our_err = single(conf, f"sqlite:{cf}", "info@example.com")
    assert (status, out) == (0, b"alice@example.net,bob@example.net\n")
    assert "line 2: overriding earlier entry: dbpath=/nonexistent" in real_err
    assert "line 2: overriding earlier entry: dbpath=/nonexistent" in our_err
