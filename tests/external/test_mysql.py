"""mysql: tables against a real MariaDB server, and differentially against real Postfix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailmaps import open_table
from mailmaps.backends.mysql import MysqlTable
from mailmaps.errors import ConfigError, TemporaryLookupError
from mailmaps.table import OpenOptions
from mailmaps.testing.servers import MariaDB, free_port
from tests.external._diff import ALIAS_ROWS, batch, confdir, insert_sql, single, write_cf

pytestmark = pytest.mark.interop

SEED = (
    "DROP TABLE IF EXISTS alias;\n"
    "DROP PROCEDURE IF EXISTS lookup_alias;\n"
    "CREATE TABLE alias (address VARCHAR(255), goto TEXT, active INT);\n"
    + insert_sql("alias", [*ALIAS_ROWS, ("percent@example.com", "100%", 1)])
    + "CREATE PROCEDURE lookup_alias(IN a VARCHAR(1024))"
    " SELECT goto FROM alias WHERE address = a;\n"
)

KEYS = [
    "info@example.com",
    "INFO@Example.COM",
    "empty@example.com",
    "null@example.com",
    "postmaster@example.com",
    "o'brien@example.com",
    "Müller@example.com",
    "user@mail.example.com",
    "x@example.org",
    "@example.org",
    "bare@example.com",
    "emptylocal@example.com",
    "comma@example.com",
    "off@example.com",
    "percent@example.com",
    "nobody@example.com",
    "info",
    "example.com",
    "@example.com",
    "user@",
    "' OR '1'='1",
    "x' OR 'a'='a",
    "a\\' OR 1=1 -- ",
    "info@example.com'; DROP TABLE alias; --",
    "%s@example.com",
    "info@example.com ",
    "a" * 300 + "@example.com",
    "info@example.com\0' OR '1'='1",
]

# Query variants: (name, settings after the connection ones).
VARIANTS = {
    "plain": "query = SELECT goto FROM alias WHERE address='%s'",
    "columns": "query = SELECT goto, active, address FROM alias WHERE address='%s'",
    "parts": "query = SELECT goto FROM alias WHERE address=CONCAT('%u', '@', '%d')",
    "labels": "query = SELECT goto FROM alias WHERE address='%u@%3.%2.%1'",
    "domain_only": "query = SELECT goto FROM alias WHERE address='@%d'",
    "format_parts": "query = SELECT goto FROM alias WHERE address='%s'\nresult_format = %u at %d",
    "format_key": (
        "query = SELECT goto FROM alias WHERE address='%s'\nresult_format = %s (%S/%U/%D) %%"
    ),
    "format_nexthop": (
        "query = SELECT goto FROM alias WHERE address='%s'\nresult_format = smtp:[%d]"
    ),
    "domain_list": (
        "query = SELECT goto FROM alias WHERE address='%s'\ndomain = example.com, mail.example.com"
    ),
    "domain_negated": (
        "query = SELECT goto FROM alias WHERE address='%s'\ndomain = !mail.example.com, example.com"
    ),
    "domain_table": (
        "query = SELECT goto FROM alias WHERE address='%s'\n"
        "domain = inline:{ example.com=yes, example.org=yes }"
    ),
    "limit": "query = SELECT goto FROM alias WHERE address='%s'\nexpansion_limit = 3",
    "legacy": (
        "table = alias\nselect_field = goto\nwhere_field = address\n"
        "additional_conditions = AND active = 1"
    ),
    "procedure": "query = CALL lookup_alias('%s')",
    "like": "query = SELECT goto FROM alias WHERE address LIKE '%%%s'",
}


@pytest.fixture(scope="module")
def server(mariadb: MariaDB) -> MariaDB:
    mariadb.sql(SEED)
    return mariadb


def connection(server: MariaDB, hosts: str | None = None) -> str:
    hosts = hosts or f"inet:127.0.0.1:{server.port}"
    return f"hosts = {hosts}\nuser = postfix\npassword = pw\ndbname = mailmaps\n"


@pytest.fixture
def conf(shared_dir: Path) -> Path:
    return confdir(shared_dir)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_answers_as_postfix(
    server: MariaDB, shared_dir: Path, conf: Path, variant: str
) -> None:
    cf = write_cf(shared_dir, f"{variant}.cf", connection(server) + VARIANTS[variant] + "\n")
    status, out, _, _ = batch(conf, f"mysql:{cf}", KEYS)
    assert status == 0
    assert b"\t" in out  # something was found: the comparison is not vacuous


def test_expansion_limit_is_an_error_like_postfix(
    server: MariaDB, shared_dir: Path, conf: Path
) -> None:
    cf = write_cf(shared_dir, "limit.cf", connection(server) + VARIANTS["limit"].replace("3", "2"))
    status, out, real_err, our_err = single(conf, f"mysql:{cf}", "many@example.com")
    assert (status, out) == (1, b"")
    assert "Expansion limit exceeded" in real_err
    assert "Expansion limit exceeded" in our_err
    assert single(conf, f"mysql:{cf}", "info@example.com")[:2] == (
        0,
        b"alice@example.net,bob@example.net\n",
    )
    with open_table(f"mysql:{cf}") as table, pytest.raises(TemporaryLookupError):
        table.lookup("many@example.com")


def test_unix_socket_and_failover(server: MariaDB, shared_dir: Path, conf: Path) -> None:
    dead = free_port()
    for hosts in (f"unix:{server.socket}", f"inet:127.0.0.1:{dead} 127.0.0.1:{server.port}"):
        cf = write_cf(shared_dir, "hosts.cf", connection(server, hosts) + VARIANTS["plain"])
        status, out, _, _ = batch(conf, f"mysql:{cf}", ["info@example.com", "nobody@example.com"])
        assert (status, out) == (0, b"info@example.com\talice@example.net,bob@example.net\n")


def test_no_result_set(server: MariaDB, shared_dir: Path, conf: Path) -> None:
    cf = write_cf(shared_dir, "do.cf", connection(server) + "query = DO '%s'\n")
    status, _, real_err, our_err = single(conf, f"mysql:{cf}", "info@example.com")
    assert status == 1
    assert "query returned no result set" in real_err
    assert "query returned no result set" in our_err
    cf = write_cf(
        shared_dir, "do.cf", connection(server) + "query = DO '%s'\nrequire_result_set = no\n"
    )
    assert single(conf, f"mysql:{cf}", "info@example.com")[:2] == (1, b"")
    with open_table(f"mysql:{cf}") as table:
        assert table.lookup("info@example.com") is None


def test_bad_template_is_a_configuration_error(shared_dir: Path, conf: Path) -> None:
    cf = write_cf(shared_dir, "bad.cf", "dbname = x\nquery = SELECT '%x'\n")
    status, out, real_err, our_err = single(conf, f"mysql:{cf}", "k")
    assert (status, out) == (1, b"")
    assert "Invalid query template" in real_err and "Invalid query template" in our_err
    with pytest.raises(ConfigError, match="Invalid query template"):
        open_table(f"mysql:{cf}")


def test_missing_dbname_and_relative_name(shared_dir: Path, conf: Path) -> None:
    cf = write_cf(shared_dir, "nodb.cf", "query = SELECT 1\n")
    status, _, real_err, our_err = single(conf, f"mysql:{cf}", "k")
    assert status == 1
    assert "bad string length 0 < 1" in real_err and "bad string length 0 < 1" in our_err
    # A name that does not start with / or . is a main.cf prefix, not a file.
    status, _, real_err, our_err = single(conf, "mysql:pf/my.cf", "k")
    assert status == 1
    assert "pf/my.cf_dbname" in real_err and "pf/my.cf_dbname" in our_err


def test_main_cf_prefix_form(server: MariaDB, shared_dir: Path) -> None:
    settings = "".join(
        f"mymaps_{line}\n" for line in [*connection(server).splitlines(), VARIANTS["plain"]]
    )
    conf = confdir(shared_dir, "compatibility_level = 3.6\n" + settings)
    status, out, _, _ = batch(conf, "mysql:mymaps", ["info@example.com", "x@example.org"])
    assert (status, out) == (0, b"info@example.com\talice@example.net,bob@example.net\n")


# --- faults -------------------------------------------------------------------------------


def open_mysql(cf: Path) -> MysqlTable:
    table: MysqlTable = open_table(f"mysql:{cf}", OpenOptions())
    return table


def test_wrong_password_is_temporary(server: MariaDB, shared_dir: Path, conf: Path) -> None:
    cf = write_cf(
        shared_dir, "badpw.cf", connection(server).replace("pw", "wrong") + VARIANTS["plain"]
    )
    status, out, real_err, our_err = single(conf, f"mysql:{cf}", "info@example.com")
    assert (status, out) == (1, b"")
    assert "Access denied" in real_err and "Access denied" in our_err
    with open_mysql(cf) as table, pytest.raises(TemporaryLookupError):
        table.lookup("info@example.com")


def test_silent_server_is_temporary(
    server: MariaDB, shared_dir: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MysqlTable, "connect_timeout", 0.5)
    monkeypatch.setattr(MysqlTable, "read_timeout", 0.5)
    cf = write_cf(
        shared_dir,
        "silent.cf",
        connection(server, f"127.0.0.1:{silent_port}") + VARIANTS["plain"],
    )
    started = time.monotonic()
    with open_mysql(cf) as table, pytest.raises(TemporaryLookupError):
        table.lookup("info@example.com")
    assert time.monotonic() - started < 5


def test_server_stopped_mid_run_then_back(shared_dir: Path) -> None:
    """A private server of its own: stopping the shared one would disturb other tests."""
    with MariaDB(shared_dir / "own") as own:
        own.sql(
            "CREATE TABLE alias (address VARCHAR(255), goto TEXT);"
            "INSERT INTO alias VALUES ('a@example.com', 'b@example.net');"
        )
        cf = write_cf(
            shared_dir,
            "own.cf",
            connection(own) + VARIANTS["plain"] + "\nretry_interval = 1\n",
        )
        with open_mysql(cf) as table:
            assert table.lookup("a@example.com") == "b@example.net"
            own.stop()
            with pytest.raises(TemporaryLookupError):
                table.lookup("a@example.com")
            with pytest.raises(TemporaryLookupError):  # still down: never "not found"
                table.lookup("nobody@example.com")
            own.start()
            time.sleep(1.1)  # the failed host is skipped for retry_interval
            assert table.lookup("a@example.com") == "b@example.net"
            assert table.lookup("nobody@example.com") is None


def test_option_file(server: MariaDB, shared_dir: Path, conf: Path) -> None:
    """The user comes from a MySQL option file and group; the password never does, because
    Postfix always passes one to the client library (an empty one when none is set)."""
    options = shared_dir / "my.cnf"
    options.write_text("[mailmaps]\nuser = postfix\npassword = pw\n")
    options.chmod(0o644)
    common = f"hosts = inet:127.0.0.1:{server.port}\ndbname = mailmaps\n" + VARIANTS["plain"]
    group = f"\noption_file = {options}\noption_group = mailmaps\n"
    keys = ["info@example.com", "nobody@example.com"]
    cf = write_cf(shared_dir, "optfile.cf", common + group + "password = pw\n")
    status, out, _, _ = batch(conf, f"mysql:{cf}", keys)
    assert (status, out) == (0, b"info@example.com\talice@example.net,bob@example.net\n")
    cf = write_cf(shared_dir, "optfile-nopw.cf", common + group)
    status, out, real_err, our_err = batch(conf, f"mysql:{cf}", keys)
    assert (status, out) == (1, b"")
    assert "using password: NO" in real_err and "using password: NO" in our_err


def test_error_in_the_middle_of_a_batch(server: MariaDB, shared_dir: Path, conf: Path) -> None:
    """An error ends ``postmap -q -`` with what Postfix had written by then: whole 4096-byte
    blocks of the answers before the failing key, not the rest (its stdout is buffered)."""
    cf = write_cf(shared_dir, "mid.cf", connection(server) + VARIANTS["limit"].replace("3", "2"))
    keys = ["info@example.com"] * 300 + ["many@example.com"] + ["info@example.com"] * 5
    status, out, real_err, our_err = batch(conf, f"mysql:{cf}", keys)
    assert status == 1
    assert len(out) == 3 * 4096  # whole blocks of the 15 kB answered before the error
    assert "Expansion limit exceeded" in real_err and "Expansion limit exceeded" in our_err


def test_tls(shared_dir: Path, conf: Path) -> None:
    """TLS when a tls_* setting asks for it, as with Postfix's client library: a user that
    requires TLS gets in with ``tls_CAfile`` and is refused without it; the certificate is
    checked only with ``tls_verify_cert = yes`` (this one is for 127.0.0.1, not localhost)."""
    from mailmaps.testing.servers import self_signed_certificate

    cert, key = self_signed_certificate(shared_dir)
    with MariaDB(shared_dir / "tls", tls=(cert, key)) as tls_server:
        tls_server.sql(
            "CREATE TABLE alias (address VARCHAR(255), goto TEXT);"
            "INSERT INTO alias VALUES ('a@example.com', 'b@example.net');"
            "CREATE USER 'tls'@'127.0.0.1' IDENTIFIED BY 'pw' REQUIRE SSL;"
            "GRANT SELECT ON mailmaps.* TO 'tls'@'127.0.0.1';"
        )
        common = (
            f"hosts = inet:127.0.0.1:{tls_server.port}\nuser = tls\npassword = pw\n"
            "dbname = mailmaps\n" + VARIANTS["plain"] + "\n"
        )
        keys = ["a@example.com"]
        with_tls = write_cf(shared_dir, "tls.cf", common + f"tls_CAfile = {cert}\n")
        assert batch(conf, f"mysql:{with_tls}", keys)[:2] == (0, b"a@example.com\tb@example.net\n")
        plain = write_cf(shared_dir, "plain.cf", common)
        status, out, real_err, our_err = batch(conf, f"mysql:{plain}", keys)
        assert (status, out) == (1, b"")
        assert "Access denied" in real_err and "Access denied" in our_err
        verified = write_cf(
            shared_dir,
            "verified.cf",
            common + f"tls_CAfile = {cert}\ntls_verify_cert = yes\n",
        )
        with open_table(f"mysql:{verified}") as table:
            assert table.lookup("a@example.com") == "b@example.net"
