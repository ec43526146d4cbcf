"""Benchmarks: mailmaps side by side with real Postfix postmap, in the same run.

Usage::

    python benchmarks/run.py [--entries 1000000] [--repeat 3] [--markdown FILE]

Measured (best of ``--repeat`` runs, wall clock):

* building an lmdb, cdb and hash table from a generated source (``postmap TYPE:file``);
* a ``postmap -q -`` batch of every key, shuffled, against lmdb and cdb;
* in-process ``Table.lookup()`` on lmdb and cdb, with Postfix-style locks and without, next to
  the bare driver (py-lmdb ``Transaction.get``) as the floor no Python wrapper can beat.

Real Postfix's ``postmap`` must be installed (``/usr/sbin/postmap``).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REAL = "/usr/sbin/postmap"
OURS = [sys.executable, "-m", "mailmaps.cli.postmap"]


def best(repeat: int, cmd: Sequence[str], stdin: Path | None = None) -> float:
    """The best wall-clock time of ``repeat`` runs of the command ``cmd``."""
    times = []
    for _ in range(repeat):
        with open(stdin or os.devnull, "rb") as inp:
            start = time.perf_counter()
            subprocess.run(cmd, stdin=inp, stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - start)
    return min(times)


def make_source(path: Path, n: int) -> list[str]:
    keys = [f"user{i}@example{i % 1000}.com" for i in range(n)]
    with path.open("w") as f:
        for i, key in enumerate(keys):
            f.write(f"{key}\tdest{i}@example.net\n")
    past = time.time() - 3600
    os.utime(path, (past, past))
    return keys


def lookup_rate(spec: str, keys: list[str], lock: bool) -> float:
    from mailmaps import OpenOptions, open_table

    with open_table(spec, OpenOptions(lock=lock)) as table:
        lookup = table.lookup
        start = time.perf_counter()
        for key in keys:
            lookup(key)
        return len(keys) / (time.perf_counter() - start)


def lookup_many_rate(spec: str, keys: list[str], lock: bool) -> float:
    from mailmaps import OpenOptions, open_table

    with open_table(spec, OpenOptions(lock=lock)) as table:
        start = time.perf_counter()
        for i in range(0, len(keys), 4096):
            table.lookup_many(keys[i : i + 4096])
        return len(keys) / (time.perf_counter() - start)


def driver_rate(path: Path, keys: list[str]) -> float:
    import lmdb

    env = lmdb.open(str(path), subdir=False, lock=False, readonly=True)
    raw = [k.encode() + b"\0" for k in keys]
    with env.begin(buffers=False) as txn:
        get = txn.get
        start = time.perf_counter()
        for k in raw:
            get(k)
        rate = len(raw) / (time.perf_counter() - start)
    env.close()
    return rate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    n, repeat = args.entries, args.repeat
    rows: list[tuple[str, str, str, str]] = []

    def row(what: str, ours: float, real: float | None, unit: str) -> None:
        if unit == "s":
            ratio = f"{real / ours:.2f}x" if real else ""
            rows.append((what, f"{ours:.2f} s", f"{real:.2f} s" if real else "-", ratio))
        else:
            ratio = f"{ours / real:.2f}x" if real else ""
            rows.append((what, f"{ours:,.0f}/s", f"{real:,.0f}/s" if real else "-", ratio))
        print(f"{what:55} {rows[-1][1]:>14} {rows[-1][2]:>14} {rows[-1][3]:>8}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "main.cf").write_text("")
        past = time.time() - 3600
        os.utime(d / "main.cf", (past, past))
        conf = ["-c", str(d)]
        src = d / "src"
        keys = make_source(src, n)
        shuffled = keys[:]
        random.Random(1).shuffle(shuffled)
        (d / "keys").write_text("\n".join(shuffled) + "\n")
        print(f"{n:,} entries; best of {repeat}; columns: mailmaps, Postfix, speed-up", flush=True)
        for map_type in ("lmdb", "cdb", "hash"):
            ours_src, real_src = d / f"ours-{map_type}", d / f"real-{map_type}"
            ours_src.symlink_to(src)
            real_src.symlink_to(src)
            t_ours = best(repeat, [*OURS, *conf, f"{map_type}:{ours_src}"])
            t_real = best(repeat, [REAL, *conf, f"{map_type}:{real_src}"])
            row(f"build {map_type}: postmap {map_type}:file", t_ours, t_real, "s")
        for map_type in ("lmdb", "cdb"):
            ours_spec = f"{map_type}:{d / f'ours-{map_type}'}"
            real_spec = f"{map_type}:{d / f'real-{map_type}'}"
            t_ours = best(repeat, [*OURS, *conf, "-q", "-", ours_spec], d / "keys")
            t_real = best(repeat, [REAL, *conf, "-q", "-", real_spec], d / "keys")
            row(f"batch {map_type}: postmap -q - ({n:,} keys)", t_ours, t_real, "s")
        # Fresh string objects, allocated in the order they are looked up, as keys that arrive
        # from a socket or a file are (and as the floor's encoded keys below are): the strings
        # of `shuffled` were made in source order, so walking them in shuffled order would
        # time the CPU cache's misses on the key objects as much as the lookups.
        sample = [key.encode().decode() for key in shuffled[: min(n, 300_000)]]
        for map_type in ("lmdb", "cdb"):
            spec = f"{map_type}:{d / f'ours-{map_type}'}"
            for lock in (False, True):
                rate = max(lookup_rate(spec, sample, lock) for _ in range(repeat))
                row(f"in-process {map_type} lookup(), lock={lock}", rate, None, "/s")
            rate = max(lookup_many_rate(spec, sample, True) for _ in range(repeat))
            row(f"in-process {map_type} lookup_many(), 4096 keys a call", rate, None, "/s")
        floor = max(driver_rate(d / "ours-lmdb.lmdb", sample) for _ in range(repeat))
        row("bare py-lmdb Transaction.get (the floor)", floor, None, "/s")
    if args.markdown:
        lines = ["| measurement | mailmaps | Postfix 3.7 | speed-up |", "|---|---:|---:|---:|"]
        lines += [f"| {a} | {b} | {c} | {e} |" for a, b, c, e in rows]
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
