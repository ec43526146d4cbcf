"""``hash:`` and ``btree:`` tables (Berkeley DB): the library API, and differential tests that
compare every answer with real Postfix 3.7 (``/usr/sbin/postmap``) on the same files."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from berkeleydb import db

import mailmaps
from mailmaps.backends.hashdb import BtreeTable, HashTable
from mailmaps.errors import BackendUnavailable, ConfigError
from mailmaps.maps import create_table, open_table
from mailmaps.table import Duplicates, NulMode, OpenOptions
from tests.backends._support import ENTRIES, QUERIES, backdate, build, write_source

POSTMAP = "/usr/sbin/postmap"
TYPES = ["hash", "btree"]


def raw_entries(path: Path) -> list[tuple[bytes, bytes]]:
    """Every stored pair in file order, read with Berkeley DB directly."""
    handle = db.DB()
    handle.open(str(path), None, db.DB_UNKNOWN, db.DB_RDONLY)
    try:
        cursor = handle.cursor()
        pairs: list[tuple[bytes, bytes]] = []
        entry = cursor.first()
        while entry is not None:
            pairs.append(entry)
            entry = cursor.next()
        cursor.close()
        return pairs
    finally:
        handle.close()


def db_type(path: Path) -> int:
    handle = db.DB()
    handle.open(str(path), None, db.DB_UNKNOWN, db.DB_RDONLY)
    try:
        result: int = handle.get_type()
        return result
    finally:
        handle.close()


def render(pairs: Any) -> str:
    return "".join(f"{k}\t{v}\n" for k, v in pairs)


@pytest.fixture
def pfconf(tmp_path: Path) -> Path:
    """A Postfix configuration directory: UTF-8 mode on, as mailmaps' default options."""
    conf = tmp_path / "postfix-conf"
    conf.mkdir()
    main_cf = conf / "main.cf"
    main_cf.write_text("compatibility_level = 3.6\n")
    backdate(main_cf)
    return conf


def postmap(conf: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTMAP, "-c", str(conf), *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=300,
    )


def postmap_q(conf: Path, spec: str, key: str, *flags: str) -> str | None:
    result = postmap(conf, *flags, "-q", key, spec)
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.removesuffix("\n") if result.returncode == 0 else None


# -- the library ----------------------------------------------------------------------------------


@pytest.mark.parametrize("map_type", TYPES)
def test_round_trip(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 'table'}"
    build(spec, ENTRIES)
    assert (tmp_path / "table.db").exists()
    expected_type = db.DB_HASH if map_type == "hash" else db.DB_BTREE
    assert db_type(tmp_path / "table.db") == expected_type
    with open_table(spec) as table:
        assert table.lookup("plain@example.com") == "v1"
        assert table.lookup("PLAIN@EXAMPLE.COM") == "v1"
        assert table.lookup('"quoted key"@example.com') == "v2 with spaces"
        assert table.lookup('"A B"') == "c d"
        assert table.lookup("ÜNÏCÖDÉ@EXÄMPLE.ORG") == "ü-value"
        assert table.lookup("STRASSE@x.de") == "strasse"
        assert table.lookup("a b") is None
        assert table.lookup("missing") is None
        assert len(list(table.items())) == len(ENTRIES)


@pytest.mark.parametrize("map_type", TYPES)
def test_classes(map_type: str) -> None:
    cls = HashTable if map_type == "hash" else BtreeTable
    assert cls.map_type == map_type
    assert cls.suffix == ".db"
    assert cls.default_nul is True
    assert cls.lock_style == "flock"


@pytest.mark.parametrize("map_type", TYPES)
@pytest.mark.parametrize(
    ("nul", "suffix"), [(NulMode.AUTO, b"\0"), (NulMode.WITH, b"\0"), (NulMode.WITHOUT, b"")]
)
def test_nul_modes(tmp_path: Path, map_type: str, nul: NulMode, suffix: bytes) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("Key", "Value"), ("other", "x")], OpenOptions(nul=nul))
    stored = dict(raw_entries(tmp_path / "t.db"))
    assert stored == {b"key" + suffix: b"Value" + suffix, b"other" + suffix: b"x" + suffix}
    for mode in NulMode:
        with open_table(spec, OpenOptions(nul=mode)) as table:
            readable = (
                mode is NulMode.AUTO
                or mode is nul
                or (nul is NulMode.AUTO and mode is NulMode.WITH)
            )
            assert table.lookup("KEY") == ("Value" if readable else None)
            assert dict(table.items()) == {"key": "Value", "other": "x"}


@pytest.mark.parametrize("map_type", TYPES)
def test_folding(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("MiXeD@Example.COM", "folded"), ("Straße", "x")])
    assert {k for k, _ in raw_entries(tmp_path / "t.db")} == {b"mixed@example.com\0", b"strasse\0"}
    unfolded = f"{map_type}:{tmp_path / 'u'}"
    build(unfolded, [("MiXeD@Example.COM", "kept")], OpenOptions(fold=False))
    assert [k for k, _ in raw_entries(tmp_path / "u.db")] == [b"MiXeD@Example.COM\0"]
    with open_table(unfolded, OpenOptions(fold=False)) as table:
        assert table.lookup("MiXeD@Example.COM") == "kept"
        assert table.lookup("mixed@example.com") is None
    # Outside UTF-8 mode only ASCII letters fold.
    ascii_only = f"{map_type}:{tmp_path / 'a'}"
    build(ascii_only, [("Ünï@X", "v")], OpenOptions(utf8=False))
    assert [k for k, _ in raw_entries(tmp_path / "a.db")] == ["Ünï@x\0".encode()]


@pytest.mark.parametrize("map_type", TYPES)
def test_duplicates(tmp_path: Path, map_type: str, caplog: pytest.LogCaptureFixture) -> None:
    entries = [("dup@example.com", "first"), ("DUP@example.com", "second"), ("x", "y")]
    expected = {
        Duplicates.WARN: "first",
        Duplicates.IGNORE: "first",
        Duplicates.REPLACE: "second",
    }
    for policy, value in expected.items():
        spec = f"{map_type}:{tmp_path / policy.value}"
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mailmaps"):
            build(spec, entries, OpenOptions(duplicates=policy))
        warned = 'duplicate entry: "dup@example.com"' in caplog.text
        assert warned is (policy is Duplicates.WARN)
        with open_table(spec) as table:
            assert table.lookup("dup@example.com") == value
    with pytest.raises(ConfigError, match="duplicate entry"):
        build(f"{map_type}:{tmp_path / 'error'}", entries, OpenOptions(duplicates=Duplicates.ERROR))
    assert not (tmp_path / "error.db").exists()


@pytest.mark.parametrize("map_type", TYPES)
def test_utf8_keys_and_values(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    entries = [("Ωμέγα@παράδειγμα.ελ", "Δέλτα"), ("日本@例え.jp", "値"), ("emoji😀", "🎉")]
    build(spec, entries)
    with open_table(spec) as table:
        assert table.lookup("ΩΜΈΓΑ@ΠΑΡΆΔΕΙΓΜΑ.ΕΛ") == "Δέλτα"
        assert table.lookup("日本@例え.jp") == "値"
        assert table.lookup("EMOJI😀") == "🎉"


@pytest.mark.parametrize("map_type", TYPES)
def test_empty_table(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 'empty'}"
    build(spec, [])
    assert (tmp_path / "empty.db").stat().st_size > 0
    with open_table(spec) as table:
        assert table.lookup("anything") is None
        assert list(table.items()) == []


@pytest.mark.parametrize("map_type", TYPES)
def test_large_table(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 'large'}"
    count = 100_000
    with create_table(spec) as builder:
        for i in range(count):
            builder.add(f"user{i}@example{i % 97}.com", f"dest{i}@example.net")
    with open_table(spec, OpenOptions(lock=False)) as table:
        for i in range(0, count, 7):
            assert table.lookup(f"USER{i}@example{i % 97}.com") == f"dest{i}@example.net"
        assert table.lookup(f"user{count}@example0.com") is None
        items = list(table.items())
    assert len(items) == count
    if map_type == "btree":
        assert [k for k, _ in items] == sorted(k for k, _ in items)


@pytest.mark.parametrize("map_type", TYPES)
def test_failed_build_leaves_old_table(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("old", "value")])
    before = (tmp_path / "t.db").read_bytes()
    with pytest.raises(RuntimeError, match="boom"), create_table(spec) as builder:
        builder.add("new", "value")
        raise RuntimeError("boom")
    assert (tmp_path / "t.db").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.db"]
    with open_table(spec) as table:
        assert table.lookup("old") == "value"
        assert table.lookup("new") is None


@pytest.mark.parametrize("map_type", TYPES)
def test_rebuild_replaces_table(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("old", "value")])
    with open_table(spec) as reader:
        build(spec, [("new", "value")])
        # An open table keeps reading the file it opened; a new open sees the new one.
        assert reader.lookup("old") == "value"
    with open_table(spec) as table:
        assert table.lookup("old") is None
        assert table.lookup("new") == "value"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.db"]


@pytest.mark.parametrize("map_type", TYPES)
def test_update_and_delete(tmp_path: Path, map_type: str, caplog: pytest.LogCaptureFixture) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("Keep@Example.com", "kept"), ("gone", "x")])
    with (
        caplog.at_level(logging.WARNING, logger="mailmaps"),
        open_table(spec, writable=True) as table,
    ):
        table.update("New@Example.com", "added")
        table.update("keep@example.com", "ignored")
        assert table.delete("GONE") is True
        assert table.delete("never-there") is False
        assert table.lookup("new@example.com") == "added"
    assert 'duplicate entry: "keep@example.com"' in caplog.text
    assert dict(raw_entries(tmp_path / "t.db")) == {
        b"keep@example.com\0": b"kept\0",
        b"new@example.com\0": b"added\0",
    }
    with open_table(spec, OpenOptions(duplicates=Duplicates.REPLACE), writable=True) as table:
        table.update("keep@example.com", "replaced")
    with open_table(spec, OpenOptions(duplicates=Duplicates.IGNORE), writable=True) as table:
        caplog.clear()
        table.update("keep@example.com", "ignored again")
        assert "duplicate" not in caplog.text
    with open_table(spec) as table:
        assert table.lookup("KEEP@example.com") == "replaced"
        assert table.lookup("gone") is None


@pytest.mark.parametrize("map_type", TYPES)
def test_update_keeps_the_files_nul_convention(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("a", "1")], OpenOptions(nul=NulMode.WITHOUT))
    with open_table(spec, writable=True) as table:
        assert table.lookup("a") == "1"  # the lookup settles the convention: no NUL
        table.update("b", "2")
        assert table.delete("a") is True
    assert raw_entries(tmp_path / "t.db") == [(b"b", b"2")]


@pytest.mark.parametrize("map_type", TYPES)
def test_missing_file(tmp_path: Path, map_type: str) -> None:
    name = tmp_path / "missing"
    with pytest.raises(ConfigError) as info:
        open_table(f"{map_type}:{name}")
    assert str(info.value) == f"open database {name}.db: No such file or directory"
    assert isinstance(info.value.__cause__, FileNotFoundError)
    with pytest.raises(ConfigError, match="No such file or directory"):
        open_table(f"{map_type}:{name}", writable=True)


@pytest.mark.parametrize("map_type", TYPES)
def test_not_a_database(tmp_path: Path, map_type: str) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not a Berkeley DB file\n" * 300)
    with pytest.raises(ConfigError) as info:
        open_table(f"{map_type}:{tmp_path / 'junk'}")
    assert str(info.value) == f"open database {tmp_path / 'junk'}.db: Invalid argument"


def test_wrong_access_method(tmp_path: Path) -> None:
    build(f"btree:{tmp_path / 't'}", [("a", "b")])
    with pytest.raises(ConfigError, match="Invalid argument"):
        open_table(f"hash:{tmp_path / 't'}")


@pytest.mark.parametrize("map_type", TYPES)
def test_lookup_waits_for_an_exclusive_flock(tmp_path: Path, map_type: str) -> None:
    """Lookups take a shared flock() on the .db file, as Postfix does, so they wait for a writer."""
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("a", "1")])
    results: list[str | None] = []
    with open_table(spec) as table:
        fd = os.open(tmp_path / "t.db", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            reader = threading.Thread(target=lambda: results.append(table.lookup("a")))
            reader.start()
            reader.join(0.5)
            assert reader.is_alive() and results == []
            fcntl.flock(fd, fcntl.LOCK_UN)
            reader.join(10)
        finally:
            os.close(fd)
    assert results == ["1"]


@pytest.mark.parametrize("map_type", TYPES)
def test_no_locks_when_disabled(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("a", "1")])
    fd = os.open(tmp_path / "t.db", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with open_table(spec, OpenOptions(lock=False)) as table:
            assert table.lookup("a") == "1"
    finally:
        os.close(fd)


@pytest.mark.parametrize("map_type", TYPES)
@pytest.mark.parametrize("lock", [True, False])
def test_concurrent_lookups(tmp_path: Path, map_type: str, lock: bool) -> None:
    """One open table serves lookups from several threads at once (DB_THREAD handles)."""
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [(f"k{i}", f"v{i}" * (i % 50)) for i in range(5000)])
    errors: list[str] = []
    with open_table(spec, OpenOptions(lock=lock)) as table:

        def work(offset: int) -> None:
            for i in range(offset, 5000, 3):
                if table.lookup(f"K{i}") != f"v{i}" * (i % 50):
                    errors.append(f"k{i}")

        threads = [threading.Thread(target=work, args=(n % 3,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []


@pytest.mark.parametrize("map_type", TYPES)
def test_close_twice(tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("a", "1")])
    table = open_table(spec, writable=True)
    table.update("b", "2")
    table.close()
    table.close()
    assert table.closed
    with open_table(spec) as again:
        assert again.lookup("b") == "2"


@pytest.mark.parametrize("map_type", TYPES)
def test_driver_missing(tmp_path: Path, map_type: str) -> None:
    """Without the berkeleydb package, opening and building say which extra to install."""
    code = "\n".join(
        [
            "import sys",
            "sys.modules['berkeleydb'] = None",
            "from mailmaps.errors import BackendUnavailable",
            "from mailmaps.maps import create_table, open_table",
            "spec = sys.argv[1]",
            "for action in (lambda: open_table(spec), lambda: create_table(spec).commit()):",
            "    try:",
            "        action()",
            "    except BackendUnavailable as exc:",
            "        print(exc.map_type, exc.extra, exc, sep='|')",
        ]
    )
    env = dict(os.environ, PYTHONPATH=str(Path(mailmaps.__file__).parent.parent))
    result = subprocess.run(
        [sys.executable, "-c", code, f"{map_type}:{tmp_path / 't'}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout + result.stderr
    for line in lines:
        found_type, extra, message = line.split("|")
        assert (found_type, extra) == (map_type, "bdb")
        assert "pip install 'mailmaps[bdb]'" in message
    assert not list(tmp_path.iterdir())
    assert issubclass(BackendUnavailable, ConfigError)


# -- interoperability with real Postfix --------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("map_type", TYPES)
@pytest.mark.parametrize("flag", ["", "-N", "-n"])
def test_reads_postmap_files(pfconf: Path, tmp_path: Path, map_type: str, flag: str) -> None:
    source = write_source(tmp_path / "src", ENTRIES)
    spec = f"{map_type}:{source}"
    result = postmap(pfconf, *([flag] if flag else []), spec)
    assert result.returncode == 0, result.stderr
    with open_table(spec) as table:
        for query in QUERIES:
            assert table.lookup(query) == postmap_q(pfconf, spec, query), query
        assert render(table.items()) == postmap(pfconf, "-s", spec).stdout
    nul = {"": NulMode.WITH, "-N": NulMode.WITH, "-n": NulMode.WITHOUT}[flag]
    other = NulMode.WITHOUT if nul is NulMode.WITH else NulMode.WITH
    with open_table(spec, OpenOptions(nul=nul)) as table:
        assert table.lookup("plain@example.com") == "v1"
    with open_table(spec, OpenOptions(nul=other)) as table:
        assert table.lookup("plain@example.com") is None


@pytest.mark.interop
@pytest.mark.parametrize("map_type", TYPES)
@pytest.mark.parametrize("nul", list(NulMode))
def test_postmap_reads_our_files(pfconf: Path, tmp_path: Path, map_type: str, nul: NulMode) -> None:
    spec = f"{map_type}:{tmp_path / 'ours'}"
    build(spec, ENTRIES, OpenOptions(nul=nul))
    backdate(tmp_path / "ours.db")
    # Single queries, with Postfix's -N / -n as well, against the same options in mailmaps.
    for flag, mode in (("", NulMode.AUTO), ("-N", NulMode.WITH), ("-n", NulMode.WITHOUT)):
        with open_table(spec, OpenOptions(nul=mode)) as table:
            for query in QUERIES:
                ours = table.lookup(query)
                assert postmap_q(pfconf, spec, query, *([flag] if flag else [])) == ours, query
    # Queries on stdin: "key<TAB>value" for each key found.
    with open_table(spec) as table:
        expected = render((q, v) for q in QUERIES if (v := table.lookup(q)) is not None)
        listing = render(table.items())
    result = postmap(pfconf, "-q", "-", spec, stdin="".join(q + "\n" for q in QUERIES))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    # The whole table, in the file's order.
    result = postmap(pfconf, "-s", spec)
    assert result.returncode == 0, result.stderr
    assert result.stdout == listing
    assert len(listing.splitlines()) == len(ENTRIES)


@pytest.mark.interop
@pytest.mark.parametrize("map_type", TYPES)
@pytest.mark.parametrize("count", [3, 3000, 50_000])
def test_same_file_layout_as_postmap(
    pfconf: Path, tmp_path: Path, map_type: str, count: int
) -> None:
    """From the same entries in the same order, the file has Postfix's layout page for page.

    Only Berkeley DB's unique file id differs, and slack bytes (free space, padding) that the
    library writes from uninitialised buffers, so pages are compared by their headers.
    """
    entries = sorted((f"user{i}@example.com", f"value-{i}") for i in range(count))
    source = write_source(tmp_path / "src", entries)
    assert postmap(pfconf, f"{map_type}:{source}").returncode == 0
    build(f"{map_type}:{tmp_path / 'ours'}", entries)
    theirs = (tmp_path / "src.db").read_bytes()
    ours = (tmp_path / "ours.db").read_bytes()
    page = 4096
    assert len(ours) == len(theirs)
    assert ours[:52] + ours[72:page] == theirs[:52] + theirs[72:page]
    for offset in range(page, len(ours), page):
        assert ours[offset : offset + 26] == theirs[offset : offset + 26], offset // page
    assert raw_entries(tmp_path / "ours.db") == raw_entries(tmp_path / "src.db")


@pytest.mark.interop
@pytest.mark.parametrize("map_type", TYPES)
def test_incremental_updates_both_ways(pfconf: Path, tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, ENTRIES)
    backdate(tmp_path / "t.db")
    # Postfix updates our file...
    result = postmap(pfconf, "-i", spec, stdin="Added@Example.com by-postfix\nupper changed\n")
    assert result.returncode == 0, result.stderr
    assert 'duplicate entry: "upper"' in result.stderr
    assert postmap(pfconf, "-d", "plain@example.com", spec).returncode == 0
    with open_table(spec) as table:
        assert table.lookup("added@example.com") == "by-postfix"
        assert table.lookup("UPPER") == "UP"
        assert table.lookup("plain@example.com") is None
    # ...and we update a file that Postfix updated.
    with open_table(spec, writable=True) as table:
        table.update("Ours@Example.com", "by-mailmaps")
        assert table.delete("added@example.com")
    backdate(tmp_path / "t.db")
    assert postmap_q(pfconf, spec, "OURS@example.com") == "by-mailmaps"
    assert postmap_q(pfconf, spec, "added@example.com") is None
    with open_table(spec) as table:
        assert postmap(pfconf, "-s", spec).stdout == render(table.items())


@pytest.mark.interop
@pytest.mark.parametrize("map_type", TYPES)
def test_update_postmap_built_file_without_nul(pfconf: Path, tmp_path: Path, map_type: str) -> None:
    source = write_source(tmp_path / "src", ENTRIES)
    spec = f"{map_type}:{source}"
    assert postmap(pfconf, "-n", spec).returncode == 0
    with open_table(spec, writable=True) as table:
        assert table.lookup("upper") == "UP"
        table.update("new", "value")
    assert (b"new", b"value") in raw_entries(tmp_path / "src.db")
    assert postmap_q(pfconf, spec, "new", "-n") == "value"


@pytest.mark.interop
@pytest.mark.parametrize("map_type", TYPES)
def test_empty_table_interop(pfconf: Path, tmp_path: Path, map_type: str) -> None:
    spec = f"{map_type}:{tmp_path / 'empty'}"
    build(spec, [])
    backdate(tmp_path / "empty.db")
    result = postmap(pfconf, "-s", spec)
    assert (result.returncode, result.stdout) == (0, "")
    assert postmap_q(pfconf, spec, "anything") is None
    source = write_source(tmp_path / "src", [])
    assert postmap(pfconf, f"{map_type}:{source}").returncode == 0
    with open_table(f"{map_type}:{source}") as table:
        assert list(table.items()) == []


@pytest.mark.interop
@pytest.mark.parametrize("map_type", TYPES)
def test_large_table_interop(pfconf: Path, tmp_path: Path, map_type: str) -> None:
    entries = [(f"User{i}@Example{i % 89}.com", f"dest{i}@example.net") for i in range(100_000)]
    spec = f"{map_type}:{tmp_path / 'big'}"
    build(spec, entries)
    backdate(tmp_path / "big.db")
    queries = [k.upper() for k, _ in entries[::997]] + ["nobody@example.com"]
    result = postmap(pfconf, "-q", "-", spec, stdin="".join(q + "\n" for q in queries))
    with open_table(spec) as table:
        expected = render((q, v) for q in queries if (v := table.lookup(q)) is not None)
        assert len(expected.splitlines()) == len(queries) - 1
        listing = render(table.items())
    assert result.stdout == expected
    assert postmap(pfconf, "-s", spec).stdout == listing


@pytest.mark.interop
@pytest.mark.parametrize("map_type", TYPES)
def test_error_messages_match_postfix(pfconf: Path, tmp_path: Path, map_type: str) -> None:
    missing = f"{map_type}:{tmp_path / 'missing'}"
    with pytest.raises(ConfigError) as info:
        open_table(missing)
    assert f"postmap: fatal: {info.value}" in postmap(pfconf, "-q", "x", missing).stderr
    (tmp_path / "junk.db").write_bytes(b"\0" * 8192)
    junk = f"{map_type}:{tmp_path / 'junk'}"
    with pytest.raises(ConfigError) as info:
        open_table(junk)
    assert f"postmap: fatal: {info.value}" in postmap(pfconf, "-q", "x", junk).stderr


@pytest.mark.interop
@pytest.mark.parametrize("map_type", TYPES)
def test_postfix_waits_for_our_lock(pfconf: Path, tmp_path: Path, map_type: str) -> None:
    """Postfix's flock() and ours exclude each other: postmap -q waits while we write."""
    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("a", "1")])
    backdate(tmp_path / "t.db")
    with open_table(spec, writable=True) as table:
        with table._lock(True), pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(
                [POSTMAP, "-c", str(pfconf), "-q", "a", spec],
                capture_output=True,
                timeout=1.5,
                check=False,
            )
        assert postmap_q(pfconf, spec, "a") == "1"


@pytest.mark.parametrize("map_type", TYPES)
def test_hold_takes_the_shared_flock_once(tmp_path: Path, map_type: str) -> None:
    """hold(): one shared flock() for every lookup in the block; nested holds keep it."""
    from tests.backends.test_lmdb import exclusive_lock_is_free

    spec = f"{map_type}:{tmp_path / 't'}"
    build(spec, [("a", "1")])
    path = tmp_path / "t.db"
    with open_table(spec) as table:
        with table.hold():
            assert not exclusive_lock_is_free(path, "flock")
            assert table.lookup("a") == "1"
            with table.hold():
                assert table.lookup_many(["a", "b"]) == ["1", None]
            assert table.lookup("a") == "1"  # after a batch, lookups still take no lock
            assert not exclusive_lock_is_free(path, "flock")
        assert exclusive_lock_is_free(path, "flock")
        assert table.lookup("a") == "1"
