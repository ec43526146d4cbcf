"""``cdb:`` tables: the library API, the file format (checked with the independent ``pure-cdb``
reader and writer), and differential tests against real Postfix 3.7 (``/usr/sbin/postmap``)."""

from __future__ import annotations

import logging
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import cdblib
import pytest

import mailmaps
from mailmaps.backends import cdb as cdb_module
from mailmaps.backends.cdb import CdbTable, djb_hash
from mailmaps.errors import ConfigError, PermanentLookupError, UnsupportedOperation
from mailmaps.maps import create_table, open_table
from mailmaps.table import Duplicates, NulMode, OpenOptions
from tests.backends._support import (
    ENTRIES,
    QUERIES,
    backdate,
    build,
    build_with_and_without_c,
    write_source,
)

POSTMAP = "/usr/sbin/postmap"
READ_ONLY = (
    "dict_cdb_open: inappropriate open flags for cdb database"
    " - specify O_RDONLY or O_WRONLY|O_CREAT|O_TRUNC"
)


def records(path: Path) -> list[tuple[bytes, bytes]]:
    """The records of a cdb file in file order, parsed independently of mailmaps."""
    data = path.read_bytes()
    end = struct.unpack_from("<I", data, 0)[0]
    pos, found = 2048, []
    while pos < end:
        klen, vlen = struct.unpack_from("<II", data, pos)
        pos += 8
        found.append((data[pos : pos + klen], data[pos + klen : pos + klen + vlen]))
        pos += klen + vlen
    return found


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


def test_round_trip(tmp_path: Path) -> None:
    spec = f"cdb:{tmp_path / 'table'}"
    build(spec, ENTRIES)
    with open_table(spec) as table:
        assert isinstance(table, CdbTable)
        assert table.lookup("plain@example.com") == "v1"
        assert table.lookup("PLAIN@EXAMPLE.COM") == "v1"
        assert table.lookup('"quoted key"@example.com') == "v2 with spaces"
        assert table.lookup('"A B"') == "c d"
        assert table.lookup("ÜNÏCÖDÉ@EXÄMPLE.ORG") == "ü-value"
        assert table.lookup("STRASSE@x.de") == "strasse"
        assert table.lookup("a b") is None
        assert table.lookup("missing") is None
    # Records are written in key order, keys folded, without NUL by default.
    stored = records(tmp_path / "table.cdb")
    assert [k for k, _ in stored] == sorted(k for k, _ in stored)
    assert (b"plain@example.com", b"v1") in stored
    assert CdbTable.default_nul is False
    assert CdbTable.suffix == ".cdb"


@pytest.mark.parametrize(
    ("nul", "suffix"), [(NulMode.AUTO, b""), (NulMode.WITH, b"\0"), (NulMode.WITHOUT, b"")]
)
def test_nul_modes(tmp_path: Path, nul: NulMode, suffix: bytes) -> None:
    spec = f"cdb:{tmp_path / 't'}"
    build(spec, [("Key", "Value"), ("other", "x")], OpenOptions(nul=nul))
    assert records(tmp_path / "t.cdb") == [
        (b"key" + suffix, b"Value" + suffix),
        (b"other" + suffix, b"x" + suffix),
    ]
    with_nul = nul is NulMode.WITH
    for mode in NulMode:
        with open_table(spec, OpenOptions(nul=mode)) as table:
            readable = mode is NulMode.AUTO or (mode is NulMode.WITH) is with_nul
            assert table.lookup("KEY") == ("Value" if readable else None)


def test_independent_reader_agrees(tmp_path: Path) -> None:
    """Files we write are valid cdb: the pure-cdb package's reader finds every record."""
    rng = random.Random(7)
    entries = [
        (f"k{rng.getrandbits(40):x}-{i}@example.org", "v" * rng.randrange(0, 50) + str(i))
        for i in range(20_000)
    ]
    build(f"cdb:{tmp_path / 't'}", entries, OpenOptions(fold=False))
    reader = cdblib.Reader((tmp_path / "t.cdb").read_bytes())
    for key, value in entries:
        assert reader.get(key.encode()) == value.encode()
    assert reader.get(b"absent") is None
    assert len(list(reader.keys())) == len(entries)


def test_reads_files_of_other_writers(tmp_path: Path) -> None:
    """Files from another cdb writer (pure-cdb), duplicates and embedded NULs included."""
    path = tmp_path / "other.cdb"
    with path.open("wb") as out:
        writer = cdblib.Writer(out)
        writer.put(b"plain", b"value")
        writer.put(b"withnul\0", b"nul-value\0")
        writer.put(b"dup", b"first")
        writer.put(b"dup", b"second")
        writer.put(b"embedded", b"before\0after")
        writer.put("ünï".encode(), "ü".encode())
        writer.finalize()
    with open_table(f"cdb:{tmp_path / 'other'}") as table:
        assert table.lookup("plain") == "value"
        assert table.lookup("dup") == "first"  # cdb_find() returns the first record
        assert table.lookup("embedded") == "before"  # values are C strings
        assert table.lookup("ÜNÏ") == "ü"
    with open_table(f"cdb:{tmp_path / 'other'}", OpenOptions(nul=NulMode.WITH)) as table:
        assert table.lookup("withnul") == "nul-value"
        assert table.lookup("plain") is None


def test_folding(tmp_path: Path) -> None:
    build(f"cdb:{tmp_path / 't'}", [("MiXeD@Example.COM", "folded"), ("Straße", "x")])
    assert [k for k, _ in records(tmp_path / "t.cdb")] == [b"mixed@example.com", b"strasse"]
    unfolded = f"cdb:{tmp_path / 'u'}"
    build(unfolded, [("MiXeD@Example.COM", "kept")], OpenOptions(fold=False))
    assert records(tmp_path / "u.cdb") == [(b"MiXeD@Example.COM", b"kept")]
    with open_table(unfolded, OpenOptions(fold=False)) as table:
        assert table.lookup("MiXeD@Example.COM") == "kept"
        assert table.lookup("mixed@example.com") is None


def test_duplicates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    entries = [("dup@example.com", "first"), ("DUP@example.com", "second"), ("x", "y")]
    expected = {
        Duplicates.WARN: "first",
        Duplicates.IGNORE: "first",
        Duplicates.REPLACE: "second",
    }
    for policy, value in expected.items():
        spec = f"cdb:{tmp_path / policy.value}"
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mailmaps"):
            build(spec, entries, OpenOptions(duplicates=policy))
        warned = 'duplicate entry: "dup@example.com"' in caplog.text
        assert warned is (policy is Duplicates.WARN)
        assert len(records(tmp_path / f"{policy.value}.cdb")) == 2
        with open_table(spec) as table:
            assert table.lookup("dup@example.com") == value
    with pytest.raises(ConfigError, match="duplicate entry"):
        build(f"cdb:{tmp_path / 'error'}", entries, OpenOptions(duplicates=Duplicates.ERROR))
    assert not (tmp_path / "error.cdb").exists()


def test_utf8_keys_and_values(tmp_path: Path) -> None:
    spec = f"cdb:{tmp_path / 't'}"
    build(spec, [("Ωμέγα@παράδειγμα.ελ", "Δέλτα"), ("日本@例え.jp", "値"), ("emoji😀", "🎉")])
    with open_table(spec) as table:
        assert table.lookup("ΩΜΈΓΑ@ΠΑΡΆΔΕΙΓΜΑ.ΕΛ") == "Δέλτα"
        assert table.lookup("日本@例え.jp") == "値"
        assert table.lookup("EMOJI😀") == "🎉"


def test_empty_table(tmp_path: Path) -> None:
    spec = f"cdb:{tmp_path / 'empty'}"
    build(spec, [])
    data = (tmp_path / "empty.cdb").read_bytes()
    assert data == struct.pack("<II", 2048, 0) * 256
    with open_table(spec) as table:
        assert table.lookup("anything") is None


def test_large_table(tmp_path: Path) -> None:
    spec = f"cdb:{tmp_path / 'large'}"
    count = 100_000
    with create_table(spec) as builder:
        for i in range(count):
            builder.add(f"user{i}@example{i % 97}.com", f"dest{i}@example.net")
    assert len(records(tmp_path / "large.cdb")) == count
    with open_table(spec) as table:
        for i in range(count):
            assert table.lookup(f"USER{i}@example{i % 97}.com") == f"dest{i}@example.net"
        assert table.lookup(f"user{count}@example0.com") is None


def test_failed_build_leaves_old_table(tmp_path: Path) -> None:
    spec = f"cdb:{tmp_path / 't'}"
    build(spec, [("old", "value")])
    before = (tmp_path / "t.cdb").read_bytes()
    with pytest.raises(RuntimeError, match="boom"), create_table(spec) as builder:
        builder.add("new", "value")
        raise RuntimeError("boom")
    assert (tmp_path / "t.cdb").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.cdb"]


def test_rebuild_replaces_table(tmp_path: Path) -> None:
    spec = f"cdb:{tmp_path / 't'}"
    build(spec, [("old", "value")])
    with open_table(spec) as reader:
        build(spec, [("new", "value")])
        assert reader.lookup("old") == "value"  # still the file it opened
    with open_table(spec) as table:
        assert table.lookup("old") is None
        assert table.lookup("new") == "value"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.cdb"]


def test_build_only(tmp_path: Path) -> None:
    """cdb tables cannot be opened for -i / -d, not even when the file is missing."""
    spec = f"cdb:{tmp_path / 't'}"
    with pytest.raises(UnsupportedOperation) as info:
        open_table(spec, writable=True)
    assert str(info.value) == READ_ONLY
    assert isinstance(info.value, ConfigError)
    build(spec, [("a", "1")])
    with pytest.raises(UnsupportedOperation, match="inappropriate open flags"):
        open_table(spec, writable=True)
    with open_table(spec) as table:
        with pytest.raises(UnsupportedOperation) as info:
            table.update("b", "2")
        name = f"cdb:{tmp_path / 't'}.cdb"
        assert str(info.value) == f"table {name}: update operation is not supported"
        with pytest.raises(UnsupportedOperation, match="delete operation is not supported"):
            table.delete("a")
        assert table.lookup("a") == "1"


def test_no_sequence(tmp_path: Path) -> None:
    spec = f"cdb:{tmp_path / 't'}"
    build(spec, [("a", "1")])
    with open_table(spec) as table, pytest.raises(UnsupportedOperation) as info:
        table.items()
    assert str(info.value) == f"table cdb:{tmp_path / 't'}.cdb: sequence operation is not supported"


def test_missing_file(tmp_path: Path) -> None:
    name = tmp_path / "missing"
    with pytest.raises(ConfigError) as info:
        open_table(f"cdb:{name}")
    assert str(info.value) == f"open database {name}.cdb: No such file or directory"
    assert isinstance(info.value.__cause__, FileNotFoundError)


@pytest.mark.parametrize("size", [0, 100, 2047])
def test_short_file(tmp_path: Path, size: int) -> None:
    (tmp_path / "short.cdb").write_bytes(b"x" * size)
    with pytest.raises(ConfigError) as info:
        open_table(f"cdb:{tmp_path / 'short'}")
    path = f"{tmp_path / 'short'}.cdb"
    assert str(info.value) == f"dict_cdbq_open: unable to init {path}: Protocol error"


def test_zero_filled_file(tmp_path: Path) -> None:
    (tmp_path / "zero.cdb").write_bytes(bytes(10_000))
    with open_table(f"cdb:{tmp_path / 'zero'}") as table:
        assert table.lookup("anything") is None


def damage(path: Path, key: bytes) -> None:
    """Point the hash table of ``key`` past the end of the file."""
    data = bytearray(path.read_bytes())
    slot = (djb_hash(key) & 255) * 8
    struct.pack_into("<I", data, slot, len(data) + 4096)
    path.write_bytes(bytes(data))


def test_damaged_file(tmp_path: Path) -> None:
    spec = f"cdb:{tmp_path / 't'}"
    build(spec, [("a", "1"), ("b", "2")])
    damage(tmp_path / "t.cdb", b"a")
    with open_table(spec, OpenOptions(nul=NulMode.WITHOUT)) as table:
        with pytest.raises(PermanentLookupError) as info:
            table.lookup("a")
        assert str(info.value) == f"error reading {tmp_path / 't'}.cdb: Protocol error"
        if djb_hash(b"a") & 255 != djb_hash(b"b") & 255:
            assert table.lookup("b") == "2"


def test_hash_function() -> None:
    pure = cdb_module._djb_hash_py
    rng = random.Random(1)
    samples = [b"", b"a", bytes(range(256)), "Ünïcödé".encode()]
    samples += [rng.randbytes(rng.randrange(0, 80)) for _ in range(2000)]
    for data in samples:
        assert djb_hash(data) == pure(data)
    assert pure(b"") == 5381
    assert pure(b"abc") == 193409669
    # The C hash of pure-cdb is used when it is installed.
    from cdblib._djb_hash import djb_hash as c_hash

    assert djb_hash is c_hash


def test_without_the_c_hash(tmp_path: Path) -> None:
    """Without pure-cdb, the pure-Python hash writes the same bytes and reads them back."""
    build(f"cdb:{tmp_path / 'fast'}", ENTRIES)
    code = "\n".join(
        [
            "import sys",
            "sys.modules['cdblib'] = None",
            "from mailmaps.backends import cdb",
            "assert cdb.djb_hash is cdb._djb_hash_py",
            "from mailmaps.maps import create_table, open_table",
            "entries = [line.split('\\t') for line in sys.stdin.read().splitlines()]",
            "with create_table(sys.argv[1]) as builder:",
            "    for key, value in entries:",
            "        builder.add(key, value)",
            "with open_table(sys.argv[1]) as table:",
            "    print(all(table.lookup(key.upper()) == value for key, value in entries))",
        ]
    )
    env = dict(os.environ, PYTHONPATH=str(Path(mailmaps.__file__).parent.parent))
    result = subprocess.run(
        [sys.executable, "-c", code, f"cdb:{tmp_path / 'slow'}"],
        input="".join(f"{k}\t{v}\n" for k, v in ENTRIES),
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\n"
    assert (tmp_path / "slow.cdb").read_bytes() == (tmp_path / "fast.cdb").read_bytes()


def test_write_file_takes_any_iterable(tmp_path: Path) -> None:
    """write_file() streams its input: a generator works, in batches larger than one."""
    count = 3 * 65536 + 5
    path = tmp_path / "direct.cdb"
    pairs = ((f"{i:08d}".encode(), f"v{i}".encode()) for i in range(count))
    CdbTable.write_file(str(path), pairs, OpenOptions())
    stored = records(path)
    assert len(stored) == count
    assert stored[-1] == (f"{count - 1:08d}".encode(), f"v{count - 1}".encode())
    reader = cdblib.Reader(path.read_bytes())
    assert reader.get(b"00131072") == b"v131072"
    with pytest.raises(FileExistsError):
        CdbTable.write_file(str(path), [], OpenOptions())


# -- interoperability with real Postfix --------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("flag", ["", "-N", "-n"])
def test_reads_postmap_files(pfconf: Path, tmp_path: Path, flag: str) -> None:
    source = write_source(tmp_path / "src", ENTRIES)
    spec = f"cdb:{source}"
    result = postmap(pfconf, *([flag] if flag else []), spec)
    assert result.returncode == 0, result.stderr
    with open_table(spec) as table:
        for query in QUERIES:
            assert table.lookup(query) == postmap_q(pfconf, spec, query), query
    nul = NulMode.WITH if flag == "-N" else NulMode.WITHOUT
    other = NulMode.WITHOUT if nul is NulMode.WITH else NulMode.WITH
    with open_table(spec, OpenOptions(nul=nul)) as table:
        assert table.lookup("plain@example.com") == "v1"
    with open_table(spec, OpenOptions(nul=other)) as table:
        assert table.lookup("plain@example.com") is None


@pytest.mark.interop
@pytest.mark.parametrize("nul", list(NulMode))
def test_postmap_reads_our_files(pfconf: Path, tmp_path: Path, nul: NulMode) -> None:
    spec = f"cdb:{tmp_path / 'ours'}"
    build(spec, ENTRIES, OpenOptions(nul=nul))
    backdate(tmp_path / "ours.cdb")
    for flag, mode in (("", NulMode.AUTO), ("-N", NulMode.WITH), ("-n", NulMode.WITHOUT)):
        with open_table(spec, OpenOptions(nul=mode)) as table:
            for query in QUERIES:
                ours = table.lookup(query)
                assert postmap_q(pfconf, spec, query, *([flag] if flag else [])) == ours, query
    with open_table(spec) as table:
        expected = render((q, v) for q in QUERIES if (v := table.lookup(q)) is not None)
    assert len(expected.splitlines()) == len(QUERIES) - 2
    result = postmap(pfconf, "-q", "-", spec, stdin="".join(q + "\n" for q in QUERIES))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


@pytest.mark.interop
@pytest.mark.parametrize("count", [0, 1, 3, 1000, 100_000])
@pytest.mark.parametrize(("flag", "nul"), [("", NulMode.AUTO), ("-N", NulMode.WITH)])
def test_byte_identical_to_postmap(
    pfconf: Path, tmp_path: Path, count: int, flag: str, nul: NulMode
) -> None:
    """From the same entries in the same order, our file is Postfix's (tinycdb's), byte for byte."""
    entries = sorted((f"user{i}@example{i % 13}.com", f"dest{i}@example.net") for i in range(count))
    source = write_source(tmp_path / "src", entries)
    result = postmap(pfconf, *([flag] if flag else []), f"cdb:{source}")
    assert result.returncode == 0, result.stderr
    build(f"cdb:{tmp_path / 'ours'}", entries, OpenOptions(nul=nul))
    assert (tmp_path / "ours.cdb").read_bytes() == (tmp_path / "src.cdb").read_bytes()


@pytest.mark.interop
def test_byte_identical_with_utf8_and_quotes(pfconf: Path, tmp_path: Path) -> None:
    build(f"cdb:{tmp_path / 'ours'}", ENTRIES)
    with open_table(f"cdb:{tmp_path / 'ours'}") as table:
        assert table.lookup("upper") == "UP"
    folded = sorted(records(tmp_path / "ours.cdb"))
    source = write_source(tmp_path / "src", [(k.decode(), v.decode()) for k, v in folded])
    assert postmap(pfconf, f"cdb:{source}").returncode == 0
    assert (tmp_path / "ours.cdb").read_bytes() == (tmp_path / "src.cdb").read_bytes()


@pytest.mark.interop
def test_large_table_interop(pfconf: Path, tmp_path: Path) -> None:
    entries = [(f"User{i}@Example{i % 89}.com", f"dest{i}@example.net") for i in range(100_000)]
    spec = f"cdb:{tmp_path / 'big'}"
    build(spec, entries)
    backdate(tmp_path / "big.cdb")
    queries = [k.upper() for k, _ in entries[::997]] + ["nobody@example.com"]
    result = postmap(pfconf, "-q", "-", spec, stdin="".join(q + "\n" for q in queries))
    with open_table(spec) as table:
        expected = render((q, v) for q in queries if (v := table.lookup(q)) is not None)
    assert len(expected.splitlines()) == len(queries) - 1
    assert result.stdout == expected


@pytest.mark.interop
def test_error_messages_match_postfix(pfconf: Path, tmp_path: Path) -> None:
    spec = f"cdb:{tmp_path / 't'}"
    build(spec, ENTRIES)
    backdate(tmp_path / "t.cdb")

    def fatal(*args: str, stdin: str | None = None) -> str:
        result = postmap(pfconf, *args, stdin=stdin)
        assert result.returncode == 1
        return result.stderr

    # -i and -d
    with pytest.raises(UnsupportedOperation) as info:
        open_table(spec, writable=True)
    assert f"postmap: fatal: {info.value}\n" in fatal("-i", spec, stdin="a b\n")
    assert f"postmap: fatal: {info.value}\n" in fatal("-d", "upper", spec)
    # -s
    with open_table(spec) as table, pytest.raises(UnsupportedOperation) as info:
        table.items()
    assert f"postmap: fatal: {info.value}\n" in fatal("-s", spec)
    # a missing file, a short file
    with pytest.raises(ConfigError) as open_info:
        open_table(f"cdb:{tmp_path / 'missing'}")
    assert f"postmap: fatal: {open_info.value}\n" in fatal("-q", "x", f"cdb:{tmp_path / 'missing'}")
    (tmp_path / "short.cdb").write_bytes(b"x" * 100)
    with pytest.raises(ConfigError) as open_info:
        open_table(f"cdb:{tmp_path / 'short'}")
    assert f"postmap: fatal: {open_info.value}\n" in fatal("-q", "x", f"cdb:{tmp_path / 'short'}")
    # a damaged hash table
    damage(tmp_path / "t.cdb", b"upper")
    with open_table(spec) as table, pytest.raises(PermanentLookupError) as lookup_info:
        table.lookup("upper")
    assert f"postmap: fatal: {lookup_info.value}\n" in fatal("-q", "upper", spec)


@pytest.mark.parametrize(
    "source",
    [
        b"B\tx\na\ty\nb\tz\n",
        b"a\tb\nc\t\n",
        b"k v\nK w",
        b"only\tone",
        b"x\ty\n" * 3,
        b"".join(b"K%d\tv%d\n" % (i * 7919 % 3000, i) for i in range(5000)),  # many per table
    ],
    ids=["unsorted", "empty-value", "spaces", "no-newline", "same-line", "generated"],
)
@pytest.mark.parametrize("nul", [NulMode.AUTO, NulMode.WITH])
def test_c_writer_builds_what_python_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: bytes, nul: NulMode
) -> None:
    """The optional C writer of uniform sources writes the Python writer's bytes (and hands
    sources that are not uniform back to the Python parser)."""
    c, py = build_with_and_without_c("cdb", tmp_path, monkeypatch, source, OpenOptions(nul=nul))
    assert c.with_suffix(".cdb").read_bytes() == py.with_suffix(".cdb").read_bytes()
