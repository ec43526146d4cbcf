"""Differential tests: mailmaps' postalias against real Postfix 3.7 postalias."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from tests.conftest import REAL_POSTALIAS, backdate, run_ours, run_real

pytestmark = pytest.mark.interop

NAMES = [
    "root",
    "Postmaster",
    "owner-list",
    "list-request",
    '"foo bar"',
    "a.b",
    "staff",
    "MÜLLER",
    "x+y",
]
TARGETS = [
    "admin",
    "bin, daemon",
    '"|/usr/bin/procmail -a list"',
    "|/bin/true",
    ":include:/etc/postfix/list",
    "/var/mail/archive",
    '"a b"@example.com',
    "user@Example.COM (Comment here)",
    "Name <name@example.com>",
    "x,y ,z",
    "\\root",
]


def random_alias_line(rng: random.Random) -> str:
    kind = rng.random()
    name, target = rng.choice(NAMES), rng.choice(TARGETS)
    if kind < 0.6:
        return f"{name}:{rng.choice([' ', '', '  '])}{target}"
    if kind < 0.7:
        return f"{name}: {target},\n  {rng.choice(TARGETS)}\n\t{rng.choice(TARGETS)}"
    if kind < 0.75:
        return f"# {name}: {target}"
    if kind < 0.8:
        return f"{name} {target}"  # no colon
    if kind < 0.85:
        return f"{name}@example.com: {target}"
    if kind < 0.9:
        return f"{name}:"
    if kind < 0.95:
        return f'"{name}@x": {target}'
    return f"{name.upper()}: {target}"


def make_aliases(seed: int) -> bytes:
    rng = random.Random(seed)
    data = "\n".join(random_alias_line(rng) for _ in range(40)).encode() + b"\n"
    if seed % 2:
        data += b"bad\xff: x\n"
    return data


def _entries(out: bytes) -> list[bytes]:
    # YP_LAST_MODIFIED holds a timestamp and YP_MASTER_NAME the host name: compare their presence.
    lines = []
    for line in out.splitlines():
        if line.startswith(b"YP_LAST_MODIFIED:\t"):
            line = b"YP_LAST_MODIFIED:\t<time>"
        lines.append(line)
    return sorted(lines)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("map_type", ["lmdb", "hash", "cdb"])
def test_build_dump_and_query(
    tmp_path: Path, confdir: Path, utf8_confdir: Path, seed: int, map_type: str
) -> None:
    conf = utf8_confdir if seed % 3 == 0 else confdir
    data = make_aliases(seed)
    srcs = {}
    for who in ("ours", "real"):
        d = tmp_path / who
        d.mkdir()
        src = d / "aliases"
        src.write_bytes(data)
        backdate(src)
        args = ["-c", str(conf), f"{map_type}:{src}"]
        r = run_ours("postalias", args) if who == "ours" else run_real(REAL_POSTALIAS, args)
        assert r.status == 0, r.err
        srcs[who] = src
    keys = sorted(
        {line.split(b":")[0].strip().lower() for line in data.splitlines() if b":" in line}
    )
    batch = b"\n".join([*keys, b"@", b"nothere", b"ROOT"]) + b"\n"
    for src in srcs.values():
        if map_type != "cdb":
            args = ["-c", str(conf), "-s", f"{map_type}:{src}"]
            ours, real = run_ours("postalias", args), run_real(REAL_POSTALIAS, args)
            assert ours.status == real.status
            assert _entries(ours.out) == _entries(real.out)
        args = ["-c", str(conf), "-q", "-", f"{map_type}:{src}"]
        ours, real = run_ours("postalias", args, batch), run_real(REAL_POSTALIAS, args, batch)
        assert (ours.status, ours.out) == (real.status, real.out)
        for key in (b"root", b"staff", b"owner-list"):
            args = ["-c", str(conf), "-q", key.decode(), f"{map_type}:{src}"]
            ours, real = run_ours("postalias", args), run_real(REAL_POSTALIAS, args)
            assert (ours.status, ours.out) == (real.status, real.out)


MODES = [["-d", "yy"], ["-i"], ["-q", "yy"], ["-s"]]


@pytest.mark.parametrize(("first", "second"), list(itertools.product(MODES, MODES)))
def test_mode_conflicts(confdir: Path, first: list[str], second: list[str]) -> None:
    """postalias/mode_conflict_test: which option pairs are refused (exit status)."""
    args = ["-c", str(confdir), *first, *second, "lmdb:/nonexistent/whatever"]
    ours, real = run_ours("postalias", args), run_real(REAL_POSTALIAS, args)
    assert (ours.status, ours.out) == (real.status, real.out)
    assert ("specify only one" in ours.err) == ("specify only one" in real.err)


def test_incremental_update_keeps_signature(tmp_path: Path, confdir: Path) -> None:
    results = []
    for who in ("ours", "real"):
        d = tmp_path / who
        d.mkdir()
        target = f"lmdb:{d / 'a'}"
        runs: list[tuple[list[str], bytes]] = [
            (["-i", target], b"root: admin\n"),
            (["-i", target], b"root: other\nstaff: a, b\n"),
            (["-d", "staff", target], b""),
            (["-s", target], b""),
        ]
        out = []
        for args, stdin in runs:
            full = ["-c", str(confdir), *args]
            r = (
                run_ours("postalias", full, stdin)
                if who == "ours"
                else run_real(REAL_POSTALIAS, full, stdin)
            )
            out.append((r.status, _entries(r.out)))
        results.append(out)
    assert results[0] == results[1]
