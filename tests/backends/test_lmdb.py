"""lmdb: the contract, NUL conventions, map growth, atomic builds, updates, locks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailmaps import ConfigError, Duplicates, NulMode, OpenOptions, create_table, open_table
from mailmaps.backends._indexed import IndexedBuilder
from mailmaps.testing import TableContract
from tests.backends._support import build_with_and_without_c


def build(path: Path, entries: dict[str, str], options: OpenOptions) -> None:
    with create_table(f"lmdb:{path}", options) as builder:
        for key, value in entries.items():
            builder.add(key, value)


class TestLmdbContract(TableContract):
    def make_table(self, tmp_path: Path, entries: dict[str, str], options: OpenOptions) -> Any:
        build(tmp_path / "t", entries, options)
        return open_table(f"lmdb:{tmp_path / 't'}", options)


class TestLmdbContractLockFree(TableContract):
    def make_table(self, tmp_path: Path, entries: dict[str, str], options: OpenOptions) -> Any:
        build(tmp_path / "t", entries, options)
        return open_table(f"lmdb:{tmp_path / 't'}", options.but(lock=False))


def raw_items(path: Path) -> dict[bytes, bytes]:
    import lmdb

    env = lmdb.open(str(path), subdir=False, lock=False, readonly=True)
    try:
        with env.begin() as txn:
            return dict(txn.cursor())
    finally:
        env.close()


@pytest.mark.parametrize(
    ("nul", "stored"),
    [(NulMode.AUTO, b"k\0"), (NulMode.WITH, b"k\0"), (NulMode.WITHOUT, b"k")],
)
def test_trailing_nul_convention(tmp_path: Path, nul: NulMode, stored: bytes) -> None:
    build(tmp_path / "t", {"K": "v"}, OpenOptions(nul=nul))
    value = stored.replace(b"k", b"v")
    assert raw_items(tmp_path / "t.lmdb") == {stored: value}
    for mode in NulMode:
        with open_table(f"lmdb:{tmp_path / 't'}", OpenOptions(nul=mode)) as table:
            expected = None if {mode, nul} == {NulMode.WITH, NulMode.WITHOUT} else "v"
            if nul is NulMode.AUTO and mode is NulMode.WITHOUT:
                expected = None
            assert table.lookup("k") == expected


def test_map_grows_beyond_the_initial_size(tmp_path: Path) -> None:
    entries = {f"key{i}": "v" * 200 for i in range(5000)}
    build(tmp_path / "t", entries, OpenOptions(lmdb_map_size=10240))
    with open_table(f"lmdb:{tmp_path / 't'}", OpenOptions(lmdb_map_size=10240)) as table:
        assert table.lookup("key4999") == "v" * 200
    with open_table(
        f"lmdb:{tmp_path / 't'}", OpenOptions(lmdb_map_size=10240), writable=True
    ) as table:
        for i in range(5000, 6000):
            table.update(f"key{i}", "w" * 300)
        assert table.lookup("key5999") == "w" * 300


def test_failed_build_leaves_the_old_table(tmp_path: Path) -> None:
    build(tmp_path / "t", {"a": "1"}, OpenOptions())
    before = (tmp_path / "t.lmdb").read_bytes()
    with pytest.raises(RuntimeError), create_table(f"lmdb:{tmp_path / 't'}") as builder:
        builder.add("a", "2")
        raise RuntimeError("interrupted")
    assert (tmp_path / "t.lmdb").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.lmdb"]


def test_killed_build_leaves_the_old_table(tmp_path: Path) -> None:
    build(tmp_path / "t", {"a": "1"}, OpenOptions())
    before = (tmp_path / "t.lmdb").read_bytes()
    code = (
        "import os, signal\n"
        "from mailmaps import create_table\n"
        f"b = create_table('lmdb:{tmp_path / 't'}')\n"
        "b.add('a', '2')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -9
    assert (tmp_path / "t.lmdb").read_bytes() == before


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(Duplicates.WARN, "first"), (Duplicates.IGNORE, "first"), (Duplicates.REPLACE, "second")],
)
def test_duplicates(
    tmp_path: Path, policy: Duplicates, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    with create_table(f"lmdb:{tmp_path / 't'}", OpenOptions(duplicates=policy)) as builder:
        builder.add("Dup", "first", "src, line 1")
        builder.add("dup", "second", "src, line 2")
    with open_table(f"lmdb:{tmp_path / 't'}") as table:
        assert table.lookup("dup") == expected
    # As dict_lmdb.c names the table, not the source line.
    warned = f'lmdb:{tmp_path / "t"}: duplicate entry: "dup"' in caplog.text
    assert warned is (policy is Duplicates.WARN)


def test_duplicate_error_policy(tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match="duplicate entry"),
        create_table(f"lmdb:{tmp_path / 't'}", OpenOptions(duplicates=Duplicates.ERROR)) as b,
    ):
        b.add("a", "1")
        b.add("a", "2")


def test_update_and_delete(tmp_path: Path) -> None:
    build(tmp_path / "t", {"a": "1"}, OpenOptions())
    with open_table(f"lmdb:{tmp_path / 't'}", writable=True) as table:
        table.update("B", "2")
        assert table.delete("a") is True
        assert table.delete("a") is False
        assert sorted(table.items()) == [("b", "2")]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"open database .*/nope\.lmdb: No such file"):
        open_table(f"lmdb:{tmp_path / 'nope'}")


def test_file_mode(tmp_path: Path) -> None:
    with create_table(f"lmdb:{tmp_path / 't'}", mode=0o600) as builder:
        builder.add("a", "b")
    assert (tmp_path / "t.lmdb").stat().st_mode & 0o777 == 0o600
    assert os.access(tmp_path / "t.lmdb", os.R_OK)


def test_non_utf8_value_is_an_error_in_utf8_mode(tmp_path: Path) -> None:
    from mailmaps import PermanentLookupError

    bad = b"\xff".decode("utf-8", "surrogateescape")
    build(tmp_path / "t", {"k": bad}, OpenOptions(utf8=False))
    with open_table(f"lmdb:{tmp_path / 't'}", OpenOptions(utf8=False)) as table:
        assert table.lookup("k") == bad
    with (
        open_table(f"lmdb:{tmp_path / 't'}", OpenOptions(utf8=True)) as table,
        pytest.raises(PermanentLookupError),
    ):
        table.lookup("k")


def test_readers_wait_for_a_writers_lock(tmp_path: Path) -> None:
    """Postfix locks the .lmdb file with fcntl(); a lookup waits while a writer holds it."""
    import time

    build(tmp_path / "t", {"a": "1"}, OpenOptions())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open('{tmp_path / 't.lmdb'}', os.O_RDWR)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(0.6)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"
    start = time.monotonic()
    with open_table(f"lmdb:{tmp_path / 't'}") as table:
        assert table.lookup("a") == "1"
    waited = time.monotonic() - start
    holder.wait()
    assert waited > 0.3


@pytest.mark.parametrize("policy", list(Duplicates))
@pytest.mark.parametrize("nul", list(NulMode))
@pytest.mark.parametrize("fold", [True, False])
def test_add_bulk_agrees_with_add_many(
    tmp_path: Path, policy: Duplicates, nul: NulMode, fold: bool
) -> None:
    keys = [b"a", b"B", b"b", "Müller".encode(), b"c", b"a"]
    values = [b"1", b"2", b"3", b"4", b"x\ny", b"6"]
    options = OpenOptions(duplicates=policy, nul=nul, fold=fold)
    one = create_table(f"lmdb:{tmp_path / 'one'}", options)
    two = create_table(f"lmdb:{tmp_path / 'two'}", options)
    assert isinstance(one, IndexedBuilder) and isinstance(two, IndexedBuilder)
    stored = one.add_bulk(keys, values)
    has_dups = len({k.lower() if fold else k for k in keys}) != len(keys)
    assert stored is not (has_dups and policy in (Duplicates.WARN, Duplicates.ERROR))
    if stored:
        two.add_many((k, v, n) for n, (k, v) in enumerate(zip(keys, values, strict=True), 1))
        assert one._entries == two._entries
    one.abort()
    two.abort()


def test_map_grows_when_the_size_estimate_falls_short(tmp_path: Path) -> None:
    # The build sizes the map from a sample of entries; one huge value outside the sample must
    # still fit, by doubling the map as Postfix does.
    entries = {f"k{i:06d}": "v" for i in range(50_000)}
    entries["k000001x"] = "h" * (8 << 20)
    build(tmp_path / "t", entries, OpenOptions(lmdb_map_size=1 << 16))
    with open_table(f"lmdb:{tmp_path / 't'}") as table:
        assert table.lookup("k000001x") == "h" * (8 << 20)
        assert table.lookup("k049999") == "v"


def write_raw(path: Path, items: dict[bytes, bytes]) -> None:
    import lmdb

    env = lmdb.open(str(path), subdir=False, lock=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in items.items():
            txn.put(key, value)
    env.close()


@pytest.mark.parametrize("lock", [False, True], ids=["lock-free", "locked"])
@pytest.mark.parametrize("utf8", [False, True], ids=["ascii-mode", "utf8-mode"])
@pytest.mark.parametrize("nul", list(NulMode))
@pytest.mark.parametrize("fold", [True, False])
def test_c_reader_answers_as_python(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    utf8: bool,
    nul: NulMode,
    fold: bool,
    lock: bool,
) -> None:
    """The optional C reader gives the pure Python path's answers and errors, in order (which
    keys come first decides the NUL convention a file is read with)."""
    from mailmaps.backends import lmdb as backend

    long_key = "k" * 400  # LMDB's limit is 511 bytes; the C reader's buffer holds 1024
    path = tmp_path / "t.lmdb"
    write_raw(
        path,
        {
            b"with\0": b"w\0",
            b"without": b"wo",
            b"upper\0": b"U",
            b"Upper\0": b"mixed-case key",
            b"bad\0": b"\xff\xfe\0",
            b"cut\0": b"front\0back",
            b"utf\0": "ünï".encode() + b"\0",
            "müller\0".encode(): b"m\0",
            long_key.encode() + b"\0": b"long\0",
            b"\0": b"empty",
        },
    )
    keys = ["", "müller", "with", "without", "UPPER", "Upper", "upper", "bad", "cut", "utf",
            "müller", "MÜLLER", long_key, "K" * 2000, "nothere", "with\0x", "wi"]  # fmt: skip
    options = OpenOptions(utf8=utf8, nul=nul, fold=fold, lock=lock)

    def answers() -> list[object]:
        out: list[object] = []
        with open_table(f"lmdb:{tmp_path / 't'}", options) as table:
            for key in keys:
                try:
                    out.append(table.lookup(key))
                except Exception as exc:  # the same error, on both paths
                    out.append(type(exc))
        for start in range(len(keys)):  # a fresh table for each order of the batch
            with open_table(f"lmdb:{tmp_path / 't'}", options) as table:
                try:
                    out.append(table.lookup_many(keys[start:] + keys[:start]))
                except Exception as exc:
                    out.append(type(exc))
        return out

    with open_table(f"lmdb:{tmp_path / 't'}", options) as table:
        assert table._fast is not None  # the extension is built (liblmdb-dev is installed)
    fast = answers()
    monkeypatch.setattr(backend, "_fast_reader", lambda: None)
    assert fast == answers()


@pytest.mark.parametrize("source", [b"B\tx\na\ty\nb\tz\n", b"a\tb\nc\t\n", b"k v\nK w"])
@pytest.mark.parametrize("nul", [NulMode.AUTO, NulMode.WITHOUT])
def test_c_writer_builds_what_python_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: bytes, nul: NulMode
) -> None:
    """The optional C writer of uniform sources stores what the Python build stores (and
    hands sources that are not uniform back to the Python parser)."""
    c, py = build_with_and_without_c("lmdb", tmp_path, monkeypatch, source, OpenOptions(nul=nul))
    assert raw_items(c.with_suffix(".lmdb")) == raw_items(py.with_suffix(".lmdb"))


def exclusive_lock_is_free(path: Path, style: str = "fcntl") -> bool:
    """Whether another process could take the exclusive lock on ``path`` right now."""
    call = "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    if style == "flock":
        call = "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    code = (
        "import fcntl, os\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR)\n"
        f"try:\n    {call}\nexcept OSError:\n    print('busy')\nelse:\n    print('free')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return run.stdout.strip() == "free"


@pytest.mark.parametrize("lock", [True, False], ids=["locked", "lock-free"])
def test_hold_takes_the_shared_lock_once_for_many_lookups(tmp_path: Path, lock: bool) -> None:
    """hold(): one shared lock for every lookup in the block (a writer waits for the block);
    nested holds, batches and the Python path (a non-ASCII key) inside keep it."""
    build(tmp_path / "t", {"a": "1", "é": "2"}, OpenOptions())
    path = tmp_path / "t.lmdb"
    with open_table(f"lmdb:{tmp_path / 't'}", OpenOptions(lock=lock)) as table:
        assert exclusive_lock_is_free(path)
        with table.hold():
            assert exclusive_lock_is_free(path) is not lock
            assert table.lookup("a") == "1"
            assert table.lookup("é") == "2"
            assert table.lookup_many(["a", "b", "é"]) == ["1", None, "2"]
            with table.hold():
                assert table.lookup("A") == "1"
            assert table.lookup("é") == "2"
            assert exclusive_lock_is_free(path) is not lock
        assert exclusive_lock_is_free(path)
        assert table.lookup("a") == "1"


def test_a_hold_sees_the_table_as_it_is_when_it_begins(tmp_path: Path) -> None:
    """A hold renews the read snapshot: a change made before it began is seen inside it."""
    build(tmp_path / "t", {"a": "1"}, OpenOptions())
    with open_table(f"lmdb:{tmp_path / 't'}") as table:
        with table.hold():
            assert table.lookup("b") is None
        code = (
            "from mailmaps import open_table\n"
            f"with open_table('lmdb:{tmp_path / 't'}', writable=True) as writer:\n"
            "    writer.update('b', '2')\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True)  # one env per process
        with table.hold():
            assert table.lookup("b") == "2"
            assert table.lookup_many(["a", "b"]) == ["1", "2"]
