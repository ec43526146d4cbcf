"""Differential tests: mailmaps' postmap against real Postfix 3.7 postmap.

For generated sources full of tricky syntax (comments, continuation lines, quoting, case,
duplicates, UTF-8 and broken UTF-8, bad lines), both tools must print the same standard output
and exit with the same status for ``-q``, ``-q -`` and ``-s``; and each must read the lmdb, cdb,
hash and btree files the other wrote.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import REAL_POSTALIAS, REAL_POSTMAP, Result, backdate, run_ours, run_real

pytestmark = pytest.mark.interop

TYPES = ["lmdb", "cdb", "hash", "btree"]

FRAGMENTS = [
    "user@example.com",
    "User@Example.COM",
    "@example.com",
    "example.com",
    '"a b"@example.com',
    '"a\\"b"@x',
    "a\\ b",
    "müller@bücher.de",
    "MÜLLER@BÜCHER.DE",
    "straße@x",
    "ΣΊΣΥΦΟΣ@x",
    "key:",
    "+ext@x",
    "a+b@x",
    "tab\tin",
    "#notcomment",
    "x#y",
    "trailing",
    "k=v",
    "1.2.3.4",
]
VALUES = [
    "value",
    "a, b, c",
    "  spaced   value  ",
    "UPPER Value",
    "ünïcödé",
    "x\\y",
    '"quoted value"',
    "error:5.1.1 nope",
]


def random_line(rng: random.Random) -> str:
    kind = rng.random()
    key = rng.choice(FRAGMENTS) + rng.choice(["", str(rng.randint(0, 9))])
    value = rng.choice(VALUES)
    if kind < 0.55:
        sep = rng.choice([" ", "\t", "   "])
        return f"{key}{sep}{value}"
    if kind < 0.62:
        return f"# comment {key} {value}"
    if kind < 0.67:
        return rng.choice(["", "   ", "\t", "  # indented comment"])
    if kind < 0.75:
        return f"{key} {value}\n  continued {rng.choice(VALUES)}\n\tmore"
    if kind < 0.78:
        return f"{key} first\n# comment inside\n  after-comment"
    if kind < 0.81:
        return f"{key}"  # no value
    if kind < 0.84:
        return f'"unbalanced {key} {value}'
    if kind < 0.86:
        return f"   orphan {key} {value}"
    if kind < 0.89:
        return f"{key}\\ escaped {value}"
    if kind < 0.92:
        return f"{key} {value}\r"
    if kind < 0.95:
        return f"{key.upper()} {value}"
    return f'"{key} {key}" {value}'


def make_source(seed: int, lines: int = 60) -> bytes:
    rng = random.Random(seed)
    text = "\n".join(random_line(rng) for _ in range(lines)) + "\n"
    data = text.encode()
    if seed % 3 == 0:
        data += b"bad\xffkey value\nkey2 bad\xfevalue\n"
    if seed % 4 == 1:
        data = data.rstrip(b"\n")  # no final newline
    return data


def queries(data: bytes) -> list[bytes]:
    keys = set()
    for line in data.split(b"\n"):
        parts = line.split()
        if parts:
            keys.add(parts[0])
            keys.add(parts[0].upper())
            keys.add(parts[0].lower())
            keys.add(parts[0] + b"\0after a NUL")  # -q - looks up the C string before the NUL
    keys.update([b"nothere", b"", b"USER@EXAMPLE.COM", "müller@bücher.de".upper().encode()])
    return sorted(keys)


def assert_same(ours: Result, real: Result, what: str) -> None:
    assert (ours.status, ours.out) == (real.status, real.out), what


def build_both(
    tmp_path: Path, conf: Path, data: bytes, map_type: str, flags: list[str]
) -> tuple[Path, Path]:
    paths = []
    for who in ("ours", "real"):
        d = tmp_path / who
        d.mkdir(exist_ok=True)
        src = d / "map"
        src.write_bytes(data)
        backdate(src)
        args = ["-c", str(conf), *flags, f"{map_type}:{src}"]
        result = run_ours("postmap", args) if who == "ours" else run_real(REAL_POSTMAP, args)
        assert result.status == 0, result.err
        paths.append(src)
    return paths[0], paths[1]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("utf8", [False, True], ids=["ascii-mode", "utf8-mode"])
def test_build_and_query_like_postmap(
    tmp_path: Path, confdir: Path, utf8_confdir: Path, seed: int, utf8: bool
) -> None:
    conf = utf8_confdir if utf8 else confdir
    map_type = TYPES[seed % len(TYPES)]
    flags = [["-f"], ["-r"], ["-w"], [], ["-N"], ["-n"]][seed % 6] if seed >= 4 else []
    data = make_source(seed)
    ours_src, real_src = build_both(tmp_path, conf, data, map_type, flags)
    qflags = ["-f"] if "-f" in flags else []
    base = ["-c", str(conf), *qflags]
    # -s on both builds, through both tools (cdb has no sequence in Postfix: both must fail)
    for src in (ours_src, real_src):
        ours = run_ours("postmap", [*base, "-s", f"{map_type}:{src}"])
        real = run_real(REAL_POSTMAP, [*base, "-s", f"{map_type}:{src}"])
        # Both tools read the same file, so even the order must agree.
        assert (ours.status, ours.out) == (real.status, real.out)
    keys = queries(data)
    # -q - : batch mode, each tool on each tool's file (cross reading)
    batch = b"\n".join(keys) + b"\n"
    for src in (ours_src, real_src):
        ours = run_ours("postmap", [*base, "-q", "-", f"{map_type}:{src}"], stdin=batch)
        real = run_real(REAL_POSTMAP, [*base, "-q", "-", f"{map_type}:{src}"], stdin=batch)
        assert_same(ours, real, f"-q - on {src}")
    # -q KEY for a sample of keys
    rng = random.Random(seed)
    for key in rng.sample(keys, min(6, len(keys))):
        if not key or key.startswith(b"-") or b"\0" in key:
            continue
        text = key.decode("utf-8", "surrogateescape")
        for src in (ours_src, real_src):
            args = [*base, "-q", text, f"{map_type}:{src}"]
            assert_same(run_ours("postmap", args), run_real(REAL_POSTMAP, args), f"-q {key!r}")


def test_vector_quote_test(tmp_path: Path, confdir: Path) -> None:
    """postmap/quote_test: keys are stored verbatim, quotes and backslashes included."""
    lines = [
        '"aa bb" cc',
        '"dd ee ff',
        "gg\\ hh ii",
        '"gg\\"hh" ii',
        '"jj@kk" ll',
        "mm@nn@oo pp",
        "@oo pp",
    ]
    outputs = []
    for who in ("ours", "real"):
        d = tmp_path / who
        d.mkdir()
        for line in lines:
            args = ["-c", str(confdir), "-i", f"lmdb:{d / 'q'}"]
            stdin = (line + "\n").encode()
            r = (
                run_ours("postmap", args, stdin)
                if who == "ours"
                else run_real(REAL_POSTMAP, args, stdin)
            )
            assert r.status == 0
        args = ["-c", str(confdir), "-s", f"lmdb:{d / 'q'}"]
        r = run_ours("postmap", args) if who == "ours" else run_real(REAL_POSTMAP, args)
        outputs.append(sorted(r.out.splitlines()))
    assert outputs[0] == outputs[1]
    assert b'"gg\\"hh"\tii' in outputs[0]


@pytest.mark.parametrize(
    "args",
    [
        ["-q", "a", "-s"],
        ["-s", "-q", "a"],
        ["-d", "a", "-q", "b"],
        ["-x"],
        ["-q"],
        [],
        ["-b", "map"],
        ["-q", "a", "nosuchtype:map"],
        ["-q", "a", "inline:{a=b}x"],
        ["-q", "a", "inline:{ }"],
        ["-q", "a", "inline:{ a = b }"],
        ["-q", "a", "inline:{ a=b, {c = d e} }"],
        ["-q", "c", "inline:{ a=b, {c = d e} }"],
        ["-q", "a", "static:{ a b }"],
        ["-q", "a", "static:{ a b"],
        ["-q", "a", "fail:x"],
        ["-s", "fail:x"],
        ["-d", "a", "fail:x"],
        ["-s", "inline:{b=1, a=2}"],
        ["-d", "a", "inline:{a=b}"],
        ["regexp:/dev/null"],
        ["-q", "a", "lmdb:/nonexistent/x"],
        ["-q", "a", "hash:/nonexistent/x"],
        ["-q", "a", "cdb:/nonexistent/x"],
        ["-q", "a", "texthash:/nonexistent/x"],
        ["-jq", "a", "inline:{a=b}"],
        ["-q", "a", "static:"],
        ["-q", "a", "lmdb:"],
        ["-q", "a", ":map"],
    ],
)
def test_command_line_errors_and_simple_types(confdir: Path, args: list[str]) -> None:
    full = ["-c", str(confdir), *args]
    ours, real = run_ours("postmap", full), run_real(REAL_POSTMAP, full)
    if args[:1] == ["-jq"]:
        # -j is Postfix 3.11's; 3.7 rejects it. mailmaps accepts it (documented difference).
        assert real.status == 1
        assert ours.out == b'{"a": "b"}\n'
        return
    if args[:1] == ["-s"]:
        # in-memory tables are listed in hash order with a random seed (hash_fnv.c)
        assert (ours.status, sorted(ours.out.splitlines())) == (
            real.status,
            sorted(real.out.splitlines()),
        )
    else:
        assert (ours.status, ours.out) == (real.status, real.out)
    assert ("fatal:" in ours.err) == ("fatal:" in real.err)
    if "expecting" in real.err:
        assert ours.err == real.err


def test_texthash_matches(tmp_path: Path, confdir: Path) -> None:
    data = make_source(7)
    src = tmp_path / "th"
    src.write_bytes(data)
    backdate(src)
    batch = b"\n".join(queries(data)) + b"\n"
    args = ["-c", str(confdir), "-q", "-", f"texthash:{src}"]
    assert_same(run_ours("postmap", args, batch), run_real(REAL_POSTMAP, args, batch), "texthash")
    args = ["-c", str(confdir), "-s", f"texthash:{src}"]
    ours, real = run_ours("postmap", args), run_real(REAL_POSTMAP, args)
    assert sorted(ours.out.splitlines()) == sorted(real.out.splitlines())


def test_incremental_and_delete(tmp_path: Path, confdir: Path) -> None:
    outputs = []
    for who, runner in (("ours", run_ours), ("real", None)):
        d = tmp_path / who
        d.mkdir()
        target = f"lmdb:{d / 'inc'}"
        steps: list[tuple[list[str], bytes]] = [
            (["-i", target], b"a 1\nB 2\n"),
            (["-i", target], b"a 3\nc 4\n"),
            (["-ri", target], b"c 5\n"),
            (["-d", "b", target], b""),
            (["-d", "-", target], b"zz\nA\n"),
            (["-d", "nothere", target], b""),
            (["-s", target], b""),
        ]
        results = []
        for args, stdin in steps:
            full = ["-c", str(confdir), *args]
            r = run_ours("postmap", full, stdin) if runner else run_real(REAL_POSTMAP, full, stdin)
            results.append((r.status, r.out))
        outputs.append(results)
    assert outputs[0] == outputs[1]


def test_file_option_matches_vector(tmp_path: Path, confdir: Path) -> None:
    """postmap/file_test: -F stores base64 of file contents; -Fq and -Fs decode it."""
    outputs = []
    for who in ("ours", "real"):
        d = tmp_path / who
        d.mkdir()
        (d / "f1").write_bytes(b"this-is-file1")
        (d / "f2").write_bytes(b"this-is-file2")
        runs: list[tuple[list[str], bytes]] = [
            (["-iF", "m"], b"file-1 f1\n"),
            (["-iF", "m"], b"file-2 f1, f2\n"),
            (["-iF", "m"], b"file-3 missing\n"),
            (["-i", "m"], b"entry-4 plain\n"),
            (["-s", "m"], b""),
            (["-Fs", "m"], b""),
            (["-Fq", "file-2", "m"], b""),
            (["-Fq", "entry-4", "m"], b""),
            (["-q", "file-1", "m"], b""),
        ]
        results = []
        for args, stdin in runs:
            full = ["-c", str(confdir), *args[:-1], f"lmdb:{d / args[-1]}"]
            r = (
                run_ours("postmap", full, stdin, cwd=d)
                if who == "ours"
                else run_real(REAL_POSTMAP, full, stdin, cwd=d)
            )
            results.append((r.status, sorted(r.out.splitlines())))
        outputs.append(results)
    assert outputs[0] == outputs[1]


def test_postmap_on_path_is_ours() -> None:
    assert shutil.which("postmap") is not None


@pytest.mark.parametrize("tool", ["postmap", "postalias"])
@pytest.mark.parametrize("batch", [False, True], ids=["-q KEY", "-q -"])
def test_query_error_message(confdir: Path, tool: str, batch: bool) -> None:
    """A failing table: Postfix's fatal message, word for word, in both query modes."""
    real_tool = REAL_POSTMAP if tool == "postmap" else REAL_POSTALIAS
    args = ["-c", str(confdir), "-q", "-" if batch else "key", "fail:x"]
    stdin = b"key\n" if batch else b""
    ours, real = run_ours(tool, args, stdin), run_real(real_tool, args, stdin)
    assert (ours.status, ours.out) == (real.status, real.out)
    assert ours.err.strip().splitlines()[-1] == real.err.strip().splitlines()[-1]


@pytest.mark.parametrize("spec", ["static:x", "static:{ a b }", "inline:{a=b}", "fail:x"])
def test_non_utf8_keys_in_utf8_mode(utf8_confdir: Path, spec: str) -> None:
    """Every table type checks keys in UTF-8 mode, even those whose answer ignores the key."""
    args = ["-c", str(utf8_confdir), "-q", "-", spec]
    batch = b"a\xff\nb\xc3\n\xc3\xa9\n"
    ours, real = run_ours("postmap", args, batch), run_real(REAL_POSTMAP, args, batch)
    assert (ours.status, ours.out) == (real.status, real.out)
    assert ours.err.splitlines() == real.err.splitlines()


UNIFORM_SOURCES = {
    # One separator, no comments: mailmaps' C writer (lmdb) or bulk path takes these.
    "uniform": b"Foo\tbar\nfoo\tbaz\nabc\t1\nx\ty\nABC\t2\nx\tz\n",
    "uniform-spaces": b"k1 v1\nK1 v2\nk2 v3\n",
    # Almost uniform: the writer must hand these back to the line parser.
    "empty-value": b"a\tb\nc\t\nd\te\n",
    "key-colon": b"a:\tb\nc\td\n",
    "two-separators": b"a\tb\tc\nd\te\n",
}
for _seed in range(3):  # generated: keys that collide when folded, in random order
    _rng = random.Random(_seed)
    UNIFORM_SOURCES[f"generated-{_seed}"] = b"".join(
        b"%s\t%s\n"
        % (
            _rng.choice([b"user", b"User", b"USER", b"a", b"b.c", b"x@y"])
            + b"%d" % _rng.randrange(9),
            b"v%d" % n,
        )
        for n in range(_rng.randint(1, 60))
    )


@pytest.mark.parametrize("flags", [[], ["-r"], ["-w"], ["-N"], ["-f"]], ids=str)
@pytest.mark.parametrize("source", sorted(UNIFORM_SOURCES))
@pytest.mark.parametrize("map_type", ["lmdb", "cdb", "hash", "btree"])
def test_build_warnings_and_contents(
    tmp_path: Path, confdir: Path, map_type: str, source: str, flags: list[str]
) -> None:
    """Builds print Postfix's warnings (duplicates name the table as each backend does) and
    store what Postfix stores, whichever of mailmaps' build paths takes the source."""
    results = []
    for who in ("ours", "real"):
        d = tmp_path / who
        d.mkdir()
        src = d / "map"
        src.write_bytes(UNIFORM_SOURCES[source])
        backdate(src)
        args = ["-c", str(confdir), *flags, f"{map_type}:{src}"]
        built = run_ours("postmap", args) if who == "ours" else run_real(REAL_POSTMAP, args)
        listing = run_real(REAL_POSTMAP, ["-c", str(confdir), *flags, "-s", f"{map_type}:{src}"])
        err = built.err.replace(str(d), "DIR")
        results.append((built.status, err.splitlines(), sorted(listing.out.splitlines())))
    assert results[0] == results[1]


def test_feedback_on_terminals_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large builds show progress on a terminal (a bar, or a spinner while C builds), and
    nothing when stderr is a file or a pipe."""
    from contextlib import nullcontext

    from mailmaps.cli import _common

    large = b"k\tv\n" * (_common._PROGRESS_MIN // 4 + 1)
    entries = iter([(b"k", b"v", 1)])
    assert isinstance(_common._busy(large), nullcontext)  # pytest's stderr is no terminal
    assert _common._progress(entries, large) is entries
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert isinstance(_common._busy(b"k\tv\n"), nullcontext)  # small: nothing
    assert not isinstance(_common._busy(large), nullcontext)
    assert _common._progress(entries, large) is not entries
