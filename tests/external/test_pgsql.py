"""pgsql: tables against a real PostgreSQL server, and differentially against real Postfix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailmaps import open_table
from mailmaps.errors import PermanentLookupError, TemporaryLookupError
from mailmaps.testing.servers import PostgreSQL, free_port
from tests.external._diff import ALIAS_ROWS, batch, confdir, insert_sql, single, write_cf
from tests.external.test_mysql import KEYS

pytestmark = pytest.mark.interop

SEED = (
    "DROP TABLE IF EXISTS alias;\n"
    "CREATE TABLE alias (address TEXT, goto TEXT, active INT);\n"
    + insert_sql("alias", [*ALIAS_ROWS, ("latin@example.com", "ünicode@example.net", 1)])
    + "CREATE OR REPLACE FUNCTION lookup_alias(a text) RETURNS SETOF text\n"
    "  AS 'SELECT goto FROM alias WHERE address = a' LANGUAGE sql;\n"
)

VARIANTS = {
    "plain": "query = SELECT goto FROM alias WHERE address='%s'",
    "columns": "query = SELECT goto, active, address FROM alias WHERE address='%s'",
    "parts": "query = SELECT goto FROM alias WHERE address='%u' || '@' || '%d'",
    "labels": "query = SELECT goto FROM alias WHERE address='%u@%3.%2.%1'",
    "format": "query = SELECT goto FROM alias WHERE address='%s'\nresult_format = %u at %d [%S]",
    "domain": "query = SELECT goto FROM alias WHERE address='%s'\ndomain = example.com",
    "legacy": (
        "table = alias\nselect_field = goto\nwhere_field = address\n"
        "additional_conditions = AND active = 1"
    ),
    "function": "select_function = lookup_alias",
    "limit": "query = SELECT goto FROM alias WHERE address='%s'\nexpansion_limit = 3",
    "like": "query = SELECT goto FROM alias WHERE address LIKE '%%%s' ESCAPE '!'",
}


@pytest.fixture(scope="module")
def server(postgresql: PostgreSQL) -> PostgreSQL:
    postgresql.sql(SEED)
    return postgresql


def connection(server: PostgreSQL, hosts: str | None = None) -> str:
    hosts = hosts or f"inet:127.0.0.1:{server.port}"
    return f"hosts = {hosts}\nuser = postfix\npassword = pw\ndbname = mailmaps\n"


def uri(server: PostgreSQL) -> str:
    return f"postgresql://postfix:pw@/mailmaps?host={server.socket_dir}&port={server.port}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_answers_as_postfix(server: PostgreSQL, shared_dir: Path, variant: str) -> None:
    conf = confdir(shared_dir)
    cf = write_cf(shared_dir, f"{variant}.cf", connection(server) + VARIANTS[variant] + "\n")
    # LIKE '%example.com' also matches the row whose Latin-1 answer is an error (tested below).
    keys = [k for k in KEYS if variant != "like" or not k.endswith("example.com")]
    status, out, _, _ = batch(conf, f"pgsql:{cf}", keys)
    assert status == 0
    assert b"\t" in out


def test_uri_and_failover(server: PostgreSQL, shared_dir: Path) -> None:
    conf = confdir(shared_dir)
    dead = free_port()
    for hosts in (uri(server), f"inet:127.0.0.1:{dead}, 127.0.0.1:{server.port}"):
        cf = write_cf(shared_dir, "hosts.cf", connection(server, hosts) + VARIANTS["plain"])
        status, out, _, _ = batch(conf, f"pgsql:{cf}", ["info@example.com", "nobody@example.com"])
        assert (status, out) == (0, b"info@example.com\talice@example.net,bob@example.net\n")


def test_latin1_results_are_errors_like_postfix_3_7(server: PostgreSQL, shared_dir: Path) -> None:
    conf = confdir(shared_dir)
    cf = write_cf(shared_dir, "latin.cf", connection(server) + VARIANTS["plain"])
    status, out, real_err, our_err = single(conf, f"pgsql:{cf}", "latin@example.com")
    assert (status, out) == (1, b"")
    assert "non-UTF-8" in real_err and "non-UTF-8" in our_err
    with open_table(f"pgsql:{cf}") as table, pytest.raises(PermanentLookupError):
        table.lookup("latin@example.com")
    utf8 = write_cf(
        shared_dir, "utf8.cf", connection(server) + VARIANTS["plain"] + "\nencoding = UTF8\n"
    )
    with open_table(f"pgsql:{utf8}") as table:
        assert table.lookup("latin@example.com") == "ünicode@example.net"
        assert table.lookup("MÜLLER@example.com") == "mueller@example.net"


def test_expansion_limit_and_bad_query(server: PostgreSQL, shared_dir: Path) -> None:
    conf = confdir(shared_dir)
    cf = write_cf(shared_dir, "limit.cf", connection(server) + VARIANTS["limit"].replace("3", "2"))
    assert single(conf, f"pgsql:{cf}", "many@example.com")[:2] == (1, b"")
    bad = write_cf(
        shared_dir, "bad.cf", connection(server) + "query = SELECT x FROM nosuch WHERE y='%s'"
    )
    status, out, real_err, our_err = single(conf, f"pgsql:{bad}", "k@example.com")
    assert (status, out) == (1, b"")
    assert "pgsql query failed" in real_err and "pgsql query failed" in our_err
    with open_table(f"pgsql:{bad}") as table, pytest.raises(TemporaryLookupError):
        table.lookup("k@example.com")


def test_wrong_password_is_temporary(server: PostgreSQL, shared_dir: Path) -> None:
    conf = confdir(shared_dir)
    cf = write_cf(
        shared_dir, "badpw.cf", connection(server).replace("pw", "nope") + VARIANTS["plain"]
    )
    status, out, real_err, our_err = single(conf, f"pgsql:{cf}", "info@example.com")
    assert (status, out) == (1, b"")
    assert "connect to pgsql server" in real_err and "connect to pgsql server" in our_err
    assert "password authentication failed" in our_err


def test_server_stopped_mid_run_then_back(shared_dir: Path) -> None:
    with PostgreSQL(shared_dir / "own") as own:
        own.sql(
            "CREATE TABLE alias (address TEXT, goto TEXT);"
            "INSERT INTO alias VALUES ('a@example.com', 'b@example.net');"
        )
        cf = write_cf(
            shared_dir, "own.cf", connection(own) + VARIANTS["plain"] + "\nretry_interval = 1\n"
        )
        with open_table(f"pgsql:{cf}") as table:
            assert table.lookup("a@example.com") == "b@example.net"
            own.stop()
            with pytest.raises(TemporaryLookupError):
                table.lookup("a@example.com")
            with pytest.raises(TemporaryLookupError):
                table.lookup("nobody@example.com")
            own.start()
            time.sleep(1.1)
            assert table.lookup("a@example.com") == "b@example.net"
            assert table.lookup("nobody@example.com") is None


def test_silent_server_is_temporary(
    shared_dir: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailmaps.backends.pgsql import PgsqlTable

    monkeypatch.setattr(PgsqlTable, "connect_timeout", 1)
    cf = write_cf(
        shared_dir,
        "silent.cf",
        f"hosts = 127.0.0.1:{silent_port}\nuser = postfix\npassword = pw\ndbname = mailmaps\n"
        + VARIANTS["plain"],
    )
    started = time.monotonic()
    with open_table(f"pgsql:{cf}") as table, pytest.raises(TemporaryLookupError):
        table.lookup("info@example.com")
    assert time.monotonic() - started < 10
