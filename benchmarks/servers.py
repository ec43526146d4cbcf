"""Benchmark: lookups in server-backed tables, side by side with real Postfix's postmap.

Usage::

    python benchmarks/servers.py [--rows 100000] [--entries 20000] [--keys 20000]
                                 [--markdown out.md]

Starts private MariaDB, PostgreSQL and OpenLDAP servers on loopback (root and Debian's
``mariadb-server``, ``postgresql`` and ``slapd`` needed; see :mod:`mailmaps.testing.servers`),
seeds an alias table of ``--rows`` rows (``--entries`` LDAP entries) and an SQLite file of the
same rows, and looks up ``--keys`` keys (nine in ten present) in random order:

* ``postmap -q - TYPE:/path.cf`` with Postfix's ``/usr/sbin/postmap`` and with mailmaps'
  ``postmap``, the same keys on stdin; the outputs must be identical, or the benchmark fails;
* ``Table.lookup()`` in one Python process.

Times are wall clock, best of ``--repeat`` runs, including process start for the commands.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailmaps import open_table
from mailmaps.testing.servers import MariaDB, PostgreSQL, Slapd

OURS = str(Path(sys.executable).with_name("postmap"))
REAL = "/usr/sbin/postmap"


def best(repeat: int, func: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(spec: str, keys: list[str], conf: Path, repeat: int) -> tuple[float, ...]:
    """Times of both ``postmap -q -`` (the outputs must agree), of ``lookup()`` in a loop and
    of ``lookup_many()``."""
    data = "".join(f"{k}\n" for k in keys).encode()
    argv = ["-c", str(conf), "-q", "-", spec]
    outputs: dict[str, bytes] = {}

    def run(prog: str) -> None:
        done = subprocess.run([prog, *argv], input=data, capture_output=True, check=True)
        outputs[prog] = done.stdout

    real = best(repeat, lambda: run(REAL))
    ours = best(repeat, lambda: run(OURS))
    if outputs[REAL] != outputs[OURS]:
        raise SystemExit(f"{spec}: the outputs differ")
    with open_table(spec) as table:

        def loop() -> None:
            for key in keys:
                table.lookup(key)

        inproc = best(repeat, loop)
        many = best(repeat, lambda: table.lookup_many(keys))
    return ours, real, inproc, many


def ldif(entries: int) -> str:
    parts = [
        "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\n"
        "o: Example\ndc: example\n\n"
    ]
    for i in range(entries):
        parts.append(
            f"dn: uid=u{i},dc=example,dc=com\nobjectClass: inetOrgPerson\n"
            f"objectClass: mailRecipient\nuid: u{i}\ncn: u{i}\nsn: u{i}\n"
            f"mailacceptinggeneralid: user{i}@example.com\nmaildrop: dest{i}@example.net\n\n"
        )
    return "".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mailmaps-bench-"))
    root.chmod(0o755)
    conf = root / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text("compatibility_level = 3.6\n")
    rng = random.Random(7)
    rows = args.rows
    servers: list[MariaDB | PostgreSQL | Slapd] = []
    results: list[tuple[str, float, float, float, float]] = []
    try:
        print("starting MariaDB, PostgreSQL and slapd ...", flush=True)
        maria = MariaDB(root / "mariadb")
        servers.append(maria)
        maria.sql(
            "CREATE TABLE alias (address VARCHAR(255) PRIMARY KEY, goto TEXT);"
            "INSERT INTO alias SELECT CONCAT('user', seq, '@example.com'), "
            f"CONCAT('dest', seq, '@example.net') FROM seq_0_to_{rows - 1};"
        )
        pg = PostgreSQL(root / "pgsql")
        servers.append(pg)
        pg.sql(
            "CREATE TABLE alias (address TEXT PRIMARY KEY, goto TEXT);"
            "INSERT INTO alias SELECT 'user' || i || '@example.com', 'dest' || i || "
            f"'@example.net' FROM generate_series(0, {rows - 1}) AS i;"
        )
        slapd = Slapd(root / "ldap", ldif(args.entries))
        servers.append(slapd)
        db = root / "alias.sqlite"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE alias (address TEXT PRIMARY KEY, goto TEXT)")
            conn.executemany(
                "INSERT INTO alias VALUES (?, ?)",
                ((f"user{i}@example.com", f"dest{i}@example.net") for i in range(rows)),
            )
        db.chmod(0o644)
        query = "query = SELECT goto FROM alias WHERE address='%s'\n"
        login = "user = postfix\npassword = pw\ndbname = mailmaps\n"
        tables = {
            "mysql": (f"hosts = unix:{maria.socket}\n{login}{query}", rows),
            "pgsql": (
                f"hosts = postgresql://postfix:pw@/mailmaps?host={pg.socket_dir}&port={pg.port}\n"
                f"dbname = mailmaps\n{query}",
                rows,
            ),
            "sqlite": (f"dbpath = {db}\n{query}", rows),
            "ldap": (f"server_host = {slapd.url}\nsearch_base = dc=example,dc=com\n", args.entries),
        }
        past = time.time() - 3600
        os.utime(conf / "main.cf", (past, past))
        for map_type, (text, size) in tables.items():
            cf = root / f"{map_type}.cf"
            cf.write_text(text)
            os.utime(cf, (past, past))
            keys = [
                f"user{rng.randrange(size) if rng.random() < 0.9 else size + i}@example.com"
                for i in range(args.keys)
            ]
            spec = f"{map_type}:{cf}"
            ours, real, inproc, many = measure(spec, keys, conf, args.repeat)
            results.append((map_type, ours, real, inproc, many))
            n = len(keys)
            print(
                f"{map_type:7} postmap -q - ({n} keys): mailmaps {ours:.2f} s "
                f"({ours / n * 1e6:.0f} us/key), Postfix {real:.2f} s "
                f"({real / n * 1e6:.0f} us/key); in-process lookup() {n / inproc:,.0f}/s, "
                f"lookup_many() {n / many:,.0f}/s",
                flush=True,
            )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.markdown:
        lines = [
            "| table | keys | mailmaps `postmap -q -` | Postfix `postmap -q -` | speed-up | "
            "in-process `lookup()` | `lookup_many()` |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for map_type, ours, real, inproc, many in results:
            n = args.keys
            lines.append(
                f"| `{map_type}` | {n:,} | {ours:.2f} s ({ours / n * 1e6:.0f} µs/key) | "
                f"{real:.2f} s ({real / n * 1e6:.0f} µs/key) | {real / ours:.2f}x | "
                f"{n / inproc:,.0f}/s | {n / many:,.0f}/s |"
            )
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
